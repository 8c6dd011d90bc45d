//! One LeNet-5 training step against PyTorch (`fixtures/lenet5_step.json`, written by
//! `fixtures/gen_lenet_step.py`): same deterministic weights and batch, so the loss before and
//! after an SGD step (momentum 0.9, weight decay 5e-4) and the gradients must match.

use aics_tensor::testing::{assert_close, assert_close_one, Tol};
use std::path::PathBuf;

use aics_nn::loss::cross_entropy;
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, state_dict, Module, Sgd};
use aics_tensor::Tensor;
use aics_vision::{build, ModelConfig};
use serde_json::Value;

#[test]
fn lenet5_step_matches_pytorch() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/lenet5_step.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = build(
        "lenet5",
        &ModelConfig {
            in_shape: [1, 28, 28],
            num_classes: 10,
            hidden: vec![],
            seed: 0,
        },
    )
    .unwrap();
    for (k, (_, t)) in state_dict(&model).iter().enumerate() {
        let v: Vec<f32> = (0..t.numel())
            .map(|i| (0.1 * (0.37 * i as f64 + k as f64).sin()) as f32)
            .collect();
        t.set_data(v).unwrap();
    }
    let x = Tensor::from_vec(
        (0..4 * 784)
            .map(|i| (0.01 * i as f64).sin() as f32)
            .collect(),
        &[4, 1, 28, 28],
    )
    .unwrap();
    let target = [1usize, 7, 3, 0];
    let logits = model.forward(&x).unwrap();
    let want_logits: Vec<f64> = fx["logits0"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_close(
        "logits",
        &logits.to_vec(),
        &want_logits,
        Tol::new(1e-4, 0.0),
    );
    let loss = cross_entropy(&logits, &target, None, 0.0).unwrap();
    let loss0 = fx["loss0"].as_f64().unwrap();
    assert_close_one(
        "loss0",
        loss.item().unwrap() as f64,
        loss0,
        Tol::new(1e-5, 0.0),
    );
    let mut opt = Sgd::new(parameters(&model))
        .lr(0.1)
        .momentum(0.9)
        .weight_decay(5e-4);
    loss.backward().unwrap();
    let sd = state_dict(&model);
    for (name, want) in fx["grads"].as_object().unwrap() {
        let t = &sd.iter().find(|(k, _)| k == name).unwrap().1;
        let got = t.grad().unwrap().to_vec();
        let want: Vec<f64> = want["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect();
        assert_close(&format!("grad {name}"), &got, &want, Tol::mixed(1e-5));
    }
    opt.step().unwrap();
    let loss1 = cross_entropy(&model.forward(&x).unwrap(), &target, None, 0.0)
        .unwrap()
        .item()
        .unwrap() as f64;
    let want1 = fx["loss1"].as_f64().unwrap();
    assert_close_one("loss1", loss1, want1, Tol::new(1e-5, 0.0));
}
