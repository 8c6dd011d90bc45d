//! `Dropout`, `Flatten`, `Embedding` (key `weight` (V, D)), `Upsample`, `ReflectionPad2d`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aics_tensor::{Interp, Rng, Tensor};

use crate::error::{config, Result};
use crate::module::Module;

/// Inverted dropout: active only in training mode; its random stream is seeded.
#[derive(Module)]
pub struct Dropout {
    pub p: f64,
    #[rng]
    rng: Mutex<Rng>,
    #[training]
    training: AtomicBool,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(config("Dropout", format!("p must be in [0, 1), got {p}")));
        }
        Ok(Dropout {
            p,
            rng: Mutex::new(Rng::new(seed)),
            training: AtomicBool::new(true),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.load(Ordering::Relaxed) || self.p == 0.0 {
            return Ok(x.clone());
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        Ok(x.dropout(self.p, &mut rng)?)
    }
    fn type_name(&self) -> String {
        format!("Dropout({})", self.p)
    }
}

/// Flatten all dimensions from `start` (default 1) into one.
#[derive(Module)]
pub struct Flatten(pub usize);

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.flatten(self.0)?)
    }
    fn type_name(&self) -> String {
        "Flatten".into()
    }
}

#[derive(Module)]
pub struct Embedding {
    #[param]
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(num: usize, dim: usize, rng: &mut Rng) -> Self {
        Embedding {
            weight: Tensor::randn(&[num, dim], 0.0, 1.0, rng).requires_grad_(true),
        }
    }
    /// Look up integer ids (shape `ids_shape`) → `[ids_shape.., D]`.
    pub fn lookup(&self, ids: &[usize], ids_shape: &[usize]) -> Result<Tensor> {
        Ok(self.weight.embedding(ids, ids_shape)?)
    }
}

impl Module for Embedding {
    /// Ids given as a float tensor of integral values (PyTorch takes a LongTensor).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.weight.embedding_ids(x)?)
    }
    fn type_name(&self) -> String {
        format!(
            "Embedding({}, {})",
            self.weight.shape()[0],
            self.weight.shape()[1]
        )
    }
}

/// Resize by an integer scale factor.
#[derive(Module)]
pub struct Upsample {
    pub scale: usize,
    pub mode: Interp,
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(config(
                "Upsample",
                format!("expected (N, C, H, W), got {s:?}"),
            ));
        }
        Ok(x.upsample(s[2] * self.scale, s[3] * self.scale, self.mode)?)
    }
    fn type_name(&self) -> String {
        format!("Upsample(x{})", self.scale)
    }
}

/// Reflection padding of an (N, C, H, W) input by `pad` pixels on every side (PyTorch's
/// `ReflectionPad2d(pad)`); each side's padding must be smaller than the input's size.
#[derive(Module)]
pub struct ReflectionPad2d {
    pub pad: usize,
}

impl Module for ReflectionPad2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.reflection_pad2d([self.pad; 4])?)
    }
    fn type_name(&self) -> String {
        format!("ReflectionPad2d({})", self.pad)
    }
}

/// Passes its input on (`nn.Identity`); the inference path puts it where an activation was
/// fused into the convolution before it.
#[derive(Module)]
pub struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn type_name(&self) -> String {
        "Identity".into()
    }
}
