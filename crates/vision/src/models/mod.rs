//! The model zoo. Each builder returns a `Sequential` whose keys are the PyTorch model's
//! state-dict keys, so torchvision-style checkpoints load as they are.

pub mod alexnet;
pub mod googlenet;
pub mod lenet;
pub mod mlp;
pub mod mobilenet;
pub mod resnet;
pub mod vgg;

use aics_nn::{Module, Result};

pub use lenet::lenet5;
pub use mlp::mlp;

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
    "mobilenet_v2",
    "googlenet",
    "googlenet_noaux",
];

/// The input (C, H, W) and class count a model is usually built for.
pub fn default_shape(name: &str) -> ([usize; 3], usize) {
    match name {
        "mlp" | "lenet5" | "lenet" => ([1, 28, 28], 10),
        _ => ([3, 224, 224], 1000),
    }
}

/// Build a model by name.
pub fn build(name: &str, cfg: &ModelConfig) -> Result<Box<dyn Module>> {
    Ok(match name {
        "googlenet" => Box::new(googlenet::googlenet(cfg, true)?),
        "googlenet_noaux" => Box::new(googlenet::googlenet(cfg, false)?),
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
