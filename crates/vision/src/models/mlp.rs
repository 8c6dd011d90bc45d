//! The textbook's multi-layer perceptron: flatten → fc1 → ReLU → fc2 → ReLU → fc3
//! (784 → h1 → h2 → 10 on MNIST; keys `fc1.weight`, …).

use aics_nn::layers::{Flatten, Linear, ReLU};
use aics_nn::{NnError, Result, Sequential};
use aics_tensor::Rng;

use super::ModelConfig;

pub fn mlp(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let input: usize = cfg.in_shape.iter().product();
    let hidden = if cfg.hidden.is_empty() {
        vec![128, 64]
    } else {
        cfg.hidden.clone()
    };
    if hidden.len() != 2 {
        return Err(NnError::Config {
            layer: "mlp".into(),
            msg: format!("expected two hidden sizes (h1,h2), got {hidden:?}"),
        });
    }
    Ok(Sequential::new()
        .push("flatten", Flatten(1))
        .push("fc1", Linear::new(input, hidden[0], true, &mut rng)?)
        .push("relu1", ReLU)
        .push("fc2", Linear::new(hidden[0], hidden[1], true, &mut rng)?)
        .push("relu2", ReLU)
        .push(
            "fc3",
            Linear::new(hidden[1], cfg.num_classes, true, &mut rng)?,
        ))
}
