//! Darknet models: the `.cfg` network description and the `.weights` file of the darknet
//! program (pjreddie/darknet, 2018), built as an aics [`Module`].
//!
//! Sections: `[net]`, `[convolutional]` (batch norm, groups, `pad=1` meaning `size/2`),
//! `[maxpool]` (darknet's padding: `size − 1` by default, `padding/2` before and the rest after,
//! padded cells never win), `[avgpool]` (global), `[route]` (concatenation of earlier outputs,
//! negative indices relative), `[shortcut]` (`alpha·input + beta·from`, then the activation),
//! `[upsample]` (nearest, times `scale`), `[connected]`, `[local]` (an unshared convolution),
//! `[dropout]` (identity at inference), `[softmax]`, and the detection heads `[yolo]`,
//! `[region]` and `[detection]`, whose activated outputs [`Darknet::forward_heads`] returns for
//! [`crate::yolo`] to decode. Batch norm is darknet's: `(x − mean)/(√var + 1e-6)·scale + bias`,
//! the epsilon outside the root.
//!
//! Every layer's tensors have state-dict keys under its index (`3.weight`, `3.scales`,
//! `3.rolling_mean`, …), darknet's own names.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aics_nn::{Fields, Kind, Module};
use aics_tensor::{ConvParams, Interp, PoolParams, Rng, Tensor};

use crate::error::{DetectError, Result};

/// One `[section]` of a cfg file with its `key=value` options and their line numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub options: Vec<(String, String, usize)>,
}

fn cfg_err(line: usize, msg: impl std::fmt::Display) -> String {
    format!("line {line}: {msg}")
}

/// Parse the text of a darknet `.cfg` file: `[section]` headers, `key=value` lines, comments
/// starting with `#` or `;`, blank lines. Errors name the line.
pub fn parse_cfg(text: &str) -> std::result::Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if s.is_empty() || s.starts_with('#') || s.starts_with(';') {
            continue;
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(cfg_err(
                    line,
                    format!("`{}` opens a section without closing `]`", raw.trim()),
                ));
            };
            if name.is_empty() {
                return Err(cfg_err(line, "empty section name `[]`"));
            }
            out.push(Section {
                name: name.to_string(),
                line,
                options: Vec::new(),
            });
            continue;
        }
        let Some((k, v)) = s.split_once('=') else {
            return Err(cfg_err(
                line,
                format!("expected `key=value` or `[section]`, got `{}`", raw.trim()),
            ));
        };
        if k.is_empty() {
            return Err(cfg_err(
                line,
                format!("`{}` has no key before `=`", raw.trim()),
            ));
        }
        let Some(sec) = out.last_mut() else {
            return Err(cfg_err(line, format!("option `{k}` before any [section]")));
        };
        sec.options.push((k.to_string(), v.to_string(), line));
    }
    if out.is_empty() {
        return Err("no [net] section: not a darknet cfg file".into());
    }
    Ok(out)
}

impl Section {
    fn find(&self, key: &str) -> Option<(&str, usize)> {
        self.options
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (v.as_str(), *l))
    }
    fn int(&self, key: &str, default: i64) -> std::result::Result<i64, String> {
        match self.find(key) {
            None => Ok(default),
            Some((v, l)) => v
                .parse::<i64>()
                .or_else(|_| v.parse::<f64>().map(|f| f as i64))
                .map_err(|_| cfg_err(l, format!("[{}] {key}={v}: expected an integer", self.name))),
        }
    }
    fn uint(&self, key: &str, default: usize, min: usize) -> std::result::Result<usize, String> {
        let v = self.int(key, default as i64)?;
        if v < min as i64 {
            let l = self.find(key).map_or(self.line, |x| x.1);
            return Err(cfg_err(
                l,
                format!("[{}] {key}={v}: must be at least {min}", self.name),
            ));
        }
        if v > MAX_DIM as i64 {
            let l = self.find(key).map_or(self.line, |x| x.1);
            return Err(cfg_err(
                l,
                format!("[{}] {key}={v}: must be at most {MAX_DIM}", self.name),
            ));
        }
        Ok(v as usize)
    }
    fn float(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        match self.find(key) {
            None => Ok(default),
            Some((v, l)) => v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| cfg_err(l, format!("[{}] {key}={v}: expected a number", self.name))),
        }
    }
    fn str(&self, key: &str, default: &'static str) -> String {
        self.find(key)
            .map_or(default.to_string(), |(v, _)| v.to_string())
    }
    /// A comma-separated list option (`anchors=10,14,23,27`, `layers=-1,8`); empty when absent.
    fn list<V: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> std::result::Result<Vec<V>, String> {
        let Some((v, l)) = self.find(key) else {
            return Ok(Vec::new());
        };
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<V>()
                    .map_err(|_| cfg_err(l, format!("[{}] {key}: `{s}` is not {what}", self.name)))
            })
            .collect()
    }
    fn floats(&self, key: &str) -> std::result::Result<Vec<f64>, String> {
        self.list(key, "a number")
    }
    fn ints(&self, key: &str) -> std::result::Result<Vec<i64>, String> {
        self.list(key, "an integer")
    }
    fn err(&self, msg: impl std::fmt::Display) -> String {
        cfg_err(self.line, format!("[{}] {msg}", self.name))
    }
}

/// Darknet activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Leaky,
    Relu,
    Logistic,
    Tanh,
}

impl Activation {
    fn parse(s: &Section, default: &'static str) -> std::result::Result<Self, String> {
        Ok(match s.str("activation", default).as_str() {
            "linear" => Activation::Linear,
            "leaky" => Activation::Leaky,
            "relu" => Activation::Relu,
            "logistic" => Activation::Logistic,
            "tanh" => Activation::Tanh,
            other => {
                let l = s.find("activation").map_or(s.line, |x| x.1);
                return Err(cfg_err(l, format!("[{}] activation `{other}` is not supported (linear, leaky, relu, logistic, tanh)", s.name)));
            }
        })
    }
    fn apply(self, x: Tensor) -> Tensor {
        match self {
            Activation::Linear => x,
            Activation::Leaky => x.leaky_relu(0.1),
            Activation::Relu => x.relu(),
            Activation::Logistic => x.sigmoid(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Darknet's batch normalisation at inference: `(x − mean)/(√var + 1e-6)`.
pub const DARKNET_BN_EPS: f32 = 1e-6;

/// `[convolutional]` and `[connected]`: weights, biases (batch norm's shift when there is batch
/// norm), and batch norm's scales and rolling statistics.
#[derive(aics_nn::Module)]
pub struct DarknetConv {
    #[param]
    pub weight: Tensor,
    #[param]
    pub bias: Tensor,
    #[param]
    pub scales: Option<Tensor>,
    #[buffer]
    pub rolling_mean: Option<Tensor>,
    #[buffer]
    pub rolling_variance: Option<Tensor>,
    /// `None` for `[connected]`.
    pub conv: Option<ConvParams>,
    pub activation: Activation,
    #[training]
    training: AtomicBool,
}

impl DarknetConv {
    /// Per output channel, the scale and shift that batch norm applies at inference.
    fn bn_affine(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let (s, m, v) = (
            self.scales.as_ref()?,
            self.rolling_mean.as_ref()?,
            self.rolling_variance.as_ref()?,
        );
        let (s, m, v, b) = (s.to_vec(), m.to_vec(), v.to_vec(), self.bias.to_vec());
        let k: Vec<f32> = s
            .iter()
            .zip(&v)
            .map(|(s, v)| s / (v.sqrt() + DARKNET_BN_EPS))
            .collect();
        let sh: Vec<f32> = b
            .iter()
            .zip(&m)
            .zip(&k)
            .map(|((b, m), k)| b - m * k)
            .collect();
        Some((k, sh))
    }

    /// This layer with batch norm folded into the weights and bias (inference only).
    pub fn fused(&self) -> Result<DarknetConv> {
        let Some((k, sh)) = self.bn_affine() else {
            return Ok(DarknetConv {
                weight: self.weight.copy(),
                bias: self.bias.copy(),
                scales: None,
                rolling_mean: None,
                rolling_variance: None,
                conv: self.conv,
                activation: self.activation,
                training: AtomicBool::new(false),
            });
        };
        let shape = self.weight.shape().to_vec();
        let per = self.weight.numel() / shape[0].max(1);
        let mut w = self.weight.to_vec();
        for (o, chunk) in w.chunks_mut(per).enumerate() {
            for x in chunk {
                *x *= k[o];
            }
        }
        Ok(DarknetConv {
            weight: Tensor::from_vec(w, &shape)?,
            bias: Tensor::from_vec(sh, &[shape[0]])?,
            scales: None,
            rolling_mean: None,
            rolling_variance: None,
            conv: self.conv,
            activation: self.activation,
            training: AtomicBool::new(false),
        })
    }
}

impl Module for DarknetConv {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let training = self.training.load(Ordering::Relaxed);
        let has_bn = self.scales.is_some();
        let y = match self.conv {
            // the activation fused into the convolution's output pass
            Some(p) if !has_bn && self.activation == Activation::Leaky => {
                return Ok(x.conv2d_leaky_relu(&self.weight, Some(&self.bias), p, 0.1)?);
            }
            Some(p) if !has_bn && self.activation == Activation::Relu => {
                return Ok(x.conv2d_relu(&self.weight, Some(&self.bias), p)?);
            }
            Some(p) if !has_bn => x.conv2d(&self.weight, Some(&self.bias), p)?,
            Some(p) => x.conv2d(&self.weight, None, p)?,
            None => {
                let x = x.flatten(1)?;
                let y = x.matmul(&self.weight.transpose(0, 1)?)?;
                if has_bn {
                    y
                } else {
                    y.add(&self.bias.unsqueeze(0)?)?
                }
            }
        };
        let y = if has_bn {
            if training {
                // batch statistics (over the batches of all ranks under a SyncBatchNorm guard);
                // the epsilon sits inside the root here (darknet trains that way)
                aics_nn::distributed::layer_batch_norm(
                    &y,
                    self.scales.as_ref(),
                    Some(&self.bias),
                    self.rolling_mean.as_ref(),
                    self.rolling_variance.as_ref(),
                    true,
                    0.01,
                    1e-5,
                )?
            } else {
                let (k, sh) = self.bn_affine().unwrap_or_default();
                let c = k.len();
                let dims: Vec<usize> = if y.rank() == 4 {
                    vec![1, c, 1, 1]
                } else {
                    vec![1, c]
                };
                y.mul(&Tensor::from_vec(k, &dims)?)?
                    .add(&Tensor::from_vec(sh, &dims)?)?
            }
        } else {
            y
        };
        Ok(self.activation.apply(y))
    }
    fn type_name(&self) -> String {
        let s = self.weight.shape();
        match self.conv {
            Some(p) => format!(
                "conv {}→{} {}x{}/{}{}",
                s[1] * p.groups,
                s[0],
                s[2],
                s[3],
                p.stride.0,
                if self.scales.is_some() { " bn" } else { "" }
            ),
            None => format!("connected {}→{}", s[1], s[0]),
        }
    }
}

/// `[local]`: a convolution whose weights differ at every output location.
#[derive(aics_nn::Module)]
pub struct DarknetLocal {
    /// `(locations, filters, channels·size·size)`, darknet's order.
    #[param]
    pub weight: Tensor,
    /// One per output value `(filters, out_h, out_w)`.
    #[param]
    pub bias: Tensor,
    pub size: usize,
    pub stride: usize,
    pub pad: usize,
    pub activation: Activation,
}

impl Module for DarknetLocal {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let sh = x.shape().to_vec();
        let (n, c, h, w) = (sh[0], sh[1], sh[2], sh[3]);
        let [l, f, _] = [
            self.weight.shape()[0],
            self.weight.shape()[1],
            self.weight.shape()[2],
        ];
        let (oh, ow) = (self.bias.shape()[1], self.bias.shape()[2]);
        let p = self.pad;
        let xp = x.pad(&[(0, 0), (0, 0), (p, p), (p, p)], 0.0)?;
        let mut acc: Option<Tensor> = None;
        // out[n, f, loc] = Σ_{c, ky, kx} W[loc, f, (c·size + ky)·size + kx] · x[n, c, loc + (ky, kx)]
        let wt = self.weight.reshape(&[l, f, c, self.size * self.size])?;
        for ky in 0..self.size {
            for kx in 0..self.size {
                let xs = xp
                    .slice(2, ky, ky + (oh - 1) * self.stride + 1, self.stride)?
                    .slice(3, kx, kx + (ow - 1) * self.stride + 1, self.stride)?
                    .reshape(&[n, 1, c, oh * ow])?;
                // (L, F, C) → (1, F, C, L)
                let wk = wt
                    .narrow(3, ky * self.size + kx, 1)?
                    .reshape(&[l, f, c])?
                    .permute(&[1, 2, 0])?
                    .unsqueeze(0)?;
                let term = xs.mul(&wk)?.sum_dim(2, false)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => a.add(&term)?,
                });
            }
        }
        let _ = (h, w);
        let y = acc
            .ok_or_else(|| {
                aics_nn::NnError::from(aics_tensor::TensorError::Arg {
                    op: "local",
                    msg: "empty kernel".into(),
                })
            })?
            .reshape(&[n, f, oh, ow])?
            .add(&self.bias.unsqueeze(0)?)?;
        Ok(self.activation.apply(y))
    }
    fn type_name(&self) -> String {
        format!(
            "local {}x{}/{} → {}",
            self.size,
            self.size,
            self.stride,
            self.weight.shape()[1]
        )
    }
}

/// A `[yolo]` head: the anchors it predicts with (in network-input pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct YoloHead {
    pub classes: usize,
    /// `(w, h)` of each anchor this head uses (`mask` applied).
    pub anchors: Vec<(f64, f64)>,
}

/// A `[region]` head (YOLOv2): anchors in grid cells, softmax over classes.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionHead {
    pub classes: usize,
    pub coords: usize,
    pub anchors: Vec<(f64, f64)>,
    pub softmax: bool,
}

/// A `[detection]` head (YOLOv1): output `[S²·C class probabilities][S²·B confidences][S²·B·4
/// boxes]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionHead {
    pub classes: usize,
    pub coords: usize,
    pub side: usize,
    pub num: usize,
    pub sqrt: bool,
    pub softmax: bool,
}

/// What a layer is.
pub enum Layer {
    Conv(DarknetConv),
    Connected(DarknetConv),
    Local(DarknetLocal),
    MaxPool {
        size: usize,
        stride: usize,
        padding: usize,
    },
    AvgPool,
    Route(Vec<usize>),
    Shortcut {
        from: usize,
        alpha: f64,
        beta: f64,
        activation: Activation,
    },
    Upsample {
        stride: usize,
        scale: f64,
    },
    Dropout,
    /// darknet's `[softmax]`: the flat input cut into `groups` equal blocks, each
    /// `softmax(x / temperature)`.
    Softmax {
        groups: usize,
        temperature: f64,
    },
    Yolo(YoloHead),
    Region(RegionHead),
    Detection(DetectionHead),
}

impl Layer {
    /// Whether the layer is a detection head (`[yolo]`, `[region]` or `[detection]`).
    pub fn is_head(&self) -> bool {
        matches!(
            self,
            Layer::Yolo(_) | Layer::Region(_) | Layer::Detection(_)
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "convolutional",
            Layer::Connected(_) => "connected",
            Layer::Local(_) => "local",
            Layer::MaxPool { .. } => "maxpool",
            Layer::AvgPool => "avgpool",
            Layer::Route(_) => "route",
            Layer::Shortcut { .. } => "shortcut",
            Layer::Upsample { .. } => "upsample",
            Layer::Dropout => "dropout",
            Layer::Softmax { .. } => "softmax",
            Layer::Yolo(_) => "yolo",
            Layer::Region(_) => "region",
            Layer::Detection(_) => "detection",
        }
    }
}

/// A darknet network: its input size, layers and each layer's output shape `(c, h, w)`.
pub struct Darknet {
    /// `[net]` width, height, channels.
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub layers: Vec<Layer>,
    /// Output shape of each layer, `(c, h, w)` (`(n, 1, 1)` after `[connected]`).
    pub shapes: Vec<(usize, usize, usize)>,
}

/// The raw output of a detection head, for [`crate::yolo`] to decode.
pub enum HeadOutput<'a> {
    Yolo(&'a YoloHead, Tensor),
    Region(&'a RegionHead, Tensor),
    Detection(&'a DetectionHead, Tensor),
}

impl<'a> HeadOutput<'a> {
    /// `layer`'s output `t`, when the layer is a detection head.
    pub fn of(layer: &'a Layer, t: Tensor) -> Option<Self> {
        match layer {
            Layer::Yolo(h) => Some(HeadOutput::Yolo(h, t)),
            Layer::Region(h) => Some(HeadOutput::Region(h, t)),
            Layer::Detection(h) => Some(HeadOutput::Detection(h, t)),
            _ => None,
        }
    }

    /// The head's output, without the head.
    pub fn into_tensor(self) -> Tensor {
        match self {
            HeadOutput::Yolo(_, t) | HeadOutput::Region(_, t) | HeadOutput::Detection(_, t) => t,
        }
    }
}

fn anchors_of(s: &Section) -> std::result::Result<Vec<(f64, f64)>, String> {
    let a = s.floats("anchors")?;
    if a.len() % 2 != 0 {
        return Err(s.err(format!("anchors: {} numbers, expected pairs", a.len())));
    }
    Ok(a.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// The most values one layer's weights or output may have (2³⁰, 4 GiB of `f32`): a cfg asking
/// for more is refused before anything is allocated.
const MAX_VALUES: usize = 1 << 30;
/// The largest size, count or stride a cfg option may give.
const MAX_DIM: usize = 1 << 20;

fn check_size(s: &Section, shape: &[usize]) -> std::result::Result<(), String> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= MAX_VALUES => Ok(()),
        _ => Err(s.err(format!(
            "weights of shape {shape:?} are beyond any network this builds"
        ))),
    }
}

/// A trained parameter, zero until weights are loaded or [`Darknet::randomize`]d.
fn param(shape: &[usize]) -> Tensor {
    aics_nn::init::constant(shape, 0.0)
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
}

impl Darknet {
    /// Build a network from the text of a `.cfg` file, with zero weights (load a `.weights`
    /// file with [`Darknet::load_weights`]). Errors name the line.
    pub fn from_cfg(text: &str) -> std::result::Result<Darknet, String> {
        let secs = parse_cfg(text)?;
        let net = &secs[0];
        if net.name != "net" && net.name != "network" {
            return Err(net.err("the first section must be [net]"));
        }
        let width = net.uint("width", 0, 1)?;
        let height = net.uint("height", 0, 1)?;
        let channels = net.uint("channels", 0, 1)?;
        if width * height * channels > MAX_VALUES {
            return Err(net.err(format!(
                "input {channels}x{height}x{width} is beyond any network this builds"
            )));
        }
        let mut layers = Vec::new();
        let mut shapes: Vec<(usize, usize, usize)> = Vec::new();
        let mut rng = Rng::new(0);
        let _ = &mut rng;
        for s in &secs[1..] {
            let i = layers.len();
            let (c, h, w) = shapes.last().copied().unwrap_or((channels, height, width));
            let resolve = |v: i64| -> std::result::Result<usize, String> {
                let j = if v < 0 { i as i64 + v } else { v };
                if j < 0 || j >= i as i64 {
                    return Err(s.err(format!(
                        "layer index {v} is not an earlier layer (this is layer {i})"
                    )));
                }
                Ok(j as usize)
            };
            let (layer, shape) = match s.name.as_str() {
                "convolutional" | "conv" => {
                    let filters = s.uint("filters", 1, 1)?;
                    let size = s.uint("size", 1, 1)?;
                    let stride = s.uint("stride", 1, 1)?;
                    let pad = s.uint("pad", 0, 0)?;
                    let mut padding = s.uint("padding", 0, 0)?;
                    if pad != 0 {
                        padding = size / 2;
                    }
                    let groups = s.uint("groups", 1, 1)?;
                    let bn = s.int("batch_normalize", 0)? != 0;
                    let act = Activation::parse(s, "logistic")?;
                    if c % groups != 0 || filters % groups != 0 {
                        return Err(s.err(format!("groups={groups} must divide the {c} input channels and the {filters} filters")));
                    }
                    if h + 2 * padding < size || w + 2 * padding < size {
                        return Err(s.err(format!("a {size}x{size} kernel does not fit the {h}x{w} input with padding {padding}")));
                    }
                    let oh = (h + 2 * padding - size) / stride + 1;
                    let ow = (w + 2 * padding - size) / stride + 1;
                    check_size(s, &[filters, c / groups, size, size])?;
                    let conv = DarknetConv {
                        weight: param(&[filters, c / groups, size, size]),
                        bias: param(&[filters]),
                        scales: bn.then(|| aics_nn::init::constant(&[filters], 1.0)),
                        rolling_mean: bn.then(|| zeros(&[filters])),
                        rolling_variance: bn.then(|| Tensor::ones(&[filters])),
                        conv: Some(
                            ConvParams::default()
                                .stride(stride)
                                .padding(padding)
                                .groups(groups),
                        ),
                        activation: act,
                        training: AtomicBool::new(false),
                    };
                    (Layer::Conv(conv), (filters, oh, ow))
                }
                "connected" | "conn" => {
                    let out = s.uint("output", 1, 1)?;
                    let bn = s.int("batch_normalize", 0)? != 0;
                    let act = Activation::parse(s, "logistic")?;
                    let inputs = c * h * w;
                    check_size(s, &[out, inputs])?;
                    let fc = DarknetConv {
                        weight: param(&[out, inputs]),
                        bias: param(&[out]),
                        scales: bn.then(|| aics_nn::init::constant(&[out], 1.0)),
                        rolling_mean: bn.then(|| zeros(&[out])),
                        rolling_variance: bn.then(|| Tensor::ones(&[out])),
                        conv: None,
                        activation: act,
                        training: AtomicBool::new(false),
                    };
                    (Layer::Connected(fc), (out, 1, 1))
                }
                "local" => {
                    let filters = s.uint("filters", 1, 1)?;
                    let size = s.uint("size", 1, 1)?;
                    let stride = s.uint("stride", 1, 1)?;
                    let pad = s.uint("pad", 0, 0)?;
                    let act = Activation::parse(s, "logistic")?;
                    // darknet: out = (h − (pad ? 1 : size))/stride + 1, padded by `pad` cells
                    let sub = if pad != 0 { 1 } else { size };
                    if h < sub || w < sub || (pad != 0 && 2 * pad + 1 < size) {
                        return Err(s.err(format!(
                            "a {size}x{size} window with pad {pad} does not fit the {h}x{w} input"
                        )));
                    }
                    let oh = (h - sub) / stride + 1;
                    let ow = (w - sub) / stride + 1;
                    if (oh - 1) * stride + size > h + 2 * pad
                        || (ow - 1) * stride + size > w + 2 * pad
                    {
                        return Err(s.err(format!(
                            "a {size}x{size} window with pad {pad} does not fit the {h}x{w} input"
                        )));
                    }
                    check_size(s, &[oh * ow, filters, c * size * size])?;
                    let l = DarknetLocal {
                        weight: param(&[oh * ow, filters, c * size * size]),
                        bias: param(&[filters, oh, ow]),
                        size,
                        stride,
                        pad,
                        activation: act,
                    };
                    (Layer::Local(l), (filters, oh, ow))
                }
                "maxpool" | "max" => {
                    let stride = s.uint("stride", 1, 1)?;
                    let size = s.uint("size", stride, 1)?;
                    let padding = s.uint("padding", size - 1, 0)?;
                    if w + padding < size || h + padding < size {
                        return Err(s.err(format!(
                            "a {size}x{size} window does not fit the {h}x{w} input"
                        )));
                    }
                    let oh = (h + padding - size) / stride + 1;
                    let ow = (w + padding - size) / stride + 1;
                    (
                        Layer::MaxPool {
                            size,
                            stride,
                            padding,
                        },
                        (c, oh, ow),
                    )
                }
                "avgpool" | "avg" => (Layer::AvgPool, (c, 1, 1)),
                "dropout" => (Layer::Dropout, (c, h, w)),
                "softmax" | "soft" => {
                    let groups = s.uint("groups", 1, 1)?;
                    let temperature = s.float("temperature", 1.0)?;
                    if (c * h * w) % groups != 0 || temperature == 0.0 {
                        return Err(s.err(format!(
                            "groups={groups} must divide the {} inputs, temperature must not be 0",
                            c * h * w
                        )));
                    }
                    (
                        Layer::Softmax {
                            groups,
                            temperature,
                        },
                        (c, h, w),
                    )
                }
                "route" => {
                    let idx = s.ints("layers")?;
                    if idx.is_empty() {
                        return Err(s.err("needs layers=…"));
                    }
                    let idx: Vec<usize> = idx
                        .into_iter()
                        .map(resolve)
                        .collect::<std::result::Result<_, _>>()?;
                    let (_, h0, w0) = shapes[idx[0]];
                    let mut ct = 0;
                    for &j in &idx {
                        let (cj, hj, wj) = shapes[j];
                        if (hj, wj) != (h0, w0) {
                            return Err(s.err(format!("layer {j} is {hj}x{wj}, layer {} is {h0}x{w0}: route needs equal sizes", idx[0])));
                        }
                        ct += cj;
                    }
                    (Layer::Route(idx), (ct, h0, w0))
                }
                "shortcut" => {
                    let from = resolve(s.int("from", -1)?)?;
                    if shapes[from] != (c, h, w) {
                        return Err(s.err(format!(
                            "layer {from} is {:?}, the input is {:?}: shortcut needs equal shapes",
                            shapes[from],
                            (c, h, w)
                        )));
                    }
                    let alpha = s.float("alpha", 1.0)?;
                    let beta = s.float("beta", 1.0)?;
                    let activation = Activation::parse(s, "linear")?;
                    (
                        Layer::Shortcut {
                            from,
                            alpha,
                            beta,
                            activation,
                        },
                        (c, h, w),
                    )
                }
                "upsample" => {
                    let stride = s.int("stride", 2)?;
                    if stride < 1 || stride > MAX_DIM as i64 {
                        return Err(s.err(format!(
                            "stride={stride}: only upsampling (stride ≥ 1) is supported"
                        )));
                    }
                    let scale = s.float("scale", 1.0)?;
                    let st = stride as usize;
                    (Layer::Upsample { stride: st, scale }, (c, h * st, w * st))
                }
                "yolo" => {
                    let classes = s.uint("classes", 20, 1)?;
                    let mut anchors = anchors_of(s)?;
                    let total = s.uint("num", 1, 1)?;
                    // darknet starts every anchor at 0.5 and overwrites those the cfg lists
                    if anchors.len() < total {
                        anchors.resize(total, (0.5, 0.5));
                    }
                    let mask = s.ints("mask")?;
                    let mask: Vec<usize> = if mask.is_empty() {
                        (0..total).collect()
                    } else {
                        mask.into_iter()
                            .map(|m| {
                                if m < 0 || m as usize >= anchors.len() {
                                    Err(s.err(format!(
                                        "mask {m} names no anchor ({} anchors)",
                                        anchors.len()
                                    )))
                                } else {
                                    Ok(m as usize)
                                }
                            })
                            .collect::<std::result::Result<_, _>>()?
                    };
                    if c != mask.len() * (classes + 5) {
                        return Err(s.err(format!("input has {c} channels, expected {} anchors × ({classes} classes + 5) = {}", mask.len(), mask.len() * (classes + 5))));
                    }
                    let anchors = mask.iter().map(|&m| anchors[m]).collect();
                    (Layer::Yolo(YoloHead { classes, anchors }), (c, h, w))
                }
                "region" => {
                    let classes = s.uint("classes", 20, 1)?;
                    let coords = s.uint("coords", 4, 4)?;
                    let num = s.uint("num", 1, 1)?;
                    let anchors = anchors_of(s)?;
                    if anchors.len() < num {
                        return Err(s.err(format!("num={num} but {} anchors", anchors.len())));
                    }
                    if s.find("tree").is_some() || s.find("map").is_some() {
                        return Err(s.err("softmax trees (tree=, map=) are not supported"));
                    }
                    if c != num * (coords + 1 + classes) {
                        return Err(s.err(format!(
                            "input has {c} channels, expected num × (coords + 1 + classes) = {}",
                            num * (coords + 1 + classes)
                        )));
                    }
                    let softmax = s.int("softmax", 0)? != 0;
                    (
                        Layer::Region(RegionHead {
                            classes,
                            coords,
                            anchors: anchors[..num].to_vec(),
                            softmax,
                        }),
                        (c, h, w),
                    )
                }
                "detection" => {
                    let classes = s.uint("classes", 1, 1)?;
                    let coords = s.uint("coords", 1, 4)?;
                    let side = s.uint("side", 7, 1)?;
                    let num = s.uint("num", 1, 1)?;
                    let inputs = c * h * w;
                    let want = side * side * ((1 + coords) * num + classes);
                    if inputs != want {
                        return Err(s.err(format!("input has {inputs} values, expected side² × ((1 + coords) × num + classes) = {want}")));
                    }
                    let sqrt = s.int("sqrt", 0)? != 0;
                    let softmax = s.int("softmax", 0)? != 0;
                    (
                        Layer::Detection(DetectionHead {
                            classes,
                            coords,
                            side,
                            num,
                            sqrt,
                            softmax,
                        }),
                        (inputs, 1, 1),
                    )
                }
                "cost" => (Layer::Dropout, (c, h, w)),
                other => return Err(s.err(format!("layer type `{other}` is not supported"))),
            };
            let (oc, oh, ow) = shape;
            if oc.saturating_mul(oh).saturating_mul(ow) > MAX_VALUES {
                return Err(s.err(format!(
                    "output {oc}x{oh}x{ow} is beyond any network this builds"
                )));
            }
            layers.push(layer);
            shapes.push(shape);
        }
        if layers.is_empty() {
            return Err(net.err("no layers after [net]"));
        }
        Ok(Darknet {
            width,
            height,
            channels,
            layers,
            shapes,
        })
    }

    /// Read a cfg file (see [`Darknet::from_cfg`]).
    pub fn read_cfg(path: &Path) -> Result<Darknet> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        Darknet::from_cfg(&text).map_err(|e| file_err(path, e))
    }

    /// Load a darknet `.weights` file: header `major, minor, revision` (int32), `seen` (int64
    /// when `major·10 + minor ≥ 2` and both are below 1000, else int32), then per layer in
    /// order: convolutional — biases, [scales, rolling mean, rolling variance], weights;
    /// connected — biases, weights (transposed when major or minor > 1000), [scales, mean,
    /// variance]; local — biases, weights. A file with too few or too many values is refused,
    /// naming the layer.
    pub fn load_weights_bytes(&self, bytes: &[u8]) -> std::result::Result<WeightsHeader, String> {
        if bytes.len() < 16 {
            return Err(format!(
                "{} bytes: too short for a darknet weights header (16 or 20 bytes)",
                bytes.len()
            ));
        }
        let i32_at =
            |o: usize| i32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let (major, minor, revision) = (i32_at(0), i32_at(4), i32_at(8));
        let (seen, mut off) = if (major * 10 + minor) >= 2 && major < 1000 && minor < 1000 {
            if bytes.len() < 20 {
                return Err("file ends inside the header".into());
            }
            (
                i64::from_le_bytes(bytes[12..20].try_into().unwrap_or([0; 8])),
                20usize,
            )
        } else {
            (i32_at(12) as i64, 16usize)
        };
        let transpose = major > 1000 || minor > 1000;
        if !(bytes.len() - off).is_multiple_of(4) {
            return Err(format!(
                "{} bytes after the header is not a whole number of float32 values",
                bytes.len() - off
            ));
        }
        let total = (bytes.len() - off) / 4;
        let mut read = |t: &Tensor,
                        i: usize,
                        kind: &str,
                        what: &str|
         -> std::result::Result<(), String> {
            let n = t.numel();
            if off + 4 * n > bytes.len() {
                let left = (bytes.len() - off) / 4;
                return Err(format!(
                    "layer {i} ({kind}): {what} needs {n} values but the file has {left} left; the cfg does not match these weights ({total} values in all)"
                ));
            }
            let v: Vec<f32> = bytes[off..off + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            off += 4 * n;
            t.update_data(|d| d.copy_from_slice(&v));
            Ok(())
        };
        for (i, l) in self.layers.iter().enumerate() {
            match l {
                Layer::Conv(c) => {
                    read(&c.bias, i, "convolutional", "biases")?;
                    if let (Some(s), Some(m), Some(v)) =
                        (&c.scales, &c.rolling_mean, &c.rolling_variance)
                    {
                        read(s, i, "convolutional", "scales")?;
                        read(m, i, "convolutional", "rolling mean")?;
                        read(v, i, "convolutional", "rolling variance")?;
                    }
                    read(&c.weight, i, "convolutional", "weights")?;
                }
                Layer::Connected(c) => {
                    read(&c.bias, i, "connected", "biases")?;
                    if transpose {
                        let sh = c.weight.shape().to_vec();
                        let tmp = Tensor::zeros(&[sh[1], sh[0]]);
                        read(&tmp, i, "connected", "weights")?;
                        let t = tmp.transpose(0, 1).map_err(|e| e.to_string())?.to_vec();
                        c.weight.update_data(|d| d.copy_from_slice(&t));
                    } else {
                        read(&c.weight, i, "connected", "weights")?;
                    }
                    if let (Some(s), Some(m), Some(v)) =
                        (&c.scales, &c.rolling_mean, &c.rolling_variance)
                    {
                        read(s, i, "connected", "scales")?;
                        read(m, i, "connected", "rolling mean")?;
                        read(v, i, "connected", "rolling variance")?;
                    }
                }
                Layer::Local(lc) => {
                    read(&lc.bias, i, "local", "biases")?;
                    read(&lc.weight, i, "local", "weights")?;
                }
                _ => {}
            }
        }
        if off != bytes.len() {
            return Err(format!(
                "{} values left after the last layer: the cfg does not match these weights ({total} values in all, the cfg needs {})",
                (bytes.len() - off) / 4,
                total - (bytes.len() - off) / 4
            ));
        }
        Ok(WeightsHeader {
            major,
            minor,
            revision,
            seen,
        })
    }

    /// Load a `.weights` file (see [`Darknet::load_weights_bytes`]).
    pub fn load_weights(&self, path: &Path) -> Result<WeightsHeader> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
        self.load_weights_bytes(&bytes)
            .map_err(|e| file_err(path, e))
    }

    /// A copy for inference with every batch norm folded into its layer's weights.
    pub fn fused(&self) -> Result<Darknet> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(match l {
                Layer::Conv(c) => Layer::Conv(c.fused()?),
                Layer::Connected(c) => Layer::Connected(c.fused()?),
                Layer::Local(lc) => Layer::Local(DarknetLocal {
                    weight: lc.weight.copy(),
                    bias: lc.bias.copy(),
                    size: lc.size,
                    stride: lc.stride,
                    pad: lc.pad,
                    activation: lc.activation,
                }),
                Layer::MaxPool {
                    size,
                    stride,
                    padding,
                } => Layer::MaxPool {
                    size: *size,
                    stride: *stride,
                    padding: *padding,
                },
                Layer::AvgPool => Layer::AvgPool,
                Layer::Route(v) => Layer::Route(v.clone()),
                Layer::Shortcut {
                    from,
                    alpha,
                    beta,
                    activation,
                } => Layer::Shortcut {
                    from: *from,
                    alpha: *alpha,
                    beta: *beta,
                    activation: *activation,
                },
                Layer::Upsample { stride, scale } => Layer::Upsample {
                    stride: *stride,
                    scale: *scale,
                },
                Layer::Dropout => Layer::Dropout,
                Layer::Softmax {
                    groups,
                    temperature,
                } => Layer::Softmax {
                    groups: *groups,
                    temperature: *temperature,
                },
                Layer::Yolo(y) => Layer::Yolo(y.clone()),
                Layer::Region(r) => Layer::Region(r.clone()),
                Layer::Detection(d) => Layer::Detection(d.clone()),
            });
        }
        Ok(Darknet {
            width: self.width,
            height: self.height,
            channels: self.channels,
            layers,
            shapes: self.shapes.clone(),
        })
    }

    /// Run the network on `x` (N, C, H, W) and return every layer's output.
    fn run(&self, x: &Tensor) -> aics_nn::Result<Vec<Tensor>> {
        let sh = x.shape();
        if sh.len() != 4 || sh[1] != self.channels || sh[2] != self.height || sh[3] != self.width {
            return Err(aics_nn::NnError::from(aics_tensor::TensorError::Shape {
                op: "darknet",
                msg: format!(
                    "expected input (N, {}, {}, {}), got {sh:?}",
                    self.channels, self.height, self.width
                ),
            }));
        }
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let input = if i == 0 { x } else { &outs[i - 1] };
            let y = match l {
                Layer::Conv(c) | Layer::Connected(c) => c.forward(input)?,
                Layer::Local(lc) => lc.forward(input)?,
                Layer::MaxPool {
                    size,
                    stride,
                    padding,
                } => {
                    // darknet pads `padding/2` before; after, only as much as the windows reach
                    // (none for a 2/2 pool on an even size); padded cells never win
                    let (_, oh, ow) = self.shapes[i];
                    let s = input.shape();
                    let before = padding / 2;
                    let after =
                        |n: usize, o: usize| ((o - 1) * stride + size).saturating_sub(before + n);
                    let (ah, aw) = (after(s[2], oh), after(s[3], ow));
                    let pool = PoolParams::new(*size).stride(*stride);
                    if before == 0 && ah == 0 && aw == 0 {
                        input.max_pool2d(pool)?
                    } else {
                        input
                            .pad(
                                &[(0, 0), (0, 0), (before, ah), (before, aw)],
                                f64::NEG_INFINITY,
                            )?
                            .max_pool2d(pool)?
                    }
                }
                Layer::AvgPool => {
                    let s = input.shape().to_vec();
                    input
                        .mean_dims(&[2, 3], true)?
                        .reshape(&[s[0], s[1], 1, 1])?
                }
                Layer::Dropout => input.clone(),
                Layer::Softmax {
                    groups,
                    temperature,
                } => {
                    let sh = input.shape().to_vec();
                    let x = input.reshape(&[
                        sh[0],
                        *groups,
                        sh[1..].iter().product::<usize>() / groups,
                    ])?;
                    let x = if *temperature == 1.0 {
                        x
                    } else {
                        x.mul_scalar(1.0 / temperature)
                    };
                    x.softmax(2)?.reshape(&sh)?
                }
                Layer::Route(idx) => {
                    let ts: Vec<&Tensor> = idx.iter().map(|&j| &outs[j]).collect();
                    if ts.len() == 1 {
                        ts[0].clone()
                    } else {
                        Tensor::concat(&ts, 1)?
                    }
                }
                Layer::Shortcut {
                    from,
                    alpha,
                    beta,
                    activation,
                } => {
                    let a = if *alpha == 1.0 {
                        input.clone()
                    } else {
                        input.mul_scalar(*alpha)
                    };
                    let b = if *beta == 1.0 {
                        outs[*from].clone()
                    } else {
                        outs[*from].mul_scalar(*beta)
                    };
                    activation.apply(a.add(&b)?)
                }
                Layer::Upsample { stride, scale } => {
                    let s = input.shape().to_vec();
                    let y = input.upsample(s[2] * stride, s[3] * stride, Interp::Nearest)?;
                    if *scale == 1.0 {
                        y
                    } else {
                        y.mul_scalar(*scale)
                    }
                }
                Layer::Yolo(h) => activate_head(input, h.anchors.len(), 4, h.classes, false)?,
                Layer::Region(h) => {
                    activate_head(input, h.anchors.len(), h.coords, h.classes, h.softmax)?
                }
                Layer::Detection(h) => {
                    if h.softmax {
                        let n = input.shape()[0];
                        let cells = h.side * h.side;
                        let flat = input.flatten(1)?;
                        let cls = flat
                            .narrow(1, 0, cells * h.classes)?
                            .reshape(&[n, cells, h.classes])?
                            .softmax(2)?
                            .reshape(&[n, cells * h.classes])?;
                        let rest =
                            flat.narrow(1, cells * h.classes, flat.shape()[1] - cells * h.classes)?;
                        Tensor::concat(&[&cls, &rest], 1)?.reshape(input.shape())?
                    } else {
                        input.clone()
                    }
                }
            };
            outs.push(y);
        }
        Ok(outs)
    }

    /// How many detection heads (`[yolo]`, `[region]`, `[detection]` layers) the network has.
    pub fn num_heads(&self) -> usize {
        self.layers.iter().filter(|l| l.is_head()).count()
    }

    /// Run the network and return every detection head's output, in layer order, activated as
    /// darknet's forward pass leaves it (see [`crate::yolo`]).
    pub fn forward_heads(&self, x: &Tensor) -> aics_nn::Result<Vec<HeadOutput<'_>>> {
        let outs = self.run(x)?;
        Ok(self
            .layers
            .iter()
            .zip(outs)
            .filter_map(|(l, y)| HeadOutput::of(l, y))
            .collect())
    }

    /// Random initial weights as darknet makes them: convolutions `√(2/fan_in)·N(0, 1)`,
    /// connected and local layers `√(2/fan_in)·U(−1, 1)`, biases 0, batch norm the identity.
    pub fn randomize(&self, rng: &mut Rng) {
        let fill = |t: &Tensor, f: &mut dyn FnMut() -> f32| {
            t.update_data(|d| d.iter_mut().for_each(|v| *v = f()))
        };
        for l in &self.layers {
            match l {
                Layer::Conv(c) | Layer::Connected(c) => {
                    let fan_in = (c.weight.numel() / c.weight.shape()[0].max(1)).max(1);
                    let scale = (2.0 / fan_in as f64).sqrt();
                    if c.conv.is_some() {
                        fill(&c.weight, &mut || (scale * rng.normal()) as f32);
                    } else {
                        fill(&c.weight, &mut || {
                            (scale * (2.0 * rng.uniform() - 1.0)) as f32
                        });
                    }
                    fill(&c.bias, &mut || 0.0);
                    for (t, v) in [
                        (&c.scales, 1.0),
                        (&c.rolling_mean, 0.0),
                        (&c.rolling_variance, 1.0),
                    ] {
                        if let Some(t) = t {
                            fill(t, &mut || v);
                        }
                    }
                }
                Layer::Local(lc) => {
                    let scale = (2.0 / lc.weight.shape()[2].max(1) as f64).sqrt();
                    fill(&lc.weight, &mut || {
                        (scale * (2.0 * rng.uniform() - 1.0)) as f32
                    });
                    fill(&lc.bias, &mut || 0.0);
                }
                _ => {}
            }
        }
    }

    /// Number of weights the `.weights` file must hold after its header.
    pub fn num_weights(&self) -> usize {
        let mut n = 0;
        self.visit("", &mut |_, t, _| n += t.numel());
        n
    }
}

/// The header of a `.weights` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightsHeader {
    pub major: i32,
    pub minor: i32,
    pub revision: i32,
    /// Images seen in training.
    pub seen: i64,
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> DetectError {
    DetectError::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

impl Fields for Darknet {
    fn visit_fields(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        for (i, l) in self.layers.iter().enumerate() {
            let p = aics_nn::module::key(prefix, &i.to_string());
            match l {
                Layer::Conv(c) | Layer::Connected(c) => c.visit(&p, f),
                Layer::Local(lc) => lc.visit(&p, f),
                _ => {}
            }
        }
    }
    fn set_training_fields(&self, training: bool) {
        for l in &self.layers {
            if let Layer::Conv(c) | Layer::Connected(c) = l {
                c.set_training(training);
            }
        }
    }
    fn visit_rngs_fields(&self, _prefix: &str, _f: &mut dyn FnMut(String, &Mutex<Rng>)) {}
    fn type_name_fields(&self) -> String {
        "Darknet".into()
    }
}

impl Module for Darknet {
    /// The last layer's output.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let mut outs = self.run(x)?;
        outs.pop().ok_or_else(|| {
            aics_nn::NnError::from(aics_tensor::TensorError::Arg {
                op: "darknet",
                msg: "no layers".into(),
            })
        })
    }
}

/// What darknet's `[yolo]` and `[region]` forward passes do to their input: per anchor block
/// `[x, y, w, h, (more coords), objectness, classes]`, the logistic on x, y and objectness, w and
/// h (and further coords) raw, and the classes through the logistic or a softmax.
fn activate_head(
    x: &Tensor,
    anchors: usize,
    coords: usize,
    classes: usize,
    softmax: bool,
) -> aics_nn::Result<Tensor> {
    let sh = x.shape().to_vec();
    let per = coords + 1 + classes;
    let t = x.reshape(&[sh[0], anchors, per, sh[2] * sh[3]])?;
    let xy = t.narrow(2, 0, 2)?.sigmoid();
    let wh = t.narrow(2, 2, coords - 2)?;
    let obj = t.narrow(2, coords, 1)?.sigmoid();
    let cls = t.narrow(2, coords + 1, classes)?;
    let cls = if softmax {
        cls.softmax(2)?
    } else {
        cls.sigmoid()
    };
    Ok(Tensor::concat(&[&xy, &wh, &obj, &cls], 2)?.reshape(&sh)?)
}

/// Class names, one a line (darknet's `coco.names`).
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    Ok(text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}
