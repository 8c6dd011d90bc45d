//! `BatchNorm` (1d/2d: keys `weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`), `FrozenBatchNorm2d` (fixed statistics, all buffers), `InstanceNorm2d`, and `LocalResponseNorm` (AlexNet).

use std::sync::atomic::{AtomicBool, Ordering};

use aics_tensor::Tensor;

use crate::error::Result;
use crate::module::Module;

#[derive(Module)]
pub struct BatchNorm {
    #[param]
    pub weight: Option<Tensor>,
    #[param]
    pub bias: Option<Tensor>,
    #[buffer]
    pub running_mean: Tensor,
    #[buffer]
    pub running_var: Tensor,
    #[buffer]
    pub num_batches_tracked: Tensor,
    pub eps: f64,
    pub momentum: f64,
    #[training]
    training: AtomicBool,
    /// Folded into the convolution before it (the inference path): the layer passes its input on.
    pub(crate) folded: bool,
}

impl BatchNorm {
    /// `nn.BatchNorm1d/2d(channels)` with eps 1e-5, momentum 0.1, affine.
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            weight: Some(crate::init::constant(&[channels], 1.0)),
            bias: Some(crate::init::constant(&[channels], 0.0)),
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            num_batches_tracked: Tensor::zeros(&[]),
            eps: 1e-5,
            momentum: 0.1,
            training: AtomicBool::new(true),
            folded: false,
        }
    }

    /// Whether the layer normalises with batch statistics (training) or running ones.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.folded {
            return Ok(x.clone());
        }
        let training = self.training.load(Ordering::Relaxed);
        if training {
            self.num_batches_tracked.update_data(|v| v[0] += 1.0);
        }
        crate::distributed::layer_batch_norm(
            x,
            self.weight.as_ref(),
            self.bias.as_ref(),
            Some(&self.running_mean),
            Some(&self.running_var),
            training,
            self.momentum,
            self.eps,
        )
    }
    fn type_name(&self) -> String {
        format!("BatchNorm({})", self.running_mean.numel())
    }
}

/// Batch norm with fixed statistics and affine terms, torchvision's `FrozenBatchNorm2d`: all four
/// tensors are buffers (nothing is trained, no `num_batches_tracked`), and the layer computes
/// `x·scale + shift` with `scale = weight / √(running_var + eps)` in training and evaluation
/// alike. Detection backbones use it (the ResNet-50 Faster R-CNN weights with eps 0).
#[derive(Module)]
pub struct FrozenBatchNorm2d {
    #[buffer]
    pub weight: Tensor,
    #[buffer]
    pub bias: Tensor,
    #[buffer]
    pub running_mean: Tensor,
    #[buffer]
    pub running_var: Tensor,
    pub eps: f64,
    /// Folded into the convolution before it (the inference path).
    pub(crate) folded: bool,
}

impl FrozenBatchNorm2d {
    /// Identity statistics (weight 1, bias 0, mean 0, variance 1), as torchvision initializes it.
    pub fn new(channels: usize, eps: f64) -> Self {
        FrozenBatchNorm2d {
            weight: Tensor::ones(&[channels]),
            bias: Tensor::zeros(&[channels]),
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            eps,
            folded: false,
        }
    }

    /// The per-channel scale and shift the layer applies.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let (w, b) = (self.weight.data(), self.bias.data());
        let (m, v) = (self.running_mean.data(), self.running_var.data());
        let scale: Vec<f32> = w
            .iter()
            .zip(v.iter())
            .map(|(&w, &v)| w * (1.0 / (v + self.eps as f32).sqrt()))
            .collect();
        let shift = b
            .iter()
            .zip(m.iter())
            .zip(&scale)
            .map(|((&b, &m), &s)| b - m * s)
            .collect();
        (scale, shift)
    }
}

impl Module for FrozenBatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.folded {
            return Ok(x.clone());
        }
        // batch norm in evaluation mode is the same per-channel affine map
        Ok(x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            self.eps,
        )?)
    }
    fn type_name(&self) -> String {
        format!("FrozenBatchNorm2d({})", self.running_mean.numel())
    }
}

#[derive(Module)]
pub struct InstanceNorm2d {
    #[param]
    pub weight: Option<Tensor>,
    #[param]
    pub bias: Option<Tensor>,
    pub eps: f64,
}

impl InstanceNorm2d {
    /// `nn.InstanceNorm2d(channels, affine=affine)`.
    pub fn new(channels: usize, affine: bool) -> Self {
        InstanceNorm2d {
            weight: affine.then(|| crate::init::constant(&[channels], 1.0)),
            bias: affine.then(|| crate::init::constant(&[channels], 0.0)),
            eps: 1e-5,
        }
    }
}

impl Module for InstanceNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.instance_norm(self.weight.as_ref(), self.bias.as_ref(), self.eps)?)
    }
}

/// Local response normalisation across channels.
#[derive(Module)]
pub struct LocalResponseNorm {
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl LocalResponseNorm {
    /// AlexNet's setting: size 5, α 1e-4, β 0.75, k 2.
    pub fn alexnet() -> Self {
        LocalResponseNorm {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        }
    }
}

impl Module for LocalResponseNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.lrn(self.size, self.alpha, self.beta, self.k)?)
    }
    fn type_name(&self) -> String {
        format!("LocalResponseNorm({})", self.size)
    }
}
