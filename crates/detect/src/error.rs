//! Errors of the detection crate: each names the operation and what was expected.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DetectError {
    #[error("{op}: {msg}")]
    Arg { op: &'static str, msg: String },
    /// A file that cannot be read or does not hold what it should: its path and what is wrong.
    #[error("{}: {msg}", path.display())]
    File {
        path: std::path::PathBuf,
        msg: String,
    },
    #[error(transparent)]
    Tensor(#[from] aics_tensor::TensorError),
    #[error(transparent)]
    Nn(#[from] aics_nn::NnError),
}

pub type Result<T> = std::result::Result<T, DetectError>;

pub(crate) fn arg(op: &'static str, msg: impl Into<String>) -> DetectError {
    DetectError::Arg {
        op,
        msg: msg.into(),
    }
}
