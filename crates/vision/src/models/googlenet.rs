//! GoogLeNet / Inception v1 (Szegedy et al., 2014) in two variants.
//!
//! * **torchvision** (`googlenet`): every convolution is `BasicConv2d` (conv without bias, batch
//!   norm with eps 1e-3, ReLU), no LRN, and — as in torchvision — the "5×5" branch uses a 3×3
//!   kernel. Keys `inception3a.branch2.1.conv.weight`, `aux1.fc2.bias`, …
//! * **the 2014 paper** (`googlenet_paper`, `googlenet_naive`): convolutions with bias and ReLU, no
//!   batch norm, local response normalisation after the first pooling and after conv3, real 5×5
//!   branches, 3×3/2 pooling before inception5a, dropout 0.4 before the classifier. The naive
//!   module (1×1, 3×3 and 5×5 convolutions and a 3×3 max pool side by side on the full input,
//!   with no 1×1 reductions) can replace the reduction module, to see why the reductions are there:
//!   the pooling path passes every input channel through, so widths and multiply-adds explode.
//!
//! Both have the two auxiliary classifiers on inception4a and inception4d, which run only in
//! training and whose losses are weighted by 0.3.

use std::sync::atomic::{AtomicBool, Ordering};

use aics_nn::layers::{
    AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d,
    ReLU,
};
use aics_nn::{Concat, Module, Result, Sequential};
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};

use super::{conv_bn_relu, ModelConfig};

/// Which GoogLeNet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    Torchvision,
    /// The paper's network; `naive` selects the module without 1×1 reductions.
    Paper {
        naive: bool,
    },
}

/// Conv → BatchNorm (eps 1e-3) → ReLU with keys `conv.*`, `bn.*` (torchvision's `BasicConv2d`),
/// or Conv (with bias) → ReLU for the paper.
fn conv_unit(
    v: Variant,
    c: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Sequential> {
    if v == Variant::Torchvision {
        return conv_bn_relu(c, o, (k, k), stride, (pad, pad), 1e-3, rng);
    }
    let p = ConvParams::default().stride(stride).padding(pad);
    Ok(Sequential::new()
        .push("conv", Conv2d::new(c, o, k, p, true, rng)?)
        .push("relu", ReLU))
}

fn max_pool(k: usize, s: usize, p: usize) -> MaxPool2d {
    MaxPool2d(PoolParams::new(k).stride(s).padding(p).ceil_mode(true))
}

/// One Inception module's widths, as in the paper's Table 1: `#1×1`, `#3×3 reduce`, `#3×3`,
/// `#5×5 reduce`, `#5×5`, `pool proj`.
#[derive(Clone, Copy)]
struct Widths {
    b1: usize,
    r3: usize,
    b3: usize,
    r5: usize,
    b5: usize,
    pool: usize,
}

const fn w(b1: usize, r3: usize, b3: usize, r5: usize, b5: usize, pool: usize) -> Widths {
    Widths {
        b1,
        r3,
        b3,
        r5,
        b5,
        pool,
    }
}

/// Output channels of a module on `c` input channels.
fn out_channels(v: Variant, c: usize, m: Widths) -> usize {
    match v {
        Variant::Paper { naive: true } => m.b1 + m.b3 + m.b5 + c,
        _ => m.b1 + m.b3 + m.b5 + m.pool,
    }
}

/// Four parallel branches concatenated along channels, keys `branch1` … `branch4`.
fn inception(v: Variant, c: usize, m: Widths, rng: &mut Rng) -> Result<Concat> {
    let pool = max_pool(3, 1, 1);
    if v == (Variant::Paper { naive: true }) {
        return Ok(Concat::new()
            .path(
                "branch1",
                Sequential::new().add(conv_unit(v, c, m.b1, 1, 1, 0, rng)?),
            )
            .path(
                "branch2",
                Sequential::new().add(conv_unit(v, c, m.b3, 3, 1, 1, rng)?),
            )
            .path(
                "branch3",
                Sequential::new().add(conv_unit(v, c, m.b5, 5, 1, 2, rng)?),
            )
            .path("branch4", Sequential::new().add(pool)));
    }
    // torchvision's "5×5" branch is a 3×3 convolution.
    let k5 = if v == Variant::Torchvision { 3 } else { 5 };
    Ok(Concat::new()
        .path("branch1", conv_unit(v, c, m.b1, 1, 1, 0, rng)?)
        .path(
            "branch2",
            Sequential::new()
                .add(conv_unit(v, c, m.r3, 1, 1, 0, rng)?)
                .add(conv_unit(v, m.r3, m.b3, 3, 1, 1, rng)?),
        )
        .path(
            "branch3",
            Sequential::new()
                .add(conv_unit(v, c, m.r5, 1, 1, 0, rng)?)
                .add(conv_unit(v, m.r5, m.b5, k5, 1, k5 / 2, rng)?),
        )
        .path(
            "branch4",
            Sequential::new()
                .add(pool)
                .add(conv_unit(v, c, m.pool, 1, 1, 0, rng)?),
        ))
}

/// Auxiliary classifier: average pool to 4×4 (torchvision: adaptive; paper: 5×5 stride 3) → 1×1
/// conv (128) → fc1 (2048 → 1024) → ReLU → dropout 0.7 → fc2.
fn inception_aux(
    v: Variant,
    c: usize,
    div: usize,
    classes: usize,
    seed: u64,
    rng: &mut Rng,
) -> Result<Sequential> {
    let (conv_w, fc_w) = (128 / div, 1024 / div);
    let s = match v {
        Variant::Torchvision => Sequential::new().push("pool", AdaptiveAvgPool2d(4, 4)),
        Variant::Paper { .. } => Sequential::new().push(
            "pool",
            AvgPool2d {
                params: PoolParams::new(5).stride(3),
                count_include_pad: true,
            },
        ),
    };
    Ok(s.push("conv", conv_unit(v, c, conv_w, 1, 1, 0, rng)?)
        .push("flatten", Flatten(1))
        .push("fc1", Linear::new(conv_w * 16, fc_w, true, rng)?)
        .push("relu", ReLU)
        .push("dropout", Dropout::new(0.7, seed)?)
        .push("fc2", Linear::new(fc_w, classes, true, rng)?))
}

#[derive(Module)]
#[module(transparent)]
pub struct GoogLeNet {
    /// The main path up to inception4a, to inception4d, and to the logits (keys at this level).
    #[module(flatten)]
    stem: Sequential,
    #[module(flatten)]
    mid: Sequential,
    #[module]
    pub aux1: Option<Sequential>,
    #[module]
    pub aux2: Option<Sequential>,
    #[module(flatten)]
    head: Sequential,
    #[training]
    training: AtomicBool,
    name: &'static str,
}

impl GoogLeNet {
    /// Logits, and in training the two auxiliary logits.
    pub fn forward_aux(&self, x: &Tensor) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let a = self.stem.forward(x)?;
        let b = self.mid.forward(&a)?;
        let y = self.head.forward(&b)?;
        let aux = match (
            &self.aux1,
            &self.aux2,
            self.training.load(Ordering::Relaxed),
        ) {
            (Some(a1), Some(a2), true) => Some((a1.forward(&a)?, a2.forward(&b)?)),
            _ => None,
        };
        Ok((y, aux))
    }
}

impl Module for GoogLeNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head
            .forward(&self.mid.forward(&self.stem.forward(x)?)?)
    }
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        let (y, aux) = self.forward_aux(x)?;
        Ok((
            y,
            aux.map(|(a, b)| vec![(0.3, a), (0.3, b)])
                .unwrap_or_default(),
        ))
    }
    fn type_name(&self) -> String {
        self.name.into()
    }
}

/// The nine modules of Table 1, with the pools between them.
const STAGE3: [(&str, Widths); 2] = [
    ("inception3a", w(64, 96, 128, 16, 32, 32)),
    ("inception3b", w(128, 128, 192, 32, 96, 64)),
];
const STAGE4: [(&str, Widths); 5] = [
    ("inception4a", w(192, 96, 208, 16, 48, 64)),
    ("inception4b", w(160, 112, 224, 24, 64, 64)),
    ("inception4c", w(128, 128, 256, 24, 64, 64)),
    ("inception4d", w(112, 144, 288, 32, 64, 64)),
    ("inception4e", w(256, 160, 320, 32, 128, 128)),
];
const STAGE5: [(&str, Widths); 2] = [
    ("inception5a", w(256, 160, 320, 32, 128, 128)),
    ("inception5b", w(384, 192, 384, 48, 128, 128)),
];

/// GoogLeNet of the given variant; `aux = false` drops the auxiliary classifiers (as
/// torchvision's published ImageNet weights do).
pub fn googlenet(cfg: &ModelConfig, v: Variant, aux: bool) -> Result<GoogLeNet> {
    build(cfg, v, aux, 1)
}

/// torchvision's GoogLeNet for 28×28 to 32×32 images: every width divided by 4, and a single
/// 3×3 convolution (48 filters) as the stem instead of the 7×7/2 convolution and two poolings;
/// the auxiliary classifiers stay.
pub fn googlenet_small(cfg: &ModelConfig) -> Result<GoogLeNet> {
    build(cfg, Variant::Torchvision, true, 4)
}

fn scaled(m: Widths, d: usize) -> Widths {
    w(m.b1 / d, m.r3 / d, m.b3 / d, m.r5 / d, m.b5 / d, m.pool / d)
}

/// `div` > 1: widths divided by `div`, small-image stem.
fn build(cfg: &ModelConfig, v: Variant, aux: bool, div: usize) -> Result<GoogLeNet> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let paper = v != Variant::Torchvision;
    // Caffe's LRN (k = 1) as in the released BVLC GoogLeNet.
    let lrn = || LocalResponseNorm {
        size: 5,
        alpha: 1e-4,
        beta: 0.75,
        k: 1.0,
    };
    let mut stem = Sequential::new();
    if div > 1 {
        stem = stem.push(
            "conv1",
            conv_unit(v, cfg.in_shape[0], 192 / div, 3, 1, 1, r)?,
        );
    } else {
        stem = stem
            .push("conv1", conv_unit(v, cfg.in_shape[0], 64, 7, 2, 3, r)?)
            .push("maxpool1", max_pool(3, 2, 0));
        if paper {
            stem = stem.push("lrn1", lrn());
        }
        stem = stem
            .push("conv2", conv_unit(v, 64, 64, 1, 1, 0, r)?)
            .push("conv3", conv_unit(v, 64, 192, 3, 1, 1, r)?);
        if paper {
            stem = stem.push("lrn2", lrn());
        }
        stem = stem.push("maxpool2", max_pool(3, 2, 0));
    }
    let mut c = 192 / div;
    for (name, m) in STAGE3 {
        let m = scaled(m, div);
        stem = stem.push(name, inception(v, c, m, r)?);
        c = out_channels(v, c, m);
    }
    stem = stem.push("maxpool3", max_pool(3, 2, 0));
    let (name, m) = STAGE4[0];
    let m = scaled(m, div);
    stem = stem.push(name, inception(v, c, m, r)?);
    c = out_channels(v, c, m);
    let c_aux1 = c;
    let mut mid = Sequential::new();
    for (name, m) in &STAGE4[1..4] {
        let m = scaled(*m, div);
        mid = mid.push(name, inception(v, c, m, r)?);
        c = out_channels(v, c, m);
    }
    let c_aux2 = c;
    let (aux1, aux2) = if aux {
        (
            Some(inception_aux(
                v,
                c_aux1,
                div,
                cfg.num_classes,
                cfg.seed ^ 3,
                r,
            )?),
            Some(inception_aux(
                v,
                c_aux2,
                div,
                cfg.num_classes,
                cfg.seed ^ 4,
                r,
            )?),
        )
    } else {
        (None, None)
    };
    let (name, m) = STAGE4[4];
    let m = scaled(m, div);
    let mut head = Sequential::new().push(name, inception(v, c, m, r)?);
    c = out_channels(v, c, m);
    // torchvision pools 2×2 here; the paper 3×3 stride 2 (same output size).
    head = head.push(
        "maxpool4",
        if paper {
            max_pool(3, 2, 0)
        } else {
            max_pool(2, 2, 0)
        },
    );
    for (name, m) in STAGE5 {
        let m = scaled(m, div);
        head = head.push(name, inception(v, c, m, r)?);
        c = out_channels(v, c, m);
    }
    let p_drop = if paper { 0.4 } else { 0.2 };
    head = head
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("dropout", Dropout::new(p_drop, cfg.seed ^ 5)?)
        .push("fc", Linear::new(c, cfg.num_classes, true, r)?);
    Ok(GoogLeNet {
        stem,
        mid,
        head,
        aux1,
        aux2,
        training: AtomicBool::new(true),
        name: match v {
            Variant::Torchvision if div > 1 => "GoogLeNet (small)",
            Variant::Torchvision => "GoogLeNet",
            Variant::Paper { naive: false } => "GoogLeNet (2014 paper)",
            Variant::Paper { naive: true } => "GoogLeNet (2014 paper, naive modules)",
        },
    })
}
