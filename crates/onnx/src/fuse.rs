//! The inference path of an imported graph: a 2-D convolution whose weights are an initializer
//! runs with its weights packed once for the kernel (1×1 panels, Winograd filters), and the
//! ReLU or ReLU6 after it, or the residual add and ReLU after it, applied in its output pass,
//! as aics's own models do after `prepare_inference`. Planned once from the graph; used when no
//! gradient is recorded and no node's outputs are traced or dumped.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use aics_tensor::{Activation, ConvParams, PackedWeights, Tensor};

use crate::error::Result;
use crate::proto::{AttrValue, Graph, Node};
use crate::run::{attr, attr_int, attr_ints, attr_str, node_err, t, Value};

/// A convolution and the nodes folded into it.
pub(crate) struct FusedConv {
    params: ConvParams,
    /// The weights and bias with the batch normalization after the convolution folded in (in
    /// evaluation mode), instead of the node's.
    folded: Option<(Tensor<f32>, Tensor<f32>)>,
    act: Activation,
    /// The residual added before the activation (a value computed before the convolution).
    pub(crate) residual: Option<String>,
    /// The name the result goes by: the last folded node's output.
    pub(crate) out: String,
    /// The packing for the last input shape seen.
    pack: Mutex<Option<(Vec<usize>, Option<PackedWeights>)>>,
}

/// What the inference path does differently: the convolutions it runs fused, by node index,
/// and the nodes folded into them, which it skips.
#[derive(Default)]
pub(crate) struct Plan {
    pub(crate) convs: HashMap<usize, FusedConv>,
    pub(crate) skip: HashSet<usize>,
}

/// A float scalar a node input holds when it is an initializer or a Constant's output.
fn constant_scalar(g: &Graph, consts: &HashMap<String, Value>, name: &str) -> Option<f32> {
    if let Some(Value::F(t)) = consts.get(name) {
        return (t.numel() == 1).then(|| t.to_vec()[0]);
    }
    let n = g
        .nodes
        .iter()
        .find(|n| n.op_type == "Constant" && n.outputs.first().is_some_and(|o| o == name))?;
    match attr(n, "value") {
        Some(AttrValue::Tensor(tp)) => {
            let v = tp.to_f32().ok()?;
            (v.len() == 1).then(|| v[0])
        }
        _ => match attr(n, "value_float") {
            Some(AttrValue::Float(f)) => Some(*f),
            _ => None,
        },
    }
}

/// The activation node `n` is, if it is one a convolution applies: ReLU, or Clip to [0, 6].
fn activation(
    g: &Graph,
    consts: &HashMap<String, Value>,
    n: &Node,
    opset: i64,
) -> Option<Activation> {
    match n.op_type.as_str() {
        "Relu" => Some(Activation::Relu),
        "Clip" => {
            let (lo, hi) = if opset < 11 {
                let f = |name: &str| match attr(n, name) {
                    Some(AttrValue::Float(v)) => Some(*v),
                    _ => None,
                };
                (f("min")?, f("max")?)
            } else {
                let at = |i: usize| {
                    n.inputs
                        .get(i)
                        .filter(|s| !s.is_empty())
                        .and_then(|s| constant_scalar(g, consts, s))
                };
                (at(1)?, at(2)?)
            };
            (lo == 0.0 && hi == 6.0).then_some(Activation::Relu6)
        }
        _ => None,
    }
}

/// The convolution parameters of Conv node `n` when the fused kernel runs it as ONNX defines
/// it: 2-D, explicit symmetric padding (or none).
fn conv_params(n: &Node, w: &Tensor<f32>) -> Option<ConvParams> {
    if w.rank() != 4 || attr_str(n, "auto_pad", "NOTSET").ok()? != "NOTSET" {
        return None;
    }
    let two = |name: &str, d: i64| -> Option<(usize, usize)> {
        match attr_ints(n, name).ok()? {
            None => Some((d as usize, d as usize)),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => {
                Some((v[0] as usize, v[1] as usize))
            }
            _ => None,
        }
    };
    let pads = match attr_ints(n, "pads").ok()? {
        None => (0, 0),
        Some(p) if p.len() == 4 && p[0] == p[2] && p[1] == p[3] && p.iter().all(|&x| x >= 0) => {
            (p[0] as usize, p[1] as usize)
        }
        _ => return None,
    };
    let stride = two("strides", 1)?;
    let dilation = two("dilations", 1)?;
    if stride.0 == 0 || stride.1 == 0 || dilation.0 == 0 || dilation.1 == 0 {
        return None;
    }
    Some(ConvParams {
        stride,
        padding: pads,
        dilation,
        groups: attr_int(n, "group", 1).ok()?.max(1) as usize,
        ..Default::default()
    })
}

/// The weights and bias of a convolution (`w`, `b`) with BatchNormalization node `n` after it
/// folded in: per output channel, w·γ/√(σ² + ε) and (b − μ)·γ/√(σ² + ε) + β. None unless `n`
/// is a batch normalization in evaluation mode whose four parameters are initializers of the
/// convolution's channel count.
fn fold_batch_norm(
    n: &Node,
    consts: &HashMap<String, Value>,
    w: &Tensor<f32>,
    b: Option<&Value>,
) -> Option<(Tensor<f32>, Tensor<f32>)> {
    if n.op_type != "BatchNormalization"
        || n.outputs.iter().skip(1).any(|o| !o.is_empty())
        || attr_int(n, "training_mode", 0).ok()? != 0
    {
        return None;
    }
    let o = w.shape()[0];
    let param = |i: usize| match n.inputs.get(i).and_then(|s| consts.get(s)) {
        Some(Value::F(t)) if t.numel() == o => Some(t.to_vec()),
        _ => None,
    };
    let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let eps = match attr(n, "epsilon") {
        Some(AttrValue::Float(e)) => *e as f64,
        _ => 1e-5,
    };
    let bias = match b {
        Some(Value::F(t)) if t.numel() == o => t.to_vec(),
        None => vec![0.0; o],
        _ => return None,
    };
    let per = w.numel() / o;
    let wd = w.to_vec();
    let mut nw = Vec::with_capacity(wd.len());
    let mut nb = Vec::with_capacity(o);
    for c in 0..o {
        let k = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
        nw.extend(
            wd[c * per..(c + 1) * per]
                .iter()
                .map(|&v| (v as f64 * k) as f32),
        );
        nb.push(((bias[c] as f64 - mean[c] as f64) * k + beta[c] as f64) as f32);
    }
    Some((
        Tensor::from_vec(nw, w.shape()).ok()?,
        Tensor::from_vec(nb, &[o]).ok()?,
    ))
}

/// Plans the fusions of `g`'s top level.
pub(crate) fn plan(g: &Graph, consts: &HashMap<String, Value>, opset: i64) -> Plan {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &g.nodes {
        for i in n.inputs.iter().filter(|s| !s.is_empty()) {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &g.outputs {
        *uses.entry(o.name.as_str()).or_default() += 1;
    }
    // the node that reads each value (for values read once)
    let mut reader: HashMap<&str, usize> = HashMap::new();
    for (k, n) in g.nodes.iter().enumerate() {
        for i in n.inputs.iter().filter(|s| !s.is_empty()) {
            reader.insert(i.as_str(), k);
        }
    }
    let made_at: HashMap<&str, usize> = g
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(k, n)| n.outputs.iter().map(move |o| (o.as_str(), k)))
        .collect();
    let only_reader = |v: &str| {
        (uses.get(v) == Some(&1))
            .then(|| reader.get(v).copied())
            .flatten()
    };
    let identity_of: HashMap<&str, &str> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Identity" && n.inputs.len() == 1 && n.outputs.len() == 1)
        .map(|n| (n.outputs[0].as_str(), n.inputs[0].as_str()))
        .collect();
    let mut p = Plan::default();
    for (k, n) in g.nodes.iter().enumerate() {
        if n.op_type != "Conv" || p.skip.contains(&k) {
            continue;
        }
        let Some(Value::F(w)) = n.inputs.get(1).and_then(|w| consts.get(w)) else {
            continue;
        };
        // a bias that is an initializer, or an Identity of one (exporters share equal ones so)
        let mut bias = n.inputs.get(2).map(String::as_str).unwrap_or("");
        while let Some(src) = identity_of.get(bias) {
            bias = src;
        }
        if !bias.is_empty() && !matches!(consts.get(bias), Some(Value::F(_))) {
            continue;
        }
        let Some(params) = conv_params(n, w) else {
            continue;
        };
        let Some(out) = n.outputs.first() else {
            continue;
        };
        let mut fc = FusedConv {
            params,
            act: Activation::Identity,
            residual: None,
            out: out.clone(),
            pack: Mutex::new(None),
            folded: None,
        };
        let mut folded = Vec::new();
        let mut cur = out.as_str();
        // a batch normalization with constant statistics, folded into the weights and bias
        if let Some(bn) = only_reader(cur) {
            let bn_node = &g.nodes[bn];
            let bias = (!bias.is_empty()).then(|| consts.get(bias)).flatten();
            if let Some(fw) = fold_batch_norm(bn_node, consts, w, bias) {
                fc.folded = Some(fw);
                folded.push(bn);
                cur = bn_node.outputs[0].as_str();
            }
        }
        // a residual add: the other operand made before this convolution
        if let Some(a) = only_reader(cur) {
            let an = &g.nodes[a];
            if an.op_type == "Add" && an.inputs.len() == 2 {
                let other = if an.inputs[0] == cur {
                    &an.inputs[1]
                } else {
                    &an.inputs[0]
                };
                let before = made_at.get(other.as_str()).is_none_or(|&m| m < k);
                if before && other != cur && !consts.contains_key(other) {
                    fc.residual = Some(other.clone());
                    folded.push(a);
                    cur = an.outputs[0].as_str();
                }
            }
        }
        if let Some(r) = only_reader(cur) {
            if let Some(act) = activation(g, consts, &g.nodes[r], opset) {
                fc.act = act;
                folded.push(r);
                cur = g.nodes[r].outputs[0].as_str();
            }
        }
        fc.out = cur.to_string();
        p.skip.extend(folded);
        p.convs.insert(k, fc);
    }
    p
}

impl FusedConv {
    /// Runs the convolution of node `n` with its folded nodes.
    pub(crate) fn run(
        &self,
        n: &Node,
        args: &[Option<Value>],
        residual: Option<&Value>,
    ) -> Result<Value> {
        let f = |i: usize| match args.get(i).and_then(|v| v.as_ref()) {
            Some(Value::F(x)) => Ok(Some(x)),
            Some(Value::I(..)) => Err(node_err(n, format!("input {i} should be a float tensor"))),
            None => Ok(None),
        };
        let x = f(0)?.ok_or_else(|| node_err(n, "input 0 is missing"))?;
        let (w, b) = match &self.folded {
            Some((w, b)) => (w, Some(b)),
            None => (
                f(1)?.ok_or_else(|| node_err(n, "input 1 is missing"))?,
                f(2)?,
            ),
        };
        let r = match residual {
            Some(Value::F(r)) => Some(r),
            Some(Value::I(..)) => return Err(node_err(n, "an integer residual")),
            None => None,
        };
        let mut guard = self.pack.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|(s, _)| s != x.shape()) {
            *guard = Some((
                x.shape().to_vec(),
                PackedWeights::for_conv_input(w, &self.params, x.shape()),
            ));
        }
        let y = match guard.as_ref().and_then(|(_, p)| p.as_ref()) {
            Some(pk) => x.conv2d_fused_packed(w, pk, b, self.params, self.act, r),
            None => x.conv2d_fused(w, b, self.params, self.act, r),
        };
        Ok(Value::F(t(n, y)?))
    }
}
