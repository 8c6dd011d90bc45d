//! `aics detect-train --model rcnn`: R-CNN's training, which has no epochs. Every training
//! image's ground-truth boxes and selective-search proposals go through MobileNetV2 (ImageNet
//! weights) once; the SVMs (hard-negative mining) and box regressors are solved on those cached
//! features; the held-out images are scored; one checkpoint and one log line are written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aics_detect::rcnn::{Rcnn, RcnnFitSettings, RcnnImage};
use aics_detect::selective_search::RgbView;
use aics_detect::{coco_eval, voc_eval, VocAp};
use aics_nn::checkpoint::{load_checkpoint, save_checkpoint, write_atomic};
use aics_nn::Module;
use aics_vision::models::mobilenet::mobilenet_v2;
use aics_vision::ModelConfig;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::detect_train::{evaluate, targets_of, Split, Trainee};

/// The warped regions' side by default (16 px of context leave 64 px for the box).
pub const DEFAULT_WARP: usize = 96;
/// Where `scripts/fetch-assets.sh` puts torchvision's MobileNetV2 ImageNet weights.
const MOBILENET_WEIGHTS: &str = ".cache/weights/mobilenet_v2-b0353104.pth";

/// An R-CNN of `classes` (with the background) on MobileNetV2's features at `warp` px. With
/// `backbone` Some, the ImageNet weights are loaded (from the path, or the fetched file when
/// None; the path `none` keeps the random initialisation, to see what the pretrained features
/// are worth); with None the backbone is left for a checkpoint to fill.
pub fn build(classes: usize, warp: usize, backbone: Option<Option<&Path>>) -> Result<Rcnn> {
    if !(48..=448).contains(&warp) {
        bail!("--warp {warp}: expected 48 to 448 px");
    }
    let net = mobilenet_v2(&ModelConfig {
        in_shape: [3, warp, warp],
        num_classes: 1000,
        hidden: vec![],
        seed: 0,
    })?;
    if let Some(path) = backbone {
        if let Some(p) = imagenet_weights(path)? {
            aics_vision::weights::load_weights(&net, &p)
                .with_context(|| format!("{}: MobileNetV2 weights", p.display()))?;
        }
    }
    net.set_training(false);
    Ok(Rcnn::mobilenet_v2(net, classes, warp, 16, 0)?)
}

/// The MobileNetV2 ImageNet weights to start from: `path`, or the fetched file when None; None
/// for the path `none` (random weights). A missing file is an error that says how to get it.
pub fn imagenet_weights(path: Option<&Path>) -> Result<Option<PathBuf>> {
    if path == Some(Path::new("none")) {
        return Ok(None);
    }
    let p = path
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(MOBILENET_WEIGHTS));
    if !p.exists() {
        bail!(
            "{}: not found; MobileNetV2's ImageNet weights are needed: run `bash scripts/setup.sh`, or pass --backbone-weights PATH",
            p.display()
        );
    }
    Ok(Some(p))
}

/// Where [`train`] writes, and what the checkpoint records.
pub struct Outputs<'a> {
    pub checkpoint: &'a Path,
    pub log: &'a Path,
    /// The run's settings (JSON), kept in the checkpoint.
    pub settings: String,
    pub names: &'a [String],
}

/// Train `m` on `train` (proposals computed), score `val`, write the checkpoint and the log.
/// `timing` is (selective search's seconds an image, proposals an image).
pub fn train(
    mut m: Rcnn,
    train: &Split,
    val: &Split,
    size: usize,
    resume: bool,
    timing: (f64, f64),
    out: Outputs,
) -> Result<()> {
    if resume {
        let ck = load_checkpoint(out.checkpoint)
            .with_context(|| "--resume needs the checkpoint of an earlier run")?;
        if ck.meta("aics.detect_train") != Some(out.settings.as_str()) {
            bail!("{}: --resume continues the checkpoint's run, but the settings differ (checkpoint: {}); give the same settings, or start a new run", out.checkpoint.display(), ck.meta("aics.detect_train").unwrap_or("none"));
        }
        println!(
            "{}: R-CNN was trained to the end already (it has no epochs to resume)",
            out.checkpoint.display()
        );
        return Ok(());
    }
    let nt = train.pixels.len();
    println!(
        "rcnn {size}×{size}, regions warped to {w}×{w}: {nt} training images, {} validation images",
        val.pixels.len(),
        w = m.warp
    );
    let t0 = Instant::now();
    let targets = targets_of(&train.objects, size);
    let pb = ProgressBar::new(nt as u64);
    pb.set_style(
        ProgressStyle::with_template("features {bar:30} {pos}/{len} ({elapsed}<{eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut images = Vec::with_capacity(nt);
    for (i, t) in targets.into_iter().enumerate() {
        let v = RgbView {
            width: size,
            height: size,
            pixels: &train.pixels[i],
        };
        let props = train.proposals[i].clone();
        images.push(RcnnImage {
            gt_features: m.features(&v, &t.boxes, false)?,
            proposal_features: m.features(&v, &props, false)?,
            gt_boxes: t.boxes,
            gt_labels: t.labels,
            proposals: props,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let feature_s = t0.elapsed().as_secs_f64();
    println!("features of {nt} images: {feature_s:.1} s; training the SVMs and regressors…");
    let t1 = Instant::now();
    let report = m.fit(&images, &RcnnFitSettings::default())?;
    let fit_s = t1.elapsed().as_secs_f64();
    drop(images);
    for (c, r) in report.iter().enumerate() {
        println!(
            "  {}: {} positives, {} negatives, hard negatives per round {:?}, cache {}, {} regression pairs",
            out.names.get(c).map(String::as_str).unwrap_or("?"),
            r.positives,
            r.negatives,
            r.hard_per_round,
            r.cache,
            r.regression_pairs
        );
    }
    let trainee = Trainee::Svm(m);
    let t2 = Instant::now();
    let dets = evaluate(&trainee, val, size, 8)?;
    let eval_s = t2.elapsed().as_secs_f64() / val.pixels.len().max(1) as f64;
    let voc = voc_eval(&val.gt, &dets, 0.5, VocAp::AllPoint).map;
    let coco = coco_eval(&val.gt, &dets).stats();
    let train_s = feature_s + fit_s;
    println!(
        "val mAP@0.5 {voc:.4} (VOC), COCO AP {:.4}, AP50 {:.4}; training {train_s:.1} s ({fit_s:.1} s solving)",
        coco.ap, coco.ap50
    );
    let (proposal_s, proposals_per_image) = timing;
    let line = json!({"epoch": 1, "val_map50_voc": voc, "val_coco_ap": coco.ap, "val_coco_ap50": coco.ap50,
                      "train_seconds": train_s, "feature_seconds": feature_s, "fit_seconds": fit_s,
                      "seconds_per_image": train_s / nt.max(1) as f64, "eval_seconds_per_image": eval_s,
                      "proposal_seconds_per_image": proposal_s, "proposals_per_image": proposals_per_image,
                      "classes": report.iter().map(|r| json!({"positives": r.positives, "negatives": r.negatives,
                          "hard_per_round": r.hard_per_round, "cache": r.cache, "regression_pairs": r.regression_pairs})).collect::<Vec<_>>()})
    .to_string();
    if let Some(dir) = out.checkpoint.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut md = HashMap::new();
    md.insert("aics.detect_train".to_string(), out.settings.clone());
    md.insert("aics.epoch".to_string(), "1".to_string());
    md.insert(
        "aics.class_names".to_string(),
        serde_json::to_string(out.names)?,
    );
    save_checkpoint(out.checkpoint, trainee.module(), None, md)?;
    write_atomic(out.log, (line + "\n").as_bytes())?;
    println!(
        "checkpoint: {}\nlog: {}",
        out.checkpoint.display(),
        out.log.display()
    );
    Ok(())
}
