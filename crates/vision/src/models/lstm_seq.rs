//! Sequence classification with an LSTM: an image read as a sequence of its rows (28 steps of
//! 28 pixels for MNIST-sized inputs; a row of C channels is C·W values), the LSTM's last state
//! read out by a linear layer. Keys `rnn.weight_ih_l0`, …, `fc.weight`, `fc.bias`.
//! `hidden` gives one size per layer (default one layer of 128; all layers the same size).

use aics_nn::{Linear, Module, NnError, Recurrent, RecurrentConfig, Result};
use aics_tensor::{Rng, Tensor};

use super::ModelConfig;

#[derive(aics_nn::Module)]
pub struct LstmSeq {
    #[module]
    pub rnn: Recurrent,
    #[module]
    pub fc: Linear,
}

pub fn lstm_seq(cfg: &ModelConfig) -> Result<LstmSeq> {
    let mut rng = Rng::new(cfg.seed);
    let hidden = if cfg.hidden.is_empty() {
        vec![128]
    } else {
        cfg.hidden.clone()
    };
    if hidden.iter().any(|&h| h != hidden[0] || h == 0) {
        return Err(NnError::Config {
            layer: "lstm_seq".into(),
            msg: format!(
                "hidden sizes must be one positive size per layer, all equal; got {hidden:?}"
            ),
        });
    }
    let [c, _, w] = cfg.in_shape;
    let rnn = Recurrent::new(
        RecurrentConfig::lstm(c * w, hidden[0])
            .layers(hidden.len())
            .batch_first(true),
        &mut rng,
    )?;
    let fc = Linear::new(hidden[0], cfg.num_classes, true, &mut rng)?;
    Ok(LstmSeq { rnn, fc })
}

impl Module for LstmSeq {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(NnError::Config {
                layer: "lstm_seq".into(),
                msg: format!("expected images (N, C, H, W), got {s:?}"),
            });
        }
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        // rows as time steps: (N, H, C·W)
        let seq = x.permute(&[0, 2, 1, 3])?.reshape(&[n, h, c * w])?;
        let (_, st) = self.rnn.forward_state(&seq, None, None)?;
        let l = st.h.shape()[0];
        let last = st.h.narrow(0, l - 1, 1)?.reshape(&[n, st.h.shape()[2]])?;
        self.fc.forward(&last)
    }
    fn type_name(&self) -> String {
        "LstmSeq".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_names_keys_like_pytorch() {
        let cfg = ModelConfig {
            in_shape: [1, 6, 5],
            num_classes: 3,
            hidden: vec![4, 4],
            seed: 0,
        };
        let m = lstm_seq(&cfg).unwrap();
        let keys: Vec<String> = aics_nn::state_dict(&m)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(keys.contains(&"rnn.weight_ih_l1".to_string()));
        assert_eq!(keys.last().unwrap(), "fc.bias");
        assert_eq!(m.rnn.cfg.input_size, 5);
        let x = Tensor::rand(&[2, 1, 6, 5], 0.0, 1.0, &mut Rng::new(1));
        assert_eq!(m.forward(&x).unwrap().shape(), &[2, 3]);
        // the rows are the time steps: reversing them changes the logits
        let rev = x.index_select(2, &[5, 4, 3, 2, 1, 0]).unwrap();
        assert!(
            m.forward(&rev)
                .unwrap()
                .max_abs_diff(&m.forward(&x).unwrap())
                .unwrap()
                > 1e-6
        );
        let bad = ModelConfig {
            hidden: vec![4, 8],
            ..cfg
        };
        assert!(lstm_seq(&bad).is_err());
    }
}
