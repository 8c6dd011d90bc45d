//! A model whose weights are over 2 GB, which one protobuf message cannot hold: ONNX's external
//! data, read end to end. The test writes the model fixtures/gen_onnx_large.py describes (every
//! value from a formula on its index), runs it with aics's ONNX runner and compares with
//! onnxruntime's outputs for the same file (fixtures/onnx/large.json, from that script).

use std::io::Write;

use aics_onnx::proto::dtype;
use aics_onnx::{Dim, Graph, Model, Node, Tensor, TensorData, Value, ValueInfo};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/onnx/large.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// ((i · mul) mod 2^bits) / 2^bits in float32, as numpy computes it.
fn formula(i: u64, mul: u64, bits: u32) -> f32 {
    let m = 1u64 << bits;
    (i.wrapping_mul(mul) % m) as f32 / m as f32
}

fn info(name: &str, dims: &[i64]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        elem_type: Some(dtype::FLOAT),
        shape: Some(dims.iter().map(|&d| Dim::Value(d)).collect()),
        other_type: false,
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> Node {
    Node {
        name: output.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes: Vec::<aics_onnx::Attribute>::new(),
    }
}

fn external(name: &str, dims: &[i64], offset: u64, length: u64) -> Tensor {
    Tensor {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dtype::FLOAT,
        data: TensorData::External {
            location: "large.onnx.data".into(),
            offset,
            length: Some(length),
        },
    }
}

#[test]
#[ignore = "writes a 2.2 GB model to the temporary folder and holds its weights in memory; .ci/run runs it"]
fn a_model_over_2_gb_gives_onnxruntimes_outputs() {
    let fx = fixture();
    let (k, n, out) = (
        fx["k"].as_u64().unwrap(),
        fx["n"].as_u64().unwrap(),
        fx["out"].as_u64().unwrap(),
    );
    let w1_bytes = k * n * 4;
    let w2_off = w1_bytes.div_ceil(4096) * 4096;
    assert_eq!(w2_off, fx["w2_offset"].as_u64().unwrap());
    assert!(
        w1_bytes > 1 << 31 && w2_off > 1 << 31,
        "the weights must pass 2 GB"
    );
    let dir = aics_testkit::TempDir::new("large-model");
    let path = dir.path().join("large.onnx");
    {
        let f = std::fs::File::create(dir.path().join("large.onnx.data")).unwrap();
        let mut w = std::io::BufWriter::with_capacity(1 << 22, f);
        let mut row = Vec::with_capacity(4 * n as usize);
        for r in 0..k {
            row.clear();
            for i in r * n..(r + 1) * n {
                row.extend_from_slice(&(formula(i, 2654435761, 32) - 0.5).to_le_bytes());
            }
            w.write_all(&row).unwrap();
        }
        w.write_all(&vec![0u8; (w2_off - w1_bytes) as usize])
            .unwrap();
        for i in 0..n * out {
            w.write_all(&(formula(i, 2246822519, 32) / n as f32).to_le_bytes())
                .unwrap();
        }
        w.flush().unwrap();
    }
    let (ki, ni, oi) = (k as i64, n as i64, out as i64);
    let model = Model {
        ir_version: 8,
        opsets: vec![(String::new(), 17)],
        producer_name: "aics-test".into(),
        producer_version: String::new(),
        graph: Graph {
            name: "large".into(),
            nodes: vec![
                node("MatMul", &["x", "W1"], "h"),
                node("Relu", &["h"], "r"),
                node("MatMul", &["r", "W2"], "y"),
            ],
            initializers: vec![
                external("W1", &[ki, ni], 0, w1_bytes),
                external("W2", &[ni, oi], w2_off, n * out * 4),
            ],
            inputs: vec![info("x", &[1, ki])],
            outputs: vec![info("h", &[1, ni]), info("y", &[1, oi])],
            ..Default::default()
        },
    };
    aics_onnx::save(&model, &path).unwrap();
    // the model file holds the graph alone
    assert!(std::fs::metadata(&path).unwrap().len() < 4096);
    let m = aics_onnx::open(&path).unwrap();
    let x: Vec<f32> = (0..k).map(|i| formula(i, 40503, 16)).collect();
    let x = aics_tensor::Tensor::from_vec(x, &[1, k as usize]).unwrap();
    let ys = m.run(&[("x", Value::F(x))]).unwrap();
    let vals = |k: usize, shape: &[usize]| -> Vec<f32> {
        let Value::F(t) = &ys[k].1 else {
            panic!("{}: a float output", ys[k].0)
        };
        assert_eq!(t.shape(), shape, "{}", ys[k].0);
        t.to_vec()
    };
    let nums = |key: &str| -> Vec<f64> {
        fx[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    // h = x · W1, every `stride`-th value: each reads its own column of the 2.2 GB tensor
    let h = vals(0, &[1, n as usize]);
    let stride = fx["h_stride"].as_u64().unwrap() as usize;
    let want = nums("h");
    assert_eq!(want.len(), h.len().div_ceil(stride));
    let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
    assert!(scale > 1.0, "onnxruntime's h {want:?}");
    for (j, w) in want.iter().enumerate() {
        let g = h[j * stride] as f64;
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "h[{}]: aics {g}, onnxruntime {w}",
            j * stride
        );
    }
    let mean = h.iter().map(|&v| v as f64).sum::<f64>() / h.len() as f64;
    let wm = fx["h_mean"].as_f64().unwrap();
    assert!(
        (mean - wm).abs() <= 1e-5 * scale,
        "mean of h: aics {mean}, onnxruntime {wm}"
    );
    // y = relu(h) · W2, W2 read from past 2³¹ bytes into the file
    let y = vals(1, &[1, out as usize]);
    let want = nums("y");
    let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
    assert!(scale > 0.1, "onnxruntime's y {want:?}");
    // each a float32 sum of 540000 products: onnxruntime's is within 1e-6 of the float64 sum
    // (y_f64_from_h), aics's within 3e-5
    for (g, w) in y.iter().zip(&want) {
        assert!(
            (*g as f64 - w).abs() <= 1e-4 * scale,
            "y: aics {y:?}, onnxruntime {want:?}"
        );
    }
}
