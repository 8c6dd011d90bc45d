//! Every darknet layer type and detection head against the darknet program on small networks
//! with key-hashed weights (fixtures/darknet/layers.json, made by
//! fixtures/gen_darknet_layers.py, which states the weights rule this file rebuilds).

use aics_detect::darknet::{Darknet, HeadOutput, Layer};
use aics_detect::yolo::{
    decode_detection, decode_region, decode_yolo, nms_sort, Candidate, LetterboxGeom,
};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_uniform, Tensor};
use aics_testkit::json;
use serde_json::Value;

/// The `.weights` bytes of fixtures/gen_darknet_layers.py's rule for `net`.
fn weights(case: &str, net: &Darknet) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0i32, 2, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&0u64.to_le_bytes());
    let mut push = |i: usize, what: &str, n: usize, fan_in: usize| {
        let u = hash_uniform(&format!("{case}/{i}/{what}"), n);
        let k = (3.0 / fan_in as f64).sqrt();
        for x in u {
            let v = match what {
                "biases" | "rolling_mean" => 0.1 * (2.0 * x - 1.0),
                "scales" | "rolling_variance" => 0.5 + x,
                _ => (2.0 * x - 1.0) * k,
            };
            b.extend_from_slice(&(v as f32).to_le_bytes());
        }
    };
    for (i, l) in net.layers.iter().enumerate() {
        match l {
            Layer::Conv(c) => {
                let n = c.weight.shape()[0];
                push(i, "biases", n, 1);
                if c.scales.is_some() {
                    for w in ["scales", "rolling_mean", "rolling_variance"] {
                        push(i, w, n, 1);
                    }
                }
                push(i, "weights", c.weight.numel(), c.weight.numel() / n);
            }
            Layer::Connected(c) => {
                let (n, inputs) = (c.weight.shape()[0], c.weight.shape()[1]);
                push(i, "biases", n, 1);
                push(i, "weights", n * inputs, inputs);
                if c.scales.is_some() {
                    for w in ["scales", "rolling_mean", "rolling_variance"] {
                        push(i, w, n, 1);
                    }
                }
            }
            Layer::Local(lc) => {
                push(i, "biases", lc.bias.numel(), 1);
                push(i, "weights", lc.weight.numel(), lc.weight.shape()[2]);
            }
            _ => {}
        }
    }
    b
}

fn run_case(case: &Value) -> Option<(Darknet, Tensor)> {
    let name = case["name"].as_str().unwrap();
    let net = match Darknet::from_cfg(case["cfg"].as_str().unwrap()) {
        Ok(n) => n,
        Err(e) => {
            // darknet adds a shortcut of another shape over the smaller range; aics refuses it
            assert_eq!(name, "shortcut_resample", "{name}: {e}");
            assert!(e.contains("shortcut needs equal shapes"), "{e}");
            return None;
        }
    };
    assert_eq!(
        net.num_weights() as u64,
        case["num_weights"].as_u64().unwrap(),
        "{name}: weight count"
    );
    net.load_weights_bytes(&weights(name, &net))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = json::usizes(&case["input"]);
    let n: usize = shape.iter().product();
    let x: Vec<f32> = hash_uniform(&format!("{name}/input"), n)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x = Tensor::from_vec(x, &[1, shape[0], shape[1], shape[2]]).unwrap();
    Some((net, x))
}

#[test]
fn darknet_layers_equal_the_darknet_program() {
    let f = json::load("darknet/layers.json");
    let mut checked = 0;
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some((net, x)) = run_case(case) else {
            continue;
        };
        let _g = aics_tensor::no_grad();
        let want = json::f64s(&case["output"]);
        // batch norm as darknet applies it, and folded into the weights for inference
        for (how, n) in [
            ("", None),
            (" (batch norm folded)", Some(net.fused().unwrap())),
        ] {
            let y = aics_nn::Module::forward(n.as_ref().unwrap_or(&net), &x)
                .unwrap()
                .to_vec();
            assert_close(
                &format!("{name} output{how}"),
                &y,
                &want,
                Tol::new(1e-5, 1e-4),
            );
        }
        checked += 1;
        if let Some(b) = case.get("boxes") {
            check_boxes(name, &net, &x, b);
        }
    }
    assert_eq!(checked, 11);
}

fn check_boxes(name: &str, net: &Darknet, x: &Tensor, b: &Value) {
    let (w, h) = (
        b["w"].as_u64().unwrap() as usize,
        b["h"].as_u64().unwrap() as usize,
    );
    let thresh = b["thresh"].as_f64().unwrap() as f32;
    let nms = b["nms"].as_f64().unwrap() as f32;
    let g = LetterboxGeom::new(w, h, net.width, net.height);
    let mut cands: Vec<Candidate> = Vec::new();
    for head in net.forward_heads(x).unwrap() {
        cands.extend(match head {
            HeadOutput::Yolo(hd, t) => decode_yolo(hd, &t, &g, thresh).unwrap(),
            HeadOutput::Region(hd, t) => decode_region(hd, &t, &g, thresh).unwrap(),
            HeadOutput::Detection(hd, t) => decode_detection(hd, &t, w, h, thresh).unwrap(),
        });
    }
    nms_sort(&mut cands, nms);
    let got: Vec<&Candidate> = cands
        .iter()
        .filter(|c| c.probs.iter().any(|&p| p > 0.0))
        .collect();
    let want = b["detections"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{name}: boxes after NMS: {got:?}");
    for wd in want {
        let wb = json::f64s(&wd["bbox"]);
        let wp: Vec<(usize, f64)> = wd["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap()))
            .collect();
        let found = got.iter().any(|c| {
            let boxes_close =
                (0..4).all(|k| (c.bbox[k] as f64 - wb[k]).abs() <= 1e-4 * (1.0 + wb[k].abs()));
            let nonzero: Vec<(usize, f32)> = c
                .probs
                .iter()
                .copied()
                .enumerate()
                .filter(|p| p.1 > 0.0)
                .collect();
            boxes_close
                && nonzero.len() == wp.len()
                && nonzero
                    .iter()
                    .zip(&wp)
                    .all(|(a, b)| a.0 == b.0 && (a.1 as f64 - b.1).abs() <= 1e-4)
        });
        assert!(
            found,
            "{name}: darknet's box {wb:?} with {wp:?} is not among {got:?}"
        );
    }
}
