//! torchvision's detectors for `aics detect` and `aics bench`: Faster R-CNN and SSD by
//! torchvision's names, with a torchvision state dict from a path or the published COCO
//! weights from the cache (`aics weights fetch NAME`).

use std::path::Path;

use aics_detect::faster_rcnn::{Detections, FasterRcnn};
use aics_detect::ssd::Ssd;
use aics_nn::Module;
use aics_tensor::Tensor;
use anyhow::{bail, Context, Result};

#[allow(clippy::large_enum_variant)]
pub enum TvDetector {
    Rcnn(FasterRcnn),
    Ssd(Ssd),
}

/// The tensor whose first dimension gives a checkpoint's class count, and the boxes a
/// location that dimension counts classes for.
fn class_key(name: &str) -> (&'static str, usize) {
    match name {
        "ssd300_vgg16" => ("head.classification_head.module_list.0.bias", 4),
        "ssdlite320_mobilenet_v3_large" => ("head.classification_head.module_list.0.1.bias", 6),
        _ => ("roi_heads.box_predictor.cls_score.bias", 1),
    }
}

impl TvDetector {
    /// A model with `num_classes` (the background included) and weights from `seed`.
    pub fn build(name: &str, num_classes: usize, seed: u64) -> Result<Self> {
        Ok(if name.starts_with("ssd") {
            TvDetector::Ssd(Ssd::by_name(name, num_classes, seed)?)
        } else {
            TvDetector::Rcnn(FasterRcnn::by_name(name, num_classes, seed)?)
        })
    }

    /// A model with the weights of a torchvision state dict (`.pth` or `.safetensors`); the
    /// class count comes from the file.
    pub fn load(name: &str, path: &Path) -> Result<Self> {
        let tensors = aics_vision::weights::read_weights(path)
            .with_context(|| format!("{}: cannot read the weights", path.display()))?;
        let (key, per) = class_key(name);
        let Some((shape, _)) = tensors.get(key) else {
            bail!(
                "{}: not a {name} state dict (it has no tensor `{key}`)",
                path.display()
            );
        };
        let classes = shape.first().copied().unwrap_or(0) / per;
        let m = Self::build(name, classes.max(2), 0)
            .with_context(|| format!("{}: {classes} classes", path.display()))?;
        let loaded = match &m {
            TvDetector::Rcnn(r) => r.load_state_dict(&tensors).map_err(anyhow::Error::from),
            TvDetector::Ssd(s) => {
                aics_nn::load_state_dict(s, &tensors, true).map_err(anyhow::Error::from)
            }
        };
        loaded.with_context(|| format!("{}: does not fit {name}", path.display()))?;
        m.module().set_training(false);
        Ok(m)
    }

    pub fn module(&self) -> &dyn Module {
        match self {
            TvDetector::Rcnn(m) => m,
            TvDetector::Ssd(m) => m,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            TvDetector::Rcnn(m) => m.num_classes,
            TvDetector::Ssd(m) => m.num_classes,
        }
    }

    /// Keep detections scoring above `score`; NMS at `nms` (None: the model's own).
    pub fn set_thresholds(&mut self, score: f64, nms: Option<f64>) {
        match self {
            TvDetector::Rcnn(m) => {
                m.roi_heads.settings.score_thresh = score;
                if let Some(n) = nms {
                    m.roi_heads.settings.nms_thresh = n;
                }
            }
            TvDetector::Ssd(m) => {
                m.settings.score_thresh = score;
                if let Some(n) = nms {
                    m.settings.nms_thresh = n;
                }
            }
        }
    }

    /// Detections for an (3, H, W) image in [0, 1], in its pixels.
    pub fn detect(&self, img: &Tensor) -> Result<Detections> {
        let mut d = match self {
            TvDetector::Rcnn(m) => m.detect(std::slice::from_ref(img))?,
            TvDetector::Ssd(m) => m.detect(std::slice::from_ref(img))?,
        };
        Ok(d.remove(0))
    }
}

/// A photo as torchvision's `to_tensor` makes it: (3, H, W), values / 255.
pub fn to_tensor(img: &image::RgbImage) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut v = vec![0f32; 3 * n];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for k in 0..3 {
            v[k * n + i] = px[k] as f32 / 255.0;
        }
    }
    Ok(Tensor::from_vec(v, &[3, h as usize, w as usize])?)
}

/// Class names for a model's labels: COCO's 91 for a COCO model, else `class N`.
pub fn label_names(classes: usize) -> Vec<String> {
    if classes == aics_detect::faster_rcnn::COCO_CATEGORIES.len() {
        aics_detect::faster_rcnn::COCO_CATEGORIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..classes).map(|i| format!("class {i}")).collect()
    }
}
