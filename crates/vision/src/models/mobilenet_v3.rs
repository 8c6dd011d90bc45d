//! MobileNetV3 (Howard et al., 2019) as torchvision defines it: a 3×3/2 stem with hard-swish,
//! fifteen (large) or eleven (small) inverted-residual blocks — 1×1 expand, k×k depthwise,
//! optional squeeze-and-excitation (global pool, 1×1 reduce, ReLU, 1×1 expand, hard-sigmoid
//! gate), 1×1 linear projection, a residual connection when the shape is kept — with ReLU or
//! hard-swish, a 1×1 conv to 6× the last width, global average pooling and `classifier`
//! (linear, hard-swish, dropout 0.2, linear). Batch norm eps 0.001, momentum 0.01.
//! Keys `features.N.block.M.*` (`.fc1`, `.fc2` in the SE layer), `classifier.{0,3}.*`.
//!
//! The detection models build the same blocks with frozen batch norm, and may halve the last
//! stage (`reduced_tail`) or dilate it instead of striding (`dilated`).

use aics_nn::layers::{
    AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Hardswish, Linear, ReLU, ReLU6,
};
use aics_nn::{Module, NnError, Result, Sequential};
use aics_tensor::{ConvParams, Rng, Tensor};

use super::{ModelConfig, Norm};

/// `_make_divisible(v, 8)`: the nearest multiple of 8 that is at least 8 and loses no more
/// than 10% of `v`.
pub fn make_divisible(v: usize) -> usize {
    let mut n = ((v + 4) / 8 * 8).max(8);
    if (n as f64) < 0.9 * v as f64 {
        n += 8;
    }
    n
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    ReLU,
    ReLU6,
    Hardswish,
}

/// torchvision's `Conv2dNormActivation`: conv (no bias, padding `(k−1)/2·dilation`) → norm →
/// activation, keys `0`, `1`.
pub fn conv_norm_act(
    c: usize,
    o: usize,
    k: usize,
    (stride, dilation, groups): (usize, usize, usize),
    norm: Norm,
    act: Act,
    rng: &mut Rng,
) -> Result<Sequential> {
    let p = ConvParams::default()
        .stride(stride)
        .padding((k - 1) / 2 * dilation)
        .dilation(dilation)
        .groups(groups);
    let mut s = Sequential::new().add(Conv2d::new(c, o, k, p, false, rng)?);
    s.push_boxed("1", norm.layer(o));
    Ok(match act {
        Act::None => s,
        Act::ReLU => s.add(ReLU),
        Act::ReLU6 => s.add(ReLU6),
        Act::Hardswish => s.add(Hardswish),
    })
}

/// Squeeze-and-excitation with a hard-sigmoid gate: `x · hsigmoid(fc2(relu(fc1(avgpool(x)))))`.
#[derive(Module)]
pub struct SqueezeExcitation {
    #[module]
    fc1: Conv2d,
    #[module]
    fc2: Conv2d,
}

impl Module for SqueezeExcitation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.adaptive_avg_pool2d(1, 1)?;
        let s = self
            .fc2
            .forward(&self.fc1.forward(&s)?.relu())?
            .hardsigmoid();
        Ok(x.mul(&s)?)
    }
    fn type_name(&self) -> String {
        format!(
            "SqueezeExcitation({}→{})",
            self.fc1.weight.shape()[1],
            self.fc1.weight.shape()[0]
        )
    }
}

/// One block of the table: (in, kernel, expanded, out, SE, hard-swish, stride).
type Bneck = (usize, usize, usize, usize, bool, bool, usize);

#[derive(Module)]
pub struct InvertedResidualV3 {
    #[module]
    block: Sequential,
    residual: bool,
    /// The table's stride is above 1 (torchvision's `_is_cn`: a stage ends before this block).
    pub downsamples: bool,
    pub out_channels: usize,
}

impl InvertedResidualV3 {
    fn new(b: Bneck, dilation: usize, norm: Norm, rng: &mut Rng) -> Result<Self> {
        let (c, k, e, o, se, hs, stride) = b;
        let act = if hs { Act::Hardswish } else { Act::ReLU };
        let mut block = Sequential::new();
        if e != c {
            block = block.add(conv_norm_act(c, e, 1, (1, 1, 1), norm, act, rng)?);
        }
        let s = if dilation > 1 { 1 } else { stride };
        block = block.add(conv_norm_act(e, e, k, (s, dilation, e), norm, act, rng)?);
        if se {
            let sq = make_divisible(e / 4);
            let one = ConvParams::default();
            block = block.add(SqueezeExcitation {
                fc1: Conv2d::new(e, sq, 1, one, true, rng)?,
                fc2: Conv2d::new(sq, e, 1, one, true, rng)?,
            });
        }
        block = block.add(conv_norm_act(e, o, 1, (1, 1, 1), norm, Act::None, rng)?);
        Ok(InvertedResidualV3 {
            block,
            residual: stride == 1 && c == o,
            downsamples: stride > 1,
            out_channels: o,
        })
    }
}

impl InvertedResidualV3 {
    /// The block's layers (expand, depthwise, SE, project), keys `0`, `1`, …: SSDlite splits a
    /// block after its expansion.
    pub fn into_block(self) -> Sequential {
        self.block
    }
    /// Whether the block adds its input back.
    pub fn residual(&self) -> bool {
        self.residual
    }
}

impl Module for InvertedResidualV3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.block.forward(x)?;
        if self.residual {
            Ok(x.add(&y)?)
        } else {
            Ok(y)
        }
    }
    fn type_name(&self) -> String {
        format!(
            "InvertedResidualV3→{}{}",
            self.out_channels,
            if self.residual { " (+x)" } else { "" }
        )
    }
}

fn table(large: bool, reduce: usize) -> Vec<Bneck> {
    let r = |c: usize| c / reduce;
    if large {
        vec![
            (16, 3, 16, 16, false, false, 1),
            (16, 3, 64, 24, false, false, 2),
            (24, 3, 72, 24, false, false, 1),
            (24, 5, 72, 40, true, false, 2),
            (40, 5, 120, 40, true, false, 1),
            (40, 5, 120, 40, true, false, 1),
            (40, 3, 240, 80, false, true, 2),
            (80, 3, 200, 80, false, true, 1),
            (80, 3, 184, 80, false, true, 1),
            (80, 3, 184, 80, false, true, 1),
            (80, 3, 480, 112, true, true, 1),
            (112, 3, 672, 112, true, true, 1),
            (112, 5, 672, r(160), true, true, 2),
            (r(160), 5, r(960), r(160), true, true, 1),
            (r(160), 5, r(960), r(160), true, true, 1),
        ]
    } else {
        vec![
            (16, 3, 16, 16, true, false, 2),
            (16, 3, 72, 24, false, false, 2),
            (24, 3, 88, 24, false, false, 1),
            (24, 5, 96, 40, true, true, 2),
            (40, 5, 240, 40, true, true, 1),
            (40, 5, 240, 40, true, true, 1),
            (40, 5, 120, 48, true, true, 1),
            (48, 5, 144, 48, true, true, 1),
            (48, 5, 288, r(96), true, true, 2),
            (r(96), 5, r(576), r(96), true, true, 1),
            (r(96), 5, r(576), r(96), true, true, 1),
        ]
    }
}

/// The `features` of MobileNetV3 in parts: the stem, the blocks, and the 1×1 conv to 6× the
/// last width (children `0`, `1`…`n`, `n+1` of torchvision's `features`).
pub struct V3Features {
    pub stem: Sequential,
    pub blocks: Vec<InvertedResidualV3>,
    pub last: Sequential,
    /// Output channels of each child of `features`.
    pub channels: Vec<usize>,
    /// torchvision's stage indices: 0, each block whose table stride is above 1, the last child.
    pub stage_indices: Vec<usize>,
}

impl V3Features {
    /// torchvision's `features` as one container.
    pub fn sequential(self) -> Sequential {
        let mut s = Sequential::new().add(self.stem);
        for b in self.blocks {
            s = s.add(b);
        }
        s.add(self.last)
    }
}

/// MobileNetV3's `features` (`large` or small) with `norm`; `reduced_tail` halves the last
/// stage's widths, `dilated` replaces its stride by dilation 2.
pub fn mobilenet_v3_features(
    large: bool,
    norm: Norm,
    reduced_tail: bool,
    dilated: bool,
    in_channels: usize,
    rng: &mut Rng,
) -> Result<V3Features> {
    let rows = table(large, if reduced_tail { 2 } else { 1 });
    // the last stage: the block that strides (or dilates) and the two after it
    let last_stage = rows.len() - 3;
    let stem = conv_norm_act(in_channels, 16, 3, (2, 1, 1), norm, Act::Hardswish, rng)?;
    let mut channels = vec![16];
    let mut stage_indices = vec![0];
    let mut blocks = Vec::new();
    for (i, &b) in rows.iter().enumerate() {
        let d = if dilated && i >= last_stage { 2 } else { 1 };
        let block = InvertedResidualV3::new(b, d, norm, rng)?;
        if block.downsamples {
            stage_indices.push(i + 1);
        }
        channels.push(block.out_channels);
        blocks.push(block);
    }
    let c = *channels.last().unwrap_or(&16);
    let last = conv_norm_act(c, 6 * c, 1, (1, 1, 1), norm, Act::Hardswish, rng)?;
    channels.push(6 * c);
    stage_indices.push(rows.len() + 1);
    Ok(V3Features {
        stem,
        blocks,
        last,
        channels,
        stage_indices,
    })
}

/// `mobilenet_v3_large` or `mobilenet_v3_small`, the classifier.
pub fn mobilenet_v3(name: &str, cfg: &ModelConfig) -> Result<Sequential> {
    let large = match name {
        "mobilenet_v3_large" => true,
        "mobilenet_v3_small" => false,
        other => {
            return Err(NnError::Config {
                layer: "mobilenet_v3".into(),
                msg: format!("unknown MobileNetV3 variant `{other}`"),
            })
        }
    };
    let mut rng = Rng::new(cfg.seed);
    let norm = Norm::Batch {
        eps: 1e-3,
        momentum: 0.01,
    };
    let f = mobilenet_v3_features(large, norm, false, false, cfg.in_shape[0], &mut rng)?;
    let c = *f.channels.last().unwrap_or(&960);
    let last = if large { 1280 } else { 1024 };
    let classifier = Sequential::new()
        .add(Linear::new(c, last, true, &mut rng)?)
        .add(Hardswish)
        .add(Dropout::new(0.2, cfg.seed ^ 1)?)
        .add(Linear::new(last, cfg.num_classes, true, &mut rng)?);
    Ok(Sequential::new()
        .push("features", f.sequential())
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}
