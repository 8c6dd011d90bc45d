//! R-CNN (Girshick et al., 2014), the paper's pipeline after selective search: every proposal is
//! warped to the network's input with 16 px of context, a CNN of the zoo turns it into a feature
//! vector, one linear SVM a class scores it (trained with the hinge loss on hard negatives), a
//! class-specific ridge regressor moves its box, and NMS at 0.3 within each class keeps the
//! best. The pieces:
//! - [`warp_region`]: the anisotropic warp with context, pixels outside the image at the mean;
//! - [`train_linear_svm`]: a linear SVM by dual coordinate descent (the hinge loss, L2
//!   regularisation, a bias feature, class weights), as liblinear solves it for R-CNN;
//! - [`ridge_regression`]: the least-squares box regressor with an L2 penalty;
//! - [`Rcnn`]: backbone, SVMs and regressors as one module (keys `backbone.*`, `svm.*`,
//!   `bbox_pred.*`, `feature_scale`), [`Rcnn::fit`] trains the SVMs with hard-negative mining
//!   and the regressors on cached features, [`Rcnn::detect`] runs the whole test pipeline.

use aics_nn::{Linear, Module, Sequential};
use aics_tensor::{no_grad, Rng, Tensor};
use rayon::prelude::*;

use crate::boxes::{batched_nms, pair_iou};
use crate::coder::BoxCoder;
use crate::error::{arg, Result};
use crate::faster_rcnn::Detections;
use crate::selective_search::RgbView;

/// ImageNet's channel means and deviations, as torchvision's classifiers expect their input.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Warp box `b` (xyxy, pixels of `img`) to a `size`×`size` network input, as R-CNN does: the box
/// is dilated so that, once warped, `context` pixels of its surroundings lie on each side of it,
/// then scaled to the square on each axis separately (bilinear sampling); pixels outside the image
/// take the mean, which normalisation makes zero. Writes (3, size, size), normalised with
/// ImageNet's mean and deviation, into `out`.
pub fn warp_region(img: &RgbView, b: [f32; 4], size: usize, context: usize, out: &mut [f32]) {
    let n = size * size;
    debug_assert_eq!(out.len(), 3 * n);
    let inner = (size as f32 - 2.0 * context as f32).max(1.0);
    let (bw, bh) = ((b[2] - b[0]).max(1.0), (b[3] - b[1]).max(1.0));
    // image pixels a warped pixel spans on each axis
    let (sx, sy) = (bw / inner, bh / inner);
    let (x0, y0) = (b[0] - context as f32 * sx, b[1] - context as f32 * sy);
    let (w, h) = (img.width as isize, img.height as isize);
    let px = |x: isize, y: isize, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            MEAN[c]
        } else {
            img.pixels[(y as usize * img.width + x as usize) * 3 + c] as f32 / 255.0
        }
    };
    for v in 0..size {
        let fy = y0 + (v as f32 + 0.5) * sy - 0.5;
        let (yf, ty) = (fy.floor(), fy - fy.floor());
        let yi = yf as isize;
        for u in 0..size {
            let fx = x0 + (u as f32 + 0.5) * sx - 0.5;
            let (xf, tx) = (fx.floor(), fx - fx.floor());
            let xi = xf as isize;
            for c in 0..3 {
                let top = px(xi, yi, c) * (1.0 - tx) + px(xi + 1, yi, c) * tx;
                let bot = px(xi, yi + 1, c) * (1.0 - tx) + px(xi + 1, yi + 1, c) * tx;
                out[c * n + v * size + u] = (top * (1.0 - ty) + bot * ty - MEAN[c]) / STD[c];
            }
        }
    }
}

/// The settings of a linear SVM's training (R-CNN's: C = 0.001, positives weighted 2, a bias
/// feature of 10 on features scaled to a mean norm of 20).
#[derive(Clone, Debug, PartialEq)]
pub struct SvmSettings {
    /// The hinge loss's weight against ½‖w‖².
    pub c: f64,
    /// The positives' loss counts this many times a negative's.
    pub pos_weight: f64,
    /// The constant feature appended to every sample, so that the bias is one more weight.
    pub bias_feature: f64,
    /// Stop when the projected gradients of one pass span less than this.
    pub tolerance: f64,
    /// Passes over the samples at most.
    pub max_passes: usize,
}

impl Default for SvmSettings {
    fn default() -> Self {
        SvmSettings {
            c: 1e-3,
            pos_weight: 2.0,
            bias_feature: 10.0,
            tolerance: 0.1,
            max_passes: 1000,
        }
    }
}

/// A linear SVM: `score(x) = w·x + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearSvm {
    pub w: Vec<f32>,
    pub b: f32,
}

impl LinearSvm {
    pub fn score(&self, x: &[f32]) -> f32 {
        dot(&self.w, x) + self.b
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A linear SVM on samples `x` (row-major, `d` values each) labelled `y` (true: positive): the
/// minimiser of ½‖w‖² + Σ Cᵢ·max(0, 1 − yᵢ(w·xᵢ)) over samples extended with the bias feature,
/// Cᵢ = C·pos_weight for positives and C for negatives, found by coordinate descent on the dual
/// (Hsieh et al., 2008; liblinear's L1-loss solver) visiting the samples in a random order each
/// pass. Returns the SVM and the passes it took.
pub fn train_linear_svm(
    x: &[f32],
    d: usize,
    y: &[bool],
    s: &SvmSettings,
    rng: &mut Rng,
) -> Result<(LinearSvm, usize)> {
    let n = y.len();
    if d == 0 || x.len() != n * d {
        return Err(arg(
            "train_linear_svm",
            format!("{} values for {n} samples of {d} features", x.len()),
        ));
    }
    if !(s.c > 0.0 && s.pos_weight > 0.0 && s.c.is_finite() && s.pos_weight.is_finite()) {
        return Err(arg(
            "train_linear_svm",
            "C and the positive weight must be positive",
        ));
    }
    let bias = s.bias_feature;
    // w in f64 (d weights, then the bias feature's)
    let mut w = vec![0f64; d + 1];
    let mut alpha = vec![0f64; n];
    let qii: Vec<f64> = (0..n)
        .map(|i| {
            x[i * d..(i + 1) * d]
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                + bias * bias
        })
        .collect();
    let cap = |i: usize| if y[i] { s.c * s.pos_weight } else { s.c };
    let mut order: Vec<usize> = (0..n).collect();
    let mut passes = 0;
    while passes < s.max_passes {
        passes += 1;
        rng.shuffle(&mut order);
        let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
        for &i in &order {
            let xi = &x[i * d..(i + 1) * d];
            let yi = if y[i] { 1.0 } else { -1.0 };
            let wx: f64 = xi.iter().zip(&w).map(|(&a, &b)| a as f64 * b).sum::<f64>() + w[d] * bias;
            let g = yi * wx - 1.0;
            let ci = cap(i);
            let pg = if alpha[i] == 0.0 {
                g.min(0.0)
            } else if alpha[i] == ci {
                g.max(0.0)
            } else {
                g
            };
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 && qii[i] > 0.0 {
                let old = alpha[i];
                alpha[i] = (old - g / qii[i]).clamp(0.0, ci);
                let step = (alpha[i] - old) * yi;
                if step != 0.0 {
                    for (wj, &v) in w.iter_mut().zip(xi) {
                        *wj += step * v as f64;
                    }
                    w[d] += step * bias;
                }
            }
        }
        if n == 0 || pg_max - pg_min < s.tolerance {
            break;
        }
    }
    Ok((
        LinearSvm {
            w: w[..d].iter().map(|&v| v as f32).collect(),
            b: (w[d] * bias) as f32,
        },
        passes,
    ))
}

/// Ridge regression: the `(d + 1) × k` weights (the last row the intercept, not penalised) that
/// minimise ‖X·W + 1·b − T‖² + λ‖W‖² for samples `x` (n × d) and targets `t` (n × k), by the
/// normal equations (XᵀX + λI) solved with a Cholesky factorisation in f64.
pub fn ridge_regression(x: &[f32], d: usize, t: &[f32], k: usize, lambda: f64) -> Result<Vec<f64>> {
    let n = x.len().checked_div(d).unwrap_or(0);
    if d == 0 || k == 0 || x.len() != n * d || t.len() != n * k || n == 0 {
        return Err(arg(
            "ridge_regression",
            format!(
                "{} values of {d} features and {} targets of {k}: need the same number (≥ 1) of samples",
                x.len(),
                t.len()
            ),
        ));
    }
    if lambda.is_nan() || lambda <= 0.0 {
        return Err(arg("ridge_regression", "λ must be positive"));
    }
    // [X 1]ᵀ[X 1] and [X 1]ᵀT through the tensor core's matrix product
    let mut xa = Vec::with_capacity(n * (d + 1));
    for row in x.chunks_exact(d) {
        xa.extend_from_slice(row);
        xa.push(1.0);
    }
    let xa = Tensor::from_vec(xa, &[n, d + 1])?;
    let xt = xa.transpose(0, 1)?;
    let gram = xt.matmul(&xa)?.to_vec();
    let rhs = xt.matmul(&Tensor::from_vec(t.to_vec(), &[n, k])?)?.to_vec();
    let m = d + 1;
    let mut a: Vec<f64> = gram.iter().map(|&v| v as f64).collect();
    for i in 0..d {
        a[i * m + i] += lambda;
    }
    // Cholesky A = L·Lᵀ, in place in the lower triangle
    for j in 0..m {
        let mut s = a[j * m + j];
        for p in 0..j {
            s -= a[j * m + p] * a[j * m + p];
        }
        if s <= 0.0 {
            return Err(arg(
                "ridge_regression",
                "the normal equations are singular (a constant sample set?)",
            ));
        }
        let l = s.sqrt();
        a[j * m + j] = l;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for p in 0..j {
                s -= a[i * m + p] * a[j * m + p];
            }
            a[i * m + j] = s / l;
        }
    }
    let mut out = vec![0f64; m * k];
    for c in 0..k {
        // L·z = r, then Lᵀ·w = z
        let mut z: Vec<f64> = (0..m).map(|i| rhs[i * k + c] as f64).collect();
        for i in 0..m {
            for p in 0..i {
                z[i] -= a[i * m + p] * z[p];
            }
            z[i] /= a[i * m + i];
        }
        for i in (0..m).rev() {
            for p in i + 1..m {
                z[i] -= a[p * m + i] * z[p];
            }
            z[i] /= a[i * m + i];
        }
        for i in 0..m {
            out[i * k + c] = z[i];
        }
    }
    Ok(out)
}

/// How [`Rcnn::fit`] trains (the paper's values by default).
#[derive(Clone, Debug, PartialEq)]
pub struct RcnnFitSettings {
    pub svm: SvmSettings,
    /// Proposals overlapping every instance of a class below this IoU are its negatives.
    pub neg_iou: f32,
    /// Negatives in the first cache of each class (drawn at random from all its negatives).
    pub first_negatives: usize,
    /// Rounds of hard-negative mining after the first training.
    pub mining_rounds: usize,
    /// Negatives scoring above this are hard (inside the margin); cached ones below
    /// `easy_score` are dropped from the cache.
    pub hard_score: f32,
    pub easy_score: f32,
    /// Proposals with IoU at least this with a ground-truth box train its class's regressor.
    pub reg_iou: f32,
    /// The regressors' L2 penalty.
    pub reg_lambda: f64,
    /// Mean feature norm after scaling.
    pub feature_norm: f32,
    pub seed: u64,
}

impl Default for RcnnFitSettings {
    fn default() -> Self {
        RcnnFitSettings {
            svm: SvmSettings::default(),
            neg_iou: 0.3,
            first_negatives: 5000,
            mining_rounds: 4,
            hard_score: -1.0,
            easy_score: -1.2,
            reg_iou: 0.6,
            reg_lambda: 1000.0,
            feature_norm: 20.0,
            seed: 0,
        }
    }
}

/// One training image for [`Rcnn::fit`]: its ground truth and its proposals, with the backbone's
/// (unscaled) features of both.
pub struct RcnnImage {
    /// Ground-truth boxes (xyxy pixels) and labels (1 … C − 1).
    pub gt_boxes: Vec<[f32; 4]>,
    pub gt_labels: Vec<usize>,
    /// Features of the ground-truth boxes, `d` values each.
    pub gt_features: Vec<f32>,
    pub proposals: Vec<[f32; 4]>,
    pub proposal_features: Vec<f32>,
}

/// What [`Rcnn::fit`] did for one class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassFit {
    pub positives: usize,
    /// All proposals that are negatives of the class.
    pub negatives: usize,
    /// Hard negatives found in each mining round (after the first training).
    pub hard_per_round: Vec<usize>,
    /// The cache's size at the end.
    pub cache: usize,
    /// Proposals that trained the box regressor.
    pub regression_pairs: usize,
}

/// Detection settings: detections must score above `score_thresh` (an SVM margin), NMS within a
/// class at `nms_thresh`, at most `detections_per_img`.
#[derive(Clone, Debug, PartialEq)]
pub struct RcnnSettings {
    pub score_thresh: f32,
    pub nms_thresh: f64,
    pub detections_per_img: usize,
    /// Warped regions through the backbone at once.
    pub batch: usize,
}

impl Default for RcnnSettings {
    fn default() -> Self {
        RcnnSettings {
            score_thresh: -1.0,
            nms_thresh: 0.3,
            detections_per_img: 100,
            batch: 32,
        }
    }
}

/// R-CNN: a CNN that turns warped regions into feature vectors (global average pooling of its
/// last map), one linear SVM a class (`svm`: K outputs for classes 1 … K) and one box regressor
/// a class (`bbox_pred`: 4K outputs, deltas as the R-CNN box coder with weights 1), and the
/// features' scale (`feature_scale`, set by [`Rcnn::fit`]).
#[derive(Module)]
pub struct Rcnn {
    #[module]
    pub backbone: Box<dyn Module>,
    #[module]
    pub svm: Linear,
    #[module]
    pub bbox_pred: Linear,
    #[buffer]
    pub feature_scale: Tensor,
    /// The network's input side and the context around each box in it.
    pub warp: usize,
    pub context: usize,
    pub feature_dim: usize,
    pub num_classes: usize,
    pub settings: RcnnSettings,
}

impl Module for Rcnn {
    /// Warped regions (N, 3, warp, warp) → scaled features (N, D).
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.pooled(x)?.mul(&self.feature_scale)?)
    }
}

impl Rcnn {
    /// The backbone's map of warped regions, average-pooled: (N, D), unscaled.
    fn pooled(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let f = self.backbone.forward(x)?;
        let s = f.shape().to_vec();
        if s.len() != 4 {
            return Err(aics_nn::NnError::Config {
                layer: "Rcnn.backbone".into(),
                msg: format!("expected a (N, C, H, W) map, got {s:?}"),
            });
        }
        Ok(f.mean_dims(&[2, 3], false)?)
    }

    /// R-CNN on MobileNetV2's `features` (1280 channels): `net` is the whole classifier as the zoo
    /// builds it (`aics_vision::models::mobilenet::mobilenet_v2`), with the weights it should
    /// carry; `num_classes` counts the background.
    pub fn mobilenet_v2(
        net: Sequential,
        num_classes: usize,
        warp: usize,
        context: usize,
        seed: u64,
    ) -> Result<Self> {
        let features = net
            .into_layers()
            .into_iter()
            .find(|(n, _)| n == "features")
            .map(|(_, m)| m)
            .ok_or_else(|| arg("Rcnn::mobilenet_v2", "the network has no `features`"))?;
        Self::new(features, 1280, num_classes, warp, context, seed)
    }

    /// R-CNN on any `backbone` that maps (N, 3, warp, warp) to (N, `feature_dim`, h, w).
    pub fn new(
        backbone: Box<dyn Module>,
        feature_dim: usize,
        num_classes: usize,
        warp: usize,
        context: usize,
        seed: u64,
    ) -> Result<Self> {
        if num_classes < 2 {
            return Err(arg(
                "Rcnn",
                format!("{num_classes} classes: need the background and at least one more"),
            ));
        }
        if warp < 2 * context + 8 {
            return Err(arg(
                "Rcnn",
                format!("a {warp} px input leaves no room inside {context} px of context"),
            ));
        }
        let mut rng = Rng::new(seed);
        let k = num_classes - 1;
        let svm = Linear::new(feature_dim, k, true, &mut rng)?;
        let bbox_pred = Linear::new(feature_dim, 4 * k, true, &mut rng)?;
        Ok(Rcnn {
            backbone,
            svm,
            bbox_pred,
            feature_scale: Tensor::from_vec(vec![1.0], &[1])?,
            warp,
            context,
            feature_dim,
            num_classes,
            settings: RcnnSettings::default(),
        })
    }

    /// The backbone's features of `boxes` on `img` (warped with context), `feature_dim` values a
    /// box; scaled by `feature_scale` when `scaled`.
    pub fn features(&self, img: &RgbView, boxes: &[[f32; 4]], scaled: bool) -> Result<Vec<f32>> {
        let _g = no_grad();
        let (s, d) = (self.warp, self.feature_dim);
        let mut out = Vec::with_capacity(boxes.len() * d);
        for chunk in boxes.chunks(self.settings.batch.max(1)) {
            let mut x = vec![0f32; chunk.len() * 3 * s * s];
            x.par_chunks_mut(3 * s * s)
                .zip(chunk)
                .for_each(|(o, b)| warp_region(img, *b, s, self.context, o));
            let x = Tensor::from_vec(x, &[chunk.len(), 3, s, s])?;
            let f = if scaled {
                self.forward(&x)?
            } else {
                self.pooled(&x)?
            };
            if f.shape() != [chunk.len(), d] {
                return Err(arg(
                    "Rcnn::features",
                    format!(
                        "the backbone gave {:?} features for {} regions; expected {d} each",
                        f.shape(),
                        chunk.len()
                    ),
                ));
            }
            out.extend_from_slice(&f.to_vec());
        }
        Ok(out)
    }

    /// Detections on `img` from its `proposals` (xyxy pixels): every proposal scored by every
    /// class's SVM, those above the score threshold moved by the class's regressor and clipped
    /// to the image, NMS within each class, the best `detections_per_img` kept. Labels 1 … K.
    pub fn detect(&self, img: &RgbView, proposals: &[[f32; 4]]) -> Result<Detections> {
        let feats = self.features(img, proposals, true)?;
        let d = self.feature_dim;
        let n = proposals.len();
        let mut out = Detections::default();
        if n == 0 {
            return Ok(out);
        }
        let f = Tensor::from_vec(feats, &[n, d])?;
        let (scores, deltas) = {
            let _g = no_grad();
            (
                self.svm.forward(&f)?.to_vec(),
                self.bbox_pred.forward(&f)?.to_vec(),
            )
        };
        let k = self.num_classes - 1;
        let coder = BoxCoder::new([1.0; 4]);
        let (w, h) = (img.width as f32, img.height as f32);
        let (mut boxes, mut sc, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            for c in 0..k {
                let s = scores[i * k + c];
                if s.is_nan() || s <= self.settings.score_thresh {
                    continue;
                }
                let b =
                    coder.decode(&deltas[(i * k + c) * 4..(i * k + c + 1) * 4], &proposals[i])?;
                let b = [
                    b[0].clamp(0.0, w),
                    b[1].clamp(0.0, h),
                    b[2].clamp(0.0, w),
                    b[3].clamp(0.0, h),
                ];
                if b[2] - b[0] < 1e-2 || b[3] - b[1] < 1e-2 {
                    continue;
                }
                boxes.extend(b);
                sc.push(s);
                labels.push(c + 1);
            }
        }
        let m = sc.len();
        let bt = Tensor::from_vec(boxes.clone(), &[m, 4])?;
        let mut keep = batched_nms(&bt, &sc, &labels, self.settings.nms_thresh)?;
        keep.truncate(self.settings.detections_per_img);
        for i in keep {
            out.boxes.push([
                boxes[4 * i],
                boxes[4 * i + 1],
                boxes[4 * i + 2],
                boxes[4 * i + 3],
            ]);
            out.scores.push(sc[i]);
            out.labels.push(labels[i]);
        }
        Ok(out)
    }

    /// Train the SVMs and box regressors on the features of `images` (unscaled, as
    /// [`Rcnn::features`] gives them with `scaled` false): the feature scale that brings their
    /// mean norm to `feature_norm`; per class, an SVM with the ground-truth boxes as positives and
    /// proposals below `neg_iou` with all its instances as negatives, a first cache of random
    /// negatives then rounds of hard-negative mining (negatives scoring above `hard_score` join,
    /// cached ones below `easy_score` leave); and a ridge regressor from the features of
    /// proposals with IoU ≥ `reg_iou` to their best ground-truth box of the class (the paper's
    /// targets). Returns what happened for each class.
    pub fn fit(&mut self, images: &[RcnnImage], s: &RcnnFitSettings) -> Result<Vec<ClassFit>> {
        let d = self.feature_dim;
        let k = self.num_classes - 1;
        for (i, im) in images.iter().enumerate() {
            if im.gt_boxes.len() != im.gt_labels.len()
                || im.gt_features.len() != im.gt_boxes.len() * d
                || im.proposal_features.len() != im.proposals.len() * d
            {
                return Err(arg(
                    "Rcnn::fit",
                    format!("image {i}: boxes, labels and features of {d} values do not agree"),
                ));
            }
            if let Some(&l) = im.gt_labels.iter().find(|&&l| l == 0 || l > k) {
                return Err(arg(
                    "Rcnn::fit",
                    format!("image {i}: label {l}, expected 1 … {k}"),
                ));
            }
        }
        // the scale bringing the mean feature norm to `feature_norm`
        let (mut norm_sum, mut count) = (0f64, 0usize);
        for im in images {
            for f in im
                .gt_features
                .chunks_exact(d)
                .chain(im.proposal_features.chunks_exact(d))
            {
                norm_sum += f.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                count += 1;
            }
        }
        if count == 0 || norm_sum <= 0.0 {
            return Err(arg("Rcnn::fit", "no features to train on"));
        }
        let scale = s.feature_norm as f64 / (norm_sum / count as f64);
        self.feature_scale = Tensor::from_vec(vec![scale as f32], &[1])?;
        let scaled = |f: &[f32]| f.iter().map(|&v| v * scale as f32).collect::<Vec<f32>>();
        let mut svm_w = vec![0f32; k * d];
        let mut svm_b = vec![0f32; k];
        let mut reg_w = vec![0f32; 4 * k * d];
        let mut reg_b = vec![0f32; 4 * k];
        let coder = BoxCoder::new([1.0; 4]);
        let mut report = Vec::new();
        for c in 1..=k {
            let mut rng = Rng::derive(s.seed, c as u64);
            // positives: the class's ground-truth boxes; negatives: (image, proposal) pairs
            let mut pos = Vec::new();
            let mut negs: Vec<(usize, usize)> = Vec::new();
            let mut reg_x = Vec::new();
            let mut reg_t = Vec::new();
            for (ii, im) in images.iter().enumerate() {
                let mine: Vec<usize> = (0..im.gt_boxes.len())
                    .filter(|&g| im.gt_labels[g] == c)
                    .collect();
                for &g in &mine {
                    pos.extend(scaled(&im.gt_features[g * d..(g + 1) * d]));
                }
                for (p, b) in im.proposals.iter().enumerate() {
                    let best = mine
                        .iter()
                        .map(|&g| (pair_iou(b, &im.gt_boxes[g]), g))
                        .fold((0f32, usize::MAX), |a, x| if x.0 > a.0 { x } else { a });
                    if best.0 < s.neg_iou {
                        negs.push((ii, p));
                    } else if best.0 >= s.reg_iou {
                        let f = &im.proposal_features[p * d..(p + 1) * d];
                        reg_x.extend(scaled(f));
                        reg_t.extend(coder.encode(&im.gt_boxes[best.1], b)?);
                    }
                }
            }
            let npos = pos.len() / d;
            let neg_feat = |&(ii, p): &(usize, usize)| {
                scaled(&images[ii].proposal_features[p * d..(p + 1) * d])
            };
            // the first cache: random negatives
            let mut order: Vec<usize> = (0..negs.len()).collect();
            rng.shuffle(&mut order);
            let mut cached: Vec<bool> = vec![false; negs.len()];
            let mut cache: Vec<usize> = order.into_iter().take(s.first_negatives).collect();
            for &i in &cache {
                cached[i] = true;
            }
            let train = |cache: &[usize], rng: &mut Rng| -> Result<LinearSvm> {
                let mut x = pos.clone();
                let mut y = vec![true; npos];
                for &i in cache {
                    x.extend(neg_feat(&negs[i]));
                    y.push(false);
                }
                Ok(train_linear_svm(&x, d, &y, &s.svm, rng)?.0)
            };
            let mut svm = train(&cache, &mut rng)?;
            let mut hard_per_round = Vec::new();
            for _ in 0..s.mining_rounds {
                // w·(scale·f) + b, on the cached features as they are
                let scores: Vec<f32> = negs
                    .par_iter()
                    .map(|&(ii, p)| {
                        let f = &images[ii].proposal_features[p * d..(p + 1) * d];
                        dot(&svm.w, f) * scale as f32 + svm.b
                    })
                    .collect();
                let hard: Vec<usize> = (0..negs.len())
                    .filter(|&i| !cached[i] && scores[i] > s.hard_score)
                    .collect();
                hard_per_round.push(hard.len());
                if hard.is_empty() {
                    break;
                }
                cache.retain(|&i| {
                    let keep = scores[i] >= s.easy_score;
                    cached[i] = keep;
                    keep
                });
                for i in hard {
                    cached[i] = true;
                    cache.push(i);
                }
                svm = train(&cache, &mut rng)?;
            }
            svm_w[(c - 1) * d..c * d].copy_from_slice(&svm.w);
            svm_b[c - 1] = svm.b;
            let pairs = reg_t.len() / 4;
            if pairs > 0 {
                let wr = ridge_regression(&reg_x, d, &reg_t, 4, s.reg_lambda)?;
                for j in 0..4 {
                    let o = (c - 1) * 4 + j;
                    for f in 0..d {
                        reg_w[o * d + f] = wr[f * 4 + j] as f32;
                    }
                    reg_b[o] = wr[d * 4 + j] as f32;
                }
            }
            report.push(ClassFit {
                positives: npos,
                negatives: negs.len(),
                hard_per_round,
                cache: cache.len(),
                regression_pairs: pairs,
            });
        }
        self.svm.weight = Tensor::from_vec(svm_w, &[k, d])?;
        self.svm.bias = Some(Tensor::from_vec(svm_b, &[k])?);
        self.bbox_pred.weight = Tensor::from_vec(reg_w, &[4 * k, d])?;
        self.bbox_pred.bias = Some(Tensor::from_vec(reg_b, &[4 * k])?);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svm_separates_and_satisfies_the_margin_conditions() {
        // two Gaussian blobs in 3-d, linearly separable
        let mut rng = Rng::new(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let p = i % 2 == 0;
            let c = if p { 2.0 } else { -2.0 };
            for _ in 0..3 {
                x.push(c + rng.normal() as f32 * 0.5);
            }
            y.push(p);
        }
        let s = SvmSettings {
            c: 1.0,
            tolerance: 1e-2,
            ..Default::default()
        };
        let (svm, passes) = train_linear_svm(&x, 3, &y, &s, &mut Rng::new(1)).unwrap();
        assert!(passes < s.max_passes, "{passes}");
        for (i, &p) in y.iter().enumerate() {
            let m = svm.score(&x[i * 3..i * 3 + 3]) * if p { 1.0 } else { -1.0 };
            assert!(m > 0.0, "sample {i} on the wrong side: {m}");
        }
        // KKT in the primal: no sample strictly inside the margin is left without a hinge term
        // that the solver could reduce, i.e. the hinge loss is at most C·n·tol-small
        let hinge: f32 = y
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let m = svm.score(&x[i * 3..i * 3 + 3]) * if p { 1.0 } else { -1.0 };
                (1.0 - m).max(0.0)
            })
            .sum();
        assert!(hinge.is_finite() && hinge < 5.0, "hinge {hinge}");
    }

    #[test]
    fn svm_matches_the_primal_optimum_in_one_dimension() {
        // one feature, no bias (bias feature 0): samples at ±1 with C large → w = 1
        // (margin exactly 1); at ±2 → w = 0.5
        for (v, want) in [(1.0f32, 1.0f32), (2.0, 0.5)] {
            let x = vec![v, -v, v, -v];
            let y = vec![true, false, true, false];
            let s = SvmSettings {
                c: 100.0,
                pos_weight: 1.0,
                bias_feature: 0.0,
                tolerance: 1e-9,
                max_passes: 10_000,
            };
            let (svm, _) = train_linear_svm(&x, 1, &y, &s, &mut Rng::new(0)).unwrap();
            assert!((svm.w[0] - want).abs() < 1e-4, "{} vs {want}", svm.w[0]);
            assert!(svm.b.abs() < 1e-6);
        }
    }

    #[test]
    fn ridge_equals_the_normal_equations_in_f64() {
        let mut rng = Rng::new(5);
        let (n, d, k) = (50, 4, 2);
        let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let truth = [[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0]];
        let t: Vec<f32> = (0..n)
            .flat_map(|i| {
                let r = &x[i * d..(i + 1) * d];
                (0..k)
                    .map(|c| (0..d).map(|f| r[f] * truth[f][c]).sum::<f32>() + 0.25)
                    .collect::<Vec<_>>()
            })
            .collect();
        // tiny λ: the exact solution comes back
        let w = ridge_regression(&x, d, &t, k, 1e-6).unwrap();
        for f in 0..d {
            for c in 0..k {
                let v = w[f * k + c];
                assert!((v - truth[f][c] as f64).abs() < 1e-3, "{v}");
            }
        }
        assert!((w[d * k] - 0.25).abs() < 1e-3 && (w[d * k + 1] - 0.25).abs() < 1e-3);
        // large λ: the gradient of the penalised objective vanishes, checked in f64
        let lambda = 40.0;
        let w = ridge_regression(&x, d, &t, k, lambda).unwrap();
        for c in 0..k {
            for f in 0..=d {
                let mut g = 0f64;
                for i in 0..n {
                    let xi = |j: usize| if j == d { 1.0 } else { x[i * d + j] as f64 };
                    let pred: f64 = (0..=d).map(|j| xi(j) * w[j * k + c]).sum();
                    g += (pred - t[i * k + c] as f64) * xi(f);
                }
                if f < d {
                    g += lambda * w[f * k + c];
                }
                assert!(g.abs() < 1e-3, "gradient {g} at feature {f}");
            }
        }
        assert!(ridge_regression(&x, d, &t[..3], k, 1.0).is_err());
        assert!(ridge_regression(&x, d, &t, k, f64::NAN).is_err());
    }

    /// The whole pipeline on colour: a backbone that passes the warped pixels through, so a
    /// region's features are its mean colour; red squares are class 1, blue ones class 2 on grey.
    /// After `fit`, `detect` finds each square, with its class, as the top box of its class.
    #[test]
    fn fit_and_detect_find_coloured_squares() {
        let (w, h) = (64usize, 64usize);
        let scene = |i: usize| -> (Vec<u8>, [f32; 4], usize) {
            let label = 1 + i % 2;
            let (x0, y0) = (8 + (i * 7) % 30, 6 + (i * 11) % 30);
            let side = 16 + i % 8;
            let mut px = vec![128u8; w * h * 3];
            for y in y0..y0 + side {
                for x in x0..x0 + side {
                    let c = if label == 1 {
                        [230, 20, 20]
                    } else {
                        [20, 20, 230]
                    };
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
                }
            }
            let b = [x0 as f32, y0 as f32, (x0 + side) as f32, (y0 + side) as f32];
            (px, b, label)
        };
        let proposals = |g: [f32; 4]| -> Vec<[f32; 4]> {
            let mut p = vec![
                [0.0, 0.0, 20.0, 20.0],
                [40.0, 40.0, 63.0, 63.0],
                [0.0, 40.0, 24.0, 63.0],
                [40.0, 0.0, 63.0, 22.0],
            ];
            p.retain(|q| pair_iou(q, &g) < 0.3);
            for d in [-2.0, 0.0, 2.0] {
                p.push([g[0] + d, g[1] - d, g[2] + d, g[3]]);
            }
            p
        };
        let mut m = Rcnn::new(Box::new(Sequential::new()), 3, 3, 24, 2, 0).unwrap();
        let mut images = Vec::new();
        for i in 0..12 {
            let (px, g, label) = scene(i);
            let v = RgbView {
                width: w,
                height: h,
                pixels: &px,
            };
            let props = proposals(g);
            images.push(RcnnImage {
                gt_features: m.features(&v, &[g], false).unwrap(),
                proposal_features: m.features(&v, &props, false).unwrap(),
                gt_boxes: vec![g],
                gt_labels: vec![label],
                proposals: props,
            });
        }
        let s = RcnnFitSettings {
            svm: SvmSettings {
                c: 1.0,
                ..Default::default()
            },
            reg_lambda: 1.0,
            ..Default::default()
        };
        let report = m.fit(&images, &s).unwrap();
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].positives, 6);
        assert!(report
            .iter()
            .all(|r| r.negatives > 0 && r.regression_pairs > 0));
        for i in 12..16 {
            let (px, g, label) = scene(i);
            let v = RgbView {
                width: w,
                height: h,
                pixels: &px,
            };
            let d = m.detect(&v, &proposals(g)).unwrap();
            assert!(!d.labels.is_empty(), "scene {i}: nothing found");
            assert_eq!(d.labels[0], label, "scene {i}: {d:?}");
            assert!(d.scores[0].is_finite() && d.scores[0] > 0.0, "{d:?}");
            assert!(pair_iou(&d.boxes[0], &g) > 0.5, "scene {i}: {d:?}");
            // the other colour's SVM does not fire on it
            assert!(
                d.labels
                    .iter()
                    .zip(&d.scores)
                    .all(|(&l, &sc)| l == label || sc < 0.0),
                "{d:?}"
            );
        }
    }

    #[test]
    fn warp_keeps_context_and_fills_outside_with_the_mean() {
        // a 20×20 white square at (10, 10) on black, 40×40 image
        let (w, h) = (40usize, 40usize);
        let mut px = vec![0u8; w * h * 3];
        for y in 10..30 {
            for x in 10..30 {
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let img = RgbView {
            width: w,
            height: h,
            pixels: &px,
        };
        let (s, ctx) = (32usize, 8usize);
        let mut out = vec![0f32; 3 * s * s];
        warp_region(&img, [10.0, 10.0, 30.0, 30.0], s, ctx, &mut out);
        let white = (1.0 - MEAN[0]) / STD[0];
        let black = (0.0 - MEAN[0]) / STD[0];
        // inside the box's warped place: white; in the context band: black
        assert!((out[16 * s + 16] - white).abs() < 1e-5);
        assert!((out[12 * s + 12] - white).abs() < 1e-5);
        assert!((out[2 * s + 2] - black).abs() < 1e-5);
        // a box at the image's corner: the context beyond the edge is the mean (zero)
        warp_region(&img, [0.0, 0.0, 10.0, 10.0], s, ctx, &mut out);
        for c in 0..3 {
            assert!(out[c * s * s].abs() < 1e-6, "{}", out[c * s * s]);
        }
        assert!((out[20 * s + 20] - black).abs() < 1e-5);
    }
}
