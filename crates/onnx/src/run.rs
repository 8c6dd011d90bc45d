//! Running an ONNX graph on aics's tensors: each node becomes the aics op with ONNX's
//! semantics, so the float path is differentiable and the same kernels run it as run aics's
//! own models. Integer tensors (shapes, axes, indices) are kept as i64 beside the float ones.

use std::collections::HashMap;

use aics_tensor::{ConvParams, PoolParams, Tensor};

use crate::check::{check, op_name};
use crate::error::{OnnxError, Result};
use crate::proto::{dtype, AttrValue, Graph, Model, Node, TensorData};

/// A value flowing through the graph.
#[derive(Clone, Debug)]
pub enum Value {
    /// Any real type, computed in f32.
    F(Tensor<f32>),
    /// Integer and boolean types: data and shape.
    I(Vec<i64>, Vec<usize>),
}

impl Value {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::F(t) => t.shape().to_vec(),
            Value::I(_, s) => s.clone(),
        }
    }
}

/// An imported model ready to run: its graph, with the float initializers as tensors.
pub struct OnnxModel {
    /// Print each node's outputs (shape, and the first values) as it runs (`AICS_ONNX_TRACE`).
    pub trace: bool,
    /// Save each node's outputs as `.npy` files in this folder, named by the value with `/`
    /// and other unsafe characters as `_` (`AICS_ONNX_DUMP=DIR`), to compare with another
    /// engine's intermediate values.
    pub dump: Option<std::path::PathBuf>,
    graph: Graph,
    opset: i64,
    consts: HashMap<String, Value>,
    /// The inference path's fused convolutions ([`crate::fuse`]).
    plan: crate::fuse::Plan,
    /// Training mode ([`aics_nn::Module::set_training`]): batch normalization on the batch's
    /// statistics, updating the running ones.
    pub(crate) training: std::sync::atomic::AtomicBool,
    /// The float initializers that are trained (see [`OnnxModel::parameters`]).
    pub(crate) params: std::collections::HashSet<String>,
    /// The element types the graph declares for its values (inputs, outputs, value_info):
    /// each value a node makes is held to its declared type.
    types: HashMap<String, i32>,
    /// For each node of the top-level graph, the values no later node reads (nor a graph
    /// output): a run lets go of them once the node has run, so that activations are freed
    /// and their memory reused as the run goes.
    frees: Vec<Vec<String>>,
}

/// [`OnnxModel::frees`] of `g`: each value under the last node that reads it, directly or from
/// inside its subgraphs.
fn last_uses<'a>(g: &'a Graph) -> Vec<Vec<String>> {
    fn names_in<'a>(g: &'a Graph, f: &mut dyn FnMut(&'a str)) {
        for n in &g.nodes {
            n.inputs.iter().for_each(|i| f(i));
            for a in &n.attributes {
                match &a.value {
                    crate::proto::AttrValue::Graph(sg) => names_in(sg, f),
                    crate::proto::AttrValue::Graphs(gs) => gs.iter().for_each(|sg| names_in(sg, f)),
                    _ => {}
                }
            }
        }
        g.outputs.iter().for_each(|o| f(&o.name));
    }
    let mut last: HashMap<&'a str, usize> = HashMap::new();
    for (k, n) in g.nodes.iter().enumerate() {
        let mut at = |name: &'a str| {
            if !name.is_empty() {
                last.insert(name, k);
            }
        };
        n.inputs.iter().for_each(|i| at(i));
        for a in &n.attributes {
            match &a.value {
                crate::proto::AttrValue::Graph(sg) => names_in(sg, &mut at),
                crate::proto::AttrValue::Graphs(gs) => {
                    gs.iter().for_each(|sg| names_in(sg, &mut at))
                }
                _ => {}
            }
        }
    }
    let kept: std::collections::HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut frees = vec![Vec::new(); g.nodes.len()];
    for (name, k) in last {
        if !kept.contains(name) {
            frees[k].push(name.to_string());
        }
    }
    frees
}

pub(crate) fn node_err(n: &Node, what: impl Into<String>) -> OnnxError {
    OnnxError::Node {
        node: if n.name.is_empty() {
            n.outputs.first().cloned().unwrap_or_default()
        } else {
            n.name.clone()
        },
        op: n.op_type.clone(),
        what: what.into(),
    }
}

/// A tensor from the file as a value: float types become f32 tensors, the others i64.
pub fn value_of(t: &crate::proto::Tensor) -> Result<Value> {
    let shape = t.shape()?;
    match t.data_type {
        dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16 => {
            let v = t.to_f32()?;
            Tensor::from_vec(v, &shape)
                .map(Value::F)
                .map_err(|e| OnnxError::Tensor {
                    name: t.name.clone(),
                    what: e.to_string(),
                })
        }
        _ => Ok(Value::I(t.to_i64()?, shape)),
    }
}

impl OnnxModel {
    /// Prepares `model` to run: refuses it, naming every op aics cannot run and every
    /// structural problem, before anything runs.
    pub fn new(model: Model) -> Result<Self> {
        Self::with_values(model, HashMap::new())
    }

    /// [`OnnxModel::new`] with the values of some initializers already decoded (those whose
    /// data is in external files, read by [`crate::open`]), by name.
    pub fn with_values(model: Model, mut values: HashMap<String, Value>) -> Result<Self> {
        let r = check(&model);
        if !r.unsupported.is_empty() || !r.problems.is_empty() {
            let mut parts = Vec::new();
            if !r.unsupported.is_empty() {
                let names: Vec<String> = r.unsupported.iter().map(|(d, o)| op_name(d, o)).collect();
                parts.push(format!("ops aics cannot run: {}", names.join(", ")));
            }
            parts.extend(r.problems.iter().cloned());
            return Err(OnnxError::Unsupported(parts.join("; ")));
        }
        let opset = model
            .opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map_or(1, |(_, v)| *v);
        let mut consts = HashMap::new();
        for t in &model.graph.initializers {
            if let Some(v) = values.remove(&t.name) {
                consts.insert(t.name.clone(), v);
                continue;
            }
            if matches!(t.data, TensorData::External { .. }) {
                return Err(OnnxError::Tensor {
                    name: t.name.clone(),
                    what: "external data not loaded (aics_onnx::load_external)".into(),
                });
            }
            consts.insert(t.name.clone(), value_of(t)?);
        }
        let types = model
            .graph
            .inputs
            .iter()
            .chain(&model.graph.outputs)
            .chain(&model.graph.value_info)
            .filter_map(|v| v.elem_type.map(|t| (v.name.clone(), t)))
            .chain(
                model
                    .graph
                    .initializers
                    .iter()
                    .map(|t| (t.name.clone(), t.data_type)),
            )
            .collect();
        let params = crate::module::trained_initializers(&model.graph, &consts);
        for (name, v) in &consts {
            if let (true, Value::F(t)) = (params.contains(name), v) {
                t.set_requires_grad(true);
            }
        }
        // the fusion plan also sees the values of Constant nodes (exporters such as Paddle's
        // put weights there)
        let mut known = consts.clone();
        for n in model.graph.nodes.iter().filter(|n| n.op_type == "Constant") {
            if let (Ok(mut v), Some(out)) = (exec(n, &[], opset, &|_| None), n.outputs.first()) {
                if let Some(v) = v.pop() {
                    known.insert(out.clone(), v);
                }
            }
        }
        let plan = crate::fuse::plan(&model.graph, &known, opset);
        Ok(OnnxModel {
            plan,
            frees: last_uses(&model.graph),
            training: std::sync::atomic::AtomicBool::new(false),
            params,
            types,
            trace: std::env::var_os("AICS_ONNX_TRACE").is_some(),
            dump: std::env::var_os("AICS_ONNX_DUMP").map(std::path::PathBuf::from),
            graph: model.graph,
            opset,
            consts,
        })
    }

    /// How many convolutions the inference path runs fused, and how many nodes it folds into
    /// them.
    pub fn fused(&self) -> (usize, usize) {
        (self.plan.convs.len(), self.plan.skip.len())
    }

    /// The graph as read.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The sizes the graph declares for input `name` (None for a symbolic or unknown size);
    /// empty when it declares no shape.
    pub fn declared_dims(&self, name: &str) -> Vec<Option<usize>> {
        self.graph
            .inputs
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.shape.as_ref())
            .map(|dims| {
                dims.iter()
                    .map(|d| match d {
                        crate::proto::Dim::Value(v) if *v > 0 => Some(*v as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The initializers' names, in the file's order.
    pub fn initializer_names(&self) -> Vec<String> {
        self.graph
            .initializers
            .iter()
            .map(|t| t.name.clone())
            .collect()
    }

    /// An initializer's value.
    pub fn constant(&self, name: &str) -> Option<&Value> {
        self.consts.get(name)
    }

    /// The graph inputs a caller feeds (those that are not initializers).
    pub fn input_names(&self) -> Vec<String> {
        self.graph
            .inputs
            .iter()
            .filter(|i| !self.consts.contains_key(&i.name))
            .map(|i| i.name.clone())
            .collect()
    }

    /// Runs the graph on `inputs` (by name) and returns its outputs in order.
    /// Inference: no gradient is recorded. [`aics_nn::Module::forward`] runs the graph with
    /// gradients, to train it.
    pub fn run(&self, inputs: &[(&str, Value)]) -> Result<Vec<(String, Value)>> {
        let _no_grad = aics_tensor::no_grad();
        self.run_with_grad(inputs)
    }

    /// [`OnnxModel::run`], recording gradients where autograd is on.
    pub(crate) fn run_with_grad(&self, inputs: &[(&str, Value)]) -> Result<Vec<(String, Value)>> {
        let mut scope = Scope {
            vals: HashMap::new(),
            parent: None,
            base: Some(&self.consts),
        };
        for name in self.input_names() {
            let Some((_, v)) = inputs.iter().find(|(n, _)| *n == name) else {
                return Err(OnnxError::Input(format!("input '{name}' was not given")));
            };
            scope.vals.insert(name, v.clone());
        }
        for (n, _) in inputs {
            if !self.graph.inputs.iter().any(|i| i.name == *n) {
                return Err(OnnxError::Input(format!(
                    "the graph has no input '{n}' (it has: {})",
                    self.input_names().join(", ")
                )));
            }
        }
        self.run_nodes(&self.graph, &mut scope)?;
        self.graph
            .outputs
            .iter()
            .map(|o| {
                scope
                    .get(&o.name)
                    .cloned()
                    .map(|v| (o.name.clone(), v))
                    .ok_or_else(|| {
                        OnnxError::Input(format!("output '{}' was not computed", o.name))
                    })
            })
            .collect()
    }

    /// Runs the nodes of `g` in order, each output into `scope`, held to the type `g`
    /// declares for it.
    fn run_nodes(&self, g: &Graph, scope: &mut Scope) -> Result<()> {
        // the top-level graph's declared types are `self.types`, made once; a subgraph's here
        let top = std::ptr::eq(g, &self.graph);
        let declared: Option<HashMap<&str, i32>> = (!top).then(|| {
            g.inputs
                .iter()
                .chain(&g.outputs)
                .chain(&g.value_info)
                .filter_map(|v| v.elem_type.map(|t| (v.name.as_str(), t)))
                .chain(
                    g.initializers
                        .iter()
                        .map(|t| (t.name.as_str(), t.data_type)),
                )
                .collect()
        });
        // the inference path: the top-level graph, no gradient, nothing traced
        let fused = top
            && !aics_tensor::grad_enabled()
            && !self.trace
            && self.dump.is_none()
            && !self.training.load(std::sync::atomic::Ordering::Relaxed);
        for (k, node) in g.nodes.iter().enumerate() {
            if top && k > 0 {
                for name in &self.frees[k - 1] {
                    scope.vals.remove(name);
                }
            }
            if fused && self.plan.skip.contains(&k) {
                continue;
            }
            let args: Vec<Option<Value>> = node
                .inputs
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        None
                    } else {
                        scope.get(i).cloned()
                    }
                })
                .collect();
            if let (true, Some(fc)) = (fused, self.plan.convs.get(&k)) {
                let residual = fc.residual.as_ref().and_then(|r| scope.get(r)).cloned();
                if fc.residual.is_some() && residual.is_none() {
                    return Err(node_err(node, "the residual to add is not computed"));
                }
                let y = fc.run(node, &args, residual.as_ref())?;
                scope.vals.insert(fc.out.clone(), y);
                continue;
            }
            let types = |name: &str| {
                declared
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .copied()
                    .or_else(|| self.types.get(name).copied())
            };
            let training = self.training.load(std::sync::atomic::Ordering::Relaxed);
            let mut outs = match node.op_type.as_str() {
                "If" | "Loop" | "Scan" => self.control(node, &args, scope)?,
                "BatchNormalization" if training => {
                    crate::module::batch_norm_training(node, &args)?
                }
                op => {
                    // ops computed outside autograd refuse a value that needs a gradient
                    if aics_tensor::grad_enabled()
                        && !crate::module::differentiable(op)
                        && args
                            .iter()
                            .flatten()
                            .any(|v| matches!(v, Value::F(t) if t.requires_grad()))
                    {
                        return Err(node_err(
                            node,
                            "aics computes this op without gradients; it cannot train through it (run it under no_grad)",
                        ));
                    }
                    exec(node, &args, self.opset, &types)?
                }
            };
            for (name, v) in node.outputs.iter().zip(outs.iter_mut()) {
                if let Some(ty) = types(name) {
                    *v = crate::ops::conform(node, v.clone(), ty)?;
                }
            }
            if self.trace {
                for (name, v) in node.outputs.iter().zip(&outs) {
                    eprintln!("{} {name} {:?} {}", node.op_type, v.shape(), summary(v));
                }
            }
            if let Some(dir) = &self.dump {
                for (name, v) in node.outputs.iter().zip(&outs) {
                    dump(dir, name, v);
                }
            }
            for (name, v) in node.outputs.iter().zip(outs) {
                if !name.is_empty() {
                    scope.vals.insert(name.clone(), v);
                }
            }
        }
        Ok(())
    }

    /// Runs subgraph `g` with `inputs` bound to its inputs in order, seeing the values of
    /// `outer`; returns its outputs in order.
    fn run_subgraph(
        &self,
        n: &Node,
        g: &Graph,
        inputs: Vec<Value>,
        outer: &Scope,
    ) -> Result<Vec<Value>> {
        let mut scope = Scope {
            vals: HashMap::new(),
            parent: Some(outer),
            base: None,
        };
        for t in &g.initializers {
            scope.vals.insert(t.name.clone(), value_of(t)?);
        }
        if inputs.len() > g.inputs.len() {
            return Err(node_err(
                n,
                format!(
                    "{} values for a body of {} inputs",
                    inputs.len(),
                    g.inputs.len()
                ),
            ));
        }
        for (vi, v) in g.inputs.iter().zip(inputs) {
            scope.vals.insert(vi.name.clone(), v);
        }
        self.run_nodes(g, &mut scope)?;
        g.outputs
            .iter()
            .map(|o| {
                scope.get(&o.name).cloned().ok_or_else(|| {
                    node_err(
                        n,
                        format!("the body's output '{}' was not computed", o.name),
                    )
                })
            })
            .collect()
    }

    /// If, Loop and Scan: their bodies run as subgraphs.
    fn control(&self, n: &Node, a: &[Option<Value>], scope: &Scope) -> Result<Vec<Value>> {
        let graph = |name: &str| match attr(n, name) {
            Some(AttrValue::Graph(g)) => Ok(g.as_ref()),
            _ => Err(node_err(n, format!("the '{name}' graph is missing"))),
        };
        let truth = |v: &Value| match v {
            Value::I(d, _) => d.first().is_some_and(|&x| x != 0),
            Value::F(t) => t.to_vec().first().is_some_and(|&x| x != 0.0),
        };
        match n.op_type.as_str() {
            "If" => {
                let branch = if truth(input(n, a, 0)?) {
                    "then_branch"
                } else {
                    "else_branch"
                };
                self.run_subgraph(n, graph(branch)?, Vec::new(), scope)
            }
            "Loop" => {
                let body = graph("body")?;
                let trips = match a.first() {
                    Some(Some(v)) => Some(crate::ops::first_int(n, v)?),
                    _ => None,
                };
                let mut cond = match a.get(1) {
                    Some(Some(v)) => truth(v),
                    _ => true,
                };
                let mut carried: Vec<Value> = a[2.min(a.len())..]
                    .iter()
                    .map(|v| {
                        v.clone()
                            .ok_or_else(|| node_err(n, "a loop-carried value is missing"))
                    })
                    .collect::<Result<_>>()?;
                let k = carried.len();
                let mut scans: Vec<Vec<Value>> = Vec::new();
                let mut i = 0i64;
                while cond && trips.is_none_or(|m| i < m) {
                    let mut ins = vec![
                        Value::I(vec![i], vec![]),
                        Value::I(vec![cond as i64], vec![]),
                    ];
                    ins.extend(carried.iter().cloned());
                    let outs = self.run_subgraph(n, body, ins, scope)?;
                    if outs.len() < 1 + k {
                        return Err(node_err(n, "the body returns too few values"));
                    }
                    cond = truth(&outs[0]);
                    carried = outs[1..1 + k].to_vec();
                    let rest = &outs[1 + k..];
                    if scans.is_empty() {
                        scans = vec![Vec::new(); rest.len()];
                    }
                    for (s, v) in scans.iter_mut().zip(rest) {
                        s.push(v.clone());
                    }
                    i += 1;
                    if i > 1 << 31 {
                        return Err(node_err(n, "more than 2³¹ iterations"));
                    }
                }
                let scan_count = n.outputs.len().saturating_sub(k);
                let mut out = carried;
                for j in 0..scan_count {
                    out.push(crate::ops::stack(
                        n,
                        scans.get(j).map(Vec::as_slice).unwrap_or(&[]),
                        0,
                    )?);
                }
                Ok(out)
            }
            _ => self.scan(n, a, scope, graph("body")?),
        }
    }

    fn scan(
        &self,
        n: &Node,
        a: &[Option<Value>],
        scope: &Scope,
        body: &Graph,
    ) -> Result<Vec<Value>> {
        if self.opset >= 9 {
            let args: Vec<Value> = a
                .iter()
                .map(|v| v.clone().ok_or_else(|| node_err(n, "an input is missing")))
                .collect::<Result<_>>()?;
            return self.scan_once(n, args, scope, body);
        }
        // Scan-8: a sequence_lens input first (all full length here), and every input and
        // output with a batch axis first; the body runs on each batch element
        if a.first().is_some_and(|v| v.is_some()) {
            return Err(node_err(n, "Scan-8's sequence_lens is not supported"));
        }
        let args: Vec<Value> = a[1.min(a.len())..]
            .iter()
            .map(|v| v.clone().ok_or_else(|| node_err(n, "an input is missing")))
            .collect::<Result<_>>()?;
        let batch = args
            .first()
            .map_or(0, |v| v.shape().first().copied().unwrap_or(0));
        let mut per: Vec<Vec<Value>> = Vec::new();
        for b in 0..batch {
            let one: Vec<Value> = args
                .iter()
                .map(|v| crate::ops::index_first(n, v, b))
                .collect::<Result<_>>()?;
            let outs = self.scan_once(n, one, scope, body)?;
            if per.is_empty() {
                per = vec![Vec::new(); outs.len()];
            }
            for (p, v) in per.iter_mut().zip(outs) {
                p.push(v);
            }
        }
        per.iter().map(|p| crate::ops::stack(n, p, 0)).collect()
    }

    fn scan_once(
        &self,
        n: &Node,
        args: Vec<Value>,
        scope: &Scope,
        body: &Graph,
    ) -> Result<Vec<Value>> {
        let m = attr_int(n, "num_scan_inputs", 0)?.max(0) as usize;
        if m > args.len() {
            return Err(node_err(
                n,
                format!("{m} scan inputs of {} inputs", args.len()),
            ));
        }
        let k = args.len() - m;
        let list = |name: &str, len: usize| -> Result<Vec<i64>> {
            Ok(attr_ints(n, name)?.unwrap_or_else(|| vec![0; len]))
        };
        let in_axes = list("scan_input_axes", m)?;
        let in_dirs = if self.opset < 9 {
            list("directions", m)?
        } else {
            list("scan_input_directions", m)?
        };
        let scans_in: Vec<Value> = args[k..]
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let ax = axis(n, in_axes.get(j).copied().unwrap_or(0), v.shape().len())?;
                crate::ops::move_axis_first(n, v, ax)
            })
            .collect::<Result<_>>()?;
        let steps = scans_in.first().map_or(0, |v| v.shape()[0]);
        if scans_in.iter().any(|v| v.shape()[0] != steps) {
            return Err(node_err(n, "scan inputs differ in length"));
        }
        let mut state: Vec<Value> = args[..k].to_vec();
        let mut outs: Vec<Vec<Value>> = Vec::new();
        for step in 0..steps {
            let mut ins = state.clone();
            for (j, v) in scans_in.iter().enumerate() {
                let at = if in_dirs.get(j).copied().unwrap_or(0) != 0 {
                    steps - 1 - step
                } else {
                    step
                };
                ins.push(crate::ops::index_first(n, v, at)?);
            }
            let res = self.run_subgraph(n, body, ins, scope)?;
            if res.len() < k {
                return Err(node_err(n, "the body returns too few values"));
            }
            state = res[..k].to_vec();
            if outs.is_empty() {
                outs = vec![Vec::new(); res.len() - k];
            }
            for (o, v) in outs.iter_mut().zip(&res[k..]) {
                o.push(v.clone());
            }
        }
        let count = n.outputs.len().saturating_sub(k);
        let out_axes = list("scan_output_axes", count)?;
        let out_dirs = list("scan_output_directions", count)?;
        let mut result = state;
        for j in 0..count {
            let mut parts = outs.get(j).cloned().unwrap_or_default();
            if out_dirs.get(j).copied().unwrap_or(0) != 0 {
                parts.reverse();
            }
            let stacked = crate::ops::stack(n, &parts, 0)?;
            let rank = stacked.shape().len();
            let ax = axis(n, out_axes.get(j).copied().unwrap_or(0), rank)?;
            result.push(crate::ops::move_first_to(n, &stacked, ax)?);
        }
        Ok(result)
    }
}

/// The values visible where a graph runs: its own, then its enclosing graphs', then the
/// model's initializers.
struct Scope<'a> {
    vals: HashMap<String, Value>,
    parent: Option<&'a Scope<'a>>,
    base: Option<&'a HashMap<String, Value>>,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.vals
            .get(name)
            .or_else(|| self.parent.and_then(|p| p.get(name)))
            .or_else(|| self.base.and_then(|b| b.get(name)))
    }
}

/// Saves `v` as DIR/NAME.npy (a debugging aid: a file that cannot be written is reported on
/// stderr and skipped).
fn dump(dir: &std::path::Path, name: &str, v: &Value) {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let shape = v.shape();
    let data: Vec<f32> = match v {
        Value::F(t) => t.to_vec(),
        Value::I(d, _) => d.iter().map(|&x| x as f32).collect(),
    };
    let path = dir.join(format!("{safe}.npy"));
    if let Err(e) = std::fs::write(&path, aics_io::npz::npy_bytes(&shape, &data)) {
        eprintln!("AICS_ONNX_DUMP: {}: {e}", path.display());
    }
}

/// The first few values of a value, for the trace.
fn summary(v: &Value) -> String {
    match v {
        Value::F(t) => {
            let d = t.to_vec();
            format!("{:?}", &d[..d.len().min(4)])
        }
        Value::I(d, _) => format!("{:?}", &d[..d.len().min(4)]),
    }
}

// ---- attributes -------------------------------------------------------------------------

pub(crate) fn attr<'a>(n: &'a Node, name: &str) -> Option<&'a AttrValue> {
    n.attributes
        .iter()
        .find(|a| a.name == name)
        .map(|a| &a.value)
}

pub(crate) fn attr_int(n: &Node, name: &str, default: i64) -> Result<i64> {
    match attr(n, name) {
        None => Ok(default),
        Some(AttrValue::Int(i)) => Ok(*i),
        Some(other) => Err(node_err(
            n,
            format!("attribute '{name}' should be an int, is {other:?}"),
        )),
    }
}

pub(crate) fn attr_float(n: &Node, name: &str, default: f32) -> Result<f32> {
    match attr(n, name) {
        None => Ok(default),
        Some(AttrValue::Float(f)) => Ok(*f),
        Some(other) => Err(node_err(
            n,
            format!("attribute '{name}' should be a float, is {other:?}"),
        )),
    }
}

pub(crate) fn attr_ints(n: &Node, name: &str) -> Result<Option<Vec<i64>>> {
    match attr(n, name) {
        None => Ok(None),
        Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
        Some(other) => Err(node_err(
            n,
            format!("attribute '{name}' should be ints, is {other:?}"),
        )),
    }
}

pub(crate) fn attr_str(n: &Node, name: &str, default: &str) -> Result<String> {
    match attr(n, name) {
        None => Ok(default.to_string()),
        Some(AttrValue::String(s)) => Ok(String::from_utf8_lossy(s).into_owned()),
        Some(other) => Err(node_err(
            n,
            format!("attribute '{name}' should be a string, is {other:?}"),
        )),
    }
}

// ---- inputs -----------------------------------------------------------------------------

pub(crate) fn input<'a>(n: &Node, args: &'a [Option<Value>], i: usize) -> Result<&'a Value> {
    args.get(i)
        .and_then(|a| a.as_ref())
        .ok_or_else(|| node_err(n, format!("input {i} is missing")))
}

fn float<'a>(n: &Node, args: &'a [Option<Value>], i: usize) -> Result<&'a Tensor<f32>> {
    match input(n, args, i)? {
        Value::F(t) => Ok(t),
        Value::I(..) => Err(node_err(
            n,
            format!("input {i} is an integer tensor; a float one is needed"),
        )),
    }
}

/// Input `i` as f32, converting an integer tensor.
fn as_float(n: &Node, args: &[Option<Value>], i: usize) -> Result<Tensor<f32>> {
    match input(n, args, i)? {
        Value::F(t) => Ok(t.clone()),
        Value::I(v, s) => t(
            n,
            Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), s),
        ),
    }
}

pub(crate) fn ints<'a>(n: &Node, args: &'a [Option<Value>], i: usize) -> Result<&'a [i64]> {
    match input(n, args, i)? {
        Value::I(v, _) => Ok(v),
        Value::F(_) => Err(node_err(
            n,
            format!("input {i} should be an integer tensor"),
        )),
    }
}

pub(crate) fn t<T>(n: &Node, r: aics_tensor::Result<T>) -> Result<T> {
    r.map_err(|e| node_err(n, e.to_string()))
}

/// A possibly negative axis of a rank-`rank` tensor.
pub(crate) fn axis(n: &Node, a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(node_err(
            n,
            format!("axis {a} out of range for rank {rank}"),
        ));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

// ---- ops --------------------------------------------------------------------------------

/// The ops [`exec`] runs, all in the default domain.
pub const OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Exp",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "Identity",
    "If",
    "LRN",
    "Loop",
    "LeakyRelu",
    "Log",
    "MatMul",
    "Max",
    "MaxPool",
    "MaxRoiPool",
    "Min",
    "Mul",
    "Neg",
    "Relu",
    "Reshape",
    "Scan",
    "Shape",
    "Sigmoid",
    "Softmax",
    "Sqrt",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
];

/// Why aics cannot run this use of a supported op, if it cannot: variants the kernels do not
/// cover, found from the node alone before anything runs.
/// `rank_of` gives the rank the graph declares for a value, where it does.
pub fn unsupported_variant(
    n: &Node,
    rank_of: &dyn Fn(&str) -> Option<usize>,
) -> Option<&'static str> {
    let ints = |name: &str| match attr(n, name) {
        Some(AttrValue::Ints(v)) => Some(v.clone()),
        _ => None,
    };
    let int = |name: &str| match attr(n, name) {
        Some(AttrValue::Int(v)) => *v,
        _ => 0,
    };
    let given = |i: usize| n.inputs.get(i).is_some_and(|s| !s.is_empty());
    match n.op_type.as_str() {
        "MaxPool" | "AveragePool" | "Conv" | "ConvTranspose" => {
            let k = ints("kernel_shape").map_or(0, |k| k.len());
            let rank = n.inputs.first().and_then(|x| rank_of(x)).unwrap_or(0);
            if k > 2 || rank > 4 {
                return Some("3-D windows");
            }
            if n.op_type == "MaxPool" && n.outputs.get(1).is_some_and(|s| !s.is_empty()) {
                return Some("the Indices output");
            }
            if n.op_type == "AveragePool"
                && ints("dilations").is_some_and(|d| d.iter().any(|&x| x != 1))
            {
                return Some("dilated average pooling");
            }
            None
        }
        "BatchNormalization" if int("training_mode") != 0 || n.outputs.len() > 1 => {
            Some("training mode")
        }
        "Dropout" if given(2) => Some("training mode (random masks)"),
        _ => None,
    }
}

fn exec(
    n: &Node,
    a: &[Option<Value>],
    opset: i64,
    types: &dyn Fn(&str) -> Option<i32>,
) -> Result<Vec<Value>> {
    let f = |x: Tensor<f32>| Ok(vec![Value::F(x)]);
    let any_int = a.iter().any(|v| matches!(v, Some(Value::I(..))));
    let all_int = a.iter().flatten().all(|v| matches!(v, Value::I(..)));
    match n.op_type.as_str() {
        "Abs" | "Neg" if any_int => crate::ops::exec(n, a, opset, types),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" if all_int => {
            crate::ops::exec(n, a, opset, types)
        }
        "Identity" => Ok(vec![input(n, a, 0)?.clone()]),
        "Dropout" => {
            // inference: the input passes unchanged and the mask keeps everything
            let x = input(n, a, 0)?.clone();
            let shape = x.shape();
            let numel = shape.iter().product();
            Ok(vec![x, Value::I(vec![1; numel], shape)])
        }
        "Relu" => f(float(n, a, 0)?.relu()),
        "Sigmoid" => f(float(n, a, 0)?.sigmoid()),
        "Tanh" => f(float(n, a, 0)?.tanh()),
        "Exp" => f(float(n, a, 0)?.exp()),
        "Log" => f(float(n, a, 0)?.log()),
        "Sqrt" => f(float(n, a, 0)?.sqrt()),
        "Neg" => f(float(n, a, 0)?.neg()),
        "Abs" => f(float(n, a, 0)?.abs()),
        "LeakyRelu" => f(float(n, a, 0)?.leaky_relu(attr_float(n, "alpha", 0.01)? as f64)),
        "HardSigmoid" => {
            let (al, be) = (attr_float(n, "alpha", 0.2)?, attr_float(n, "beta", 0.5)?);
            f(float(n, a, 0)?
                .mul_scalar(al as f64)
                .add_scalar(be as f64)
                .clamp(0.0, 1.0))
        }
        "Clip" if matches!(input(n, a, 0)?, Value::I(..)) => {
            let Value::I(v, shape) = input(n, a, 0)? else {
                unreachable!("matched above")
            };
            let bound = |i: usize, d: i64| -> Result<i64> {
                match a.get(i).and_then(|v| v.as_ref()) {
                    None => Ok(d),
                    Some(Value::I(b, _)) => Ok(b.first().copied().unwrap_or(d)),
                    Some(Value::F(_)) => Err(node_err(n, "a float bound for an integer tensor")),
                }
            };
            let (lo, hi) = (bound(1, i64::MIN)?, bound(2, i64::MAX)?);
            let y = v.iter().map(|&x| x.max(lo).min(hi)).collect();
            Ok(vec![Value::I(y, shape.clone())])
        }
        "Clip" => {
            let x = float(n, a, 0)?;
            let (lo, hi) = if opset < 11 {
                (
                    attr_float(n, "min", f32::MIN)?,
                    attr_float(n, "max", f32::MAX)?,
                )
            } else {
                let bound = |i: usize, d: f32| -> Result<f32> {
                    match a.get(i).and_then(|v| v.as_ref()) {
                        None => Ok(d),
                        Some(Value::F(t)) => Ok(t.to_vec().first().copied().unwrap_or(d)),
                        Some(Value::I(v, _)) => Ok(v.first().map_or(d, |&x| x as f32)),
                    }
                };
                (bound(1, f32::MIN)?, bound(2, f32::MAX)?)
            };
            f(x.clamp(lo as f64, hi as f64))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" => {
            let mut acc = as_float(n, a, 0)?;
            for i in 1..a.len() {
                let y = as_float(n, a, i)?;
                acc = t(
                    n,
                    match n.op_type.as_str() {
                        "Add" | "Sum" => acc.add(&y),
                        "Sub" => acc.sub(&y),
                        "Mul" => acc.mul(&y),
                        "Div" => acc.div(&y),
                        "Max" => acc.maximum(&y),
                        _ => acc.minimum(&y),
                    },
                )?;
            }
            f(acc)
        }
        "MatMul" => f(matmul(n, float(n, a, 0)?, float(n, a, 1)?)?),
        "Gemm" => {
            let (ta, tb) = (
                attr_int(n, "transA", 0)? != 0,
                attr_int(n, "transB", 0)? != 0,
            );
            let (al, be) = (attr_float(n, "alpha", 1.0)?, attr_float(n, "beta", 1.0)?);
            let mut x = float(n, a, 0)?.clone();
            let w = float(n, a, 1)?;
            if ta {
                x = t(n, x.transpose(0, 1))?;
            }
            // B transposed (a fully connected layer's weight) is read in place by `linear`,
            // not copied transposed each run
            let mut y = if tb {
                t(n, x.linear(w, None))?
            } else {
                t(n, x.matmul(w))?
            };
            if al != 1.0 {
                y = y.mul_scalar(al as f64);
            }
            if let Some(Some(_)) = a.get(2) {
                let mut c = as_float(n, a, 2)?;
                if be != 1.0 {
                    c = c.mul_scalar(be as f64);
                }
                y = t(n, y.add(&c))?;
            }
            f(y)
        }
        "Conv" => conv(n, a),
        "ConvTranspose" => conv_transpose(n, a),
        "MaxPool" | "AveragePool" => pool(n, a),
        "MaxRoiPool" => {
            // Caffe's ROI pooling, as torchvision's roi_pool: regions (K, 5) rows of
            // (batch index, x1, y1, x2, y2)
            let x = float(n, a, 0)?;
            let rois = float(n, a, 1)?;
            let shape = attr_ints(n, "pooled_shape")?
                .ok_or_else(|| node_err(n, "the pooled_shape attribute is required"))?;
            let &[ph, pw] = shape.as_slice() else {
                return Err(node_err(
                    n,
                    format!("pooled_shape {shape:?}: two sizes are needed"),
                ));
            };
            if ph < 1 || pw < 1 {
                return Err(node_err(
                    n,
                    format!("pooled_shape {shape:?}: sizes must be positive"),
                ));
            }
            let scale = attr_float(n, "spatial_scale", 1.0)? as f64;
            f(t(n, x.roi_pool(rois, (ph as usize, pw as usize), scale))?)
        }
        "GlobalAveragePool" => f(t(n, float(n, a, 0)?.mean_dims(&[2, 3], true))?),
        "GlobalMaxPool" => {
            let x = float(n, a, 0)?;
            let s = x.shape().to_vec();
            let flat = t(n, x.reshape(&[s[0], s[1], s[2..].iter().product()]))?;
            let (m, _) = t(n, flat.max_dim(2, true))?;
            let mut shape = s[..2].to_vec();
            shape.extend(std::iter::repeat_n(1, s.len() - 2));
            f(t(n, m.reshape(&shape))?)
        }
        "BatchNormalization" => {
            let eps = attr_float(n, "epsilon", 1e-5)?;
            let x = float(n, a, 0)?;
            let y = x.batch_norm(
                Some(float(n, a, 1)?),
                Some(float(n, a, 2)?),
                Some(float(n, a, 3)?),
                Some(float(n, a, 4)?),
                false,
                0.1,
                eps as f64,
            );
            f(t(n, y)?)
        }
        "LRN" => {
            let size = attr_int(n, "size", 0)?;
            if size <= 0 {
                return Err(node_err(n, "attribute 'size' is required and positive"));
            }
            let y = float(n, a, 0)?.lrn(
                size as usize,
                attr_float(n, "alpha", 1e-4)? as f64,
                attr_float(n, "beta", 0.75)? as f64,
                attr_float(n, "bias", 1.0)? as f64,
            );
            f(t(n, y)?)
        }
        "Softmax" => {
            let x = float(n, a, 0)?;
            let rank = x.rank();
            if opset < 13 {
                // the input coerced to 2-D at `axis`, softmax over the second dimension
                let ax = axis(n, attr_int(n, "axis", 1)?, rank)?;
                let s = x.shape().to_vec();
                let rows: usize = s[..ax].iter().product();
                let cols: usize = s[ax..].iter().product();
                let y = t(n, t(n, x.reshape(&[rows, cols]))?.softmax(1))?;
                f(t(n, y.reshape(&s))?)
            } else {
                let ax = axis(n, attr_int(n, "axis", -1)?, rank)?;
                f(t(n, x.softmax(ax as isize))?)
            }
        }
        "Flatten" => {
            let v = input(n, a, 0)?;
            let s = v.shape();
            let at = attr_int(n, "axis", 1)?;
            let ax = if at == s.len() as i64 {
                s.len()
            } else {
                axis(n, at, s.len())?
            };
            let shape = [s[..ax].iter().product(), s[ax..].iter().product()];
            reshape_value(n, v, &shape)
        }
        "Reshape" => {
            let v = input(n, a, 0)?;
            let target = if opset < 5 {
                attr_ints(n, "shape")?
                    .ok_or_else(|| node_err(n, "attribute 'shape' is required"))?
            } else {
                ints(n, a, 1)?.to_vec()
            };
            let allowzero = attr_int(n, "allowzero", 0)? != 0;
            let shape = resolve_shape(n, &v.shape(), &target, allowzero)?;
            reshape_value(n, v, &shape)
        }
        "Transpose" => {
            let x = input(n, a, 0)?;
            let rank = x.shape().len();
            let perm: Vec<usize> = match attr_ints(n, "perm")? {
                Some(p) => p.iter().map(|&d| axis(n, d, rank)).collect::<Result<_>>()?,
                None => (0..rank).rev().collect(),
            };
            match x {
                Value::F(x) => f(t(n, x.permute(&perm))?),
                Value::I(..) => Ok(vec![crate::ops::permute(n, x, &perm)?]),
            }
        }
        "Concat" => {
            let first = input(n, a, 0)?;
            let rank = first.shape().len();
            let ax = axis(n, attr_int(n, "axis", 0)?, rank)?;
            if let Value::I(..) = first {
                // shape arithmetic: 1-D integer vectors
                let mut out = Vec::new();
                for i in 0..a.len() {
                    out.extend_from_slice(ints(n, a, i)?);
                }
                let len = out.len();
                return Ok(vec![Value::I(out, vec![len])]);
            }
            let parts: Vec<Tensor<f32>> = (0..a.len())
                .map(|i| as_float(n, a, i))
                .collect::<Result<_>>()?;
            let refs: Vec<&Tensor<f32>> = parts.iter().collect();
            f(t(n, Tensor::concat(&refs, ax as isize))?)
        }
        "Shape" => {
            let s: Vec<i64> = input(n, a, 0)?.shape().iter().map(|&d| d as i64).collect();
            // opset 15: the dims start..end, negative counting from the end, clamped
            let r = s.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clampi(attr_int(n, "start", 0)?);
            let end = clampi(attr_int(n, "end", r)?);
            let s = s[start..end.max(start)].to_vec();
            let len = s.len();
            Ok(vec![Value::I(s, vec![len])])
        }
        "Constant" => {
            let v = if let Some(AttrValue::Tensor(tp)) = attr(n, "value") {
                value_of(tp)?
            } else if let Some(AttrValue::Float(x)) = attr(n, "value_float") {
                Value::F(Tensor::scalar(*x))
            } else if let Some(AttrValue::Floats(x)) = attr(n, "value_floats") {
                Value::F(t(n, Tensor::from_vec(x.clone(), &[x.len()]))?)
            } else if let Some(AttrValue::Int(x)) = attr(n, "value_int") {
                Value::I(vec![*x], vec![])
            } else if let Some(AttrValue::Ints(x)) = attr(n, "value_ints") {
                Value::I(x.clone(), vec![x.len()])
            } else {
                return Err(node_err(n, "no value attribute aics reads"));
            };
            Ok(vec![v])
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = ints(n, a, 0)?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| node_err(n, format!("negative size {d}"))))
                .collect::<Result<_>>()?;
            let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let Some(numel) = numel.filter(|&m| m <= 1 << 31) else {
                return Err(node_err(n, format!("shape {shape:?} is too large")));
            };
            let fill = match attr(n, "value") {
                Some(AttrValue::Tensor(tp)) => value_of(tp)?,
                _ => Value::F(Tensor::scalar(0.0)),
            };
            Ok(vec![match fill {
                Value::F(x) => Value::F(Tensor::full(
                    &shape,
                    x.to_vec().first().copied().unwrap_or(0.0),
                )),
                Value::I(v, _) => Value::I(vec![v.first().copied().unwrap_or(0); numel], shape),
            }])
        }
        "Unsqueeze" | "Squeeze" => {
            let v = input(n, a, 0)?;
            let s = v.shape();
            let axes = if opset < 13 {
                attr_ints(n, "axes")?
            } else {
                a.get(1)
                    .and_then(|x| x.as_ref())
                    .map(|_| ints(n, a, 1).map(|x| x.to_vec()))
                    .transpose()?
            };
            let shape = if n.op_type == "Unsqueeze" {
                let axes = axes.ok_or_else(|| node_err(n, "axes are required"))?;
                let rank = s.len() + axes.len();
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&x| axis(n, x, rank))
                    .collect::<Result<_>>()?;
                ax.sort_unstable();
                let mut out = s.clone();
                for &d in &ax {
                    out.insert(d, 1);
                }
                out
            } else {
                let ax: Vec<usize> = match axes {
                    Some(axes) => axes
                        .iter()
                        .map(|&x| axis(n, x, s.len()))
                        .collect::<Result<_>>()?,
                    None => (0..s.len()).filter(|&d| s[d] == 1).collect(),
                };
                if let Some(&d) = ax.iter().find(|&&d| s[d] != 1) {
                    return Err(node_err(n, format!("axis {d} has size {}, not 1", s[d])));
                }
                s.iter()
                    .enumerate()
                    .filter(|(d, _)| !ax.contains(d))
                    .map(|(_, &x)| x)
                    .collect()
            };
            reshape_value(n, v, &shape)
        }
        _ => crate::ops::exec(n, a, opset, types),
    }
}

/// numpy's matmul: 1-D operands promoted (and the added dimension removed), the batch
/// dimensions broadcast, as one batched product of 3-D operands.
fn matmul(n: &Node, x: &Tensor<f32>, y: &Tensor<f32>) -> Result<Tensor<f32>> {
    let (xs, ys) = (x.shape().to_vec(), y.shape().to_vec());
    if xs.is_empty() || ys.is_empty() {
        return Err(node_err(n, "MatMul of a scalar"));
    }
    let x2 = if xs.len() == 1 {
        vec![1, xs[0]]
    } else {
        xs.clone()
    };
    let y2 = if ys.len() == 1 {
        vec![ys[0], 1]
    } else {
        ys.clone()
    };
    let (m, k) = (x2[x2.len() - 2], x2[x2.len() - 1]);
    let (k2, nn) = (y2[y2.len() - 2], y2[y2.len() - 1]);
    if k != k2 {
        return Err(node_err(n, format!("cannot multiply {xs:?} by {ys:?}")));
    }
    let (xb, yb) = (&x2[..x2.len() - 2], &y2[..y2.len() - 2]);
    let batch = t(n, aics_tensor::shape::broadcast_shape(xb, yb, "MatMul"))?;
    let b: usize = batch.iter().product();
    // each operand broadcast to the common batch (adding zeros of the target shape), then 3-D
    let widen = |v: &Tensor<f32>, s2: &[usize], rows: usize, cols: usize| -> Result<Tensor<f32>> {
        let v = t(n, v.reshape(s2))?;
        let mut full = batch.clone();
        full.extend([rows, cols]);
        let v = if v.shape() == full.as_slice() {
            v
        } else {
            t(n, v.add(&Tensor::zeros(&full)))?
        };
        t(n, v.reshape(&[b, rows, cols]))
    };
    let p = t(n, widen(x, &x2, m, k)?.matmul(&widen(y, &y2, k, nn)?))?;
    let mut out = batch.clone();
    if xs.len() > 1 {
        out.push(m);
    }
    if ys.len() > 1 {
        out.push(nn);
    }
    t(n, p.reshape(&out))
}

fn reshape_value(n: &Node, v: &Value, shape: &[usize]) -> Result<Vec<Value>> {
    Ok(vec![match v {
        Value::F(x) => Value::F(t(n, x.reshape(shape))?),
        Value::I(d, s) => {
            if shape.iter().product::<usize>() != s.iter().product::<usize>() {
                return Err(node_err(n, format!("cannot reshape {s:?} to {shape:?}")));
            }
            Value::I(d.clone(), shape.to_vec())
        }
    }])
}

/// ONNX's Reshape target: 0 copies the input's size (unless `allowzero`), -1 is inferred.
fn resolve_shape(n: &Node, from: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total: usize = from.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*from.get(i).ok_or_else(|| {
                node_err(n, format!("0 at {i} copies a dimension the input lacks"))
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => {
                return Err(node_err(
                    n,
                    format!("shape {target:?} is not a valid target"),
                ))
            }
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(node_err(
                n,
                format!("cannot reshape {from:?} to {target:?}"),
            ));
        }
        out[i] = total / rest;
    }
    if out.iter().product::<usize>() != total {
        return Err(node_err(
            n,
            format!("cannot reshape {from:?} ({total} elements) to {target:?}"),
        ));
    }
    Ok(out)
}

/// The (begin, end) padding of each spatial dimension, from `pads` or `auto_pad`.
fn spatial_pads(
    n: &Node,
    x: &[usize],
    k: &[usize],
    s: &[usize],
    d: &[usize],
) -> Result<Vec<(usize, usize)>> {
    let sp = k.len();
    let auto = attr_str(n, "auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => {
            let p = attr_ints(n, "pads")?.unwrap_or_else(|| vec![0; 2 * sp]);
            if p.len() != 2 * sp || p.iter().any(|&v| v < 0) {
                return Err(node_err(
                    n,
                    format!("pads {p:?} for {sp} spatial dimensions"),
                ));
            }
            Ok((0..sp)
                .map(|i| (p[i] as usize, p[i + sp] as usize))
                .collect())
        }
        "VALID" => Ok(vec![(0, 0); sp]),
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..sp)
            .map(|i| {
                let inp = x[2 + i];
                let out = inp.div_ceil(s[i]);
                let ek = (k[i] - 1) * d[i] + 1;
                let total = ((out - 1) * s[i] + ek).saturating_sub(inp);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(node_err(n, format!("auto_pad '{other}'"))),
    }
}

fn pair(n: &Node, v: Option<Vec<i64>>, default: usize, what: &str) -> Result<Vec<usize>> {
    let v = v.unwrap_or_else(|| vec![default as i64; 2]);
    if v.len() != 2 || v.iter().any(|&x| x < 1) {
        return Err(node_err(
            n,
            format!("{what} {v:?}: aics runs 2-D windows with positive sizes"),
        ));
    }
    Ok(v.iter().map(|&x| x as usize).collect())
}

/// A convolution's input and weight as 2-D ones (1-D ones get a height of 1), and whether they
/// were 1-D; an error for other ranks.
fn conv_operands(
    n: &Node,
    a: &[Option<Value>],
    what: &str,
) -> Result<(Tensor<f32>, Tensor<f32>, bool)> {
    let (x, w) = (float(n, a, 0)?, float(n, a, 1)?);
    let one_d = x.rank() == 3 && w.rank() == 3;
    let (x, w) = if one_d {
        (t(n, x.unsqueeze(2))?, t(n, w.unsqueeze(2))?)
    } else {
        (x.clone(), w.clone())
    };
    if x.rank() != 4 || w.rank() != 4 {
        return Err(node_err(
            n,
            format!(
                "input {:?} and weight {:?}: aics runs 1-D and 2-D {what}",
                x.shape(),
                w.shape()
            ),
        ));
    }
    Ok((x, w, one_d))
}

fn conv(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    // 1-D convolutions run as 2-D ones of height 1
    let (x, w, one_d) = conv_operands(n, a, "convolutions")?;
    let k = [w.shape()[2], w.shape()[3]];
    let s = window(n, "strides", 1, one_d)?;
    let d = window(n, "dilations", 1, one_d)?;
    let pads = if one_d {
        let sh = x.shape();
        let mut p = spatial_pads(n, &[sh[0], sh[1], sh[3]], &k[1..], &s[1..], &d[1..])?;
        p.insert(0, (0, 0));
        p
    } else {
        spatial_pads(n, x.shape(), &k, &s, &d)?
    };
    let mut p = ConvParams {
        stride: (s[0], s[1]),
        dilation: (d[0], d[1]),
        groups: attr_int(n, "group", 1)?.max(1) as usize,
        ..Default::default()
    };
    let x = if pads[0].0 == pads[0].1 && pads[1].0 == pads[1].1 {
        p.padding = (pads[0].0, pads[1].0);
        x.clone()
    } else {
        t(n, x.pad(&[(0, 0), (0, 0), pads[0], pads[1]], 0.0))?
    };
    let b = match a.get(2) {
        Some(Some(_)) => Some(float(n, a, 2)?.clone()),
        _ => None,
    };
    let y = t(n, x.conv2d(&w, b.as_ref(), p))?;
    Ok(vec![Value::F(if one_d { t(n, y.squeeze(2))? } else { y })])
}

/// ConvTranspose: aics's transposed convolution with no padding, then ONNX's padding (from
/// `pads`, `auto_pad` or `output_shape`) cropped from, and `output_padding` added to, each
/// side of the full output.
fn conv_transpose(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w, one_d) = conv_operands(n, a, "transposed convolutions")?;
    let s = window(n, "strides", 1, one_d)?;
    let d = window(n, "dilations", 1, one_d)?;
    let grow = |name: &str| -> Result<Vec<i64>> {
        Ok(match attr_ints(n, name)? {
            Some(v) if one_d => [vec![0], v].concat(),
            Some(v) => v,
            None => vec![0, 0],
        })
    };
    let out_pad = grow("output_padding")?;
    let groups = attr_int(n, "group", 1)?.max(1) as usize;
    let p = ConvParams {
        stride: (s[0], s[1]),
        dilation: (d[0], d[1]),
        groups,
        ..Default::default()
    };
    let full = t(n, x.conv_transpose2d(&w, None, p))?;
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    // the padding (begin, end) of each spatial dimension
    let auto = attr_str(n, "auto_pad", "NOTSET")?;
    let out_shape = match attr_ints(n, "output_shape")? {
        Some(v) if one_d => Some([vec![1], v].concat()),
        other => other,
    };
    let mut pads = Vec::new();
    for i in 0..2 {
        let (inp, k) = (xs[2 + i] as i64, ws[2 + i] as i64);
        let (st, di) = (s[i] as i64, d[i] as i64);
        let natural = st * (inp - 1) + out_pad.get(i).copied().unwrap_or(0) + (k - 1) * di + 1;
        let target = out_shape
            .as_ref()
            .map(|o| *o.get(o.len().wrapping_sub(2 - i)).unwrap_or(&0));
        let same = matches!(auto.as_str(), "SAME_UPPER" | "SAME_LOWER");
        pads.push(match target {
            _ if same => {
                let total = natural - target.unwrap_or(inp * st);
                let half = total.div_euclid(2);
                if auto == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                }
            }
            // an explicit output shape without padding: the full output, cut or extended at
            // the end
            Some(o) if attr_ints(n, "pads")?.is_none() => (0, natural - o),
            _ => {
                let p = grow("pads")?;
                if p.len() == 4 {
                    (p[i], p[i + 2])
                } else if p == [0, 0] {
                    (0, 0)
                } else {
                    return Err(node_err(n, format!("pads {p:?}")));
                }
            }
        });
    }
    // output_padding: zeros after the full output; then the padding cropped (or, negative,
    // added)
    let mut y = full;
    let extra: Vec<(usize, usize)> = (0..2)
        .map(|i| (0, out_pad.get(i).copied().unwrap_or(0).max(0) as usize))
        .collect();
    y = t(n, y.pad(&[(0, 0), (0, 0), extra[0], extra[1]], 0.0))?;
    for (i, &(b, e)) in pads.iter().enumerate() {
        let dim = 2 + i;
        let grow_b = (-b).max(0) as usize;
        let grow_e = (-e).max(0) as usize;
        if grow_b + grow_e > 0 {
            let mut pp = vec![(0, 0); 4];
            pp[dim] = (grow_b, grow_e);
            y = t(n, y.pad(&pp, 0.0))?;
        }
        let len = y.shape()[dim] as i64 - b.max(0) - e.max(0);
        if len < 1 {
            return Err(node_err(n, format!("padding {pads:?} leaves no output")));
        }
        y = t(n, y.narrow(dim as isize, b.max(0) as usize, len as usize))?;
    }
    if let Some(Some(_)) = a.get(2) {
        let b = float(n, a, 2)?;
        let c = b.numel();
        y = t(n, y.add(&t(n, b.reshape(&[1, c, 1, 1]))?))?;
    }
    if one_d {
        y = t(n, y.squeeze(2))?;
    }
    Ok(vec![Value::F(y)])
}

fn pool(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    if n.outputs.len() > 1 && !n.outputs[1].is_empty() {
        return Err(node_err(n, "the Indices output is not supported"));
    }
    let v = input(n, a, 0)?;
    let shape = v.shape();
    // integer images (uint8) pool as floats, exactly
    let x = as_float(n, a, 0)?;
    // 1-D windows run as 2-D ones of height 1
    let one_d = shape.len() == 3;
    let x = if one_d { t(n, x.unsqueeze(2))? } else { x };
    if x.rank() != 4 {
        return Err(node_err(
            n,
            format!("input {shape:?}: aics runs 1-D and 2-D pooling"),
        ));
    }
    let mut y = pool2d(n, &x, one_d)?;
    if one_d {
        y = t(n, y.squeeze(2))?;
    }
    Ok(vec![match v {
        Value::F(_) => Value::F(y),
        Value::I(..) => {
            let s = y.shape().to_vec();
            Value::I(y.to_vec().iter().map(|&f| f.round() as i64).collect(), s)
        }
    }])
}

/// A window attribute; a 1-D window's as the 2-D one of a window of height 1.
fn window(n: &Node, name: &str, default: usize, one_d: bool) -> Result<Vec<usize>> {
    let v = attr_ints(n, name)?.map(|v| {
        if one_d {
            let mut w = vec![1];
            w.extend(v);
            w
        } else {
            v
        }
    });
    pair(n, v, default, name)
}

fn pool2d(n: &Node, x: &Tensor<f32>, one_d: bool) -> Result<Tensor<f32>> {
    let k = window(n, "kernel_shape", 0, one_d)?;
    let s = window(n, "strides", 1, one_d)?;
    let d = window(n, "dilations", 1, one_d)?;
    let pads = if one_d {
        let sh = x.shape();
        let mut p = spatial_pads(n, &[sh[0], sh[1], sh[3]], &k[1..], &s[1..], &d[1..])?;
        p.insert(0, (0, 0));
        p
    } else {
        spatial_pads(n, x.shape(), &k, &s, &d)?
    };
    let ceil = attr_int(n, "ceil_mode", 0)? != 0;
    let max = n.op_type == "MaxPool";
    let include = attr_int(n, "count_include_pad", 0)? != 0;
    let symmetric = pads[0].0 == pads[0].1 && pads[1].0 == pads[1].1;
    // PyTorch-style pooling takes symmetric padding up to half the window
    let fits = symmetric && pads[0].0 <= k[0] / 2 && pads[1].0 <= k[1] / 2;
    let mut pp = PoolParams::new(1);
    pp.kernel = (k[0], k[1]);
    pp.stride = (s[0], s[1]);
    pp.dilation = (d[0], d[1]);
    pp.ceil_mode = ceil;
    if fits {
        pp.padding = (pads[0].0, pads[1].0);
        return t(
            n,
            if max {
                x.max_pool2d(pp)
            } else {
                x.avg_pool2d(pp, include)
            },
        );
    }
    let fill = if max { f64::NEG_INFINITY } else { 0.0 };
    let padded = t(n, x.pad(&[(0, 0), (0, 0), pads[0], pads[1]], fill))?;
    if max {
        return t(n, padded.max_pool2d(pp));
    }
    let mean = t(n, padded.avg_pool2d(pp, true))?;
    if include {
        return Ok(mean);
    }
    // the padded zeros not counted: divide by the share of real pixels in each window
    let ones = Tensor::ones(&[1, 1, x.shape()[2], x.shape()[3]]);
    let mask = t(n, ones.pad(&[(0, 0), (0, 0), pads[0], pads[1]], 0.0))?;
    let share = t(n, mask.avg_pool2d(pp, true))?;
    t(n, mean.div(&share))
}
