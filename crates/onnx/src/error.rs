//! Errors of reading an ONNX file: each names where in the file (byte offset and message) or
//! which tensor, node or attribute, and what was expected.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OnnxError {
    /// Reading the file itself failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An error inside the file `path`.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<OnnxError>,
    },
    /// The bytes are not a well-formed protobuf message of the expected kind.
    #[error("malformed protobuf in {message} at byte {offset}: {what}")]
    Decode {
        message: &'static str,
        offset: usize,
        what: String,
    },
    /// A tensor's data does not match its type and shape.
    #[error("tensor '{name}': {what}")]
    Tensor { name: String, what: String },
    /// A node cannot run: a missing input, a bad attribute, shapes that do not fit.
    #[error("node '{node}' ({op}): {what}")]
    Node {
        node: String,
        op: String,
        what: String,
    },
    /// The model uses ops aics does not run, or its graph is malformed (all named at once).
    #[error("{0}")]
    Unsupported(String),
    /// A computation that cannot be written as ONNX, or an export that does not reproduce it.
    #[error("export: {0}")]
    Export(String),
    /// The inputs given do not match the graph's.
    #[error("{0}")]
    Input(String),
    /// An attribute is missing or has another type than the op needs.
    #[error("node '{node}' ({op}): attribute '{attr}': {what}")]
    Attribute {
        node: String,
        op: String,
        attr: String,
        what: String,
    },
}

pub type Result<T> = std::result::Result<T, OnnxError>;
