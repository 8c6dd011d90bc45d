//! `Recurrent` and `RecurrentCell` against PyTorch 1.13's `nn.RNN`/`nn.LSTM`/`nn.GRU` and their
//! cells (`fixtures/rnn.json`, `fixtures/rnn_packed.json`, written by `fixtures/gen_rnn.py`):
//! outputs, final states and the gradients of the input, the initial states and every parameter,
//! by state-dict key — multi-layer, bidirectional, batch_first, proj_size, packed sequences.

use aics_nn::{Kind, Module, Recurrent, RecurrentCell, RecurrentConfig, RecurrentState};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_uniform, Cell, Rng, Tensor};
use aics_testkit::json::{f64s, load};
use serde_json::Value;

/// The generator's `hv(key, shape, scale)`.
fn hv(key: &str, shape: &[usize], scale: f64) -> Tensor {
    let n = shape.iter().product();
    let v = hash_uniform(key, n)
        .into_iter()
        .map(|u| ((2.0 * u - 1.0) * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn usz(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn cell_of(c: &Value) -> Cell {
    match c["kind"].as_str().unwrap() {
        "rnn" if c["nonlinearity"] == "relu" => Cell::RnnRelu,
        "rnn" => Cell::RnnTanh,
        "lstm" => Cell::Lstm {
            peephole: false,
            coupled: false,
        },
        _ => Cell::Gru { reset_after: true },
    }
}

fn close(what: &str, got: &Tensor, want: &Value) {
    let w = f64s(want);
    assert_eq!(got.numel(), w.len(), "{what}: size");
    assert_close(what, &got.to_vec(), &w, Tol::mixed(2e-5));
}

fn check_layers(file: &str) -> usize {
    let fx = load(file);
    let cases = fx["layers"].as_array().unwrap();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cell = cell_of(c);
        let cfg = RecurrentConfig::new(cell, usz(&c["input_size"]), usz(&c["hidden_size"]))
            .layers(usz(&c["num_layers"]))
            .bidirectional(c["bidirectional"].as_bool().unwrap())
            .batch_first(c["batch_first"].as_bool().unwrap())
            .proj_size(usz(&c["proj_size"]));
        let m = Recurrent::new(cfg, &mut Rng::new(0)).unwrap();
        let mut keys = Vec::new();
        m.visit("", &mut |k, t, kind| {
            assert_eq!(kind, Kind::Param);
            t.set_data(hv(&format!("{name}/{k}"), t.shape(), 0.7).to_vec())
                .unwrap();
            keys.push(k);
        });
        let want_keys: Vec<&String> = c["grads"].as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted.iter().collect::<Vec<_>>(), want_keys, "{name}: keys");
        let xs: Vec<usize> = f64s(&c["x_shape"]).iter().map(|&v| v as usize).collect();
        let x = hv(&format!("{name}/x"), &xs, 1.5).requires_grad_(true);
        let n = if cfg.batch_first { xs[0] } else { xs[1] };
        let ld = cfg.num_layers * cfg.directions();
        let (h, p) = (cfg.hidden_size, cfg.state_size());
        let h0 = hv(&format!("{name}/h0"), &[ld, n, p], 1.0).requires_grad_(true);
        let c0 = hv(&format!("{name}/c0"), &[ld, n, h], 1.0).requires_grad_(true);
        let init = c["init_state"].as_bool().unwrap();
        let state = RecurrentState {
            h: h0.clone(),
            c: cell.has_c().then(|| c0.clone()),
        };
        let lengths: Option<Vec<usize>> =
            c["lengths"].as_array().map(|a| a.iter().map(usz).collect());
        let (out, st) = m
            .forward_state(&x, init.then_some(&state), lengths.as_deref())
            .unwrap();
        close(&format!("{name} output"), &out, &c["out"]);
        close(&format!("{name} h_n"), &st.h, &c["h_n"]);
        let mut loss = out
            .mul(&hv(&format!("{name}/g_out"), out.shape(), 1.0))
            .unwrap()
            .sum()
            .add(
                &st.h
                    .mul(&hv(&format!("{name}/g_h"), st.h.shape(), 1.0))
                    .unwrap()
                    .sum(),
            )
            .unwrap();
        if let Some(cn) = &st.c {
            close(&format!("{name} c_n"), cn, &c["c_n"]);
            loss = loss
                .add(
                    &cn.mul(&hv(&format!("{name}/g_c"), cn.shape(), 1.0))
                        .unwrap()
                        .sum(),
                )
                .unwrap();
        }
        loss.backward().unwrap();
        close(&format!("{name} grad x"), &x.grad().unwrap(), &c["grad_x"]);
        if init {
            close(
                &format!("{name} grad h0"),
                &h0.grad().unwrap(),
                &c["grad_h0"],
            );
            if cell.has_c() {
                close(
                    &format!("{name} grad c0"),
                    &c0.grad().unwrap(),
                    &c["grad_c0"],
                );
            }
        }
        m.visit("", &mut |k, t, _| {
            close(
                &format!("{name} grad {k}"),
                &t.grad().unwrap(),
                &c["grads"][&k],
            );
        });
    }
    cases.len()
}

#[test]
fn layers_equal_pytorch() {
    assert!(check_layers("rnn.json") >= 5);
}

#[test]
fn packed_sequences_equal_pytorch() {
    assert!(check_layers("rnn_packed.json") >= 4);
}

#[test]
fn cells_equal_pytorch() {
    let fx = load("rnn_packed.json");
    let cases = fx["cells"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cell = cell_of(c);
        let (i, h, n) = (usz(&c["input_size"]), usz(&c["hidden_size"]), usz(&c["n"]));
        let m = RecurrentCell::new(cell, i, h, true, &mut Rng::new(0)).unwrap();
        m.visit("", &mut |k, t, _| {
            t.set_data(hv(&format!("{name}/{k}"), t.shape(), 0.7).to_vec())
                .unwrap();
        });
        let x = hv(&format!("{name}/x"), &[n, i], 1.5).requires_grad_(true);
        let h0 = hv(&format!("{name}/h0"), &[n, h], 1.0).requires_grad_(true);
        let c0 = hv(&format!("{name}/c0"), &[n, h], 1.0).requires_grad_(true);
        let (h1, c1) = m
            .step(&x, Some((&h0, cell.has_c().then_some(&c0))))
            .unwrap();
        close(&format!("{name} h1"), &h1, &c["h1"]);
        let mut loss = h1
            .mul(&hv(&format!("{name}/g_h"), &[n, h], 1.0))
            .unwrap()
            .sum();
        if let Some(c1) = &c1 {
            close(&format!("{name} c1"), c1, &c["c1"]);
            loss = loss
                .add(
                    &c1.mul(&hv(&format!("{name}/g_c"), &[n, h], 1.0))
                        .unwrap()
                        .sum(),
                )
                .unwrap();
        }
        loss.backward().unwrap();
        close(&format!("{name} grad x"), &x.grad().unwrap(), &c["grad_x"]);
        close(
            &format!("{name} grad h0"),
            &h0.grad().unwrap(),
            &c["grad_h0"],
        );
        if cell.has_c() {
            close(
                &format!("{name} grad c0"),
                &c0.grad().unwrap(),
                &c["grad_c0"],
            );
        }
        m.visit("", &mut |k, t, _| {
            close(
                &format!("{name} grad {k}"),
                &t.grad().unwrap(),
                &c["grads"][&k],
            );
        });
    }
}
