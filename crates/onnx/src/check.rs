//! What a model needs, found before anything runs: its inputs and outputs, opsets, the ops it
//! uses and which of them aics cannot run, and structural faults (a value used before any node
//! makes it, as in a cycle; a value made twice; an output nobody makes).

use std::collections::{BTreeMap, HashSet};

use crate::proto::{dtype, AttrValue, Dim, Graph, Model, ValueInfo};

/// An op's name as messages give it: `Conv`, or `com.example.Custom` outside the default
/// domain.
pub fn op_name(domain: &str, op_type: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" {
        op_type.to_string()
    } else {
        format!("{domain}.{op_type}")
    }
}

/// Whether aics runs `op_type` of `domain` ([`crate::run::OPS`], all in the default domain,
/// "" or "ai.onnx").
pub fn supported(domain: &str, op_type: &str) -> bool {
    (domain.is_empty() || domain == "ai.onnx")
        && (crate::run::OPS.contains(&op_type) || crate::ops::OPS.contains(&op_type))
}

/// The findings of [`check`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Graph inputs that are not initializers: what a caller feeds.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub opsets: Vec<(String, i64)>,
    pub nodes: usize,
    /// Initializers and their elements in all.
    pub initializers: usize,
    pub parameters: u64,
    /// (domain, op type) → count, subgraphs included.
    pub ops: BTreeMap<(String, String), usize>,
    /// The ops in `ops` that aics does not run, then the uses of supported ops it does not run
    /// ("MaxPool (the Indices output)").
    pub unsupported: Vec<(String, String)>,
    /// Structural faults, each naming the node and value.
    pub problems: Vec<String>,
}

/// Everything about `model` that can be known without running it.
pub fn check(model: &Model) -> Report {
    let g = &model.graph;
    let init: HashSet<&str> = g.initializers.iter().map(|t| t.name.as_str()).collect();
    let mut r = Report {
        inputs: g
            .inputs
            .iter()
            .filter(|i| !init.contains(i.name.as_str()))
            .cloned()
            .collect(),
        outputs: g.outputs.clone(),
        opsets: model.opsets.clone(),
        nodes: g.nodes.len(),
        initializers: g.initializers.len(),
        parameters: g
            .initializers
            .iter()
            .map(|t| t.numel().map_or(0, |n| n as u64))
            .sum(),
        ..Default::default()
    };
    if model.opsets.is_empty() {
        r.problems.push("the model imports no opset".into());
    }
    for name in &g.sparse_initializers {
        r.problems.push(format!(
            "sparse initializer '{name}': sparse tensors are not supported"
        ));
    }
    walk(g, &HashSet::new(), &mut r, "");
    let mut whole: Vec<(String, String)> = r
        .ops
        .keys()
        .filter(|(d, o)| !supported(d, o))
        .cloned()
        .collect();
    whole.append(&mut r.unsupported);
    r.unsupported = whole;
    for v in g.inputs.iter().chain(&g.outputs) {
        if v.other_type {
            r.problems.push(format!(
                "'{}' is a sequence, map or optional value: aics runs tensors only",
                v.name
            ));
        }
    }
    r
}

/// Checks `g`'s nodes in order, with `outer` the names visible from enclosing graphs.
fn walk(g: &Graph, outer: &HashSet<String>, r: &mut Report, path: &str) {
    let mut known: HashSet<String> = outer.clone();
    known.extend(g.inputs.iter().map(|i| i.name.clone()));
    known.extend(g.initializers.iter().map(|t| t.name.clone()));
    let mut made: HashSet<String> = HashSet::new();
    for v in g.inputs.iter().chain(&g.outputs).chain(&g.value_info) {
        if let Some(ty) = v.elem_type.filter(|&t| !runs_type(t)) {
            type_problem(r, &format!("value '{}'", v.name), ty);
        }
    }
    for t in g.initializers.iter().filter(|t| !runs_type(t.data_type)) {
        type_problem(r, &format!("initializer '{}'", t.name), t.data_type);
    }
    let rank_of = |name: &str| {
        g.inputs
            .iter()
            .chain(&g.value_info)
            .find(|v| v.name == name)
            .and_then(|v| v.shape.as_ref().map(Vec::len))
            .or_else(|| {
                g.initializers
                    .iter()
                    .find(|t| t.name == name)
                    .map(|t| t.dims.len())
            })
    };
    for (i, n) in g.nodes.iter().enumerate() {
        let label = if n.name.is_empty() {
            format!("{path}#{i}")
        } else {
            format!("{path}{}", n.name)
        };
        *r.ops
            .entry((n.domain.clone(), n.op_type.clone()))
            .or_default() += 1;
        if supported(&n.domain, &n.op_type) {
            if let Some(why) = crate::run::unsupported_variant(n, &rank_of) {
                let v = (n.domain.clone(), format!("{} ({why})", n.op_type));
                if !r.unsupported.contains(&v) {
                    r.unsupported.push(v);
                }
            }
        }
        for a in &n.attributes {
            let ty = match (&a.value, a.name.as_str()) {
                (AttrValue::Tensor(t), _) => t.data_type,
                (AttrValue::Int(t), "to" | "dtype") => *t as i32,
                _ => continue,
            };
            if !runs_type(ty) {
                type_problem(r, &format!("node '{label}' ({})", n.op_type), ty);
            }
        }
        for inp in &n.inputs {
            if !inp.is_empty() && !known.contains(inp) {
                r.problems.push(format!(
                    "node '{label}' ({}): input '{inp}' is made by no earlier node, graph input or initializer (the nodes are out of order or form a cycle)",
                    n.op_type
                ));
            }
        }
        // subgraphs see everything visible here
        for a in &n.attributes {
            let subs: Vec<&Graph> = match &a.value {
                AttrValue::Graph(sg) => vec![sg.as_ref()],
                AttrValue::Graphs(gs) => gs.iter().collect(),
                _ => continue,
            };
            for sg in subs {
                walk(sg, &known, r, &format!("{label}/{}/", a.name));
            }
        }
        for out in &n.outputs {
            if out.is_empty() {
                continue;
            }
            if !made.insert(out.clone()) || g.initializers.iter().any(|t| &t.name == out) {
                r.problems.push(format!(
                    "node '{label}' ({}): output '{out}' is made a second time",
                    n.op_type
                ));
            }
            known.insert(out.clone());
        }
    }
    for o in &g.outputs {
        if !known.contains(&o.name) {
            r.problems.push(format!(
                "{}output '{}' is made by no node, input or initializer",
                if path.is_empty() { "graph " } else { path },
                o.name
            ));
        }
    }
}

/// Whether aics runs tensors of element type `ty`: the real numbers (computed in f32), the
/// integers and booleans (in i64); not strings, complex numbers, 8-bit floats or 4-bit ints.
pub fn runs_type(ty: i32) -> bool {
    use dtype::*;
    matches!(
        ty,
        FLOAT
            | UINT8
            | INT8
            | UINT16
            | INT16
            | INT32
            | INT64
            | BOOL
            | FLOAT16
            | DOUBLE
            | UINT32
            | UINT64
            | BFLOAT16
    )
}

fn type_problem(r: &mut Report, what: &str, ty: i32) {
    let p = format!(
        "{what} has type {} ({ty}): aics runs real numbers, integers and booleans",
        dtype::name(ty)
    );
    if !r.problems.contains(&p) {
        r.problems.push(p);
    }
}

/// A declared value as text: `name: FLOAT[batch, 3, 224, 224]`.
pub fn describe(v: &ValueInfo) -> String {
    let ty = v.elem_type.map_or("?", dtype::name);
    let shape = match &v.shape {
        None => "[?]".to_string(),
        Some(dims) => {
            let d: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    Dim::Value(x) => x.to_string(),
                    Dim::Param(p) => p.clone(),
                    Dim::Unknown => "?".into(),
                })
                .collect();
            format!("[{}]", d.join(", "))
        }
    };
    format!("{}: {ty}{shape}", v.name)
}
