//! Activation layers without state (ReLU, ReLU6, LeakyReLU, Hardswish, Hardsigmoid, Tanh, Sigmoid,
//! Softmax, LogSoftmax) and
//! `PReLU` (key `weight`, one slope per channel, initialised to 0.25).

use aics_tensor::Tensor;

use crate::error::Result;
use crate::module::Module;

#[derive(Module)]
pub struct ReLU;
/// `min(max(x, 0), 6)` (MobileNet).
#[derive(Module)]
pub struct ReLU6;
#[derive(Module)]
pub struct LeakyReLU(pub f64);
/// `x · relu6(x + 3) / 6` (MobileNetV3).
#[derive(Module)]
pub struct Hardswish;
/// `relu6(x + 3) / 6` (MobileNetV3's squeeze-and-excitation gate).
#[derive(Module)]
pub struct Hardsigmoid;
#[derive(Module)]
pub struct Tanh;
#[derive(Module)]
pub struct Sigmoid;
#[derive(Module)]
pub struct Softmax(pub isize);
#[derive(Module)]
pub struct LogSoftmax(pub isize);

impl Module for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.relu())
    }
    fn type_name(&self) -> String {
        "ReLU".into()
    }
}

impl Module for Hardswish {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.hardswish())
    }
    fn type_name(&self) -> String {
        "Hardswish".into()
    }
}

impl Module for Hardsigmoid {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.hardsigmoid())
    }
    fn type_name(&self) -> String {
        "Hardsigmoid".into()
    }
}

impl Module for ReLU6 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clamp(0.0, 6.0))
    }
    fn type_name(&self) -> String {
        "ReLU6".into()
    }
}

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.leaky_relu(self.0))
    }
    fn type_name(&self) -> String {
        "LeakyReLU".into()
    }
}

impl Module for Tanh {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.tanh())
    }
    fn type_name(&self) -> String {
        "Tanh".into()
    }
}

impl Module for Sigmoid {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.sigmoid())
    }
    fn type_name(&self) -> String {
        "Sigmoid".into()
    }
}

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.softmax(self.0)?)
    }
    fn type_name(&self) -> String {
        "Softmax".into()
    }
}

impl Module for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.log_softmax(self.0)?)
    }
    fn type_name(&self) -> String {
        "LogSoftmax".into()
    }
}

#[derive(Module)]
pub struct PReLU {
    #[param]
    pub weight: Tensor,
}

impl PReLU {
    pub fn new(channels: usize) -> Self {
        PReLU {
            weight: crate::init::constant(&[channels.max(1)], 0.25),
        }
    }
}

impl Module for PReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.prelu(&self.weight)?)
    }
}
