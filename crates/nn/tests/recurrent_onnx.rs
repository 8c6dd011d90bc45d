//! The ONNX backend test vectors of LSTM (with peepholes among them), GRU (Cho's form, ONNX's
//! default `linear_before_reset = 0`) and RNN (`fixtures/onnx_rnn.json`, from Debian's
//! libonnx-testdata 1.12.0 by `fixtures/gen_onnx_rnn.py`) through aics's recurrent op, after
//! re-ordering ONNX's gate blocks into aics's.

use aics_nn::{onnx_gate_perm, reorder_blocks, ONNX_PEEPHOLE_PERM};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{Cell, RecurrentOpts, Tensor};
use aics_testkit::json::{f64s, load};
use serde_json::Value;

fn tensor(v: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape = f64s(&v["shape"]).iter().map(|&d| d as usize).collect();
    let data = f64s(&v["data"]).iter().map(|&d| d as f32).collect();
    (shape, data)
}

#[test]
fn onnx_golden_vectors_pass() {
    let fx = load("onnx_rnn.json");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    let mut peephole_seen = false;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let at = &c["attributes"];
        let h = at["hidden_size"].as_u64().unwrap() as usize;
        let batchwise = at["layout"].as_u64() == Some(1);
        let ins = &c["inputs"];
        let has_p = ins.get("P").is_some();
        peephole_seen |= has_p;
        let cell = match c["op"].as_str().unwrap() {
            "LSTM" => Cell::Lstm {
                peephole: has_p,
                coupled: false,
            },
            "GRU" => Cell::Gru {
                reset_after: at["linear_before_reset"].as_u64() == Some(1),
            },
            _ => Cell::RnnTanh,
        };
        let perm = onnx_gate_perm(cell);
        let (xs, xd) = tensor(&ins["X"]);
        let mut x = Tensor::from_vec(xd, &xs).unwrap();
        if batchwise {
            x = x.transpose(0, 1).unwrap();
        }
        let (t, n, i) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let gh = perm.len() * h;
        let (_, w) = tensor(&ins["W"]);
        let (_, r) = tensor(&ins["R"]);
        let w_ih = Tensor::from_vec(reorder_blocks(&w, perm, h * i).unwrap(), &[gh, i]).unwrap();
        let w_hh = Tensor::from_vec(reorder_blocks(&r, perm, h * h).unwrap(), &[gh, h]).unwrap();
        let (b_ih, b_hh) = match ins.get("B") {
            Some(b) => {
                let (_, b) = tensor(b);
                let wb = reorder_blocks(&b[..gh], perm, h).unwrap();
                let rb = reorder_blocks(&b[gh..], perm, h).unwrap();
                (
                    Some(Tensor::from_vec(wb, &[gh]).unwrap()),
                    Some(Tensor::from_vec(rb, &[gh]).unwrap()),
                )
            }
            None => (None, None),
        };
        let h0 = match ins.get("initial_h") {
            Some(v) => Tensor::from_vec(tensor(v).1, &[n, h]).unwrap(),
            None => Tensor::zeros(&[n, h]),
        };
        let c0 = ins
            .get("initial_c")
            .map(|v| Tensor::from_vec(tensor(v).1, &[n, h]).unwrap());
        let peep = ins.get("P").map(|v| {
            let p = reorder_blocks(&tensor(v).1, &ONNX_PEEPHOLE_PERM, h).unwrap();
            Tensor::from_vec(p, &[3, h]).unwrap()
        });
        let lengths: Option<Vec<usize>> = ins
            .get("sequence_lens")
            .map(|v| tensor(v).1.iter().map(|&l| l as usize).collect());
        let xp = x
            .reshape(&[t * n, i])
            .unwrap()
            .linear(&w_ih, b_ih.as_ref())
            .unwrap()
            .reshape(&[t, n, gh])
            .unwrap();
        let out = xp
            .recurrent(
                cell,
                &h0,
                &w_hh,
                RecurrentOpts {
                    b_hh: b_hh.as_ref(),
                    c0: c0.as_ref(),
                    peephole: peep.as_ref(),
                    lengths: lengths.as_deref(),
                    ..Default::default()
                },
            )
            .unwrap();
        let outs = &c["outputs"];
        let (_, yh) = tensor(&outs["Y_h"]);
        assert_close(
            &format!("{name} Y_h"),
            &out.h_n.to_vec(),
            &yh,
            Tol::mixed(1e-5),
        );
        if let Some(y) = outs.get("Y") {
            // Y is (T, 1, N, H), or (N, T, 1, H) batchwise
            let mut got = out.output.clone();
            if batchwise {
                got = got.transpose(0, 1).unwrap();
            }
            assert_close(
                &format!("{name} Y"),
                &got.to_vec(),
                &tensor(y).1,
                Tol::mixed(1e-5),
            );
        }
    }
    assert!(peephole_seen);
}
