//! The crate's error type.

use aics_nn::NnError;
use aics_tensor::TensorError;

#[derive(Debug, thiserror::Error)]
pub enum GanError {
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A configuration, shape or argument the models cannot take.
    #[error("{0}")]
    Config(String),
    /// A loss that became NaN or infinite: training stops at that step.
    #[error("step {step}: the {what} is not finite ({value}); try a smaller learning rate")]
    NotFinite {
        step: u64,
        what: &'static str,
        value: f64,
    },
}

pub type Result<T> = std::result::Result<T, GanError>;

pub(crate) fn config(msg: impl Into<String>) -> GanError {
    GanError::Config(msg.into())
}
