//! Typed errors of the text crate: each names the file, the character or the setting at fault.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TextError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{what}: empty corpus")]
    Empty { what: String },
    #[error(
        "character {ch:?} (U+{code:04X}) is not in the model's vocabulary of {size} characters"
    )]
    UnknownChar { ch: char, code: u32, size: usize },
    #[error("{what}: {msg}")]
    Config { what: String, msg: String },
    #[error(transparent)]
    Load(#[from] aics_io::IoError),
    #[error(transparent)]
    Nn(#[from] aics_nn::NnError),
    #[error(transparent)]
    Tensor(#[from] aics_tensor::TensorError),
}

pub type Result<T> = std::result::Result<T, TextError>;

pub(crate) fn config(what: impl Into<String>, msg: impl Into<String>) -> TextError {
    TextError::Config {
        what: what.into(),
        msg: msg.into(),
    }
}
