//! Errors of the nn layer: tensor errors, plus checkpoint and state-dict problems that name the
//! file and the tensor.

use std::path::PathBuf;

use aics_tensor::TensorError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NnError {
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("state dict: missing tensor `{key}` (expected shape {shape:?})")]
    MissingKey { key: String, shape: Vec<usize> },
    #[error("state dict: unexpected tensor `{key}` (the model has no such parameter)")]
    UnexpectedKey { key: String },
    #[error("state dict: tensor `{key}` has shape {got:?}, the model expects {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{layer}: {msg}")]
    Config { layer: String, msg: String },
    #[error(transparent)]
    Comm(#[from] crate::distributed::CommError),
}

pub type Result<T> = std::result::Result<T, NnError>;

pub(crate) fn config(layer: &str, msg: impl Into<String>) -> NnError {
    NnError::Config {
        layer: layer.to_string(),
        msg: msg.into(),
    }
}
