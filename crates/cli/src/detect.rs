//! `aics detect`: find objects in photos with a pretrained detector and draw them.

use std::path::{Path, PathBuf};

use aics_detect::darknet::read_names;
use aics_detect::yolo::{Planar, Yolo, YoloSettings};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::plot::{write_boxes, LabelledBox};

const DEFAULT_WEIGHTS: &str = ".cache/weights/yolov3-tiny.weights";
const DEFAULT_CFG: &str = ".cache/weights/yolov3-tiny.cfg";
const DEFAULT_NAMES: &str = ".cache/weights/coco.names";
const DEFAULT_IMAGE: &str = ".cache/darknet/data/dog.jpg";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectModel {
    /// YOLOv3-tiny (darknet cfg + weights; default: the official COCO model, 80 classes).
    #[value(name = "yolov3-tiny")]
    Yolov3Tiny,
    /// Any darknet YOLO model given by --cfg, --weights and --names (v1, v2 or v3 heads).
    Darknet,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Photos to run on (default: darknet's dog photo, fetched by set-up).
    images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "yolov3-tiny")]
    model: DetectModel,
    /// Darknet .weights file (default for yolov3-tiny: the file set-up fetches).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Darknet .cfg file (default for yolov3-tiny: the file set-up fetches).
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// Class names, one a line (default for yolov3-tiny: COCO's 80, darknet's coco.names).
    #[arg(long)]
    names: Option<PathBuf>,
    /// Keep detections scoring above this (darknet's -thresh).
    #[arg(long, default_value_t = 0.25)]
    score: f32,
    /// IoU above which NMS suppresses a box of the same class.
    #[arg(long, default_value_t = 0.45)]
    nms: f32,
    /// Print one JSON object a photo instead of text.
    #[arg(long)]
    json: bool,
    /// Folder for the pictures with boxes drawn (`detections.png` for one photo,
    /// `<name>.detections.png` for several).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Also write every detection as a COCO results file, for `aics map`: `image_id` is the
    /// photo's file stem (a number when the stem is one), `category_id` the class's 1-based
    /// line in the names file.
    #[arg(long)]
    coco_results: Option<PathBuf>,
}

fn or_default(p: &Option<PathBuf>, d: &str, what: &str, model: DetectModel) -> Result<PathBuf> {
    match p {
        Some(p) => Ok(p.clone()),
        None if model == DetectModel::Yolov3Tiny => {
            let p = PathBuf::from(d);
            if !p.exists() {
                bail!("{}: not found; run `bash scripts/setup.sh` to fetch the YOLOv3-tiny {what}, or give --{what} PATH", p.display());
            }
            Ok(p)
        }
        None => bail!("--model darknet needs --{what}"),
    }
}

pub fn run(a: DetectArgs) -> Result<()> {
    if !(a.score > 0.0 && a.score < 1.0) {
        bail!("--score must be in (0, 1), got {}", a.score);
    }
    if !(a.nms > 0.0 && a.nms <= 1.0) {
        bail!("--nms must be in (0, 1], got {}", a.nms);
    }
    let cfg = or_default(&a.cfg, DEFAULT_CFG, "cfg", a.model)?;
    let weights = or_default(&a.weights, DEFAULT_WEIGHTS, "weights", a.model)?;
    let names_path = or_default(&a.names, DEFAULT_NAMES, "names", a.model)?;
    let names = read_names(&names_path)?;
    let images: Vec<PathBuf> = if a.images.is_empty() {
        let p = PathBuf::from(DEFAULT_IMAGE);
        if !p.exists() {
            bail!("{}: not found; run `bash scripts/setup.sh` to fetch the demo photos, or name photos to run on", p.display());
        }
        vec![p]
    } else {
        a.images.clone()
    };
    let yolo = Yolo::load(&cfg, &weights)?;
    let classes = yolo.classes();
    if names.len() != classes {
        bail!(
            "{}: {} class names, but {} has {classes} classes",
            names_path.display(),
            names.len(),
            cfg.display()
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let settings = YoloSettings {
        thresh: a.score,
        nms: a.nms,
    };
    let mut results = Vec::new();
    for path in &images {
        let img = image::ImageReader::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("{}: cannot read", path.display()))?
            .decode()
            .with_context(|| format!("{}: cannot decode the image", path.display()))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        let planar = Planar::from_rgb8(w as usize, h as usize, img.as_raw())?;
        let dets = yolo.detect(&planar, settings)?;
        let out_png = if images.len() == 1 {
            a.out.join("detections.png")
        } else {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            a.out.join(format!("{stem}.detections.png"))
        };
        // one box may carry several classes (darknet's NMS is per class): one label for it
        let mut boxes: Vec<LabelledBox> = Vec::new();
        for d in &dets {
            let label = format!("{} {:.0}%", names[d.class], 100.0 * d.score);
            match boxes.iter_mut().find(|b| b.bbox == d.bbox) {
                Some(b) => b.label = format!("{}, {label}", b.label),
                None => boxes.push(LabelledBox {
                    bbox: d.bbox,
                    label,
                    color: d.class,
                    points: Vec::new(),
                }),
            }
        }
        write_boxes(&out_png, &img, &boxes)?;
        if a.json {
            let ds: Vec<_> = dets
                .iter()
                .map(|d| json!({"box": d.bbox, "class": d.class, "label": names[d.class], "score": d.score}))
                .collect();
            println!(
                "{}",
                json!({"image": path, "width": w, "height": h, "detections": ds})
            );
        } else {
            println!(
                "{}: {} detections → {}",
                path.display(),
                dets.len(),
                out_png.display()
            );
            for d in &dets {
                println!(
                    "  {:<14} {:5.1}%  [{:.0}, {:.0}, {:.0}, {:.0}]",
                    names[d.class],
                    100.0 * d.score,
                    d.bbox[0],
                    d.bbox[1],
                    d.bbox[2],
                    d.bbox[3]
                );
            }
        }
        let id = image_id(path);
        for d in &dets {
            let [x1, y1, x2, y2] = d.bbox;
            results.push(json!({"image_id": id, "category_id": d.class + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d.score}));
        }
    }
    if let Some(p) = &a.coco_results {
        let text = serde_json::to_string(&results)?;
        write_atomic(p, text.as_bytes())?;
    }
    Ok(())
}

/// A COCO results `image_id`: the file stem, as a number when it is one (`000000397133.jpg`).
fn image_id(path: &Path) -> serde_json::Value {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    match stem.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(stem),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.part");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
