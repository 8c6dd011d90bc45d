//! PyTorch's default initialisations, seeded. `nn.Linear` and `nn.Conv2d` use
//! `kaiming_uniform_(a=√5)`, i.e. U(-1/√fan_in, 1/√fan_in), and the same bound for the bias.

use aics_tensor::{Rng, Tensor};

/// U(-bound, bound) with `bound = 1/√fan_in` (PyTorch's default for Linear/Conv weights and biases).
pub fn default_uniform(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::rand(shape, -bound, bound, rng).requires_grad_(true)
}

/// Kaiming (He) normal, fan-in mode, gain √2 (ReLU networks).
pub fn kaiming_normal(shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor {
    let std = (2.0 / fan_in.max(1) as f64).sqrt();
    Tensor::randn(shape, 0.0, std, rng).requires_grad_(true)
}

/// Xavier/Glorot uniform: U(-a, a), `a = √(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor {
    let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    Tensor::rand(shape, -a, a, rng).requires_grad_(true)
}

pub fn constant(shape: &[usize], v: f32) -> Tensor {
    Tensor::full(shape, v).requires_grad_(true)
}
