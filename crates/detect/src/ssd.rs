//! SSD (Liu et al., 2016) as torchvision builds it, with its state-dict keys:
//!
//! - `ssd300_vgg16`: VGG16 up to conv4_3 (pool3 in ceil mode), its output L2-normalized per
//!   location and scaled by a learned weight per channel (`backbone.scale_weight`); then pool5
//!   3×3/1, the dilated fc6 and fc7 as convolutions, and four extra blocks — six feature maps
//!   (38², 19², 10², 5², 3², 1² at 300×300) with 4, 6, 6, 6, 4, 4 default boxes a location:
//!   aspect ratios {1, 1′, 2, 1/2} plus {3, 1/3} on the middle maps; 3×3 conv heads.
//! - `ssdlite320_mobilenet_v3_large`: MobileNetV3-Large (reduced tail) cut after the expansion
//!   of the block that strides to 1/32, plus four depthwise-separable extra blocks; heads are
//!   depthwise 3×3 + BN + ReLU6 then 1×1; six default boxes a location at every map.
//!
//! Post-processing as torchvision: softmax, decode against the default boxes (weights
//! 10, 10, 5, 5), clip; per class the scores above the threshold, the best `topk_candidates`;
//! NMS per class; the best `detections_per_img`.

use std::sync::Mutex;

use rayon::prelude::*;

use aics_nn::layers::{Conv2d, MaxPool2d, ReLU};
use aics_nn::{Kind, Module, Sequential};
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};
use aics_vision::models::mobilenet_v3::{conv_norm_act, mobilenet_v3_features, Act};
use aics_vision::models::Norm;

use crate::boxes::{batched_nms, pair_iou};
use crate::coder::BoxCoder;
use crate::error::{arg, Result};
pub use crate::faster_rcnn::Target;
use crate::faster_rcnn::{check_classes, check_size, resize_boxes, Detections, RcnnTransform};

/// torchvision's `DefaultBoxGenerator`: per feature map k, boxes of scale s_k and
/// √(s_k·s_{k+1}) with ratio 1, then s_k·√r × s_k/√r and its transpose for each ratio r; centred
/// on each cell (`(i + 0.5) / f_k`, or `/ (image / step_k)` with steps), sizes relative to the
/// image and clipped to [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct DefaultBoxes {
    pub aspect_ratios: Vec<Vec<f64>>,
    /// One more than the maps: s_1 … s_m, then the scale that only s′_m uses.
    pub scales: Vec<f64>,
    pub steps: Option<Vec<f64>>,
    pub clip: bool,
}

impl DefaultBoxes {
    /// Scales spread evenly from `min_ratio` to `max_ratio` over the maps, then 1.
    pub fn linear(aspect_ratios: Vec<Vec<f64>>, min_ratio: f64, max_ratio: f64) -> Self {
        let m = aspect_ratios.len();
        let mut scales: Vec<f64> = if m > 1 {
            (0..m)
                .map(|k| min_ratio + (max_ratio - min_ratio) * k as f64 / (m as f64 - 1.0))
                .collect()
        } else {
            vec![min_ratio]
        };
        scales.push(if m > 1 { 1.0 } else { max_ratio });
        DefaultBoxes {
            aspect_ratios,
            scales,
            steps: None,
            clip: true,
        }
    }

    pub fn num_anchors_per_location(&self) -> Vec<usize> {
        self.aspect_ratios.iter().map(|r| 2 + 2 * r.len()).collect()
    }

    /// The (w, h) pairs of map k, relative to the image (f32, as torchvision stores them).
    fn wh_pairs(&self, k: usize) -> Vec<[f32; 2]> {
        let s = self.scales[k];
        let s2 = (s * self.scales[k + 1]).sqrt();
        let mut v = vec![[s, s], [s2, s2]];
        for &r in &self.aspect_ratios[k] {
            let q = r.sqrt();
            let (w, h) = (s * q, s / q);
            v.push([w, h]);
            v.push([h, w]);
        }
        v.iter()
            .map(|p| {
                let p = p.map(|x| x as f32);
                if self.clip {
                    p.map(|x| x.clamp(0.0, 1.0))
                } else {
                    p
                }
            })
            .collect()
    }

    /// All default boxes, xyxy in pixels of an image of `image` (h, w), for maps of
    /// `grids` (h, w): map by map, then row-major over cells, then the pairs of a cell.
    pub fn boxes(&self, grids: &[(usize, usize)], image: (usize, usize)) -> Result<Vec<[f32; 4]>> {
        if grids.len() != self.aspect_ratios.len() || self.scales.len() <= grids.len() {
            return Err(arg(
                "DefaultBoxes",
                format!(
                    "{} feature maps for {} lists of aspect ratios",
                    grids.len(),
                    self.aspect_ratios.len()
                ),
            ));
        }
        let (ih, iw) = (image.0 as f32, image.1 as f32);
        let mut out = Vec::new();
        for (k, &(gh, gw)) in grids.iter().enumerate() {
            let (fy, fx) = match &self.steps {
                Some(st) => (image.0 as f64 / st[k], image.1 as f64 / st[k]),
                None => (gh as f64, gw as f64),
            };
            let (fy, fx) = (fy as f32, fx as f32);
            let pairs = self.wh_pairs(k);
            for y in 0..gh {
                let cy = (y as f32 + 0.5) / fy;
                for x in 0..gw {
                    let cx = (x as f32 + 0.5) / fx;
                    for [w, h] in &pairs {
                        out.push([
                            (cx - 0.5 * w) * iw,
                            (cy - 0.5 * h) * ih,
                            (cx + 0.5 * w) * iw,
                            (cy + 0.5 * h) * ih,
                        ]);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn conv(c: usize, o: usize, k: usize, p: ConvParams, rng: &mut Rng) -> Result<Conv2d> {
    Ok(Conv2d::new(c, o, k, p, true, rng)?)
}

fn conv_relu(
    seq: Sequential,
    c: usize,
    o: usize,
    k: usize,
    p: ConvParams,
    rng: &mut Rng,
) -> Result<Sequential> {
    Ok(seq.add(conv(c, o, k, p, rng)?).add(ReLU))
}

/// SSD300's VGG16 extractor (torchvision's `SSDFeatureExtractorVGG`): keys `scale_weight`,
/// `features.*` (VGG16's `features.0`…`22`), `extra.0.*` (pool4, conv5, and the pool5 / fc6 /
/// fc7 block as `extra.0.7.*`), `extra.1`…`extra.4`.
#[derive(Module)]
pub struct SsdVgg {
    #[param]
    pub scale_weight: Tensor,
    #[module]
    pub features: Sequential,
    #[module]
    pub extra: Sequential,
}

impl SsdVgg {
    pub fn new(rng: &mut Rng) -> Result<Self> {
        let p1 = ConvParams::default().padding(1);
        let pool = || MaxPool2d(PoolParams::new(2).stride(2));
        let mut features = Sequential::new();
        let mut c = 3;
        // VGG16 up to conv4_3's ReLU; pool3 rounds up (75 → 38 at 300×300)
        for &w in &[64, 64, 0, 128, 128, 0, 256, 256, 256, 1, 512, 512, 512] {
            features = match w {
                0 => features.add(pool()),
                1 => features.add(MaxPool2d(PoolParams::new(2).stride(2).ceil_mode(true))),
                _ => {
                    let f = conv_relu(features, c, w, 3, p1, rng)?;
                    c = w;
                    f
                }
            };
        }
        let mut e0 = Sequential::new().add(pool());
        for _ in 0..3 {
            e0 = conv_relu(e0, 512, 512, 3, p1, rng)?;
        }
        let fc = Sequential::new().add(MaxPool2d(PoolParams::new(3).stride(1).padding(1)));
        let fc = conv_relu(
            fc,
            512,
            1024,
            3,
            ConvParams::default().padding(6).dilation(6),
            rng,
        )?;
        let fc = conv_relu(fc, 1024, 1024, 1, ConvParams::default(), rng)?;
        let e0 = e0.add(fc);
        let mut extra = Sequential::new().add(e0);
        let s2 = ConvParams::default().padding(1).stride(2);
        for (c, mid, o, p) in [
            (1024, 256, 512, s2),
            (512, 128, 256, s2),
            (256, 128, 256, ConvParams::default()),
            (256, 128, 256, ConvParams::default()),
        ] {
            let b = conv_relu(Sequential::new(), c, mid, 1, ConvParams::default(), rng)?;
            extra = extra.add(conv_relu(b, mid, o, 3, p, rng)?);
        }
        Ok(SsdVgg {
            scale_weight: Tensor::full(&[512], 20.0).requires_grad_(true),
            features,
            extra,
        })
    }

    pub fn feature_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let x = self.features.forward(x)?;
        let c = self.scale_weight.numel();
        let norm = x
            .square()
            .sum_dim(1, true)?
            .sqrt()
            .clamp(1e-12, f64::INFINITY);
        let w = self.scale_weight.reshape(&[1, c, 1, 1])?;
        let mut out = vec![w.mul(&x.div(&norm)?)?];
        let mut h = x;
        for (_, block) in self.extra.layers() {
            h = block.forward(&h)?;
            out.push(h.clone());
        }
        Ok(out)
    }
}

/// SSDlite's MobileNetV3 extractor (torchvision's `SSDLiteFeatureExtractorMobileNet`): keys
/// `features.0.*` (the network up to the expansion conv of the block that strides to 1/32),
/// `features.1.*` (the rest of that block as `features.1.0.{1,2,3}`, then the later children),
/// `extra.0`…`extra.3` (1×1, depthwise 3×3/2, 1×1, each with batch norm and ReLU6).
#[derive(Module)]
pub struct SsdLiteMobileNet {
    #[module]
    pub features: Sequential,
    #[module]
    pub extra: Sequential,
}

impl SsdLiteMobileNet {
    /// MobileNetV3-Large with `reduced_tail` and batch norm `norm`.
    pub fn new(norm: Norm, reduced_tail: bool, rng: &mut Rng) -> Result<Self> {
        let f = mobilenet_v3_features(true, norm, reduced_tail, false, 3, rng)?;
        let c4 = f.stage_indices[f.stage_indices.len() - 2];
        let last_c = *f.channels.last().unwrap_or(&960);
        let mut first = Sequential::new().add(f.stem);
        let mut second = Sequential::new();
        let mut tail = Sequential::new();
        for (i, b) in f.blocks.into_iter().enumerate() {
            let idx = i + 1;
            if idx < c4 {
                first = first.add(b);
            } else if idx == c4 {
                if b.residual() {
                    return Err(arg(
                        "SsdLiteMobileNet",
                        "the block at C4 must not be residual",
                    ));
                }
                let mut layers = b.into_block().into_layers().into_iter();
                if let Some((_, expand)) = layers.next() {
                    first.push_boxed(&c4.to_string(), expand);
                }
                for (name, l) in layers {
                    tail.push_boxed(&name, l);
                }
            } else {
                second.push_boxed(&(idx - c4).to_string(), Box::new(b));
            }
        }
        let mut rest = Sequential::new().add(tail);
        for (name, l) in second.into_layers() {
            rest.push_boxed(&name, l);
        }
        rest.push_boxed(&(rest.len()).to_string(), Box::new(f.last));
        let features = Sequential::new().add(first).add(rest);
        let mut extra = Sequential::new();
        let mut c = last_c;
        for o in [512, 256, 256, 128] {
            let mid = o / 2;
            extra = extra.add(
                Sequential::new()
                    .add(conv_norm_act(c, mid, 1, (1, 1, 1), norm, Act::ReLU6, rng)?)
                    .add(conv_norm_act(
                        mid,
                        mid,
                        3,
                        (2, 1, mid),
                        norm,
                        Act::ReLU6,
                        rng,
                    )?)
                    .add(conv_norm_act(mid, o, 1, (1, 1, 1), norm, Act::ReLU6, rng)?),
            );
            c = o;
        }
        Ok(SsdLiteMobileNet { features, extra })
    }

    pub fn feature_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        let mut h = x.clone();
        for (_, block) in self.features.layers().chain(self.extra.layers()) {
            h = block.forward(&h)?;
            out.push(h.clone());
        }
        Ok(out)
    }
}

/// Stages of 3×3 conv + batch norm + ReLU of the given widths, the first with stride 2, each
/// later one after a 2×2 max pool (output strides 2, 4, 8, …): the small backbones of the
/// detectors trained on synthetic scenes. Keys `{i}.0.*` (`{i}.1.*` after a pool).
pub fn small_stages(widths: &[usize], rng: &mut Rng) -> Result<Sequential> {
    let mut stages = Sequential::new();
    let mut c = 3;
    for (i, &w) in widths.iter().enumerate() {
        let mut st = Sequential::new();
        if i > 0 {
            st = st.add(MaxPool2d(PoolParams::new(2).stride(2)));
        }
        let stride = if i == 0 { 2 } else { 1 };
        st = st.add(conv_norm_act(
            c,
            w,
            3,
            (stride, 1, 1),
            Norm::BATCH,
            Act::ReLU,
            rng,
        )?);
        stages = stages.add(st);
        c = w;
    }
    Ok(stages)
}

/// A small SSD backbone for small images (the synthetic scenes): stages of 3×3 conv + batch
/// norm + ReLU, the first with stride 2, each later one after a 2×2 max pool; the last `maps`
/// stages feed the heads. Keys `stages.{i}.*`.
#[derive(Module)]
pub struct SsdSmall {
    #[module]
    pub stages: Sequential,
    /// How many of the last stages are feature maps.
    pub maps: usize,
}

impl SsdSmall {
    /// Widths of the stages; their output strides are 2, 4, 8, ….
    pub fn new(widths: &[usize], maps: usize, rng: &mut Rng) -> Result<Self> {
        if maps == 0 || maps > widths.len() {
            return Err(arg(
                "SsdSmall",
                format!("{maps} feature maps of {} stages", widths.len()),
            ));
        }
        Ok(SsdSmall {
            stages: small_stages(widths, rng)?,
            maps,
        })
    }

    pub fn feature_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let n = self.stages.len();
        let mut out = Vec::new();
        let mut h = x.clone();
        for (i, (_, st)) in self.stages.layers().enumerate() {
            h = st.forward(&h)?;
            if i + self.maps >= n {
                out.push(h.clone());
            }
        }
        Ok(out)
    }
}

impl Module for SsdSmall {
    /// The finest feature map.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self
            .feature_maps(x)
            .map_err(crate::faster_rcnn::nn_err)?
            .remove(0))
    }
}

/// An SSD backbone: the feature maps the heads read.
pub enum SsdBackbone {
    Vgg(SsdVgg),
    MobileNet(SsdLiteMobileNet),
    Small(SsdSmall),
}

impl SsdBackbone {
    fn inner(&self) -> &dyn Module {
        match self {
            SsdBackbone::Vgg(m) => m,
            SsdBackbone::MobileNet(m) => m,
            SsdBackbone::Small(m) => m,
        }
    }
    pub fn feature_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            SsdBackbone::Vgg(m) => m.feature_maps(x),
            SsdBackbone::MobileNet(m) => m.feature_maps(x),
            SsdBackbone::Small(m) => m.feature_maps(x),
        }
    }
}

impl aics_nn::Fields for SsdBackbone {}

impl Module for SsdBackbone {
    /// The finest feature map.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.inner().forward(x)
    }
    fn type_name(&self) -> String {
        match self {
            SsdBackbone::Vgg(_) => "SsdVgg".into(),
            SsdBackbone::MobileNet(_) => "SsdLiteMobileNet".into(),
            SsdBackbone::Small(_) => "SsdSmall".into(),
        }
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        self.inner().visit(prefix, f)
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        self.inner().visit_rngs(prefix, f)
    }
    fn set_training(&self, training: bool) {
        self.inner().set_training(training)
    }
}

impl Module for SsdVgg {
    /// conv4_3's normalized and scaled output.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self
            .feature_maps(x)
            .map_err(crate::faster_rcnn::nn_err)?
            .remove(0))
    }
}

impl Module for SsdLiteMobileNet {
    /// The finest feature map.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self
            .feature_maps(x)
            .map_err(crate::faster_rcnn::nn_err)?
            .remove(0))
    }
}

/// One prediction layer per feature map (`module_list.{i}`), each giving `columns` numbers per
/// default box (torchvision's `SSDScoringHead`).
#[derive(Module)]
pub struct ScoringHead {
    #[module]
    pub module_list: Sequential,
    pub columns: usize,
}

impl ScoringHead {
    /// (N, Σ H·W·A, columns) over all maps, in (map, y, x, box) order.
    pub fn scores(&self, maps: &[Tensor]) -> Result<Tensor> {
        if maps.len() != self.module_list.len() {
            return Err(arg(
                "ScoringHead",
                format!(
                    "{} feature maps for {} prediction layers",
                    maps.len(),
                    self.module_list.len()
                ),
            ));
        }
        let mut parts = Vec::new();
        for ((_, m), x) in self.module_list.layers().zip(maps) {
            let y = m.forward(x)?;
            let s = y.shape().to_vec();
            let n = s[0];
            let a = s[1] / self.columns;
            let y = y
                .reshape(&[n, a, self.columns, s[2], s[3]])?
                .permute(&[0, 3, 4, 1, 2])?
                .reshape(&[n, s[2] * s[3] * a, self.columns])?;
            parts.push(y);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Ok(Tensor::concat(&refs, 1)?)
    }
}

impl Module for ScoringHead {
    /// The first map's prediction layer.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        match self.module_list.layers().next() {
            Some((_, m)) => m.forward(x),
            None => Err(aics_nn::NnError::Config {
                layer: "ScoringHead".into(),
                msg: "no prediction layers".into(),
            }),
        }
    }
}

/// The class and box heads (`head.classification_head`, `head.regression_head`).
#[derive(Module)]
pub struct SsdHead {
    #[module]
    pub classification_head: ScoringHead,
    #[module]
    pub regression_head: ScoringHead,
}

impl Module for SsdHead {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.classification_head.forward(x)
    }
}

/// Post-processing settings (torchvision's `SSD` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct SsdSettings {
    pub score_thresh: f64,
    pub nms_thresh: f64,
    pub detections_per_img: usize,
    pub topk_candidates: usize,
}

/// What an SSD computes for a batch, stage by stage.
pub struct SsdTrace {
    pub sizes: Vec<(usize, usize)>,
    pub features: Vec<Tensor>,
    /// (N, boxes, classes) and (N, boxes, 4).
    pub logits: Tensor,
    pub deltas: Tensor,
    pub anchors: Vec<[f32; 4]>,
    /// In original-image pixels.
    pub detections: Vec<Detections>,
}

/// An SSD detector; keys `backbone.*`, `head.*`.
#[derive(Module)]
pub struct Ssd {
    #[module]
    pub backbone: SsdBackbone,
    #[module]
    pub head: SsdHead,
    pub anchor_generator: DefaultBoxes,
    pub transform: RcnnTransform,
    pub settings: SsdSettings,
    pub coder: BoxCoder,
    pub num_classes: usize,
}

impl Ssd {
    /// torchvision's `ssd300_vgg16`: 300×300 input with the VGG weights' normalization (mean
    /// 0.48235, 0.45882, 0.40784; std 1/255), scales 0.07 … 1.05, steps 8 … 300.
    pub fn ssd300_vgg16(num_classes: usize, seed: u64) -> Result<Self> {
        check_classes("ssd300_vgg16", num_classes)?;
        let mut rng = Rng::new(seed);
        let backbone = SsdVgg::new(&mut rng)?;
        let anchors = DefaultBoxes {
            aspect_ratios: vec![
                vec![2.0],
                vec![2.0, 3.0],
                vec![2.0, 3.0],
                vec![2.0, 3.0],
                vec![2.0],
                vec![2.0],
            ],
            scales: vec![0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
            steps: Some(vec![8.0, 16.0, 32.0, 64.0, 100.0, 300.0]),
            clip: true,
        };
        let channels = [512, 1024, 512, 256, 256, 256];
        let per = anchors.num_anchors_per_location();
        let p1 = ConvParams::default().padding(1);
        let (mut cls, mut reg) = (Sequential::new(), Sequential::new());
        for (&c, &a) in channels.iter().zip(&per) {
            cls = cls.add(conv(c, num_classes * a, 3, p1, &mut rng)?);
        }
        for (&c, &a) in channels.iter().zip(&per) {
            reg = reg.add(conv(c, 4 * a, 3, p1, &mut rng)?);
        }
        let transform = RcnnTransform {
            min_size: 300.0,
            max_size: 300.0,
            mean: [0.48235, 0.45882, 0.40784],
            std: [1.0 / 255.0; 3],
            size_divisible: 1,
            fixed_size: Some((300, 300)),
        };
        Ok(Self::assemble(
            SsdBackbone::Vgg(backbone),
            (cls, reg),
            anchors,
            transform,
            SsdSettings {
                score_thresh: 0.01,
                nms_thresh: 0.45,
                detections_per_img: 200,
                topk_candidates: 400,
            },
            num_classes,
        ))
    }

    /// torchvision's `ssdlite320_mobilenet_v3_large` as built for its published COCO weights:
    /// MobileNetV3-Large with the reduced tail, batch norm eps 0.001 / momentum 0.03, 320×320
    /// input normalized to [−1, 1], scales 0.2 … 0.95 with ratios {2, 3} at every map.
    pub fn ssdlite320_mobilenet_v3_large(num_classes: usize, seed: u64) -> Result<Self> {
        check_classes("ssdlite320_mobilenet_v3_large", num_classes)?;
        let mut rng = Rng::new(seed);
        let norm = Norm::Batch {
            eps: 1e-3,
            momentum: 0.03,
        };
        let backbone = SsdLiteMobileNet::new(norm, true, &mut rng)?;
        let anchors = DefaultBoxes::linear(vec![vec![2.0, 3.0]; 6], 0.2, 0.95);
        let channels = [672, 480, 512, 256, 256, 128];
        let per = anchors.num_anchors_per_location();
        let block = |c: usize, o: usize, rng: &mut Rng| -> Result<Sequential> {
            Ok(Sequential::new()
                .add(conv_norm_act(c, c, 3, (1, 1, c), norm, Act::ReLU6, rng)?)
                .add(conv(c, o, 1, ConvParams::default(), rng)?))
        };
        let (mut cls, mut reg) = (Sequential::new(), Sequential::new());
        for (&c, &a) in channels.iter().zip(&per) {
            cls = cls.add(block(c, num_classes * a, &mut rng)?);
        }
        for (&c, &a) in channels.iter().zip(&per) {
            reg = reg.add(block(c, 4 * a, &mut rng)?);
        }
        let transform = RcnnTransform {
            min_size: 320.0,
            max_size: 320.0,
            mean: [0.5; 3],
            std: [0.5; 3],
            size_divisible: 1,
            fixed_size: Some((320, 320)),
        };
        Ok(Self::assemble(
            SsdBackbone::MobileNet(backbone),
            (cls, reg),
            anchors,
            transform,
            SsdSettings {
                score_thresh: 0.001,
                nms_thresh: 0.55,
                detections_per_img: 300,
                topk_candidates: 300,
            },
            num_classes,
        ))
    }

    /// A small SSD for `size`² images (a multiple of 64, at least 128) with `num_classes`
    /// (background included): stages of 32, 64, 128, 256, 256, 256 channels, feature maps
    /// at strides 8, 16, 32, 64 (24², 12², 6², 3² at 192), default boxes of scales 0.08 … 0.9
    /// with ratios {2} on the finest and coarsest maps and {2, 3} between; 3×3 conv heads;
    /// inputs normalized to [−1, 1].
    pub fn small(num_classes: usize, size: usize, seed: u64) -> Result<Self> {
        check_classes("ssd_small", num_classes)?;
        check_size("ssd_small", size, 64, 128)?;
        let mut rng = Rng::new(seed);
        let widths = [32, 64, 128, 256, 256, 256];
        let backbone = SsdSmall::new(&widths, 4, &mut rng)?;
        let ratios = vec![vec![2.0], vec![2.0, 3.0], vec![2.0, 3.0], vec![2.0]];
        let anchors = DefaultBoxes::linear(ratios, 0.08, 0.9);
        let per = anchors.num_anchors_per_location();
        let p1 = ConvParams::default().padding(1);
        let channels = &widths[widths.len() - 4..];
        let (mut cls, mut reg) = (Sequential::new(), Sequential::new());
        for (&c, &a) in channels.iter().zip(&per) {
            cls = cls.add(conv(c, num_classes * a, 3, p1, &mut rng)?);
            reg = reg.add(conv(c, 4 * a, 3, p1, &mut rng)?);
        }
        let transform = RcnnTransform {
            min_size: size as f64,
            max_size: size as f64,
            mean: [0.5; 3],
            std: [0.5; 3],
            size_divisible: 1,
            fixed_size: Some((size, size)),
        };
        Ok(Self::assemble(
            SsdBackbone::Small(backbone),
            (cls, reg),
            anchors,
            transform,
            SsdSettings {
                score_thresh: 0.01,
                nms_thresh: 0.45,
                detections_per_img: 100,
                topk_candidates: 200,
            },
            num_classes,
        ))
    }

    /// Head outputs and default boxes of a batch at the network's input, normalized.
    pub fn heads(&self, x: &Tensor) -> Result<(Tensor, Tensor, Vec<[f32; 4]>)> {
        let (_, logits, deltas, anchors) = self.run(x)?;
        Ok((logits, deltas, anchors))
    }

    /// The feature maps, class logits (N, K, C), box deltas (N, K, 4) and the K default boxes
    /// of a batch at the network's input.
    #[allow(clippy::type_complexity)]
    fn run(&self, x: &Tensor) -> Result<(Vec<Tensor>, Tensor, Tensor, Vec<[f32; 4]>)> {
        let maps = self.backbone.feature_maps(x)?;
        let logits = self.head.classification_head.scores(&maps)?;
        let deltas = self.head.regression_head.scores(&maps)?;
        let grids: Vec<(usize, usize)> =
            maps.iter().map(|f| (f.shape()[2], f.shape()[3])).collect();
        let s = x.shape();
        let anchors = self.anchor_generator.boxes(&grids, (s[2], s[3]))?;
        Ok((maps, logits, deltas, anchors))
    }

    /// An SSD of `backbone` with one prediction layer per map in `cls` (C·A columns) and
    /// `reg` (4·A), box weights (10, 10, 5, 5).
    fn assemble(
        backbone: SsdBackbone,
        (cls, reg): (Sequential, Sequential),
        anchor_generator: DefaultBoxes,
        transform: RcnnTransform,
        settings: SsdSettings,
        num_classes: usize,
    ) -> Self {
        Ssd {
            backbone,
            head: SsdHead {
                classification_head: ScoringHead {
                    module_list: cls,
                    columns: num_classes,
                },
                regression_head: ScoringHead {
                    module_list: reg,
                    columns: 4,
                },
            },
            anchor_generator,
            transform,
            settings,
            coder: BoxCoder::new([10.0, 10.0, 5.0, 5.0]),
            num_classes,
        }
    }

    /// A model by torchvision's name.
    pub fn by_name(name: &str, num_classes: usize, seed: u64) -> Result<Self> {
        match name {
            "ssd300_vgg16" => Self::ssd300_vgg16(num_classes, seed),
            "ssdlite320_mobilenet_v3_large" => {
                Self::ssdlite320_mobilenet_v3_large(num_classes, seed)
            }
            other => Err(arg(
                "Ssd",
                format!(
                    "unknown model `{other}`; known: ssd300_vgg16, ssdlite320_mobilenet_v3_large"
                ),
            )),
        }
    }

    /// Every stage for images given as (3, H, W) tensors in [0, 1].
    pub fn trace(&self, images: &[Tensor]) -> Result<SsdTrace> {
        let list = self.transform.batch(images)?;
        let (features, logits, deltas, anchors) = self.run(&list.tensor)?;
        let mut detections = self.postprocess(&logits, &deltas, &anchors, &list.sizes)?;
        for (n, d) in detections.iter_mut().enumerate() {
            let s = images[n].shape();
            resize_boxes(&mut d.boxes, list.sizes[n], (s[1], s[2]));
        }
        Ok(SsdTrace {
            sizes: list.sizes,
            features,
            logits,
            deltas,
            anchors,
            detections,
        })
    }

    /// Detections for images given as (3, H, W) tensors in [0, 1], in their own pixels.
    pub fn detect(&self, images: &[Tensor]) -> Result<Vec<Detections>> {
        Ok(self.trace(images)?.detections)
    }

    /// torchvision's `postprocess_detections`, in resized-image pixels.
    pub fn postprocess(
        &self,
        logits: &Tensor,
        deltas: &Tensor,
        anchors: &[[f32; 4]],
        sizes: &[(usize, usize)],
    ) -> Result<Vec<Detections>> {
        let s = &self.settings;
        let (n, k, c) = (logits.shape()[0], logits.shape()[1], logits.shape()[2]);
        if k != anchors.len() || deltas.shape() != [n, k, 4] {
            return Err(arg(
                "Ssd",
                format!(
                    "{:?} logits and {:?} deltas for {} default boxes",
                    logits.shape(),
                    deltas.shape(),
                    anchors.len()
                ),
            ));
        }
        let probs = logits.softmax(-1)?.to_vec();
        let deltas = deltas.to_vec();
        let flat: Vec<f32> = anchors.iter().flatten().copied().collect();
        let mut out = Vec::new();
        for (img, &size) in sizes.iter().enumerate().take(n) {
            let dec = self
                .coder
                .decode(&deltas[img * k * 4..(img + 1) * k * 4], &flat)?;
            let boxes: Vec<[f32; 4]> = dec
                .chunks_exact(4)
                .map(|b| {
                    let (h, w) = (size.0 as f32, size.1 as f32);
                    [
                        b[0].clamp(0.0, w),
                        b[1].clamp(0.0, h),
                        b[2].clamp(0.0, w),
                        b[3].clamp(0.0, h),
                    ]
                })
                .collect();
            let p = &probs[img * k * c..(img + 1) * k * c];
            // per class: the scores above the threshold, the best `topk_candidates` of them
            let by_score =
                |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            let per_class: Vec<Vec<(usize, f32)>> = (1..c)
                .into_par_iter()
                .map(|label| {
                    let mut v: Vec<(usize, f32)> = (0..k)
                        .map(|i| (i, p[i * c + label]))
                        .filter(|&(_, sc)| sc as f64 > s.score_thresh)
                        .collect();
                    if v.len() > s.topk_candidates {
                        v.select_nth_unstable_by(s.topk_candidates, by_score);
                        v.truncate(s.topk_candidates);
                    }
                    v.sort_by(by_score);
                    v
                })
                .collect();
            let (mut cb, mut cs, mut cl) = (Vec::new(), Vec::new(), Vec::new());
            for (label, v) in (1..c).zip(per_class) {
                for (i, sc) in v {
                    cb.push(boxes[i]);
                    cs.push(sc);
                    cl.push(label);
                }
            }
            let t = Tensor::from_vec(cb.iter().flatten().copied().collect(), &[cb.len(), 4])?;
            let keep = batched_nms(&t, &cs, &cl, s.nms_thresh)?;
            let keep = &keep[..keep.len().min(s.detections_per_img)];
            out.push(Detections {
                boxes: keep.iter().map(|&i| cb[i]).collect(),
                scores: keep.iter().map(|&i| cs[i]).collect(),
                labels: keep.iter().map(|&i| cl[i]).collect(),
            });
        }
        Ok(out)
    }
}

impl Module for Ssd {
    /// The class logits (N, boxes, classes) of a batch already resized and normalized.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let maps = self
            .backbone
            .feature_maps(x)
            .map_err(crate::faster_rcnn::nn_err)?;
        self.head
            .classification_head
            .scores(&maps)
            .map_err(crate::faster_rcnn::nn_err)
    }
}

/// torchvision's `SSDMatcher`: each default box takes the ground-truth box it overlaps most if
/// that IoU is at least `thresh` (else −1, background); then every ground-truth box claims the
/// default box that overlaps it most, whatever the IoU (a later box wins a shared one).
pub fn ssd_match(gt: &[[f32; 4]], anchors: &[[f32; 4]], thresh: f64) -> Vec<i64> {
    if gt.is_empty() {
        return vec![-1; anchors.len()];
    }
    let mut best_anchor = vec![(f32::NEG_INFINITY, 0usize); gt.len()];
    let mut matches: Vec<i64> = anchors
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let mut best = (f32::NEG_INFINITY, 0usize);
            for (g, b) in gt.iter().enumerate() {
                let q = pair_iou(b, a);
                if q > best.0 {
                    best = (q, g);
                }
                if q > best_anchor[g].0 {
                    best_anchor[g] = (q, k);
                }
            }
            if (best.0 as f64) < thresh {
                -1
            } else {
                best.1 as i64
            }
        })
        .collect();
    for (g, &(_, k)) in best_anchor.iter().enumerate() {
        matches[k] = g as i64;
    }
    matches
}

/// The two terms of SSD's MultiBox loss, each divided by the number of matched default boxes.
pub struct SsdLoss {
    /// Smooth L1 (β = 1) of the box deltas of matched default boxes.
    pub bbox_regression: Tensor,
    /// Cross-entropy of the matched default boxes plus the `neg_to_pos`× as many unmatched ones
    /// with the highest loss (hard negative mining).
    pub classification: Tensor,
    /// Matched default boxes over the batch.
    pub num_foreground: usize,
}

/// torchvision's `SSD.compute_loss` for head outputs `logits` (N, K, C) and `deltas` (N, K, 4)
/// over `anchors` (K, xyxy): default boxes matched with [`ssd_match`] at `iou_thresh`, regression
/// targets encoded by `coder`, and per image the `neg_to_pos` × (matched count) background
/// boxes of highest cross-entropy.
pub fn multibox_loss(
    logits: &Tensor,
    deltas: &Tensor,
    anchors: &[[f32; 4]],
    targets: &[Target],
    coder: &BoxCoder,
    iou_thresh: f64,
    neg_to_pos: f64,
) -> Result<SsdLoss> {
    let (n, k, c) = match logits.shape() {
        &[n, k, c] => (n, k, c),
        s => {
            return Err(arg(
                "multibox_loss",
                format!("logits must be (N, K, C), got {s:?}"),
            ))
        }
    };
    if deltas.shape() != [n, k, 4] || anchors.len() != k || targets.len() != n {
        return Err(arg(
            "multibox_loss",
            format!(
                "deltas {:?}, {} default boxes and {} targets for logits {:?}",
                deltas.shape(),
                anchors.len(),
                targets.len(),
                logits.shape()
            ),
        ));
    }
    let mut rows = Vec::new(); // foreground rows of (N·K)
    let mut enc_gt = Vec::new();
    let mut enc_anchor = Vec::new();
    let mut cls_target = vec![0usize; n * k];
    for (i, t) in targets.iter().enumerate() {
        if t.boxes.len() != t.labels.len() {
            return Err(arg(
                "multibox_loss",
                format!(
                    "image {i}: {} boxes, {} labels",
                    t.boxes.len(),
                    t.labels.len()
                ),
            ));
        }
        if let Some(&l) = t.labels.iter().find(|&&l| l == 0 || l >= c) {
            return Err(arg(
                "multibox_loss",
                format!("image {i}: label {l} outside 1..{}", c - 1),
            ));
        }
        let m = ssd_match(&t.boxes, anchors, iou_thresh);
        for (a, &g) in m.iter().enumerate() {
            if g >= 0 {
                let g = g as usize;
                rows.push(i * k + a);
                enc_gt.extend(t.boxes[g]);
                enc_anchor.extend(anchors[a]);
                cls_target[i * k + a] = t.labels[g];
            }
        }
    }
    let nfg = rows.len();
    let denom = nfg.max(1) as f64;
    let flat_d = deltas.reshape(&[n * k, 4])?;
    let bbox_regression = if nfg == 0 {
        flat_d.sum().mul_scalar(0.0)
    } else {
        let pred = flat_d.index_select(0, &rows)?;
        let target = Tensor::from_vec(coder.encode(&enc_gt, &enc_anchor)?, &[nfg, 4])?;
        pred.sub(&target)?
            .smooth_l1(1.0)
            .sum()
            .mul_scalar(1.0 / denom)
    };
    let logp = logits.reshape(&[n * k, c])?.log_softmax(-1)?;
    let ce = logp.gather(1, &cls_target, &[n * k, 1])?.neg(); // (N·K, 1)
    let ce_v = ce.to_vec();
    // hard negatives: per image, rank the background boxes by their loss (matched boxes last)
    let mut chosen: Vec<usize> = rows.clone();
    for i in 0..n {
        let fg = (0..k).filter(|&a| cls_target[i * k + a] > 0).count();
        let want = (neg_to_pos * fg as f64) as usize;
        let mut order: Vec<usize> = (0..k).collect();
        let key = |a: usize| {
            if cls_target[i * k + a] > 0 {
                f32::NEG_INFINITY
            } else {
                ce_v[i * k + a]
            }
        };
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        chosen.extend(order.iter().take(want.min(k)).map(|&a| i * k + a));
    }
    let classification = if chosen.is_empty() {
        ce.sum().mul_scalar(0.0)
    } else {
        ce.index_select(0, &chosen)?.sum().mul_scalar(1.0 / denom)
    };
    Ok(SsdLoss {
        bbox_regression,
        classification,
        num_foreground: nfg,
    })
}

impl Ssd {
    /// The MultiBox loss of a batch already at the network's input (N, 3, H, W), normalized,
    /// with targets in its pixels.
    pub fn loss(&self, x: &Tensor, targets: &[Target]) -> Result<SsdLoss> {
        let (logits, deltas, anchors) = self.heads(x)?;
        multibox_loss(&logits, &deltas, &anchors, targets, &self.coder, 0.5, 3.0)
    }
}
