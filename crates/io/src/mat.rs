//! A safe reader for MATLAB MAT-files, version 5 (the format `save -v6` and
//! `save -v7` write, and the one MatConvNet models such as
//! `imagenet-vgg-verydeep-19.mat` are distributed in).
//!
//! # The format
//!
//! A file starts with a 128-byte **header**: 116 bytes of descriptive text
//! (`MATLAB 5.0 MAT-file, ...`), an 8-byte subsystem data offset, a 2-byte
//! version (`0x0100`) and a 2-byte endian indicator: the characters `MI`
//! written as a 16-bit integer, so a little-endian file holds the bytes `IM`
//! and a big-endian file `MI`.  Every later number is in that byte order.
//!
//! The rest of the file is a sequence of **data elements**.  Each starts with
//! an 8-byte tag: a 32-bit data type (`miINT8` = 1 ... `miUTF32` = 18, see the
//! `MI_*` constants) and a 32-bit byte count, followed by that many bytes of
//! data, padded with zeros to a multiple of 8 bytes.  When the data is at most
//! 4 bytes long it may instead be packed into the tag itself (the **small data
//! element** format): the first 32-bit word then holds the byte count in its
//! upper 16 bits and the type in its lower 16 bits, and the data occupies the
//! second word.
//!
//! Top-level elements are either:
//!
//! * `miMATRIX` (14): one variable, whose data is itself a sequence of
//!   sub-elements: array flags (`miUINT32` ×2: class in the low byte of the
//!   first word, the complex/global/logical bits in the next byte),
//!   dimensions (`miINT32` × ndims), the array name (`miINT8`), then
//!   class-specific data:
//!   * numeric classes (`mxDOUBLE` ... `mxUINT64`) and logicals: the real part
//!     as one element of *any* numeric type (MATLAB stores e.g. small doubles
//!     as `miUINT8`), in column-major order; the values are converted to the
//!     class's type;
//!   * `mxCHAR`: the characters (`miUTF8`, `miUINT16`/`miUTF16`, `miUINT8`,
//!     ...) in column-major order;
//!   * `mxCELL`: one `miMATRIX` per element, in column-major order;
//!   * `mxSTRUCT`: the maximum field-name length (`miINT32`), the field names
//!     (`miINT8`, each NUL-padded to that length), then for each element in
//!     column-major order one `miMATRIX` per field.
//! * `miCOMPRESSED` (15, `save -v7`): a zlib stream that inflates to one or
//!   more complete `miMATRIX` elements.  These elements are not padded.
//!
//! # Bounds on untrusted input
//!
//! No size read from the file is used for an allocation before it is checked
//! against the bytes actually present: numeric and char data must hold
//! exactly as many elements as the dimensions say, a cell or struct array may
//! not declare more elements than its remaining bytes could encode (each
//! element needs at least an 8-byte tag), dimension products are computed with
//! overflow checks, cells and structs nest at most [`MAX_DEPTH`] levels deep,
//! and `miCOMPRESSED` streams are inflated incrementally up to at most
//! [`MAX_INFLATE_RATIO`] times their compressed size (plus
//! [`INFLATE_SLACK`]), never more than [`MAX_INFLATED`] bytes.  Truncated or
//! malformed input yields an [`IoError::Format`] naming the file, the byte
//! offset and (when known) the variable; no input makes the reader panic.
//!
//! Not supported (reported as errors naming the variable): complex arrays,
//! sparse arrays, MATLAB objects (`mxOBJECT`, classdef/opaque objects, strings,
//! tables) and function handles; MAT-file v4 and v7.3 (HDF5) files.
//!
//! This module is the MAT-file reader only.  The mapping of MatConvNet
//! simplenn models onto PyTorch state-dict layout lives in
//! [`crate::matconvnet`] (`matconvnet.rs`), which uses only the public API
//! of this module.

use std::path::Path;

use crate::IoError;

// Data types of data elements (the `mi*` constants of the MAT-file spec).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array classes (the `mx*` constants) that have no `MatClass`.
const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_OBJECT: u8 = 3;
const MX_CHAR: u8 = 4;
const MX_SPARSE: u8 = 5;
const MX_FUNCTION: u8 = 16;
const MX_OPAQUE: u8 = 17;

// Bits of the array flags byte.
const FLAG_COMPLEX: u32 = 0x08;
const FLAG_LOGICAL: u32 = 0x02;

/// Maximum nesting depth of cells and structs (a top-level variable is at
/// depth 0).
pub const MAX_DEPTH: usize = 64;
/// A `miCOMPRESSED` element may inflate to at most this many times its
/// compressed size (plus [`INFLATE_SLACK`]).
pub const MAX_INFLATE_RATIO: u64 = 64;
/// Allowance added to the inflate limit, so that small, highly compressible
/// variables (a few thousand zeros) are accepted.
pub const INFLATE_SLACK: u64 = 1 << 20;
/// Absolute upper bound on the inflated size of one `miCOMPRESSED` element.
pub const MAX_INFLATED: u64 = 4 << 30;
/// Upper bound on the number of elements of one numeric or char array.
const MAX_ARRAY_ELEMS: usize = 1 << 31;
/// Upper bound on the number of elements of a struct array without fields
/// (which take no bytes in the file).
const MAX_EMPTY_STRUCT_ELEMS: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Values

/// The class of a numeric (or logical) MATLAB array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatClass {
    Double,
    Single,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
}

impl MatClass {
    /// The MATLAB name of the class (`"double"`, `"single"`, `"uint8"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MatClass::Double => "double",
            MatClass::Single => "single",
            MatClass::Int8 => "int8",
            MatClass::UInt8 => "uint8",
            MatClass::Int16 => "int16",
            MatClass::UInt16 => "uint16",
            MatClass::Int32 => "int32",
            MatClass::UInt32 => "uint32",
            MatClass::Int64 => "int64",
            MatClass::UInt64 => "uint64",
        }
    }

    fn from_mx(class: u8) -> Option<MatClass> {
        Some(match class {
            6 => MatClass::Double,
            7 => MatClass::Single,
            8 => MatClass::Int8,
            9 => MatClass::UInt8,
            10 => MatClass::Int16,
            11 => MatClass::UInt16,
            12 => MatClass::Int32,
            13 => MatClass::UInt32,
            14 => MatClass::Int64,
            15 => MatClass::UInt64,
            _ => return None,
        })
    }
}

/// The elements of a numeric array, in MATLAB's column-major order.
///
/// The variant follows the class: `single` → `F32`, `int64` → `I64`,
/// `uint64` → `U64`, every other class → `F64` (which represents all their
/// values exactly).
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
}

impl MatData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MatData::F64(v) => v.len(),
            MatData::F32(v) => v.len(),
            MatData::I64(v) => v.len(),
            MatData::U64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A numeric or logical MATLAB array: dimensions (at least 2, as MATLAB
/// stores them) and column-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub dims: Vec<usize>,
    pub class: MatClass,
    pub data: MatData,
}

impl MatArray {
    /// Number of elements (the product of `dims`).
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements converted to `f32`, in the stored column-major order.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            MatData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            MatData::F32(v) => v.clone(),
            MatData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            MatData::U64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The elements converted to `f64`, in the stored column-major order
    /// (exact except for 64-bit integers beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            MatData::F64(v) => v.clone(),
            MatData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            MatData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            MatData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The same dims with the data reordered to row-major (C) order, so that
    /// index `[i0, i1, ..., ik]` is at position
    /// `((i0 * d1 + i1) * d2 + ...) * dk + ik`, converted to `f32`.
    ///
    /// Panics if `data` does not hold the product of `dims` elements, which
    /// never happens for arrays returned by [`load_mat`].
    pub fn to_row_major_f32(&self) -> (Vec<usize>, Vec<f32>) {
        let data = column_major_to_row_major(&self.dims, &self.to_f32_vec())
            .expect("a MatArray's data length equals the product of its dims");
        (self.dims.clone(), data)
    }

    /// Like [`MatArray::to_row_major_f32`], converted to `f64`.
    pub fn to_row_major_f64(&self) -> (Vec<usize>, Vec<f64>) {
        let data = column_major_to_row_major(&self.dims, &self.to_f64_vec())
            .expect("a MatArray's data length equals the product of its dims");
        (self.dims.clone(), data)
    }
}

/// Reorders `data`, a column-major (MATLAB, Fortran) array of shape `dims`,
/// into row-major (C) order for the same `dims`.  Returns `None` when
/// `data.len()` is not the product of `dims`.
pub fn column_major_to_row_major<T: Copy>(dims: &[usize], data: &[T]) -> Option<Vec<T>> {
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n != data.len() {
        return None;
    }
    if n == 0 {
        return Some(Vec::new());
    }
    // Column-major strides: the first index varies fastest.  Every partial
    // product is at most n, so none overflows.
    let nd = dims.len();
    let mut strides = vec![1usize; nd];
    for k in 1..nd {
        strides[k] = strides[k - 1] * dims[k - 1];
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; nd];
    let mut src = 0usize;
    for _ in 0..n {
        out.push(data[src]);
        // Row-major odometer: the last index varies fastest.
        for k in (0..nd).rev() {
            idx[k] += 1;
            src += strides[k];
            if idx[k] < dims[k] {
                break;
            }
            src -= strides[k] * dims[k];
            idx[k] = 0;
        }
    }
    Some(out)
}

/// One MATLAB value.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// A numeric array of any class.
    Numeric(MatArray),
    /// A logical array (stored by MATLAB as `uint8` with the logical flag).
    Logical(MatArray),
    /// A char array.  A `1×n` array is its text; an `r×c` char matrix (or an
    /// N-d one, reshaped to `r×(numel/r)`) becomes its rows joined by `'\n'`.
    Char(String),
    /// A cell array; `items` in column-major order.
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
    /// A struct array; `elems` holds, for each element in column-major order,
    /// its values in the order of `fields`.
    Struct {
        dims: Vec<usize>,
        fields: Vec<String>,
        elems: Vec<Vec<MatValue>>,
    },
}

impl MatValue {
    /// Calls `f` on this value and then on every value nested in it (cell items, struct
    /// fields), depth first.
    pub fn walk(&self, f: &mut dyn FnMut(&MatValue)) {
        f(self);
        match self {
            MatValue::Cell { items, .. } => items.iter().for_each(|v| v.walk(f)),
            MatValue::Struct { elems, .. } => elems.iter().flatten().for_each(|v| v.walk(f)),
            _ => {}
        }
    }

    /// A short name of the variant: `"numeric"`, `"logical"`, `"char"`,
    /// `"cell"` or `"struct"`.
    pub fn kind(&self) -> &'static str {
        match self {
            MatValue::Numeric(_) => "numeric",
            MatValue::Logical(_) => "logical",
            MatValue::Char(_) => "char",
            MatValue::Cell { .. } => "cell",
            MatValue::Struct { .. } => "struct",
        }
    }

    /// The value of field `name` of a 1×1 struct (`None` for anything else or
    /// a missing field).
    pub fn field(&self, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct { fields, elems, .. } if elems.len() == 1 => {
                let i = fields.iter().position(|f| f == name)?;
                elems[0].get(i)
            }
            _ => None,
        }
    }

    /// The array of a numeric or logical value.
    pub fn as_array(&self) -> Option<&MatArray> {
        match self {
            MatValue::Numeric(a) | MatValue::Logical(a) => Some(a),
            _ => None,
        }
    }

    /// The text of a char value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MatValue::Char(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a cell (column-major).
    pub fn as_cell(&self) -> Option<&[MatValue]> {
        match self {
            MatValue::Cell { items, .. } => Some(items),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points

/// Reads all variables of the MAT-file (v5/v6/v7) at `path`, in file order.
pub fn load_mat(path: &Path) -> Result<Vec<(String, MatValue)>, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_mat_bytes(&bytes, path)
}

/// Like [`load_mat`], for file contents already in memory; `path` is only
/// used in error messages.
pub fn load_mat_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, MatValue)>, IoError> {
    let fail = |e: PErr| IoError::Format {
        path: path.to_path_buf(),
        msg: e.render(),
    };
    let header = parse_header(bytes).map_err(|msg| fail(PErr::new(msg)))?;
    let mut out = Vec::new();
    let mut top = Cur {
        buf: bytes,
        pos: 128,
        end: bytes.len(),
        big: header.big_endian,
        inflated_from: None,
    };
    while top.pos < top.end {
        let at = top.pos;
        let el = top.element("top-level data element").map_err(fail)?;
        if header.subsystem_offset == Some(at) {
            // Subsystem data (the class definitions of MATLAB objects) is not
            // a variable.
            continue;
        }
        match el.ty {
            MI_MATRIX => out.push(top.parse_matrix(&el, 0).map_err(fail)?),
            MI_COMPRESSED => {
                let inflated = inflate(el.data, at).map_err(|msg| fail(PErr::new(msg)))?;
                let mut z = Cur {
                    buf: &inflated,
                    pos: 0,
                    end: inflated.len(),
                    big: header.big_endian,
                    inflated_from: Some(at),
                };
                while z.pos < z.end {
                    let el = z.element("compressed data element").map_err(fail)?;
                    if el.ty != MI_MATRIX {
                        return Err(fail(z.err(
                            el.at,
                            format!(
                                "expected a miMATRIX element, found data type {}",
                                mi_name(el.ty)
                            ),
                        )));
                    }
                    out.push(z.parse_matrix(&el, 0).map_err(fail)?);
                }
            }
            ty => {
                return Err(fail(top.err(
                    at,
                    format!(
                        "expected a miMATRIX or miCOMPRESSED element, found data type {}",
                        mi_name(ty)
                    ),
                )))
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Header

struct Header {
    big_endian: bool,
    subsystem_offset: Option<usize>,
}

fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let looks_hdf5 = bytes.starts_with(b"MATLAB 7.3");
    if bytes.len() < 128 {
        return Err(format!(
            "not a MAT-file: {} bytes, too short for the 128-byte MAT-file header",
            bytes.len()
        ));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(if bytes[..4].contains(&0) {
                "not a MAT-file v5: looks like a MAT-file v4 (unsupported), \
                 no endian indicator 'IM'/'MI' at offset 126"
                    .into()
            } else {
                format!(
                    "not a MAT-file v5: expected the endian indicator 'IM' or 'MI' at offset 126, found {other:02x?}"
                )
            })
        }
    };
    let rd16 = |b: [u8; 2]| {
        if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    match rd16([bytes[124], bytes[125]]) {
        0x0100 => {}
        0x0200 => {
            return Err(
                "MAT-file v7.3 (HDF5-based) is not supported; re-save with save(..., '-v7')".into(),
            )
        }
        v if looks_hdf5 => {
            return Err(format!(
                "MAT-file v7.3 (HDF5-based) is not supported (version field {v:#06x})"
            ))
        }
        v => {
            return Err(format!(
                "unsupported MAT-file version {v:#06x} at offset 124, expected 0x0100"
            ))
        }
    }
    let raw: [u8; 8] = bytes[116..124].try_into().unwrap_or([0; 8]);
    let subsystem_offset = if raw == [0; 8] || raw == [b' '; 8] {
        None
    } else {
        let v = if big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        };
        usize::try_from(v).ok()
    };
    Ok(Header {
        big_endian,
        subsystem_offset,
    })
}

// ---------------------------------------------------------------------------
// Errors while parsing

/// A parse error: the message (with its offset) plus the location inside the
/// variable, collected while the error propagates outwards.
#[derive(Debug)]
struct PErr {
    msg: String,
    /// MATLAB-style path below the variable, e.g. `{3}.weights{1}`.
    loc: String,
    /// Name of the top-level variable, once known.
    var: Option<String>,
}

impl PErr {
    fn new(msg: String) -> PErr {
        PErr {
            msg,
            loc: String::new(),
            var: None,
        }
    }

    /// Prepends one step of the path (`{i}` or `.field`).
    fn within(mut self, step: String) -> PErr {
        self.loc.insert_str(0, &step);
        self
    }

    fn render(&self) -> String {
        match &self.var {
            Some(v) => format!("variable '{v}{}': {}", self.loc, self.msg),
            None if !self.loc.is_empty() => format!("in '{}': {}", self.loc, self.msg),
            None => self.msg.clone(),
        }
    }
}

type PRes<T> = Result<T, PErr>;

// ---------------------------------------------------------------------------
// Data elements

/// One data element: its type, its data (without tag and padding) and the
/// offsets of its tag and data.
struct Elem<'a> {
    ty: u32,
    data: &'a [u8],
    at: usize,
    data_at: usize,
}

/// A read position inside `buf[..end]` (the file, or the inflated contents of
/// one `miCOMPRESSED` element).
#[derive(Clone)]
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    big: bool,
    /// File offset of the `miCOMPRESSED` element `buf` was inflated from.
    inflated_from: Option<usize>,
}

fn mi_name(ty: u32) -> String {
    let name = match ty {
        MI_INT8 => "miINT8",
        MI_UINT8 => "miUINT8",
        MI_INT16 => "miINT16",
        MI_UINT16 => "miUINT16",
        MI_INT32 => "miINT32",
        MI_UINT32 => "miUINT32",
        MI_SINGLE => "miSINGLE",
        MI_DOUBLE => "miDOUBLE",
        MI_INT64 => "miINT64",
        MI_UINT64 => "miUINT64",
        MI_MATRIX => "miMATRIX",
        MI_COMPRESSED => "miCOMPRESSED",
        MI_UTF8 => "miUTF8",
        MI_UTF16 => "miUTF16",
        MI_UTF32 => "miUTF32",
        _ => return format!("{ty} (unknown)"),
    };
    name.to_string()
}

/// Bytes per element of a numeric data type.
fn mi_size(ty: u32) -> Option<usize> {
    Some(match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

fn rd16(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn rd32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn rd64(b: &[u8], big: bool) -> u64 {
    let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    if big {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

impl<'a> Cur<'a> {
    /// Describes an offset: in the file, or inside inflated data.
    fn place(&self, off: usize) -> String {
        match self.inflated_from {
            None => format!("offset {off}"),
            Some(z) => format!(
                "offset {off} of the data inflated from the miCOMPRESSED element at file offset {z}"
            ),
        }
    }

    fn err(&self, off: usize, msg: String) -> PErr {
        PErr::new(format!("{msg} (at {})", self.place(off)))
    }

    /// A cursor over the data of `el`.
    fn inside(&self, el: &Elem<'a>) -> Cur<'a> {
        Cur {
            buf: self.buf,
            pos: el.data_at,
            end: el.data_at + el.data.len(),
            big: self.big,
            inflated_from: self.inflated_from,
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> PRes<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(
                self.pos,
                format!(
                    "truncated: {what} needs {n} bytes but only {} remain",
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one data element (tag, data and padding).
    fn element(&mut self, what: &str) -> PRes<Elem<'a>> {
        let at = self.pos;
        let tag = self.take(8, &format!("the tag of the {what}"))?;
        let first = rd32(&tag[..4], self.big);
        if first >> 16 != 0 {
            // Small data element: size in the upper half of the first word.
            let size = (first >> 16) as usize;
            if size > 4 {
                return Err(self.err(
                    at,
                    format!("small data element ({what}) declares {size} bytes, at most 4 fit"),
                ));
            }
            return Ok(Elem {
                ty: first & 0xffff,
                data: &tag[4..4 + size],
                at,
                data_at: at + 4,
            });
        }
        let ty = first;
        let size = rd32(&tag[4..], self.big) as usize;
        let data_at = self.pos;
        if size > self.remaining() {
            return Err(self.err(
                at,
                format!(
                    "truncated: the {what} ({}) declares {size} bytes of data but only {} remain",
                    mi_name(ty),
                    self.remaining()
                ),
            ));
        }
        let data = &self.buf[data_at..data_at + size];
        self.pos += size;
        // miCOMPRESSED elements are not padded; all others are, to 8 bytes.
        if ty != MI_COMPRESSED {
            self.take((8 - size % 8) % 8, &format!("the padding of the {what}"))?;
        }
        Ok(Elem {
            ty,
            data,
            at,
            data_at,
        })
    }

    /// Parses the contents of a `miMATRIX` element at nesting `depth`; returns
    /// the array name and the value.  Errors get the array name attached
    /// (outer levels overwrite it, so the top-level variable's name wins).
    fn parse_matrix(&self, el: &Elem<'a>, depth: usize) -> PRes<(String, MatValue)> {
        if el.data.is_empty() {
            // MATLAB writes empty cell elements ([]) as miMATRIX without data.
            return Ok((
                String::new(),
                MatValue::Numeric(MatArray {
                    dims: vec![0, 0],
                    class: MatClass::Double,
                    data: MatData::F64(Vec::new()),
                }),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(self.err(
                el.at,
                format!("cells/structs nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut c = self.inside(el);

        let flags_el = c.element("array flags")?;
        if flags_el.ty != MI_UINT32 || flags_el.data.len() < 4 {
            return Err(c.err(
                flags_el.at,
                format!(
                    "expected the array flags (miUINT32, 8 bytes), found type {} with {} bytes",
                    mi_name(flags_el.ty),
                    flags_el.data.len()
                ),
            ));
        }
        let flags = rd32(flags_el.data, c.big);
        let class = (flags & 0xff) as u8;
        let bits = (flags >> 8) & 0xff;

        if class == MX_OPAQUE {
            // Opaque (classdef) objects have a name but no dimensions.
            let name = c.element("array name").ok().map(|e| decode_name(e.data));
            let mut e = c.err(
                el.at,
                "unsupported MATLAB class 'opaque' (classdef object, string, table, ...)".into(),
            );
            e.var = name;
            return Err(e);
        }

        let dims = c.dims()?;
        let name_el = c.element("array name")?;
        if !matches!(name_el.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
            return Err(c.err(
                name_el.at,
                format!(
                    "expected the array name (miINT8), found type {}",
                    mi_name(name_el.ty)
                ),
            ));
        }
        let name = decode_name(name_el.data);
        let named = |mut e: PErr| {
            e.var = Some(name.clone());
            e
        };

        let numel = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| named(c.err(el.at, format!("dimensions {dims:?} overflow"))))?;

        let value = if let Some(cls) = MatClass::from_mx(class) {
            if bits & FLAG_COMPLEX != 0 {
                return Err(named(c.err(el.at, "complex arrays not supported".into())));
            }
            let arr = c.numeric(cls, dims, numel).map_err(named)?;
            if bits & FLAG_LOGICAL != 0 {
                MatValue::Logical(arr)
            } else {
                MatValue::Numeric(arr)
            }
        } else {
            match class {
                MX_CHAR => MatValue::Char(c.chars(&dims, numel).map_err(named)?),
                MX_CELL => c.cell(dims, numel, depth).map_err(named)?,
                MX_STRUCT => c.structure(dims, numel, depth).map_err(named)?,
                other => {
                    let what = match other {
                        MX_SPARSE => "'sparse'".to_string(),
                        MX_OBJECT => "'object'".to_string(),
                        MX_FUNCTION => "'function_handle'".to_string(),
                        n => format!("{n} (unknown)"),
                    };
                    return Err(named(
                        c.err(el.at, format!("unsupported MATLAB array class {what}")),
                    ));
                }
            }
        };
        Ok((name, value))
    }

    /// Reads the dimensions sub-element.
    fn dims(&mut self) -> PRes<Vec<usize>> {
        let el = self.element("dimensions")?;
        if el.ty != MI_INT32 || el.data.is_empty() || el.data.len() % 4 != 0 {
            return Err(self.err(
                el.at,
                format!(
                    "expected the dimensions (miINT32, at least one), found type {} with {} bytes",
                    mi_name(el.ty),
                    el.data.len()
                ),
            ));
        }
        el.data
            .chunks_exact(4)
            .map(|b| {
                let d = rd32(b, self.big) as i32;
                usize::try_from(d).map_err(|_| self.err(el.at, format!("negative dimension {d}")))
            })
            .collect()
    }

    /// Reads the real part of a numeric array and converts it to `class`.
    fn numeric(&mut self, class: MatClass, dims: Vec<usize>, numel: usize) -> PRes<MatArray> {
        let el = self.element("real part")?;
        let Some(es) = mi_size(el.ty) else {
            return Err(self.err(
                el.at,
                format!(
                    "expected numeric data for a {} array, found type {}",
                    class.name(),
                    mi_name(el.ty)
                ),
            ));
        };
        if el.data.len() % es != 0 || el.data.len() / es != numel || numel > MAX_ARRAY_ELEMS {
            return Err(self.err(
                el.at,
                format!(
                    "dimensions {dims:?} ({numel} elements) do not match the {} bytes of {} data",
                    el.data.len(),
                    mi_name(el.ty)
                ),
            ));
        }
        let (d, ty, big) = (el.data, el.ty, self.big);
        let data = match class {
            MatClass::Double => MatData::F64(convert(d, ty, big, Num::f64)),
            MatClass::Single => MatData::F32(convert(d, ty, big, Num::f32)),
            MatClass::Int8 => MatData::F64(convert(d, ty, big, |n| n.int(-128, 127))),
            MatClass::UInt8 => MatData::F64(convert(d, ty, big, |n| n.int(0, 255))),
            MatClass::Int16 => MatData::F64(convert(d, ty, big, |n| n.int(-32768, 32767))),
            MatClass::UInt16 => MatData::F64(convert(d, ty, big, |n| n.int(0, 65535))),
            MatClass::Int32 => MatData::F64(convert(d, ty, big, |n| {
                n.int(i32::MIN as i64, i32::MAX as i64)
            })),
            MatClass::UInt32 => MatData::F64(convert(d, ty, big, |n| n.int(0, u32::MAX as i64))),
            MatClass::Int64 => MatData::I64(convert(d, ty, big, Num::i64)),
            MatClass::UInt64 => MatData::U64(convert(d, ty, big, Num::u64)),
        };
        Ok(MatArray { dims, class, data })
    }

    /// Reads char data and turns it into text (rows joined by `'\n'`).
    fn chars(&mut self, dims: &[usize], numel: usize) -> PRes<String> {
        let el = self.element("character data")?;
        let big = self.big;
        // Code units in column-major order; `utf16` when they must be paired.
        let (units, utf16): (Vec<u32>, bool) = match el.ty {
            MI_UTF8 => (
                String::from_utf8_lossy(el.data)
                    .chars()
                    .map(|ch| ch as u32)
                    .collect(),
                false,
            ),
            MI_UINT8 | MI_INT8 => (el.data.iter().map(|&b| b as u32).collect(), false),
            MI_UINT16 | MI_UTF16 | MI_INT16 if el.data.len() % 2 == 0 => (
                el.data
                    .chunks_exact(2)
                    .map(|b| rd16(b, big) as u32)
                    .collect(),
                true,
            ),
            MI_UINT32 | MI_UTF32 | MI_INT32 if el.data.len() % 4 == 0 => (
                el.data.chunks_exact(4).map(|b| rd32(b, big)).collect(),
                false,
            ),
            ty => {
                return Err(self.err(
                    el.at,
                    format!(
                        "expected character data, found type {} with {} bytes",
                        mi_name(ty),
                        el.data.len()
                    ),
                ))
            }
        };
        if units.len() != numel {
            return Err(self.err(
                el.at,
                format!(
                    "char array dimensions {dims:?} ({numel} characters) do not match the {} characters stored",
                    units.len()
                ),
            ));
        }
        if numel == 0 {
            return Ok(String::new());
        }
        let rows = dims.first().copied().unwrap_or(1).max(1);
        let cols = numel / rows;
        let mut text = String::with_capacity(numel + rows);
        for r in 0..rows {
            if r > 0 {
                text.push('\n');
            }
            let row = (0..cols).map(|c| units[r + rows * c]);
            if utf16 {
                text.extend(
                    char::decode_utf16(row.map(|u| u as u16))
                        .map(|ch| ch.unwrap_or(char::REPLACEMENT_CHARACTER)),
                );
            } else {
                text.extend(row.map(|u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER)));
            }
        }
        Ok(text)
    }

    /// Reads the elements of a cell array.
    fn cell(&mut self, dims: Vec<usize>, numel: usize, depth: usize) -> PRes<MatValue> {
        if numel > self.remaining() / 8 {
            return Err(self.err(
                self.pos,
                format!(
                    "cell array of dimensions {dims:?} ({numel} elements) cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        let mut items = Vec::with_capacity(numel);
        for i in 0..numel {
            let v = self
                .child(depth, "cell element")
                .map_err(|e| e.within(format!("{{{}}}", i + 1)))?;
            items.push(v);
        }
        Ok(MatValue::Cell { dims, items })
    }

    /// Reads the field names and elements of a struct array.
    fn structure(&mut self, dims: Vec<usize>, numel: usize, depth: usize) -> PRes<MatValue> {
        let len_el = self.element("field name length")?;
        if len_el.ty != MI_INT32 || len_el.data.len() != 4 {
            return Err(self.err(
                len_el.at,
                format!(
                    "expected the field name length (miINT32), found type {} with {} bytes",
                    mi_name(len_el.ty),
                    len_el.data.len()
                ),
            ));
        }
        let flen = rd32(len_el.data, self.big) as usize;
        let names_el = self.element("field names")?;
        if !matches!(names_el.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
            return Err(self.err(
                names_el.at,
                format!(
                    "expected the field names (miINT8), found type {}",
                    mi_name(names_el.ty)
                ),
            ));
        }
        let names = names_el.data;
        if (flen == 0 && !names.is_empty()) || (flen > 0 && names.len() % flen != 0) {
            return Err(self.err(
                names_el.at,
                format!(
                    "{} bytes of field names are not a multiple of the field name length {flen}",
                    names.len()
                ),
            ));
        }
        let fields: Vec<String> = if flen == 0 {
            Vec::new()
        } else {
            names.chunks_exact(flen).map(decode_name).collect()
        };
        let fits = match numel.checked_mul(fields.len()) {
            Some(0) => numel <= MAX_EMPTY_STRUCT_ELEMS,
            Some(total) => total <= self.remaining() / 8,
            None => false,
        };
        if !fits {
            return Err(self.err(
                self.pos,
                format!(
                    "struct array of dimensions {dims:?} with {} fields cannot fit in the {} bytes left",
                    fields.len(),
                    self.remaining()
                ),
            ));
        }
        let mut elems = Vec::with_capacity(numel);
        for k in 0..numel {
            let mut vals = Vec::with_capacity(fields.len());
            for f in &fields {
                let v = self.child(depth, "struct field").map_err(|e| {
                    if numel == 1 {
                        e.within(format!(".{f}"))
                    } else {
                        e.within(format!("({}).{f}", k + 1))
                    }
                })?;
                vals.push(v);
            }
            elems.push(vals);
        }
        Ok(MatValue::Struct {
            dims,
            fields,
            elems,
        })
    }

    /// Reads one nested `miMATRIX` (a cell element or a struct field value).
    fn child(&mut self, depth: usize, what: &str) -> PRes<MatValue> {
        let el = self.element(what)?;
        if el.ty != MI_MATRIX {
            return Err(self.err(
                el.at,
                format!(
                    "expected a miMATRIX {what}, found data type {}",
                    mi_name(el.ty)
                ),
            ));
        }
        Ok(self.parse_matrix(&el, depth + 1)?.1)
    }
}

/// An array or field name: the bytes up to the first NUL.
fn decode_name(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One stored number, before conversion to the array's class.
#[derive(Clone, Copy)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(x) => x,
        }
    }
    fn f32(self) -> f32 {
        match self {
            Num::I(i) => i as f32,
            Num::U(u) => u as f32,
            Num::F(x) => x as f32,
        }
    }
    /// Rounded (like MATLAB's conversions) and saturated.
    fn i64(self) -> i64 {
        match self {
            Num::I(i) => i,
            Num::U(u) => i64::try_from(u).unwrap_or(i64::MAX),
            Num::F(x) => x.round() as i64,
        }
    }
    fn u64(self) -> u64 {
        match self {
            Num::I(i) => u64::try_from(i).unwrap_or(0),
            Num::U(u) => u,
            Num::F(x) => x.round() as u64,
        }
    }
    /// An integer class of at most 32 bits: saturated to `lo..=hi`.
    fn int(self, lo: i64, hi: i64) -> f64 {
        self.i64().clamp(lo, hi) as f64
    }
}

/// Decodes numeric data of type `ty` (length already checked to be a multiple
/// of its element size) and converts every element with `f`.
fn convert<T>(d: &[u8], ty: u32, big: bool, f: impl Fn(Num) -> T) -> Vec<T> {
    match ty {
        MI_INT8 => d.iter().map(|&b| f(Num::I(b as i8 as i64))).collect(),
        MI_UINT8 => d.iter().map(|&b| f(Num::U(b as u64))).collect(),
        MI_INT16 => d
            .chunks_exact(2)
            .map(|b| f(Num::I(rd16(b, big) as i16 as i64)))
            .collect(),
        MI_UINT16 => d
            .chunks_exact(2)
            .map(|b| f(Num::U(rd16(b, big) as u64)))
            .collect(),
        MI_INT32 => d
            .chunks_exact(4)
            .map(|b| f(Num::I(rd32(b, big) as i32 as i64)))
            .collect(),
        MI_UINT32 => d
            .chunks_exact(4)
            .map(|b| f(Num::U(rd32(b, big) as u64)))
            .collect(),
        MI_SINGLE => d
            .chunks_exact(4)
            .map(|b| f(Num::F(f32::from_bits(rd32(b, big)) as f64)))
            .collect(),
        MI_DOUBLE => d
            .chunks_exact(8)
            .map(|b| f(Num::F(f64::from_bits(rd64(b, big)))))
            .collect(),
        MI_INT64 => d
            .chunks_exact(8)
            .map(|b| f(Num::I(rd64(b, big) as i64)))
            .collect(),
        MI_UINT64 => d.chunks_exact(8).map(|b| f(Num::U(rd64(b, big)))).collect(),
        _ => Vec::new(), // not numeric; callers check `mi_size` first
    }
}

/// Inflates the zlib stream of the `miCOMPRESSED` element at file offset
/// `at`, refusing to produce more than the inflate limit.
fn inflate(data: &[u8], at: usize) -> Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let limit = (data.len() as u64)
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(INFLATE_SLACK)
        .min(MAX_INFLATED);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX - 1);
    let mut d = Decompress::new(true);
    // Grows with the output actually produced, never from a declared size.
    let mut out: Vec<u8> = Vec::with_capacity(data.len().min(limit) + 1);
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(format!(
                    "the miCOMPRESSED element at offset {at} inflates to more than {limit} bytes \
                     (the limit is {MAX_INFLATE_RATIO}x its {} compressed bytes plus {INFLATE_SLACK}, \
                     at most {MAX_INFLATED})",
                    data.len()
                ));
            }
            let grow = out.len().max(1 << 16).min(limit + 1 - out.len());
            out.reserve_exact(grow);
        }
        let in_before = d.total_in();
        let out_before = out.len();
        let consumed = usize::try_from(in_before)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let status = d
            .decompress_vec(&data[consumed..], &mut out, FlushDecompress::None)
            .map_err(|e| {
                format!("corrupt zlib stream in the miCOMPRESSED element at offset {at}: {e}")
            })?;
        if status == Status::StreamEnd {
            break;
        }
        if d.total_in() == in_before && out.len() == out_before && out.len() < out.capacity() {
            return Err(format!(
                "truncated zlib stream in the miCOMPRESSED element at offset {at}: \
                 the {} compressed bytes end before the stream does",
                data.len()
            ));
        }
    }
    if out.len() > limit {
        return Err(format!(
            "the miCOMPRESSED element at offset {at} inflates to more than {limit} bytes"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::column_major_to_row_major;

    #[test]
    fn reorder_2x3() {
        // MATLAB [1 2 3; 4 5 6] is stored column-major as 1 4 2 5 3 6.
        let r = column_major_to_row_major(&[2, 3], &[1, 4, 2, 5, 3, 6]).unwrap();
        assert_eq!(r, vec![1, 2, 3, 4, 5, 6]);
        assert!(column_major_to_row_major(&[2, 3], &[1, 2]).is_none());
        assert_eq!(
            column_major_to_row_major::<u8>(&[0, usize::MAX], &[]),
            Some(vec![])
        );
        assert!(column_major_to_row_major::<u8>(&[usize::MAX, 3], &[]).is_none());
    }

    #[test]
    fn reorder_3d() {
        // dims [2, 3, 4]: element (i, j, k) has column-major index i + 2j + 6k.
        let dims = [2, 3, 4];
        let src: Vec<usize> = (0..24).collect();
        let r = column_major_to_row_major(&dims, &src).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    assert_eq!(r[(i * 3 + j) * 4 + k], i + 2 * j + 6 * k);
                }
            }
        }
    }
}
