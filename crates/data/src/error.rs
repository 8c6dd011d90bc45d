//! Error type shared by every loader, data set, transform and the data loader.
//!
//! Problems caused by input (missing files, truncated or corrupt data, bad
//! arguments) are always reported through [`DataError`], never by panicking.

use std::path::PathBuf;

/// Everything that can go wrong while reading or preparing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its content is not what the format requires
    /// (bad magic number, truncated data, corrupt compression, ...).
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },

    /// An image file could not be decoded.
    #[error("cannot decode image {}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },

    /// A file the data set needs is missing.
    #[error("{}: {msg}", path.display())]
    NotFound { path: PathBuf, msg: String },

    /// Parts of a data set disagree with each other (e.g. the number of
    /// images differs from the number of labels).
    #[error("{msg}")]
    Mismatch { msg: String },

    /// A data set, class or split holds no samples.
    #[error("empty data set: {msg}")]
    Empty { msg: String },

    /// A sample index past the end of a data set.
    #[error("index {index} is out of range for a data set of {len} samples")]
    IndexOutOfRange { index: usize, len: usize },

    /// An argument or configuration value is not usable.
    #[error("invalid argument: {msg}")]
    InvalidArgument { msg: String },

    /// The background thread that prepares batches stopped unexpectedly.
    #[error("batch preparation failed: {msg}")]
    Worker { msg: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn not_found(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::NotFound {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn mismatch(msg: impl Into<String>) -> Self {
        DataError::Mismatch { msg: msg.into() }
    }

    pub(crate) fn empty(msg: impl Into<String>) -> Self {
        DataError::Empty { msg: msg.into() }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        DataError::InvalidArgument { msg: msg.into() }
    }
}

/// Result alias used throughout this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
