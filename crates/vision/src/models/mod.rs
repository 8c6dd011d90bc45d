//! The model zoo. Each builder returns a `Sequential` whose keys are the PyTorch model's
//! state-dict keys, so torchvision-style checkpoints load as they are.

pub mod lenet;
pub mod mlp;

use aics_nn::{Result, Sequential};

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
pub const MODELS: &[&str] = &["mlp", "lenet5"];

/// Build a model by name.
pub fn build(name: &str, cfg: &ModelConfig) -> Result<Sequential> {
    match name {
        "mlp" => mlp(cfg),
        "lenet5" | "lenet" => lenet5(cfg),
        other => Err(aics_nn::NnError::Config {
            layer: "model".into(),
            msg: format!("unknown model `{other}` (available: {})", MODELS.join(", ")),
        }),
    }
}
