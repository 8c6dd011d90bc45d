//! The character-level language model of the chapter (Karpathy's char-RNN): an embedding of
//! each character, stacked recurrent layers (RNN, LSTM and its variants, or GRU) and a linear
//! read-out to the next character's logits. Keys: `embed.weight`, `rnn.weight_ih_l0`, …,
//! `head.weight`, `head.bias` (a PyTorch `nn.Module` with attributes `embed`, `rnn`, `head` has
//! the same state dict).

use aics_nn::{Embedding, Linear, Module, Recurrent, RecurrentConfig, RecurrentState};
use aics_tensor::{no_grad, Cell, Rng, Tensor};

use crate::corpus::Vocab;
use crate::error::{config, Result};

/// The model's sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LmConfig {
    pub cell: Cell,
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
    /// Dropout between the recurrent layers.
    pub dropout: f64,
}

#[derive(aics_nn::Module)]
pub struct CharLm {
    pub cfg: LmConfig,
    #[module]
    pub embed: Embedding,
    #[module]
    pub rnn: Recurrent,
    #[module]
    pub head: Linear,
}

impl CharLm {
    pub fn new(cfg: LmConfig, rng: &mut Rng) -> Result<CharLm> {
        if cfg.vocab == 0 || cfg.embed == 0 {
            return Err(config(
                "language model",
                format!(
                    "vocabulary {} and embedding {} must be positive",
                    cfg.vocab, cfg.embed
                ),
            ));
        }
        let embed = Embedding::new(cfg.vocab, cfg.embed, rng);
        let rnn = Recurrent::new(
            RecurrentConfig::new(cfg.cell, cfg.embed, cfg.hidden)
                .layers(cfg.layers)
                .dropout(cfg.dropout),
            rng,
        )?;
        let head = Linear::new(cfg.hidden, cfg.vocab, true, rng)?;
        Ok(CharLm {
            cfg,
            embed,
            rnn,
            head,
        })
    }

    /// Logits (T·N, V) of the character after each of `ids` ((T, N) time-major), from `state`
    /// (zeros when absent), and the state after the last step.
    pub fn forward_ids(
        &self,
        ids: &[usize],
        t: usize,
        n: usize,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, RecurrentState)> {
        if ids.len() != t * n || t == 0 || n == 0 {
            return Err(config(
                "language model",
                format!("{} ids for a ({t}, {n}) batch", ids.len()),
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i >= self.cfg.vocab) {
            return Err(config(
                "language model",
                format!(
                    "character id {bad} outside the vocabulary of {}",
                    self.cfg.vocab
                ),
            ));
        }
        let x = self.embed.lookup(ids, &[t, n])?;
        let (y, st) = self.rnn.forward_state(&x, state, None)?;
        let logits = self.head.forward(&y.reshape(&[t * n, self.cfg.hidden])?)?;
        Ok((logits, st))
    }

    /// [`CharLm::forward_ids`] with the ids as a (T, N) tensor of integral values: what an
    /// export traces, the ids an input of the graph.
    pub fn forward_tensor(
        &self,
        ids: &Tensor,
        state: Option<&RecurrentState>,
    ) -> aics_nn::Result<(Tensor, RecurrentState)> {
        let s = ids.shape();
        if s.len() != 2 || s[0] == 0 || s[1] == 0 {
            return Err(aics_nn::NnError::Config {
                layer: "CharLm".into(),
                msg: format!("expected ids (T, N), got {s:?}"),
            });
        }
        let (t, n) = (s[0], s[1]);
        let x = self.embed.forward(ids)?;
        let (y, st) = self.rnn.forward_state(&x, state, None)?;
        let logits = self.head.forward(&y.reshape(&[t * n, self.cfg.hidden])?)?;
        Ok((logits, st))
    }

    /// `length` characters after `prompt`, each drawn from the softmax of the logits divided by
    /// `temperature` (in evaluation mode: no dropout).
    pub fn sample(
        &self,
        vocab: &Vocab,
        prompt: &str,
        length: usize,
        temperature: f64,
        rng: &mut Rng,
    ) -> Result<String> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(config(
                "sampling",
                format!("temperature must be positive, got {temperature}"),
            ));
        }
        if vocab.len() != self.cfg.vocab {
            return Err(config(
                "sampling",
                format!(
                    "vocabulary of {} characters for a model of {}",
                    vocab.len(),
                    self.cfg.vocab
                ),
            ));
        }
        if prompt.is_empty() {
            return Err(config(
                "sampling",
                "the prompt must hold at least one character",
            ));
        }
        let ids = vocab.encode(prompt)?;
        let _g = no_grad();
        self.set_training(false);
        let (logits, mut state) = self.forward_ids(&ids, ids.len(), 1, None)?;
        let v = self.cfg.vocab;
        let mut last: Vec<f32> = logits.to_vec()[(ids.len() - 1) * v..].to_vec();
        let mut out = Vec::with_capacity(length);
        for k in 0..length {
            let next = draw(&last, temperature, rng);
            out.push(next);
            if k + 1 == length {
                break;
            }
            let (l, s) = self.forward_ids(&[next], 1, 1, Some(&state))?;
            last = l.to_vec();
            state = s;
        }
        Ok(vocab.decode(&out))
    }
}

impl Module for CharLm {
    /// Logits (T·N, V) for ids given as a (T, N) tensor of integral values, from zero states.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let s = x.shape();
        if s.len() != 2 {
            return Err(aics_nn::NnError::Config {
                layer: "CharLm".into(),
                msg: format!("expected ids (T, N), got {s:?}"),
            });
        }
        Ok(self.forward_tensor(x, None)?.0)
    }
}

/// An index drawn from `softmax(logits / temperature)`.
pub fn draw(logits: &[f32], temperature: f64, rng: &mut Rng) -> usize {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let p: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - m) / temperature).exp())
        .collect();
    let total: f64 = p.iter().sum();
    let mut u = rng.uniform() * total;
    for (i, &pi) in p.iter().enumerate() {
        if u < pi {
            return i;
        }
        u -= pi;
    }
    p.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cell: Cell) -> LmConfig {
        LmConfig {
            cell,
            vocab: 5,
            embed: 4,
            hidden: 6,
            layers: 2,
            dropout: 0.0,
        }
    }

    #[test]
    fn keys_are_a_pytorch_modules() {
        let m = CharLm::new(cfg(Cell::Gru { reset_after: true }), &mut Rng::new(0)).unwrap();
        let keys: Vec<String> = aics_nn::state_dict(&m)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys[0], "embed.weight");
        assert!(keys.contains(&"rnn.weight_hh_l1".to_string()));
        assert_eq!(keys.last().unwrap(), "head.bias");
    }

    #[test]
    fn learns_a_repeating_pattern() {
        // "abcd" repeated: after a few hundred steps the next character is certain
        let text: String = "abcde".repeat(60);
        let vocab = Vocab::from_text(&text).unwrap();
        let ids = vocab.encode(&text).unwrap();
        let mut rng = Rng::new(1);
        let m = CharLm::new(
            cfg(Cell::Lstm {
                peephole: false,
                coupled: false,
            }),
            &mut rng,
        )
        .unwrap();
        let mut opt = aics_nn::Adam::new(aics_nn::parameters(&m)).lr(0.02);
        let b = crate::Batches::new(&ids, 4, 10).unwrap();
        let mut last = f64::NAN;
        for _ in 0..8 {
            let mut state: Option<RecurrentState> = None;
            for k in 0..b.steps() {
                let (t, x, y) = b.get(k);
                let (logits, st) = m.forward_ids(&x, t, 4, state.as_ref()).unwrap();
                let loss = aics_nn::loss::cross_entropy(&logits, &y, None, 0.0).unwrap();
                last = loss.item().unwrap() as f64;
                aics_nn::Optimizer::zero_grad(&opt);
                loss.backward().unwrap();
                aics_nn::Optimizer::step(&mut opt).unwrap();
                state = Some(st.detach());
            }
        }
        assert!(last < 0.1, "loss {last}");
        let s = m.sample(&vocab, "ab", 8, 0.5, &mut rng).unwrap();
        assert_eq!(s, "cdeabcde");
        assert!(m.sample(&vocab, "az", 3, 1.0, &mut rng).is_err());
        assert!(m.sample(&vocab, "a", 3, 0.0, &mut rng).is_err());
    }
}
