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
pub mod two_stage;
mod wire;

use std::collections::HashMap;
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

/// Reads the model at `path` with its external data and prepares it to run
/// ([`OnnxModel::new`]); an error names the file.
pub fn open(path: impl AsRef<Path>) -> Result<OnnxModel> {
    let path = path.as_ref();
    let mut model = load(path)?;
    let values = external_values(&mut model, path)?;
    OnnxModel::with_values(model, values).map_err(|e| OnnxError::InFile {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

/// Reads the external data of `model`'s initializers from the files beside `model_path`
/// (their `location`, relative to the model's directory, which it may not leave). Each file is
/// memory-mapped once (read whole where it cannot be mapped) and each tensor's bytes copied out
/// of it.
pub fn load_external(model: &mut Model, model_path: impl AsRef<Path>) -> Result<()> {
    read_external(model, model_path.as_ref(), false).map(|_| ())
}

/// The values of `model`'s float32 initializers in external files, decoded straight from the
/// mapped file (the map's pages given back as they are read, so a model over 2 GB is held once,
/// as its values); the initializers of other types get their bytes as [`load_external`] gives
/// them.
fn external_values(model: &mut Model, model_path: &Path) -> Result<HashMap<String, Value>> {
    read_external(model, model_path, true)
}

/// [`load_external`], or with `decode` [`external_values`].
fn read_external(
    model: &mut Model,
    model_path: &Path,
    decode: bool,
) -> Result<HashMap<String, Value>> {
    let mut values = HashMap::new();
    let dir = model_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    let mut files: HashMap<std::path::PathBuf, Mapped> = HashMap::new();
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
        if !files.contains_key(&file) {
            let m = Mapped::open(&file)?;
            files.insert(file.clone(), m);
        }
        let bytes = files[&file].bytes();
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
        if decode && t.data_type == proto::dtype::FLOAT {
            let v = files[&file].floats(t, start, end)?;
            values.insert(t.name.clone(), v);
            t.data = TensorData::None;
        } else {
            t.data = TensorData::Raw(bytes[start..end].to_vec());
        }
    }
    Ok(values)
}

/// An external data file, memory-mapped or read.
enum Mapped {
    Map(memmap2::Mmap),
    Read(Vec<u8>),
}

impl Mapped {
    fn open(path: &Path) -> Result<Mapped> {
        let io = |source| OnnxError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read while this function's caller copies tensors out of it and is
        // dropped after; a file changed by another process meanwhile gives wrong values (as a
        // read racing a writer would), not undefined behaviour beyond that of reading bytes.
        match unsafe { memmap2::Mmap::map(&f) } {
            Ok(m) => Ok(Mapped::Map(m)),
            Err(_) => std::fs::read(path).map(Mapped::Read).map_err(io),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Map(m) => m,
            Mapped::Read(v) => v,
        }
    }

    /// The little-endian float32 values of initializer `t` at bytes `start..end` (in bounds)
    /// as a tensor of its dims, read 64 MiB at a time; a map's pages are given back after each
    /// part.
    fn floats(&self, t: &proto::Tensor, start: usize, end: usize) -> Result<Value> {
        let bad = |what: String| OnnxError::Tensor {
            name: t.name.clone(),
            what,
        };
        let (shape, numel) = (t.shape()?, t.numel()?);
        if numel.checked_mul(4) != Some(end - start) {
            return Err(bad(format!(
                "{} bytes of external data for {numel} float32 values ({:?})",
                end - start,
                t.dims
            )));
        }
        const PART: usize = 64 << 20;
        let mut v = Vec::with_capacity(numel);
        let mut at = start;
        while at < end {
            let to = (at + PART).min(end);
            v.extend(
                self.bytes()[at..to]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            if let Mapped::Map(m) = self {
                // SAFETY: the map is private and read-only, and nothing borrows these bytes
                // any more: the kernel drops the pages and would read them from the file again
                // if they were touched. A failed hint only leaves them resident.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, to - at)
                };
            }
            at = to;
        }
        let t = aics_tensor::Tensor::from_vec(v, &shape).map_err(|e| bad(e.to_string()))?;
        Ok(Value::F(t))
    }
}

/// Writes `model` to `path` with the data of every initializer of at least `min_bytes` bytes in
/// one file beside it, `path` with `.data` appended (ONNX's external data, which a model over
/// the 2 GB a protobuf message can hold needs). Each tensor starts at a multiple of 4096 bytes,
/// so that readers can map it. Both files are written through temporary files and renames.
pub fn save_with_external_data(
    model: &Model,
    path: impl AsRef<Path>,
    min_bytes: usize,
) -> Result<()> {
    let path = path.as_ref();
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| OnnxError::Io { path: p, source }
    };
    let name = path
        .file_name()
        .map(|n| format!("{}.data", n.to_string_lossy()))
        .ok_or_else(|| OnnxError::Input(format!("{}: not a file path", path.display())))?;
    let data_path = path.with_file_name(&name);
    let mut model = model.clone();
    let mut data: Vec<u8> = Vec::new();
    for t in &mut model.graph.initializers {
        let TensorData::Raw(b) = &t.data else {
            continue;
        };
        if b.len() < min_bytes {
            continue;
        }
        let offset = data.len().div_ceil(4096) * 4096;
        data.resize(offset, 0);
        data.extend_from_slice(b);
        t.data = TensorData::External {
            location: name.clone(),
            offset: offset as u64,
            length: Some(b.len() as u64),
        };
    }
    let tmp = data_path.with_extension("data.tmp");
    std::fs::write(&tmp, &data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &data_path).map_err(io(&data_path))?;
    save(&model, path)
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
