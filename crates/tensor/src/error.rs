//! Typed errors of the tensor core. Every error names the op and the shapes involved.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum TensorError {
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not broadcast")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: shape mismatch: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: data of {got} elements does not fit shape {shape:?} ({want} elements)")]
    DataLen {
        op: &'static str,
        shape: Vec<usize>,
        got: usize,
        want: usize,
    },
    #[error("{op}: dimension {dim} out of range for a tensor of rank {rank}")]
    Dim {
        op: &'static str,
        dim: isize,
        rank: usize,
    },
    #[error("{op}: invalid argument: {msg}")]
    Arg { op: &'static str, msg: String },
    #[error("{op}: index {index} out of range for size {size}")]
    Index {
        op: &'static str,
        index: usize,
        size: usize,
    },
    #[error("backward: {0}")]
    Backward(String),
}

pub type Result<T> = std::result::Result<T, TensorError>;

pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> TensorError {
    TensorError::Shape {
        op,
        msg: msg.into(),
    }
}

pub(crate) fn arg_err(op: &'static str, msg: impl Into<String>) -> TensorError {
    TensorError::Arg {
        op,
        msg: msg.into(),
    }
}
