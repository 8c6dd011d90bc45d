//! An imported ONNX model fine-tunes as an aics module: its parameters are named by their
//! initializer names and the gradients through the imported graph equal PyTorch's
//! (`fixtures/gen_onnx_train.py`: a small CNN exported by PyTorch with its batch norm kept).

use std::path::PathBuf;

use aics_nn::{loss::cross_entropy, Module, Optimizer, Sgd};
use aics_onnx::{load, Graph, Model, Node, OnnxModel, TensorData, Value, ValueInfo};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::Tensor;
use serde_json::Value as Json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn floats(v: &Json) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn fixture() -> (OnnxModel, Json, Tensor, Vec<usize>) {
    let fx: Json =
        serde_json::from_str(&std::fs::read_to_string(dir().join("tiny_cnn.json")).unwrap())
            .unwrap();
    let model = OnnxModel::new(load(dir().join("tiny_cnn.onnx")).unwrap()).unwrap();
    let shape: Vec<usize> = fx["x_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x = Tensor::from_vec(floats(&fx["x"]), &shape).unwrap();
    let y: Vec<usize> = fx["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    (model, fx, x, y)
}

#[test]
fn parameters_and_buffers_carry_the_initializer_names() {
    let (model, ..) = fixture();
    let params: Vec<String> = model.parameters().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        params,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "fc.weight",
            "fc.bias"
        ]
    );
    let all: Vec<String> = aics_nn::state_dict(&model)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(all.len(), 8);
    assert!(all.contains(&"bn.running_mean".to_string()));
    assert_eq!(aics_nn::parameters(&model).len(), 6);
}

#[test]
fn gradients_through_the_imported_graph_equal_pytorchs() {
    let (model, fx, x, y) = fixture();
    model.set_training(false);
    let logits = model.forward(&x).unwrap();
    assert_close(
        "logits",
        &logits.to_vec(),
        &floats(&fx["logits"]),
        Tol::new(1e-5, 1e-4),
    );
    let loss = cross_entropy(&logits, &y, None, 0.0).unwrap();
    assert_close(
        "loss",
        &loss.to_vec(),
        &[fx["loss"].as_f64().unwrap() as f32],
        Tol::new(1e-6, 1e-5),
    );
    loss.backward().unwrap();
    for (name, p) in model.parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name} has no gradient"));
        assert_close(
            &name,
            &g.to_vec(),
            &floats(&fx["grads"][&name]),
            Tol::new(1e-6, 1e-4),
        );
    }
    // inference records nothing
    let out = model.run(&[("x", Value::F(x.clone()))]).unwrap();
    let Value::F(l) = &out[0].1 else {
        panic!("float logits")
    };
    assert!(!l.requires_grad());
}

#[test]
fn training_mode_normalizes_by_the_batch_and_moves_the_running_statistics() {
    let (model, fx, x, _) = fixture();
    model.set_training(true);
    let logits = model.forward(&x).unwrap();
    assert_close(
        "train logits",
        &logits.to_vec(),
        &floats(&fx["logits_train"]),
        Tol::new(1e-5, 1e-4),
    );
    let Some(Value::F(rm)) = model.constant("bn.running_mean") else {
        panic!("running mean")
    };
    let Some(Value::F(rv)) = model.constant("bn.running_var") else {
        panic!("running var")
    };
    assert_close(
        "running mean",
        &rm.to_vec(),
        &floats(&fx["running_mean_after"]),
        Tol::new(1e-6, 1e-5),
    );
    assert_close(
        "running var",
        &rv.to_vec(),
        &floats(&fx["running_var_after"]),
        Tol::new(1e-6, 1e-5),
    );
}

#[test]
fn a_few_sgd_steps_fine_tune_the_imported_model() {
    let (model, _, x, y) = fixture();
    model.set_training(false);
    let mut opt = Sgd::new(model.parameters());
    opt.set_lr(0.1);
    let mut losses = Vec::new();
    for _ in 0..20 {
        opt.zero_grad();
        let loss = cross_entropy(&model.forward(&x).unwrap(), &y, None, 0.0).unwrap();
        losses.push(loss.to_vec()[0]);
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[19] < 0.5 * losses[0], "{losses:?}");
}

#[test]
fn an_op_computed_outside_autograd_refuses_a_value_that_needs_a_gradient() {
    // y = cos(x · w): w is a parameter (it feeds Mul), Cos runs outside autograd
    let node = |name: &str, op: &str, inputs: &[&str], outputs: &[&str]| Node {
        name: name.into(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let value = |name: &str| ValueInfo {
        name: name.into(),
        ..Default::default()
    };
    let m = Model {
        opsets: vec![(String::new(), 13)],
        graph: Graph {
            nodes: vec![
                node("scale", "Mul", &["x", "w"], &["h"]),
                node("wave", "Cos", &["h"], &["y"]),
            ],
            inputs: vec![value("x")],
            outputs: vec![value("y")],
            initializers: vec![aics_onnx::Tensor {
                name: "w".into(),
                dims: vec![1],
                data_type: 1,
                data: TensorData::Floats(vec![2.0]),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let model = OnnxModel::new(m).unwrap();
    let x = Tensor::from_vec(vec![0.5f32, 1.0], &[2]).unwrap();
    let e = model.forward(&x).unwrap_err().to_string();
    assert!(
        e.contains("wave") && e.contains("(Cos)") && e.contains("without gradients"),
        "{e}"
    );
    // inference runs it
    let out = model.run(&[("x", Value::F(x))]).unwrap();
    let Value::F(y) = &out[0].1 else {
        panic!("float")
    };
    assert_close(
        "cos",
        &y.to_vec(),
        &[1f32.cos(), 2f32.cos()],
        Tol::new(1e-6, 1e-6),
    );
}
