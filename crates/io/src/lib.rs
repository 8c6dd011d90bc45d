//! Safe readers for PyTorch checkpoint (`.pth` / `.pt`) files.
//!
//! [`load_pth`] returns the tensors of a state dict, in file order, converted
//! to `f32` ([`RawTensor`]).  Two container formats are understood:
//!
//! * **zip** (torch >= 1.6): an archive holding `<prefix>/data.pkl` (the
//!   pickled object), `<prefix>/data/<key>` (one little-endian storage per
//!   key) and optionally `<prefix>/byteorder` (`little` or `big`).
//! * **legacy** (torch < 1.6, or `_use_new_zipfile_serialization=False`): a
//!   sequence of pickles — the magic number `0x1950a86a20f9469cfc6c`, the
//!   protocol version, a `sys_info` dict, the main object, then a list of
//!   storage keys — followed, for each key, by an 8-byte little-endian element
//!   count and the raw storage bytes.
//!
//! The pickles are interpreted by a non-executing unpickler (see the `pickle`
//! module) that only accepts an allow-list of PyTorch globals.  The top-level
//! object must be a dict of name → tensor (an `OrderedDict` state dict), or a
//! dict whose `"state_dict"` or `"model"` entry is one; nested dicts are
//! flattened with `.` and non-tensor leaves are skipped.  Every tensor view
//! (offset, sizes, strides) is checked against the storage bytes present
//! before any data is read, and the result is made contiguous (row-major).

pub mod mat;
pub mod matconvnet;
pub mod npz;
mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use mat::{load_mat, load_mat_bytes, MatArray, MatClass, MatData, MatValue};
pub use matconvnet::{load_matconvnet, matconvnet_simplenn, MatConvNetConv, MatConvNetModel};
use pickle::{PickleError, StorageRef, TensorRef, Value};

/// Element type of a serialized PyTorch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PthDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl PthDtype {
    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            PthDtype::F64 | PthDtype::I64 => 8,
            PthDtype::F32 | PthDtype::I32 => 4,
            PthDtype::F16 | PthDtype::BF16 | PthDtype::I16 => 2,
            PthDtype::I8 | PthDtype::U8 | PthDtype::Bool => 1,
        }
    }

    /// The PyTorch name of the dtype (`"float32"`, `"bfloat16"`, `"bool"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PthDtype::F32 => "float32",
            PthDtype::F64 => "float64",
            PthDtype::F16 => "float16",
            PthDtype::BF16 => "bfloat16",
            PthDtype::I64 => "int64",
            PthDtype::I32 => "int32",
            PthDtype::I16 => "int16",
            PthDtype::I8 => "int8",
            PthDtype::U8 => "uint8",
            PthDtype::Bool => "bool",
        }
    }

    /// Decodes one little-endian element to `f32`.
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            PthDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            PthDtype::F64 => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            PthDtype::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            PthDtype::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            PthDtype::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
            PthDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            PthDtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            PthDtype::I8 => b[0] as i8 as f32,
            PthDtype::U8 => b[0] as f32,
            PthDtype::Bool => (b[0] != 0) as u8 as f32,
        }
    }
}

/// IEEE 754 half precision → single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: value = m * 2^-24
            let v = m as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// A dense tensor read from a checkpoint: row-major `data` converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    /// The dtype the tensor had in the file.
    pub dtype: PthDtype,
    pub data: Vec<f32>,
}

impl RawTensor {
    /// Number of elements (product of `shape`).
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Errors from reading a checkpoint; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: refusing to call {name}: only PyTorch tensor/storage globals and collections.OrderedDict are allowed")]
    Refused { path: PathBuf, name: String },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

/// Upper bound on the number of elements of one output tensor.
pub(crate) const MAX_TENSOR_ELEMS: usize = 1 << 31;
/// Upper bound on the number of state-dict entries.
const MAX_ENTRIES: usize = 1 << 20;
/// Upper bound on the elements of one tensor per element of its storage, and on the elements
/// of all tensors of a file per byte of the file (views may repeat storage elements, e.g. with
/// stride 0, but a compressed storage or many views of one storage must not turn a small file
/// into an unbounded allocation).
const MAX_EXPANSION: usize = 4096;

/// Reads the state dict stored in the PyTorch checkpoint at `path`.
pub fn load_pth(path: &Path) -> Result<Vec<(String, RawTensor)>, IoError> {
    load_pth_where(path, |_| true)
}

/// Like [`load_pth`], but only the entries whose names `keep` accepts: the others' storages are
/// never decoded (VGG19's features are 80 MB of torchvision's 548 MB file).
pub fn load_pth_where(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, RawTensor)>, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_pth_bytes_where(&bytes, path, &keep)
}

/// Like [`load_pth`], but for checkpoint bytes already in memory; `path` is
/// only used in error messages.
pub fn load_pth_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, RawTensor)>, IoError> {
    load_pth_bytes_where(bytes, path, &|_| true)
}

/// [`load_pth_bytes`] restricted to the entries `keep` accepts.
pub fn load_pth_bytes_where(
    bytes: &[u8],
    path: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, RawTensor)>, IoError> {
    let fail = |msg: String| IoError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let from_pickle = |e: PickleError, what: &str| match e {
        PickleError::Refused(name) => IoError::Refused {
            path: path.to_path_buf(),
            name,
        },
        PickleError::Malformed(m) => IoError::Format {
            path: path.to_path_buf(),
            msg: format!("{what}: {m}"),
        },
    };
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        load_zip(bytes, keep, &fail, &from_pickle)
    } else if bytes.first() == Some(&0x80) {
        load_legacy(bytes, keep, &fail, &from_pickle)
    } else {
        Err(fail(
            "not a PyTorch checkpoint: expected a zip archive or a pickle (byte 0x80) at the start"
                .into(),
        ))
    }
}

type Fail<'a> = dyn Fn(String) -> IoError + 'a;
type FromPickle<'a> = dyn Fn(PickleError, &str) -> IoError + 'a;

fn load_zip(
    bytes: &[u8],
    keep: &dyn Fn(&str) -> bool,
    fail: &Fail,
    from_pickle: &FromPickle,
) -> Result<Vec<(String, RawTensor)>, IoError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| fail(format!("invalid zip archive: {e}")))?;
    let pkl_name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| fail("zip archive has no <prefix>/data.pkl entry".into()))?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

    // Reads an entry without trusting its header size: at most `limit` bytes.
    let mut read_entry = |name: &str, limit: u64| -> Result<Option<Vec<u8>>, IoError> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(fail(format!("cannot open zip entry {name}: {e}"))),
        };
        let mut out = Vec::new();
        (&mut f)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| fail(format!("cannot read zip entry {name}: {e}")))?;
        Ok(Some(out))
    };

    let big_endian = match read_entry(&format!("{prefix}byteorder"), 16)? {
        None => false,
        Some(b) => match std::str::from_utf8(&b).map(str::trim) {
            Ok("little") => false,
            Ok("big") => true,
            _ => return Err(fail("byteorder entry must be 'little' or 'big'".into())),
        },
    };
    let pkl = read_entry(&pkl_name, bytes.len() as u64 * 1100 + 1024)?.unwrap_or_default();
    let u = pickle::unpickle(&pkl).map_err(|e| from_pickle(e, &format!("in {pkl_name}")))?;
    let mut entries = state_dict_entries(&u.value).map_err(fail)?;
    entries.retain(|(name, _)| keep(name));
    let last = last_uses(&entries);

    // each storage is read when first needed and dropped after its last use
    let mut storages: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len().min(4096));
    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION);
    for (i, (name, t)) in entries.into_iter().enumerate() {
        let key = &t.storage.key;
        if !storages.contains_key(key) {
            let needed = storage_bytes_needed(&t.storage).map_err(&fail)?;
            let entry = format!("{prefix}data/{key}");
            let data = read_entry(&entry, needed)?.ok_or_else(|| {
                fail(format!("missing storage entry {entry} for tensor '{name}'"))
            })?;
            storages.insert(key.clone(), Rc::new(data));
        }
        let data = &storages[key];
        let tensor = materialize(&t, data, big_endian, &mut budget)
            .map_err(|m| fail(format!("tensor '{name}': {m}")))?;
        if last.get(key) == Some(&i) {
            storages.remove(key);
        }
        out.push((name, tensor));
    }
    Ok(out)
}

/// Index of the last entry that uses each storage.
fn last_uses(entries: &[(String, Rc<TensorRef>)]) -> HashMap<String, usize> {
    entries
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (t.storage.key.clone(), i))
        .collect()
}

/// Bytes spanned by a storage reference (root offset + declared elements).
fn storage_bytes_needed(s: &StorageRef) -> Result<u64, String> {
    s.elem_offset
        .checked_add(s.numel)
        .and_then(|n| n.checked_mul(s.dtype.element_size()))
        .map(|n| n as u64)
        .ok_or_else(|| format!("storage {} size overflows", s.key))
}

const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

fn load_legacy(
    bytes: &[u8],
    keep: &dyn Fn(&str) -> bool,
    fail: &Fail,
    from_pickle: &FromPickle,
) -> Result<Vec<(String, RawTensor)>, IoError> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<Value, IoError> {
        let u = pickle::unpickle(&bytes[pos..])
            .map_err(|e| from_pickle(e, &format!("legacy {what} pickle")))?;
        pos += u.consumed;
        Ok(u.value)
    };
    match next("magic number")? {
        Value::Int(LEGACY_MAGIC) => {}
        _ => {
            return Err(fail(
                "not a legacy PyTorch file: magic number 0x1950a86a20f9469cfc6c expected".into(),
            ))
        }
    }
    match next("protocol version")? {
        Value::Int(1001) => {}
        Value::Int(v) => {
            return Err(fail(format!(
                "unsupported legacy protocol version {v}, expected 1001"
            )))
        }
        other => {
            return Err(fail(format!(
                "expected the protocol version int, found {}",
                other.kind()
            )))
        }
    }
    let mut big_endian = false;
    match next("sys_info")? {
        Value::Dict(m) => {
            for (k, v) in &m.items {
                if matches!(k, Value::Str(s) if &**s == "little_endian") {
                    big_endian = matches!(v, Value::Bool(false));
                }
            }
        }
        other => {
            return Err(fail(format!(
                "expected the sys_info dict, found {}",
                other.kind()
            )))
        }
    }
    let main = next("main")?;
    let keys = match next("storage key list")? {
        Value::List(l) => l
            .items
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.to_string()),
                other => Err(fail(format!(
                    "expected str storage keys, found {}",
                    other.kind()
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(fail(format!(
                "expected the storage key list, found {}",
                other.kind()
            )))
        }
    };
    let entries = state_dict_entries(&main).map_err(fail)?;

    // Element size of each root storage, from the references in the main pickle.
    let mut dtypes: HashMap<&str, PthDtype> = HashMap::new();
    for (_, t) in &entries {
        dtypes.insert(&t.storage.key, t.storage.dtype);
    }
    // only the storages of the kept entries are copied out
    let kept: Vec<_> = entries
        .iter()
        .filter(|(name, _)| keep(name))
        .cloned()
        .collect();
    let last = last_uses(&kept);
    let mut storages: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    for key in &keys {
        let count_bytes = bytes.get(pos..pos + 8).ok_or_else(|| {
            fail(format!(
                "truncated: expected the 8-byte element count of storage {key}"
            ))
        })?;
        let count = u64::from_le_bytes(count_bytes.try_into().unwrap());
        pos += 8;
        // A storage no tensor refers to has an unknown element size, so the
        // bytes after it could not be located: reject the file.
        let es = match dtypes.get(key.as_str()) {
            Some(d) => d.element_size() as u64,
            None => {
                return Err(fail(format!(
                    "storage {key} is not referenced by any tensor"
                )))
            }
        };
        let len = count
            .checked_mul(es)
            .filter(|&l| l <= (bytes.len() - pos) as u64)
            .ok_or_else(|| {
                fail(format!(
                    "truncated: storage {key} declares {count} elements of {es} bytes, only {} bytes left",
                    bytes.len() - pos
                ))
            })? as usize;
        if last.contains_key(key) {
            storages.insert(key.clone(), Rc::new(bytes[pos..pos + len].to_vec()));
        }
        pos += len;
    }
    let mut out = Vec::with_capacity(kept.len().min(4096));
    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION);
    for (i, (name, t)) in kept.into_iter().enumerate() {
        let data = storages.get(&t.storage.key).ok_or_else(|| {
            fail(format!(
                "tensor '{name}' uses storage {} that is not in the file",
                t.storage.key
            ))
        })?;
        let tensor = materialize(&t, data, big_endian, &mut budget)
            .map_err(|m| fail(format!("tensor '{name}': {m}")))?;
        if last.get(&t.storage.key) == Some(&i) {
            storages.remove(&t.storage.key);
        }
        out.push((name, tensor));
    }
    Ok(out)
}

/// Finds the state dict in the unpickled object and flattens it.
fn state_dict_entries(top: &Value) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
    let Value::Dict(m) = top else {
        return Err(format!(
            "expected a dict (state dict) at the top level, found {}",
            top.kind()
        ));
    };
    let mut root = m;
    for wanted in ["state_dict", "model"] {
        if let Some((_, Value::Dict(inner))) = m
            .items
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == wanted))
        {
            root = inner;
            break;
        }
    }
    let mut out: Vec<(String, Rc<TensorRef>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    flatten(root, "", 0, &mut out, &mut index)?;
    if out.is_empty() {
        return Err("expected a state dict of tensors, but found no tensors".into());
    }
    Ok(out)
}

fn flatten(
    m: &pickle::Map,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, Rc<TensorRef>)>,
    index: &mut HashMap<String, usize>,
) -> Result<(), String> {
    if depth > pickle::MAX_DEPTH {
        return Err("state dict nested too deeply".into());
    }
    for (k, v) in &m.items {
        let key = match k {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => {
                return Err(format!(
                    "expected str keys in the state dict, found {}",
                    other.kind()
                ))
            }
        };
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Tensor(t) => {
                if let Some(&i) = index.get(&name) {
                    out[i].1 = t.clone(); // a repeated key replaces the value, keeps the position
                } else {
                    if out.len() >= MAX_ENTRIES {
                        return Err("too many state dict entries".into());
                    }
                    index.insert(name.clone(), out.len());
                    out.push((name, t.clone()));
                }
            }
            Value::Dict(inner) => flatten(inner, &name, depth + 1, out, index)?,
            _ => {}
        }
    }
    Ok(())
}

/// Gathers a strided view out of the storage bytes into a contiguous tensor, taking its
/// element count out of `budget` (the elements the rest of the file may still produce).
fn materialize(
    t: &TensorRef,
    root: &[u8],
    big_endian: bool,
    budget: &mut usize,
) -> Result<RawTensor, String> {
    let dtype = t.storage.dtype;
    let es = dtype.element_size();
    let avail_root = root.len() / es;
    // The storage (a legacy view may start inside the root storage).
    let s_off = t.storage.elem_offset;
    let s_len = t.storage.numel;
    if s_off.checked_add(s_len).is_none_or(|e| e > avail_root) {
        return Err(format!(
            "storage {} declares {s_len} elements at offset {s_off} but only {avail_root} are present",
            t.storage.key
        ));
    }
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMS && n <= s_len.max(1).saturating_mul(MAX_EXPANSION))
        .ok_or_else(|| format!("shape {:?} is too large for its storage", t.size))?;
    if numel > *budget {
        return Err(format!(
            "shape {:?} is too large: the tensors of this file would hold more than \
             {MAX_EXPANSION} elements per byte of the file",
            t.size
        ));
    }
    *budget -= numel;
    if numel > 0 {
        let mut last = t.offset;
        for (&d, &s) in t.size.iter().zip(&t.stride) {
            last = (d - 1)
                .checked_mul(s)
                .and_then(|x| x.checked_add(last))
                .ok_or("stride overflow")?;
        }
        if last >= s_len {
            return Err(format!(
                "view (offset {}, shape {:?}, stride {:?}) reaches element {last} but the storage has {s_len}",
                t.offset, t.size, t.stride
            ));
        }
    }
    let base = &root[s_off * es..(s_off + s_len) * es];
    let mut swapped = [0u8; 8];
    let read = |i: usize, buf: &mut [u8; 8]| -> f32 {
        let b = &base[i * es..(i + 1) * es];
        if big_endian && es > 1 {
            for (j, &x) in b.iter().rev().enumerate() {
                buf[j] = x;
            }
            dtype.decode(&buf[..es])
        } else {
            dtype.decode(b)
        }
    };
    let mut data = Vec::with_capacity(numel);
    if numel > 0 {
        let nd = t.size.len();
        let mut idx = vec![0usize; nd];
        let mut lin = t.offset;
        for _ in 0..numel {
            data.push(read(lin, &mut swapped));
            // odometer increment over the last dimension first
            for d in (0..nd).rev() {
                idx[d] += 1;
                lin += t.stride[d];
                if idx[d] < t.size[d] {
                    break;
                }
                lin -= t.stride[d] * t.size[d];
                idx[d] = 0;
            }
        }
    }
    Ok(RawTensor {
        shape: t.size.clone(),
        dtype,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8400), -(2f32.powi(-14)));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
