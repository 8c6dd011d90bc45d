//! Each graph of `fixtures/onnx/ops/` run by aics against onnxruntime's outputs
//! (`fixtures/gen_onnx_ops.py`): padding by attribute and automatic,
//! ceil mode, averages with and without the padded zeros, Softmax before and after opset 13,
//! Reshape's 0 and -1, broadcasting, and the shape ops with integer tensors.

use std::path::PathBuf;

use aics_onnx::{load, OnnxModel, Value};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::Tensor;
use serde_json::Value as Json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn shape(v: &Json) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn every_case_gives_the_reference_outputs() {
    let fx: Json =
        serde_json::from_str(&std::fs::read_to_string(dir().join("ops.json")).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut checked = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let model = OnnxModel::new(load(dir().join(format!("ops/{name}.onnx"))).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs: Vec<(String, Value)> = c["inputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let data: Vec<f32> = floats(&v["data"]).iter().map(|&x| x as f32).collect();
                (
                    k.clone(),
                    Value::F(Tensor::from_vec(data, &shape(&v["shape"])).unwrap()),
                )
            })
            .collect();
        let refs: Vec<(&str, Value)> = inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let outs = model.run(&refs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = c["outputs"].as_object().unwrap();
        assert_eq!(outs.len(), want.len(), "{name}");
        for (out, value) in &outs {
            let w = &want[out];
            let (got, got_shape): (Vec<f64>, Vec<usize>) = match value {
                Value::F(t) => (
                    t.to_vec().iter().map(|&x| x as f64).collect(),
                    t.shape().to_vec(),
                ),
                Value::I(v, s) => (v.iter().map(|&x| x as f64).collect(), s.clone()),
            };
            assert_eq!(got_shape, shape(&w["shape"]), "{name}/{out}: shape");
            assert_close(
                &format!("{name}/{out}"),
                &got,
                &floats(&w["data"]),
                Tol::mixed(1e-5),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 41);
}

#[test]
fn missing_and_unknown_inputs_are_refused_by_name() {
    let model = OnnxModel::new(load(dir().join("ops/softmax11.onnx")).unwrap()).unwrap();
    assert_eq!(model.input_names(), ["x"]);
    let e = model.run(&[]).unwrap_err().to_string();
    assert!(e.contains("input 'x' was not given"), "{e}");
    let x = Value::F(Tensor::zeros(&[2, 3, 4]));
    let e = model
        .run(&[("x", x.clone()), ("z", x)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no input 'z'"), "{e}");
    // a wrong shape is a node error naming the node and op
    let e = model
        .run(&[("x", Value::F(Tensor::zeros(&[0])))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("(Softmax)"), "{e}");
}

#[test]
fn models_with_ops_aics_cannot_run_are_refused_before_running() {
    let e = OnnxModel::new(load(dir().join("small.onnx")).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("ops aics cannot run: com.example.Custom"), "{e}");
}
