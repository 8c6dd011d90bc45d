//! Logit parity with torchvision (`fixtures/logits.json`, written by `fixtures/gen_logits.py`
//! with torchvision 0.14): every parameter and buffer is filled from a hash of its state-dict
//! key by the same formula on both sides, so equal logits mean equal architectures — layer
//! order, strides, paddings, pooling modes, concatenation order, BN epsilons — not just equal
//! shapes. Eval mode for every model; training mode (batch statistics) for the ResNets.

use std::collections::HashMap;
use std::path::PathBuf;

use aics_nn::{load_state_dict, state_dict, Module};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_fill, hash_uniform, Tensor};
use aics_vision::{build, ModelConfig};
use serde_json::Value;

/// Within 1e-4 of the largest |logit|; NaN or infinity anywhere fails.
fn check(name: &str, got: &Tensor, want: &[f32], what: &str) {
    let tol = Tol::scaled(1e-4, want);
    let r = assert_close(&format!("{name} {what}"), &got.to_vec(), want, tol);
    eprintln!(
        "{name} {what}: max |Δ| {:e}, allowed {:e}",
        r.max_abs, tol.atol
    );
}

#[test]
fn logits_match_torchvision() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/logits.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let classes = fx["classes"].as_u64().unwrap() as usize;
    let batch = fx["batch"].as_u64().unwrap() as usize;
    let models = fx["models"].as_object().unwrap();
    assert!(models.len() >= 8);
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    for (name, entry) in models {
        let size = entry["size"].as_u64().unwrap() as usize;
        let m = build(
            name,
            &ModelConfig {
                in_shape: [3, size, size],
                num_classes: classes,
                hidden: vec![],
                seed: 0,
            },
        )
        .unwrap();
        let weights: HashMap<String, (Vec<usize>, Vec<f32>)> = state_dict(&m)
            .into_iter()
            .map(|(k, t)| {
                let data = if k.ends_with("num_batches_tracked") {
                    vec![0.0]
                } else {
                    hash_fill(&k, t.shape())
                };
                (k, (t.shape().to_vec(), data))
            })
            .collect();
        load_state_dict(&m, &weights, true).unwrap();
        let shape = [batch, 3, size, size];
        let x = Tensor::from_vec(
            hash_uniform("input", shape.iter().product())
                .into_iter()
                .map(|u| ((2.0 * u - 1.0) * 2.0) as f32)
                .collect(),
            &shape,
        )
        .unwrap();
        let _g = aics_tensor::no_grad();
        m.set_training(false);
        check(
            name,
            &m.forward(&x).unwrap(),
            &floats(&entry["eval"]),
            "eval",
        );
        if let Some(want) = entry.get("train") {
            m.set_training(true);
            check(name, &m.forward(&x).unwrap(), &floats(want), "train");
        }
    }
}
