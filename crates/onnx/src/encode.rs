//! Writing ONNX files: a [`Model`] encoded as protobuf by hand, field for field as
//! [`crate::decode_model`] reads it (onnx.proto's field numbers), so that what aics reads it can
//! write back, and what it writes onnxruntime loads.

use crate::error::{OnnxError, Result};
use crate::proto::{AttrValue, Attribute, Dim, Graph, Model, Node, Tensor, TensorData, ValueInfo};

/// Protobuf wire types.
const VARINT: u32 = 0;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A message being written.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.tag(field, VARINT);
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    /// A string field left out when empty (proto3's default).
    fn opt_string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.string(field, s);
        }
    }
    fn message(&mut self, field: u32, m: Out) {
        self.bytes(field, &m.0);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.tag(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn packed_ints(&mut self, field: u32, v: impl Iterator<Item = u64>) {
        let mut p = Out::default();
        for x in v {
            p.varint(x);
        }
        self.bytes(field, &p.0);
    }
    fn packed_floats(&mut self, field: u32, v: &[f32]) {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(field, &b);
    }
    fn packed_doubles(&mut self, field: u32, v: &[f64]) {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(field, &b);
    }
}

/// `model` as the bytes of an .onnx file. Refuses what aics reads without keeping it whole:
/// values of sequence, map or optional type and sparse initializers.
pub fn encode_model(model: &Model) -> Result<Vec<u8>> {
    check_writable(&model.graph)?;
    let mut o = Out::default();
    o.int(1, model.ir_version);
    o.opt_string(2, &model.producer_name);
    o.opt_string(3, &model.producer_version);
    o.message(7, graph(&model.graph));
    for (domain, version) in &model.opsets {
        let mut m = Out::default();
        m.opt_string(1, domain);
        m.int(2, *version);
        o.message(8, m);
    }
    Ok(o.0)
}

fn check_writable(g: &Graph) -> Result<()> {
    if let Some(v) = g
        .inputs
        .iter()
        .chain(&g.outputs)
        .chain(&g.value_info)
        .find(|v| v.other_type)
    {
        return Err(OnnxError::Unsupported(format!(
            "'{}' is a sequence, map or optional value: aics writes tensors only",
            v.name
        )));
    }
    if let Some(name) = g.sparse_initializers.first() {
        return Err(OnnxError::Unsupported(format!(
            "sparse initializer '{name}': aics writes dense tensors only"
        )));
    }
    for n in &g.nodes {
        for a in &n.attributes {
            match &a.value {
                AttrValue::Graph(sg) => check_writable(sg)?,
                AttrValue::Graphs(gs) => gs.iter().try_for_each(check_writable)?,
                AttrValue::Unsupported(t) => {
                    return Err(OnnxError::Unsupported(format!(
                        "node '{}': attribute '{}' of type {t}, which aics does not keep",
                        n.name, a.name
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `t` as the bytes of a TensorProto (the .pb files of ONNX's test cases).
pub fn encode_tensor(t: &Tensor) -> Vec<u8> {
    tensor(t).0
}

fn graph(g: &Graph) -> Out {
    let mut o = Out::default();
    for n in &g.nodes {
        o.message(1, node(n));
    }
    o.opt_string(2, &g.name);
    for t in &g.initializers {
        o.message(5, tensor(t));
    }
    for v in &g.inputs {
        o.message(11, value_info(v));
    }
    for v in &g.outputs {
        o.message(12, value_info(v));
    }
    for v in &g.value_info {
        o.message(13, value_info(v));
    }
    o
}

fn node(n: &Node) -> Out {
    let mut o = Out::default();
    for i in &n.inputs {
        o.string(1, i);
    }
    for x in &n.outputs {
        o.string(2, x);
    }
    o.opt_string(3, &n.name);
    o.string(4, &n.op_type);
    for a in &n.attributes {
        o.message(5, attribute(a));
    }
    o.opt_string(7, &n.domain);
    o
}

fn attribute(a: &Attribute) -> Out {
    let mut o = Out::default();
    o.string(1, &a.name);
    let ty = match &a.value {
        AttrValue::Float(f) => {
            o.float(2, *f);
            1
        }
        AttrValue::Int(i) => {
            o.int(3, *i);
            2
        }
        AttrValue::String(s) => {
            o.bytes(4, s);
            3
        }
        AttrValue::Tensor(t) => {
            o.message(5, tensor(t));
            4
        }
        AttrValue::Graph(g) => {
            o.message(6, graph(g));
            5
        }
        AttrValue::Floats(v) => {
            o.packed_floats(7, v);
            6
        }
        AttrValue::Ints(v) => {
            o.packed_ints(8, v.iter().map(|&x| x as u64));
            7
        }
        AttrValue::Strings(v) => {
            for s in v {
                o.bytes(9, s);
            }
            8
        }
        AttrValue::Tensors(v) => {
            for t in v {
                o.message(10, tensor(t));
            }
            9
        }
        AttrValue::Graphs(v) => {
            for g in v {
                o.message(11, graph(g));
            }
            10
        }
        AttrValue::Ref(r) => {
            o.string(21, r);
            0
        }
        // refused by check_writable before anything is written
        AttrValue::Unsupported(_) => 0,
    };
    if ty != 0 {
        o.int(20, ty);
    }
    o
}

fn tensor(t: &Tensor) -> Out {
    let mut o = Out::default();
    if !t.dims.is_empty() {
        o.packed_ints(1, t.dims.iter().map(|&d| d as u64));
    }
    o.int(2, t.data_type as i64);
    o.opt_string(8, &t.name);
    match &t.data {
        TensorData::None => {}
        TensorData::Raw(b) => o.bytes(9, b),
        TensorData::Floats(v) => o.packed_floats(4, v),
        TensorData::Int32(v) => o.packed_ints(5, v.iter().map(|&x| x as u64)),
        TensorData::Int64(v) => o.packed_ints(7, v.iter().map(|&x| x as u64)),
        TensorData::Doubles(v) => o.packed_doubles(10, v),
        TensorData::Uint64(v) => o.packed_ints(11, v.iter().copied()),
        TensorData::Strings(v) => {
            for s in v {
                o.bytes(6, s);
            }
        }
        TensorData::External {
            location,
            offset,
            length,
        } => {
            let mut entries = vec![
                ("location", location.clone()),
                ("offset", offset.to_string()),
            ];
            if let Some(l) = length {
                entries.push(("length", l.to_string()));
            }
            for (k, v) in entries {
                let mut e = Out::default();
                e.string(1, k);
                e.string(2, &v);
                o.message(13, e);
            }
            o.int(14, 1);
        }
    }
    o
}

fn value_info(v: &ValueInfo) -> Out {
    let mut o = Out::default();
    o.string(1, &v.name);
    if v.elem_type.is_some() || v.shape.is_some() {
        let mut tt = Out::default();
        if let Some(e) = v.elem_type {
            tt.int(1, e as i64);
        }
        if let Some(dims) = &v.shape {
            let mut sh = Out::default();
            for d in dims {
                let mut dm = Out::default();
                match d {
                    Dim::Value(x) => dm.int(1, *x),
                    Dim::Param(p) => dm.string(2, p),
                    Dim::Unknown => {}
                }
                sh.message(1, dm);
            }
            tt.message(2, sh);
        }
        let mut tp = Out::default();
        tp.message(1, tt);
        o.message(2, tp);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model through the encoder and the decoder is the same model (compared as text).
    #[test]
    fn what_is_written_reads_back_the_same() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/onnx/small.onnx"
        );
        let m = crate::load(path).unwrap();
        let again = crate::decode_model(&encode_model(&m).unwrap()).unwrap();
        assert_eq!(format!("{m:?}"), format!("{again:?}"));
        for t in &m.graph.initializers {
            let back = crate::decode_tensor(&encode_tensor(t)).unwrap();
            assert_eq!(format!("{t:?}"), format!("{back:?}"));
        }
    }

    #[test]
    fn varints_and_negative_ints_take_protobufs_encoding() {
        let mut o = Out::default();
        o.varint(300);
        assert_eq!(o.0, [0xac, 0x02]);
        let mut o = Out::default();
        o.int(1, -1);
        // tag 0x08, then -1 as ten bytes of two's complement
        assert_eq!(o.0.len(), 11);
        assert_eq!(o.0[0], 0x08);
        assert_eq!(o.0[10], 0x01);
    }
}
