//! MatConvNet **simplenn** models (e.g. `imagenet-vgg-verydeep-19.mat`) in
//! PyTorch layout: [`load_matconvnet`] and [`matconvnet_simplenn`] return the
//! conv layers' names, weights (`[Cout, Cin, kH, kW]`) and biases (`[Cout]`)
//! as [`RawTensor`]s ([`MatConvNetConv`], [`MatConvNetModel`]), plus the mean
//! pixel.
//!
//! The file itself is read by the MAT v5 reader in [`crate::mat`]; this module
//! only uses that reader's public API ([`MatValue`], [`MatArray`], ...).

use std::path::Path;

use crate::mat::{load_mat, MatArray, MatClass, MatData, MatValue};
use crate::{IoError, PthDtype, RawTensor};

/// One convolution layer of a MatConvNet model, in PyTorch layout.
#[derive(Debug, Clone, PartialEq)]
pub struct MatConvNetConv {
    /// The layer's `name` (e.g. `"conv1_1"`, or `"fc6"` for fully connected
    /// layers, which MatConvNet stores as convolutions).
    pub name: String,
    /// `[Cout, Cin, kH, kW]`, row-major (`dtype` is the class in the file:
    /// `F32` for single, `F64` for double).
    pub weight: RawTensor,
    /// `[Cout]` (zeros when the layer has no bias).
    pub bias: RawTensor,
}

/// The parameters of a MatConvNet simplenn model.
#[derive(Debug, Clone, PartialEq)]
pub struct MatConvNetModel {
    /// The `conv` layers, in network order.
    pub convs: Vec<MatConvNetConv>,
    /// The mean pixel (R, G, B, on a 0..255 scale) from
    /// `normalization.averageImage`, averaged over the image when a full mean
    /// image is stored.
    pub mean_rgb: Option<[f32; 3]>,
}

/// Reads a MatConvNet simplenn model (e.g. `imagenet-vgg-verydeep-19.mat`).
pub fn load_matconvnet(path: &Path) -> Result<MatConvNetModel, IoError> {
    let values = load_mat(path)?;
    matconvnet_simplenn(&values, path)
}

/// Interprets the variables of a MatConvNet **simplenn** model file.
///
/// The top-level variable `layers` is a cell of 1×1 structs with fields
/// `name` and `type` (`"conv"`, `"relu"`, `"pool"`, ...); a conv layer holds
/// its parameters in `weights` = {W, b} or, in older files, in
/// `filters`/`biases`.  W is `[H, W, Cin, Cout]` (column-major, trailing
/// singleton dims may be dropped) and is converted to PyTorch's
/// `[Cout, Cin, H, W]`; b has `Cout` elements in any shape.  The mean pixel
/// comes from `meta.normalization.averageImage` (newer files) or
/// `normalization.averageImage` (older ones).  `path` is only used in error
/// messages.
pub fn matconvnet_simplenn(
    values: &[(String, MatValue)],
    path: &Path,
) -> Result<MatConvNetModel, IoError> {
    let fail = |msg: String| IoError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let var = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let layers = match var("layers") {
        Some(MatValue::Cell { items, .. }) => items,
        Some(MatValue::Struct { .. }) => {
            return Err(fail(
                "'layers' is a struct array, as in a MatConvNet DagNN model; \
                 only the simplenn layout (a cell of layer structs) is supported"
                    .into(),
            ))
        }
        Some(other) => {
            return Err(fail(format!(
            "not a MatConvNet simplenn model: 'layers' is a {}, expected a cell of layer structs",
            other.kind()
        )))
        }
        None => {
            let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
            return Err(fail(format!(
                "not a MatConvNet simplenn model: no top-level variable 'layers' (variables: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
    };

    let mut convs = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let at = format!("layers{{{}}}", i + 1);
        if !matches!(layer, MatValue::Struct { elems, .. } if elems.len() == 1) {
            return Err(fail(format!(
                "{at}: expected a 1x1 layer struct, found a {}",
                layer.kind()
            )));
        }
        let ty = layer
            .field("type")
            .and_then(MatValue::as_str)
            .ok_or_else(|| fail(format!("{at}: the layer has no char field 'type'")))?;
        if ty != "conv" {
            continue;
        }
        let name = match layer.field("name").and_then(MatValue::as_str) {
            Some(n) => n.to_string(),
            None => format!("conv{}", convs.len() + 1),
        };
        let at = format!("{at} ('{name}')");
        let (w, b) = if let Some(weights) = layer.field("weights") {
            let items = weights.as_cell().ok_or_else(|| {
                fail(format!(
                    "{at}: 'weights' is a {}, expected a cell {{W, b}}",
                    weights.kind()
                ))
            })?;
            match items {
                [w] => (w, None),
                [w, b, ..] => (w, Some(b)),
                [] => return Err(fail(format!("{at}: 'weights' is an empty cell"))),
            }
        } else if let Some(w) = layer.field("filters") {
            (w, layer.field("biases"))
        } else {
            return Err(fail(format!(
                "{at}: a conv layer needs a field 'weights' (or 'filters'/'biases')"
            )));
        };
        let w = w.as_array().ok_or_else(|| {
            fail(format!(
                "{at}: the filters are a {}, expected a numeric array",
                w.kind()
            ))
        })?;
        let b = match b {
            None => None,
            Some(b) => Some(b.as_array().ok_or_else(|| {
                fail(format!(
                    "{at}: the biases are a {}, expected a numeric array",
                    b.kind()
                ))
            })?),
        };
        convs.push(conv_to_pytorch(name, w, b).map_err(|m| fail(format!("{at}: {m}")))?);
    }

    let norm = var("meta")
        .and_then(|m| m.field("normalization"))
        .or_else(|| var("normalization"));
    let mean_rgb = match norm.and_then(|n| n.field("averageImage")) {
        None => None,
        Some(v) => {
            let a = v.as_array().ok_or_else(|| {
                fail(format!(
                    "normalization.averageImage is a {}, expected a numeric array",
                    v.kind()
                ))
            })?;
            mean_pixel(a).map_err(|m| fail(format!("normalization.averageImage: {m}")))?
        }
    };
    Ok(MatConvNetModel { convs, mean_rgb })
}

/// Converts MatConvNet filters `[H, W, Cin, Cout]` (column-major) and biases
/// to PyTorch's row-major `[Cout, Cin, H, W]` and `[Cout]`.
fn conv_to_pytorch(
    name: String,
    w: &MatArray,
    b: Option<&MatArray>,
) -> Result<MatConvNetConv, String> {
    let dtype = match w.class {
        MatClass::Single => PthDtype::F32,
        MatClass::Double => PthDtype::F64,
        c => {
            return Err(format!(
                "filters must be single or double, found {}",
                c.name()
            ))
        }
    };
    // MATLAB drops trailing singleton dimensions (Cout = 1, Cin = 1).
    if w.dims.len() > 4 && w.dims[4..].iter().any(|&d| d != 1) {
        return Err(format!(
            "filters have dims {:?}, expected [H, W, Cin, Cout]",
            w.dims
        ));
    }
    // Without elements the dims are unchecked by the data, and a zero bias of Cout
    // (up to 2^31 - 1) elements would be allocated for a file of a few hundred bytes.
    if w.data.is_empty() {
        return Err(format!("filters have dims {:?} and no elements", w.dims));
    }
    let dim = |k: usize| w.dims.get(k).copied().unwrap_or(1);
    let (kh, kw, cin, cout) = (dim(0), dim(1), dim(2), dim(3));
    // Borrow single-precision data instead of copying it (VGG-19: 550 MB).
    let converted;
    let src: &[f32] = match &w.data {
        MatData::F32(v) => v,
        _ => {
            converted = w.to_f32_vec();
            &converted
        }
    };
    let n = src.len();
    let mut data = Vec::with_capacity(n);
    if n > 0 {
        // Element (h, w, ci, co) is at h + H*(w + W*(ci + Cin*co)) in the
        // column-major source; push it in row-major [co][ci][h][w] order.
        for co in 0..cout {
            for ci in 0..cin {
                let base = kh * kw * (ci + cin * co);
                for h in 0..kh {
                    for x in 0..kw {
                        data.push(src[base + h + kh * x]);
                    }
                }
            }
        }
    }
    let bias = match b {
        Some(b) if !b.data.is_empty() => {
            if b.numel() != cout {
                return Err(format!(
                    "the biases have dims {:?} ({} elements), expected {cout}",
                    b.dims,
                    b.numel()
                ));
            }
            b.to_f32_vec()
        }
        _ => vec![0.0; cout],
    };
    Ok(MatConvNetConv {
        name,
        weight: RawTensor {
            shape: vec![cout, cin, kh, kw],
            dtype,
            data,
        },
        bias: RawTensor {
            shape: vec![cout],
            dtype,
            data: bias,
        },
    })
}

/// The mean pixel of `averageImage`: 3 values, or an `[H, W, 3]` image
/// averaged over H and W.  `None` when it is empty.
fn mean_pixel(a: &MatArray) -> Result<Option<[f32; 3]>, String> {
    let v = a.to_f64_vec();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() == 3 {
        return Ok(Some([v[0] as f32, v[1] as f32, v[2] as f32]));
    }
    let is_image = a.dims.len() >= 3 && a.dims[2] == 3 && a.dims[3..].iter().all(|&d| d == 1);
    if !is_image {
        return Err(format!(
            "expected 3 values or an [H, W, 3] image, found dims {:?}",
            a.dims
        ));
    }
    // Column-major [H, W, 3]: channel c is the contiguous block c*H*W.
    let plane = v.len() / 3;
    let mut mean = [0f32; 3];
    for (c, m) in mean.iter_mut().enumerate() {
        let sum: f64 = v[c * plane..(c + 1) * plane].iter().sum();
        *m = (sum / plane as f64) as f32;
    }
    Ok(Some(mean))
}
