//! The ONNX messages aics reads (`onnx.proto`, IR versions 3 to 11), decoded from the wire
//! format by hand. Fields aics has no use for (doc strings, metadata, training info, device
//! configurations) are skipped; unknown fields are skipped too, as protobuf requires.

use aics_io::f16_to_f32;

use crate::error::{OnnxError, Result};
use crate::wire::Reader;

/// A model: its IR version, the operator sets it imports, and its graph.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub ir_version: i64,
    /// (domain, version); the default domain is "" (also written "ai.onnx").
    pub opsets: Vec<(String, i64)>,
    pub producer_name: String,
    pub producer_version: String,
    pub graph: Graph,
}

/// A computation graph: nodes in topological order, initializers (the weights), and the
/// declared inputs, outputs and intermediate values.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub value_info: Vec<ValueInfo>,
    /// Sparse initializers are not supported; their names are kept to say so.
    pub sparse_initializers: Vec<String>,
}

/// One operator application.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Value names; "" marks an optional input left out.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

/// An attribute's value, by its declared type.
#[derive(Clone, Debug)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Box<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    /// A reference to an attribute of the enclosing function (`ref_attr_name`).
    Ref(String),
    /// A type aics does not read (sparse tensors, type protos), by its number.
    Unsupported(i64),
}

/// A declared value: name, element type and shape, as far as the file gives them.
#[derive(Clone, Debug, Default)]
pub struct ValueInfo {
    pub name: String,
    /// `DataType` of a tensor type; None for other types (sequences, maps) or none given.
    pub elem_type: Option<i32>,
    /// None when the shape is not given (any rank).
    pub shape: Option<Vec<Dim>>,
    /// A type is given and it is not a tensor (a sequence, map, optional or sparse tensor).
    pub other_type: bool,
}

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Value(i64),
    /// A symbolic size such as "batch".
    Param(String),
    Unknown,
}

/// `TensorProto.DataType`.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    /// The type's name as onnx.proto spells it.
    pub fn name(t: i32) -> &'static str {
        match t {
            0 => "UNDEFINED",
            FLOAT => "FLOAT",
            UINT8 => "UINT8",
            INT8 => "INT8",
            UINT16 => "UINT16",
            INT16 => "INT16",
            INT32 => "INT32",
            INT64 => "INT64",
            STRING => "STRING",
            BOOL => "BOOL",
            FLOAT16 => "FLOAT16",
            DOUBLE => "DOUBLE",
            UINT32 => "UINT32",
            UINT64 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            BFLOAT16 => "BFLOAT16",
            17..=20 => "FLOAT8",
            21 | 22 | 25 | 26 => "INT4/INT2",
            _ => "unknown",
        }
    }
}

/// A tensor as stored: its shape, type and data in whichever field the writer used.
#[derive(Clone, Debug, Default)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub data: TensorData,
}

/// Where a tensor's values are.
#[derive(Clone, Debug, Default)]
pub enum TensorData {
    /// No data field at all (an empty tensor, or one the writer left out).
    #[default]
    None,
    /// `raw_data`: little-endian values of the data type.
    Raw(Vec<u8>),
    Floats(Vec<f32>),
    /// `int32_data`: INT32, and INT8/UINT8/INT16/UINT16/BOOL/FLOAT16/BFLOAT16 widened.
    Int32(Vec<i64>),
    Int64(Vec<i64>),
    Doubles(Vec<f64>),
    Uint64(Vec<u64>),
    Strings(Vec<Vec<u8>>),
    /// In a file beside the model (models over 2 GB): path relative to the model, offset and
    /// length in bytes (None: to the end of the file).
    External {
        location: String,
        offset: u64,
        length: Option<u64>,
    },
}

impl Tensor {
    /// Number of elements its dims give, or an error on a negative or overflowing size.
    pub fn numel(&self) -> Result<usize> {
        let mut n: usize = 1;
        for &d in &self.dims {
            let d = usize::try_from(d).map_err(|_| self.err(format!("negative dim {d}")))?;
            n = n
                .checked_mul(d)
                .ok_or_else(|| self.err(format!("dims {:?} overflow", self.dims)))?;
        }
        Ok(n)
    }

    /// The dims as sizes.
    pub fn shape(&self) -> Result<Vec<usize>> {
        self.numel()?;
        Ok(self.dims.iter().map(|&d| d as usize).collect())
    }

    fn err(&self, what: String) -> OnnxError {
        OnnxError::Tensor {
            name: self.name.clone(),
            what,
        }
    }

    fn check_len(&self, got: usize) -> Result<usize> {
        let want = self.numel()?;
        if got != want {
            return Err(self.err(format!(
                "{} values of {} for dims {:?} ({want} elements)",
                got,
                dtype::name(self.data_type),
                self.dims
            )));
        }
        Ok(want)
    }

    /// Bytes per element of raw data of this tensor's type; an error for types that are not
    /// numbers, or raw data that is not a whole number of elements.
    fn raw_size(&self, b: &[u8], as_what: &str) -> Result<usize> {
        use dtype::*;
        let t = self.data_type;
        let size = match t {
            FLOAT | INT32 | UINT32 => 4,
            DOUBLE | INT64 | UINT64 => 8,
            FLOAT16 | BFLOAT16 | INT16 | UINT16 => 2,
            INT8 | UINT8 | BOOL => 1,
            _ => return Err(self.err(format!("{} data as {as_what}", dtype::name(t)))),
        };
        if !b.len().is_multiple_of(size) {
            return Err(self.err(format!(
                "raw data of {} bytes is not a whole number of {}-byte {}",
                b.len(),
                size,
                dtype::name(t)
            )));
        }
        Ok(size)
    }

    /// Little-endian integers and booleans of this tensor's type from raw data, widened to
    /// i64 (UINT64 wraps, as a cast does). None for the float types.
    fn raw_ints(&self, b: &[u8]) -> Result<Option<Vec<i64>>> {
        use dtype::*;
        let size = self.raw_size(b, "integers")?;
        let chunks = b.chunks_exact(size);
        Ok(Some(match self.data_type {
            INT64 => chunks
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
            UINT64 => chunks
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")) as i64)
                .collect(),
            INT32 => chunks
                .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as i64)
                .collect(),
            UINT32 => chunks
                .map(|c| u32::from_le_bytes(c.try_into().expect("4")) as i64)
                .collect(),
            INT16 => chunks
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            UINT16 => chunks
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            INT8 => b.iter().map(|&x| x as i8 as i64).collect(),
            UINT8 | BOOL => b.iter().map(|&x| x as i64).collect(),
            _ => return Ok(None),
        }))
    }

    /// The values as f32, from any real type (integers and booleans converted, float16 and
    /// bfloat16 widened). Errors on strings, complex numbers, external data not yet loaded,
    /// or a count that does not match the dims.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        use dtype::*;
        let t = self.data_type;
        let v: Vec<f32> = match &self.data {
            TensorData::None => Vec::new(),
            TensorData::Raw(b) => {
                let size = self.raw_size(b, "numbers")?;
                let chunks = b.chunks_exact(size);
                match t {
                    FLOAT => chunks
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                        .collect(),
                    DOUBLE => chunks
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                        .collect(),
                    FLOAT16 => chunks
                        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                        .collect(),
                    BFLOAT16 => chunks
                        .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                        .collect(),
                    // converted from u64 itself: through i64 the values past 2⁶³ would wrap
                    UINT64 => chunks
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8")) as f32)
                        .collect(),
                    _ => self
                        .raw_ints(b)?
                        .expect("an integer type")
                        .into_iter()
                        .map(|x| x as f32)
                        .collect(),
                }
            }
            TensorData::Floats(v) => v.clone(),
            TensorData::Int32(v) => match t {
                FLOAT16 => v.iter().map(|&x| f16_to_f32(x as u16)).collect(),
                BFLOAT16 => v
                    .iter()
                    .map(|&x| f32::from_bits(u32::from(x as u16) << 16))
                    .collect(),
                _ => v.iter().map(|&x| x as f32).collect(),
            },
            TensorData::Int64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Doubles(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Uint64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Strings(_) => {
                return Err(self.err("string data where numbers are needed".into()))
            }
            TensorData::External { location, .. } => {
                return Err(self.err(format!(
                    "data in the external file '{location}' was not loaded"
                )))
            }
        };
        self.check_len(v.len())?;
        Ok(v)
    }

    /// The values as i64, from integer and boolean types (shapes, indices, axes).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let t = self.data_type;
        let not_ints = || self.err(format!("{} data where integers are needed", dtype::name(t)));
        let v: Vec<i64> = match &self.data {
            TensorData::None => Vec::new(),
            TensorData::Int64(v) | TensorData::Int32(v) => v.clone(),
            TensorData::Uint64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Raw(b) => self.raw_ints(b)?.ok_or_else(not_ints)?,
            _ => return Err(not_ints()),
        };
        self.check_len(v.len())?;
        Ok(v)
    }
}

/// Decodes a model file's bytes.
pub fn decode_model(buf: &[u8]) -> Result<Model> {
    let mut r = Reader::new(buf, "ModelProto");
    let mut m = Model::default();
    let mut graph = None;
    while let Some((f, v)) = r.next()? {
        match f {
            1 => m.ir_version = r.int(f, v)?,
            2 => m.producer_name = r.string(f, v)?,
            3 => m.producer_version = r.string(f, v)?,
            7 => graph = Some(graph_msg(r.nested(r.bytes(f, v)?, "GraphProto")?)?),
            8 => {
                let mut o = r.nested(r.bytes(f, v)?, "OperatorSetIdProto")?;
                let (mut domain, mut version) = (String::new(), 0);
                while let Some((f, v)) = o.next()? {
                    match f {
                        1 => domain = o.string(f, v)?,
                        2 => version = o.int(f, v)?,
                        _ => {}
                    }
                }
                m.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    m.graph = graph.ok_or_else(|| r.err("the model has no graph (field 7)"))?;
    Ok(m)
}

/// Decodes a serialized `TensorProto` (the test suite's `input_0.pb` files).
pub fn decode_tensor(buf: &[u8]) -> Result<Tensor> {
    tensor_msg(Reader::new(buf, "TensorProto"))
}

fn graph_msg(mut r: Reader<'_>) -> Result<Graph> {
    let mut g = Graph::default();
    while let Some((f, v)) = r.next()? {
        match f {
            1 => g
                .nodes
                .push(node_msg(r.nested(r.bytes(f, v)?, "NodeProto")?)?),
            2 => g.name = r.string(f, v)?,
            5 => g
                .initializers
                .push(tensor_msg(r.nested(r.bytes(f, v)?, "TensorProto")?)?),
            11 => g
                .inputs
                .push(value_info_msg(r.nested(r.bytes(f, v)?, "ValueInfoProto")?)?),
            12 => g
                .outputs
                .push(value_info_msg(r.nested(r.bytes(f, v)?, "ValueInfoProto")?)?),
            13 => g
                .value_info
                .push(value_info_msg(r.nested(r.bytes(f, v)?, "ValueInfoProto")?)?),
            15 => {
                // SparseTensorProto: values (1) is a TensorProto with the name
                let mut s = r.nested(r.bytes(f, v)?, "SparseTensorProto")?;
                let mut name = String::new();
                while let Some((f, v)) = s.next()? {
                    if f == 1 {
                        name = tensor_msg(s.nested(s.bytes(f, v)?, "TensorProto")?)?.name;
                    }
                }
                g.sparse_initializers.push(name);
            }
            _ => {}
        }
    }
    Ok(g)
}

fn node_msg(mut r: Reader<'_>) -> Result<Node> {
    let mut n = Node::default();
    while let Some((f, v)) = r.next()? {
        match f {
            1 => n.inputs.push(r.string(f, v)?),
            2 => n.outputs.push(r.string(f, v)?),
            3 => n.name = r.string(f, v)?,
            4 => n.op_type = r.string(f, v)?,
            5 => n
                .attributes
                .push(attribute_msg(r.nested(r.bytes(f, v)?, "AttributeProto")?)?),
            7 => n.domain = r.string(f, v)?,
            _ => {}
        }
    }
    Ok(n)
}

fn attribute_msg(mut r: Reader<'_>) -> Result<Attribute> {
    let mut name = String::new();
    let mut ty: Option<i64> = None;
    let (mut fl, mut i, mut s, mut t, mut g) = (None, None, None, None, None);
    let (mut floats, mut ints, mut strings) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tensors, mut graphs) = (Vec::new(), Vec::new());
    let mut reference = None;
    let mut seen_list = false;
    while let Some((f, v)) = r.next()? {
        match f {
            1 => name = r.string(f, v)?,
            2 => fl = Some(r.float(f, v)?),
            3 => i = Some(r.int(f, v)?),
            4 => s = Some(r.bytes(f, v)?.to_vec()),
            5 => t = Some(tensor_msg(r.nested(r.bytes(f, v)?, "TensorProto")?)?),
            6 => g = Some(graph_msg(r.nested(r.bytes(f, v)?, "GraphProto")?)?),
            7 => {
                seen_list = true;
                r.floats(f, v, &mut floats)?
            }
            8 => {
                seen_list = true;
                r.ints(f, v, &mut ints)?
            }
            9 => {
                seen_list = true;
                strings.push(r.bytes(f, v)?.to_vec())
            }
            10 => tensors.push(tensor_msg(r.nested(r.bytes(f, v)?, "TensorProto")?)?),
            11 => graphs.push(graph_msg(r.nested(r.bytes(f, v)?, "GraphProto")?)?),
            20 => ty = Some(r.int(f, v)?),
            21 => reference = Some(r.string(f, v)?),
            _ => {}
        }
    }
    if let Some(rf) = reference {
        return Ok(Attribute {
            name,
            value: AttrValue::Ref(rf),
        });
    }
    // IR version 1 files have no `type`: infer it from the field that is set
    let ty = ty.unwrap_or(match () {
        _ if fl.is_some() => 1,
        _ if i.is_some() => 2,
        _ if s.is_some() => 3,
        _ if t.is_some() => 4,
        _ if g.is_some() => 5,
        _ if !floats.is_empty() => 6,
        _ if !ints.is_empty() => 7,
        _ if !strings.is_empty() => 8,
        _ if !tensors.is_empty() => 9,
        _ if !graphs.is_empty() => 10,
        _ if seen_list => 7,
        _ => 0,
    });
    let missing = |what: &str| r.err(format!("attribute '{name}' of type {what} has no value"));
    let value = match ty {
        1 => AttrValue::Float(fl.ok_or_else(|| missing("FLOAT"))?),
        2 => AttrValue::Int(i.ok_or_else(|| missing("INT"))?),
        3 => AttrValue::String(s.ok_or_else(|| missing("STRING"))?),
        4 => AttrValue::Tensor(t.ok_or_else(|| missing("TENSOR"))?),
        5 => AttrValue::Graph(Box::new(g.ok_or_else(|| missing("GRAPH"))?)),
        6 => AttrValue::Floats(floats),
        7 => AttrValue::Ints(ints),
        8 => AttrValue::Strings(strings),
        9 => AttrValue::Tensors(tensors),
        10 => AttrValue::Graphs(graphs),
        other => AttrValue::Unsupported(other),
    };
    Ok(Attribute { name, value })
}

fn tensor_msg(mut r: Reader<'_>) -> Result<Tensor> {
    let mut t = Tensor::default();
    let (mut floats, mut i32s, mut i64s, mut f64s, mut u64s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut strings = Vec::new();
    let mut raw = None;
    let mut external: Vec<(String, String)> = Vec::new();
    let mut location_external = false;
    let mut which = 0u32;
    while let Some((f, v)) = r.next()? {
        match f {
            1 => r.ints(f, v, &mut t.dims)?,
            2 => t.data_type = r.int(f, v)? as i32,
            3 => return Err(r.err("segmented tensors are not supported")),
            4 => {
                which = 4;
                r.floats(f, v, &mut floats)?
            }
            5 => {
                which = 5;
                r.ints(f, v, &mut i32s)?
            }
            6 => {
                which = 6;
                strings.push(r.bytes(f, v)?.to_vec())
            }
            7 => {
                which = 7;
                r.ints(f, v, &mut i64s)?
            }
            8 => t.name = r.string(f, v)?,
            9 => {
                which = 9;
                raw = Some(r.bytes(f, v)?.to_vec())
            }
            10 => {
                which = 10;
                let mut bits = Vec::new();
                r.fixed64s(f, v, &mut bits)?;
                f64s.extend(bits.into_iter().map(f64::from_bits));
            }
            11 => {
                which = 11;
                let mut vals = Vec::new();
                r.ints(f, v, &mut vals)?;
                u64s.extend(vals.into_iter().map(|x| x as u64));
            }
            13 => {
                let mut e = r.nested(r.bytes(f, v)?, "StringStringEntryProto")?;
                let (mut k, mut val) = (String::new(), String::new());
                while let Some((f, v)) = e.next()? {
                    match f {
                        1 => k = e.string(f, v)?,
                        2 => val = e.string(f, v)?,
                        _ => {}
                    }
                }
                external.push((k, val));
            }
            14 => location_external = r.int(f, v)? == 1,
            _ => {}
        }
    }
    // int32_data holds narrower types widened; keep them as i64 (their bit patterns for the
    // 16-bit floats)
    t.data = if location_external {
        let get = |k: &str| external.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let location = get("location")
            .ok_or_else(|| {
                r.err(format!(
                    "tensor '{}': external data without a location",
                    t.name
                ))
            })?
            .clone();
        let num = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        r.err(format!(
                            "tensor '{}': external data {k} '{v}' is not a number",
                            t.name
                        ))
                    })
                })
                .transpose()
        };
        TensorData::External {
            location,
            offset: num("offset")?.unwrap_or(0),
            length: num("length")?,
        }
    } else {
        match which {
            0 => TensorData::None,
            4 => TensorData::Floats(floats),
            5 => TensorData::Int32(i32s),
            6 => TensorData::Strings(strings),
            7 => TensorData::Int64(i64s),
            9 => TensorData::Raw(raw.unwrap_or_default()),
            10 => TensorData::Doubles(f64s),
            _ => TensorData::Uint64(u64s),
        }
    };
    Ok(t)
}

fn value_info_msg(mut r: Reader<'_>) -> Result<ValueInfo> {
    let mut vi = ValueInfo::default();
    while let Some((f, v)) = r.next()? {
        match f {
            1 => vi.name = r.string(f, v)?,
            2 => {
                let mut tp = r.nested(r.bytes(f, v)?, "TypeProto")?;
                while let Some((f, v)) = tp.next()? {
                    if matches!(f, 4 | 5 | 7 | 8 | 9) {
                        vi.other_type = true; // sequence, map, opaque, sparse, optional
                    }
                    if f != 1 {
                        continue;
                    }
                    let mut tt = tp.nested(tp.bytes(f, v)?, "TypeProto.Tensor")?;
                    while let Some((f, v)) = tt.next()? {
                        match f {
                            1 => vi.elem_type = Some(tt.int(f, v)? as i32),
                            2 => {
                                let mut sh = tt.nested(tt.bytes(f, v)?, "TensorShapeProto")?;
                                let mut dims = Vec::new();
                                while let Some((f, v)) = sh.next()? {
                                    if f != 1 {
                                        continue;
                                    }
                                    let mut d = sh.nested(sh.bytes(f, v)?, "Dimension")?;
                                    let mut dim = Dim::Unknown;
                                    while let Some((f, v)) = d.next()? {
                                        match f {
                                            1 => dim = Dim::Value(d.int(f, v)?),
                                            2 => dim = Dim::Param(d.string(f, v)?),
                                            _ => {}
                                        }
                                    }
                                    dims.push(dim);
                                }
                                vi.shape = Some(dims);
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}
