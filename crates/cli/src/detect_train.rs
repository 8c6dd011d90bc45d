//! `aics detect-train`: train a chapter detector on a detection data set, with mAP on held-out
//! images every epoch, atomic checkpoints and exact resume: YOLOv1, SSD, Fast and Faster R-CNN.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aics_detect::darknet::{Darknet, DetectionHead, Layer};
use aics_detect::data::{read_coco, read_voc_dir, Dataset, Detection};
use aics_detect::faster_rcnn::{resize_boxes, FastRcnn, FasterRcnn, RcnnTrainSettings};
use aics_detect::rcnn::Rcnn;
use aics_detect::ssd::{Ssd, Target};
use aics_detect::yolo::{decode_detection, detections, nms_sort};
use aics_detect::yolov1::{yolov1_loss, V1Object, Yolov1Scales};
use aics_detect::{coco_eval, voc_eval, VocAp};
use aics_nn::checkpoint::{load_checkpoint, save_checkpoint, write_atomic};
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Adam, Module};
use aics_tensor::{no_grad, Rng, Tensor};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetModel {
    /// YOLOv1: S×S grid (S = size/32, or size/16 with --grid), B = 2 boxes a cell, the
    /// sum-squared loss.
    Yolov1,
    /// SSD with a small backbone (feature maps at strides 8 to 64, default boxes of scales
    /// 0.08–0.9), the MultiBox loss with 3:1 hard negatives; --size a multiple of 64.
    Ssd,
    /// torchvision's SSDlite320 on MobileNetV3-Large (random weights), the same loss; --size 320.
    Ssdlite,
    /// Faster R-CNN with a small backbone: one stride-16 feature map, an RPN with 9 anchors a
    /// location, ROI align 7×7, two 256-wide layers; RPN and box-head losses trained together.
    #[value(name = "faster_rcnn")]
    FasterRcnn,
    /// Fast R-CNN: selective search's proposals (computed once per image), ROI max pooling
    /// 7×7 from one stride-16 map, the multi-task loss on 64 proposals an image.
    #[value(name = "fast_rcnn")]
    FastRcnn,
    /// R-CNN: selective search's proposals warped to --warp px with 16 px of context,
    /// MobileNetV2's ImageNet features, one linear SVM a class trained with hard-negative
    /// mining, class-specific ridge box regression, NMS 0.3. Trained once (no epochs).
    Rcnn,
}

/// Faster R-CNN's backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backbone {
    Small,
    #[value(name = "mobilenet_v2")]
    MobilenetV2,
}

/// How training images are varied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Augment {
    /// Horizontal flips.
    Flip,
    /// Flips and YOLO's: scale and translation by up to 20%, exposure and saturation by up to
    /// 1.5 in HSV.
    Yolo,
}

/// YOLOv1's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HeadKind {
    /// The paper's: a fully connected layer from the last feature map to the S²·(C + 5B) output.
    Connected,
    /// A 1×1 convolution predicting each cell's C + 5B values from its own features (shared
    /// across cells), its output laid out as darknet's `[detection]` layer expects.
    Conv,
}

#[derive(Args, Debug)]
pub struct DetectTrainArgs {
    #[arg(long, value_enum, default_value = "yolov1")]
    model: DetModel,
    /// YOLOv1's head (default: connected).
    #[arg(long, value_enum)]
    head: Option<HeadKind>,
    /// Training data: synth:DIR (from `aics data synth-detect`), coco:ANNOTATIONS.json:IMAGES,
    /// or voc:XML_DIR:IMAGES.
    #[arg(long)]
    dataset: String,
    /// Validation data (same forms); default: the last 10% of the training images, held out.
    #[arg(long)]
    val: Option<String>,
    /// Network input size (a multiple of 32; YOLOv1's grid is size/32).
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// YOLOv1's S: size/32 (the default), or size/16, where the fifth max pool keeps the
    /// resolution (size 2, stride 1, as in YOLOv2-tiny) so that cells are half as wide, for
    /// small objects. A checkpoint of either grid can --init the other: the weights are the same.
    #[arg(long)]
    grid: Option<usize>,
    /// Epochs (default 30; R-CNN takes none).
    #[arg(long)]
    epochs: Option<usize>,
    /// Images a step (R-CNN: warped regions a backbone pass).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Adam learning rate (default 1e-3, divided by 10 for the last third of the epochs; R-CNN
    /// takes none).
    #[arg(long)]
    lr: Option<f64>,
    /// R-CNN: the side of the warped regions.
    #[arg(long)]
    warp: Option<usize>,
    /// Faster R-CNN's backbone: small (trained from scratch, the default) or mobilenet_v2
    /// (ImageNet weights, fine-tuned with frozen batch norm).
    #[arg(long, value_enum)]
    backbone: Option<Backbone>,
    /// With --backbone mobilenet_v2: keep its first N layers (of 14) at their ImageNet weights.
    #[arg(long)]
    freeze_backbone: Option<usize>,
    /// R-CNN's, or Faster R-CNN's mobilenet_v2 backbone's, ImageNet weights (torchvision's
    /// MobileNetV2 .pth; default: the file `scripts/setup.sh` fetches; `none`: random weights).
    #[arg(long)]
    backbone_weights: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint, written atomically after every epoch (default: runs/MODEL.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// JSON lines, one per epoch (default: the checkpoint's path with .jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Continue the run that wrote --checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start from the weights of another run's checkpoint (the same model, head, size and
    /// classes) with a fresh optimizer and schedule: fine-tuning, e.g. on new scenes. A resumed
    /// run names the same --init; its weights then come from --checkpoint.
    #[arg(long)]
    init: Option<PathBuf>,
    /// How training images are varied (default: flip; not for the detectors trained on
    /// precomputed proposals).
    #[arg(long, value_enum)]
    augment: Option<Augment>,
    #[command(flatten)]
    dist: crate::dist::DistArgs,
}

/// A YOLOv1 checkpoint written by `aics detect-train`: the network and its head.
pub struct Yolov1Checkpoint {
    pub net: Darknet,
    pub kind: HeadKind,
    pub head: DetectionHead,
}

/// Load a checkpoint of `aics detect-train --model yolov1`, naming the file in any error.
pub fn load_yolov1(path: &Path) -> Result<Yolov1Checkpoint> {
    let ck = load_checkpoint(path)?;
    let bad = |what: &str| {
        anyhow::anyhow!(
            "{}: not a YOLOv1 checkpoint of aics detect-train ({what})",
            path.display()
        )
    };
    let cfg = ck
        .meta("aics.darknet_cfg")
        .ok_or_else(|| bad("no aics.darknet_cfg"))?;
    let settings: serde_json::Value = serde_json::from_str(
        ck.meta("aics.detect_train")
            .ok_or_else(|| bad("no aics.detect_train"))?,
    )
    .map_err(|_| bad("unreadable aics.detect_train"))?;
    let names: Vec<String> = serde_json::from_str(
        ck.meta("aics.class_names")
            .ok_or_else(|| bad("no aics.class_names"))?,
    )
    .map_err(|_| bad("unreadable aics.class_names"))?;
    let kind = match settings["head"].as_str() {
        Some("conv") => HeadKind::Conv,
        Some("connected") | None => HeadKind::Connected,
        Some(other) => return Err(bad(&format!("head {other}"))),
    };
    let size = settings["size"].as_u64().ok_or_else(|| bad("no size"))? as usize;
    let grid = settings["grid"].as_u64().map_or(size / 32, |g| g as usize);
    let net =
        Darknet::from_cfg(cfg).map_err(|e| anyhow::anyhow!("{}: its cfg: {e}", path.display()))?;
    ck.load_into(&net)?;
    net.set_training(false);
    let head =
        yolov1_head(&net, kind, names.len(), grid).ok_or_else(|| bad("no [detection] layer"))?;
    if head.classes != names.len() {
        return Err(bad(&format!(
            "{} class names for {} classes",
            names.len(),
            head.classes
        )));
    }
    Ok(Yolov1Checkpoint { net, kind, head })
}

/// A detector trained by `aics detect-train`, loaded from its checkpoint for `aics detect`.
pub struct Trained {
    trainee: Trainee,
    pub size: usize,
    pub names: Vec<String>,
}

impl Trained {
    /// The network and its settings.
    pub(crate) fn into_trainee(self) -> Trainee {
        self.trainee
    }
}

/// Load a checkpoint of `aics detect-train`, keeping detections above `score` after NMS at
/// `nms`; `want` names the model the caller expects (a checkpoint of another is refused).
pub fn load_trained(path: &Path, want: &str, score: f32, nms: f32) -> Result<Trained> {
    let ck = load_checkpoint(path)?;
    let bad = |what: &str| {
        anyhow::anyhow!(
            "{}: not a checkpoint of aics detect-train ({what})",
            path.display()
        )
    };
    let settings: serde_json::Value = serde_json::from_str(
        ck.meta("aics.detect_train")
            .ok_or_else(|| bad("no aics.detect_train"))?,
    )
    .map_err(|_| bad("unreadable aics.detect_train"))?;
    let model = settings["model"].as_str().unwrap_or("yolov1").to_string();
    if model != want {
        bail!(
            "{}: a {model} checkpoint, not {want}; run it with --model {}",
            path.display(),
            model
        );
    }
    let names: Vec<String> = serde_json::from_str(
        ck.meta("aics.class_names")
            .ok_or_else(|| bad("no aics.class_names"))?,
    )
    .map_err(|_| bad("unreadable aics.class_names"))?;
    let size = settings["size"].as_u64().ok_or_else(|| bad("no size"))? as usize;
    let classes = names.len() + 1;
    let trainee = match model.as_str() {
        "yolov1" => {
            let m = load_yolov1(path)?;
            Trainee::Yolov1 {
                net: m.net,
                kind: m.kind,
                head: m.head,
                cfg: String::new(),
                score,
                nms,
            }
        }
        "ssd" | "ssdlite" => {
            let mut m = if model == "ssd" {
                Ssd::small(classes, size, 0)?
            } else {
                Ssd::ssdlite320_mobilenet_v3_large(classes, 0)?
            };
            m.settings.score_thresh = score as f64;
            m.settings.nms_thresh = nms as f64;
            Trainee::Ssd(m)
        }
        "fast_rcnn" => {
            let mut m = FastRcnn::small(classes, size, 0)?;
            m.roi_heads.settings.score_thresh = score as f64;
            m.roi_heads.settings.nms_thresh = nms as f64;
            Trainee::Fast(m)
        }
        "rcnn" => {
            let warp = settings["warp"].as_u64().ok_or_else(|| bad("no warp"))? as usize;
            let mut m = crate::detect_rcnn::build(classes, warp, None)?;
            m.settings.score_thresh = score;
            m.settings.nms_thresh = nms as f64;
            Trainee::Svm(m)
        }
        "faster_rcnn" => {
            let mut m = match settings["backbone"].as_str() {
                None | Some("small") => FasterRcnn::small(classes, size, 0)?,
                Some("mobilenet_v2") => FasterRcnn::mobilenet_v2(classes, size, 0)?,
                Some(other) => return Err(bad(&format!("backbone {other}"))),
            };
            m.roi_heads.settings.score_thresh = score as f64;
            m.roi_heads.settings.nms_thresh = nms as f64;
            Trainee::Rcnn(m, RcnnTrainSettings::default())
        }
        other => return Err(bad(&format!("model {other}"))),
    };
    if model != "yolov1" {
        ck.load_into(trainee.module()).with_context(|| {
            format!(
                "{}: does not fit a {model} of {} classes at {size}",
                path.display(),
                names.len()
            )
        })?;
    }
    trainee.module().set_training(false);
    Ok(Trained {
        trainee,
        size,
        names,
    })
}

impl Trained {
    /// A photo resized to the network's input, as training resized its images.
    fn resized(&self, img: &image::RgbImage) -> image::RgbImage {
        let s = self.size as u32;
        image::imageops::resize(img, s, s, image::imageops::FilterType::Triangle)
    }

    /// A photo resized to the network's input, (1, 3, S, S) in [0, 1].
    fn pixels(&self, img: &image::RgbImage) -> Result<Tensor> {
        let s = self.size;
        let r = self.resized(img);
        let n = s * s;
        let mut x = vec![0f32; 3 * n];
        for (i, px) in r.as_raw().chunks_exact(3).enumerate() {
            for k in 0..3 {
                x[k * n + i] = px[k] as f32 / 255.0;
            }
        }
        Ok(Tensor::from_vec(x, &[1, 3, s, s])?)
    }

    /// A Faster R-CNN's RPN on a photo: its anchors' base boxes (xyxy around the origin) and
    /// its proposals with their objectness, best first, both in the photo's pixels; None for
    /// other models.
    #[allow(clippy::type_complexity)]
    pub fn rpn(
        &self,
        img: &image::RgbImage,
    ) -> Result<Option<(Vec<[f32; 4]>, Vec<([f32; 4], f32)>)>> {
        let Trainee::Rcnn(m, _) = &self.trainee else {
            return Ok(None);
        };
        let _g = no_grad();
        let (w, h) = img.dimensions();
        let s = self.size;
        let (fx, fy) = (w as f32 / s as f32, h as f32 / s as f32);
        let x = self.pixels(img)?;
        let t = m.trace(&[x.reshape(&[3, s, s])?])?;
        let p = &t.proposals[0];
        let props = p
            .boxes
            .iter()
            .zip(&p.scores)
            .map(|(b, &sc)| ([b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy], sc))
            .collect();
        let base = m
            .rpn
            .anchor_generator
            .cell_anchors(0)
            .iter()
            .map(|a| {
                [
                    a[0] as f32 * fx,
                    a[1] as f32 * fy,
                    a[2] as f32 * fx,
                    a[3] as f32 * fy,
                ]
            })
            .collect();
        Ok(Some((base, props)))
    }

    /// Detections on a photo: (class 0-based, score, xyxy in its pixels).
    pub fn detect(&self, img: &image::RgbImage) -> Result<Vec<(usize, f32, [f32; 4])>> {
        let _g = no_grad();
        let (w, h) = img.dimensions();
        let px = self.pixels(img)?;
        // Fast R-CNN's proposals: selective search on the photo as the network sees it
        let props = if let Trainee::Fast(_) | Trainee::Svm(_) = self.trainee {
            use aics_detect::selective_search::{fast_strategies, selective_search, RgbView};
            let s = self.size;
            let r = self.resized(img);
            let v = RgbView {
                width: s,
                height: s,
                pixels: r.as_raw(),
            };
            let mut p = selective_search(&v, &fast_strategies(), 0)?;
            p.truncate(2000);
            vec![p]
        } else {
            Vec::new()
        };
        let x = self.trainee.input(px)?;
        Ok(self
            .trainee
            .detections(&x, &props, self.size, &[(w as usize, h as usize)])?
            .remove(0))
    }
}

/// A data set held in memory at the network's input size.
pub(crate) struct Split {
    pub(crate) gt: Dataset,
    /// Per image: RGB bytes at size × size.
    pub(crate) pixels: Vec<Vec<u8>>,
    /// Per image: objects with image-relative centre boxes, class index 0-based.
    pub(crate) objects: Vec<Vec<V1Object>>,
    /// Per image, for Fast R-CNN and R-CNN: selective search's proposals in size × size pixels.
    pub(crate) proposals: Vec<Vec<[f32; 4]>>,
}

impl Split {
    /// Selective search on every image (in parallel), for Fast R-CNN.
    fn propose(&mut self, size: usize) -> Result<()> {
        use aics_detect::selective_search::{fast_strategies, selective_search, RgbView};
        use rayon::prelude::*;
        let st = fast_strategies();
        self.proposals = self
            .pixels
            .par_iter()
            .map(|px| {
                let v = RgbView {
                    width: size,
                    height: size,
                    pixels: px,
                };
                selective_search(&v, &st, 0).map(|mut p| {
                    p.truncate(2000);
                    p
                })
            })
            .collect::<aics_detect::Result<Vec<_>>>()?;
        Ok(())
    }

    /// The proposals of images `idx`, mirrored where `flips` says.
    fn proposals_of(&self, idx: &[usize], flips: &[bool], size: usize) -> Vec<Vec<[f32; 4]>> {
        if self.proposals.is_empty() {
            return Vec::new();
        }
        let s = size as f32;
        idx.iter()
            .zip(flips)
            .map(|(&i, &f)| {
                self.proposals[i]
                    .iter()
                    .map(|b| {
                        if f {
                            [s - b[2], b[1], s - b[0], b[3]]
                        } else {
                            *b
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// The file of an image named `file_name` in `dir`; when it is not there, a file of the same
/// stem as .png, .jpg or .jpeg (VOC files of converted photos often keep the original's name,
/// as DeepForest's name .tif files shipped as .png).
pub(crate) fn image_path(dir: &Path, file_name: &str) -> PathBuf {
    let p = dir.join(file_name);
    if p.exists() {
        return p;
    }
    let stem = Path::new(file_name).with_extension("");
    ["png", "jpg", "jpeg"]
        .iter()
        .map(|e| dir.join(stem.with_extension(e)))
        .find(|q| q.exists())
        .unwrap_or(p)
}

/// The image of annotation entry `im` in folder `images`, checked against the size the
/// annotations give it.
pub(crate) fn read_annotated(
    images: &Path,
    im: &aics_detect::data::Image,
) -> Result<image::RgbImage> {
    let path = image_path(images, &im.file_name);
    let img = image::open(&path)
        .with_context(|| format!("{}: cannot read the image", path.display()))?
        .to_rgb8();
    if img.width() != im.width || img.height() != im.height {
        bail!(
            "{}: {}x{} pixels, the annotations say {}x{}",
            path.display(),
            img.width(),
            img.height(),
            im.width,
            im.height
        );
    }
    Ok(img)
}

pub(crate) fn parse_spec(spec: &str) -> Result<(Dataset, PathBuf)> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "synth" => {
            let dir = PathBuf::from(rest);
            Ok((read_coco(&dir.join("annotations.json"))?, dir.join("images")))
        }
        "coco" | "voc" => {
            let Some((ann, images)) = rest.rsplit_once(':') else {
                bail!("--dataset {spec}: expected {kind}:ANNOTATIONS:IMAGES");
            };
            let d = if kind == "coco" { read_coco(Path::new(ann))? } else { read_voc_dir(Path::new(ann))? };
            Ok((d, PathBuf::from(images)))
        }
        _ => bail!("--dataset {spec}: expected synth:DIR, coco:ANNOTATIONS.json:IMAGES or voc:XML_DIR:IMAGES"),
    }
}

fn load_split(
    gt: Dataset,
    images: &Path,
    keep: &[usize],
    size: usize,
    cat_index: &HashMap<u64, usize>,
) -> Result<Split> {
    let mut pixels = Vec::new();
    let mut objects = Vec::new();
    let ids: Vec<u64> = keep.iter().map(|&i| gt.images[i].id).collect();
    let pb = ProgressBar::new(keep.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("loading {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for &i in keep {
        let im = &gt.images[i];
        let img = read_annotated(images, im)?;
        let r = image::imageops::resize(
            &img,
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        );
        pixels.push(r.into_raw());
        let (w, h) = (im.width as f32, im.height as f32);
        objects.push(
            gt.annotations
                .iter()
                .filter(|a| a.image_id == im.id && !a.iscrowd)
                .map(|a| {
                    let b = a.bbox;
                    V1Object {
                        class: cat_index[&a.category_id],
                        bbox: [
                            (b[0] + b[2] / 2.0) as f32 / w,
                            (b[1] + b[3] / 2.0) as f32 / h,
                            b[2] as f32 / w,
                            b[3] as f32 / h,
                        ],
                    }
                })
                .collect(),
        );
        pb.inc(1);
    }
    pb.finish_and_clear();
    let gt = Dataset {
        images: gt
            .images
            .iter()
            .filter(|im| ids.contains(&im.id))
            .cloned()
            .collect(),
        annotations: gt
            .annotations
            .iter()
            .filter(|a| ids.contains(&a.image_id))
            .cloned()
            .collect(),
        categories: gt.categories.clone(),
    };
    Ok(Split {
        gt,
        pixels,
        objects,
        proposals: Vec::new(),
    })
}

/// `--init`: load the weights of `path`, a checkpoint of a run whose model, head, size and
/// backbone equal `settings`' and whose classes are `names`.
fn init_from(path: &Path, net: &dyn Module, settings: &str, names: &[String]) -> Result<()> {
    let ck = load_checkpoint(path).with_context(|| format!("--init {}", path.display()))?;
    let theirs: serde_json::Value = ck
        .meta("aics.detect_train")
        .and_then(|m| serde_json::from_str(m).ok())
        .with_context(|| {
            format!(
                "--init {}: not a checkpoint of aics detect-train",
                path.display()
            )
        })?;
    let ours: serde_json::Value = serde_json::from_str(settings)?;
    for key in ["model", "head", "size", "backbone"] {
        if theirs.get(key) != ours.get(key) {
            bail!(
                "--init {}: its {key} is {}, this run's is {}",
                path.display(),
                theirs.get(key).unwrap_or(&json!(null)),
                ours.get(key).unwrap_or(&json!(null))
            );
        }
    }
    let their_names: Option<Vec<String>> = ck
        .meta("aics.class_names")
        .and_then(|m| serde_json::from_str(m).ok());
    if their_names.as_deref() != Some(names) {
        bail!(
            "--init {}: its classes {:?} differ from the data set's {:?}",
            path.display(),
            their_names.unwrap_or_default(),
            names
        );
    }
    ck.load_into(net)
        .with_context(|| format!("--init {}", path.display()))?;
    Ok(())
}

/// YOLOv1's output layout: the `[detection]` layer's for the connected head; for the
/// convolutional head, S = `grid`, B = 2, √w and √h, no softmax.
pub(crate) fn yolov1_head(
    net: &Darknet,
    kind: HeadKind,
    classes: usize,
    grid: usize,
) -> Option<DetectionHead> {
    match kind {
        HeadKind::Connected => net.layers.iter().find_map(|l| match l {
            Layer::Detection(h) => Some(h.clone()),
            _ => None,
        }),
        HeadKind::Conv => Some(DetectionHead {
            classes,
            coords: 4,
            side: grid,
            num: 2,
            sqrt: true,
            softmax: false,
        }),
    }
}

/// The YOLOv1 network for `size`² inputs and `classes` classes: darknet's YOLOv1-tiny layout
/// (3×3 conv + BN + leaky with 16, 32, 64, 128, 256 filters, each followed by a 2×2 max pool;
/// then 3×3 convs of 512, 1024 and 256 filters) without its sixth pool, so that the grid S is
/// size/32; then a connected layer to the S²·(C + 5B) output, or a 1×1 conv (`--head conv`).
/// With `grid` = size/16 the fifth pool has stride 1 (and darknet's padding), keeping its input's
/// resolution: the same layers and weights, a grid twice as fine.
pub fn yolov1_cfg(size: usize, grid: usize, classes: usize, head: HeadKind) -> String {
    let s = grid;
    let mut c = format!("[net]\nwidth={size}\nheight={size}\nchannels=3\n");
    for (i, f) in [16, 32, 64, 128, 256].into_iter().enumerate() {
        let stride = if i == 4 && grid * 16 == size { 1 } else { 2 };
        c += &format!("\n[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride={stride}\n");
    }
    for f in [512, 1024, 256] {
        c += &format!("\n[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=1\npad=1\nactivation=leaky\n");
    }
    if head == HeadKind::Conv {
        c += &format!(
            "\n[convolutional]\nfilters={}\nsize=1\nstride=1\nactivation=linear\n",
            classes + 10
        );
        return c;
    }
    c += &format!(
        "\n[connected]\noutput={}\nactivation=linear\n",
        s * s * (classes + 10)
    );
    c += &format!("\n[detection]\nclasses={classes}\ncoords=4\nrescore=1\nside={s}\nnum=2\nsoftmax=0\nsqrt=1\nobject_scale=1\nnoobject_scale=.5\nclass_scale=1\ncoord_scale=5\n");
    c
}

fn batch_tensor(split: &Split, idx: &[usize], size: usize, flips: &[bool]) -> Result<Tensor> {
    let px: Vec<&[u8]> = idx.iter().map(|&i| split.pixels[i].as_slice()).collect();
    pack(&px, size, flips)
}

/// RGB images (size² bytes each) as a (N, 3, size, size) batch in [0, 1], mirrored where
/// `flips` says.
fn pack(images: &[&[u8]], size: usize, flips: &[bool]) -> Result<Tensor> {
    let n = size * size;
    let mut x = vec![0f32; images.len() * 3 * n];
    for (b, (px, &flip)) in images.iter().zip(flips).enumerate() {
        for y in 0..size {
            for xx in 0..size {
                let sx = if flip { size - 1 - xx } else { xx };
                for c in 0..3 {
                    x[b * 3 * n + c * n + y * size + xx] =
                        px[(y * size + sx) * 3 + c] as f32 / 255.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(x, &[images.len(), 3, size, size])?)
}

/// YOLO's augmentation (Redmon et al., 2016): the image scaled by up to 20% either way about its
/// centre and moved by up to 20% of its size on each axis (uncovered pixels grey), its exposure
/// and saturation scaled by up to 1.5 either way in HSV. Boxes follow and are clipped; a box
/// keeping under a quarter of its area, or under 2 px a side, is dropped.
fn jitter_scene(
    px: &[u8],
    size: usize,
    objs: &[V1Object],
    rng: &mut Rng,
) -> (Vec<u8>, Vec<V1Object>) {
    let s = 0.8 + 0.4 * rng.uniform() as f32;
    let (tx, ty) = (
        (rng.uniform() as f32 - 0.5) * 0.4 * size as f32,
        (rng.uniform() as f32 - 0.5) * 0.4 * size as f32,
    );
    // darknet's rand_scale: a factor in [1, 1.5], inverted half of the time
    let mut scale = || {
        let f = 1.0 + 0.5 * rng.uniform() as f32;
        if rng.uniform() < 0.5 {
            1.0 / f
        } else {
            f
        }
    };
    let (sat, exp) = (scale(), scale());
    let c = size as f32 / 2.0;
    let mut out = vec![128u8; size * size * 3];
    for v in 0..size {
        let sy = (v as f32 + 0.5 - c - ty) / s + c - 0.5;
        for u in 0..size {
            let sx = (u as f32 + 0.5 - c - tx) / s + c - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            if x0 < 0.0 || y0 < 0.0 || x0 + 1.0 > (size - 1) as f32 || y0 + 1.0 > (size - 1) as f32
            {
                continue;
            }
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as usize, y0 as usize);
            let mut rgb = [0f32; 3];
            for (k, o) in rgb.iter_mut().enumerate() {
                let at = |x: usize, y: usize| px[(y * size + x) * 3 + k] as f32;
                *o = (at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx) * (1.0 - fy)
                    + (at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
            }
            // exposure and saturation in HSV: V and S scale, the hue stays
            let mx = rgb[0].max(rgb[1]).max(rgb[2]);
            let mn = rgb[0].min(rgb[1]).min(rgb[2]);
            let v_new = (mx * exp).min(255.0);
            let s_old = if mx > 0.0 { (mx - mn) / mx } else { 0.0 };
            let s_new = (s_old * sat).min(1.0);
            for (k, &o) in rgb.iter().enumerate() {
                // each channel keeps its place between the min and the max
                let t = if mx > mn { (mx - o) / (mx - mn) } else { 0.0 };
                let val = v_new * (1.0 - s_new * t);
                out[(v * size + u) * 3 + k] = val.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let objs = objs
        .iter()
        .filter_map(|o| {
            let [cx, cy, w, h] = o.bbox.map(|v| v * size as f32);
            let map = |x: f32, t: f32| (x - c) * s + c + t;
            let (x0, x1) = (map(cx - w / 2.0, tx), map(cx + w / 2.0, tx));
            let (y0, y1) = (map(cy - h / 2.0, ty), map(cy + h / 2.0, ty));
            let z = size as f32;
            let (cx0, cx1, cy0, cy1) = (x0.max(0.0), x1.min(z), y0.max(0.0), y1.min(z));
            let (cw, ch) = (cx1 - cx0, cy1 - cy0);
            if cw < 2.0 || ch < 2.0 || cw * ch < 0.25 * (x1 - x0) * (y1 - y0) {
                return None;
            }
            Some(V1Object {
                class: o.class,
                bbox: [(cx0 + cx1) / 2.0 / z, (cy0 + cy1) / 2.0 / z, cw / z, ch / z],
            })
        })
        .collect();
    (out, objs)
}

/// The network's output in darknet's `[detection]` layout `(N, S²·(C + 5B))`: as it comes for
/// the connected head; for the convolutional head, `(N, C + 5B, S, S)` reordered to
/// `[S²·C classes][S²·B confidences][S²·B·4 boxes]`.
pub fn head_output(net: &Darknet, x: &Tensor, kind: HeadKind, h: &DetectionHead) -> Result<Tensor> {
    let y = net.forward(x)?;
    if kind == HeadKind::Connected {
        return Ok(y);
    }
    let (n, c, b, cells) = (y.shape()[0], h.classes, h.num, h.side * h.side);
    let t = y.permute(&[0, 2, 3, 1])?.reshape(&[n, cells, c + 5 * b])?;
    let cls = t.narrow(2, 0, c)?.reshape(&[n, cells * c])?;
    let conf = t.narrow(2, c, b)?.reshape(&[n, cells * b])?;
    let boxes = t.narrow(2, c + b, 4 * b)?.reshape(&[n, cells * 4 * b])?;
    Ok(Tensor::concat(&[&cls, &conf, &boxes], 1)?)
}

/// One image's detections: (class 0-based, score, xyxy).
type Found = Vec<(usize, f32, [f32; 4])>;

/// A detector being trained.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Trainee {
    Yolov1 {
        net: Darknet,
        kind: HeadKind,
        head: DetectionHead,
        cfg: String,
        /// Detections must score above this; NMS at `nms`.
        score: f32,
        nms: f32,
    },
    Ssd(Ssd),
    Rcnn(FasterRcnn, RcnnTrainSettings),
    Fast(FastRcnn),
    Svm(Rcnn),
}

/// A batch (N, 3, S, S) as a list of images.
fn images_of(x: &Tensor) -> Result<Vec<Tensor>> {
    let s = x.shape().to_vec();
    (0..s[0])
        .map(|i| Ok(x.narrow(0, i, 1)?.reshape(&s[1..])?))
        .collect()
}

/// Objects as xyxy boxes in pixels of a `size`² input, labels 1-based.
pub(crate) fn targets_of(objs: &[Vec<V1Object>], size: usize) -> Vec<Target> {
    let s = size as f32;
    objs.iter()
        .map(|o| Target {
            boxes: o
                .iter()
                .map(|v| {
                    let [cx, cy, w, h] = v.bbox;
                    [
                        (cx - w / 2.0) * s,
                        (cy - h / 2.0) * s,
                        (cx + w / 2.0) * s,
                        (cy + h / 2.0) * s,
                    ]
                })
                .collect(),
            labels: o.iter().map(|v| v.class + 1).collect(),
        })
        .collect()
}

impl Trainee {
    pub(crate) fn module(&self) -> &dyn Module {
        match self {
            Trainee::Yolov1 { net, .. } => net,
            Trainee::Ssd(m) => m,
            Trainee::Rcnn(m, _) => m,
            Trainee::Fast(m) => m,
            Trainee::Svm(m) => m,
        }
    }

    /// The network's input for a batch of [0, 1] pixels.
    fn input(&self, x: Tensor) -> Result<Tensor> {
        Ok(match self {
            Trainee::Yolov1 { .. } | Trainee::Rcnn(..) | Trainee::Fast(_) | Trainee::Svm(_) => x,
            Trainee::Ssd(_) => x.add_scalar(-0.5).mul_scalar(2.0),
        })
    }

    /// The loss to minimize (a batch mean) and a number to watch: YOLOv1's average IoU of the
    /// responsible boxes, SSD's matched default boxes an image, Faster R-CNN's box-head
    /// cross-entropy. Samplers draw from `rng`.
    fn loss(
        &self,
        x: &Tensor,
        objs: &[Vec<V1Object>],
        props: &[Vec<[f32; 4]>],
        size: usize,
        rng: &mut Rng,
    ) -> Result<(Tensor, f64)> {
        let n = objs.len() as f64;
        match self {
            Trainee::Yolov1 {
                net, kind, head, ..
            } => {
                let out = head_output(net, x, *kind, head)?;
                let l = yolov1_loss(&out, head, objs, Yolov1Scales::default())?;
                Ok((l.loss.mul_scalar(1.0 / n), l.avg_iou as f64))
            }
            Trainee::Ssd(m) => {
                let targets = targets_of(objs, size);
                let l = m.loss(x, &targets)?;
                Ok((
                    l.bbox_regression.add(&l.classification)?,
                    l.num_foreground as f64 / n,
                ))
            }
            Trainee::Rcnn(m, ts) => {
                let l = m.losses(&images_of(x)?, &targets_of(objs, size), ts, rng)?;
                let watch = l.classifier.to_vec()[0] as f64;
                Ok((l.total()?, watch))
            }
            Trainee::Fast(m) => {
                let (c, b) = m.losses(&images_of(x)?, props, &targets_of(objs, size), rng)?;
                let watch = c.to_vec()[0] as f64;
                Ok((c.add(&b)?, watch))
            }
            Trainee::Svm(_) => bail!("R-CNN trains its SVMs on cached features, not by steps"),
        }
    }

    /// Detections of image `b` of a batch's output, in pixels of a `w`×`h` image: (class, score,
    /// xyxy).
    fn detections(
        &self,
        x: &Tensor,
        props: &[Vec<[f32; 4]>],
        size: usize,
        dims: &[(usize, usize)],
    ) -> Result<Vec<Found>> {
        match self {
            Trainee::Yolov1 {
                net,
                kind,
                head,
                score,
                nms,
                ..
            } => {
                let t = head_output(net, x, *kind, head)?;
                let mut out = Vec::new();
                for (b, &(w, h)) in dims.iter().enumerate() {
                    let mut c = decode_detection(head, &t.narrow(0, b, 1)?, w, h, *score)?;
                    nms_sort(&mut c, *nms);
                    let mut d = detections(&c, *score);
                    d.truncate(100);
                    out.push(d.into_iter().map(|d| (d.class, d.score, d.bbox)).collect());
                }
                Ok(out)
            }
            Trainee::Ssd(m) => {
                let (logits, deltas, anchors) = m.heads(x)?;
                let sizes = vec![(size, size); dims.len()];
                let dets = m.postprocess(&logits, &deltas, &anchors, &sizes)?;
                Ok(in_image_pixels(dets, size, dims))
            }
            Trainee::Rcnn(m, _) => Ok(in_image_pixels(m.detect(&images_of(x)?)?, size, dims)),
            Trainee::Fast(m) => Ok(in_image_pixels(
                m.detect(&images_of(x)?, props)?,
                size,
                dims,
            )),
            Trainee::Svm(m) => {
                // the batch's [0, 1] pixels back to the bytes they were made from
                let n = size * size;
                let xs = x.to_vec();
                let mut dets = Vec::new();
                for (b, p) in props.iter().enumerate().take(dims.len()) {
                    let px: Vec<u8> = (0..n * 3)
                        .map(|i| (xs[b * 3 * n + (i % 3) * n + i / 3] * 255.0).round() as u8)
                        .collect();
                    let v = aics_detect::selective_search::RgbView {
                        width: size,
                        height: size,
                        pixels: &px,
                    };
                    dets.push(m.detect(&v, p)?);
                }
                Ok(in_image_pixels(dets, size, dims))
            }
        }
    }
}

/// Detections of `size`² inputs as (class 0-based, score, xyxy) in pixels of images of `dims`
/// (w, h).
fn in_image_pixels(
    dets: Vec<aics_detect::Detections>,
    size: usize,
    dims: &[(usize, usize)],
) -> Vec<Found> {
    dets.into_iter()
        .zip(dims)
        .map(|(mut d, &(w, h))| {
            resize_boxes(&mut d.boxes, (size, size), (h, w));
            d.labels
                .iter()
                .zip(&d.scores)
                .zip(&d.boxes)
                .map(|((&l, &s), &b)| (l - 1, s, b))
                .collect()
        })
        .collect()
}

/// Detections of the network on a split, in the split's image pixels, for mAP.
pub(crate) fn evaluate(
    t: &Trainee,
    split: &Split,
    size: usize,
    batch: usize,
) -> Result<Vec<Detection>> {
    evaluate_part(t, split, size, batch, 0, 1)
}

/// [`evaluate`] on images `rank`, `rank + ranks`, … of the split: one rank's share.
fn evaluate_part(
    t: &Trainee,
    split: &Split,
    size: usize,
    batch: usize,
    rank: usize,
    ranks: usize,
) -> Result<Vec<Detection>> {
    let _g = no_grad();
    t.module().set_training(false);
    let mut dets = Vec::new();
    let idx: Vec<usize> = (rank..split.pixels.len()).step_by(ranks).collect();
    for chunk in idx.chunks(batch) {
        let x = t.input(batch_tensor(split, chunk, size, &vec![false; chunk.len()])?)?;
        let dims: Vec<(usize, usize)> = chunk
            .iter()
            .map(|&i| {
                (
                    split.gt.images[i].width as usize,
                    split.gt.images[i].height as usize,
                )
            })
            .collect();
        let props = split.proposals_of(chunk, &vec![false; chunk.len()], size);
        for (&i, found) in chunk.iter().zip(t.detections(&x, &props, size, &dims)?) {
            let im = &split.gt.images[i];
            for (class, score, [x1, y1, x2, y2]) in found {
                let (x1, y1) = (x1.max(0.0), y1.max(0.0));
                let (x2, y2) = (x2.min(im.width as f32), y2.min(im.height as f32));
                if x2 > x1 && y2 > y1 {
                    dets.push(Detection {
                        image_id: im.id,
                        category_id: split.gt.categories[class].id,
                        bbox: [x1 as f64, y1 as f64, (x2 - x1) as f64, (y2 - y1) as f64],
                        score: score as f64,
                    });
                }
            }
        }
    }
    Ok(dets)
}

pub fn run(mut a: DetectTrainArgs) -> Result<()> {
    let model_name = match a.model {
        DetModel::Yolov1 => "yolov1",
        DetModel::Ssd => "ssd",
        DetModel::Ssdlite => "ssdlite",
        DetModel::FasterRcnn => "faster_rcnn",
        DetModel::FastRcnn => "fast_rcnn",
        DetModel::Rcnn => "rcnn",
    };
    let head = match (a.model, a.head) {
        (DetModel::Yolov1, h) => h.unwrap_or(HeadKind::Connected),
        (_, Some(_)) => bail!("--head applies to --model yolov1 only"),
        (_, None) => HeadKind::Connected,
    };
    let checkpoint = a
        .checkpoint
        .take()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{model_name}.safetensors")));
    if a.size < 64 || !a.size.is_multiple_of(32) {
        bail!(
            "--size must be a multiple of 32, at least 64 (got {})",
            a.size
        );
    }
    if a.model == DetModel::Rcnn {
        if a.epochs.is_some() || a.lr.is_some() {
            bail!("--epochs and --lr do not apply to --model rcnn (its SVMs and regressors are solved once, on cached features)");
        }
    } else if a.warp.is_some() {
        bail!("--warp applies to --model rcnn only");
    }
    let grid = a.grid.unwrap_or(a.size / 32);
    if let Some(g) = a.grid {
        if a.model != DetModel::Yolov1 {
            bail!("--grid applies to --model yolov1 only");
        }
        if g * 32 != a.size && g * 16 != a.size {
            bail!(
                "--grid {g} with --size {}: YOLOv1's grid is size/32 ({}) or size/16 ({})",
                a.size,
                a.size / 32,
                a.size / 16
            );
        }
    }
    let backbone = a.backbone.unwrap_or(Backbone::Small);
    if a.backbone.is_some() && a.model != DetModel::FasterRcnn {
        bail!("--backbone applies to --model faster_rcnn only");
    }
    if a.freeze_backbone.is_some() && backbone != Backbone::MobilenetV2 {
        bail!("--freeze-backbone applies to --backbone mobilenet_v2 only");
    }
    if a.backbone_weights.is_some()
        && a.model != DetModel::Rcnn
        && backbone != Backbone::MobilenetV2
    {
        bail!("--backbone-weights applies to --model rcnn and to --backbone mobilenet_v2 only");
    }
    let augment = a.augment.unwrap_or(Augment::Flip);
    if augment != Augment::Flip && matches!(a.model, DetModel::FastRcnn | DetModel::Rcnn) {
        bail!("--augment yolo does not apply to --model {model_name}: its proposals are computed once, on the images as they are");
    }
    if a.dist.distributed && a.model == DetModel::Rcnn {
        bail!("--distributed does not apply to --model rcnn (its SVMs and regressors are solved once, on cached features)");
    }
    if a.init.is_some() && a.model == DetModel::Rcnn {
        bail!(
            "--init does not apply to --model rcnn (its SVMs are solved once, on cached features)"
        );
    }
    let epochs = a.epochs.unwrap_or(30);
    let lr = a.lr.unwrap_or(1e-3);
    if a.batch == 0 || epochs == 0 || lr.is_nan() || lr <= 0.0 {
        bail!("--batch and --epochs must be at least 1 and --lr positive");
    }
    let (mut gt, images) = parse_spec(&a.dataset)?;
    gt.categories.sort_by_key(|c| c.id);
    let cat_index: HashMap<u64, usize> = gt
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let n = gt.images.len();
    let (train_idx, val) = match &a.val {
        Some(spec) => {
            let (mut vg, vimages) = parse_spec(spec)?;
            vg.categories.sort_by_key(|c| c.id);
            let names = |d: &Dataset| {
                d.categories
                    .iter()
                    .map(|c| (c.id, c.name.clone()))
                    .collect::<Vec<_>>()
            };
            if names(&vg) != names(&gt) {
                bail!("--val {spec}: its classes differ from the training set's");
            }
            let all: Vec<usize> = (0..vg.images.len()).collect();
            (
                (0..n).collect::<Vec<_>>(),
                load_split(vg, &vimages, &all, a.size, &cat_index)?,
            )
        }
        None => {
            if n < 10 {
                bail!("{}: {n} images; holding out 10% for validation needs at least 10 (or give --val)", a.dataset);
            }
            let nv = n / 10;
            let v: Vec<usize> = (n - nv..n).collect();
            (
                (0..n - nv).collect(),
                load_split(gt.clone(), &images, &v, a.size, &cat_index)?,
            )
        }
    };
    let mut train = load_split(gt.clone(), &images, &train_idx, a.size, &cat_index)?;
    let mut val = val;
    // selective search for the detectors trained on precomputed proposals (every rank of a
    // group runs its own; rank 0 says so): seconds an image, and proposals a held-out image
    let propose = |train: &mut Split, val: &mut Split, say: bool| -> Result<(f64, f64)> {
        if !matches!(a.model, DetModel::FastRcnn | DetModel::Rcnn) {
            return Ok((0.0, 0.0));
        }
        if say {
            println!(
                "selective search on {} images…",
                train.pixels.len() + val.pixels.len()
            );
        }
        let t = Instant::now();
        train.propose(a.size)?;
        val.propose(a.size)?;
        let n = (train.pixels.len() + val.pixels.len()).max(1) as f64;
        Ok((
            t.elapsed().as_secs_f64() / n,
            val.proposals.iter().map(|p| p.len()).sum::<usize>() as f64
                / val.pixels.len().max(1) as f64,
        ))
    };
    let classes = gt.categories.len();
    let trainee = match a.model {
        DetModel::Yolov1 => {
            let cfg = yolov1_cfg(a.size, grid, classes, head);
            let net = Darknet::from_cfg(&cfg).map_err(|e| anyhow::anyhow!("yolov1 cfg: {e}"))?;
            net.randomize(&mut Rng::new(a.seed));
            let dhead = yolov1_head(&net, head, classes, grid).context("no [detection] layer")?;
            Trainee::Yolov1 {
                net,
                kind: head,
                head: dhead,
                cfg,
                score: 0.01,
                nms: 0.45,
            }
        }
        DetModel::Ssd => Trainee::Ssd(Ssd::small(classes + 1, a.size, a.seed)?),
        DetModel::Ssdlite => {
            if a.size != 320 {
                bail!(
                    "--model ssdlite takes --size 320 (SSDlite320's input), got {}",
                    a.size
                );
            }
            Trainee::Ssd(Ssd::ssdlite320_mobilenet_v3_large(classes + 1, a.seed)?)
        }
        DetModel::FasterRcnn => {
            let mut m = match backbone {
                Backbone::Small => FasterRcnn::small(classes + 1, a.size, a.seed)?,
                Backbone::MobilenetV2 => {
                    let m = FasterRcnn::mobilenet_v2(classes + 1, a.size, a.seed)?;
                    let p = crate::detect_rcnn::imagenet_weights(a.backbone_weights.as_deref())?;
                    if let Some(p) = p {
                        let w = aics_vision::weights::read_weights(&p)?;
                        m.load_mobilenet_v2(&w)
                            .with_context(|| format!("{}: MobileNetV2 weights", p.display()))?;
                    }
                    m.freeze_body(a.freeze_backbone.unwrap_or(0))?;
                    m
                }
            };
            // evaluation keeps low scores, as mAP wants them
            m.roi_heads.settings.score_thresh = 0.01;
            let ts = RcnnTrainSettings {
                box_batch: 128,
                ..Default::default()
            };
            Trainee::Rcnn(m, ts)
        }
        DetModel::FastRcnn => {
            let mut m = FastRcnn::small(classes + 1, a.size, a.seed)?;
            m.roi_heads.settings.score_thresh = 0.01;
            Trainee::Fast(m)
        }
        DetModel::Rcnn => {
            let warp = a.warp.unwrap_or(crate::detect_rcnn::DEFAULT_WARP);
            let mut m =
                crate::detect_rcnn::build(classes + 1, warp, Some(a.backbone_weights.as_deref()))?;
            m.settings.batch = a.batch;
            Trainee::Svm(m)
        }
    };
    let log_path = a
        .log
        .clone()
        .unwrap_or_else(|| checkpoint.with_extension("jsonl"));
    let names: Vec<String> = gt.categories.iter().map(|c| c.name.clone()).collect();
    if let Trainee::Svm(m) = trainee {
        let proposal_stats = propose(&mut train, &mut val, true)?;
        let settings = json!({"model": model_name, "dataset": a.dataset, "val": a.val, "size": a.size, "warp": m.warp,
                              "batch": a.batch, "seed": a.seed}).to_string();
        let out = crate::detect_rcnn::Outputs {
            checkpoint: &checkpoint,
            log: &log_path,
            settings,
            names: &names,
        };
        return crate::detect_rcnn::train(m, &train, &val, a.size, a.resume, proposal_stats, out);
    }
    let net = trainee.module();
    // --distributed: --batch images a rank, each rank every ranks-th image of the batch of all
    // ranks; rank 0 alone prints and writes
    let mut group = crate::dist::Group::start(&a.dist, net)?;
    let (rank, ranks, main) = (group.rank(), group.size(), group.is_main());
    let (proposal_s, proposals_per_image) = propose(&mut train, &mut val, main)?;
    let settings = json!({"model": model_name, "head": format!("{head:?}").to_lowercase(), "dataset": a.dataset, "val": a.val, "size": a.size, "epochs": epochs,
                          "batch": a.batch, "lr": lr, "seed": a.seed});
    let mut settings = settings;
    // runs with the defaults keep the settings they were written with
    if augment != Augment::Flip {
        settings["augment"] = json!(format!("{augment:?}").to_lowercase());
    }
    if grid != a.size / 32 {
        settings["grid"] = json!(grid);
    }
    if backbone != Backbone::Small {
        settings["backbone"] = json!("mobilenet_v2");
        settings["freeze_backbone"] = json!(a.freeze_backbone.unwrap_or(0));
    }
    if let Some(init) = &a.init {
        settings["init"] = json!(init.display().to_string());
    }
    if ranks > 1 {
        settings["ranks"] = json!(ranks);
    }
    let settings = settings.to_string();
    if let (Some(init), false) = (&a.init, a.resume) {
        init_from(init, net, &settings, &names)?;
    }
    let mut opt = Adam::new(parameters(net)).lr(lr);
    let mut start = 0;
    let mut log_lines: Vec<String> = Vec::new();
    if a.resume {
        let ck = load_checkpoint(&checkpoint)
            .with_context(|| "--resume needs the checkpoint of an earlier run")?;
        if ck.meta("aics.detect_train") != Some(settings.as_str()) {
            bail!("{}: --resume continues the checkpoint's run, but the settings differ (checkpoint: {}); give the same settings, or start a new run", checkpoint.display(), ck.meta("aics.detect_train").unwrap_or("none"));
        }
        ck.load_into(net)?;
        opt.load_state(&ck.optimizer_state())?;
        start = ck
            .meta("aics.epoch")
            .and_then(|e| e.parse::<usize>().ok())
            .context("checkpoint without its epoch")?;
        if let Ok(text) = std::fs::read_to_string(&log_path) {
            log_lines = text.lines().take(start).map(|s| s.to_string()).collect();
        }
        // each rank read the checkpoint; the broadcast makes sure they read the same one
        group.sync_state(net)?;
    }
    if let Some(dir) = checkpoint.parent().filter(|_| main) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let nt = train.pixels.len();
    // DistributedSampler's padding: the epoch's order repeats its start up to a multiple of the
    // ranks, so that every rank has a part of every batch
    let padded = nt.div_ceil(ranks) * ranks;
    let steps = padded.div_ceil(a.batch * ranks);
    let what = match a.model {
        DetModel::Yolov1 => format!("yolov1 {0}×{0} (S={grid}, B=2, {classes} classes)", a.size),
        DetModel::Ssd => format!("ssd {0}×{0} ({classes} classes)", a.size),
        DetModel::Ssdlite => format!("ssdlite320_mobilenet_v3_large ({classes} classes)"),
        DetModel::FasterRcnn => format!("faster_rcnn {0}×{0} ({classes} classes)", a.size),
        DetModel::FastRcnn => format!("fast_rcnn {0}×{0} ({classes} classes)", a.size),
        DetModel::Rcnn => format!("rcnn {0}×{0} ({classes} classes)", a.size),
    };
    if main {
        println!(
            "{what}: {nt} training images, {} validation images{}",
            val.pixels.len(),
            if ranks > 1 {
                format!(
                    "; batch {} a rank, {} in all over {ranks} ranks",
                    a.batch,
                    a.batch * ranks
                )
            } else {
                String::new()
            }
        );
    }
    // --sync-batchnorm: batch norm over the batches of all ranks
    let _sync = group.sync_batch_norm();
    for epoch in start..epochs {
        let lr_now = if epoch >= epochs * 2 / 3 {
            lr / 10.0
        } else {
            lr
        };
        opt.set_lr(lr_now);
        let mut rng = Rng::derive(a.seed, epoch as u64 + 1);
        let mut order: Vec<usize> = (0..nt).collect();
        rng.shuffle(&mut order);
        order.extend_from_within(..padded - nt);
        // the order and the flips are drawn alike on every rank from `rng`; the draws of this
        // rank's images alone (jitter, the detectors' samplers) from a stream of its own
        let mut own_rng = (ranks > 1).then(|| {
            Rng::derive(
                a.seed ^ 0x6a09_e667_f3bc_c908,
                (epoch * ranks + rank) as u64,
            )
        });
        let pb = if main {
            ProgressBar::new(steps as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "epoch {}/{} {{bar:30}} {{pos}}/{{len}} {{msg}} ({{elapsed}}<{{eta}})",
                epoch + 1,
                epochs
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let t0 = Instant::now();
        let (mut loss_sum, mut iou_sum, mut seen) = (0f64, 0f64, 0usize);
        net.set_training(true);
        for whole in order.chunks(a.batch * ranks) {
            let all_flips: Vec<bool> = whole.iter().map(|_| rng.uniform() < 0.5).collect();
            let chunk: Vec<usize> = whole.iter().skip(rank).step_by(ranks).copied().collect();
            let flips: Vec<bool> = all_flips
                .iter()
                .skip(rank)
                .step_by(ranks)
                .copied()
                .collect();
            let chunk = chunk.as_slice();
            let rng = match own_rng.as_mut() {
                Some(r) => r,
                None => &mut rng,
            };
            let jittered: Vec<(Vec<u8>, Vec<V1Object>)> = if augment == Augment::Yolo {
                chunk
                    .iter()
                    .map(|&i| jitter_scene(&train.pixels[i], a.size, &train.objects[i], rng))
                    .collect()
            } else {
                Vec::new()
            };
            let x = if jittered.is_empty() {
                batch_tensor(&train, chunk, a.size, &flips)?
            } else {
                let px: Vec<&[u8]> = jittered.iter().map(|(p, _)| p.as_slice()).collect();
                pack(&px, a.size, &flips)?
            };
            let objs: Vec<Vec<V1Object>> = chunk
                .iter()
                .zip(&flips)
                .enumerate()
                .map(|(b, (&i, &f))| {
                    jittered
                        .get(b)
                        .map_or(&train.objects[i], |(_, o)| o)
                        .iter()
                        .map(|o| V1Object {
                            class: o.class,
                            bbox: if f {
                                [1.0 - o.bbox[0], o.bbox[1], o.bbox[2], o.bbox[3]]
                            } else {
                                o.bbox
                            },
                        })
                        .collect()
                })
                .collect();
            opt.zero_grad();
            let x = trainee.input(x)?;
            let props = train.proposals_of(chunk, &flips, a.size);
            let (loss, watch) = trainee.loss(&x, &objs, &props, a.size, rng)?;
            let v = loss.to_vec()[0] as f64;
            if !v.is_finite() {
                bail!(
                    "epoch {}: the loss is not finite ({v}); try a smaller --lr",
                    epoch + 1
                );
            }
            group.backward(&loss)?;
            opt.step()?;
            loss_sum += v * chunk.len() as f64;
            iou_sum += watch * chunk.len() as f64;
            seen += chunk.len();
            pb.set_message(format!("loss {:.3}", loss_sum / seen as f64));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_s = t0.elapsed().as_secs_f64();
        let mut sums = [loss_sum, iou_sum, seen as f64];
        group.sum(&mut sums)?;
        let [loss_sum, iou_sum, seen] = sums;
        let seen = seen.max(1.0);
        let t1 = Instant::now();
        // the ranks evaluate rank 0's model, each a share of the images
        group.sync_state(net)?;
        let dets = evaluate_part(&trainee, &val, a.size, a.batch, rank, ranks)?;
        let dets = gather_detections(&mut group, &val, dets)?;
        if !main {
            continue;
        }
        // the network and post-processing on the held-out images (Fast R-CNN's proposals were
        // computed before training: `proposal_seconds_per_image`)
        let eval_s = t1.elapsed().as_secs_f64() / val.pixels.len().max(1) as f64;
        let voc = voc_eval(&val.gt, &dets, 0.5, VocAp::AllPoint).map;
        let coco = coco_eval(&val.gt, &dets).stats();
        let watch_key = match a.model {
            DetModel::Yolov1 => "avg_iou",
            DetModel::Ssd | DetModel::Ssdlite => "matched_boxes",
            DetModel::FasterRcnn | DetModel::FastRcnn | DetModel::Rcnn => "loss_classifier",
        };
        let line = json!({"epoch": epoch + 1, "loss": loss_sum / seen, watch_key: iou_sum / seen, "lr": lr_now,
                          "val_map50_voc": voc, "val_detections": dets.len(), "val_coco_ap": coco.ap, "val_coco_ap50": coco.ap50, "train_seconds": train_s,
                          "seconds_per_image": train_s / nt as f64, "eval_seconds_per_image": eval_s,
                          "proposal_seconds_per_image": proposal_s, "proposals_per_image": proposals_per_image}).to_string();
        println!(
            "epoch {}: loss {:.4}, val mAP@0.5 {:.4} (VOC), COCO AP {:.4}, AP50 {:.4}, {:.1} s",
            epoch + 1,
            loss_sum / seen,
            voc,
            coco.ap,
            coco.ap50,
            train_s
        );
        log_lines.push(line);
        let mut md = HashMap::new();
        md.insert("aics.detect_train".to_string(), settings.clone());
        md.insert("aics.epoch".to_string(), (epoch + 1).to_string());
        if let Trainee::Yolov1 { cfg, .. } = &trainee {
            md.insert("aics.darknet_cfg".to_string(), cfg.clone());
        }
        md.insert(
            "aics.class_names".to_string(),
            serde_json::to_string(
                &gt.categories
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
            )?,
        );
        save_checkpoint(&checkpoint, net, Some(&opt), md)?;
        write_atomic(&log_path, (log_lines.join("\n") + "\n").as_bytes())?;
    }
    std::io::stdout().flush().ok();
    if main {
        println!(
            "checkpoint: {}\nlog: {}",
            checkpoint.display(),
            log_path.display()
        );
    }
    group.finish()
}

/// Every rank's detections, on every rank ([`crate::dist::Group::gather`]; seven numbers a
/// detection, which f32 carries exactly: the image's and class's indices, the score, and the
/// box as evaluated).
fn gather_detections(
    group: &mut crate::dist::Group,
    split: &Split,
    mine: Vec<Detection>,
) -> Result<Vec<Detection>> {
    if group.size() == 1 {
        return Ok(mine);
    }
    let image_of: HashMap<u64, usize> = split
        .gt
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    let class_of: HashMap<u64, usize> = split
        .gt
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let mut packed = Vec::with_capacity(mine.len() * 7);
    for d in &mine {
        let (Some(&i), Some(&c)) = (image_of.get(&d.image_id), class_of.get(&d.category_id)) else {
            bail!(
                "a detection of image {} not in the validation set",
                d.image_id
            );
        };
        packed.extend([
            i as f32,
            c as f32,
            d.score as f32,
            d.bbox[0] as f32,
            d.bbox[1] as f32,
            d.bbox[2] as f32,
            d.bbox[3] as f32,
        ]);
    }
    Ok(group
        .gather(&packed)?
        .chunks_exact(7)
        .map(|v| Detection {
            image_id: split.gt.images[v[0] as usize].id,
            category_id: split.gt.categories[v[1] as usize].id,
            score: v[2] as f64,
            bbox: [v[3] as f64, v[4] as f64, v[5] as f64, v[6] as f64],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jittered box is where the jittered pixels of its object are, and saturation and
    /// exposure keep each pixel's hue.
    #[test]
    fn jitter_moves_boxes_with_their_pixels() {
        let size = 96;
        let mut px = vec![128u8; size * size * 3];
        let (x0, y0, x1, y1) = (30usize, 40usize, 60usize, 64usize);
        for y in y0..y1 {
            for x in x0..x1 {
                px[(y * size + x) * 3..(y * size + x) * 3 + 3].copy_from_slice(&[250, 40, 40]);
            }
        }
        let z = size as f32;
        let obj = V1Object {
            class: 2,
            bbox: [
                (x0 + x1) as f32 / 2.0 / z,
                (y0 + y1) as f32 / 2.0 / z,
                (x1 - x0) as f32 / z,
                (y1 - y0) as f32 / z,
            ],
        };
        let mut rng = Rng::new(7);
        let mut kept = 0;
        for _ in 0..20 {
            let (out, objs) = jitter_scene(&px, size, &[obj], &mut rng);
            // the red object's pixels: red well above the other channels
            let (mut bx0, mut by0, mut bx1, mut by1) = (size, size, 0, 0);
            for y in 0..size {
                for x in 0..size {
                    let p = &out[(y * size + x) * 3..(y * size + x) * 3 + 3];
                    if p[0] as i32 - p[1] as i32 > 60 {
                        (bx0, by0, bx1, by1) =
                            (bx0.min(x), by0.min(y), bx1.max(x + 1), by1.max(y + 1));
                    } else {
                        // grey, or grey blended with the object at its edge: green = blue
                        assert_eq!(p[1], p[2], "hue changed at {x},{y}: {p:?}");
                    }
                }
            }
            if let Some(o) = objs.first() {
                kept += 1;
                assert_eq!(o.class, 2);
                let [cx, cy, w, h] = o.bbox.map(|v| v * z);
                let want = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
                let got = [bx0, by0, bx1, by1].map(|v| v as f32);
                for k in 0..4 {
                    assert!(
                        (want[k] - got[k]).abs() <= 2.0,
                        "box {want:?}, pixels {got:?}"
                    );
                }
            }
        }
        assert!(kept >= 15, "{kept} of 20 kept");
    }
}
