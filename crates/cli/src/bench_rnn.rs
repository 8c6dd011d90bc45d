//! Recurrent workloads of `aics bench`, each repeated by `bench/torch_bench.py` in PyTorch:
//!
//! * `lstm_charlm_train`, `gru_charlm_train`: one Adam step of a character-level language model
//!   (vocabulary 65, embedding 64, 2 layers of hidden 256, batch 32, 100 steps of truncated
//!   BPTT: forward, cross-entropy, backward through time, update);
//! * `lstm_infer_b1`: one LSTM layer of hidden 512 (input 512) over 100 steps of batch 1, no
//!   gradient.
//!
//! Reported as tokens a second.

use aics_nn::loss::cross_entropy;
use aics_nn::{parameters, Adam, Module, Optimizer, Recurrent, RecurrentConfig};
use aics_tensor::{no_grad, Cell, Rng, Tensor};
use aics_text::{CharLm, LmConfig};
use anyhow::Result;

use crate::bench::{time, Outcome};

const VOCAB: usize = 65;
const T: usize = 100;
const N: usize = 32;

/// Character ids of step t, column b: a formula `bench/torch_bench.py` repeats.
fn ids(offset: usize) -> Vec<usize> {
    (0..T * N).map(|k| (k * 7 + 3 + offset) % VOCAB).collect()
}

pub(crate) fn run(
    want: &dyn Fn(&str) -> bool,
    min_time: f64,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    for (name, cell) in [
        (
            "lstm_charlm_train",
            Cell::Lstm {
                peephole: false,
                coupled: false,
            },
        ),
        ("gru_charlm_train", Cell::Gru { reset_after: true }),
    ] {
        if !want(name) {
            continue;
        }
        let cfg = LmConfig {
            cell,
            vocab: VOCAB,
            embed: 64,
            hidden: 256,
            layers: 2,
            dropout: 0.0,
        };
        let lm = CharLm::new(cfg, &mut Rng::new(0))?;
        let mut opt = Adam::new(parameters(&lm)).lr(2e-3);
        let (x, y) = (ids(0), ids(1));
        let s = time(min_time, || {
            opt.zero_grad();
            let (logits, _) = lm.forward_ids(&x, T, N, None)?;
            let l = cross_entropy(&logits, &y, None, 0.0)?;
            l.backward()?;
            opt.step()?;
            Ok(())
        })?;
        out.push(Outcome {
            name,
            seconds: s,
            flop: None,
            images: None,
            tokens: Some((T * N) as f64 / s),
            peak_mb: None,
        });
    }
    if want("lstm_infer_b1") {
        let m = Recurrent::new(RecurrentConfig::lstm(512, 512), &mut Rng::new(0))?;
        m.set_training(false);
        let x = Tensor::rand(&[T, 1, 512], -1.0, 1.0, &mut Rng::new(1));
        let s = time(min_time, || {
            let _g = no_grad();
            m.forward(&x)?;
            Ok(())
        })?;
        out.push(Outcome {
            name: "lstm_infer_b1",
            seconds: s,
            flop: None,
            images: None,
            tokens: Some(T as f64 / s),
            peak_mb: None,
        });
    }
    Ok(())
}
