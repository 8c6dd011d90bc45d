//! ONNX models for aics: the file decoded in pure Rust (a hand-written protobuf reader, with
//! no code generator or `protoc` at build time), every size checked against the bytes present.
//!
//! [`load`] reads a `.onnx` file into a [`Model`]: its opsets, graph, nodes with their
//! attributes, initializers (the weights, in any of the fields and types writers use, or in
//! external data files beside the model) and declared inputs and outputs with their shapes.

pub mod check;
pub mod encode;
pub mod error;
pub mod export;
mod fuse;
pub mod module;
mod ops;
pub mod proto;
pub mod run;
mod wire;

use std::path::Path;

pub use encode::{encode_model, encode_tensor};
pub use error::{OnnxError, Result};
pub use proto::{
    decode_model, decode_tensor, AttrValue, Attribute, Dim, Graph, Model, Node, Tensor, TensorData,
    ValueInfo,
};
pub use run::{OnnxModel, Value};

/// Reads and decodes the model file at `path`. Initializers stored in external files stay
/// [`TensorData::External`] until [`load_external`] reads them.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    })?;
    decode_model(&bytes).map_err(|e| OnnxError::InFile {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

/// Reads the external data of `model`'s initializers from the files beside `model_path`
/// (their `location`, relative to the model's directory, which it may not leave).
pub fn load_external(model: &mut Model, model_path: impl AsRef<Path>) -> Result<()> {
    let dir = model_path
        .as_ref()
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    for t in &mut model.graph.initializers {
        let TensorData::External {
            location,
            offset,
            length,
        } = &t.data
        else {
            continue;
        };
        let rel = Path::new(location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(OnnxError::Tensor {
                name: t.name.clone(),
                what: format!("external data location '{location}' leaves the model's directory"),
            });
        }
        let file = dir.join(rel);
        let io = |source| OnnxError::Io {
            path: file.display().to_string(),
            source,
        };
        let bytes = std::fs::read(&file).map_err(io)?;
        let start = usize::try_from(*offset).unwrap_or(usize::MAX);
        let end = match length {
            Some(l) => start.saturating_add(usize::try_from(*l).unwrap_or(usize::MAX)),
            None => bytes.len(),
        };
        if start > end || end > bytes.len() {
            return Err(OnnxError::Tensor {
                name: t.name.clone(),
                what: format!(
                    "external data at bytes {start}..{end} of '{}', which has {}",
                    file.display(),
                    bytes.len()
                ),
            });
        }
        t.data = TensorData::Raw(bytes[start..end].to_vec());
    }
    Ok(())
}

/// Writes `model` to `path` through a temporary file and a rename, so a reader never sees half
/// a file.
pub fn save(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let io = |source| OnnxError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, encode_model(model)?).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
