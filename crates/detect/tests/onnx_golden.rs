//! NonMaxSuppression and RoiAlign against the ONNX backend test cases (Debian
//! libonnx-testdata 1.12.0-2, extracted into `fixtures/onnx_golden.json` by
//! `fixtures/gen_onnx_golden.py`). Their expected values are stored to 4 decimals.

use std::path::PathBuf;

use aics_detect::non_max_suppression;
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::Tensor;
use serde_json::Value;

fn tensor(v: &Value) -> Tensor<f32> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

fn scalar(v: &Value) -> f64 {
    v["data"][0].as_f64().unwrap()
}

fn cases(op: &str) -> Vec<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx_golden.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["op"] == op)
        .cloned()
        .collect()
}

#[test]
fn non_max_suppression_equals_onnx() {
    let cases = cases("NonMaxSuppression");
    assert_eq!(cases.len(), 9);
    for c in &cases {
        let i = &c["inputs"];
        let got = non_max_suppression(
            &tensor(&i["boxes"]),
            &tensor(&i["scores"]),
            scalar(&i["max_output_boxes_per_class"]) as usize,
            scalar(&i["iou_threshold"]),
            i.get("score_threshold").map(scalar),
            c["attributes"]["center_point_box"].as_i64() == Some(1),
        )
        .unwrap();
        let want: Vec<usize> = tensor(&c["outputs"]["selected_indices"])
            .to_vec()
            .iter()
            .map(|&v| v as usize)
            .collect();
        let got: Vec<usize> = got.into_iter().flatten().collect();
        assert_eq!(got, want, "{}", c["name"]);
    }
}

#[test]
fn roi_align_equals_onnx() {
    let cases = cases("RoiAlign");
    assert_eq!(cases.len(), 3);
    let mut modes = Vec::new();
    for c in &cases {
        let (i, a) = (&c["inputs"], &c["attributes"]);
        let max = a["mode"].as_str().unwrap_or("avg") == "max";
        modes.push(max);
        // ONNX gives the regions (K, 4) and their images apart; aics takes (K, 5) rows
        let rois = tensor(&i["rois"]).to_vec();
        let batch = tensor(&i["batch_indices"]).to_vec();
        let rows: Vec<f32> = batch
            .iter()
            .zip(rois.chunks_exact(4))
            .flat_map(|(&b, r)| [b, r[0], r[1], r[2], r[3]])
            .collect();
        let k = batch.len();
        let x = tensor(&i["X"]);
        let args = (
            &Tensor::from_vec(rows, &[k, 5]).unwrap(),
            (
                a["output_height"].as_u64().unwrap() as usize,
                a["output_width"].as_u64().unwrap() as usize,
            ),
            a["spatial_scale"].as_f64().unwrap(),
            a["sampling_ratio"].as_i64().unwrap() as i32,
            a["coordinate_transformation_mode"] == "half_pixel",
        );
        let y = if max {
            x.roi_align_max(args.0, args.1, args.2, args.3, args.4)
        } else {
            x.roi_align(args.0, args.1, args.2, args.3, args.4)
        }
        .unwrap();
        let want = tensor(&c["outputs"]["Y"]);
        assert_eq!(y.shape(), want.shape());
        assert_close(
            c["name"].as_str().unwrap(),
            &y.to_vec(),
            &want.to_vec(),
            Tol::new(1e-4, 0.0),
        );
    }
    modes.sort();
    assert_eq!(
        modes,
        [false, false, true],
        "two avg cases and one max case"
    );
}
