//! Real trained recurrent weights: Resemblyzer's speaker encoder (a 3-layer LSTM, 40 → 256, then
//! linear, ReLU and L2 norm; `pretrained.pt`, a legacy `torch.save` of
//! `{step, model_state, optimizer_state}`) loads into `Recurrent` by PyTorch's keys and gives the
//! package's own output on a fixed input (`fixtures/resemblyzer.json`, from
//! `fixtures/gen_resemblyzer.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use aics_nn::{load_state_dict, Linear, Module, Recurrent, RecurrentConfig};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_uniform, no_grad, Rng, Tensor};
use aics_testkit::json::{f64s, load};

#[test]
#[ignore = "needs .cache/weights/resemblyzer/pretrained.pt (scripts/setup.sh)"]
fn resemblyzer_lstm_gives_the_packages_embedding() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/weights/resemblyzer/pretrained.pt");
    let all = aics_io::load_pth(&p).unwrap();
    let pick = |prefix: &str| -> HashMap<String, (Vec<usize>, Vec<f32>)> {
        all.iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(prefix)
                    .map(|s| (s.to_string(), (t.shape.clone(), t.data.clone())))
            })
            .collect()
    };
    let lstm = Recurrent::new(
        RecurrentConfig::lstm(40, 256).layers(3).batch_first(true),
        &mut Rng::new(0),
    )
    .unwrap();
    load_state_dict(&lstm, &pick("model_state.lstm."), true).unwrap();
    let mut rng = Rng::new(0);
    let linear = Linear::new(256, 256, true, &mut rng).unwrap();
    load_state_dict(&linear, &pick("model_state.linear."), true).unwrap();
    lstm.set_training(false);

    let fx = load("resemblyzer.json");
    let mels: Vec<f32> = hash_uniform("resemblyzer/mels", 2 * 30 * 40)
        .into_iter()
        .map(|u| (2.0 * u - 1.0 + 1.0) as f32)
        .collect();
    let x = Tensor::from_vec(mels, &[2, 30, 40]).unwrap();
    let _g = no_grad();
    let (_, st) = lstm.forward_state(&x, None, None).unwrap();
    let last = st.h.narrow(0, 2, 1).unwrap().reshape(&[2, 256]).unwrap();
    assert_close(
        "hidden[-1]",
        &last.to_vec(),
        &f64s(&fx["hidden_last"]),
        Tol::mixed(1e-5),
    );
    let raw = linear.forward(&last).unwrap().relu();
    let norm = raw.square().sum_dim(1, true).unwrap().sqrt();
    let embeds = raw.div(&norm).unwrap();
    assert_close(
        "embeds",
        &embeds.to_vec(),
        &f64s(&fx["embeds"]),
        Tol::mixed(1e-5),
    );
}
