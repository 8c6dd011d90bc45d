//! aics-vision: the model zoo (classifiers today; detectors later) built on aics-nn, weight
//! import, and ImageNet preprocessing.

pub mod imagenet;
pub mod models;
pub mod resize;
pub mod weights;

pub use models::{build, default_shape, model_names, zoo_entry, ModelConfig, ZooEntry, ZOO};
