//! `aics train`: train a classifier with a progress bar, per-epoch evaluation, a JSONL log, a
//! PNG of the curves, and an atomic checkpoint after every epoch that `--resume` continues from
//! exactly (same data order, same optimizer state).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aics_data::{Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, Transform};
use aics_nn::checkpoint::{load_checkpoint, save_checkpoint};
use aics_nn::loss::cross_entropy;
use aics_nn::optim::Optimizer;
use aics_nn::{clip_grad_norm, parameters, Adam, LrSchedule, Module, RmsProp, Sgd};
use aics_tensor::{no_grad, Tensor};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data_spec::{self, DataSpec};
use crate::dist::{DistArgs, Group};
use crate::meta::ModelMeta;
use crate::plot::{write_training_curves, Curve};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Model to train, any of the zoo's. For 28×28 images: mlp, lenet5, lstm_seq (an LSTM reading
    /// the rows as a sequence); for 32×32 (CIFAR-size):
    /// resnet20, resnet32, resnet44, resnet56, resnet110, alexnet_small, googlenet_small (with
    /// auxiliary losses); and, on any --image-size they fit: alexnet, alexnet_paper, vgg11, vgg13,
    /// vgg16, vgg19 (each also _bn), resnet18, resnet34, resnet50, resnet101, resnet152,
    /// mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, googlenet, googlenet_noaux,
    /// googlenet_paper, googlenet_naive, bn_inception,
    /// inception_v3, inception_v3_noaux.
    #[arg(long, default_value = "lenet5")]
    pub model: String,
    /// fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | folder:DIR
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// sgd | adam | adamw | rmsprop
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate (default: 0.05 for sgd, 0.001 for adam/adamw/rmsprop).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum of sgd and rmsprop [default: 0.9 for sgd, 0 for rmsprop, as PyTorch's
    /// examples and torch.optim.RMSprop]; adam and adamw refuse it (they have betas).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Nesterov momentum (sgd only).
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// const | step:S:G | multistep:A,B:G | cosine[:MIN]
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Linear warm-up epochs before the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hidden sizes of the MLP (e.g. 128,64), or of lstm_seq's layers (e.g. 128,128: two layers).
    #[arg(long)]
    pub hidden: Option<String>,
    /// Checkpoint file (default runs/MODEL-DATASET.safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint's last completed epoch, with the run's own settings (a
    /// different setting is refused; a larger --epochs extends the run).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs of this invocation, with a checkpoint, as if interrupted
    /// (for time-limited jobs); the schedule still spans --epochs and --resume continues.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// JSONL log, one line per epoch (default next to the checkpoint).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// PNG of the loss and accuracy curves (default next to the checkpoint).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Random crop (padding 4 for 32×32, 2 otherwise) and horizontal flips.
    #[arg(long)]
    pub augment: bool,
    /// Use only the first N training images.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Image size for folder data sets (HxW).
    #[arg(long, default_value = "32x32", value_parser = data_spec::parse_hw)]
    pub image_size: (usize, usize),
    /// Read folder data sets as grayscale.
    #[arg(long)]
    pub gray: bool,
    #[command(flatten)]
    pub dist: DistArgs,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// The settings that decide a run's result, stored in every checkpoint (`aics.run`), so that
/// `--resume` continues exactly the run that wrote it or says what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    dataset: String,
    image_size: (usize, usize),
    gray: bool,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
    seed: u64,
    batch_size: usize,
    optimizer: String,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    schedule: String,
    warmup: usize,
    label_smoothing: f64,
    clip_grad_norm: Option<f64>,
    augment: bool,
    /// The epochs the schedule spans: `--epochs` of the run's first start. A resumed run that
    /// asks for more epochs keeps it, so its first epochs repeat the original run exactly.
    horizon: usize,
    /// Ranks of a `--distributed` run (1 otherwise): each trains on its own shard with
    /// --batch-size images a step.
    #[serde(default = "one")]
    ranks: usize,
    /// Batch norm over all ranks' batches (`--sync-batchnorm`).
    #[serde(default)]
    sync_batchnorm: bool,
}

fn one() -> usize {
    1
}

const RUN_META: &str = "aics.run";

impl RunSettings {
    fn new(a: &TrainArgs, lr: f64, momentum: f64, ranks: usize) -> Self {
        RunSettings {
            dataset: a.dataset.clone(),
            image_size: a.image_size,
            gray: a.gray,
            limit_train: a.limit_train,
            limit_test: a.limit_test,
            seed: a.seed,
            batch_size: a.batch_size,
            optimizer: a.optimizer.clone(),
            lr,
            momentum,
            nesterov: a.nesterov,
            weight_decay: a.weight_decay,
            schedule: a.schedule.clone(),
            warmup: a.warmup,
            label_smoothing: a.label_smoothing,
            clip_grad_norm: a.clip_grad_norm,
            augment: a.augment,
            horizon: a.epochs,
            ranks,
            sync_batchnorm: a.dist.sync_batchnorm,
        }
    }

    /// The options whose values differ from `saved`'s, as `--flag VALUE (checkpoint: VALUE)`;
    /// the horizon is not compared (a run may be extended).
    fn differences(&self, saved: &RunSettings) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |flag: &str, now: String, then: String| {
            if now != then {
                d.push(format!("{flag} {now} (checkpoint: {then})"));
            }
        };
        cmp("--dataset", self.dataset.clone(), saved.dataset.clone());
        let hw = |s: &RunSettings| format!("{}x{}", s.image_size.0, s.image_size.1);
        cmp("--image-size", hw(self), hw(saved));
        cmp("--gray", self.gray.to_string(), saved.gray.to_string());
        cmp(
            "--limit-train",
            format!("{:?}", self.limit_train),
            format!("{:?}", saved.limit_train),
        );
        cmp(
            "--limit-test",
            format!("{:?}", self.limit_test),
            format!("{:?}", saved.limit_test),
        );
        cmp("--seed", self.seed.to_string(), saved.seed.to_string());
        cmp(
            "ranks (mpirun -np)",
            self.ranks.to_string(),
            saved.ranks.to_string(),
        );
        cmp(
            "--sync-batchnorm",
            self.sync_batchnorm.to_string(),
            saved.sync_batchnorm.to_string(),
        );
        cmp(
            "--batch-size",
            self.batch_size.to_string(),
            saved.batch_size.to_string(),
        );
        cmp(
            "--optimizer",
            self.optimizer.clone(),
            saved.optimizer.clone(),
        );
        cmp("--lr", self.lr.to_string(), saved.lr.to_string());
        cmp(
            "--momentum",
            self.momentum.to_string(),
            saved.momentum.to_string(),
        );
        cmp(
            "--nesterov",
            self.nesterov.to_string(),
            saved.nesterov.to_string(),
        );
        cmp(
            "--weight-decay",
            self.weight_decay.to_string(),
            saved.weight_decay.to_string(),
        );
        cmp("--schedule", self.schedule.clone(), saved.schedule.clone());
        cmp(
            "--warmup",
            self.warmup.to_string(),
            saved.warmup.to_string(),
        );
        cmp(
            "--label-smoothing",
            self.label_smoothing.to_string(),
            saved.label_smoothing.to_string(),
        );
        cmp(
            "--clip-grad-norm",
            format!("{:?}", self.clip_grad_norm),
            format!("{:?}", saved.clip_grad_norm),
        );
        cmp(
            "--augment",
            self.augment.to_string(),
            saved.augment.to_string(),
        );
        d
    }
}

pub fn limit(ds: Arc<dyn aics_data::Dataset>, n: Option<usize>) -> Arc<dyn aics_data::Dataset> {
    match n {
        Some(n) if n < ds.len() => Arc::new(aics_data::Subset::take(ds, n)),
        _ => ds,
    }
}

pub fn normalize(mean: &[f32], std: &[f32]) -> Result<Arc<dyn Transform>> {
    Ok(Arc::new(Normalize::new(mean.to_vec(), std.to_vec())?))
}

pub fn to_tensor(b: &aics_data::Batch) -> Result<Tensor> {
    Ok(Tensor::from_vec(b.images.clone(), &b.shape)?)
}

/// Mean loss, accuracy, and the confusion matrix (`[true][predicted]`) over a loader.
pub fn evaluate(
    model: &dyn Module,
    loader: &DataLoader,
    classes: usize,
) -> Result<(f64, f64, Vec<Vec<usize>>)> {
    let (loss_sum, n, confusion) = evaluate_part(model, loader, classes, 0, 1)?;
    let correct: usize = (0..classes).map(|i| confusion[i][i]).sum();
    Ok((
        loss_sum / n.max(1) as f64,
        correct as f64 / n.max(1) as f64,
        confusion,
    ))
}

/// The summed loss, the number of samples and the confusion matrix over batches `part`,
/// `part + parts`, … of a loader: one rank's share of an evaluation.
fn evaluate_part(
    model: &dyn Module,
    loader: &DataLoader,
    classes: usize,
    part: usize,
    parts: usize,
) -> Result<(f64, usize, Vec<Vec<usize>>)> {
    let _g = no_grad();
    model.set_training(false);
    let (mut loss_sum, mut n) = (0.0f64, 0usize);
    let mut confusion = vec![vec![0usize; classes]; classes];
    let batches: Box<dyn Iterator<Item = aics_data::error::Result<aics_data::Batch>>> =
        if parts == 1 {
            Box::new(loader.epoch(0))
        } else {
            Box::new(
                (part..loader.len())
                    .step_by(parts)
                    .map(|i| loader.batch(0, i)),
            )
        };
    for batch in batches {
        let batch = batch?;
        let logits = model.forward(&to_tensor(&batch)?)?;
        let loss = cross_entropy(&logits, &batch.labels, None, 0.0)?;
        loss_sum += loss.item()? as f64 * batch.labels.len() as f64;
        n += batch.labels.len();
        for (&y, p) in batch.labels.iter().zip(logits.argmax(1)?) {
            if y < classes && p < classes {
                confusion[y][p] += 1;
            }
        }
    }
    Ok((loss_sum, n, confusion))
}

const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];

/// The momentum `--optimizer` runs with: `--momentum` or its per-optimizer default; refused
/// where it would have no effect.
fn momentum(a: &TrainArgs) -> Result<f64> {
    if a.nesterov && a.optimizer != "sgd" {
        bail!(
            "--nesterov is a form of sgd's momentum; {} has none",
            a.optimizer
        );
    }
    match (a.optimizer.as_str(), a.momentum) {
        ("sgd", m) => Ok(m.unwrap_or(0.9)),
        ("rmsprop", m) => Ok(m.unwrap_or(0.0)),
        (o, Some(_)) => bail!("--momentum applies to sgd and rmsprop; {o} has betas instead"),
        (_, None) => Ok(0.0),
    }
}

fn make_optimizer(a: &TrainArgs, params: Vec<(String, Tensor)>) -> Result<Box<dyn Optimizer>> {
    let momentum = momentum(a)?;
    if let Some(m) = a.momentum.filter(|m| !(0.0..1.0).contains(m)) {
        bail!("--momentum {m}: expected a value in [0, 1)");
    }
    Ok(match a.optimizer.as_str() {
        "sgd" => Box::new(
            Sgd::new(params)
                .lr(a.lr.unwrap_or(0.05))
                .momentum(momentum)
                .weight_decay(a.weight_decay)
                .nesterov(a.nesterov),
        ),
        "adam" => Box::new(
            Adam::new(params)
                .lr(a.lr.unwrap_or(1e-3))
                .weight_decay(a.weight_decay),
        ),
        "adamw" => Box::new(
            Adam::adamw(params)
                .lr(a.lr.unwrap_or(1e-3))
                .weight_decay(a.weight_decay),
        ),
        "rmsprop" => Box::new(
            RmsProp::new(params)
                .lr(a.lr.unwrap_or(1e-3))
                .momentum(momentum)
                .weight_decay(a.weight_decay),
        ),
        other => bail!("unknown optimizer `{other}` (expected sgd, adam, adamw or rmsprop)"),
    })
}

fn read_log(path: &Path, upto: usize) -> Vec<EpochLog> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str::<EpochLog>(l).ok())
                .filter(|e| e.epoch <= upto)
                .collect()
        })
        .unwrap_or_default()
}

fn write_log(path: &Path, history: &[EpochLog]) -> Result<()> {
    let mut text = String::new();
    for h in history {
        text.push_str(&serde_json::to_string(h)?);
        text.push('\n');
    }
    aics_nn::checkpoint::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn plot(path: &Path, title: &str, history: &[EpochLog]) -> Result<()> {
    let pts = |f: fn(&EpochLog) -> f64| {
        history
            .iter()
            .map(|h| (h.epoch as f64, f(h)))
            .collect::<Vec<_>>()
    };
    let (tl, vl, ta, va) = (
        pts(|h| h.train_loss),
        pts(|h| h.test_loss),
        pts(|h| 100.0 * h.train_acc),
        pts(|h| 100.0 * h.test_acc),
    );
    write_training_curves(
        path,
        title,
        &[
            Curve {
                label: "train loss",
                points: &tl,
            },
            Curve {
                label: "test loss",
                points: &vl,
            },
        ],
        &[
            Curve {
                label: "train accuracy %",
                points: &ta,
            },
            Curve {
                label: "test accuracy %",
                points: &va,
            },
        ],
    )
}

/// `--augment`: a random crop of the images' own size (H × W) after padding by 4 pixels (2 below
/// 32 pixels), a horizontal flip with probability ½, then `norm`.
fn augmentation(in_shape: [usize; 3], norm: Normalize) -> Compose {
    let (h, w) = (in_shape[1], in_shape[2]);
    let pad = if h.min(w) >= 32 { 4 } else { 2 };
    Compose::new(vec![
        Box::new(RandomCrop {
            size: [h, w],
            padding: pad,
        }),
        Box::new(RandomHorizontalFlip::new(0.5)),
        Box::new(norm),
    ])
}

pub fn run(a: TrainArgs) -> Result<()> {
    if a.batch_size == 0 || a.epochs == 0 {
        bail!("--batch-size and --epochs must be positive");
    }
    if aics_vision::zoo_entry(&a.model).is_none() {
        bail!(
            "unknown model `{}` (expected one of {})",
            a.model,
            aics_vision::model_names().join(", ")
        );
    }
    if !OPTIMIZERS.contains(&a.optimizer.as_str()) {
        bail!(
            "unknown optimizer `{}` (expected {})",
            a.optimizer,
            OPTIMIZERS.join(", ")
        );
    }
    // checked here, before any data is read; parsed again below once the horizon is known
    LrSchedule::parse(&a.schedule, a.epochs.saturating_sub(a.warmup))
        .map_err(anyhow::Error::msg)?;
    let hidden = data_spec::parse_hidden(a.hidden.as_deref())?;
    if !hidden.is_empty() && !matches!(a.model.as_str(), "mlp" | "lstm_seq") {
        bail!("--hidden applies to --model mlp and lstm_seq only");
    }
    let DataSpec {
        name: ds_name,
        train,
        test,
        mean,
        std,
        classes,
    } = data_spec::load(&a.dataset, a.image_size, a.gray)?;
    let in_shape = train.shape();
    let meta = ModelMeta {
        model: a.model.clone(),
        in_shape,
        num_classes: train.num_classes(),
        hidden,
        dataset: a.dataset.clone(),
        mean: mean.clone(),
        std: std.clone(),
        classes,
    };
    let model = meta.build(a.seed)?;
    let stem = format!(
        "{}-{}",
        a.model,
        ds_name.split(':').next().unwrap_or("data")
    );
    let ckpt = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{stem}.safetensors")));
    let log_path = a
        .log
        .clone()
        .unwrap_or_else(|| ckpt.with_extension("jsonl"));
    let plot_path = a.plot.clone().unwrap_or_else(|| ckpt.with_extension("png"));
    for p in [&ckpt, &log_path, &plot_path] {
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create folder {}", d.display()))?;
        }
    }
    let mut opt = make_optimizer(&a, parameters(&model))?;
    let base_lr = opt.get_lr();
    // every rank's model is rank 0's from here on
    let mut group = Group::start(&a.dist, &model)?;
    let main = group.is_main();
    let mut run = RunSettings::new(&a, base_lr, momentum(&a)?, group.size());

    let mut start = 0;
    let mut history = Vec::new();
    if a.resume {
        let ck = load_checkpoint(&ckpt)
            .with_context(|| "--resume needs the checkpoint of an earlier run")?;
        let saved = ModelMeta::from_checkpoint(&ck)?;
        if saved.model != meta.model
            || saved.in_shape != meta.in_shape
            || saved.num_classes != meta.num_classes
        {
            bail!(
                "{}: checkpoint is for {} on {:?} with {} classes, not {} on {:?} with {} classes",
                ckpt.display(),
                saved.model,
                saved.in_shape,
                saved.num_classes,
                meta.model,
                meta.in_shape,
                meta.num_classes
            );
        }
        ck.load_into(&model)?;
        if ck.meta("optimizer") != Some(opt.name()) {
            bail!(
                "{}: checkpoint was trained with {}, not {}",
                ckpt.display(),
                ck.meta("optimizer").unwrap_or("no optimizer"),
                opt.name()
            );
        }
        opt.load_state(&ck.optimizer_state())?;
        start = ck.meta("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
        let saved: RunSettings = ck
            .meta(RUN_META)
            .and_then(|s| serde_json::from_str(s).ok())
            .with_context(|| {
                format!(
                    "{}: the checkpoint does not record its run's settings (written by an older aics), so --resume cannot continue it exactly; start a new run",
                    ckpt.display()
                )
            })?;
        let diff = run.differences(&saved);
        if !diff.is_empty() {
            bail!(
                "{}: --resume continues the checkpoint's run, but {}; give the checkpoint's settings, or start a new run",
                ckpt.display(),
                diff.join(", ")
            );
        }
        if a.epochs <= start {
            bail!(
                "{}: the checkpoint has already trained {start} epochs; ask for more with --epochs",
                ckpt.display()
            );
        }
        run.horizon = saved.horizon;
        if a.epochs > run.horizon {
            println!(
                "extending the run from {} to {} epochs: the schedule `{}` keeps the {}-epoch span it had, as the first {} epochs were trained with it (a cosine stays at its final rate from epoch {} on); start a new run to spread it over {} epochs",
                run.horizon,
                a.epochs,
                a.schedule,
                run.horizon,
                run.horizon,
                run.horizon + 1,
                a.epochs
            );
        }
        history = read_log(&log_path, start);
        if main {
            println!("resuming {} from epoch {start}", ckpt.display());
        }
        // each rank read the checkpoint; the broadcast makes sure they read the same one
        group.sync_state(&model)?;
    }
    let schedule = LrSchedule::parse(&a.schedule, run.horizon.saturating_sub(a.warmup))
        .map_err(anyhow::Error::msg)?;

    let train = limit(train, a.limit_train);
    let test = limit(test, a.limit_test);
    let norm = Normalize::new(mean.clone(), std.clone())?;
    let train_tf: Arc<dyn Transform> = if a.augment {
        Arc::new(augmentation(in_shape, norm))
    } else {
        Arc::new(norm)
    };
    let train_loader = DataLoader::new(
        train.clone(),
        a.batch_size,
        true,
        a.seed,
        Some(train_tf),
        false,
    )?
    .with_shard(group.rank(), group.size())?;
    let test_loader = DataLoader::new(
        test.clone(),
        1000.min(test.len().max(1)),
        false,
        0,
        Some(normalize(&mean, &std)?),
        false,
    )?;
    if main {
        println!(
            "training {} ({} parameters) on {} ({} train / {} test images, {:?}) for {} epochs, {} lr {} batch {}, {} threads{}",
            a.model,
            aics_nn::num_params(&model),
            ds_name,
            train.len(),
            test.len(),
            in_shape,
            a.epochs,
            opt.name(),
            base_lr,
            a.batch_size,
            aics_tensor::num_threads(),
            match group.size() {
                1 => String::new(),
                n => format!(
                    " a rank; {n} ranks, {} images a step in all",
                    n * a.batch_size
                ),
            }
        );
    }

    let end = match a.stop_after {
        Some(0) => bail!("--stop-after must be positive"),
        Some(n) => a.epochs.min(start + n),
        None => a.epochs,
    };
    let _sync = group.sync_batch_norm();
    for epoch in start..end {
        let lr = schedule.lr_at(base_lr, epoch, a.warmup);
        opt.set_lr(lr);
        model.set_training(true);
        let t0 = Instant::now();
        let pb = if main {
            ProgressBar::new(train_loader.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(format!("epoch {}/{}", epoch + 1, a.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (i, batch) in train_loader.epoch(epoch).enumerate() {
            let batch = batch?;
            // auxiliary classifiers (GoogLeNet, Inception-v3) add their weighted losses
            let (logits, aux) = model.forward_with_aux(&to_tensor(&batch)?)?;
            let mut loss = cross_entropy(&logits, &batch.labels, None, a.label_smoothing)?;
            for (w, aux_logits) in &aux {
                let l = cross_entropy(aux_logits, &batch.labels, None, a.label_smoothing)?;
                loss = loss.add(&l.mul_scalar(*w as f64))?;
            }
            opt.zero_grad();
            group.backward(&loss)?;
            if let Some(c) = a.clip_grad_norm {
                clip_grad_norm(opt.params(), c);
            }
            opt.step()?;
            let l = loss.item()? as f64;
            if !l.is_finite() {
                pb.abandon();
                bail!(
                    "epoch {}: loss became {l} at batch {i}; lower the learning rate (--lr)",
                    epoch + 1
                );
            }
            let n = batch.labels.len();
            loss_sum += l * n as f64;
            seen += n;
            correct += batch
                .labels
                .iter()
                .zip(logits.argmax(1)?)
                .filter(|(y, p)| **y == *p)
                .count();
            pb.inc(1);
            if i % 20 == 0 {
                pb.set_message(format!(
                    "loss {:.4} | {:.0} img/s",
                    loss_sum / seen as f64,
                    seen as f64 / t0.elapsed().as_secs_f64()
                ));
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        // the ranks evaluate rank 0's model (batch-norm statistics included), each a share
        group.sync_state(&model)?;
        let (rank, ranks) = (group.rank(), group.size());
        let (test_loss_sum, tested, confusion) =
            evaluate_part(&model, &test_loader, meta.num_classes, rank, ranks)?;
        let test_correct: usize = (0..meta.num_classes).map(|i| confusion[i][i]).sum();
        let mut sums = [
            loss_sum,
            correct as f64,
            seen as f64,
            test_loss_sum,
            test_correct as f64,
            tested as f64,
        ];
        group.sum(&mut sums)?;
        let [loss_sum, correct, seen, test_loss_sum, test_correct, tested] = sums;
        let rec = EpochLog {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1.0),
            train_acc: correct / seen.max(1.0),
            test_loss: test_loss_sum / tested.max(1.0),
            test_acc: test_correct / tested.max(1.0),
            lr,
            seconds: t0.elapsed().as_secs_f64(),
            images_per_s: seen / train_secs,
        };
        if !main {
            continue;
        }
        let test_acc = rec.test_acc;
        println!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  lr {:.4}  {:.1}s ({:.0} img/s)",
            rec.epoch,
            a.epochs,
            rec.train_loss,
            100.0 * rec.train_acc,
            rec.test_loss,
            100.0 * rec.test_acc,
            lr,
            rec.seconds,
            rec.images_per_s
        );
        history.push(rec);
        let mut md = meta.to_map();
        md.insert("epoch".into(), (epoch + 1).to_string());
        md.insert("seed".into(), a.seed.to_string());
        md.insert(RUN_META.into(), serde_json::to_string(&run)?);
        md.insert("test_acc".into(), format!("{test_acc:.6}"));
        save_checkpoint(&ckpt, &model, Some(opt.as_ref()), md)?;
        write_log(&log_path, &history)?;
        plot(&plot_path, &format!("{} on {}", a.model, ds_name), &history)?;
    }
    std::io::stdout().flush().ok();
    if main {
        println!(
            "checkpoint: {}\nlog: {}\ncurves: {}",
            ckpt.display(),
            log_path.display(),
            plot_path.display()
        );
    }
    group.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` names every model the zoo can train.
    #[test]
    fn help_names_every_model() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: TrainArgs,
        }
        let help = Cli::command().render_long_help().to_string();
        for m in aics_vision::model_names() {
            let named = help.contains(m)
                || m.strip_suffix("_bn")
                    .is_some_and(|b| help.contains(b) && help.contains("_bn"));
            assert!(named, "--help does not name {m}");
        }
    }

    /// The crop keeps non-square images whole-sized (before, 32×48 became 32×32).
    #[test]
    fn augmentation_keeps_the_image_size() {
        for shape in [[3, 32, 48], [1, 28, 28], [3, 40, 24]] {
            let norm = Normalize::new(vec![0.5; shape[0]], vec![0.25; shape[0]]).unwrap();
            let t = augmentation(shape, norm);
            assert_eq!(t.output_shape(shape).unwrap(), shape);
            let n = shape.iter().product();
            let mut rng = aics_data::Rng::new(1);
            let (img, out) = t.apply(vec![0.5; n], shape, &mut rng);
            assert_eq!((img.len(), out), (n, shape));
        }
    }
}
