//! `Linear`: `y = x·Wᵀ + b` (PyTorch `nn.Linear`; keys `weight` (out, in), `bias` (out)).

use aics_tensor::{Rng, Tensor};

use crate::error::{config, Result};
use crate::init::default_uniform;
use crate::module::Module;

#[derive(Module)]
pub struct Linear {
    #[param]
    pub weight: Tensor,
    #[param]
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(config(
                "Linear",
                format!("features must be positive, got {in_features} -> {out_features}"),
            ));
        }
        let weight = default_uniform(&[out_features, in_features], in_features, rng);
        let bias = bias.then(|| default_uniform(&[out_features], in_features, rng));
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.linear(&self.weight, self.bias.as_ref())?)
    }
    fn type_name(&self) -> String {
        format!(
            "Linear({}→{})",
            self.weight.shape()[1],
            self.weight.shape()[0]
        )
    }
}
