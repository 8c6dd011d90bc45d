//! Export: an aics computation as an ONNX graph, by tracing.
//!
//! [`export`] runs the forward once on example inputs with recording on
//! ([`aics_tensor::trace`]) and writes one or a few ONNX nodes for each op it ran. Tensors the
//! forward read but did not make are initializers: named by the parameter or buffer they are
//! (so the file's weights carry the model's state-dict names), or `const_K` otherwise.
//! Shapes are those of the example inputs, as in PyTorch's tracing exporter; control flow is
//! unrolled as it ran.
//!
//! [`check_export`] runs the written graph with aics's ONNX runner on fresh inputs and compares
//! it with the forward: an op the trace missed shows up as a constant that does not follow the
//! input.

use std::collections::HashMap;

use aics_tensor::trace::{self, Op, Record, TracedTensor};
use aics_tensor::{Activation, Cell, ConvParams, Interp, PoolParams, Tensor as T32};

use crate::error::{OnnxError, Result};
use crate::proto::ValueInfo;
use crate::proto::{dtype, AttrValue, Attribute, Dim, Graph, Model, Node, Tensor, TensorData};
use crate::run::{OnnxModel, Value};

/// The opset the exporter writes.
pub const OPSET: i64 = 17;

fn err(msg: impl Into<String>) -> OnnxError {
    OnnxError::Export(msg.into())
}

/// A forward to trace: the inputs in, the outputs out.
pub type Forward<'a> = dyn FnMut(&[T32]) -> std::result::Result<Vec<T32>, String> + 'a;

/// Trace `forward` on `inputs` (named `input_names`) and write it as an ONNX model whose
/// outputs are named `output_names`. `named` gives the names of the tensors the forward reads
/// (parameters and buffers, as a state dict lists them).
pub fn export(
    inputs: &[T32],
    input_names: &[&str],
    output_names: &[&str],
    named: &[(String, T32)],
    forward: &mut Forward<'_>,
) -> Result<Model> {
    export_with_ids(inputs, input_names, &[], output_names, named, forward)
}

/// [`export`] where the inputs named in `int64_inputs` are ids (an embedding's): int64 in the
/// graph, given to the forward as floats of integral values.
pub fn export_with_ids(
    inputs: &[T32],
    input_names: &[&str],
    int64_inputs: &[&str],
    output_names: &[&str],
    named: &[(String, T32)],
    forward: &mut Forward<'_>,
) -> Result<Model> {
    let spec = Spec {
        inputs: input_names
            .iter()
            .map(|&name| Input {
                name,
                int64: int64_inputs.contains(&name),
                batch_axis: None,
                symbol: "batch",
            })
            .collect(),
        outputs: output_names.to_vec(),
        named,
    };
    export_with(&spec, inputs, None, forward)
}

/// A graph input: its name, whether it holds ids (int64 in the graph, floats of integral values
/// for the forward), which axis is the batch (for a symbolic batch size), and the name the
/// symbolic size goes by in the graph (`batch`; `rois` for a count of regions).
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    pub int64: bool,
    pub batch_axis: Option<usize>,
    pub symbol: &'a str,
}

/// What to export: the graph's inputs and outputs, and the names of the weights (a state dict).
pub struct Spec<'a> {
    pub inputs: Vec<Input<'a>>,
    pub outputs: Vec<&'a str>,
    pub named: &'a [(String, T32)],
}

fn run_traced(
    inputs: &[T32],
    forward: &mut Forward<'_>,
    outputs: usize,
) -> Result<(Vec<T32>, Vec<Record>)> {
    let (outs, records) = {
        let _g = aics_tensor::no_grad();
        trace::trace(|| forward(inputs))
    };
    let outs = outs.map_err(|e| err(format!("the forward failed while tracing: {e}")))?;
    if outs.len() != outputs {
        return Err(err(format!(
            "the forward made {} outputs, {} names were given",
            outs.len(),
            outputs
        )));
    }
    Ok((outs, records))
}

/// Where a traced tensor came from: a graph input, a named weight, an op's output, or none of
/// these (a constant).
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Input(usize),
    Weight(String),
    Made(usize, usize),
    Constant,
}

fn sources(inputs: &[T32], named: &HashMap<usize, String>, records: &[Record]) -> Vec<Vec<Source>> {
    let mut at: HashMap<usize, Source> = HashMap::new();
    for (i, t) in inputs.iter().enumerate() {
        at.insert(t.id(), Source::Input(i));
    }
    let mut all = Vec::new();
    for (k, r) in records.iter().enumerate() {
        all.push(
            r.inputs
                .iter()
                .map(|t| {
                    at.get(&t.id()).cloned().unwrap_or_else(|| {
                        named
                            .get(&t.id())
                            .map_or(Source::Constant, |n| Source::Weight(n.clone()))
                    })
                })
                .collect(),
        );
        for (j, o) in r.outputs.iter().enumerate() {
            at.entry(o.id()).or_insert(Source::Made(k, j));
        }
    }
    all
}

/// Trace `forward` on `inputs` and write the graph `spec` describes. With `second`, inputs of
/// another batch size (along each input's `batch_axis`), the forward is traced on those too
/// and the batch size is symbolic in the graph: the two traces must run the same ops on the
/// same operands, and each shape that differs between them must be the batch size times a
/// whole number.
pub fn export_with(
    spec: &Spec<'_>,
    inputs: &[T32],
    second: Option<&[T32]>,
    forward: &mut Forward<'_>,
) -> Result<Model> {
    if inputs.len() != spec.inputs.len() {
        return Err(err(format!(
            "{} inputs with {} names",
            inputs.len(),
            spec.inputs.len()
        )));
    }
    let (outs, records) = run_traced(inputs, forward, spec.outputs.len())?;
    let mut b = Builder::default();
    for (name, t) in spec.named {
        b.param_names.entry(t.id()).or_insert_with(|| name.clone());
    }
    let other = match second {
        None => None,
        Some(xs) => {
            let axis_of = |i: usize| spec.inputs[i].batch_axis;
            let Some((first, ax)) = (0..spec.inputs.len()).find_map(|i| axis_of(i).map(|a| (i, a)))
            else {
                return Err(err("a symbolic batch needs an input with a batch axis"));
            };
            if xs.len() != inputs.len() {
                return Err(err("the second inputs are not as many as the first"));
            }
            let (ba, bb) = (inputs[first].shape()[ax], xs[first].shape()[ax]);
            if ba == bb || ba == 0 || bb == 0 {
                return Err(err(format!(
                    "the two traces need different positive batch sizes, got {ba} and {bb}"
                )));
            }
            let (outs_b, records_b) = run_traced(xs, forward, spec.outputs.len())?;
            // the weights are the same tensors in both traces
            let sa = sources(inputs, &b.param_names, &records);
            let sb = sources(xs, &b.param_names, &records_b);
            if records.len() != records_b.len() {
                return Err(err(format!(
                    "the forward runs {} ops at batch {ba} and {} at batch {bb}: its graph depends on the batch size",
                    records.len(),
                    records_b.len()
                )));
            }
            for (k, (ra, rb)) in records.iter().zip(&records_b).enumerate() {
                let same = std::mem::discriminant(&ra.op) == std::mem::discriminant(&rb.op)
                    && sa[k] == sb[k]
                    && (ra.op == rb.op || matches!(ra.op, Op::Reshape));
                if !same {
                    return Err(err(format!(
                        "op {k} ({:?}) is not the same op on the same operands at batch {ba} and {bb} ({:?}): its attributes or its graph depend on the batch size",
                        ra.op, rb.op
                    )));
                }
            }
            b.batch = Some(Batch {
                input: spec.inputs[first].name.to_string(),
                symbol: spec.inputs[first].symbol.to_string(),
                axis: ax,
                sizes: (ba, bb),
                value: None,
            });
            Some((records_b, outs_b))
        }
    };
    for (i, (t, inp)) in inputs.iter().zip(&spec.inputs).enumerate() {
        b.names.insert(t.id(), inp.name.to_string());
        let mut vi = value_info(inp.name, t.shape());
        if let (Some(ax), Some(_)) = (inp.batch_axis, &other) {
            let Some(Dim::Value(d)) = vi.shape.as_ref().and_then(|s| s.get(ax)).cloned() else {
                return Err(err(format!("input '{}' has no axis {ax}", inp.name)));
            };
            let (ba, bb) = b.batch.as_ref().map(|x| x.sizes).unwrap_or_default();
            let db = second.map(|xs| xs[i].shape()[ax]).unwrap_or(0);
            if d as usize != ba || db != bb {
                return Err(err(format!(
                    "input '{}': axis {ax} is {d} and {db} in the two traces, the batch sizes are {ba} and {bb}",
                    inp.name
                )));
            }
            if let Some(s) = vi.shape.as_mut() {
                s[ax] = Dim::Param(inp.symbol.into());
            }
        }
        if inp.int64 {
            vi.elem_type = Some(dtype::INT64);
            b.int64.push(inp.name.to_string());
        }
        b.graph.inputs.push(vi);
    }
    // the outputs get their names where they are made
    for (t, name) in outs.iter().zip(&spec.outputs) {
        if b.names.contains_key(&t.id()) {
            return Err(err(format!(
                "output '{name}' is an input or weight passed on unchanged"
            )));
        }
        b.out_names.insert(t.id(), name.to_string());
    }
    for (k, r) in records.iter().enumerate() {
        let rb = other.as_ref().map(|(rs, _)| &rs[k]);
        b.record(k, r, rb)?;
    }
    for (i, (t, name)) in outs.iter().zip(&spec.outputs).enumerate() {
        if !b.names.contains_key(&t.id()) {
            return Err(err(format!(
                "output '{name}' was not made by any traced op"
            )));
        }
        let mut vi = value_info(name, t.shape());
        if let (Some((_, outs_b)), Some(s)) = (&other, vi.shape.as_mut()) {
            let (ba, symbol) = b
                .batch
                .as_ref()
                .map(|x| (x.sizes.0, x.symbol.clone()))
                .unwrap_or_default();
            for (d, (&da, &db)) in t.shape().iter().zip(outs_b[i].shape()).enumerate() {
                if da != db {
                    s[d] = if da == ba {
                        Dim::Param(symbol.clone())
                    } else {
                        Dim::Unknown
                    };
                }
            }
        }
        b.graph.outputs.push(vi);
    }
    b.graph.name = "aics".into();
    Ok(Model {
        ir_version: 8,
        opsets: vec![(String::new(), OPSET)],
        producer_name: "aics".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: b.graph,
    })
}

/// [`export`] of a module's forward on `x`, its input named `input` and its output `output`;
/// the module's state dict names the weights. Put the module in evaluation mode first.
pub fn export_module(m: &dyn aics_nn::Module, x: &T32) -> Result<Model> {
    let named = aics_nn::state_dict(m);
    export(
        std::slice::from_ref(x),
        &["input"],
        &["output"],
        &named,
        &mut module_forward(m),
    )
}

/// A module's forward as a [`Forward`].
pub fn module_forward(
    m: &dyn aics_nn::Module,
) -> impl FnMut(&[T32]) -> std::result::Result<Vec<T32>, String> + '_ {
    move |xs: &[T32]| {
        m.forward(&xs[0])
            .map(|y| vec![y])
            .map_err(|e| e.to_string())
    }
}

/// Run `model` with aics's ONNX runner on each set of `inputs` and compare with `forward`:
/// the largest difference relative to the largest magnitude of the forward's output, over all
/// outputs and input sets; and the forward's outputs for each set.
pub fn check_export(
    model: &Model,
    input_names: &[&str],
    inputs: &[Vec<T32>],
    forward: &mut Forward<'_>,
) -> Result<(f64, Vec<Vec<T32>>)> {
    check_export_by(model, input_names, inputs, forward, &mut elementwise)
}

/// How [`check_export_by`] compares the graph's outputs (by name; integers as floats) with the
/// forward's for one set of inputs: the largest relative difference, or an error.
pub type Compare<'a> = dyn FnMut(&[(String, T32)], &[T32]) -> Result<f64> + 'a;

/// Each output value against the forward's, relative to the largest magnitude of the forward's
/// output; the shapes must agree and a NaN fails.
fn elementwise(got: &[(String, T32)], want: &[T32]) -> Result<f64> {
    let mut worst = 0.0f64;
    for ((name, g), w) in got.iter().zip(want) {
        if g.shape() != w.shape() {
            return Err(err(format!(
                "output '{name}': the graph gives shape {:?}, the model {:?}",
                g.shape(),
                w.shape()
            )));
        }
        let (gv, wv) = (g.to_vec(), w.to_vec());
        let scale = wv.iter().fold(1e-6f64, |a, &x| a.max((x as f64).abs()));
        for (a, b) in gv.iter().zip(&wv) {
            let d = (*a as f64 - *b as f64).abs() / scale;
            // NaN anywhere is a failure
            if d.is_nan() {
                return Err(err(format!("output '{name}': NaN")));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

/// [`check_export`] with the comparison `compare` (a detector's detections are matched, not
/// compared in order).
pub fn check_export_by(
    model: &Model,
    input_names: &[&str],
    inputs: &[Vec<T32>],
    forward: &mut Forward<'_>,
    compare: &mut Compare<'_>,
) -> Result<(f64, Vec<Vec<T32>>)> {
    let int64: Vec<&str> = model
        .graph
        .inputs
        .iter()
        .filter(|v| v.elem_type == Some(dtype::INT64))
        .map(|v| v.name.as_str())
        .collect();
    let m = OnnxModel::new(model.clone())?;
    let mut worst = 0.0f64;
    let mut outputs = Vec::with_capacity(inputs.len());
    for set in inputs {
        let want = {
            let _g = aics_tensor::no_grad();
            forward(set).map_err(|e| err(format!("the forward failed: {e}")))?
        };
        let given: Vec<(&str, Value)> = input_names
            .iter()
            .zip(set)
            .map(|(n, t)| {
                let v = if int64.contains(n) {
                    Value::I(
                        t.to_vec().iter().map(|&x| x as i64).collect(),
                        t.shape().to_vec(),
                    )
                } else {
                    Value::F(t.clone())
                };
                (*n, v)
            })
            .collect();
        let got = m
            .run(&given)?
            .into_iter()
            .map(|(name, v)| {
                // integers (a detector's labels) compared as floats
                let g = match v {
                    Value::F(g) => g,
                    Value::I(d, shape) => {
                        T32::from_vec(d.iter().map(|&x| x as f32).collect(), &shape)
                            .map_err(|e| err(format!("output '{name}': {e}")))?
                    }
                };
                Ok((name, g))
            })
            .collect::<Result<Vec<_>>>()?;
        worst = worst.max(compare(&got, &want)?);
        outputs.push(want);
    }
    Ok((worst, outputs))
}

/// The values of a tensor the forward read but no recorded op made.
fn values_of(t: &TracedTensor) -> Result<Vec<f32>> {
    t.values().ok_or_else(|| {
        err(format!(
            "tensor #{} {:?} was made by an op and reached the graph as a constant",
            t.id(),
            t.shape()
        ))
    })
}

pub(crate) fn value_info(name: &str, shape: &[usize]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        elem_type: Some(dtype::FLOAT),
        shape: Some(shape.iter().map(|&d| Dim::Value(d as i64)).collect()),
        other_type: false,
    }
}

pub(crate) fn f32_tensor(name: &str, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: dtype::FLOAT,
        data: TensorData::Raw(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

pub(crate) fn i64_tensor(name: &str, v: &[i64]) -> Tensor {
    Tensor {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: dtype::INT64,
        data: TensorData::Raw(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

pub(crate) fn ints(name: &str, v: &[usize]) -> Attribute {
    Attribute {
        name: name.into(),
        value: AttrValue::Ints(v.iter().map(|&x| x as i64).collect()),
    }
}

pub(crate) fn int(name: &str, v: i64) -> Attribute {
    Attribute {
        name: name.into(),
        value: AttrValue::Int(v),
    }
}

pub(crate) fn float(name: &str, v: f64) -> Attribute {
    Attribute {
        name: name.into(),
        value: AttrValue::Float(v as f32),
    }
}

pub(crate) fn string(name: &str, v: &str) -> Attribute {
    Attribute {
        name: name.into(),
        value: AttrValue::String(v.as_bytes().to_vec()),
    }
}

/// Where the symbolic batch size is read from, its sizes in the two traces, and the value
/// holding it (a 1-element int64 tensor) once a node needs it.
struct Batch {
    input: String,
    symbol: String,
    axis: usize,
    sizes: (usize, usize),
    value: Option<String>,
}

#[derive(Default)]
struct Builder {
    graph: Graph,
    /// Value name of each tensor id seen so far.
    names: HashMap<usize, String>,
    /// State-dict names of the weights.
    param_names: HashMap<usize, String>,
    /// Names the graph's outputs must have.
    out_names: HashMap<usize, String>,
    /// Graph inputs of type int64.
    int64: Vec<String>,
    /// The symbolic batch size, when there is one.
    batch: Option<Batch>,
    /// Names taken by nodes, values and initializers.
    counts: HashMap<String, usize>,
}

impl Builder {
    /// A fresh name starting with `base`.
    fn fresh(&mut self, base: &str) -> String {
        let n = self.counts.entry(base.to_string()).or_insert(0);
        *n += 1;
        format!("{base}_{}", *n - 1)
    }

    /// The value name of a traced input: an earlier output, a graph input, or a new
    /// initializer. `tb` is the same operand in the trace at the other batch size: a constant
    /// whose shape differs there is made in the graph from the batch size.
    fn input(&mut self, t: &TracedTensor, tb: Option<&TracedTensor>) -> Result<String> {
        if let Some(n) = self.names.get(&t.id()) {
            return Ok(n.clone());
        }
        let name = match self.param_names.get(&t.id()) {
            Some(n) => n.clone(),
            None => {
                if let Some(tb) = tb.filter(|tb| tb.shape() != t.shape()) {
                    let v = self.batch_constant(t, tb)?;
                    self.names.insert(t.id(), v.clone());
                    return Ok(v);
                }
                self.fresh("const")
            }
        };
        self.graph
            .initializers
            .push(f32_tensor(&name, t.shape(), &values_of(t)?));
        self.names.insert(t.id(), name.clone());
        Ok(name)
    }

    /// The batch size as a 1-element int64 value, read from the input's shape.
    fn batch_dim(&mut self) -> Result<String> {
        let Some(b) = self.batch.as_ref() else {
            return Err(err("no symbolic batch"));
        };
        if let Some(v) = &b.value {
            return Ok(v.clone());
        }
        let (input, axis) = (b.input.clone(), b.axis);
        let v = self.shape_dims(&input, axis, axis + 1);
        if let Some(b) = self.batch.as_mut() {
            b.value = Some(v.clone());
        }
        Ok(v)
    }

    /// A shape that is `a` in one trace and `b` in the other as a 1-D int64 value: each
    /// dimension that differs is the batch size times a whole number.
    fn batch_shape(&mut self, a: &[usize], b: &[usize]) -> Result<String> {
        let Some((ba, bb)) = self.batch.as_ref().map(|x| x.sizes) else {
            return Err(err("no symbolic batch"));
        };
        if a.len() != b.len() {
            return Err(err(format!(
                "shapes {a:?} and {b:?} differ in rank between the traces"
            )));
        }
        let mut parts = Vec::new();
        for (&da, &db) in a.iter().zip(b) {
            if da == db {
                parts.push(self.const_i64(&[da as i64]));
            } else if da % ba == 0 && db % bb == 0 && da / ba == db / bb {
                let n = self.batch_dim()?;
                parts.push(if da == ba {
                    n
                } else {
                    let k = self.const_i64(&[(da / ba) as i64]);
                    self.node("Mul", vec![n, k], vec![], None)
                });
            } else {
                return Err(err(format!(
                    "shape {a:?} at batch {ba} is {b:?} at batch {bb}: not a multiple of the batch size"
                )));
            }
        }
        Ok(self.node("Concat", parts, vec![int("axis", 0)], None))
    }

    /// A constant whose shape follows the batch size (an initial state of zeros): made by
    /// ConstantOfShape. Other such constants are refused.
    fn batch_constant(&mut self, t: &TracedTensor, tb: &TracedTensor) -> Result<String> {
        if values_of(t)?.iter().any(|&v| v != 0.0) {
            return Err(err(format!(
                "a constant of shape {:?} ({:?} at the other batch size) that is not zeros: its values cannot follow the batch size",
                t.shape(),
                tb.shape()
            )));
        }
        let shape = self.batch_shape(t.shape(), tb.shape())?;
        let zero = f32_tensor("", &[1], &[0.0]);
        Ok(self.node(
            "ConstantOfShape",
            vec![shape],
            vec![Attribute {
                name: "value".into(),
                value: AttrValue::Tensor(zero),
            }],
            None,
        ))
    }

    /// Dimensions `start..end` of the value `x`'s shape, as a 1-D int64 value.
    fn shape_dims(&mut self, x: &str, start: usize, end: usize) -> String {
        let sh = self.node("Shape", vec![x.to_string()], vec![], None);
        let st = self.const_i64(&[start as i64]);
        let en = self.const_i64(&[end as i64]);
        self.node("Slice", vec![sh, st, en], vec![], None)
    }

    /// A Resize of the record's (N, C, H, W) input `x` to (oh, ow), as its output. Its `sizes`
    /// are a constant, or with a symbolic batch the input's own N and C.
    fn resize(&mut self, r: &Record, x: String, oh: usize, ow: usize, attrs: Vec<Attribute>) {
        let sizes = if self.batch.is_some() {
            let nc = self.shape_dims(&x, 0, 2);
            let hw = self.const_i64(&[oh as i64, ow as i64]);
            self.node("Concat", vec![nc, hw], vec![int("axis", 0)], None)
        } else {
            let s = r.inputs[0].shape();
            self.const_i64(&[s[0] as i64, s[1] as i64, oh as i64, ow as i64])
        };
        self.last(
            r,
            "Resize",
            vec![x, String::new(), String::new(), sizes],
            attrs,
        )
    }

    fn const_f32(&mut self, shape: &[usize], v: &[f32]) -> String {
        let name = self.fresh("const");
        self.graph.initializers.push(f32_tensor(&name, shape, v));
        name
    }

    fn const_i64(&mut self, v: &[i64]) -> String {
        let name = self.fresh("const");
        self.graph.initializers.push(i64_tensor(&name, v));
        name
    }

    /// Add a node; its output is a new value unless `out` names it.
    fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attributes: Vec<Attribute>,
        out: Option<String>,
    ) -> String {
        let out = out.unwrap_or_else(|| self.fresh(&op.to_lowercase()));
        let name = self.fresh(op);
        self.graph.nodes.push(Node {
            name,
            op_type: op.into(),
            domain: String::new(),
            inputs,
            outputs: vec![out.clone()],
            attributes,
        });
        out
    }

    /// The value name a record's output `t` gets: the graph output's name, or a fresh one.
    fn output_name(&mut self, t: &TracedTensor, base: &str) -> String {
        let name = match self.out_names.get(&t.id()) {
            Some(n) => n.clone(),
            None => self.fresh(base),
        };
        self.names.insert(t.id(), name.clone());
        name
    }

    /// A node making the record's single output.
    fn last(&mut self, r: &Record, op: &str, inputs: Vec<String>, attrs: Vec<Attribute>) {
        self.step(r, op, inputs, attrs, true);
    }

    /// A node of the chain a record becomes: the record's output when `last`, a new value
    /// otherwise.
    fn step(
        &mut self,
        r: &Record,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<Attribute>,
        last: bool,
    ) -> String {
        let out = last.then(|| self.output_name(&r.outputs[0], &op.to_lowercase()));
        self.node(op, inputs, attrs, out)
    }

    /// `shape` as a (C, 1, …, 1) tensor beside an input of `rank`: for per-channel operands.
    fn per_channel(&mut self, v: String, c: usize, rank: usize) -> String {
        let mut shape = vec![c as i64];
        shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
        let s = self.const_i64(&shape);
        self.node("Reshape", vec![v, s], vec![], None)
    }

    /// A normalization's scale and shift for `c` channels: the inputs after `x` where the op
    /// has them, ones and zeros where not; and the index of the input after them.
    fn scale_shift(
        &mut self,
        ins: &[String],
        c: usize,
        weight: bool,
        bias: bool,
    ) -> (String, String, usize) {
        let mut at = 1;
        let mut take = |b: &mut Self, has: bool, fill: f32| {
            if has {
                at += 1;
                ins[at - 1].clone()
            } else {
                b.const_f32(&[c], &vec![fill; c])
            }
        };
        let s = take(self, weight, 1.0);
        let sh = take(self, bias, 0.0);
        (s, sh, at)
    }

    fn record(&mut self, k: usize, r: &Record, rb: Option<&Record>) -> Result<()> {
        let ins = r
            .inputs
            .iter()
            .enumerate()
            .map(|(i, t)| self.input(t, rb.map(|b| &b.inputs[i])))
            .collect::<Result<Vec<String>>>()?;
        let rank = r.inputs.first().map_or(0, |t| t.shape().len());
        let x = ins.first().cloned().unwrap_or_default();
        let refuse = |what: &str| Err(err(format!("op {k} ({:?}): {what}", r.op)));
        match &r.op {
            Op::Add => self.last(r, "Add", ins, vec![]),
            Op::Sub => self.last(r, "Sub", ins, vec![]),
            Op::Mul => self.last(r, "Mul", ins, vec![]),
            Op::Div => self.last(r, "Div", ins, vec![]),
            Op::Maximum => self.last(r, "Max", ins, vec![]),
            Op::Minimum => self.last(r, "Min", ins, vec![]),
            Op::AddScalar(s) => {
                let c = self.const_f32(&[], &[*s as f32]);
                self.last(r, "Add", vec![x, c], vec![])
            }
            Op::MulScalar(s) => {
                let c = self.const_f32(&[], &[*s as f32]);
                self.last(r, "Mul", vec![x, c], vec![])
            }
            Op::Pow(p) => {
                let c = self.const_f32(&[], &[*p as f32]);
                self.last(r, "Pow", vec![x, c], vec![])
            }
            Op::Square => self.last(r, "Mul", vec![x.clone(), x], vec![]),
            Op::Neg => self.last(r, "Neg", ins, vec![]),
            Op::Exp => self.last(r, "Exp", ins, vec![]),
            Op::Log => self.last(r, "Log", ins, vec![]),
            Op::Sqrt => self.last(r, "Sqrt", ins, vec![]),
            Op::Abs => self.last(r, "Abs", ins, vec![]),
            Op::Relu => self.last(r, "Relu", ins, vec![]),
            Op::Tanh => self.last(r, "Tanh", ins, vec![]),
            Op::Sigmoid => self.last(r, "Sigmoid", ins, vec![]),
            Op::Softplus => self.last(r, "Softplus", ins, vec![]),
            Op::HardSwish => self.last(r, "HardSwish", ins, vec![]),
            Op::HardSigmoid => self.last(
                r,
                "HardSigmoid",
                ins,
                vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
            ),
            Op::LeakyRelu(s) => self.last(r, "LeakyRelu", ins, vec![float("alpha", *s)]),
            Op::Clamp(lo, hi) => {
                let l = self.const_f32(&[], &[*lo as f32]);
                let h = self.const_f32(&[], &[*hi as f32]);
                self.last(r, "Clip", vec![x, l, h], vec![])
            }
            Op::SmoothL1(_) => return refuse("a loss, not part of a model's graph"),
            Op::Prelu => {
                let c = r.inputs[1].shape().iter().product::<usize>();
                let w = if c == 1 {
                    ins[1].clone()
                } else {
                    self.per_channel(ins[1].clone(), c, rank)
                };
                self.last(r, "PRelu", vec![x, w], vec![])
            }
            Op::Conv {
                p,
                act,
                bias,
                residual,
            } => {
                let w = r.inputs[1].shape();
                let mut cin = vec![x, ins[1].clone()];
                if *bias {
                    cin.push(ins[2].clone());
                }
                let attrs = conv_attrs(p, &w[2..], false);
                // Conv, then the residual's Add, then the activation: (op, more inputs, attrs)
                let act = match act {
                    Activation::Identity => None,
                    Activation::Relu => Some(("Relu", vec![], vec![])),
                    Activation::LeakyRelu(s) => {
                        Some(("LeakyRelu", vec![], vec![float("alpha", *s)]))
                    }
                    Activation::Relu6 => {
                        let l = self.const_f32(&[], &[0.0]);
                        let h = self.const_f32(&[], &[6.0]);
                        Some(("Clip", vec![l, h], vec![]))
                    }
                };
                let res = residual.then(|| ins[ins.len() - 1].clone());
                let mut y = self.step(r, "Conv", cin, attrs, res.is_none() && act.is_none());
                if let Some(res) = res {
                    y = self.step(r, "Add", vec![y, res], vec![], act.is_none());
                }
                if let Some((op, more, attrs)) = act {
                    let mut inputs = vec![y];
                    inputs.extend(more);
                    self.last(r, op, inputs, attrs);
                }
            }
            Op::ConvTranspose { p, .. } => {
                let w = r.inputs[1].shape();
                let attrs = conv_attrs(p, &w[2..], true);
                self.last(r, "ConvTranspose", ins, attrs)
            }
            Op::MatMul => self.last(r, "MatMul", ins, vec![]),
            Op::Linear { bias } => {
                if rank == 2 {
                    self.last(r, "Gemm", ins, vec![int("transB", 1)])
                } else {
                    let wt = self.node(
                        "Transpose",
                        vec![ins[1].clone()],
                        vec![ints("perm", &[1, 0])],
                        None,
                    );
                    let y = self.step(r, "MatMul", vec![x, wt], vec![], !*bias);
                    if *bias {
                        self.last(r, "Add", vec![y, ins[2].clone()], vec![])
                    }
                }
            }
            Op::Gram => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.swap(rank - 2, rank - 1);
                let xt = self.node(
                    "Transpose",
                    vec![x.clone()],
                    vec![ints("perm", &perm)],
                    None,
                );
                self.last(r, "MatMul", vec![x, xt], vec![])
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => self.last(
                r,
                "LRN",
                ins,
                vec![
                    int("size", *size as i64),
                    float("alpha", *alpha),
                    float("beta", *beta),
                    float("bias", *k),
                ],
            ),
            Op::BatchNorm {
                eps,
                training,
                weight,
                bias,
            } => {
                if *training {
                    return refuse(
                        "batch norm with batch statistics (training mode): put the model in evaluation mode to export it",
                    );
                }
                let c = r.inputs[0].shape().get(1).copied().unwrap_or(1);
                let (s, bb, at) = self.scale_shift(&ins, c, *weight, *bias);
                let (m, v) = (ins[at].clone(), ins[at + 1].clone());
                self.last(
                    r,
                    "BatchNormalization",
                    vec![x, s, bb, m, v],
                    vec![float("epsilon", *eps)],
                )
            }
            Op::ChannelAffine => {
                let c = r.inputs[1].shape()[0];
                let s = self.per_channel(ins[1].clone(), c, rank);
                let b = self.per_channel(ins[2].clone(), c, rank);
                let y = self.node("Mul", vec![x, s], vec![], None);
                self.last(r, "Add", vec![y, b], vec![])
            }
            Op::InstanceNorm { eps, weight, bias } => {
                let c = r.inputs[0].shape()[1];
                let (s, bb, _) = self.scale_shift(&ins, c, *weight, *bias);
                self.last(
                    r,
                    "InstanceNormalization",
                    vec![x, s, bb],
                    vec![float("epsilon", *eps)],
                )
            }
            Op::Dropout(_) => {
                return refuse(
                    "dropout in training mode: put the model in evaluation mode to export it",
                )
            }
            Op::MaxPool(p) => self.last(r, "MaxPool", ins, pool_attrs(p, true)),
            Op::AvgPool {
                p,
                count_include_pad,
            } => {
                let mut a = pool_attrs(p, false);
                a.push(int("count_include_pad", *count_include_pad as i64));
                self.last(r, "AveragePool", ins, a)
            }
            Op::LpPool { norm, p } => {
                if norm.fract() != 0.0 {
                    return refuse("ONNX's LpPool takes a whole power only");
                }
                let mut a = pool_attrs(p, false);
                a.retain(|a| a.name != "ceil_mode" && a.name != "pads");
                a.push(int("p", *norm as i64));
                if p.ceil_mode {
                    return refuse("LpPool with ceil_mode has no ONNX form before opset 18");
                }
                self.last(r, "LpPool", ins, a)
            }
            Op::AdaptiveAvgPool { oh, ow } => {
                let s = r.inputs[0].shape();
                let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
                if (*oh, *ow) == (1, 1) && rank == 4 {
                    self.last(r, "GlobalAveragePool", ins, vec![])
                } else if oh % h == 0 && ow % w == 0 && rank == 4 {
                    // each window is one input element: a nearest upsampling
                    self.resize(r, x, *oh, *ow, nearest_floor())
                } else if h % oh == 0 && w % ow == 0 {
                    let k = [h / oh, w / ow];
                    self.last(
                        r,
                        "AveragePool",
                        ins,
                        vec![ints("kernel_shape", &k), ints("strides", &k)],
                    )
                } else {
                    return refuse(&format!(
                        "adaptive pooling of {h}x{w} to {oh}x{ow} has uneven windows, which ONNX's pools cannot express"
                    ));
                }
            }
            Op::Sum | Op::SumDims { .. } | Op::Mean | Op::MeanDims { .. } | Op::Max | Op::Min => {
                let (all, keep) = match &r.op {
                    Op::SumDims { dims, keepdim } | Op::MeanDims { dims, keepdim } => {
                        (dims.clone(), *keepdim)
                    }
                    _ => ((0..rank).collect(), false),
                };
                let ax: Vec<i64> = all.iter().map(|&d| d as i64).collect();
                match &r.op {
                    Op::Sum | Op::SumDims { .. } => {
                        let a = self.const_i64(&ax);
                        self.last(
                            r,
                            "ReduceSum",
                            vec![x, a],
                            vec![int("keepdims", keep as i64)],
                        )
                    }
                    op => {
                        let name = match op {
                            Op::Max => "ReduceMax",
                            Op::Min => "ReduceMin",
                            _ => "ReduceMean",
                        };
                        self.last(
                            r,
                            name,
                            vec![x],
                            vec![ints("axes", &all), int("keepdims", keep as i64)],
                        )
                    }
                }
            }
            Op::MaxDim { dim, keepdim } => self.last(
                r,
                "ReduceMax",
                vec![x],
                vec![ints("axes", &[*dim]), int("keepdims", *keepdim as i64)],
            ),
            Op::Reshape => {
                let mut s: Vec<i64> = r.outputs[0].shape().iter().map(|&d| d as i64).collect();
                if let Some(rb) = rb {
                    // the one dimension that follows the batch size is inferred
                    let (sa, sb) = (r.outputs[0].shape(), rb.outputs[0].shape());
                    if sa.len() != sb.len() {
                        return refuse("a reshape to another rank at another batch size");
                    }
                    let differ: Vec<usize> = (0..sa.len()).filter(|&d| sa[d] != sb[d]).collect();
                    match differ[..] {
                        [] => {}
                        [d] => s[d] = -1,
                        _ => {
                            return refuse(&format!(
                                "a reshape to {sa:?} at one batch size and {sb:?} at the other: more than one dimension follows the batch"
                            ))
                        }
                    }
                }
                let s = self.const_i64(&s);
                self.last(r, "Reshape", vec![x, s], vec![])
            }
            Op::Permute(perm) => self.last(r, "Transpose", ins, vec![ints("perm", perm)]),
            Op::Slice { dim, start, len } => {
                let st = self.const_i64(&[*start as i64]);
                let en = self.const_i64(&[(*start + *len) as i64]);
                let ax = self.const_i64(&[*dim as i64]);
                self.last(r, "Slice", vec![x, st, en, ax], vec![])
            }
            Op::IndexSelect { dim, indices } => {
                let ix: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                let ix = self.const_i64(&ix);
                self.last(r, "Gather", vec![x, ix], vec![int("axis", *dim as i64)])
            }
            Op::Embedding => {
                let ids = if self.int64.contains(&ins[1]) {
                    ins[1].clone()
                } else {
                    self.node(
                        "Cast",
                        vec![ins[1].clone()],
                        vec![int("to", dtype::INT64 as i64)],
                        None,
                    )
                };
                self.last(r, "Gather", vec![x, ids], vec![int("axis", 0)])
            }
            Op::Gather {
                dim,
                index,
                index_shape,
            } => {
                let ix: Vec<i64> = index.iter().map(|&i| i as i64).collect();
                let name = self.fresh("const");
                let mut t = i64_tensor(&name, &ix);
                t.dims = index_shape.iter().map(|&d| d as i64).collect();
                self.graph.initializers.push(t);
                self.last(
                    r,
                    "GatherElements",
                    vec![x, name],
                    vec![int("axis", *dim as i64)],
                )
            }
            Op::Concat(axis) => self.last(r, "Concat", ins, vec![int("axis", *axis as i64)]),
            Op::Pad { pads, value } => {
                let mut p: Vec<i64> = pads.iter().map(|&(b, _)| b as i64).collect();
                p.extend(pads.iter().map(|&(_, a)| a as i64));
                let p = self.const_i64(&p);
                let v = self.const_f32(&[], &[*value as f32]);
                self.last(r, "Pad", vec![x, p, v], vec![string("mode", "constant")])
            }
            Op::ReflectionPad([l, rt, t, b]) => {
                let p = self.const_i64(&[0, 0, *t as i64, *l as i64, 0, 0, *b as i64, *rt as i64]);
                self.last(r, "Pad", vec![x, p], vec![string("mode", "reflect")])
            }
            Op::Softmax(a) => self.last(r, "Softmax", ins, vec![int("axis", *a as i64)]),
            Op::LogSoftmax(a) => self.last(r, "LogSoftmax", ins, vec![int("axis", *a as i64)]),
            Op::Upsample { oh, ow, mode } => {
                let attrs = match mode {
                    Interp::Nearest => nearest_floor(),
                    Interp::Bilinear { align_corners } => vec![
                        string("mode", "linear"),
                        string(
                            "coordinate_transformation_mode",
                            if *align_corners {
                                "align_corners"
                            } else {
                                "pytorch_half_pixel"
                            },
                        ),
                    ],
                };
                self.resize(r, x, *oh, *ow, attrs)
            }
            Op::RoiPool {
                output,
                spatial_scale,
            } => self.last(
                r,
                "MaxRoiPool",
                ins,
                vec![
                    ints("pooled_shape", &[output.0, output.1]),
                    float("spatial_scale", *spatial_scale),
                ],
            ),
            Op::RoiAlign {
                output,
                spatial_scale,
                sampling_ratio,
                aligned,
            } => {
                // ONNX's RoiAlign takes the boxes (K, 4) and their images (K) apart
                let rois = ins[1].clone();
                let zero = self.const_i64(&[0]);
                let col = self.node(
                    "Gather",
                    vec![rois.clone(), zero],
                    vec![int("axis", 1)],
                    None,
                );
                let flat = self.const_i64(&[-1]);
                let col = self.node("Reshape", vec![col, flat], vec![], None);
                let idx = self.node(
                    "Cast",
                    vec![col],
                    vec![int("to", dtype::INT64 as i64)],
                    None,
                );
                let (one, five, axis) = (
                    self.const_i64(&[1]),
                    self.const_i64(&[5]),
                    self.const_i64(&[1]),
                );
                let boxes = self.node("Slice", vec![rois, one, five, axis], vec![], None);
                self.last(
                    r,
                    "RoiAlign",
                    vec![x, boxes, idx],
                    vec![
                        int("output_height", output.0 as i64),
                        int("output_width", output.1 as i64),
                        int("sampling_ratio", (*sampling_ratio).max(0) as i64),
                        float("spatial_scale", *spatial_scale),
                        string(
                            "coordinate_transformation_mode",
                            if *aligned {
                                "half_pixel"
                            } else {
                                "output_half_pixel"
                            },
                        ),
                    ],
                )
            }
            Op::Recurrent { .. } => self.recurrent(k, r, ins)?,
        }
        Ok(())
    }

    fn recurrent(&mut self, k: usize, r: &Record, ins: Vec<String>) -> Result<()> {
        let Op::Recurrent {
            cell,
            lengths,
            reverse,
            b_hh,
            c0,
            peephole,
            w_hr,
        } = &r.op
        else {
            unreachable!("called for recurrent records")
        };
        if *w_hr {
            return Err(err(format!(
                "op {k}: an LSTM with a projection (proj_size) has no ONNX form"
            )));
        }
        let xs = r.inputs[0].shape();
        let gh = xs[2];
        let hidden = r.inputs[2].shape()[1];
        let onnx = match cell {
            Cell::RnnTanh | Cell::RnnRelu => "RNN",
            Cell::Lstm { .. } => "LSTM",
            Cell::Gru { .. } => "GRU",
        };
        let coupled = matches!(cell, Cell::Lstm { coupled: true, .. });
        // ONNX's gate blocks, each as aics's block (None: a block ONNX has and aics has not)
        let mut order = from_onnx_order(aics_nn::onnx_gate_perm(*cell));
        if coupled {
            // ONNX's coupled LSTM (input_forget) keeps a forget block (i, o, f, c) it ignores
            order.insert(2, None);
        }
        let gates = order.len();
        let h = gh / cell.gates();
        debug_assert_eq!(h, hidden);
        // The input projection is already made (xp), so ONNX's W is a permutation (an
        // identity with the gate blocks reordered) and Wb is zero.
        let mut w = vec![0f32; gates * h * gh];
        for (to, from) in order.iter().enumerate() {
            let Some(from) = from else { continue };
            for i in 0..h {
                w[(to * h + i) * gh + from * h + i] = 1.0;
            }
        }
        let w = self.const_f32(&[1, gates * h, gh], &w);
        // R and Rb: the recurrent weight's gate blocks in ONNX's order, by graph ops so that the
        // parameter keeps its name
        let reorder = |b: &mut Self, v: &str, width: Option<usize>| -> String {
            let mut parts = Vec::new();
            for from in &order {
                match from {
                    None => {
                        let shape: Vec<usize> = match width {
                            Some(wd) => vec![h, wd],
                            None => vec![h],
                        };
                        let n: usize = shape.iter().product();
                        parts.push(b.const_f32(&shape, &vec![0.0; n]));
                    }
                    Some(from) => {
                        let st = b.const_i64(&[(from * h) as i64]);
                        let en = b.const_i64(&[((from + 1) * h) as i64]);
                        let ax = b.const_i64(&[0]);
                        parts.push(b.node("Slice", vec![v.to_string(), st, en, ax], vec![], None));
                    }
                }
            }
            let cat = b.node("Concat", parts, vec![int("axis", 0)], None);
            let ax = b.const_i64(&[0]);
            b.node("Unsqueeze", vec![cat, ax], vec![], None)
        };
        let rr = reorder(self, &ins[2], Some(hidden));
        let mut at = 3;
        let bias = if *b_hh {
            at += 1;
            let rb = reorder(self, &ins[3], None);
            let wb = self.const_f32(&[1, gates * h], &vec![0.0; gates * h]);
            Some(self.node("Concat", vec![wb, rb], vec![int("axis", 1)], None))
        } else {
            None
        };
        let ax0 = self.const_i64(&[0]);
        let h0 = self.node("Unsqueeze", vec![ins[1].clone(), ax0.clone()], vec![], None);
        let c0v = if *c0 {
            at += 1;
            Some(self.node(
                "Unsqueeze",
                vec![ins[at - 1].clone(), ax0.clone()],
                vec![],
                None,
            ))
        } else {
            None
        };
        let peep = if *peephole {
            // ONNX's rows (i, o, f) from aics's (i, f, o), or (i, o) when coupled
            let p = &ins[at];
            let rows = if coupled {
                vec![Some(0), Some(1), None]
            } else {
                from_onnx_order(&aics_nn::ONNX_PEEPHOLE_PERM)
            };
            let mut parts = Vec::new();
            for from in rows {
                let Some(from) = from else {
                    parts.push(self.const_f32(&[1, h], &vec![0.0; h]));
                    continue;
                };
                let ix = self.const_i64(&[from as i64]);
                parts.push(self.node("Gather", vec![p.clone(), ix], vec![int("axis", 0)], None));
            }
            let cat = self.node("Concat", parts, vec![int("axis", 0)], None);
            let s = self.const_i64(&[1, 3 * h as i64]);
            Some(self.node("Reshape", vec![cat, s], vec![], None))
        } else {
            None
        };
        let lens = lengths.as_ref().map(|l| {
            let name = self.fresh("const");
            self.graph.initializers.push(Tensor {
                name: name.clone(),
                dims: vec![l.len() as i64],
                data_type: dtype::INT32,
                data: TensorData::Raw(l.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()),
            });
            name
        });
        let mut rin = vec![
            ins[0].clone(),
            w,
            rr,
            bias.unwrap_or_default(),
            lens.unwrap_or_default(),
            h0,
        ];
        // an LSTM without c0 starts from zeros, ONNX's default
        if cell.has_c() {
            rin.push(c0v.unwrap_or_default());
            rin.push(peep.unwrap_or_default());
        }
        while rin.last().is_some_and(|s| s.is_empty()) {
            rin.pop();
        }
        let mut attrs = vec![
            int("hidden_size", h as i64),
            string("direction", if *reverse { "reverse" } else { "forward" }),
        ];
        match cell {
            Cell::RnnRelu => attrs.push(Attribute {
                name: "activations".into(),
                value: AttrValue::Strings(vec![b"Relu".to_vec()]),
            }),
            Cell::Gru { reset_after } => {
                attrs.push(int("linear_before_reset", *reset_after as i64))
            }
            Cell::Lstm { coupled: true, .. } => attrs.push(int("input_forget", 1)),
            _ => {}
        }
        let node_name = self.fresh(onnx);
        let y = self.fresh("y");
        let yh = self.fresh("y_h");
        let mut outs = vec![y.clone(), yh.clone()];
        let yc = self.fresh("y_c");
        if cell.has_c() {
            outs.push(yc.clone());
        }
        self.graph.nodes.push(Node {
            name: node_name,
            op_type: onnx.into(),
            domain: String::new(),
            inputs: rin,
            outputs: outs,
            attributes: attrs,
        });
        // Y (T, 1, N, H) → (T, N, H); Y_h, Y_c (1, N, H) → (N, H)
        let ax1 = self.const_i64(&[1]);
        let o = self.output_name(&r.outputs[0], "rnn_out");
        self.node("Squeeze", vec![y, ax1], vec![], Some(o));
        let o = self.output_name(&r.outputs[1], "rnn_h");
        self.node("Squeeze", vec![yh, ax0.clone()], vec![], Some(o));
        if cell.has_c() {
            let o = self.output_name(&r.outputs[2], "rnn_c");
            self.node("Squeeze", vec![yc, ax0], vec![], Some(o));
        }
        Ok(())
    }
}

/// The inverse of aics-nn's `ours[k] = onnx[perm[k]]`: for each ONNX block, aics's block.
fn from_onnx_order(perm: &[usize]) -> Vec<Option<usize>> {
    let mut order = vec![None; perm.len()];
    for (ours, &theirs) in perm.iter().enumerate() {
        order[theirs] = Some(ours);
    }
    order
}

/// Resize's nearest sampling as aics (and PyTorch) take it: source `floor(d · in / out)`.
fn nearest_floor() -> Vec<Attribute> {
    vec![
        string("mode", "nearest"),
        string("coordinate_transformation_mode", "asymmetric"),
        string("nearest_mode", "floor"),
    ]
}

fn conv_attrs(p: &ConvParams, kernel: &[usize], transposed: bool) -> Vec<Attribute> {
    let mut a = vec![
        ints("kernel_shape", kernel),
        ints("strides", &[p.stride.0, p.stride.1]),
        ints(
            "pads",
            &[p.padding.0, p.padding.1, p.padding.0, p.padding.1],
        ),
        ints("dilations", &[p.dilation.0, p.dilation.1]),
        int("group", p.groups as i64),
    ];
    if transposed {
        a.push(ints(
            "output_padding",
            &[p.output_padding.0, p.output_padding.1],
        ));
    }
    a
}

fn pool_attrs(p: &PoolParams, dilations: bool) -> Vec<Attribute> {
    let mut a = vec![
        ints("kernel_shape", &[p.kernel.0, p.kernel.1]),
        ints("strides", &[p.stride.0, p.stride.1]),
        ints(
            "pads",
            &[p.padding.0, p.padding.1, p.padding.0, p.padding.1],
        ),
        int("ceil_mode", p.ceil_mode as i64),
    ];
    if dilations {
        a.push(ints("dilations", &[p.dilation.0, p.dilation.1]));
    }
    a
}
