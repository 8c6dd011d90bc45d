//! `aics stylize-train`: train Johnson et al.'s image-transformation network for one painting
//! on a folder of photos, with the perceptual losses; `aics stylize --model NET.safetensors`
//! then stylises a photo in one forward pass.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aics_nn::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use aics_nn::{load_state_dict, parameters, Adam, Module, Optimizer};
use aics_style::fast::{transform_net, Perceptual};
use aics_style::picture;
use aics_style::vgg::Vgg19;
use aics_tensor::{no_grad, Rng, Tensor};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::dist::{DistArgs, Group};

#[derive(clap::Args, Debug)]
pub struct StylizeTrainArgs {
    /// The painting whose style the network learns.
    #[arg(long, default_value = ".cache/images/starry_night.jpg")]
    pub style: PathBuf,
    /// Training photos: `folder:DIR` (every .png/.jpg/.jpeg under DIR).
    #[arg(long)]
    pub dataset: String,
    /// VGG19 weights for the losses (default: the Oxford weights fetched by setup).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Training crops are SIZE × SIZE.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// The painting is scaled to this longest side before its Gram matrices are taken (default:
    /// --size). A larger painting has larger brush strokes in pixels, and so will the output.
    #[arg(long)]
    pub style_size: Option<u32>,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight of the content loss (mean squared relu2_2 difference, Caffe VGG19 units).
    #[arg(long, default_value_t = 1.0)]
    pub content_weight: f64,
    /// Weight of the style loss (mean over the four layers of the squared Gram differences).
    /// Higher gives more paint and less photo (at 30, 300 steps at 128² lose the photo).
    #[arg(long, default_value_t = 5.0)]
    pub style_weight: f64,
    #[arg(long, default_value_t = 1e2)]
    pub tv_weight: f64,
    /// Where the network is written (atomically, every --save-every steps and at the end).
    #[arg(long, default_value = "runs/fast-style.safetensors")]
    pub checkpoint: PathBuf,
    #[arg(long, default_value_t = 200)]
    pub save_every: usize,
    /// A photo stylised with the current network at every save (CHECKPOINT stem + `_preview.png`).
    #[arg(long, default_value = ".cache/images/chelsea.png")]
    pub preview: PathBuf,
    /// One JSON line per step.
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from --checkpoint (weights, Adam's state and the step it reached) up to --steps;
    /// the log is appended to.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub dist: DistArgs,
}

fn photos(spec: &str) -> Result<Vec<PathBuf>> {
    let Some(dir) = spec.strip_prefix("folder:") else {
        bail!("--dataset {spec}: expected folder:DIR");
    };
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .with_context(|| format!("{}: cannot read the folder", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{dir}: no .png or .jpg images found");
    }
    Ok(out)
}

/// Scale the shorter side to `size`, crop a random `size × size` square, as (3, size, size).
fn crop(path: &Path, size: u32, rng: &mut Rng) -> Result<Vec<f32>> {
    let img = picture::read(path)?;
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (
            size,
            ((h as f64 * size as f64 / w as f64).round() as u32).max(size),
        )
    } else {
        (
            ((w as f64 * size as f64 / h as f64).round() as u32).max(size),
            size,
        )
    };
    let img = picture::resize(&img, nw, nh);
    let x0 = rng.below((nw - size + 1) as usize) as u32;
    let y0 = rng.below((nh - size + 1) as usize) as u32;
    let sub = image::imageops::crop_imm(&img, x0, y0, size, size).to_image();
    Ok(picture::to_tensor(&sub).to_vec())
}

/// Peak memory of a training step per pixel of the batch, rounded up from the measured peak
/// resident size (2.06 GB at 256², batch 4, with the weights and the process itself: 7.9 KB).
const TRAIN_BYTES_PER_PIXEL: usize = 8 << 10;

pub fn run(a: StylizeTrainArgs) -> Result<()> {
    if a.batch_size == 0 || a.steps == 0 || a.size < 32 {
        bail!("--batch-size and --steps must be positive and --size at least 32");
    }
    let side = a.size as usize;
    let need = TRAIN_BYTES_PER_PIXEL
        .saturating_mul(side.saturating_mul(side))
        .saturating_mul(a.batch_size);
    if let Some(avail) = crate::stylize::available_memory() {
        if need > avail {
            bail!(
                "training on {} crops of {}×{} needs about {:.1} GB, but only {:.1} GB is available; lower --size or --batch-size",
                a.batch_size,
                a.size,
                a.size,
                need as f64 / 1e9,
                avail as f64 / 1e9
            );
        }
    }
    if a.dist.sync_batchnorm {
        bail!("--sync-batchnorm: the transformation network has no batch norm (it normalises each image by itself)");
    }
    let files = photos(&a.dataset)?;
    if let Some(dir) = a.checkpoint.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
        }
    }
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::stylize::DEFAULT_VGG));
    if !weights.exists() {
        bail!(
            "{}: not found; run `bash scripts/setup.sh` or pass --weights PATH",
            weights.display()
        );
    }
    let vgg = Vgg19::load(&weights)?;
    let painting = picture::read(&a.style)?;
    let style_size = a.style_size.unwrap_or(a.size);
    if style_size < 16 {
        bail!("--style-size {style_size}: expected at least 16 pixels");
    }
    let (pw, ph) = picture::fit(painting.width(), painting.height(), style_size);
    let painting = picture::to_tensor(&picture::resize(&painting, pw, ph));
    let losses = Perceptual::new(
        &vgg,
        &painting,
        a.content_weight,
        a.style_weight,
        a.tv_weight,
    )?;
    let net = transform_net(a.seed)?;
    let mut opt = Adam::new(parameters(&net)).lr(a.lr);
    // with --distributed every rank's network is rank 0's from here on
    let mut group = Group::start(&a.dist, &net)?;
    let main = group.is_main();
    let (rank, ranks) = (group.rank(), group.size());
    let mut start = 0;
    if a.resume {
        let ck = load_checkpoint(&a.checkpoint).with_context(|| {
            format!(
                "{}: --resume needs the checkpoint of an earlier run",
                a.checkpoint.display()
            )
        })?;
        check_kind(&ck)?;
        ck.load_into(&net)?;
        let state = ck.optimizer_state();
        if state.is_empty() && main {
            println!(
                "{}: no optimizer state saved; Adam starts afresh",
                a.checkpoint.display()
            );
        } else {
            opt.load_state(&state)
                .with_context(|| format!("{}: Adam's state", a.checkpoint.display()))?;
        }
        start = ck.meta("step").and_then(|s| s.parse().ok()).unwrap_or(0);
        if start >= a.steps {
            bail!(
                "{}: already trained for {start} steps; ask for more with --steps",
                a.checkpoint.display()
            );
        }
        if main {
            println!("resuming {} from step {start}", a.checkpoint.display());
        }
        group.sync_state(&net)?;
    }
    let preview = picture::read(&a.preview).ok();
    if main {
        println!(
            "training the transformation network for {} on {} photos ({}×{} crops, batch {}{}) for {} steps",
            a.style.display(),
            files.len(),
            a.size,
            a.size,
            a.batch_size,
            if ranks > 1 { format!(" a rank, {} in all over {ranks} ranks", ranks * a.batch_size) } else { String::new() },
            a.steps
        );
    }
    let mut log = match &a.log {
        Some(p) if main => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(a.resume)
                .truncate(!a.resume)
                .open(p)
                .with_context(|| format!("{}: cannot create", p.display()))?,
        ),
        _ => None,
    };
    let pb = if main {
        ProgressBar::new(a.steps as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_position(start as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // a resumed run draws other crops than the first steps did
    let mut rng = Rng::new(a.seed ^ (start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut cursor = order.len();
    let s = a.size as usize;
    for step in start + 1..=a.steps {
        let t0 = Instant::now();
        let mut batch = Vec::with_capacity(a.batch_size * 3 * s * s);
        // every rank draws the crops of the whole batch of all ranks (the same random stream
        // as one process with that batch) and keeps its own part of them
        for i in 0..a.batch_size * ranks {
            if cursor == order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            let c = crop(&files[order[cursor]], a.size, &mut rng)?;
            if i / a.batch_size == rank {
                batch.extend(c);
            }
            cursor += 1;
        }
        let x = Tensor::from_vec(batch, &[a.batch_size, 3, s, s])?;
        opt.zero_grad();
        let y = net.forward(&x)?;
        let (total, mut l) = losses.loss(&vgg, &x, &y)?;
        group.backward(&total)?;
        opt.step()?;
        if ranks > 1 {
            // the batch's losses: the mean of the ranks' means
            let mut v = [l.content, l.style, l.tv, l.total];
            group.sum(&mut v)?;
            let n = ranks as f64;
            (l.content, l.style, l.tv, l.total) = (v[0] / n, v[1] / n, v[2] / n, v[3] / n);
        }
        if !l.total.is_finite() {
            bail!(
                "the loss became {} at step {step}; lower --lr or the style weight",
                l.total
            );
        }
        let secs = t0.elapsed().as_secs_f64();
        pb.inc(1);
        pb.set_message(format!(
            "content {:.3e} style {:.3e} tv {:.3e} | {:.2} s/step",
            l.content, l.style, l.tv, secs
        ));
        if let Some(f) = log.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"step": step, "content_loss": l.content, "style_loss": l.style,
                    "tv_loss": l.tv, "total_loss": l.total, "seconds": secs})
            )?;
        }
        if main && (step % a.save_every.max(1) == 0 || step == a.steps) {
            save(&net, &opt, &a, step)?;
            if let Some(p) = &preview {
                let out = a.checkpoint.with_file_name(format!(
                    "{}_preview.png",
                    a.checkpoint
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("fast-style")
                ));
                let (w, h) = picture::fit(p.width(), p.height(), 512);
                let img = stylize_image(&net, &picture::resize(p, w, h))?;
                picture::write_png(&img, &out)?;
            }
        }
    }
    pb.finish_and_clear();
    if main {
        println!("network: {}", a.checkpoint.display());
    }
    group.finish()
}

fn save(net: &dyn Module, opt: &dyn Optimizer, a: &StylizeTrainArgs, step: usize) -> Result<()> {
    let meta = HashMap::from([
        ("kind".to_string(), "fast-style".to_string()),
        ("style".to_string(), a.style.display().to_string()),
        ("step".to_string(), step.to_string()),
    ]);
    save_checkpoint(&a.checkpoint, net, Some(opt), meta)?;
    Ok(())
}

/// One forward pass of the network on an RGB image.
pub fn stylize_image(net: &dyn Module, img: &image::RgbImage) -> Result<image::RgbImage> {
    let _g = no_grad();
    net.set_training(false);
    let y = aics_style::fast::stylize(net, &picture::to_tensor(img))?;
    Ok(picture::to_image(&y)?)
}

/// Refuse a checkpoint that `stylize-train` did not write.
fn check_kind(ck: &Checkpoint) -> Result<()> {
    if ck.meta("kind") != Some("fast-style") {
        bail!(
            "{}: not a network written by `aics stylize-train`",
            ck.path.display()
        );
    }
    Ok(())
}

/// Load a network written by `stylize-train`.
pub fn load_net(path: &Path) -> Result<aics_nn::Sequential> {
    let ck = load_checkpoint(path)?;
    check_kind(&ck)?;
    let net = transform_net(0)?;
    load_state_dict(&net, &ck.model_tensors(), true)
        .with_context(|| format!("{}: loading the transformation network", path.display()))?;
    Ok(net)
}
