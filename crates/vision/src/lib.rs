//! aics-vision: the model zoo (classifiers today; detectors later) built on aics-nn.

pub mod models;

pub use models::{build, default_shape, ModelConfig, MODELS};
