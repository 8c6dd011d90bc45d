//! `aics gan train|sample|interpolate|eval`: the original GAN, DCGAN and WGAN trained on
//! images (Fashion-MNIST, MNIST, a folder) or on the 2-D mixtures `ring8` and `grid25`, with
//! sample grids from fixed noise, atomic checkpoints of both networks and both optimizers,
//! exact resume, and mode collapse measured: modes covered on the mixtures; on class-labelled
//! images the class histogram of generated samples under a trained classifier, its KL
//! divergence to uniform, and a Fréchet distance in the classifier's penultimate features.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aics_gan::metrics::{class_histogram, classes_covered, frechet_distance, kl_to_uniform};
use aics_gan::models::dcgan_config_from_shapes;
use aics_gan::train::{sample, step_rng};
use aics_gan::{Arch, Gan, GanConfig, GanTrainer, Generator, Objective, Toy};
use aics_nn::checkpoint::{load_checkpoint, save_checkpoint_optims, write_atomic, Checkpoint};
use aics_nn::Module;
use aics_tensor::{no_grad, Rng, Tensor};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::plot::{write_scatter, ScatterPanel};

#[derive(Args, Debug)]
pub struct GanArgs {
    #[command(subcommand)]
    pub cmd: GanCmd,
}

#[derive(Subcommand, Debug)]
pub enum GanCmd {
    /// Train a GAN, DCGAN or WGAN (default: DCGAN on Fashion-MNIST at 32×32).
    Train(TrainArgs),
    /// A grid of samples from a trained generator (an aics checkpoint, or PyTorch's DCGAN
    /// example's netG .pth).
    Sample(SampleArgs),
    /// Walk the latent space between two seeds: a straight line and a slerp, one row each.
    Interpolate(InterpolateArgs),
    /// Measure mode collapse: modes covered (ring8, grid25), or the class histogram, its KL
    /// divergence to uniform, classes covered and the Fréchet distance in a classifier's
    /// features (image data sets).
    Eval(EvalArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Goodfellow et al.'s GAN: fully connected generator and discriminator.
    Gan,
    /// Radford et al.'s DCGAN: transposed convolutions, batch norm, Adam 2e-4, β₁ 0.5.
    Dcgan,
    /// Arjovsky et al.'s WGAN: DCGAN's networks (fully connected on 2-D data), a critic
    /// without sigmoid, weights clipped to ±0.01, RMSprop 5e-5, 5 critic steps a generator step.
    Wgan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// The generator minimises log(1 − D(G(z))): the game as first written.
    Minimax,
    /// The generator minimises −log D(G(z)).
    NonSaturating,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value = "dcgan")]
    model: ModelArg,
    /// fashion-mnist[:DIR], mnist:DIR, folder:DIR (images of one size, any subfolders), ring8 or
    /// grid25.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: String,
    /// The generator's loss, for --model gan (default: non-saturating).
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// Epochs: passes over the images, or `--iterations` generator steps on ring8/grid25.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Image side, 32 or 64: 28-pixel images are padded to 32 or resized to 64, a folder's
    /// resized (default 32).
    #[arg(long)]
    image_size: Option<usize>,
    /// DCGAN/WGAN: ngf = ndf, the channels of the widest-resolution layers (default 64).
    #[arg(long)]
    width: Option<usize>,
    /// Samples a discriminator step (default 64; 256 on ring8/grid25).
    #[arg(long)]
    batch: Option<usize>,
    /// Learning rate of both networks (default: 2e-4 with Adam; 5e-5 with RMSprop for WGAN;
    /// 1e-3 with Adam on ring8/grid25).
    #[arg(long)]
    lr: Option<f64>,
    /// ring8/grid25: generator steps an epoch (default 500).
    #[arg(long)]
    iterations: Option<usize>,
    /// Image data sets: train on the first N images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Image data sets: generated images scored each epoch (the class histogram, the Fréchet
    /// distance); 0 skips them (default 10000).
    #[arg(long)]
    eval_samples: Option<usize>,
    /// The classifier that scores generated images (an `aics train` checkpoint; default
    /// runs/lenet5-fashion-mnist.safetensors when it exists, for Fashion-MNIST).
    #[arg(long)]
    classifier: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint, written atomically after every epoch (default runs/gan-MODEL-DATASET.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// JSON lines, one per epoch (and every 100 iterations on ring8/grid25; default: the
    /// checkpoint's path with .jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Where the per-epoch sample grids (or scatter plots) go (default: the checkpoint's path
    /// without extension, plus `-samples/`).
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Continue the run that wrote --checkpoint, up to --epochs (the learning rates are
    /// constant, so a run may also be extended).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    dist: crate::dist::DistArgs,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// An `aics gan train` checkpoint, or a DCGAN generator's state dict (.pth).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value_t = 64)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The PNG grid (a scatter plot for ring8/grid25).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct InterpolateArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// The two seeds whose latent codes are the ends.
    #[arg(long, num_args = 2, default_values_t = [1u64, 2])]
    seeds: Vec<u64>,
    /// Images a row, ends included.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value = "interpolate.png")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// One or more `aics gan train` checkpoints.
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// The classifier for image data sets (default runs/lenet5-fashion-mnist.safetensors for
    /// Fashion-MNIST).
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Generated samples scored (default 10000 images, 2500 points).
    #[arg(long)]
    n: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// ring8/grid25: real and generated points of every checkpoint, side by side (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// ring8/grid25: modes covered against generator steps, one curve a checkpoint, from each
    /// run's log (the checkpoint's path with .jsonl) (PNG).
    #[arg(long)]
    curves: Option<PathBuf>,
}

pub fn run(a: GanArgs) -> Result<()> {
    match a.cmd {
        GanCmd::Train(t) => train(t),
        GanCmd::Sample(s) => run_sample(s),
        GanCmd::Interpolate(i) => run_interpolate(i),
        GanCmd::Eval(e) => run_eval(e),
    }
}

/// Where the set-up script's `aics train` writes its LeNet-5.
const DEFAULT_CLASSIFIER: &str = "runs/lenet5-fashion-mnist.safetensors";

// ---------------------------------------------------------------------------------------------
// data

/// Training images as bytes (N, C, S, S), with what is needed to score generated ones.
struct Images {
    pixels: Vec<u8>,
    n: usize,
    c: usize,
    size: usize,
    /// The images' side before resizing (28 for the IDX sets), for the classifier.
    native: usize,
    /// How 28-pixel images became `size`: padded by 2 (32) or resized (64).
    padded: bool,
    /// Labelled held-out images at their native size (the IDX sets' test split), for the
    /// Fréchet distance's reference and the classifier's check.
    test: Option<(Vec<f32>, Vec<usize>, usize)>,
}

enum Data {
    Images(Images),
    Toy(Toy),
}

/// Load an image data set spec as bytes at `size`².
fn load_images(spec: &str, size: usize, limit: Option<usize>, with_test: bool) -> Result<Images> {
    let (kind, dir) = match spec.split_once(':') {
        Some((k, d)) => (k, Some(PathBuf::from(d))),
        None => (spec, None),
    };
    match kind {
        "fashion-mnist" | "mnist" => {
            // the classifier data sets' own loader, with their paths and messages
            let spec = crate::data_spec::load(spec, (28, 28), true)?;
            let (train, test) = (spec.train, with_test.then_some(spec.test));
            use aics_data::Dataset;
            let [c, h, w] = train.shape();
            let n = limit.unwrap_or(train.len()).min(train.len());
            let mut pixels = Vec::with_capacity(n * c * size * size);
            for i in 0..n {
                let (x, _) = train.get(i)?;
                let bytes: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
                pixels.extend(fit(&bytes, c, h, w, size)?);
            }
            let test = match test {
                Some(t) => {
                    let mut v = Vec::with_capacity(t.len() * c * h * w);
                    let mut labels = Vec::with_capacity(t.len());
                    for i in 0..t.len() {
                        let (x, l) = t.get(i)?;
                        v.extend(x);
                        labels.push(l);
                    }
                    Some((v, labels, t.num_classes()))
                }
                None => None,
            };
            Ok(Images {
                pixels,
                n,
                c,
                size,
                native: h,
                padded: size == 32 && h == 28,
                test,
            })
        }
        "folder" => {
            let d = dir.context("--dataset folder:DIR needs a folder of images")?;
            let mut files = Vec::new();
            collect_images(&d, &mut files)?;
            files.sort();
            if files.is_empty() {
                bail!("{}: no images (.png, .jpg, .jpeg) in it or its subfolders", d.display());
            }
            if let Some(l) = limit {
                files.truncate(l);
            }
            let mut dims = None;
            let mut pixels = Vec::with_capacity(files.len() * 3 * size * size);
            for f in &files {
                let img = image::open(f)
                    .with_context(|| format!("{}: not a readable image", f.display()))?
                    .to_rgb8();
                let dim = img.dimensions();
                match dims {
                    None => dims = Some((dim, f.clone())),
                    Some((first, ref g)) if first != dim => bail!(
                        "{}: {}×{} pixels, but {} has {}×{}: a folder's images must share one size",
                        f.display(),
                        dim.0,
                        dim.1,
                        g.display(),
                        first.0,
                        first.1
                    ),
                    _ => {}
                }
                let img = if dim != (size as u32, size as u32) {
                    image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::Triangle)
                } else {
                    img
                };
                for ch in 0..3 {
                    pixels.extend(img.pixels().map(|p| p.0[ch]));
                }
            }
            let native = dims.map_or(size, |((w, _), _)| w as usize);
            Ok(Images {
                pixels,
                n: files.len(),
                c: 3,
                size,
                native,
                padded: false,
                test: None,
            })
        }
        other => bail!("unknown --dataset `{other}` (expected fashion-mnist[:DIR], mnist:DIR, folder:DIR, ring8 or grid25)"),
    }
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the folder", dir.display()))?;
    for e in rd {
        let p = e?.path();
        if p.is_dir() {
            collect_images(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// One `c`×`h`×`w` byte image at `size`²: padded with black when it is 28 → 32, resized
/// (bilinear) otherwise.
fn fit(x: &[u8], c: usize, h: usize, w: usize, size: usize) -> Result<Vec<u8>> {
    if h == size && w == size {
        return Ok(x.to_vec());
    }
    let mut out = vec![0u8; c * size * size];
    if h == 28 && w == 28 && size == 32 {
        for ch in 0..c {
            for y in 0..28 {
                let dst = ch * 1024 + (y + 2) * 32 + 2;
                out[dst..dst + 28].copy_from_slice(&x[ch * 784 + y * 28..ch * 784 + y * 28 + 28]);
            }
        }
        return Ok(out);
    }
    for ch in 0..c {
        let plane = image::GrayImage::from_raw(
            w as u32,
            h as u32,
            x[ch * h * w..(ch + 1) * h * w].to_vec(),
        )
        .context("image plane")?;
        let r = image::imageops::resize(
            &plane,
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        );
        out[ch * size * size..(ch + 1) * size * size].copy_from_slice(r.as_raw());
    }
    Ok(out)
}

impl Images {
    /// Images `idx` as a batch in [−1, 1].
    fn batch(&self, idx: &[usize]) -> Result<Tensor> {
        let per = self.c * self.size * self.size;
        let mut v = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            v.extend(
                self.pixels[i * per..(i + 1) * per]
                    .iter()
                    .map(|&b| b as f32 / 127.5 - 1.0),
            );
        }
        Ok(Tensor::from_vec(
            v,
            &[idx.len(), self.c, self.size, self.size],
        )?)
    }
}

// ---------------------------------------------------------------------------------------------
// the run's description, stored in the checkpoint

fn objective_of(model: ModelArg, loss: Option<LossArg>) -> Objective {
    match (model, loss) {
        (ModelArg::Wgan, _) => Objective::Wasserstein,
        (_, Some(LossArg::Minimax)) => Objective::Minimax,
        _ => Objective::NonSaturating,
    }
}

fn objective_name(o: Objective) -> &'static str {
    match o {
        Objective::Minimax => "minimax",
        Objective::NonSaturating => "non_saturating",
        Objective::Wasserstein => "wasserstein",
    }
}

/// The networks and data of a checkpoint: the `aics.gan` metadata.
struct Described {
    model: String,
    dataset: String,
    cfg: GanConfig,
    objective: Objective,
    /// 28-pixel images padded to 32 (else resized) when trained.
    padded: bool,
    native: usize,
}

fn describe(
    cfg: &GanConfig,
    model: ModelArg,
    dataset: &str,
    obj: Objective,
    padded: bool,
    native: usize,
) -> Value {
    json!({
        "model": format!("{model:?}").to_lowercase(),
        "dataset": dataset,
        "arch": match cfg.arch { Arch::Mlp => "mlp", Arch::Dcgan => "dcgan" },
        "z_dim": cfg.z_dim,
        "shape": cfg.shape,
        "width": cfg.width,
        "objective": objective_name(obj),
        "padded": padded,
        "native": native,
    })
}

fn read_description(ck: &Checkpoint) -> Result<Described> {
    let bad = || {
        format!(
            "{}: not a checkpoint of `aics gan train` (no aics.gan metadata)",
            ck.path.display()
        )
    };
    let v: Value =
        serde_json::from_str(ck.meta("aics.gan").with_context(bad)?).with_context(bad)?;
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: aics.gan without {k}", ck.path.display()))
    };
    let u = |k: &str| {
        v[k].as_u64()
            .map(|x| x as usize)
            .with_context(|| format!("{}: aics.gan without {k}", ck.path.display()))
    };
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .unwrap_or_default();
    let arch = match s("arch")?.as_str() {
        "mlp" => Arch::Mlp,
        "dcgan" => Arch::Dcgan,
        other => bail!("{}: unknown architecture {other}", ck.path.display()),
    };
    let objective = match s("objective")?.as_str() {
        "minimax" => Objective::Minimax,
        "wasserstein" => Objective::Wasserstein,
        _ => Objective::NonSaturating,
    };
    Ok(Described {
        model: s("model")?,
        dataset: s("dataset")?,
        cfg: GanConfig {
            arch,
            z_dim: u("z_dim")?,
            shape,
            width: u("width")?,
        },
        objective,
        padded: v["padded"].as_bool().unwrap_or(false),
        native: u("native").unwrap_or(0),
    })
}

/// A generator from an `aics gan train` checkpoint or a PyTorch DCGAN `netG` state dict.
fn load_generator(path: &Path) -> Result<(Generator, Option<Described>)> {
    let is_pth = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "pth" | "pt"));
    if is_pth {
        let raw = aics_io::load_pth(path)?;
        let map: HashMap<String, (Vec<usize>, Vec<f32>)> = raw
            .into_iter()
            .map(|(k, t)| (k, (t.shape, t.data)))
            .collect();
        let cfg = dcgan_config_from_shapes(&|k| map.get(k).map(|t| t.0.clone()))
            .with_context(|| path.display().to_string())?;
        let g = Generator::new(&cfg, &mut Rng::new(0))?;
        aics_nn::load_state_dict(&g, &map, true).with_context(|| path.display().to_string())?;
        return Ok((g, None));
    }
    let ck = load_checkpoint(path)?;
    let d = read_description(&ck)?;
    let gan = Gan::new(&d.cfg, &mut Rng::new(0))?;
    ck.load_into(&gan)?;
    Ok((gan.generator, Some(d)))
}

// ---------------------------------------------------------------------------------------------
// pictures

/// Images (N, C, S, S) in [−1, 1] as a grid with `cols` columns and 2-pixel white gaps.
fn grid_png(path: &Path, x: &Tensor, cols: usize) -> Result<()> {
    let s = x.shape().to_vec();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    let d = x.data();
    for k in 0..n {
        let (x0, y0) = (gap + (k % cols) * (w + gap), gap + (k / cols) * (h + gap));
        for y in 0..h {
            for xx in 0..w {
                let at = |ch: usize| {
                    let v = d[((k * c + ch) * h + y) * w + xx];
                    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                };
                let px = if c == 3 {
                    [at(0), at(1), at(2)]
                } else {
                    [at(0); 3]
                };
                img.put_pixel((x0 + xx) as u32, (y0 + y) as u32, image::Rgb(px));
            }
        }
    }
    write_png(path, &img)
}

/// A PNG written atomically (a picture a run is writing each epoch is never half there).
fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// `n` samples of a mixture's generator (the same codes for a seed every time) and their
/// coverage, which also goes into a log line.
fn toy_measure(
    g: &Generator,
    t: Toy,
    n: usize,
    seed: u64,
    line: &mut Value,
) -> Result<(Tensor, aics_gan::Coverage)> {
    let x = sample(g, &g.noise(n, &mut Rng::derive(seed, 0x70f)))?;
    let c = t.coverage(&x.data())?;
    line["modes_covered"] = json!(c.covered);
    line["modes"] = json!(c.modes);
    line["high_quality"] = json!(c.high_quality);
    Ok((x, c))
}

fn toy_lim(t: Toy) -> f64 {
    match t {
        Toy::Ring8 => 3.0,
        Toy::Grid25 => 6.0,
    }
}

// ---------------------------------------------------------------------------------------------
// scoring generated images with a classifier

struct Classifier {
    model: Box<dyn Module>,
    meta: crate::meta::ModelMeta,
    /// The layer whose output is the feature vector: the input of the last layer.
    features: String,
}

fn load_classifier(path: &Path, classes: usize, channels: usize) -> Result<Classifier> {
    let (_, meta, model) = crate::meta::load_model(path)?;
    if meta.num_classes != classes {
        bail!(
            "{}: the classifier has {} classes, the data set {classes}",
            path.display(),
            meta.num_classes
        );
    }
    if meta.in_shape[0] != channels {
        bail!(
            "{}: the classifier takes {} channel(s), the images have {channels}",
            path.display(),
            meta.in_shape[0]
        );
    }
    let features = match meta.model.as_str() {
        "lenet5" => "relu4",
        other => bail!(
            "{}: Fréchet features are defined for lenet5 classifiers (fc2's output), not {other}",
            path.display()
        ),
    };
    model.set_training(false);
    Ok(Classifier {
        model,
        meta,
        features: features.into(),
    })
}

impl Classifier {
    /// Labels and penultimate features of images (N, C, H, W) in [0, 1] at the classifier's size.
    fn score(&self, x01: &[f32], n: usize) -> Result<(Vec<usize>, Vec<f64>)> {
        let [c, h, w] = self.meta.in_shape;
        let per = c * h * w;
        let mut labels = Vec::with_capacity(n);
        let mut feats = Vec::new();
        let _ng = no_grad();
        for start in (0..n).step_by(500) {
            let m = (n - start).min(500);
            let mut v = x01[start * per..(start + m) * per].to_vec();
            for (i, x) in v.iter_mut().enumerate() {
                let ch = (i / (h * w)) % c;
                *x = (*x - self.meta.mean[ch]) / self.meta.std[ch];
            }
            let t = Tensor::from_vec(v, &[m, c, h, w])?;
            let (y, f) = aics_nn::inspect::capture(self.model.as_ref(), &t, &self.features)?;
            let f = f.with_context(|| format!("the classifier has no layer {}", self.features))?;
            let k = y.shape()[1];
            let yd = y.data();
            for r in 0..m {
                let row = &yd[r * k..(r + 1) * k];
                let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                labels.push(best);
            }
            feats.extend(f.data().iter().map(|&v| v as f64));
        }
        Ok((labels, feats))
    }
}

/// Generated images (N, C, S, S) in [−1, 1] as [0, 1] images at `native`² (28-pixel data: the
/// padding cropped, or resized back).
fn to_native(x: &Tensor, padded: bool, native: usize) -> Result<Vec<f32>> {
    let s = x.shape().to_vec();
    let (n, c, size) = (s[0], s[1], s[2]);
    let d = x.data();
    let mut out = Vec::with_capacity(n * c * native * native);
    for k in 0..n {
        for ch in 0..c {
            let plane = &d[(k * c + ch) * size * size..(k * c + ch + 1) * size * size];
            if size == native {
                out.extend(plane.iter().map(|v| (v.clamp(-1.0, 1.0) + 1.0) / 2.0));
            } else if padded && size == native + 4 {
                for y in 2..2 + native {
                    out.extend(
                        plane[y * size + 2..y * size + 2 + native]
                            .iter()
                            .map(|v| (v.clamp(-1.0, 1.0) + 1.0) / 2.0),
                    );
                }
            } else {
                let bytes: Vec<u8> = plane
                    .iter()
                    .map(|v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
                    .collect();
                let img =
                    image::GrayImage::from_raw(size as u32, size as u32, bytes).context("plane")?;
                let r = image::imageops::resize(
                    &img,
                    native as u32,
                    native as u32,
                    image::imageops::FilterType::Triangle,
                );
                out.extend(r.as_raw().iter().map(|&b| b as f32 / 255.0));
            }
        }
    }
    Ok(out)
}

/// What a classifier says of `n` generated images.
struct ImageScore {
    hist: Vec<usize>,
    kl: f64,
    covered: usize,
    frechet: f64,
}

fn score_images(
    g: &Generator,
    cls: &Classifier,
    real_feats: &[f64],
    n: usize,
    seed: u64,
    padded: bool,
) -> Result<ImageScore> {
    let [c, h, _] = cls.meta.in_shape;
    let mut rng = Rng::derive(seed, 0x5c0e);
    let mut labels = Vec::with_capacity(n);
    let mut feats = Vec::new();
    for start in (0..n).step_by(500) {
        let m = (n - start).min(500);
        let x = sample(g, &g.noise(m, &mut rng))?;
        let x01 = to_native(&x, padded, h)?;
        debug_assert_eq!(x01.len(), m * c * h * h);
        let (l, f) = cls.score(&x01, m)?;
        labels.extend(l);
        feats.extend(f);
    }
    let hist = class_histogram(&labels, cls.meta.num_classes)?;
    let d = feats.len() / n.max(1);
    Ok(ImageScore {
        kl: kl_to_uniform(&hist),
        covered: classes_covered(&hist),
        frechet: frechet_distance(real_feats, &feats, d)?,
        hist,
    })
}

// ---------------------------------------------------------------------------------------------
// train

fn settings_of(
    a: &TrainArgs,
    cfg: &GanConfig,
    obj: Objective,
    batch: usize,
    lr: Option<f64>,
    iters: Option<usize>,
) -> String {
    json!({"model": format!("{:?}", a.model).to_lowercase(), "dataset": a.dataset, "objective": objective_name(obj),
           "shape": cfg.shape, "width": cfg.width, "z_dim": cfg.z_dim, "batch": batch, "lr": lr,
           "iterations": iters, "limit": a.limit, "seed": a.seed})
    .to_string()
}

fn train(a: TrainArgs) -> Result<()> {
    let toy = Toy::parse(&a.dataset);
    if a.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if a.loss.is_some() && a.model != ModelArg::Gan {
        bail!("--loss applies to --model gan (DCGAN's generator is non-saturating, WGAN's is the critic's)");
    }
    if toy.is_some() {
        if a.model == ModelArg::Dcgan {
            bail!("--model dcgan is convolutional: it takes images, not the 2-D points of {}; use gan or wgan", a.dataset);
        }
        for (set, name) in [
            (a.image_size.is_some(), "--image-size"),
            (a.width.is_some(), "--width"),
            (a.limit.is_some(), "--limit"),
            (a.eval_samples.is_some(), "--eval-samples"),
            (a.classifier.is_some(), "--classifier"),
        ] {
            if set {
                bail!("{name} applies to image data sets, not {}", a.dataset);
            }
        }
    } else if a.iterations.is_some() {
        bail!(
            "--iterations applies to ring8 and grid25 (an image epoch is a pass over the images)"
        );
    }
    if a.width.is_some() && a.model == ModelArg::Gan {
        bail!("--width applies to the convolutional models (dcgan, wgan)");
    }
    let size = a.image_size.unwrap_or(32);
    if toy.is_none() && size != 32 && size != 64 {
        bail!("--image-size must be 32 or 64 (got {size})");
    }
    let batch = a.batch.unwrap_or(if toy.is_some() { 256 } else { 64 });
    if batch < 2 {
        bail!("--batch must be at least 2 (batch norm needs two samples)");
    }
    if a.lr.is_some_and(|l| !(l > 0.0 && l.is_finite())) {
        bail!("--lr must be positive");
    }
    let obj = objective_of(a.model, a.loss);
    let model_name = format!("{:?}", a.model).to_lowercase();
    let ds_name: String = a.dataset.split(':').next().unwrap_or("data").to_string();
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/gan-{model_name}-{ds_name}.safetensors")));
    let log_path = a
        .log
        .clone()
        .unwrap_or_else(|| checkpoint.with_extension("jsonl"));
    let samples_dir = a.samples.clone().unwrap_or_else(|| {
        let stem = checkpoint
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        checkpoint.with_file_name(format!("{stem}-samples"))
    });

    // data and networks
    let data = match toy {
        Some(t) => Data::Toy(t),
        None => {
            let with_test = a.eval_samples != Some(0);
            let im = load_images(&a.dataset, size, a.limit, with_test)?;
            if im.n < batch {
                bail!(
                    "{}: {} images, fewer than one batch of {batch}",
                    a.dataset,
                    im.n
                );
            }
            Data::Images(im)
        }
    };
    let (cfg, padded, native) = match &data {
        Data::Toy(_) => (GanConfig::mlp(&[2]), false, 0),
        Data::Images(im) => {
            let shape = [im.c, size, size];
            let mut c = match a.model {
                ModelArg::Gan => GanConfig::mlp(&shape),
                _ => GanConfig::dcgan(im.c, size),
            };
            if let Some(w) = a.width {
                if w == 0 {
                    bail!("--width must be at least 1");
                }
                c.width = w;
            }
            (c, im.padded, im.native)
        }
    };
    let lr = a.lr.or(if toy.is_some() && obj != Objective::Wasserstein {
        Some(1e-3)
    } else {
        None
    });
    let iters_per_epoch = toy.map(|_| a.iterations.unwrap_or(500));
    if iters_per_epoch == Some(0) {
        bail!("--iterations must be at least 1");
    }
    let mut settings = settings_of(&a, &cfg, obj, batch, lr, iters_per_epoch);
    let mut rng = Rng::new(a.seed);
    let gan = Gan::new(&cfg, &mut rng)?;
    let mut tr = GanTrainer::new(gan, obj, lr);
    // --distributed: --batch-size a rank; the group's run is that of one process with the
    // batch of all ranks, and only rank 0 prints, draws and writes
    let mut group = crate::dist::Group::start(&a.dist, &tr.gan)?;
    let main = group.is_main();
    let (rank, ranks) = (group.rank(), group.size());
    if ranks > 1 {
        settings += &format!(";ranks={ranks}");
    }

    // the classifier that scores generated images
    let classifier = match (&data, &a.classifier) {
        (Data::Images(im), explicit) if a.eval_samples != Some(0) => {
            let default = PathBuf::from(DEFAULT_CLASSIFIER);
            let path = match explicit {
                Some(p) => Some(p.clone()),
                None if ds_name == "fashion-mnist" && default.exists() => Some(default),
                None => None,
            };
            match (path, &im.test) {
                (Some(p), Some((_, _, classes))) => Some(load_classifier(&p, *classes, im.c)?),
                (Some(p), None) => bail!(
                    "--classifier {}: {} has no labelled test images to compare with",
                    p.display(),
                    a.dataset
                ),
                (None, None) => None,
                (None, Some(_)) => {
                    if main {
                        eprintln!("note: no classifier ({DEFAULT_CLASSIFIER} is made by `aics train`): generated images are not scored; --eval-samples 0 silences this");
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let eval_n = a.eval_samples.unwrap_or(10_000);
    let real_feats = match (&classifier, &data) {
        (Some(cls), Data::Images(im)) => {
            let (x, _, _) = im.test.as_ref().context("test images")?;
            let per = im.c * native * native;
            let n = (x.len() / per).min(eval_n.max(2));
            Some(cls.score(&x[..n * per], n)?.1)
        }
        _ => None,
    };

    // resume
    let mut start_epoch = 0;
    let mut log_lines: Vec<String> = Vec::new();
    if a.resume {
        let ck = load_checkpoint(&checkpoint)
            .with_context(|| "--resume needs the checkpoint of an earlier run")?;
        if ck.meta("aics.gan_settings") != Some(settings.as_str()) {
            bail!("{}: --resume continues the checkpoint's run, but the settings differ (checkpoint: {}); give the same settings, or start a new run", checkpoint.display(), ck.meta("aics.gan_settings").unwrap_or("none"));
        }
        ck.load_into(&tr.gan)?;
        tr.opt_g.load_state(&ck.optimizer_state_of("generator"))?;
        tr.opt_d
            .load_state(&ck.optimizer_state_of("discriminator"))?;
        start_epoch = ck
            .meta("aics.epoch")
            .and_then(|e| e.parse().ok())
            .context("checkpoint without its epoch")?;
        tr.step = ck
            .meta("aics.step")
            .and_then(|e| e.parse().ok())
            .context("checkpoint without its step")?;
        if let Ok(text) = std::fs::read_to_string(&log_path) {
            // the epoch lines and iteration lines the checkpoint's epochs wrote
            log_lines = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l).ok().is_some_and(|v| {
                        v["epoch"]
                            .as_u64()
                            .is_some_and(|e| e as usize <= start_epoch)
                    })
                })
                .map(str::to_string)
                .collect();
        }
    }
    if let Some(h) = group.ddp.as_ref().map(|d| d.handle()) {
        tr.distribute(&h, group.options())?;
    }
    if let Some(d) = checkpoint.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let write_log = |lines: &[String]| -> Result<()> {
        let mut s = lines.join("\n");
        s.push('\n');
        write_atomic(&log_path, s.as_bytes())?;
        Ok(())
    };
    let describe_v = describe(&cfg, a.model, &a.dataset, obj, padded, native);
    let fixed_z = tr.gan.generator.noise(64, &mut Rng::derive(a.seed, 0xf1ed));
    let what = match &data {
        Data::Toy(t) => format!(
            "{model_name} on {} ({} iterations an epoch, batch {batch})",
            t.name(),
            iters_per_epoch.unwrap_or(0)
        ),
        Data::Images(im) => format!(
            "{model_name} on {} ({} images of {}×{size}×{size}, batch {batch})",
            a.dataset, im.n, im.c
        ),
    };
    if main {
        println!(
            "{what}: {} + {} parameters{}",
            aics_nn::num_params(&tr.gan.generator),
            aics_nn::num_params(&tr.gan.discriminator),
            if ranks > 1 {
                format!(
                    "; batch {batch} a rank, {} in all over {ranks} ranks",
                    batch * ranks
                )
            } else {
                String::new()
            }
        );
    }

    // --sync-batchnorm: DCGAN's batch norms over all ranks' batches
    let _sync = group.sync_batch_norm();
    for epoch in start_epoch..a.epochs {
        let t0 = Instant::now();
        // image epochs: the shuffled batches, `critic_steps` an iteration while they last;
        // mixture epochs: `--iterations` generator steps on freshly drawn points
        let (plan, total): (Vec<Vec<usize>>, usize) = match &data {
            Data::Images(im) => {
                let mut order: Vec<usize> = (0..im.n).collect();
                Rng::derive(a.seed, epoch as u64 + 1).shuffle(&mut order);
                // each rank takes every ranks-th image of each batch of all ranks
                let batches: Vec<Vec<usize>> = order
                    .chunks_exact(batch * ranks)
                    .map(|c| c.iter().skip(rank).step_by(ranks).copied().collect())
                    .collect();
                let total = batches.len();
                (batches, total)
            }
            Data::Toy(_) => (Vec::new(), iters_per_epoch.unwrap_or(0)),
        };
        if matches!(data, Data::Images(_)) && total < tr.n_critic {
            bail!(
                "{}: too few images for one iteration ({} batches of {batch} a generator step)",
                a.dataset,
                tr.n_critic
            );
        }
        let pb = if main {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "epoch {}/{} {{bar:30}} {{pos}}/{{len}} {{msg}} ({{elapsed}}<{{eta}})",
                epoch + 1,
                a.epochs
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut sd, mut sg, mut sw, mut sr, mut sf) = (0f64, 0f64, 0f64, 0f64, 0f64);
        let (mut cursor, mut n_iter) = (0usize, 0usize);
        loop {
            let want = tr.critic_steps();
            let mut srng = step_rng(a.seed, tr.step);
            let reals: Vec<Tensor> = match &data {
                Data::Images(im) => {
                    // a boosted WGAN iteration takes what is left of the epoch when that is
                    // less, but never fewer than n_critic batches
                    let k = want.min(total - cursor);
                    if k < tr.n_critic {
                        break;
                    }
                    let r = (0..k)
                        .map(|j| im.batch(&plan[cursor + j]))
                        .collect::<Result<_>>()?;
                    cursor += k;
                    r
                }
                Data::Toy(t) => {
                    if n_iter == total {
                        break;
                    }
                    // the points of all ranks are drawn, this rank's kept
                    (0..want)
                        .map(|_| rows_of(&t.sample(batch * ranks, &mut srng), rank, ranks))
                        .collect::<Result<_>>()?
                }
            };
            let z_dim = cfg.z_dim;
            let mut noise_err = None;
            let mut s = tr.iteration(&reals, &mut |n| {
                // the codes of all ranks' samples are drawn, this rank's kept
                let all = Tensor::randn(&[n * ranks, z_dim], 0.0, 1.0, &mut srng);
                rows_of(&all, rank, ranks).unwrap_or_else(|e| {
                    noise_err = Some(e);
                    all
                })
            })?;
            if let Some(e) = noise_err {
                return Err(e);
            }
            if ranks > 1 {
                // the iteration's numbers over the whole batch: the mean of the ranks'
                let mut v = [
                    s.d_loss,
                    s.g_loss,
                    s.d_real,
                    s.d_fake,
                    s.wasserstein.unwrap_or(0.0),
                ];
                group.sum(&mut v)?;
                let k = ranks as f64;
                (s.d_loss, s.g_loss, s.d_real, s.d_fake) = (v[0] / k, v[1] / k, v[2] / k, v[3] / k);
                s.wasserstein = s.wasserstein.map(|_| v[4] / k);
            }
            n_iter += 1;
            sd += s.d_loss;
            sg += s.g_loss;
            sr += s.d_real;
            sf += s.d_fake;
            sw += s.wasserstein.unwrap_or(0.0);
            let msg = match s.wasserstein {
                Some(w) => format!("W {w:.4} D {:.4} G {:.4}", s.d_loss, s.g_loss),
                None => format!(
                    "D {:.3} G {:.3} D(x) {:.2} D(G(z)) {:.2}",
                    s.d_loss, s.g_loss, s.d_real, s.d_fake
                ),
            };
            pb.set_message(msg);
            pb.set_position(if matches!(data, Data::Images(_)) {
                cursor
            } else {
                n_iter
            } as u64);
            // a line every step for WGAN (its Wasserstein estimate), and every 100 steps on the
            // mixtures with the modes covered
            let toy_now = matches!(data, Data::Toy(_)) && tr.step.is_multiple_of(100);
            if main && (toy_now || s.wasserstein.is_some()) {
                let mut line = json!({"epoch": epoch + 1, "iteration": tr.step, "d_loss": s.d_loss, "g_loss": s.g_loss});
                if let Some(w) = s.wasserstein {
                    line["wasserstein"] = json!(w);
                }
                if let (Data::Toy(t), true) = (&data, toy_now) {
                    toy_measure(&tr.gan.generator, *t, 2500, a.seed, &mut line)?;
                }
                log_lines.push(line.to_string());
            }
        }
        pb.finish_and_clear();
        if !main {
            continue;
        }
        let secs = t0.elapsed().as_secs_f64();
        let k = n_iter as f64;
        let mut line = json!({"epoch": epoch + 1, "iterations": tr.step, "d_loss": sd / k, "g_loss": sg / k,
                              "d_real": sr / k, "d_fake": sf / k, "seconds": secs});
        if obj == Objective::Wasserstein {
            line["wasserstein"] = json!(sw / k);
        }
        let mut summary = format!("epoch {}: D {:.4} G {:.4}", epoch + 1, sd / k, sg / k);
        if obj == Objective::Wasserstein {
            summary += &format!(" W {:.4}", sw / k);
        }
        // pictures and measures
        match &data {
            Data::Toy(t) => {
                let (pts, c) = toy_measure(&tr.gan.generator, *t, 2500, a.seed, &mut line)?;
                summary += &format!(
                    ", {} of {} modes, {:.1}% high quality",
                    c.covered,
                    c.modes,
                    100.0 * c.high_quality
                );
                let real = t.sample(2500, &mut Rng::derive(a.seed, 0x7ea1));
                let p = samples_dir.join(format!("epoch_{:03}.png", epoch + 1));
                let title = format!("{model_name} on {}, epoch {}", t.name(), epoch + 1);
                write_scatter(
                    &p,
                    &title,
                    &[ScatterPanel {
                        title: "",
                        real: &real.data(),
                        generated: &pts.data(),
                    }],
                    toy_lim(*t),
                )?;
            }
            Data::Images(_) => {
                let x = sample(&tr.gan.generator, &fixed_z)?;
                grid_png(
                    &samples_dir.join(format!("epoch_{:03}.png", epoch + 1)),
                    &x,
                    8,
                )?;
                if let (Some(cls), Some(rf)) = (&classifier, &real_feats) {
                    let s = score_images(&tr.gan.generator, cls, rf, eval_n, a.seed, padded)?;
                    line["class_histogram"] = json!(s.hist);
                    line["kl_to_uniform"] = json!(s.kl);
                    line["classes_covered"] = json!(s.covered);
                    line["frechet_lenet"] = json!(s.frechet);
                    summary += &format!(
                        ", {} of {} classes, KL to uniform {:.3}, Fréchet (LeNet features) {:.2}",
                        s.covered,
                        s.hist.len(),
                        s.kl,
                        s.frechet
                    );
                }
            }
        }
        summary += &format!(", {secs:.1} s");
        println!("{summary}");
        log_lines.push(line.to_string());
        let mut meta = HashMap::new();
        meta.insert("aics.gan".to_string(), describe_v.to_string());
        meta.insert("aics.gan_settings".to_string(), settings.clone());
        meta.insert("aics.epoch".to_string(), (epoch + 1).to_string());
        meta.insert("aics.step".to_string(), tr.step.to_string());
        save_checkpoint_optims(
            &checkpoint,
            &tr.gan,
            &[
                ("generator", tr.opt_g.as_ref()),
                ("discriminator", tr.opt_d.as_ref()),
            ],
            meta,
        )?;
        write_log(&log_lines)?;
        std::io::stdout().flush().ok();
    }
    if main {
        println!(
            "checkpoint: {}\nlog: {}\nsamples: {}",
            checkpoint.display(),
            log_path.display(),
            samples_dir.display()
        );
    }
    group.finish()
}

/// Rows `rank`, `rank + ranks`, … of a batch: one rank's part of the batch of all ranks.
fn rows_of(x: &Tensor, rank: usize, ranks: usize) -> Result<Tensor> {
    if ranks == 1 {
        return Ok(x.clone());
    }
    let idx: Vec<usize> = (rank..x.shape()[0]).step_by(ranks).collect();
    Ok(x.index_select(0, &idx)?)
}

// ---------------------------------------------------------------------------------------------
// sample, interpolate, eval

fn run_sample(a: SampleArgs) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let (g, d) = load_generator(&a.checkpoint)?;
    let z = g.noise(a.n, &mut Rng::new(a.seed));
    let x = sample(&g, &z)?;
    match d.as_ref().and_then(|d| Toy::parse(&d.dataset)) {
        Some(t) => {
            let real = t.sample(a.n, &mut Rng::derive(a.seed, 0x7ea1));
            write_scatter(
                &a.out,
                t.name(),
                &[ScatterPanel {
                    title: "",
                    real: &real.data(),
                    generated: &x.data(),
                }],
                toy_lim(t),
            )?;
        }
        None => grid_png(&a.out, &x, (a.n as f64).sqrt().ceil() as usize)?,
    }
    println!("{}", a.out.display());
    Ok(())
}

/// Spherical interpolation between `a` and `b` (Shoemake; White, 2016, for GAN latents).
fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f32>().sqrt();
    let cos =
        (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb).max(1e-12)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.abs() < 1e-6 {
        return a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect();
    }
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

fn run_interpolate(a: InterpolateArgs) -> Result<()> {
    if a.steps < 2 {
        bail!("--steps must be at least 2 (the two ends)");
    }
    let (g, _) = load_generator(&a.checkpoint)?;
    if g.cfg.shape.len() != 3 {
        bail!(
            "{}: interpolation draws images; this generator makes {}-D points",
            a.checkpoint.display(),
            g.cfg.sample_len()
        );
    }
    let za = g.noise(1, &mut Rng::new(a.seeds[0])).to_vec();
    let zb = g.noise(1, &mut Rng::new(a.seeds[1])).to_vec();
    let mut codes = Vec::new();
    for row in 0..2 {
        for i in 0..a.steps {
            let t = i as f32 / (a.steps - 1) as f32;
            codes.extend(if row == 0 {
                za.iter().zip(&zb).map(|(x, y)| x + t * (y - x)).collect()
            } else {
                slerp(&za, &zb, t)
            });
        }
    }
    let z = Tensor::from_vec(codes, &[2 * a.steps, g.cfg.z_dim])?;
    let x = sample(&g, &z)?;
    grid_png(&a.out, &x, a.steps)?;
    println!("{} (top: straight line, bottom: slerp)", a.out.display());
    Ok(())
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let mut panels: Vec<(String, Vec<f32>, Vec<f32>, Toy)> = Vec::new();
    for path in &a.checkpoint {
        let (g, d) = load_generator(path)?;
        let d = d.with_context(|| {
            format!(
                "{}: eval needs an `aics gan train` checkpoint (it names the data set)",
                path.display()
            )
        })?;
        if let Some(t) = Toy::parse(&d.dataset) {
            if a.classifier.is_some() {
                bail!("--classifier applies to image data sets, not {}", d.dataset);
            }
            let n = a.n.unwrap_or(2500);
            let (x, c) = toy_measure(&g, t, n, a.seed, &mut json!({}))?;
            println!(
                "{}: {} ({}) on {}: {} of {} modes covered, {:.1}% high-quality samples (within 3σ), per mode {:?}",
                path.display(), d.model, objective_name(d.objective), t.name(), c.covered, c.modes, 100.0 * c.high_quality, c.per_mode
            );
            let real = t.sample(n, &mut Rng::derive(a.seed, 0x7ea1));
            let label = if d.model == "gan" {
                format!("gan, {}", objective_name(d.objective).replace('_', "-"))
            } else {
                d.model.clone()
            };
            panels.push((
                format!("{label} ({} of {} modes)", c.covered, c.modes),
                real.to_vec(),
                x.to_vec(),
                t,
            ));
            continue;
        }
        if a.plot.is_some() {
            bail!(
                "--plot draws ring8/grid25 points; {} was trained on {}",
                path.display(),
                d.dataset
            );
        }
        let n = a.n.unwrap_or(10_000);
        if n < 2 {
            bail!("--n must be at least 2");
        }
        let size = d.cfg.shape.get(1).copied().unwrap_or(32);
        let im = load_images(&d.dataset, size, Some(0), true)?;
        let (x, _, classes) = im
            .test
            .as_ref()
            .with_context(|| format!("{}: no labelled test images to score against", d.dataset))?;
        let default = PathBuf::from(DEFAULT_CLASSIFIER);
        let cls_path = a.classifier.clone().unwrap_or(default);
        if !cls_path.exists() {
            bail!("{}: no classifier there: train one with `aics train` (it writes {DEFAULT_CLASSIFIER}) or pass --classifier", cls_path.display());
        }
        let cls = load_classifier(&cls_path, *classes, im.c)?;
        let per = im.c * d.native * d.native;
        let nr = (x.len() / per.max(1)).min(n);
        let (real_labels, real_feats) = cls.score(&x[..nr * per], nr)?;
        let s = score_images(&g, &cls, &real_feats, n, a.seed, d.padded)?;
        let real_hist = class_histogram(&real_labels, *classes)?;
        println!(
            "{}: {} on {}, {n} samples scored by {}",
            path.display(),
            d.model,
            d.dataset,
            cls_path.display()
        );
        println!("  class histogram (generated): {:?}", s.hist);
        println!("  class histogram (real test): {real_hist:?}");
        println!(
            "  classes covered (≥ 1% of samples): {} of {classes}",
            s.covered
        );
        println!(
            "  KL(generated classes ‖ uniform): {:.4} nats (real test images: {:.4})",
            s.kl,
            kl_to_uniform(&real_hist)
        );
        println!(
            "  Fréchet distance in the classifier's penultimate features (not FID): {:.3}",
            s.frechet
        );
    }
    if let Some(p) = &a.curves {
        if panels.len() != a.checkpoint.len() {
            bail!("--curves draws ring8/grid25 runs' modes covered; give only such checkpoints");
        }
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for (path, (title, ..)) in a.checkpoint.iter().zip(&panels) {
            let log = path.with_extension("jsonl");
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("{}: the run's log, for --curves", log.display()))?;
            let pts: Vec<(f64, f64)> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| Some((v["iteration"].as_f64()?, v["modes_covered"].as_f64()?)))
                .collect();
            if pts.is_empty() {
                bail!(
                    "{}: no per-iteration lines (runs log every 100 generator steps)",
                    log.display()
                );
            }
            series.push((title.split(" (").next().unwrap_or(title).to_string(), pts));
        }
        let curves: Vec<crate::plot::Curve> = series
            .iter()
            .map(|(l, p)| crate::plot::Curve {
                label: l,
                points: p,
            })
            .collect();
        crate::plot::write_line_chart(
            p,
            "modes covered (of 2,500 samples, within 3σ)",
            "generator steps",
            "modes covered",
            &curves,
        )?;
        println!("{}", p.display());
    }
    if let Some(p) = &a.plot {
        let lim = panels.iter().map(|p| toy_lim(p.3)).fold(0.0, f64::max);
        let ps: Vec<ScatterPanel> = panels
            .iter()
            .map(|(t, r, g, _)| ScatterPanel {
                title: t,
                real: r,
                generated: g,
            })
            .collect();
        write_scatter(p, "real (grey) and generated points", &ps, lim)?;
        println!("{}", p.display());
    }
    Ok(())
}
