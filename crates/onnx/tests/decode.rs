//! The decoder against the reference: `fixtures/onnx/small.onnx` was written by the `onnx`
//! package's helpers and `small.json` holds what that package reads back from it
//! (`fixtures/gen_onnx_small.py`). Then the decoder on damaged copies of the file: every
//! truncation and thousands of corrupted bytes give a result or an error, never a panic.

use std::path::PathBuf;

use aics_onnx::proto::dtype;
use aics_onnx::{decode_model, load, load_external, AttrValue, Dim, TensorData};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(dir().join("small.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn dims_match(got: &Option<Vec<Dim>>, want: &Value) -> bool {
    let Some(got) = got else { return false };
    let want = want.as_array().unwrap();
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| match (g, w) {
            (Dim::Value(v), Value::Number(n)) => Some(*v) == n.as_i64(),
            (Dim::Param(p), Value::String(s)) => p == s,
            (Dim::Unknown, Value::Null) => true,
            _ => false,
        })
}

fn close(a: f64, b: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-6 * b.abs().max(1e-3)
}

#[test]
fn the_model_reads_as_the_onnx_package_reads_it() {
    let want = reference();
    let path = dir().join("small.onnx");
    let mut m = load(&path).unwrap();
    assert_eq!(m.ir_version, want["ir_version"].as_i64().unwrap());
    assert_eq!(m.producer_name, want["producer"].as_str().unwrap());
    let opsets: Vec<(String, i64)> = want["opsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o[0].as_str().unwrap().to_string(), o[1].as_i64().unwrap()))
        .collect();
    assert_eq!(m.opsets, opsets);
    let g = &m.graph;
    for (got, want) in [(&g.inputs, &want["inputs"]), (&g.outputs, &want["outputs"])] {
        let want = want.as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (vi, w) in got.iter().zip(want) {
            assert_eq!(vi.name, w["name"].as_str().unwrap());
            assert_eq!(vi.elem_type.map(i64::from), w["elem_type"].as_i64());
            assert!(
                dims_match(&vi.shape, &w["dims"]),
                "{}: {:?} against {}",
                vi.name,
                vi.shape,
                w["dims"]
            );
        }
    }
    // nodes and attributes
    let nodes = want["nodes"].as_array().unwrap();
    assert_eq!(g.nodes.len(), nodes.len());
    for (n, w) in g.nodes.iter().zip(nodes) {
        assert_eq!(n.name, w["name"].as_str().unwrap());
        assert_eq!(n.op_type, w["op"].as_str().unwrap());
        assert_eq!(n.domain, w["domain"].as_str().unwrap());
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(n.inputs, strs(&w["inputs"]), "{}", n.name);
        assert_eq!(n.outputs, strs(&w["outputs"]), "{}", n.name);
        let attrs = w["attributes"].as_object().unwrap();
        assert_eq!(n.attributes.len(), attrs.len(), "{}", n.name);
        for a in &n.attributes {
            let wv = &attrs[&a.name];
            let ok = match &a.value {
                AttrValue::Int(i) => wv.as_i64() == Some(*i),
                AttrValue::Float(f) => close(*f as f64, wv.as_f64().unwrap()),
                AttrValue::String(s) => wv.as_str() == Some(std::str::from_utf8(s).unwrap()),
                AttrValue::Ints(v) => {
                    wv.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap())
                        .collect::<Vec<_>>()
                        == *v
                }
                AttrValue::Floats(v) => {
                    let w = wv.as_array().unwrap();
                    w.len() == v.len()
                        && v.iter()
                            .zip(w)
                            .all(|(a, b)| close(*a as f64, b.as_f64().unwrap()))
                }
                AttrValue::Strings(v) => {
                    let w = strs(wv);
                    w.len() == v.len() && v.iter().zip(&w).all(|(a, b)| a == b.as_bytes())
                }
                AttrValue::Tensor(t) => {
                    let w = wv["tensor"].as_array().unwrap();
                    let v = t.to_f32().unwrap();
                    w.len() == v.len()
                        && v.iter()
                            .zip(w)
                            .all(|(a, b)| close(*a as f64, b.as_f64().unwrap()))
                }
                AttrValue::Graph(sub) => {
                    sub.name == wv["graph"].as_str().unwrap()
                        && sub
                            .nodes
                            .iter()
                            .map(|n| n.op_type.as_str())
                            .collect::<Vec<_>>()
                            == strs(&wv["nodes"])
                }
                other => panic!("{}: unexpected {other:?}", a.name),
            };
            assert!(
                ok,
                "node {} attribute {}: {:?} against {wv}",
                n.name, a.name, a.value
            );
        }
    }
    // initializers, external data included
    let inits = want["initializers"].as_array().unwrap();
    assert_eq!(g.initializers.len(), inits.len());
    let external: Vec<bool> = g
        .initializers
        .iter()
        .map(|t| matches!(t.data, TensorData::External { .. }))
        .collect();
    let want_external: Vec<bool> = inits
        .iter()
        .map(|w| w["external"].as_bool().unwrap())
        .collect();
    assert_eq!(external, want_external);
    assert!(
        external.iter().any(|&e| e),
        "the fixture keeps some data outside"
    );
    let e = m.graph.initializers[0].to_f32().unwrap_err().to_string();
    assert!(e.contains("external"), "{e}");
    load_external(&mut m, &path).unwrap();
    for (t, w) in m.graph.initializers.iter().zip(inits) {
        assert_eq!(t.name, w["name"].as_str().unwrap());
        assert_eq!(t.data_type as i64, w["data_type"].as_i64().unwrap());
        let dims: Vec<i64> = w["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert_eq!(t.dims, dims);
        let want_v: Vec<f64> = w["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let got = t.to_f32().unwrap();
        assert_eq!(got.len(), want_v.len(), "{}", t.name);
        for (a, b) in got.iter().zip(&want_v) {
            assert!(close(*a as f64, *b), "{}: {a} against {b}", t.name);
        }
        if t.data_type == dtype::INT64 {
            let ints = t.to_i64().unwrap();
            assert_eq!(ints, want_v.iter().map(|&v| v as i64).collect::<Vec<_>>());
        }
    }
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let bytes = std::fs::read(dir().join("small.onnx")).unwrap();
    assert!(decode_model(&bytes).is_ok());
    let mut errors = 0;
    for cut in 0..bytes.len() {
        if decode_model(&bytes[..cut]).is_err() {
            errors += 1;
        }
    }
    // most prefixes end inside a field or lack the graph
    assert!(
        errors > bytes.len() / 2,
        "{errors} of {} truncations refused",
        bytes.len()
    );
    let e = decode_model(&bytes[..bytes.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("malformed protobuf in") && e.contains("at byte"),
        "{e}"
    );
    // corrupted bytes, from a fixed generator: each decode returns, one way or the other
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if let Ok(m) = decode_model(&b) {
            // what decodes must still convert or refuse cleanly
            for t in &m.graph.initializers {
                let _ = t.to_f32();
                let _ = t.to_i64();
            }
        }
    }
}

#[test]
fn a_file_that_is_not_there_names_its_path() {
    let e = load("/nonexistent/model.onnx").unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/model.onnx:"), "{e}");
}

/// External float32 data decoded straight from the mapped file (`aics_onnx::open`): the values
/// it holds, and one clear error naming the tensor when the bytes do not fit its dimensions.
#[test]
fn external_floats_are_decoded_from_the_file_and_lying_sizes_refused() {
    use aics_onnx::{Graph, Model, Node, Tensor, Value, ValueInfo};
    let dir = aics_testkit::TempDir::new("external");
    let w: Vec<f32> = vec![1.0, -2.0, 3.5, 0.25, 5.0, -6.0];
    let mut bytes = vec![0u8; 8];
    bytes.extend(w.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("m.onnx.data"), &bytes).unwrap();
    let info = |name: &str, dims: &[i64]| ValueInfo {
        name: name.into(),
        elem_type: Some(dtype::FLOAT),
        shape: Some(dims.iter().map(|&d| Dim::Value(d)).collect()),
        other_type: false,
    };
    let model = |dims: Vec<i64>, length: u64| Model {
        ir_version: 8,
        opsets: vec![(String::new(), 17)],
        graph: Graph {
            nodes: vec![Node {
                name: "mm".into(),
                op_type: "MatMul".into(),
                inputs: vec!["x".into(), "W".into()],
                outputs: vec!["y".into()],
                ..Default::default()
            }],
            initializers: vec![Tensor {
                name: "W".into(),
                dims,
                data_type: dtype::FLOAT,
                data: TensorData::External {
                    location: "m.onnx.data".into(),
                    offset: 8,
                    length: Some(length),
                },
            }],
            inputs: vec![info("x", &[1, 2])],
            outputs: vec![info("y", &[1, 3])],
            ..Default::default()
        },
        ..Default::default()
    };
    let path = dir.join("m.onnx");
    aics_onnx::save(&model(vec![2, 3], 24), &path).unwrap();
    let m = aics_onnx::open(&path).unwrap();
    let Some(Value::F(t)) = m.constant("W") else {
        panic!("W is a float initializer")
    };
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(t.to_vec(), w);
    let x = aics_tensor::Tensor::from_vec(vec![1.0, 2.0], &[1, 2]).unwrap();
    let y = m.run(&[("x", Value::F(x))]).unwrap();
    let Value::F(y) = &y[0].1 else {
        panic!("a float output")
    };
    assert_eq!(y.to_vec(), vec![1.5, 8.0, -8.5]);
    // 20 bytes for 6 values; a negative dimension; a length past the file's end
    for (dims, length, want) in [
        (
            vec![2, 3],
            20,
            "20 bytes of external data for 6 float32 values",
        ),
        (vec![-2, 3], 24, "negative dim -2"),
        (vec![2, 3], 64, "external data at bytes"),
    ] {
        aics_onnx::save(&model(dims, length), &path).unwrap();
        let e = aics_onnx::open(&path).err().expect("refused").to_string();
        assert!(e.contains("tensor 'W'"), "{e}");
        assert!(e.contains(want), "{e}");
    }
}
