//! Inception-v3 (Szegedy et al., 2015, "Rethinking the Inception Architecture") as torchvision
//! defines it, for 299×299 inputs. The paper's factorisations are all here:
//!
//! * a 5×5 convolution becomes two stacked 3×3s (`InceptionA`'s `branch3x3dbl`);
//! * an n×n convolution becomes 1×n then n×1 (`InceptionC`'s 7×7 branches);
//! * grids shrink by running a stride-2 convolution and a stride-2 pool side by side and
//!   concatenating them (`InceptionB`, `InceptionD`), avoiding a representational bottleneck;
//! * the coarsest grid expands its 3×3 branches into parallel 1×3 and 3×1 (`InceptionE`);
//! * an auxiliary classifier on the 17×17 grid acts as a regulariser (weight 0.4 in training).
//!
//! Every convolution is `BasicConv2d` (no bias, batch norm eps 1e-3, ReLU). Keys follow
//! torchvision (`Mixed_5b.branch5x5_1.conv.weight`, `AuxLogits.fc.bias`), so its checkpoints load.

use std::sync::atomic::{AtomicBool, Ordering};

use aics_nn::layers::{AdaptiveAvgPool2d, AvgPool2d, Dropout, Flatten, Linear, MaxPool2d};
use aics_nn::{Concat, Module, Result, Sequential};
use aics_tensor::{PoolParams, Rng, Tensor};

use super::{conv_bn_relu, ModelConfig};

/// `BasicConv2d`: conv (kernel `k`, no bias) → BatchNorm (eps 1e-3) → ReLU.
fn bc(
    c: usize,
    o: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
    rng: &mut Rng,
) -> Result<Sequential> {
    conv_bn_relu(c, o, k, stride, pad, 1e-3, rng)
}

/// A 1×1 `BasicConv2d`.
fn bc1(c: usize, o: usize, rng: &mut Rng) -> Result<Sequential> {
    bc(c, o, (1, 1), 1, (0, 0), rng)
}

/// A square `BasicConv2d`.
fn bck(
    c: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Sequential> {
    bc(c, o, (k, k), stride, (pad, pad), rng)
}

/// 3×3 average pool, stride 1, padding 1, padding counted (PyTorch's default).
fn avg3() -> AvgPool2d {
    AvgPool2d {
        params: PoolParams::new(3).stride(1).padding(1),
        count_include_pad: true,
    }
}

fn max3s2() -> MaxPool2d {
    MaxPool2d::new(3, 2)
}

/// A path of named `BasicConv2d`s whose keys sit flat under the block.
fn path(convs: Vec<(&str, Sequential)>) -> Sequential {
    convs
        .into_iter()
        .fold(Sequential::new(), |s, (n, c)| s.push(n, c))
}

/// 35×35: 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg pool → 1×1.
fn inception_a(c: usize, pool_features: usize, r: &mut Rng) -> Result<Concat> {
    Ok(Concat::new()
        .path("", path(vec![("branch1x1", bc1(c, 64, r)?)]))
        .path(
            "",
            path(vec![
                ("branch5x5_1", bc1(c, 48, r)?),
                ("branch5x5_2", bck(48, 64, 5, 1, 2, r)?),
            ]),
        )
        .path(
            "",
            path(vec![
                ("branch3x3dbl_1", bc1(c, 64, r)?),
                ("branch3x3dbl_2", bck(64, 96, 3, 1, 1, r)?),
                ("branch3x3dbl_3", bck(96, 96, 3, 1, 1, r)?),
            ]),
        )
        .path(
            "",
            Sequential::new()
                .push("avg_pool", avg3())
                .push("branch_pool", bc1(c, pool_features, r)?),
        ))
}

/// 35×35 → 17×17: 3×3/2 | 1×1 → 3×3 → 3×3/2 | max pool 3×3/2.
fn inception_b(c: usize, r: &mut Rng) -> Result<Concat> {
    Ok(Concat::new()
        .path("", path(vec![("branch3x3", bck(c, 384, 3, 2, 0, r)?)]))
        .path(
            "",
            path(vec![
                ("branch3x3dbl_1", bc1(c, 64, r)?),
                ("branch3x3dbl_2", bck(64, 96, 3, 1, 1, r)?),
                ("branch3x3dbl_3", bck(96, 96, 3, 2, 0, r)?),
            ]),
        )
        .path("", Sequential::new().push("max_pool", max3s2())))
}

/// 17×17 with 7×7 factorised into 1×7 and 7×1: 1×1 | 1×1 → 1×7 → 7×1 |
/// 1×1 → 7×1 → 1×7 → 7×1 → 1×7 | avg pool → 1×1.
fn inception_c(c: usize, c7: usize, r: &mut Rng) -> Result<Concat> {
    let (h, v) = (((1, 7), (0, 3)), ((7, 1), (3, 0)));
    let f = |i: usize, o: usize, (k, p): ((usize, usize), (usize, usize)), r: &mut Rng| {
        bc(i, o, k, 1, p, r)
    };
    Ok(Concat::new()
        .path("", path(vec![("branch1x1", bc1(c, 192, r)?)]))
        .path(
            "",
            path(vec![
                ("branch7x7_1", bc1(c, c7, r)?),
                ("branch7x7_2", f(c7, c7, h, r)?),
                ("branch7x7_3", f(c7, 192, v, r)?),
            ]),
        )
        .path(
            "",
            path(vec![
                ("branch7x7dbl_1", bc1(c, c7, r)?),
                ("branch7x7dbl_2", f(c7, c7, v, r)?),
                ("branch7x7dbl_3", f(c7, c7, h, r)?),
                ("branch7x7dbl_4", f(c7, c7, v, r)?),
                ("branch7x7dbl_5", f(c7, 192, h, r)?),
            ]),
        )
        .path(
            "",
            Sequential::new()
                .push("avg_pool", avg3())
                .push("branch_pool", bc1(c, 192, r)?),
        ))
}

/// 17×17 → 8×8: 1×1 → 3×3/2 | 1×1 → 1×7 → 7×1 → 3×3/2 | max pool 3×3/2.
fn inception_d(c: usize, r: &mut Rng) -> Result<Concat> {
    Ok(Concat::new()
        .path(
            "",
            path(vec![
                ("branch3x3_1", bc1(c, 192, r)?),
                ("branch3x3_2", bck(192, 320, 3, 2, 0, r)?),
            ]),
        )
        .path(
            "",
            path(vec![
                ("branch7x7x3_1", bc1(c, 192, r)?),
                ("branch7x7x3_2", bc(192, 192, (1, 7), 1, (0, 3), r)?),
                ("branch7x7x3_3", bc(192, 192, (7, 1), 1, (3, 0), r)?),
                ("branch7x7x3_4", bck(192, 192, 3, 2, 0, r)?),
            ]),
        )
        .path("", Sequential::new().push("max_pool", max3s2())))
}

/// 8×8 with expanded filter banks: 1×1 | 1×1 → (1×3 ‖ 3×1) | 1×1 → 3×3 → (1×3 ‖ 3×1) |
/// avg pool → 1×1.
fn inception_e(c: usize, r: &mut Rng) -> Result<Concat> {
    let split = |a: &str, b: &str, r: &mut Rng| -> Result<Concat> {
        Ok(Concat::new()
            .path("", path(vec![(a, bc(384, 384, (1, 3), 1, (0, 1), r)?)]))
            .path("", path(vec![(b, bc(384, 384, (3, 1), 1, (1, 0), r)?)])))
    };
    Ok(Concat::new()
        .path("", path(vec![("branch1x1", bc1(c, 320, r)?)]))
        .path(
            "",
            Sequential::new()
                .push("branch3x3_1", bc1(c, 384, r)?)
                .push("", split("branch3x3_2a", "branch3x3_2b", r)?),
        )
        .path(
            "",
            Sequential::new()
                .push("branch3x3dbl_1", bc1(c, 448, r)?)
                .push("branch3x3dbl_2", bck(448, 384, 3, 1, 1, r)?)
                .push("", split("branch3x3dbl_3a", "branch3x3dbl_3b", r)?),
        )
        .path(
            "",
            Sequential::new()
                .push("avg_pool", avg3())
                .push("branch_pool", bc1(c, 192, r)?),
        ))
}

/// Auxiliary head on the 17×17 grid: avg pool 5×5/3 → 1×1 (128) → 5×5 (768) → global average
/// pool → fc.
fn inception_aux(c: usize, classes: usize, r: &mut Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push(
            "avg_pool",
            AvgPool2d {
                params: PoolParams::new(5).stride(3),
                count_include_pad: true,
            },
        )
        .push("conv0", bc1(c, 128, r)?)
        .push("conv1", bck(128, 768, 5, 1, 0, r)?)
        .push("pool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("fc", Linear::new(768, classes, true, r)?))
}

#[derive(Module)]
#[module(transparent)]
pub struct InceptionV3 {
    /// Stem and blocks up to Mixed_6e (where the auxiliary head branches off), and the rest.
    #[module(flatten)]
    body: Sequential,
    #[module(name = "AuxLogits")]
    pub aux: Option<Sequential>,
    #[module(flatten)]
    tail: Sequential,
    #[training]
    training: AtomicBool,
}

impl Module for InceptionV3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.tail.forward(&self.body.forward(x)?)
    }
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        let h = self.body.forward(x)?;
        let mut aux = Vec::new();
        if let (Some(a), true) = (&self.aux, self.training.load(Ordering::Relaxed)) {
            aux.push((0.4, a.forward(&h)?));
        }
        Ok((self.tail.forward(&h)?, aux))
    }
    fn type_name(&self) -> String {
        "Inception3".into()
    }
}

/// torchvision's `inception_v3(aux_logits=aux)`.
pub fn inception_v3(cfg: &ModelConfig, aux: bool) -> Result<InceptionV3> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let body = Sequential::new()
        .push("Conv2d_1a_3x3", bck(cfg.in_shape[0], 32, 3, 2, 0, r)?)
        .push("Conv2d_2a_3x3", bck(32, 32, 3, 1, 0, r)?)
        .push("Conv2d_2b_3x3", bck(32, 64, 3, 1, 1, r)?)
        .push("maxpool1", max3s2())
        .push("Conv2d_3b_1x1", bc1(64, 80, r)?)
        .push("Conv2d_4a_3x3", bck(80, 192, 3, 1, 0, r)?)
        .push("maxpool2", max3s2())
        .push("Mixed_5b", inception_a(192, 32, r)?)
        .push("Mixed_5c", inception_a(256, 64, r)?)
        .push("Mixed_5d", inception_a(288, 64, r)?)
        .push("Mixed_6a", inception_b(288, r)?)
        .push("Mixed_6b", inception_c(768, 128, r)?)
        .push("Mixed_6c", inception_c(768, 160, r)?)
        .push("Mixed_6d", inception_c(768, 160, r)?)
        .push("Mixed_6e", inception_c(768, 192, r)?);
    let aux = if aux {
        Some(inception_aux(768, cfg.num_classes, r)?)
    } else {
        None
    };
    let tail = Sequential::new()
        .push("Mixed_7a", inception_d(768, r)?)
        .push("Mixed_7b", inception_e(1280, r)?)
        .push("Mixed_7c", inception_e(2048, r)?)
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("dropout", Dropout::new(0.5, cfg.seed ^ 5)?)
        .push("flatten", Flatten(1))
        .push("fc", Linear::new(2048, cfg.num_classes, true, r)?);
    Ok(InceptionV3 {
        body,
        aux,
        tail,
        training: AtomicBool::new(true),
    })
}
