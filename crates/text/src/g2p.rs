//! Grapheme to phoneme: the trained GRU encoder–decoder of the `g2p_en` package (Park & Kim),
//! run from its shipped weights (`checkpoint20.npz`), and the CMU pronouncing dictionary.
//!
//! The encoder reads the word's letters and `</s>` through an embedding and a GRU; its last
//! state starts the decoder, a GRU cell fed `<s>` and then each phoneme it predicted, read out by
//! a linear layer; decoding is greedy and stops at `</s>` or after 20 phonemes — as the
//! package's `G2p.predict`. Both GRUs have PyTorch's gate order (r, z, n) and equations.

use std::collections::HashMap;
use std::path::Path;

use aics_nn::{Linear, Module, Recurrent, RecurrentCell, RecurrentConfig};
use aics_tensor::{no_grad, Cell, Rng, Tensor};

use crate::error::{config, Result, TextError};

/// The encoder's input symbols: `<pad>`, `<unk>`, `</s>`, then a–z.
pub const GRAPHEMES: [&str; 29] = [
    "<pad>", "<unk>", "</s>", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
    "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
];

/// The decoder's output symbols: `<pad>`, `<unk>`, `<s>`, `</s>`, then ARPAbet with stress.
pub const PHONEMES: [&str; 74] = [
    "<pad>", "<unk>", "<s>", "</s>", "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2",
    "AO0", "AO1", "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0",
    "EH1", "EH2", "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2",
    "IY0", "IY1", "IY2", "JH", "K", "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2",
    "P", "R", "S", "SH", "T", "TH", "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y",
    "Z", "ZH",
];

/// Most phonemes decoded for one word (the package's limit).
pub const MAX_PHONEMES: usize = 20;

pub struct G2p {
    enc_emb: Tensor,
    encoder: Recurrent,
    dec_emb: Tensor,
    decoder: RecurrentCell,
    fc: Linear,
}

impl G2p {
    /// The model from `g2p_en`'s `checkpoint20.npz` (arrays `enc_emb`, `enc_w_ih`, `enc_w_hh`,
    /// `enc_b_ih`, `enc_b_hh`, the same five `dec_*`, `fc_w`, `fc_b`).
    pub fn from_npz(path: &Path) -> Result<G2p> {
        let arrays: HashMap<String, (Vec<usize>, Vec<f32>)> = aics_io::npz::load_npz(path)?
            .into_iter()
            .map(|(k, t)| (k, (t.shape, t.data)))
            .collect();
        G2p::from_arrays(&arrays).map_err(|e| config(path.display().to_string(), e.to_string()))
    }

    /// The model from named arrays (shape, row-major data).
    pub fn from_arrays(a: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Result<G2p> {
        let get = |k: &str| -> Result<&(Vec<usize>, Vec<f32>)> {
            a.get(k)
                .ok_or_else(|| config("g2p weights", format!("no array `{k}`")))
        };
        let (es, _) = get("enc_emb")?;
        let (hs, _) = get("enc_w_hh")?;
        if es.len() != 2 || hs.len() != 2 || es[0] != GRAPHEMES.len() || hs[0] % 3 != 0 {
            return Err(config(
                "g2p weights",
                format!(
                    "enc_emb {es:?} must be ({}, E) and enc_w_hh {hs:?} (3·H, H)",
                    GRAPHEMES.len()
                ),
            ));
        }
        let (e, h) = (es[1], hs[1]);
        let want: [(&str, Vec<usize>); 12] = [
            ("enc_emb", vec![GRAPHEMES.len(), e]),
            ("enc_w_ih", vec![3 * h, e]),
            ("enc_w_hh", vec![3 * h, h]),
            ("enc_b_ih", vec![3 * h]),
            ("enc_b_hh", vec![3 * h]),
            ("dec_emb", vec![PHONEMES.len(), e]),
            ("dec_w_ih", vec![3 * h, e]),
            ("dec_w_hh", vec![3 * h, h]),
            ("dec_b_ih", vec![3 * h]),
            ("dec_b_hh", vec![3 * h]),
            ("fc_w", vec![PHONEMES.len(), h]),
            ("fc_b", vec![PHONEMES.len()]),
        ];
        let mut t = HashMap::new();
        for (k, shape) in want {
            let (s, d) = get(k)?;
            if *s != shape {
                return Err(config(
                    "g2p weights",
                    format!("`{k}` has shape {s:?}, expected {shape:?}"),
                ));
            }
            t.insert(k, Tensor::from_vec(d.clone(), s)?);
        }
        let gru = Cell::Gru { reset_after: true };
        let mut rng = Rng::new(0);
        let encoder = Recurrent::new(RecurrentConfig::new(gru, e, h), &mut rng)?;
        let decoder = RecurrentCell::new(gru, e, h, true, &mut rng)?;
        let set = |m: &dyn Module, names: &[(&str, &str)]| -> Result<()> {
            let mut err = None;
            m.visit("", &mut |key, p, _| {
                if let Some((_, src)) = names.iter().find(|(k, _)| *k == key) {
                    if let Err(x) = p.set_data(t[src].to_vec()) {
                        err = Some(x);
                    }
                }
            });
            err.map_or(Ok(()), |x| Err(x.into()))
        };
        set(
            &encoder,
            &[
                ("weight_ih_l0", "enc_w_ih"),
                ("weight_hh_l0", "enc_w_hh"),
                ("bias_ih_l0", "enc_b_ih"),
                ("bias_hh_l0", "enc_b_hh"),
            ],
        )?;
        set(
            &decoder,
            &[
                ("weight_ih", "dec_w_ih"),
                ("weight_hh", "dec_w_hh"),
                ("bias_ih", "dec_b_ih"),
                ("bias_hh", "dec_b_hh"),
            ],
        )?;
        let fc = Linear {
            weight: t["fc_w"].clone(),
            bias: Some(t["fc_b"].clone()),
        };
        encoder.set_training(false);
        Ok(G2p {
            enc_emb: t["enc_emb"].clone(),
            encoder,
            dec_emb: t["dec_emb"].clone(),
            decoder,
            fc,
        })
    }

    /// The phonemes of `word` by greedy decoding, as `G2p.predict`: each character is looked up
    /// as it is (a–z; anything else is `<unk>`), `</s>` is appended.
    pub fn predict(&self, word: &str) -> Result<Vec<&'static str>> {
        let _g = no_grad();
        let mut ids: Vec<usize> = word
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    3 + (c as u8 - b'a') as usize
                } else {
                    1
                }
            })
            .collect();
        ids.push(2);
        let t = ids.len();
        let x = self.enc_emb.embedding(&ids, &[t, 1])?;
        let (_, st) = self.encoder.forward_state(&x, None, None)?;
        let h_dim = st.h.shape()[2];
        let mut h = st.h.reshape(&[1, h_dim])?;
        let mut prev = 2; // <s>
        let mut out = Vec::new();
        for _ in 0..MAX_PHONEMES {
            let d = self.dec_emb.embedding(&[prev], &[1])?;
            h = self.decoder.step(&d, Some((&h, None)))?.0;
            let logits = self.fc.forward(&h)?.to_vec();
            // argmax, first of equals (numpy's)
            let mut best = 0;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            if best == 3 {
                break;
            }
            out.push(PHONEMES[best]);
            prev = best;
        }
        Ok(out)
    }
}

/// The CMU pronouncing dictionary (`cmudict.dict`: `word PH PH …`, variants as `word(2)`,
/// comments after `#`): each word's first pronunciation.
pub struct CmuDict {
    words: HashMap<String, Vec<String>>,
}

impl CmuDict {
    pub fn load(path: &Path) -> Result<CmuDict> {
        let text = crate::corpus::read_text(path)?;
        let mut words: HashMap<String, Vec<String>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let Some(head) = it.next() else { continue };
            let phones: Vec<String> = it.map(str::to_string).collect();
            if phones.is_empty() {
                return Err(TextError::Config {
                    what: path.display().to_string(),
                    msg: format!("line {}: `{head}` has no phonemes", n + 1),
                });
            }
            let word = head.split('(').next().unwrap_or(head).to_string();
            words.entry(word).or_insert(phones);
        }
        Ok(CmuDict { words })
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    pub fn get(&self, word: &str) -> Option<&[String]> {
        self.words.get(word).map(|v| v.as_slice())
    }
    /// Every word with its first pronunciation, sorted by word.
    pub fn entries(&self) -> Vec<(&str, &[String])> {
        let mut v: Vec<(&str, &[String])> = self
            .words
            .iter()
            .map(|(k, p)| (k.as_str(), p.as_slice()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// Levenshtein distance between two phoneme sequences.
pub fn edit_distance<A: PartialEq<B>, B>(a: &[A], b: &[B]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if x == y {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        let a = ["K", "AE1", "T"];
        assert_eq!(edit_distance(&a, &["K", "AE1", "T"]), 0);
        assert_eq!(edit_distance(&a, &["K", "AH0", "T", "S"]), 2);
        assert_eq!(edit_distance::<&str, &str>(&[], &["A"]), 1);
    }

    #[test]
    fn missing_or_misshapen_arrays_are_named() {
        let mut a = HashMap::new();
        a.insert("enc_emb".to_string(), (vec![29, 4], vec![0.0; 116]));
        let e = G2p::from_arrays(&a).err().unwrap().to_string();
        assert!(e.contains("enc_w_hh"), "{e}");
    }
}
