//! `aics g2p WORD…`: English words to ARPAbet phonemes with `g2p_en`'s trained GRU
//! encoder–decoder (greedy decoding), after a CMUdict lookup with `--dict`; `--eval-every N`
//! scores the model on every N-th CMUdict word.

use std::path::PathBuf;

use aics_text::g2p::{edit_distance, CmuDict, G2p};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Args, Debug)]
pub struct G2pArgs {
    /// Words to transcribe (lower-cased; letters outside a–z are unknown to the model).
    pub words: Vec<String>,
    /// One JSON line per word: {"word", "phonemes", "source"}.
    #[arg(long)]
    pub json: bool,
    /// Look each word up in CMUdict first (as g2p_en does); the model answers the others.
    #[arg(long)]
    pub dict: bool,
    /// g2p_en's checkpoint20.npz.
    #[arg(long, default_value = ".cache/weights/g2p_en/checkpoint20.npz")]
    pub weights: PathBuf,
    /// The CMU pronouncing dictionary (cmudict.dict), for --dict and --eval-every.
    #[arg(long, default_value = ".cache/cmudict/cmudict.dict")]
    pub cmudict: PathBuf,
    /// Instead of words: score the model on every N-th CMUdict entry of letters only (word
    /// accuracy and phoneme error rate against its first pronunciation).
    #[arg(long)]
    pub eval_every: Option<usize>,
}

fn missing(p: &std::path::Path) -> String {
    format!(
        "{}: missing; run `bash scripts/setup.sh` or give the file's path",
        p.display()
    )
}

pub fn run(a: G2pArgs) -> Result<()> {
    if !a.weights.exists() {
        bail!("{} (--weights)", missing(&a.weights));
    }
    let model = G2p::from_npz(&a.weights)?;
    let need_dict = a.dict || a.eval_every.is_some();
    if need_dict && !a.cmudict.exists() {
        bail!("{} (--cmudict)", missing(&a.cmudict));
    }
    let dict = if need_dict {
        Some(CmuDict::load(&a.cmudict)?)
    } else {
        None
    };
    if let Some(every) = a.eval_every {
        if every == 0 {
            bail!("--eval-every must be at least 1");
        }
        if !a.words.is_empty() || a.dict {
            bail!("--eval-every scores the model on CMUdict; it takes no words and no --dict");
        }
        let d = dict.as_ref().context("CMUdict")?;
        let entries: Vec<_> = d
            .entries()
            .into_iter()
            .filter(|(w, _)| w.chars().all(|c| c.is_ascii_lowercase()))
            .step_by(every)
            .collect();
        let pb = ProgressBar::new(entries.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} words [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut right, mut edits, mut phones) = (0usize, 0usize, 0usize);
        for (w, want) in &entries {
            let got = model.predict(w)?;
            if got.len() == want.len() && got.iter().zip(want.iter()).all(|(g, w)| g == w) {
                right += 1;
            }
            edits += edit_distance(&got, want);
            phones += want.len();
            pb.inc(1);
        }
        pb.finish_and_clear();
        let line = json!({"words": entries.len(), "every": every,
            "word_accuracy": right as f64 / entries.len().max(1) as f64,
            "phoneme_error_rate": edits as f64 / phones.max(1) as f64});
        if a.json {
            println!("{line}");
        } else {
            println!(
                "{} CMUdict words (every {every}th): word accuracy {:.2}%, phoneme error rate {:.2}%",
                entries.len(),
                100.0 * right as f64 / entries.len().max(1) as f64,
                100.0 * edits as f64 / phones.max(1) as f64
            );
        }
        return Ok(());
    }
    if a.words.is_empty() {
        bail!("give at least one word (or --eval-every N)");
    }
    for w in &a.words {
        let word = w.to_lowercase();
        let (phonemes, source): (Vec<String>, &str) = match dict.as_ref().and_then(|d| d.get(&word))
        {
            Some(p) => (p.to_vec(), "cmudict"),
            None => (
                model
                    .predict(&word)?
                    .into_iter()
                    .map(String::from)
                    .collect(),
                "model",
            ),
        };
        if a.json {
            println!(
                "{}",
                json!({"word": w, "phonemes": phonemes, "source": source})
            );
        } else {
            println!("{w}\t{}", phonemes.join(" "));
        }
    }
    Ok(())
}
