//! The model zoo. Each builder returns a `Sequential` whose keys are the PyTorch model's
//! state-dict keys, so torchvision-style checkpoints load as they are.

pub mod alexnet;
pub mod bn_inception;
pub mod googlenet;
pub mod inception_v3;
pub mod lenet;
pub mod mlp;
pub mod mobilenet;
pub mod resnet;
pub mod vgg;

use aics_nn::layers::{BatchNorm, Conv2d, ReLU};
use aics_nn::{Module, Result, Sequential};
use aics_tensor::{ConvParams, Rng};

use googlenet::Variant;
pub use lenet::lenet5;
pub use mlp::mlp;

/// Conv (kernel `k`, no bias) → BatchNorm (`eps`) → ReLU, keys `conv.*`, `bn.*`: torchvision's
/// `BasicConv2d` (eps 1e-3) and BN-Inception's unit.
pub(crate) fn conv_bn_relu(
    c: usize,
    o: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
    eps: f64,
    rng: &mut Rng,
) -> Result<Sequential> {
    let p = ConvParams {
        padding: pad,
        ..ConvParams::default().stride(stride)
    };
    let mut bn = BatchNorm::new(o);
    bn.eps = eps;
    Ok(Sequential::new()
        .push("conv", Conv2d::new_hw(c, o, k, p, false, rng)?)
        .push("bn", bn)
        .push("relu", ReLU))
}

/// What a model is built for.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Input image shape (C, H, W).
    pub in_shape: [usize; 3],
    pub num_classes: usize,
    /// Hidden widths, for models that have them (the MLP).
    pub hidden: Vec<usize>,
    pub seed: u64,
}

/// Names accepted by [`build`].
pub const MODELS: &[&str] = &[
    "mlp",
    "lenet5",
    "alexnet",
    "alexnet_paper",
    "alexnet_small",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "mobilenet_v2",
    "googlenet",
    "googlenet_noaux",
    "googlenet_paper",
    "googlenet_naive",
    "googlenet_small",
    "bn_inception",
    "inception_v3",
    "inception_v3_noaux",
];

/// The input (C, H, W) and class count a model is usually built for.
pub fn default_shape(name: &str) -> ([usize; 3], usize) {
    match name {
        "mlp" | "lenet5" | "lenet" => ([1, 28, 28], 10),
        "alexnet_small" | "googlenet_small" | "resnet20" | "resnet32" | "resnet44" | "resnet56"
        | "resnet110" => ([3, 32, 32], 10),
        "alexnet_paper" => ([3, 227, 227], 1000),
        "inception_v3" | "inception_v3_noaux" => ([3, 299, 299], 1000),
        _ => ([3, 224, 224], 1000),
    }
}

/// Build a model by name.
pub fn build(name: &str, cfg: &ModelConfig) -> Result<Box<dyn Module>> {
    Ok(match name {
        "googlenet" => Box::new(googlenet::googlenet(cfg, Variant::Torchvision, true)?),
        "googlenet_noaux" => Box::new(googlenet::googlenet(cfg, Variant::Torchvision, false)?),
        "googlenet_paper" => Box::new(googlenet::googlenet(
            cfg,
            Variant::Paper { naive: false },
            true,
        )?),
        "googlenet_naive" => Box::new(googlenet::googlenet(
            cfg,
            Variant::Paper { naive: true },
            true,
        )?),
        "googlenet_small" => Box::new(googlenet::googlenet_small(cfg)?),
        "bn_inception" => Box::new(bn_inception::bn_inception(cfg)?),
        "inception_v3" => Box::new(inception_v3::inception_v3(cfg, true)?),
        "inception_v3_noaux" => Box::new(inception_v3::inception_v3(cfg, false)?),
        "alexnet_paper" => Box::new(alexnet::alexnet_paper(cfg)?),
        "alexnet_small" => Box::new(alexnet::alexnet_small(cfg)?),
        "resnet20" | "resnet32" | "resnet44" | "resnet56" | "resnet110" => {
            Box::new(resnet::resnet_cifar(name, cfg)?)
        }
        "mlp" => Box::new(mlp(cfg)?),
        "lenet5" | "lenet" => Box::new(lenet5(cfg)?),
        "alexnet" => Box::new(alexnet::alexnet(cfg)?),
        "mobilenet_v2" => Box::new(mobilenet::mobilenet_v2(cfg)?),
        n if n.starts_with("vgg") && MODELS.contains(&n) => Box::new(vgg::vgg(n, cfg)?),
        n if n.starts_with("resnet") && MODELS.contains(&n) => Box::new(resnet::resnet(n, cfg)?),
        other => {
            return Err(aics_nn::NnError::Config {
                layer: "model".into(),
                msg: format!("unknown model `{other}` (available: {})", MODELS.join(", ")),
            })
        }
    })
}
