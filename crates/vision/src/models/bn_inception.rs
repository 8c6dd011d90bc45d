//! BN-Inception (Inception v2; Ioffe & Szegedy, 2015, "Batch Normalization", Figure 5): GoogLeNet
//! with batch normalisation after every convolution, which lets it drop LRN and dropout and train
//! with much higher learning rates. Its other changes to Inception v1:
//!
//! * each 5×5 convolution is replaced by two stacked 3×3s (`branch3x3dbl`);
//! * the pooling path uses average pooling, except in the grid-reducing modules;
//! * inception3c and inception4e shrink the grid with stride-2 convolutions next to a stride-2
//!   max pool that passes its input channels through (no 1×1 path there).
//!
//! Widths follow the released implementation of the table (inception4c/4d give 608 channels).
//! Convolutions have no bias; batch norm uses eps 1e-5. There is no torchvision model, so the
//! keys are this crate's own: `inception3a.branch3x3dbl.1.conv.weight`, `fc.weight`, …

use aics_nn::layers::{AdaptiveAvgPool2d, AvgPool2d, Flatten, Linear, MaxPool2d};
use aics_nn::{Concat, Result, Sequential};
use aics_tensor::{PoolParams, Rng};

use super::{conv_bn_relu, ModelConfig};

fn cbr(c: usize, o: usize, k: usize, stride: usize, r: &mut Rng) -> Result<Sequential> {
    conv_bn_relu(c, o, (k, k), stride, (k / 2, k / 2), 1e-5, r)
}

fn max_pool(stride: usize) -> MaxPool2d {
    MaxPool2d(PoolParams::new(3).stride(stride).padding(0).ceil_mode(true))
}

/// Pooling path of a module.
#[derive(Clone, Copy)]
enum Pool {
    Avg(usize),
    Max(usize),
    /// Stride-2 max pool whose output is concatenated as it is.
    PassThrough,
}

/// `#1×1` (0: none), `#3×3 reduce`, `#3×3`, `double #3×3 reduce`, `double #3×3`, pooling.
struct Spec(&'static str, usize, usize, usize, usize, usize, Pool);

const MODULES: [Spec; 10] = [
    Spec("inception3a", 64, 64, 64, 64, 96, Pool::Avg(32)),
    Spec("inception3b", 64, 64, 96, 64, 96, Pool::Avg(64)),
    Spec("inception3c", 0, 128, 160, 64, 96, Pool::PassThrough),
    Spec("inception4a", 224, 64, 96, 96, 128, Pool::Avg(128)),
    Spec("inception4b", 192, 96, 128, 96, 128, Pool::Avg(128)),
    Spec("inception4c", 160, 128, 160, 128, 160, Pool::Avg(128)),
    Spec("inception4d", 96, 128, 192, 160, 192, Pool::Avg(128)),
    Spec("inception4e", 0, 128, 192, 192, 256, Pool::PassThrough),
    Spec("inception5a", 352, 192, 320, 160, 224, Pool::Avg(128)),
    Spec("inception5b", 352, 192, 320, 192, 224, Pool::Max(128)),
];

/// One module on `c` channels, and its output channels.
fn module(c: usize, s: &Spec, r: &mut Rng) -> Result<(Concat, usize)> {
    let Spec(_, b1, r3, b3, rd, bd, pool) = *s;
    let stride = if matches!(pool, Pool::PassThrough) {
        2
    } else {
        1
    };
    let mut m = Concat::new();
    if b1 > 0 {
        m = m.path("branch1x1", Sequential::new().add(cbr(c, b1, 1, 1, r)?));
    }
    m = m
        .path(
            "branch3x3",
            Sequential::new()
                .add(cbr(c, r3, 1, 1, r)?)
                .add(cbr(r3, b3, 3, stride, r)?),
        )
        .path(
            "branch3x3dbl",
            Sequential::new()
                .add(cbr(c, rd, 1, 1, r)?)
                .add(cbr(rd, bd, 3, 1, r)?)
                .add(cbr(bd, bd, 3, stride, r)?),
        );
    let avg = AvgPool2d {
        params: PoolParams::new(3).stride(1).padding(1),
        count_include_pad: true,
    };
    let (m, p) = match pool {
        Pool::Avg(p) => (
            m.path(
                "branch_pool",
                Sequential::new().add(avg).add(cbr(c, p, 1, 1, r)?),
            ),
            p,
        ),
        Pool::Max(p) => (
            m.path(
                "branch_pool",
                Sequential::new()
                    .add(MaxPool2d(PoolParams::new(3).stride(1).padding(1)))
                    .add(cbr(c, p, 1, 1, r)?),
            ),
            p,
        ),
        Pool::PassThrough => (m.path("branch_pool", Sequential::new().add(max_pool(2))), c),
    };
    Ok((m, b1 + b3 + bd + p))
}

pub fn bn_inception(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let mut net = Sequential::new()
        .push(
            "conv1",
            conv_bn_relu(cfg.in_shape[0], 64, (7, 7), 2, (3, 3), 1e-5, r)?,
        )
        .push("pool1", max_pool(2))
        .push("conv2_reduce", cbr(64, 64, 1, 1, r)?)
        .push("conv2", cbr(64, 192, 3, 1, r)?)
        .push("pool2", max_pool(2));
    let mut c = 192;
    for s in &MODULES {
        let (m, o) = module(c, s, r)?;
        net = net.push(s.0, m);
        c = o;
    }
    Ok(net
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("fc", Linear::new(c, cfg.num_classes, true, r)?))
}
