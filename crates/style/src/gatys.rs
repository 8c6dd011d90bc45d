//! Gatys et al.'s style transfer: the image itself is the parameter. Its VGG19 features at the
//! content layer are pulled towards the photo's, and the Gram matrices of its features at the
//! style layers towards the painting's; the gradient reaches the pixels through the frozen
//! network, and L-BFGS (or Adam) moves them.

use std::time::Instant;

use aics_nn::optim::Optimizer;
use aics_nn::{Adam, Lbfgs, NnError, Result};
use aics_tensor::{no_grad, Rng, Tensor};

use crate::loss::{content_loss, gram, style_loss, tv_loss, LossForm};
use crate::vgg::Vgg19;

/// The optimiser that moves the pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// L-BFGS with strong-Wolfe line search; one step is one L-BFGS iteration.
    Lbfgs,
    Adam {
        lr: f64,
    },
}

/// The starting image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Content,
    /// Gaussian noise with the content image's per-channel spread.
    Noise,
    /// `(1 − a)·content + a·noise`.
    Blend(f64),
    /// The textbook lab's `U(−20, 20)·0.5 + content·0.5` in the network's input space.
    Textbook,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// (layer, weight) pairs; weights multiply that layer's loss.
    pub content_layers: Vec<(String, f64)>,
    pub style_layers: Vec<(String, f64)>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub form: LossForm,
    pub method: Method,
    pub init: Init,
    pub steps: usize,
    pub seed: u64,
}

impl Default for Config {
    /// relu4_2 content; relu1_1 … relu5_1 style, equally weighted; mean-normalised losses with
    /// style weight 500 (for the Caffe-convention weights, features of hundreds), a little
    /// total variation; L-BFGS from the photo, 200 iterations.
    fn default() -> Self {
        Config {
            content_layers: vec![("relu4_2".into(), 1.0)],
            style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
                .iter()
                .map(|l| (l.to_string(), 0.2))
                .collect(),
            content_weight: 1.0,
            style_weight: 5e2,
            tv_weight: 1e2,
            form: LossForm::Mean,
            method: Method::Lbfgs,
            init: Init::Content,
            steps: 200,
            seed: 0,
        }
    }
}

impl Config {
    /// The textbook lab: relu4_2 content, relu1_1…relu5_1 style averaged, α:β = 1:500,
    /// unnormalised Gram matrices, Adam with learning rate 1.0 for 100 steps, noisy start.
    pub fn textbook() -> Self {
        Config {
            content_weight: 1.0,
            style_weight: 500.0,
            tv_weight: 0.0,
            form: LossForm::Textbook,
            method: Method::Adam { lr: 1.0 },
            init: Init::Textbook,
            steps: 100,
            ..Config::default()
        }
    }
}

/// What the image is pulled towards: the photo's features and the paintings' Gram matrices.
pub struct Targets {
    content: Vec<(usize, f64, Tensor)>,
    style: Vec<(usize, f64, Tensor)>,
    wanted: Vec<usize>,
}

fn layers(spec: &[(String, f64)]) -> Result<Vec<(usize, f64)>> {
    spec.iter()
        .map(|(n, w)| Ok((Vgg19::layer_index(n)?, *w)))
        .collect()
}

/// Compute the targets from the photo and the paintings (each with a blend weight), all
/// already in the network's input space. Style Gram matrices are blended by weight.
pub fn targets(
    vgg: &Vgg19,
    content: &Tensor,
    styles: &[(Tensor, f64)],
    cfg: &Config,
) -> Result<Targets> {
    let _g = no_grad();
    let cl = layers(&cfg.content_layers)?;
    let sl = layers(&cfg.style_layers)?;
    if styles.is_empty() {
        return Err(NnError::Config {
            layer: "style".into(),
            msg: "at least one style image is needed".into(),
        });
    }
    let ci: Vec<usize> = cl.iter().map(|l| l.0).collect();
    let feats = vgg.features(content, &ci)?;
    let content_t = cl.iter().zip(feats).map(|(&(i, w), f)| (i, w, f)).collect();
    let total_w: f64 = styles.iter().map(|s| s.1).sum();
    let si: Vec<usize> = sl.iter().map(|l| l.0).collect();
    let mut grams: Vec<Option<Tensor>> = vec![None; sl.len()];
    for (img, w) in styles {
        let feats = vgg.features(img, &si)?;
        for (slot, f) in grams.iter_mut().zip(feats) {
            let g = gram(&f, cfg.form)?.mul_scalar(w / total_w);
            *slot = Some(match slot.take() {
                Some(acc) => acc.add(&g)?,
                None => g,
            });
        }
    }
    let style_t = sl
        .iter()
        .zip(grams)
        .filter_map(|(&(i, w), g)| g.map(|g| (i, w, g)))
        .collect();
    let mut wanted: Vec<usize> = ci.into_iter().chain(si).collect();
    wanted.sort_unstable();
    wanted.dedup();
    Ok(Targets {
        content: content_t,
        style: style_t,
        wanted,
    })
}

/// A random problem of one size, for benchmarks and examples: VGG19 with random weights (Caffe
/// input convention), a random photo and painting of `h`×`w` pixels, their targets under
/// `cfg`, and the image to optimise (the photo, requiring grad).
pub fn random_problem(
    h: usize,
    w: usize,
    cfg: &Config,
    seed: u64,
) -> Result<(Vgg19, Targets, Tensor)> {
    use crate::vgg::{InputSpace, CAFFE_MEAN_RGB};
    let space = InputSpace::Caffe {
        bgr: true,
        mean_rgb: CAFFE_MEAN_RGB,
    };
    let vgg = Vgg19::random(seed, space);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let photo = vgg
        .space
        .encode(&Tensor::rand(&[1, 3, h, w], 0.0, 1.0, &mut rng))?;
    let painting = vgg
        .space
        .encode(&Tensor::rand(&[1, 3, h, w], 0.0, 1.0, &mut rng))?;
    let t = targets(&vgg, &photo, &[(painting, 1.0)], cfg)?;
    Ok((vgg, t, photo.requires_grad_(true)))
}

/// The weighted losses at one image (already multiplied by their weights).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

/// Total loss (a scalar tensor to differentiate) and its parts at image `x` (network space).
pub fn loss(vgg: &Vgg19, x: &Tensor, t: &Targets, cfg: &Config) -> Result<(Tensor, Losses)> {
    let feats = vgg.features(x, &t.wanted)?;
    let at = |i: usize| &feats[t.wanted.iter().position(|&w| w == i).unwrap_or(0)];
    let mut content = Tensor::scalar(0.0f32);
    for (i, w, p) in &t.content {
        content = content.add(&content_loss(at(*i), p, cfg.form)?.mul_scalar(*w))?;
    }
    let mut style = Tensor::scalar(0.0f32);
    for (i, w, a) in &t.style {
        style = style.add(&style_loss(at(*i), a, cfg.form)?.mul_scalar(*w))?;
    }
    let content = content.mul_scalar(cfg.content_weight);
    let style = style.mul_scalar(cfg.style_weight);
    let mut total = content.add(&style)?;
    let mut tv_v = 0.0;
    if cfg.tv_weight > 0.0 {
        // measured on the [0, 1] RGB image, whatever the network's input convention
        let tv = tv_loss(&vgg.space.decode(x)?)?.mul_scalar(cfg.tv_weight);
        tv_v = tv.item()? as f64;
        total = total.add(&tv)?;
    }
    let l = Losses {
        content: content.item()? as f64,
        style: style.item()? as f64,
        tv: tv_v,
        total: total.item()? as f64,
    };
    Ok((total, l))
}

/// The starting image for `content` (network space).
pub fn initial(content: &Tensor, init: Init, seed: u64) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let shape = content.shape().to_vec();
    Ok(match init {
        Init::Content => content.copy(),
        Init::Textbook => Tensor::rand(&shape, -20.0, 20.0, &mut rng)
            .mul_scalar(0.5)
            .add(&content.mul_scalar(0.5))?,
        Init::Noise | Init::Blend(_) => {
            let a = if let Init::Blend(a) = init { a } else { 1.0 };
            let c = content.to_vec();
            let mean = c.iter().map(|&v| v as f64).sum::<f64>() / c.len().max(1) as f64;
            let var =
                c.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c.len().max(1) as f64;
            let noise = Tensor::randn(&shape, mean, var.sqrt().max(1e-3), &mut rng);
            noise.mul_scalar(a).add(&content.mul_scalar(1.0 - a))?
        }
    })
}

/// One optimisation step's report.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// 1-based.
    pub step: usize,
    pub losses: Losses,
    pub seconds: f64,
}

/// What the step callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Optimise `x0` for `cfg.steps` steps. `on_step` sees every step's losses and the current
/// image and may stop early. A non-finite loss stops with an error naming the step.
pub fn optimize(
    vgg: &Vgg19,
    x0: &Tensor,
    t: &Targets,
    cfg: &Config,
    on_step: &mut dyn FnMut(&Step, &Tensor) -> Result<Flow>,
) -> Result<Tensor> {
    let x = x0.copy().requires_grad_(true);
    let params = vec![("image".to_string(), x.clone())];
    let mut last = Losses::default();
    let eval = |last: &mut Losses| -> Result<f64> {
        x.zero_grad();
        let (total, l) = loss(vgg, &x, t, cfg)?;
        total.backward()?;
        *last = l;
        Ok(l.total)
    };
    // one step is one L-BFGS iteration (with its line search) or one Adam update
    let mut opt: Box<dyn Optimizer> = match cfg.method {
        Method::Lbfgs => Box::new(
            Lbfgs::new(params)
                .strong_wolfe(true)
                .max_iter(1)
                .max_eval(8)
                .tolerance_change(0.0)
                .tolerance_grad(0.0),
        ),
        Method::Adam { lr } => Box::new(Adam::new(params).lr(lr)),
    };
    for step in 1..=cfg.steps {
        let t0 = Instant::now();
        opt.step_with(&mut || eval(&mut last))?;
        if !last.total.is_finite() {
            return Err(NnError::Config {
                layer: "stylize".into(),
                msg: format!(
                    "the loss became {} at step {step} (content {}, style {}, tv {}); lower the style weight or the learning rate",
                    last.total, last.content, last.style, last.tv
                ),
            });
        }
        let s = Step {
            step,
            losses: last,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if on_step(&s, &x.detach())? == Flow::Stop {
            break;
        }
    }
    Ok(x.detach())
}
