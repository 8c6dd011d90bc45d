//! Pooling layers: `MaxPool2d`, `AvgPool2d`, `LPPool2d`, `AdaptiveAvgPool2d`.

use aics_tensor::{PoolParams, Tensor};

use crate::error::Result;
use crate::module::Module;

#[derive(Module)]
pub struct MaxPool2d(pub PoolParams);
#[derive(Module)]
pub struct AvgPool2d {
    pub params: PoolParams,
    pub count_include_pad: bool,
}
#[derive(Module)]
pub struct LPPool2d {
    pub norm_type: f64,
    pub params: PoolParams,
}
#[derive(Module)]
pub struct AdaptiveAvgPool2d(pub usize, pub usize);

impl MaxPool2d {
    /// `MaxPool2d(kernel, stride)`.
    pub fn new(kernel: usize, stride: usize) -> Self {
        MaxPool2d(PoolParams::new(kernel).stride(stride))
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.max_pool2d(self.0)?)
    }
    fn type_name(&self) -> String {
        format!(
            "MaxPool2d({}x{}, s{})",
            self.0.kernel.0, self.0.kernel.1, self.0.stride.0
        )
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.avg_pool2d(self.params, self.count_include_pad)?)
    }
    fn type_name(&self) -> String {
        format!(
            "AvgPool2d({}x{}, s{})",
            self.params.kernel.0, self.params.kernel.1, self.params.stride.0
        )
    }
}

impl Module for LPPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.lp_pool2d(self.norm_type, self.params)?)
    }
    fn type_name(&self) -> String {
        format!(
            "LPPool2d(p={}, {}x{})",
            self.norm_type, self.params.kernel.0, self.params.kernel.1
        )
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.adaptive_avg_pool2d(self.0, self.1)?)
    }
    fn type_name(&self) -> String {
        format!("AdaptiveAvgPool2d({}x{})", self.0, self.1)
    }
}
