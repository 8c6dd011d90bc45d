//! An imported model as an aics [`Module`]: its float initializers are its parameters, named
//! by their ONNX names, and `forward` runs the graph with autograd on, so a network from
//! elsewhere fine-tunes like one built here.
//!
//! The parameters are the float initializers that feed a layer with weights (Conv,
//! ConvTranspose, Gemm, MatMul, BatchNormalization's scale and bias) or elementwise arithmetic;
//! batch normalization's running statistics and the other float initializers (resize scales,
//! clip bounds, padding values) are buffers. The graph's layers and arithmetic run on aics's
//! differentiable ops; an op that aics computes outside autograd refuses, naming the node, a
//! value that needs a gradient.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use aics_nn::module::key;
use aics_nn::{Fields, Kind, Module, NnError};
use aics_tensor::Tensor;

use crate::error::Result;
use crate::proto::{Graph, Node};
use crate::run::{attr_float, input, node_err, t, OnnxModel, Value};

/// Whether a gradient flows through `op` as aics runs it: the ops run on aics's
/// differentiable tensor ops, and those that read only a shape.
pub(crate) fn differentiable(op: &str) -> bool {
    crate::run::OPS.contains(&op) || op == "Size"
}

/// The float initializers trained by default: the inputs that carry weights.
pub(crate) fn trained_initializers(g: &Graph, consts: &HashMap<String, Value>) -> HashSet<String> {
    let mut out = HashSet::new();
    for n in &g.nodes {
        let slots: &[usize] = match n.op_type.as_str() {
            "Conv" | "ConvTranspose" | "Gemm" => &[1, 2],
            "MatMul" => &[0, 1],
            "BatchNormalization" => &[1, 2],
            "Add" | "Sub" | "Mul" | "Div" => &[0, 1],
            _ => &[],
        };
        for &i in slots {
            if let Some(name) = n.inputs.get(i) {
                if matches!(consts.get(name), Some(Value::F(_))) {
                    out.insert(name.clone());
                }
            }
        }
    }
    out
}

/// BatchNormalization in training mode: the batch's statistics normalize, and the running
/// ones move by ONNX's `momentum` (the running statistics' weight, PyTorch's 1 − momentum).
pub(crate) fn batch_norm_training(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let f = |i: usize| match input(n, a, i)? {
        Value::F(x) => Ok(x.clone()),
        Value::I(..) => Err(node_err(n, format!("input {i} should be a float tensor"))),
    };
    let (x, w, b, rm, rv) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?);
    let eps = attr_float(n, "epsilon", 1e-5)? as f64;
    let momentum = attr_float(n, "momentum", 0.9)? as f64;
    let y = t(
        n,
        x.batch_norm(
            Some(&w),
            Some(&b),
            Some(&rm),
            Some(&rv),
            true,
            1.0 - momentum,
            eps,
        ),
    )?;
    Ok(vec![Value::F(y)])
}

impl OnnxModel {
    /// The trained initializers with their ONNX names, in the graph's order.
    pub fn parameters(&self) -> Vec<(String, Tensor<f32>)> {
        self.named(Kind::Param)
    }

    fn named(&self, kind: Kind) -> Vec<(String, Tensor<f32>)> {
        self.initializer_names()
            .into_iter()
            .filter_map(|name| match self.constant(&name) {
                Some(Value::F(x)) if (self.params.contains(&name)) == (kind == Kind::Param) => {
                    Some((name, x.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

impl Fields for OnnxModel {
    fn visit_fields(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        for kind in [Kind::Param, Kind::Buffer] {
            for (name, x) in self.named(kind) {
                f(key(prefix, &name), &x, kind);
            }
        }
    }
    fn set_training_fields(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn type_name_fields(&self) -> String {
        "OnnxModel".into()
    }
}

impl Module for OnnxModel {
    /// Runs the graph on its one input and returns its first output, recording gradients
    /// where autograd is on.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let err = |msg: String| NnError::Config {
            layer: "ONNX model".into(),
            msg,
        };
        let names = self.input_names();
        let [name] = names.as_slice() else {
            return Err(err(format!(
                "forward takes one input; the graph has {} ({})",
                names.len(),
                names.join(", ")
            )));
        };
        let outs = self
            .run_with_grad(&[(name.as_str(), Value::F(x.clone()))])
            .map_err(|e| err(e.to_string()))?;
        match outs.into_iter().next() {
            Some((_, Value::F(y))) => Ok(y),
            Some((o, Value::I(..))) => Err(err(format!("output '{o}' is an integer tensor"))),
            None => Err(err("the graph has no output".into())),
        }
    }
}
