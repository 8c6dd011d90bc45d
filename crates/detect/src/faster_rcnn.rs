//! Faster R-CNN (Ren et al., 2015) as torchvision builds it, with its state-dict keys, so that a
//! torchvision checkpoint loads as it is:
//!
//! - `transform`: `GeneralizedRCNNTransform` — normalize with the ImageNet mean and std, resize
//!   so that the short side is `min_size` unless the long side would pass `max_size` (bilinear),
//!   pad the batch with zeros to a multiple of 32; boxes are scaled back at the end.
//! - `backbone`: a ResNet body (`backbone.body.*`, frozen batch norm) whose four stages feed a
//!   feature pyramid (`backbone.fpn.*`: 1×1 lateral convs, nearest top-down upsampling, 3×3
//!   output convs, and a max-pooled extra level).
//! - `rpn`: the region proposal network — a 3×3 conv and two 1×1 convs (objectness, box deltas)
//!   over every level, anchors from [`AnchorGenerator`], and the proposal layer: per level the
//!   `pre_nms_top_n` best anchors, decoded, clipped, small boxes dropped, NMS 0.7 within each
//!   level, the `post_nms_top_n` best kept.
//! - `roi_heads`: multi-scale ROI align (each proposal pooled 7×7 from the level its size
//!   selects), two fully connected layers, the sibling classifier and per-class box regressor,
//!   and the post-processing (softmax, decode, clip, score threshold, NMS 0.5 per class, the
//!   100 best).
//!
//! The pyramid, the heads and the losses are built from differentiable tensor ops; the proposal
//! selection and post-processing work on plain numbers, as torchvision's do under `no_grad`.

use std::collections::HashMap;

use aics_nn::layers::{Conv2d, Linear, ReLU};
use aics_nn::{Module, Sequential};
use aics_tensor::{ConvParams, Interp, PoolParams, Rng, Tensor};
use aics_vision::models::mobilenet_v3::mobilenet_v3_features;
use aics_vision::models::resnet::{resnet_body, Norm};

use crate::anchors::AnchorGenerator;
use crate::boxes::batched_nms;
use crate::coder::BoxCoder;
use crate::error::{arg, Result};

/// The labels of torchvision's COCO detectors: index = label = COCO category id; 0 is the
/// background and `N/A` marks ids that COCO does not use.
pub const COCO_CATEGORIES: [&str; 91] = [
    "__background__",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// `GeneralizedRCNNTransform`'s settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RcnnTransform {
    pub min_size: f64,
    pub max_size: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub size_divisible: usize,
    /// Resize every image to this (h, w) instead (SSD's 300×300 and 320×320).
    pub fixed_size: Option<(usize, usize)>,
}

impl Default for RcnnTransform {
    /// torchvision's: short side 800, long side at most 1333, ImageNet statistics, pad to 32.
    fn default() -> Self {
        RcnnTransform {
            min_size: 800.0,
            max_size: 1333.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            size_divisible: 32,
            fixed_size: None,
        }
    }
}

/// A batch as the network sees it: the padded tensor and each image's size inside it.
pub struct ImageList {
    pub tensor: Tensor,
    /// (h, w) of each resized image before padding.
    pub sizes: Vec<(usize, usize)>,
}

impl RcnnTransform {
    /// The size an image of `(h, w)` is resized to. The scale is computed in f32, as torchvision
    /// computes it from a float tensor, and each side is `floor(side · scale)`.
    pub fn resized_size(&self, h: usize, w: usize) -> (usize, usize) {
        if let Some(size) = self.fixed_size {
            return size;
        }
        let (lo, hi) = (h.min(w) as f32, h.max(w) as f32);
        let scale = (self.min_size as f32 / lo).min(self.max_size as f32 / hi) as f64;
        (
            ((h as f64 * scale).floor() as usize).max(1),
            ((w as f64 * scale).floor() as usize).max(1),
        )
    }

    /// A batch (N, 3, H, W) with values in [0, 1] normalized by the mean and std, in tensor
    /// ops (as an exported graph records them), without resizing.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 3 {
            return Err(arg(
                "RcnnTransform",
                format!("images must be (N, 3, H, W), got {s:?}"),
            ));
        }
        let mean = Tensor::from_vec(self.mean.to_vec(), &[1, 3, 1, 1])?;
        let std = Tensor::from_vec(self.std.to_vec(), &[1, 3, 1, 1])?;
        Ok(x.sub(&mean)?.div(&std)?)
    }

    /// Normalize, resize and batch images given as (3, H, W) tensors with values in [0, 1].
    pub fn batch(&self, images: &[Tensor]) -> Result<ImageList> {
        if images.is_empty() {
            return Err(arg("RcnnTransform", "no images"));
        }
        let mut resized = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            let s = img.shape();
            if s.len() != 3 || s[0] != 3 || s[1] == 0 || s[2] == 0 {
                return Err(arg(
                    "RcnnTransform",
                    format!("image {i}: expected (3, H, W), got {s:?}"),
                ));
            }
            let (h, w) = (s[1], s[2]);
            let mut v = img.to_vec();
            for (c, plane) in v.chunks_exact_mut(h * w).enumerate() {
                for p in plane {
                    *p = (*p - self.mean[c]) / self.std[c];
                }
            }
            let (oh, ow) = self.resized_size(h, w);
            let t = Tensor::from_vec(v, &[1, 3, h, w])?.upsample(
                oh,
                ow,
                Interp::Bilinear {
                    align_corners: false,
                },
            )?;
            resized.push((t.to_vec(), oh, ow));
        }
        let d = self.size_divisible.max(1);
        let ph = resized.iter().map(|r| r.1).max().unwrap_or(0).div_ceil(d) * d;
        let pw = resized.iter().map(|r| r.2).max().unwrap_or(0).div_ceil(d) * d;
        let mut out = vec![0f32; images.len() * 3 * ph * pw];
        for (n, (v, h, w)) in resized.iter().enumerate() {
            for c in 0..3 {
                for y in 0..*h {
                    let dst = ((n * 3 + c) * ph + y) * pw;
                    let src = (c * h + y) * w;
                    out[dst..dst + w].copy_from_slice(&v[src..src + w]);
                }
            }
        }
        Ok(ImageList {
            tensor: Tensor::from_vec(out, &[images.len(), 3, ph, pw])?,
            sizes: resized.iter().map(|r| (r.1, r.2)).collect(),
        })
    }
}

/// Boxes in the pixels of `img` (3, H, W), scaled to it resized to `size` (h, w).
fn rescaled(boxes: &[[f32; 4]], img: &Tensor, size: (usize, usize)) -> Vec<[f32; 4]> {
    let mut b = boxes.to_vec();
    let s = img.shape();
    resize_boxes(&mut b, (s[1], s[2]), size);
    b
}

/// Targets of `images` (their pixels) in the pixels of the batch `list` made of them.
fn rescaled_targets(targets: &[Target], images: &[Tensor], list: &ImageList) -> Vec<Target> {
    targets
        .iter()
        .zip(images)
        .zip(&list.sizes)
        .map(|((t, img), &size)| Target {
            boxes: rescaled(&t.boxes, img, size),
            labels: t.labels.clone(),
        })
        .collect()
}

/// Scale boxes from the resized image `from` (h, w) back to the original `to`, with the f32
/// ratios torchvision uses.
pub fn resize_boxes(boxes: &mut [[f32; 4]], from: (usize, usize), to: (usize, usize)) {
    let rh = to.0 as f32 / from.0 as f32;
    let rw = to.1 as f32 / from.1 as f32;
    for b in boxes {
        *b = [b[0] * rw, b[1] * rh, b[2] * rw, b[3] * rh];
    }
}

fn conv(c: usize, o: usize, k: usize, rng: &mut Rng) -> Result<Conv2d> {
    Ok(Conv2d::new(
        c,
        o,
        k,
        ConvParams::default().padding(k / 2),
        true,
        rng,
    )?)
}

/// A feature pyramid (Lin et al., 2017), torchvision's `FeaturePyramidNetwork` with
/// `LastLevelMaxPool`: keys `inner_blocks.{i}.0.*` (1×1 laterals) and `layer_blocks.{i}.0.*`
/// (3×3 outputs).
#[derive(Module)]
pub struct Fpn {
    #[module]
    pub inner_blocks: Sequential,
    #[module]
    pub layer_blocks: Sequential,
    /// Add a level max-pooled (kernel 1, stride 2) from the coarsest one.
    pub extra_max_pool: bool,
    inner: Vec<usize>,
}

impl Fpn {
    pub fn new(
        in_channels: &[usize],
        out: usize,
        extra_max_pool: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (mut inner_blocks, mut layer_blocks) = (Sequential::new(), Sequential::new());
        for &c in in_channels {
            inner_blocks = inner_blocks.add(Sequential::new().add(conv(c, out, 1, rng)?));
            layer_blocks = layer_blocks.add(Sequential::new().add(conv(out, out, 3, rng)?));
        }
        Ok(Fpn {
            inner_blocks,
            layer_blocks,
            extra_max_pool,
            inner: in_channels.to_vec(),
        })
    }

    /// The pyramid of `xs` (finest first): one 256-channel map per input, plus the pooled one.
    pub fn levels(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        if xs.len() != self.inner.len() || xs.is_empty() {
            return Err(arg(
                "Fpn",
                format!(
                    "{} feature maps for {} lateral convs",
                    xs.len(),
                    self.inner.len()
                ),
            ));
        }
        let inner: Vec<&dyn Module> = self.inner_blocks.layers().map(|(_, m)| m).collect();
        let outer: Vec<&dyn Module> = self.layer_blocks.layers().map(|(_, m)| m).collect();
        let last = xs.len() - 1;
        let mut top = inner[last].forward(&xs[last])?;
        let mut out = vec![outer[last].forward(&top)?];
        for i in (0..last).rev() {
            let lateral = inner[i].forward(&xs[i])?;
            let s = lateral.shape();
            let down = top.upsample(s[2], s[3], Interp::Nearest)?;
            top = lateral.add(&down)?;
            out.insert(0, outer[i].forward(&top)?);
        }
        if self.extra_max_pool {
            let p = out[last].max_pool2d(PoolParams::new(1).stride(2))?;
            out.push(p);
        }
        Ok(out)
    }
}

impl Module for Fpn {
    /// The finest level.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self
            .levels(std::slice::from_ref(x))
            .map_err(nn_err)?
            .remove(0))
    }
}

pub(crate) fn nn_err(e: crate::DetectError) -> aics_nn::NnError {
    match e {
        crate::DetectError::Nn(n) => n,
        crate::DetectError::Tensor(t) => t.into(),
        other => aics_nn::NnError::Config {
            layer: "detector".into(),
            msg: other.to_string(),
        },
    }
}

/// A classification body with a feature pyramid over some of its stages
/// (torchvision's `BackboneWithFPN`): keys `body.*` and `fpn.*`.
#[derive(Module)]
pub struct BackboneWithFpn {
    #[module]
    pub body: Sequential,
    #[module]
    pub fpn: Fpn,
    /// The body's children whose outputs feed the pyramid, in order.
    pub return_layers: Vec<String>,
}

impl BackboneWithFpn {
    /// `resnet_fpn_backbone`: ResNet stages `layer1`…`layer4` into a 256-channel pyramid with
    /// a max-pooled fifth level.
    pub fn resnet(name: &str, norm: Norm, rng: &mut Rng) -> Result<Self> {
        let (body, c) = resnet_body(name, 3, norm, rng.next_u64())?;
        let channels: Vec<usize> = (0..4).map(|i| c >> (3 - i)).collect();
        Ok(BackboneWithFpn {
            body,
            fpn: Fpn::new(&channels, 256, true, rng)?,
            return_layers: (1..=4).map(|i| format!("layer{i}")).collect(),
        })
    }

    /// torchvision's `_mobilenet_extractor(mobilenet_v3_large, fpn=True)`: the outputs of the
    /// last two stages (the block that strides to 1/32, and the final 1×1 conv) into a
    /// 256-channel pyramid with a max-pooled third level.
    pub fn mobilenet_v3_large(norm: Norm, rng: &mut Rng) -> Result<Self> {
        let f = mobilenet_v3_features(true, norm, false, false, 3, rng)?;
        let st = &f.stage_indices;
        let taken = [st[st.len() - 2], st[st.len() - 1]];
        let channels: Vec<usize> = taken.iter().map(|&i| f.channels[i]).collect();
        Ok(BackboneWithFpn {
            body: f.sequential(),
            fpn: Fpn::new(&channels, 256, true, rng)?,
            return_layers: taken.iter().map(|i| i.to_string()).collect(),
        })
    }

    /// The pyramid levels of a batch.
    pub fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = x.clone();
        let mut taken = Vec::new();
        for (name, m) in self.body.layers() {
            h = m.forward(&h)?;
            if self.return_layers.iter().any(|r| r == name) {
                taken.push(h.clone());
            }
            if taken.len() == self.return_layers.len() {
                break;
            }
        }
        self.fpn.levels(&taken)
    }
}

impl Module for BackboneWithFpn {
    /// The finest pyramid level.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.features(x).map_err(nn_err)?.remove(0))
    }
}

/// The RPN's head: a 3×3 conv with ReLU shared by all levels (`conv.0.0.*`), then 1×1 convs
/// for one objectness logit (`cls_logits`) and four box deltas (`bbox_pred`) per anchor.
#[derive(Module)]
pub struct RpnHead {
    #[module]
    pub conv: Sequential,
    #[module]
    pub cls_logits: Conv2d,
    #[module]
    pub bbox_pred: Conv2d,
}

impl RpnHead {
    pub fn new(channels: usize, anchors: usize, rng: &mut Rng) -> Result<Self> {
        Ok(RpnHead {
            conv: Sequential::new().add(
                Sequential::new()
                    .add(conv(channels, channels, 3, rng)?)
                    .add(ReLU),
            ),
            cls_logits: conv(channels, anchors, 1, rng)?,
            bbox_pred: conv(channels, anchors * 4, 1, rng)?,
        })
    }

    /// (objectness (N, A, H, W), deltas (N, 4A, H, W)) of one level.
    pub fn level(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = self.conv.forward(x)?;
        Ok((self.cls_logits.forward(&t)?, self.bbox_pred.forward(&t)?))
    }
}

impl Module for RpnHead {
    /// The objectness logits of one level.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.level(x).map_err(nn_err)?.0)
    }
}

/// The proposal layer's settings (torchvision's test-time defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RpnSettings {
    pub pre_nms_top_n: usize,
    pub post_nms_top_n: usize,
    pub nms_thresh: f64,
    /// Proposals scoring below this (after the sigmoid) are dropped.
    pub score_thresh: f64,
    /// Proposals narrower or lower than this are dropped.
    pub min_size: f64,
}

impl Default for RpnSettings {
    fn default() -> Self {
        RpnSettings {
            pre_nms_top_n: 1000,
            post_nms_top_n: 1000,
            nms_thresh: 0.7,
            score_thresh: 0.0,
            min_size: 1e-3,
        }
    }
}

/// Proposals of one image: boxes (xyxy in resized-image pixels) and objectness probabilities,
/// best first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Proposals {
    pub boxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
}

/// The region proposal network.
#[derive(Module)]
pub struct Rpn {
    #[module]
    pub head: RpnHead,
    pub anchor_generator: AnchorGenerator,
    pub settings: RpnSettings,
    pub coder: BoxCoder,
}

/// The raw RPN outputs of a batch, level by level.
pub struct RpnOutput {
    pub objectness: Vec<Tensor>,
    pub deltas: Vec<Tensor>,
    /// All anchors of one image (the same for every image of a batch), level by level.
    pub anchors: Vec<[f32; 4]>,
    pub anchors_per_level: Vec<usize>,
}

impl Rpn {
    pub fn new(channels: usize, anchor_generator: AnchorGenerator, rng: &mut Rng) -> Result<Self> {
        let per = anchor_generator.num_anchors_per_location();
        if per.windows(2).any(|w| w[0] != w[1]) {
            return Err(arg(
                "Rpn",
                format!(
                    "one shared head needs the same number of anchors at every level, got {per:?}"
                ),
            ));
        }
        Ok(Rpn {
            head: RpnHead::new(channels, per[0], rng)?,
            anchor_generator,
            settings: RpnSettings::default(),
            coder: BoxCoder::new([1.0; 4]),
        })
    }

    /// Run the head over every level and lay out the anchors of a `padded` (h, w) batch.
    pub fn run(&self, feats: &[Tensor], padded: (usize, usize)) -> Result<RpnOutput> {
        let (mut objectness, mut deltas) = (Vec::new(), Vec::new());
        for f in feats {
            let (o, d) = self.head.level(f)?;
            objectness.push(o);
            deltas.push(d);
        }
        let grids: Vec<(usize, usize)> =
            feats.iter().map(|f| (f.shape()[2], f.shape()[3])).collect();
        let anchors = self.anchor_generator.anchors(padded, &grids)?;
        let per = self.anchor_generator.num_anchors_per_location();
        let anchors_per_level = grids.iter().zip(&per).map(|(g, a)| g.0 * g.1 * a).collect();
        Ok(RpnOutput {
            objectness,
            deltas,
            anchors: anchors.iter().map(|a| a.map(|v| v as f32)).collect(),
            anchors_per_level,
        })
    }

    /// The proposals of image `n` of a batch (the proposal layer).
    pub fn proposals(
        &self,
        out: &RpnOutput,
        n: usize,
        image_size: (usize, usize),
    ) -> Result<Proposals> {
        self.proposals_with(out, n, image_size, &self.settings)
    }

    /// The proposals of image `n` under other settings (training keeps more).
    pub fn proposals_with(
        &self,
        out: &RpnOutput,
        n: usize,
        image_size: (usize, usize),
        s: &RpnSettings,
    ) -> Result<Proposals> {
        let (mut boxes, mut scores, mut levels) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0;
        for (lvl, (o, d)) in out.objectness.iter().zip(&out.deltas).enumerate() {
            let (obj, del) = level_rows(o, d, n)?;
            let count = out.anchors_per_level[lvl];
            if obj.len() != count {
                return Err(arg(
                    "Rpn",
                    format!("level {lvl}: {} scores for {count} anchors", obj.len()),
                ));
            }
            let mut order: Vec<usize> = (0..count).collect();
            order.sort_by(|&i, &j| obj[j].total_cmp(&obj[i]));
            order.truncate(s.pre_nms_top_n.min(count));
            let anchors: Vec<f32> = order
                .iter()
                .flat_map(|&i| out.anchors[offset + i])
                .collect();
            let sel: Vec<f32> = order
                .iter()
                .flat_map(|&i| del[4 * i..4 * i + 4].to_vec())
                .collect();
            let decoded = self.coder.decode(&sel, &anchors)?;
            for (k, &i) in order.iter().enumerate() {
                boxes.push(clip(&decoded[4 * k..4 * k + 4], image_size));
                scores.push(1.0 / (1.0 + (-obj[i]).exp()));
                levels.push(lvl);
            }
            offset += count;
        }
        let keep: Vec<usize> = (0..boxes.len())
            .filter(|&i| {
                let b = &boxes[i];
                (b[2] - b[0]) as f64 >= s.min_size
                    && (b[3] - b[1]) as f64 >= s.min_size
                    && scores[i] as f64 >= s.score_thresh
            })
            .collect();
        let kept = gather_boxes(&boxes, &keep);
        let kept_scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
        let kept_levels: Vec<usize> = keep.iter().map(|&i| levels[i]).collect();
        let nms = batched_nms_rows(&kept, &kept_scores, &kept_levels, s.nms_thresh)?;
        let nms = &nms[..nms.len().min(s.post_nms_top_n)];
        Ok(Proposals {
            boxes: nms.iter().map(|&i| kept[i]).collect(),
            scores: nms.iter().map(|&i| kept_scores[i]).collect(),
        })
    }
}

impl Module for Rpn {
    /// The objectness logits of one level.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.head.forward(x)
    }
}

/// Image `n`'s objectness (H·W·A, in (y, x, anchor) order) and deltas (4 a row) of one level.
fn level_rows(o: &Tensor, d: &Tensor, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let (os, ds) = (o.shape(), d.shape());
    if os.len() != 4 || ds.len() != 4 || ds[1] != 4 * os[1] || n >= os[0] {
        return Err(arg(
            "Rpn",
            format!("head outputs {os:?} and {ds:?} do not fit"),
        ));
    }
    let (a, h, w) = (os[1], os[2], os[3]);
    let (ov, dv) = (o.narrow(0, n, 1)?.to_vec(), d.narrow(0, n, 1)?.to_vec());
    let mut obj = Vec::with_capacity(a * h * w);
    let mut del = Vec::with_capacity(4 * a * h * w);
    for y in 0..h {
        for x in 0..w {
            for k in 0..a {
                obj.push(ov[(k * h + y) * w + x]);
                for c in 0..4 {
                    del.push(dv[((4 * k + c) * h + y) * w + x]);
                }
            }
        }
    }
    Ok((obj, del))
}

/// Clamp a box to an image of (h, w).
fn clip(b: &[f32], (h, w): (usize, usize)) -> [f32; 4] {
    let (h, w) = (h as f32, w as f32);
    [
        b[0].clamp(0.0, w),
        b[1].clamp(0.0, h),
        b[2].clamp(0.0, w),
        b[3].clamp(0.0, h),
    ]
}

fn gather_boxes(b: &[[f32; 4]], idx: &[usize]) -> Vec<[f32; 4]> {
    idx.iter().map(|&i| b[i]).collect()
}

fn batched_nms_rows(
    b: &[[f32; 4]],
    scores: &[f32],
    groups: &[usize],
    thresh: f64,
) -> Result<Vec<usize>> {
    let t = Tensor::from_vec(b.iter().flatten().copied().collect(), &[b.len(), 4])?;
    batched_nms(&t, scores, groups, thresh)
}

/// torchvision's `MultiScaleRoIAlign`: each box is pooled (ROI align, `sampling_ratio` samples
/// a bin side, unaligned) from the pyramid level `⌊4 + log2(√area / 224) + 1e-6⌋`, clamped to the
/// levels present; each level's scale is inferred from its size relative to the image.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiScaleRoiAlign {
    pub output: usize,
    pub sampling_ratio: i32,
    /// How many of the pyramid's levels are pooled from (the finest ones; not the extra level).
    pub levels: usize,
    /// Fast R-CNN's ROI max pooling (`roi_pool`) instead of ROI align.
    pub max_pool: bool,
}

impl MultiScaleRoiAlign {
    /// The scale of each level: 2^round(log2(feature side / image side)).
    pub fn scales(feats: &[Tensor], image_sizes: &[(usize, usize)]) -> Vec<f64> {
        let max_h = image_sizes.iter().map(|s| s.0).max().unwrap_or(1);
        feats
            .iter()
            .map(|f| {
                let approx = (f.shape()[2] as f64 / max_h as f64) as f32;
                2f64.powf(crate::anchors::round_even(approx.log2() as f64))
            })
            .collect()
    }

    /// Regions (K, 5) of rows (image index, x1, y1, x2, y2) pooled from one level's map `f`
    /// of scale `scale`: (K, C, output, output).
    pub fn pool_level(&self, f: &Tensor, rois: &Tensor, scale: f64) -> Result<Tensor> {
        let o = self.output;
        Ok(if self.max_pool {
            f.roi_pool(rois, (o, o), scale)?
        } else {
            f.roi_align(rois, (o, o), scale, self.sampling_ratio, false)?
        })
    }

    /// The pooled features (K, C, output, output) of the boxes of every image, in order.
    pub fn pool(
        &self,
        feats: &[Tensor],
        boxes: &[Vec<[f32; 4]>],
        image_sizes: &[(usize, usize)],
    ) -> Result<Tensor> {
        let feats = &feats[..self.levels.min(feats.len())];
        if feats.is_empty() {
            return Err(arg("MultiScaleRoiAlign", "no feature maps"));
        }
        let scales = Self::scales(feats, image_sizes);
        let k_min = (-(scales[0] as f32).log2()) as i64;
        let k_max = (-(scales[scales.len() - 1] as f32).log2()) as i64;
        let mut rois = Vec::new();
        let mut level = Vec::new();
        for (n, bs) in boxes.iter().enumerate() {
            for b in bs {
                rois.push([n as f32, b[0], b[1], b[2], b[3]]);
                let s = ((b[2] - b[0]) * (b[3] - b[1])).sqrt();
                let t = (4.0f32 + (s / 224.0).log2() + 1e-6f32).floor();
                let t = (t as i64).clamp(k_min, k_max);
                level.push((t - k_min) as usize);
            }
        }
        let total = rois.len();
        let c = feats[0].shape()[1];
        let o = self.output;
        if total == 0 {
            return Ok(Tensor::zeros(&[0, c, o, o]));
        }
        let mut parts = Vec::new();
        let mut order = Vec::new();
        for (l, f) in feats.iter().enumerate() {
            let idx: Vec<usize> = (0..total).filter(|&i| level[i] == l).collect();
            if idx.is_empty() {
                continue;
            }
            let r: Vec<f32> = idx.iter().flat_map(|&i| rois[i]).collect();
            let r = Tensor::from_vec(r, &[idx.len(), 5])?;
            parts.push(self.pool_level(f, &r, scales[l])?);
            order.extend(idx);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let cat = Tensor::concat(&refs, 0)?;
        // row `order[j]` of the result is row j of `cat`
        let mut inverse = vec![0; total];
        for (j, &i) in order.iter().enumerate() {
            inverse[i] = j;
        }
        Ok(cat.index_select(0, &inverse)?)
    }
}

/// torchvision's `TwoMLPHead`: flatten, `fc6`, ReLU, `fc7`, ReLU.
#[derive(Module)]
pub struct TwoMlpHead {
    #[module]
    pub fc6: Linear,
    #[module]
    pub fc7: Linear,
}

impl Module for TwoMlpHead {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let x = x.flatten(1)?;
        Ok(self.fc7.forward(&self.fc6.forward(&x)?.relu())?.relu())
    }
}

/// torchvision's `FastRCNNPredictor`: class scores (`cls_score`) and per-class box deltas
/// (`bbox_pred`), the two sibling layers of Fast R-CNN.
#[derive(Module)]
pub struct FastRcnnPredictor {
    #[module]
    pub cls_score: Linear,
    #[module]
    pub bbox_pred: Linear,
}

impl FastRcnnPredictor {
    pub fn new(features: usize, classes: usize, rng: &mut Rng) -> Result<Self> {
        Ok(FastRcnnPredictor {
            cls_score: Linear::new(features, classes, true, rng)?,
            bbox_pred: Linear::new(features, classes * 4, true, rng)?,
        })
    }
    /// (class logits (K, C), box deltas (K, 4C)).
    pub fn predict(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.cls_score.forward(x)?, self.bbox_pred.forward(x)?))
    }
}

impl Module for FastRcnnPredictor {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.cls_score.forward(x)
    }
}

/// The box head's post-processing settings (torchvision's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct BoxSettings {
    /// Detections must score above this.
    pub score_thresh: f64,
    pub nms_thresh: f64,
    pub detections_per_img: usize,
}

impl Default for BoxSettings {
    fn default() -> Self {
        BoxSettings {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
        }
    }
}

/// Detections of one image: boxes (xyxy pixels), scores, and labels (1… ; 0 is background).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detections {
    pub boxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
}

/// Ground truth of one image for training: boxes (xyxy pixels) and labels
/// (1 … C − 1; 0 is the background).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub boxes: Vec<[f32; 4]>,
    pub labels: Vec<usize>,
}

/// The detection head of Fast and Faster R-CNN over pooled proposals.
#[derive(Module)]
pub struct RoiHeads {
    #[module]
    pub box_head: TwoMlpHead,
    #[module]
    pub box_predictor: FastRcnnPredictor,
    pub pool: MultiScaleRoiAlign,
    pub settings: BoxSettings,
    pub coder: BoxCoder,
}

impl RoiHeads {
    /// torchvision's: 7×7 pooling, two 1024-wide layers.
    pub fn new(channels: usize, classes: usize, levels: usize, rng: &mut Rng) -> Result<Self> {
        Self::with_width(channels, classes, levels, 1024, rng)
    }

    /// With `width`-wide fully connected layers.
    pub fn with_width(
        channels: usize,
        classes: usize,
        levels: usize,
        width: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let pool = MultiScaleRoiAlign {
            output: 7,
            sampling_ratio: 2,
            levels,
            max_pool: false,
        };
        Ok(RoiHeads {
            box_head: TwoMlpHead {
                fc6: Linear::new(channels * 49, width, true, rng)?,
                fc7: Linear::new(width, width, true, rng)?,
            },
            box_predictor: FastRcnnPredictor::new(width, classes, rng)?,
            pool,
            settings: BoxSettings::default(),
            coder: BoxCoder::new([10.0, 10.0, 5.0, 5.0]),
        })
    }

    /// Class logits and box deltas of every proposal of every image.
    pub fn predict(
        &self,
        feats: &[Tensor],
        proposals: &[Vec<[f32; 4]>],
        image_sizes: &[(usize, usize)],
    ) -> Result<(Tensor, Tensor)> {
        let pooled = self.pool.pool(feats, proposals, image_sizes)?;
        let h = self.box_head.forward(&pooled)?;
        self.box_predictor.predict(&h)
    }

    /// Class logits and box deltas of regions given as a tensor: (K, 5) rows of (image index,
    /// x1, y1, x2, y2) in the pixels of the batch's (resized) images of `image_size`, pooled
    /// from the one feature level a single-level head reads. The same ops on the same operands
    /// whatever the regions, so the graph traces for export with the region count symbolic.
    pub fn predict_rois(
        &self,
        feats: &[Tensor],
        rois: &Tensor,
        image_size: (usize, usize),
    ) -> Result<(Tensor, Tensor)> {
        let levels = self.pool.levels.min(feats.len());
        if levels != 1 {
            return Err(arg(
                "RoiHeads",
                format!(
                    "the head pools from {levels} pyramid levels, each region's chosen from its size at run time; regions as a tensor need a single-level head"
                ),
            ));
        }
        let scale = MultiScaleRoiAlign::scales(&feats[..1], &[image_size])[0];
        let pooled = self.pool.pool_level(&feats[0], rois, scale)?;
        let h = self.box_head.forward(&pooled)?;
        self.box_predictor.predict(&h)
    }

    /// The box head's two losses for `proposals` of each image (ground truth is added to
    /// them): proposals are labelled by the box they overlap at IoU ≥ `fg_iou` (else
    /// background), `batch` a image are sampled with `fraction` foreground, and the result is
    /// (cross-entropy over the sampled, smooth L1 with `beta` of the foreground's deltas for
    /// their class summed over the sampled count).
    pub fn loss(
        &self,
        features: &[Tensor],
        mut proposals: Vec<Vec<[f32; 4]>>,
        targets: &[Target],
        sizes: &[(usize, usize)],
        s: &BoxSampling,
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor)> {
        let mut sampled_boxes = Vec::new();
        let mut box_labels = Vec::new();
        let (mut box_gt, mut box_props) = (Vec::new(), Vec::new());
        let mut fg_rows = Vec::new();
        let mut row = 0;
        for (t, props) in targets.iter().zip(proposals.iter_mut()) {
            props.extend(t.boxes.iter().copied());
            let m = match_boxes(&t.boxes, props, s.fg_iou, s.fg_iou, false);
            let labels: Vec<i64> = m
                .iter()
                .map(|&g| {
                    if g >= 0 {
                        t.labels[g as usize] as i64
                    } else {
                        0
                    }
                })
                .collect();
            let (pos, neg) = sample_balanced(&labels, s.batch, s.fraction, rng);
            let mut chosen: Vec<usize> = pos.iter().chain(&neg).copied().collect();
            chosen.sort_unstable();
            let mut boxes = Vec::new();
            for &p in &chosen {
                boxes.push(props[p]);
                let l = labels[p].max(0) as usize;
                box_labels.push(l);
                if l > 0 {
                    box_gt.extend(t.boxes[m[p] as usize]);
                    box_props.extend(props[p]);
                    fg_rows.push((row, l));
                }
                row += 1;
            }
            sampled_boxes.push(boxes);
        }
        let (logits, deltas) = self.predict(features, &sampled_boxes, sizes)?;
        let classifier = if box_labels.is_empty() {
            logits.sum().mul_scalar(0.0)
        } else {
            aics_nn::loss::cross_entropy(&logits, &box_labels, None, 0.0)?
        };
        let c = logits.shape()[1];
        let box_reg = if fg_rows.is_empty() {
            deltas.sum().mul_scalar(0.0)
        } else {
            let rows: Vec<usize> = fg_rows.iter().map(|&(r, l)| r * c + l).collect();
            let target =
                Tensor::from_vec(self.coder.encode(&box_gt, &box_props)?, &[rows.len(), 4])?;
            deltas
                .reshape(&[row * c, 4])?
                .index_select(0, &rows)?
                .sub(&target)?
                .smooth_l1(s.beta)
                .sum()
                .mul_scalar(1.0 / row.max(1) as f64)
        };
        Ok((classifier, box_reg))
    }

    /// torchvision's `postprocess_detections` for each image.
    pub fn detections(
        &self,
        logits: &Tensor,
        deltas: &Tensor,
        proposals: &[Vec<[f32; 4]>],
        image_sizes: &[(usize, usize)],
    ) -> Result<Vec<Detections>> {
        let s = &self.settings;
        let classes = logits.shape()[1];
        let probs = logits.softmax(-1)?.to_vec();
        let deltas = deltas.to_vec();
        let mut out = Vec::new();
        let mut row = 0;
        for (props, &size) in proposals.iter().zip(image_sizes) {
            let (mut boxes, mut scores, mut labels) = (Vec::new(), Vec::new(), Vec::new());
            for p in props {
                let d = &deltas[row * 4 * classes..(row + 1) * 4 * classes];
                let anchors: Vec<f32> = (0..classes).flat_map(|_| *p).collect();
                let dec = self.coder.decode(d, &anchors)?;
                for c in 1..classes {
                    let score = probs[row * classes + c];
                    if (score as f64) <= s.score_thresh {
                        continue;
                    }
                    let b = clip(&dec[4 * c..4 * c + 4], size);
                    if b[2] - b[0] < 1e-2 || b[3] - b[1] < 1e-2 {
                        continue;
                    }
                    boxes.push(b);
                    scores.push(score);
                    labels.push(c);
                }
                row += 1;
            }
            let keep = batched_nms_rows(&boxes, &scores, &labels, s.nms_thresh)?;
            let keep = &keep[..keep.len().min(s.detections_per_img)];
            out.push(Detections {
                boxes: gather_boxes(&boxes, keep),
                scores: keep.iter().map(|&i| scores[i]).collect(),
                labels: keep.iter().map(|&i| labels[i]).collect(),
            });
        }
        Ok(out)
    }
}

impl Module for RoiHeads {
    /// The class logits of pooled features (K, C, 7, 7).
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.box_predictor.forward(&self.box_head.forward(x)?)
    }
}

/// What a Faster R-CNN computes for a batch, stage by stage (for tests and pictures).
pub struct FasterRcnnTrace {
    pub images: ImageList,
    pub features: Vec<Tensor>,
    pub proposals: Vec<Proposals>,
    /// In original-image pixels.
    pub detections: Vec<Detections>,
}

/// Faster R-CNN with a feature-pyramid backbone; keys `backbone.*`, `rpn.*`, `roi_heads.*`.
#[derive(Module)]
pub struct FasterRcnn {
    #[module]
    pub backbone: BackboneWithFpn,
    #[module]
    pub rpn: Rpn,
    #[module]
    pub roi_heads: RoiHeads,
    pub transform: RcnnTransform,
    /// Classes including the background (91 for COCO).
    pub num_classes: usize,
}

impl FasterRcnn {
    /// torchvision's `fasterrcnn_resnet50_fpn` with `num_classes` (91 for COCO): frozen batch
    /// norm with `eps` (0 for the published COCO weights, 1e-5 otherwise), FPN anchors of sizes
    /// 32…512 (one a level) with ratios 0.5, 1, 2. Weights are initialized from `seed`.
    pub fn resnet50_fpn(num_classes: usize, eps: f64, seed: u64) -> Result<Self> {
        if num_classes < 2 {
            return Err(arg(
                "fasterrcnn_resnet50_fpn",
                format!(
                    "num_classes counts the background and must be at least 2, got {num_classes}"
                ),
            ));
        }
        let mut rng = Rng::new(seed);
        let backbone = BackboneWithFpn::resnet("resnet50", Norm::Frozen(eps), &mut rng)?;
        let anchors = AnchorGenerator::new(
            [32.0, 64.0, 128.0, 256.0, 512.0]
                .iter()
                .map(|&s| vec![s])
                .collect(),
            vec![vec![0.5, 1.0, 2.0]; 5],
        )?;
        Ok(FasterRcnn {
            backbone,
            rpn: Rpn::new(256, anchors, &mut rng)?,
            roi_heads: RoiHeads::new(256, num_classes, 4, &mut rng)?,
            transform: RcnnTransform::default(),
            num_classes,
        })
    }

    /// torchvision's `fasterrcnn_mobilenet_v3_large_fpn` (`low_res`: the `_320_fpn` variant,
    /// short side 320, long side at most 640, 150 proposals before and after NMS): frozen batch
    /// norm (eps 1e-5), anchors of sizes 32…512 at each of the three levels with ratios 0.5,
    /// 1, 2 (15 a location), proposals scoring below 0.05 dropped.
    pub fn mobilenet_v3_large_fpn(num_classes: usize, low_res: bool, seed: u64) -> Result<Self> {
        check_classes("fasterrcnn_mobilenet_v3_large_fpn", num_classes)?;
        let mut rng = Rng::new(seed);
        let backbone = BackboneWithFpn::mobilenet_v3_large(Norm::Frozen(1e-5), &mut rng)?;
        let anchors = AnchorGenerator::new(
            vec![vec![32.0, 64.0, 128.0, 256.0, 512.0]; 3],
            vec![vec![0.5, 1.0, 2.0]; 3],
        )?;
        let mut rpn = Rpn::new(256, anchors, &mut rng)?;
        rpn.settings.score_thresh = 0.05;
        let mut transform = RcnnTransform::default();
        if low_res {
            rpn.settings.pre_nms_top_n = 150;
            rpn.settings.post_nms_top_n = 150;
            transform.min_size = 320.0;
            transform.max_size = 640.0;
        }
        Ok(FasterRcnn {
            backbone,
            rpn,
            roi_heads: RoiHeads::new(256, num_classes, 2, &mut rng)?,
            transform,
            num_classes,
        })
    }

    /// The chapter's Faster R-CNN for small `size`² images (a multiple of 32, at least 64):
    /// one feature map at stride 16 from a small backbone (3×3 conv + batch norm + ReLU stages
    /// of 32, 64, 128, 256 channels, the first with stride 2, the others after a 2×2 max pool,
    /// then a 1×1 and a 3×3 conv to 128 channels), 9 anchors a location (sizes 0.125, 0.25 and
    /// 0.5 of the image × ratios 0.5, 1, 2), ROI align to 7×7, two 256-wide layers.
    pub fn small(num_classes: usize, size: usize, seed: u64) -> Result<Self> {
        check_classes("faster_rcnn_small", num_classes)?;
        check_size("faster_rcnn_small", size, 32, 64)?;
        let mut rng = Rng::new(seed);
        let widths = [32, 64, 128, 256];
        let body = crate::ssd::small_stages(&widths, &mut rng)?;
        let c = widths[widths.len() - 1];
        let s = size as f64;
        Self::small_on(
            num_classes,
            size,
            body,
            c,
            "3",
            vec![s / 8.0, s / 4.0, s / 2.0],
            &mut rng,
        )
    }

    /// The small Faster R-CNN around `body` (its layer `last` gives `channels` channels at
    /// stride 16): one 128-wide FPN level, an RPN with `sizes` × ratios 0.5, 1, 2 anchors a
    /// location, ROI align 7×7 and two 256-wide layers, images fixed at `size`².
    fn small_on(
        num_classes: usize,
        size: usize,
        body: Sequential,
        channels: usize,
        last: &str,
        sizes: Vec<f64>,
        rng: &mut Rng,
    ) -> Result<Self> {
        let backbone = BackboneWithFpn {
            body,
            fpn: Fpn::new(&[channels], 128, false, rng)?,
            return_layers: vec![last.to_string()],
        };
        let anchors = AnchorGenerator::new(vec![sizes], vec![vec![0.5, 1.0, 2.0]])?;
        let s = size as f64;
        let mut transform = RcnnTransform {
            min_size: s,
            max_size: s,
            fixed_size: Some((size, size)),
            ..Default::default()
        };
        transform.size_divisible = 32;
        Ok(FasterRcnn {
            backbone,
            rpn: Rpn::new(128, anchors, rng)?,
            roi_heads: RoiHeads::with_width(128, num_classes, 1, 256, rng)?,
            transform,
            num_classes,
        })
    }

    /// [`FasterRcnn::small`] on an ImageNet backbone, for fine-tuning: MobileNetV2's first 14
    /// layers (stride 16, 96 channels, frozen batch norm, keys `backbone.body.N.*` as
    /// torchvision's `features.N.*`) in place of the small stages; the same FPN level, RPN and
    /// box head, with 12 anchors a location (sizes 1/16, 1/8, 1/4 and 1/2 of the image, for
    /// objects as small as aerial photos' trees). [`FasterRcnn::load_mobilenet_v2`] loads the
    /// ImageNet weights.
    pub fn mobilenet_v2(num_classes: usize, size: usize, seed: u64) -> Result<Self> {
        check_classes("faster_rcnn_mobilenet_v2", num_classes)?;
        check_size("faster_rcnn_mobilenet_v2", size, 32, 64)?;
        let mut rng = Rng::new(seed);
        let (body, c) = aics_vision::models::mobilenet::mobilenet_v2_features(
            3,
            14,
            Norm::Frozen(1e-5),
            &mut rng,
        )?;
        let z = size as f64;
        Self::small_on(
            num_classes,
            size,
            body,
            c,
            "13",
            vec![z / 16.0, z / 8.0, z / 4.0, z / 2.0],
            &mut rng,
        )
    }

    /// Freeze the first `layers` layers of the backbone's body (their parameters stop requiring
    /// gradients, so optimisers leave them), as torchvision's `trainable_backbone_layers` keeps
    /// a pretrained body's early layers fixed. An error when the body has fewer layers.
    pub fn freeze_body(&self, layers: usize) -> Result<()> {
        let n = self.backbone.body.len();
        if layers > n {
            return Err(arg(
                "FasterRcnn::freeze_body",
                format!("{layers} layers to freeze, the body has {n}"),
            ));
        }
        for (_, l) in self.backbone.body.layers().take(layers) {
            for (_, t) in aics_nn::parameters(l) {
                t.set_requires_grad(false);
            }
        }
        Ok(())
    }

    /// Copy torchvision's MobileNetV2 ImageNet weights (`features.N.*`, as read from its .pth)
    /// into the body of a [`FasterRcnn::mobilenet_v2`].
    pub fn load_mobilenet_v2(&self, weights: &aics_nn::checkpoint::TensorMap) -> Result<()> {
        let body: HashMap<String, (Vec<usize>, Vec<f32>)> = weights
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("features.")?;
                let (n, _) = rest.split_once('.')?;
                (n.parse::<usize>().ok()? < 14).then(|| (rest.to_string(), v.clone()))
            })
            .collect();
        aics_nn::load_state_dict(&self.backbone.body, &body, false)?;
        Ok(())
    }

    /// A model by torchvision's name: `fasterrcnn_resnet50_fpn` (eps 0, as the published
    /// COCO weights), `fasterrcnn_mobilenet_v3_large_fpn`, `fasterrcnn_mobilenet_v3_large_320_fpn`.
    pub fn by_name(name: &str, num_classes: usize, seed: u64) -> Result<Self> {
        match name {
            "fasterrcnn_resnet50_fpn" => Self::resnet50_fpn(num_classes, 0.0, seed),
            "fasterrcnn_mobilenet_v3_large_fpn" => Self::mobilenet_v3_large_fpn(num_classes, false, seed),
            "fasterrcnn_mobilenet_v3_large_320_fpn" => Self::mobilenet_v3_large_fpn(num_classes, true, seed),
            other => Err(arg(
                "FasterRcnn",
                format!("unknown model `{other}`; known: fasterrcnn_resnet50_fpn, fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_mobilenet_v3_large_320_fpn"),
            )),
        }
    }

    /// Every stage for images given as (3, H, W) tensors in [0, 1].
    pub fn trace(&self, images: &[Tensor]) -> Result<FasterRcnnTrace> {
        let list = self.transform.batch(images)?;
        let features = self.backbone.features(&list.tensor)?;
        let ts = list.tensor.shape();
        let rpn = self.rpn.run(&features, (ts[2], ts[3]))?;
        let proposals = (0..images.len())
            .map(|n| self.rpn.proposals(&rpn, n, list.sizes[n]))
            .collect::<Result<Vec<_>>>()?;
        let boxes: Vec<Vec<[f32; 4]>> = proposals.iter().map(|p| p.boxes.clone()).collect();
        let (logits, deltas) = self.roi_heads.predict(&features, &boxes, &list.sizes)?;
        let mut detections = self
            .roi_heads
            .detections(&logits, &deltas, &boxes, &list.sizes)?;
        for (n, d) in detections.iter_mut().enumerate() {
            let s = images[n].shape();
            resize_boxes(&mut d.boxes, list.sizes[n], (s[1], s[2]));
        }
        Ok(FasterRcnnTrace {
            images: list,
            features,
            proposals,
            detections,
        })
    }

    /// Detections of one image already resized and normalized, (1, 3, H, W), in its pixels:
    /// what the network computes between the transform and the boxes' resizing, as `aics
    /// export` writes it.
    pub fn detect_network(&self, x: &Tensor) -> Result<Detections> {
        let s = x.shape();
        if s.len() != 4 || s[0] != 1 {
            return Err(arg(
                "FasterRcnn",
                format!("one image (1, 3, H, W) is needed, got {s:?}"),
            ));
        }
        let size = (s[2], s[3]);
        let features = self.backbone.features(x)?;
        let rpn = self.rpn.run(&features, size)?;
        let p = self.rpn.proposals(&rpn, 0, size)?;
        let boxes = vec![p.boxes];
        let (logits, deltas) = self.roi_heads.predict(&features, &boxes, &[size])?;
        let mut d = self
            .roi_heads
            .detections(&logits, &deltas, &boxes, &[size])?;
        Ok(d.pop().unwrap_or_default())
    }

    /// Detections for images given as (3, H, W) tensors in [0, 1], in their own pixels.
    pub fn detect(&self, images: &[Tensor]) -> Result<Vec<Detections>> {
        Ok(self.trace(images)?.detections)
    }

    /// Copy a torchvision state dict in, renaming the keys of checkpoints saved before
    /// torchvision 0.13 (`rpn.head.conv.*`, `fpn.inner_blocks.{i}.*`, `fpn.layer_blocks.{i}.*`).
    /// `num_batches_tracked` entries are ignored where the model has frozen batch norm, as
    /// torchvision's `FrozenBatchNorm2d` ignores them.
    pub fn load_state_dict(&self, tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Result<()> {
        let own: std::collections::HashSet<String> = aics_nn::state_dict(self)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut renamed = HashMap::with_capacity(tensors.len());
        for (k, v) in tensors {
            let k = upgrade_key(k);
            if k.ends_with("num_batches_tracked") && !own.contains(&k) {
                continue;
            }
            renamed.insert(k, v.clone());
        }
        Ok(aics_nn::load_state_dict(self, &renamed, true)?)
    }
}

pub(crate) fn check_classes(op: &'static str, num_classes: usize) -> Result<()> {
    if num_classes < 2 {
        return Err(arg(
            op,
            format!("num_classes counts the background and must be at least 2, got {num_classes}"),
        ));
    }
    Ok(())
}

/// An input side that is a multiple of `multiple`, at least `min`.
pub(crate) fn check_size(op: &'static str, size: usize, multiple: usize, min: usize) -> Result<()> {
    if size < min || !size.is_multiple_of(multiple) {
        return Err(arg(
            op,
            format!("the input size must be a multiple of {multiple}, at least {min}; got {size}"),
        ));
    }
    Ok(())
}

/// A key of an older torchvision checkpoint as today's model names it.
pub fn upgrade_key(k: &str) -> String {
    for t in ["weight", "bias"] {
        if k == format!("rpn.head.conv.{t}") {
            return format!("rpn.head.conv.0.0.{t}");
        }
    }
    for block in ["backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks."] {
        if let Some(rest) = k.strip_prefix(block) {
            if let Some((i, t)) = rest.split_once('.') {
                if i.parse::<usize>().is_ok() && (t == "weight" || t == "bias") {
                    return format!("{block}{i}.0.{t}");
                }
            }
        }
    }
    k.to_string()
}

impl Module for FasterRcnn {
    /// The detections of one image (1, 3, H, W) in [0, 1], as rows
    /// `[x1, y1, x2, y2, score, label]`.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[0] != 1 {
            return Err(aics_nn::NnError::Config {
                layer: "FasterRcnn".into(),
                msg: format!(
                    "forward takes one image (1, 3, H, W), got {s:?}; detect() takes a batch"
                ),
            });
        }
        let img = x.reshape(&s[1..])?;
        let d = self.detect(&[img]).map_err(nn_err)?.remove(0);
        let rows: Vec<f32> = d
            .boxes
            .iter()
            .zip(&d.scores)
            .zip(&d.labels)
            .flat_map(|((b, &s), &l)| [b[0], b[1], b[2], b[3], s, l as f32])
            .collect();
        Ok(Tensor::from_vec(rows, &[d.scores.len(), 6])?)
    }
}

/// torchvision's `Matcher` over an IoU matrix given as a closure `q(gt, anchor)`: each anchor
/// takes its best ground-truth box (the first of equals) when that IoU reaches `high`, −2
/// between `low` and `high`, −1 below `low`; with `low_quality`, every anchor that is some
/// box's best match (ties included) keeps its best box whatever the IoU.
pub fn match_boxes(
    gt: &[[f32; 4]],
    anchors: &[[f32; 4]],
    low: f64,
    high: f64,
    low_quality: bool,
) -> Vec<i64> {
    if gt.is_empty() {
        return vec![-1; anchors.len()];
    }
    let q: Vec<Vec<f32>> = gt
        .iter()
        .map(|g| {
            anchors
                .iter()
                .map(|a| crate::boxes::pair_iou(g, a))
                .collect()
        })
        .collect();
    let mut best_of_gt = vec![f32::NEG_INFINITY; gt.len()];
    for (g, row) in q.iter().enumerate() {
        for &v in row {
            if v > best_of_gt[g] {
                best_of_gt[g] = v;
            }
        }
    }
    (0..anchors.len())
        .map(|a| {
            let (mut bv, mut bg) = (f32::NEG_INFINITY, 0usize);
            for (g, row) in q.iter().enumerate() {
                if row[a] > bv {
                    bv = row[a];
                    bg = g;
                }
            }
            let low_q = low_quality && q.iter().enumerate().any(|(g, row)| row[a] == best_of_gt[g]);
            if low_q || bv as f64 >= high {
                bg as i64
            } else if (bv as f64) < low {
                -1
            } else {
                -2
            }
        })
        .collect()
}

/// torchvision's `BalancedPositiveNegativeSampler`: of the positives (label ≥ 1) at most
/// `batch · fraction`, of the negatives (label 0) the rest of `batch`, each drawn at random.
/// Returns (positives, negatives), each in increasing index order.
pub fn sample_balanced(
    labels: &[i64],
    batch: usize,
    fraction: f64,
    rng: &mut Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 1).collect();
    let mut neg: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let np = ((batch as f64 * fraction) as usize).min(pos.len());
    let nn = (batch - np).min(neg.len());
    let mut pick = |v: &mut Vec<usize>, k: usize| {
        if k < v.len() {
            rng.shuffle(v);
            v.truncate(k);
        }
        v.sort_unstable();
    };
    pick(&mut pos, np);
    pick(&mut neg, nn);
    (pos, neg)
}

/// Training settings of Faster R-CNN (torchvision's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct RcnnTrainSettings {
    /// Anchors sampled per image for the RPN's loss, and the positive fraction.
    pub rpn_batch: usize,
    pub rpn_fraction: f64,
    /// Anchors at IoU ≥ fg are positive, < bg negative.
    pub rpn_fg_iou: f64,
    pub rpn_bg_iou: f64,
    /// Proposals kept per level before NMS and in all after it, while training.
    pub rpn_pre_nms_top_n: usize,
    pub rpn_post_nms_top_n: usize,
    /// Proposals sampled per image for the box head, and the positive fraction.
    pub box_batch: usize,
    pub box_fraction: f64,
    /// Proposals at IoU ≥ this are foreground.
    pub box_fg_iou: f64,
}

impl Default for RcnnTrainSettings {
    fn default() -> Self {
        RcnnTrainSettings {
            rpn_batch: 256,
            rpn_fraction: 0.5,
            rpn_fg_iou: 0.7,
            rpn_bg_iou: 0.3,
            rpn_pre_nms_top_n: 2000,
            rpn_post_nms_top_n: 2000,
            box_batch: 512,
            box_fraction: 0.25,
            box_fg_iou: 0.5,
        }
    }
}

/// How the box head's training samples proposals.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxSampling {
    /// Proposals sampled an image, and the foreground fraction.
    pub batch: usize,
    pub fraction: f64,
    /// Proposals at IoU ≥ this are foreground, the rest background.
    pub fg_iou: f64,
    /// The smooth L1's β (torchvision 1/9, the Fast R-CNN paper 1).
    pub beta: f64,
}

/// Faster R-CNN's four losses.
pub struct RcnnLosses {
    /// Binary cross-entropy of the sampled anchors' objectness (mean).
    pub objectness: Tensor,
    /// Smooth L1 (β = 1/9) of the positive anchors' deltas, over the sampled anchors.
    pub rpn_box_reg: Tensor,
    /// Cross-entropy of the sampled proposals' classes (mean).
    pub classifier: Tensor,
    /// Smooth L1 (β = 1/9) of the foreground proposals' deltas for their class, over the
    /// sampled proposals.
    pub box_reg: Tensor,
}

impl RcnnLosses {
    pub fn total(&self) -> Result<Tensor> {
        Ok(self
            .objectness
            .add(&self.rpn_box_reg)?
            .add(&self.classifier)?
            .add(&self.box_reg)?)
    }
}

/// The objectness logits (N·total) and deltas (N·total, 4) of all levels, rows in the anchors'
/// order (level, y, x, anchor) image by image.
fn flat_rpn(out: &RpnOutput) -> Result<(Tensor, Tensor)> {
    let (mut os, mut ds) = (Vec::new(), Vec::new());
    for (o, d) in out.objectness.iter().zip(&out.deltas) {
        let s = o.shape().to_vec();
        let (n, a, h, w) = (s[0], s[1], s[2], s[3]);
        os.push(o.permute(&[0, 2, 3, 1])?.reshape(&[n, h * w * a])?);
        ds.push(
            d.reshape(&[n, a, 4, h, w])?
                .permute(&[0, 3, 4, 1, 2])?
                .reshape(&[n, h * w * a, 4])?,
        );
    }
    let n = out.objectness[0].shape()[0];
    let total = out.anchors.len();
    let o = Tensor::concat(&os.iter().collect::<Vec<_>>(), 1)?.reshape(&[n * total])?;
    let d = Tensor::concat(&ds.iter().collect::<Vec<_>>(), 1)?.reshape(&[n * total, 4])?;
    Ok((o, d))
}

impl FasterRcnn {
    /// The four losses of a batch: images (3, H, W) in [0, 1] with targets in their pixels
    /// (scaled with the images by the transform). Sampling draws from `rng`.
    pub fn losses(
        &self,
        images: &[Tensor],
        targets: &[Target],
        ts: &RcnnTrainSettings,
        rng: &mut Rng,
    ) -> Result<RcnnLosses> {
        if images.len() != targets.len() {
            return Err(arg(
                "FasterRcnn::losses",
                format!("{} images, {} targets", images.len(), targets.len()),
            ));
        }
        let list = self.transform.batch(images)?;
        let targets = rescaled_targets(targets, images, &list);
        for (i, t) in targets.iter().enumerate() {
            if t.boxes.len() != t.labels.len() {
                return Err(arg(
                    "FasterRcnn::losses",
                    format!(
                        "image {i}: {} boxes, {} labels",
                        t.boxes.len(),
                        t.labels.len()
                    ),
                ));
            }
            if let Some(&l) = t.labels.iter().find(|&&l| l == 0 || l >= self.num_classes) {
                return Err(arg(
                    "FasterRcnn::losses",
                    format!("image {i}: label {l} outside 1..{}", self.num_classes - 1),
                ));
            }
            if t.boxes.iter().any(|b| !(b[2] > b[0] && b[3] > b[1])) {
                return Err(arg(
                    "FasterRcnn::losses",
                    format!("image {i}: a box without positive width and height"),
                ));
            }
        }
        let features = self.backbone.features(&list.tensor)?;
        let tsz = list.tensor.shape();
        let out = self.rpn.run(&features, (tsz[2], tsz[3]))?;
        let total = out.anchors.len();

        // RPN: anchor targets, sampled anchors, losses
        let mut rpn_pos = Vec::new();
        let mut rpn_sampled = Vec::new();
        let mut rpn_labels = Vec::new();
        let (mut enc_gt, mut enc_anchor) = (Vec::new(), Vec::new());
        for (i, t) in targets.iter().enumerate() {
            let m = match_boxes(&t.boxes, &out.anchors, ts.rpn_bg_iou, ts.rpn_fg_iou, true);
            let labels: Vec<i64> = m
                .iter()
                .map(|&g| {
                    if g >= 0 {
                        1
                    } else if g == -1 {
                        0
                    } else {
                        -1
                    }
                })
                .collect();
            let (pos, neg) = sample_balanced(&labels, ts.rpn_batch, ts.rpn_fraction, rng);
            for &a in &pos {
                enc_gt.extend(t.boxes[m[a] as usize]);
                enc_anchor.extend(out.anchors[a]);
                rpn_pos.push(i * total + a);
            }
            for &a in pos.iter().chain(&neg) {
                rpn_sampled.push(i * total + a);
                rpn_labels.push(if labels[a] >= 1 { 1.0f32 } else { 0.0 });
            }
        }
        let (obj, del) = flat_rpn(&out)?;
        let objectness = if rpn_sampled.is_empty() {
            obj.sum().mul_scalar(0.0)
        } else {
            let y = Tensor::from_vec(rpn_labels, &[rpn_sampled.len()])?;
            aics_nn::loss::bce_with_logits(&obj.index_select(0, &rpn_sampled)?, &y)?
        };
        let rpn_box_reg = if rpn_pos.is_empty() {
            del.sum().mul_scalar(0.0)
        } else {
            let target = Tensor::from_vec(
                self.rpn.coder.encode(&enc_gt, &enc_anchor)?,
                &[rpn_pos.len(), 4],
            )?;
            del.index_select(0, &rpn_pos)?
                .sub(&target)?
                .smooth_l1(1.0 / 9.0)
                .sum()
                .mul_scalar(1.0 / rpn_sampled.len().max(1) as f64)
        };

        // proposals (training's top-k), the ground truth added, sampled for the box head
        let mut settings = self.rpn.settings.clone();
        settings.pre_nms_top_n = ts.rpn_pre_nms_top_n;
        settings.post_nms_top_n = ts.rpn_post_nms_top_n;
        let mut proposals = Vec::new();
        for i in 0..targets.len() {
            let _g = aics_tensor::no_grad();
            proposals.push(
                self.rpn
                    .proposals_with(&out, i, list.sizes[i], &settings)?
                    .boxes,
            );
        }
        let sampling = BoxSampling {
            batch: ts.box_batch,
            fraction: ts.box_fraction,
            fg_iou: ts.box_fg_iou,
            beta: 1.0 / 9.0,
        };
        let (classifier, box_reg) =
            self.roi_heads
                .loss(&features, proposals, &targets, &list.sizes, &sampling, rng)?;
        Ok(RcnnLosses {
            objectness,
            rpn_box_reg,
            classifier,
            box_reg,
        })
    }
}

/// Fast R-CNN (Girshick, 2015): one feature map per image; each proposal given from outside
/// (selective search) is max-pooled to 7×7 from it (ROI pooling); two fully connected layers;
/// the sibling classifier and per-class box regressor; trained with the multi-task loss
/// (cross-entropy + smooth L1, λ = 1) on 64 proposals an image, a quarter foreground (IoU ≥ 0.5).
/// Keys `backbone.*`, `roi_heads.*`.
#[derive(Module)]
pub struct FastRcnn {
    #[module]
    pub backbone: BackboneWithFpn,
    #[module]
    pub roi_heads: RoiHeads,
    pub transform: RcnnTransform,
    pub num_classes: usize,
    pub sampling: BoxSampling,
}

impl FastRcnn {
    /// For small `size`² images: [`FasterRcnn::small`]'s backbone and head, without the RPN,
    /// with ROI max pooling.
    pub fn small(num_classes: usize, size: usize, seed: u64) -> Result<Self> {
        let f = FasterRcnn::small(num_classes, size, seed)?;
        let mut roi_heads = f.roi_heads;
        roi_heads.pool.max_pool = true;
        Ok(FastRcnn {
            backbone: f.backbone,
            roi_heads,
            transform: f.transform,
            num_classes,
            sampling: BoxSampling {
                batch: 64,
                fraction: 0.25,
                fg_iou: 0.5,
                beta: 1.0,
            },
        })
    }

    /// Proposals of each image (its pixels) in the resized images' pixels.
    fn scaled(
        images: &[Tensor],
        list: &ImageList,
        proposals: &[Vec<[f32; 4]>],
    ) -> Result<Vec<Vec<[f32; 4]>>> {
        if proposals.len() != images.len() {
            return Err(arg(
                "FastRcnn",
                format!(
                    "{} images, {} lists of proposals",
                    images.len(),
                    proposals.len()
                ),
            ));
        }
        Ok(proposals
            .iter()
            .zip(images)
            .zip(&list.sizes)
            .map(|((p, img), &size)| rescaled(p, img, size))
            .collect())
    }

    /// The multi-task loss (classifier, box regression) of images (3, H, W) in [0, 1] with
    /// their proposals and targets in their pixels.
    pub fn losses(
        &self,
        images: &[Tensor],
        proposals: &[Vec<[f32; 4]>],
        targets: &[Target],
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor)> {
        let list = self.transform.batch(images)?;
        let props = Self::scaled(images, &list, proposals)?;
        let targets = rescaled_targets(targets, images, &list);
        let features = self.backbone.features(&list.tensor)?;
        self.roi_heads
            .loss(&features, props, &targets, &list.sizes, &self.sampling, rng)
    }

    /// Detections for images with their proposals, in the images' pixels.
    pub fn detect(
        &self,
        images: &[Tensor],
        proposals: &[Vec<[f32; 4]>],
    ) -> Result<Vec<Detections>> {
        let list = self.transform.batch(images)?;
        let props = Self::scaled(images, &list, proposals)?;
        let features = self.backbone.features(&list.tensor)?;
        let (logits, deltas) = self.roi_heads.predict(&features, &props, &list.sizes)?;
        let mut d = self
            .roi_heads
            .detections(&logits, &deltas, &props, &list.sizes)?;
        for (n, d) in d.iter_mut().enumerate() {
            let s = images[n].shape();
            resize_boxes(&mut d.boxes, list.sizes[n], (s[1], s[2]));
        }
        Ok(d)
    }
}

impl FastRcnn {
    /// The network alone, as `aics export` writes it: a batch already resized and normalized
    /// (N, 3, H, W) and regions (K, 5) of rows (image index, x1, y1, x2, y2) in its pixels give
    /// class logits (K, C) and per-class box deltas (K, 4C).
    pub fn network(&self, x: &Tensor, rois: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = x.shape();
        if s.len() != 4 {
            return Err(arg(
                "FastRcnn",
                format!("images must be (N, 3, H, W), got {s:?}"),
            ));
        }
        let features = self.backbone.features(x)?;
        self.roi_heads.predict_rois(&features, rois, (s[2], s[3]))
    }
}

impl Module for FastRcnn {
    /// The feature map of a batch already resized and normalized.
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        self.backbone.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_body_layers_get_no_gradient() {
        let m = FasterRcnn::mobilenet_v2(3, 64, 0).unwrap();
        m.freeze_body(10).unwrap();
        assert!(m.freeze_body(15).is_err());
        let x = Tensor::from_vec(
            aics_tensor::hash_fill("x", &[1, 3, 64, 64]),
            &[1, 3, 64, 64],
        )
        .unwrap();
        m.backbone
            .body
            .forward(&x)
            .unwrap()
            .sum()
            .backward()
            .unwrap();
        for (i, (_, l)) in m.backbone.body.layers().enumerate() {
            for (k, t) in aics_nn::parameters(l) {
                assert_eq!(t.has_grad(), i >= 10, "layer {i} {k}");
            }
        }
    }

    /// The fine-tuning backbone computes what the zoo's MobileNetV2 computes through its first
    /// 14 layers, once both hold the same (key-hashed) ImageNet-style weights.
    #[test]
    fn mobilenet_v2_backbone_equals_the_zoo_features() {
        let cfg = aics_vision::ModelConfig {
            in_shape: [3, 64, 64],
            num_classes: 1000,
            hidden: vec![],
            seed: 0,
        };
        let zoo = aics_vision::models::mobilenet::mobilenet_v2(&cfg).unwrap();
        let w: aics_nn::checkpoint::TensorMap = aics_nn::state_dict(&zoo)
            .into_iter()
            .map(|(k, t)| {
                let mut v = aics_tensor::hash_fill(&k, t.shape());
                if k.ends_with("running_var") {
                    v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
                }
                if k.ends_with("weight") {
                    v.iter_mut().for_each(|x| *x *= 0.5);
                }
                (k, (t.shape().to_vec(), v))
            })
            .collect();
        aics_nn::load_state_dict(&zoo, &w, true).unwrap();
        zoo.set_training(false);
        let m = FasterRcnn::mobilenet_v2(3, 64, 0).unwrap();
        m.load_mobilenet_v2(&w).unwrap();
        let x = Tensor::from_vec(
            aics_tensor::hash_fill("x", &[1, 3, 64, 64]),
            &[1, 3, 64, 64],
        )
        .unwrap();
        let _g = aics_tensor::no_grad();
        let mut h = x.clone();
        let layers = zoo.into_layers();
        let features = &layers.iter().find(|(n, _)| n == "features").unwrap().1;
        let got = m.backbone.body.forward(&x).unwrap();
        // the zoo's features through layer 13: run the whole and compare shapes first, then
        // the truncated body against a zoo built to 14 layers with the same weights
        let (zoo14, _) = aics_vision::models::mobilenet::mobilenet_v2_features(
            3,
            14,
            aics_vision::models::Norm::BATCH,
            &mut Rng::new(0),
        )
        .unwrap();
        let w14: aics_nn::checkpoint::TensorMap = w
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("features.")?;
                let n: usize = rest.split_once('.')?.0.parse().ok()?;
                (n < 14).then(|| (rest.to_string(), v.clone()))
            })
            .collect();
        aics_nn::load_state_dict(&zoo14, &w14, true).unwrap();
        zoo14.set_training(false);
        h = zoo14.forward(&h).unwrap();
        assert_eq!(got.shape(), &[1, 96, 4, 4]);
        assert_eq!(features.forward(&x).unwrap().shape(), &[1, 1280, 2, 2]);
        let (a, b) = (got.to_vec(), h.to_vec());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-4 * scale.max(1.0), "{p} vs {q}");
        }
    }

    #[test]
    fn sampler_keeps_the_fraction_and_draws_without_repeats() {
        // 10 positives, 100 negatives, 20 ignored
        let labels: Vec<i64> = (0..130)
            .map(|i| {
                if i < 10 {
                    1 + (i % 3)
                } else if i < 110 {
                    0
                } else {
                    -1
                }
            })
            .collect();
        let mut rng = Rng::new(3);
        let (p, n) = sample_balanced(&labels, 16, 0.5, &mut rng);
        assert_eq!((p.len(), n.len()), (8, 8));
        assert!(p.iter().all(|&i| labels[i] >= 1) && n.iter().all(|&i| labels[i] == 0));
        assert!(p.windows(2).all(|w| w[0] < w[1]) && n.windows(2).all(|w| w[0] < w[1]));
        // too few positives: the negatives fill the batch
        let (p, n) = sample_balanced(&labels, 64, 0.5, &mut rng);
        assert_eq!((p.len(), n.len()), (10, 54));
        // a batch larger than everything takes everything
        let (p, n) = sample_balanced(&labels, 1000, 0.25, &mut rng);
        assert_eq!((p.len(), n.len()), (10, 100));
    }

    #[test]
    fn matcher_thresholds_and_low_quality_matches() {
        let gt = [[0.0f32, 0.0, 10.0, 10.0]];
        let anchors = [
            [0.0f32, 0.0, 10.0, 10.0], // IoU 1
            [0.0, 0.0, 10.0, 5.0],     // 0.5: between 0.3 and 0.7
            [50.0, 50.0, 60.0, 60.0],  // 0
        ];
        assert_eq!(match_boxes(&gt, &anchors, 0.3, 0.7, false), vec![0, -2, -1]);
        // the best anchor of a box is kept even below the threshold
        let far = [[0.0f32, 0.0, 10.0, 2.0], [50.0, 50.0, 60.0, 60.0]];
        assert_eq!(match_boxes(&gt, &far, 0.3, 0.7, false), vec![-1, -1]);
        assert_eq!(match_boxes(&gt, &far, 0.3, 0.7, true), vec![0, -1]);
        assert_eq!(match_boxes(&[], &far, 0.3, 0.7, true), vec![-1, -1]);
    }
}
