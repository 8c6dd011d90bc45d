//! `aics detect`: find objects in photos with a pretrained detector and draw them.

use std::path::{Path, PathBuf};

use aics_detect::darknet::read_names;
use aics_detect::yolo::{Planar, Yolo, YoloDetection, YoloSettings};
use aics_tensor::Tensor;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::plot::{write_boxes, LabelledBox};

pub(crate) const DEFAULT_WEIGHTS: &str = ".cache/weights/yolov3-tiny.weights";
pub(crate) const DEFAULT_CFG: &str = ".cache/weights/yolov3-tiny.cfg";
const DEFAULT_NAMES: &str = ".cache/weights/coco.names";
const DEFAULT_IMAGE: &str = ".cache/darknet/data/dog.jpg";
const DEFAULT_FACES: &str = "fixtures/mtcnn/faces.png";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DetectModel {
    /// YOLOv3-tiny (darknet cfg + weights; default: the official COCO model, 80 classes).
    #[default]
    #[value(name = "yolov3-tiny")]
    Yolov3Tiny,
    /// Any darknet YOLO model given by --cfg, --weights and --names (v1, v2 or v3 heads).
    Darknet,
    /// A YOLOv1 checkpoint written by `aics detect-train` (--weights CKPT).
    Yolov1,
    /// An SSD checkpoint written by `aics detect-train` (--weights CKPT).
    Ssd,
    /// An SSDlite checkpoint written by `aics detect-train --model ssdlite` (--weights CKPT).
    Ssdlite,
    /// A Faster R-CNN checkpoint written by `aics detect-train` (--weights CKPT).
    #[value(name = "faster_rcnn")]
    FasterRcnn,
    /// A Fast R-CNN checkpoint written by `aics detect-train` (--weights CKPT); proposals by
    /// selective search.
    #[value(name = "fast_rcnn")]
    FastRcnn,
    /// An R-CNN checkpoint written by `aics detect-train` (--weights CKPT): selective search,
    /// warped regions, SVM scores (margins; --score default 0), NMS 0.3.
    Rcnn,
    /// MTCNN, the cascade face detector (facenet-pytorch's trained networks; --weights is the
    /// folder with pnet.pt, rnet.pt, onet.pt). Boxes come with five landmarks.
    Mtcnn,
    /// MediaPipe's BlazeFace short-range face detector from ONNX (--weights: the .onnx file;
    /// default: keijiro's 128×128 export after `bash scripts/setup.sh`): the photo letterboxed
    /// to 128×128, its 896 anchors decoded into boxes with six key points, overlaps blended
    /// (--nms, default 0.3).
    Blazeface,
    /// torchvision's Faster R-CNN, ResNet-50 FPN (--weights: a torchvision state dict; default:
    /// the published COCO weights, after `aics weights fetch fasterrcnn_resnet50_fpn`).
    #[value(name = "fasterrcnn_resnet50_fpn")]
    FasterrcnnResnet50Fpn,
    /// torchvision's Faster R-CNN, MobileNetV3-Large FPN.
    #[value(name = "fasterrcnn_mobilenet_v3_large_fpn")]
    FasterrcnnMobilenetV3LargeFpn,
    /// torchvision's Faster R-CNN, MobileNetV3-Large FPN at 320 px.
    #[value(name = "fasterrcnn_mobilenet_v3_large_320_fpn")]
    FasterrcnnMobilenetV3Large320Fpn,
    /// torchvision's SSD300 with VGG16.
    #[value(name = "ssd300_vgg16")]
    Ssd300Vgg16,
    /// torchvision's SSDlite320 with MobileNetV3-Large.
    #[value(name = "ssdlite320_mobilenet_v3_large")]
    Ssdlite320MobilenetV3Large,
}

impl DetectModel {
    /// torchvision's name, for its detectors.
    fn torchvision(self) -> Option<&'static str> {
        Some(match self {
            DetectModel::FasterrcnnResnet50Fpn => "fasterrcnn_resnet50_fpn",
            DetectModel::FasterrcnnMobilenetV3LargeFpn => "fasterrcnn_mobilenet_v3_large_fpn",
            DetectModel::FasterrcnnMobilenetV3Large320Fpn => {
                "fasterrcnn_mobilenet_v3_large_320_fpn"
            }
            DetectModel::Ssd300Vgg16 => "ssd300_vgg16",
            DetectModel::Ssdlite320MobilenetV3Large => "ssdlite320_mobilenet_v3_large",
            _ => return None,
        })
    }
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Photos to run on (default: darknet's dog photo, fetched by set-up).
    images: Vec<PathBuf>,
    /// yolov3-tiny, darknet, yolov1, ssd, ssdlite, faster_rcnn, fast_rcnn, rcnn, mtcnn,
    /// blazeface, fasterrcnn_resnet50_fpn, fasterrcnn_mobilenet_v3_large_fpn,
    /// fasterrcnn_mobilenet_v3_large_320_fpn, ssd300_vgg16, ssdlite320_mobilenet_v3_large (see
    /// `aics detect --help` for each); or an ONNX file (NET.onnx): a darknet network, as
    /// `aics export --model yolov3-tiny` writes it, with its heads read from --cfg (default:
    /// YOLOv3-tiny's), or a whole detector with outputs boxes, scores and labels, as `aics
    /// export --model faster_rcnn` writes it.
    #[arg(long = "model", default_value = "yolov3-tiny")]
    model_name: String,
    #[arg(skip)]
    model: DetectModel,
    /// Darknet .weights file (default for yolov3-tiny: the file set-up fetches).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Darknet .cfg file (default for yolov3-tiny: the file set-up fetches).
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// Class names, one a line (default for yolov3-tiny: COCO's 80, darknet's coco.names; for a
    /// detector's ONNX graph one a label, the background first, default `class N`).
    #[arg(long)]
    names: Option<PathBuf>,
    /// Keep detections scoring above this (YOLO: darknet's -thresh, default 0.25; MTCNN: the
    /// last stage's threshold, default 0.7; torchvision's detectors: default 0.5, where
    /// torchvision evaluates with 0.05 for Faster R-CNN, 0.01 for SSD, 0.001 for SSDlite; R-CNN:
    /// an SVM margin, default 0, may be negative).
    #[arg(long, allow_negative_numbers = true)]
    score: Option<f32>,
    /// IoU above which NMS suppresses a box of the same class (YOLO: default 0.45;
    /// torchvision's detectors: their own, 0.5 for Faster R-CNN, 0.45 SSD, 0.55 SSDlite).
    #[arg(long)]
    nms: Option<f32>,
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

pub(crate) const DEFAULT_MTCNN: &str = ".cache/weights/mtcnn";

pub(crate) fn open_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: cannot decode the image", path.display()))?
        .to_rgb8())
}

fn default_images(a: &DetectArgs) -> Result<Vec<PathBuf>> {
    if !a.images.is_empty() {
        return Ok(a.images.clone());
    }
    let p = PathBuf::from(
        if matches!(a.model, DetectModel::Mtcnn | DetectModel::Blazeface) {
            DEFAULT_FACES
        } else {
            DEFAULT_IMAGE
        },
    );
    if !p.exists() {
        bail!("{}: not found; run `bash scripts/setup.sh` to fetch the demo photos, or name photos to run on", p.display());
    }
    Ok(vec![p])
}

fn out_path(a: &DetectArgs, n: usize, path: &Path) -> PathBuf {
    if n == 1 {
        a.out.join("detections.png")
    } else {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        a.out.join(format!("{stem}.detections.png"))
    }
}

/// A detector trained by `aics detect-train` (`--model yolov1|ssd|faster_rcnn --weights CKPT`).
fn run_trained(a: &DetectArgs, model: &str) -> Result<()> {
    for (flag, given) in [("--cfg", a.cfg.is_some()), ("--names", a.names.is_some())] {
        if given {
            bail!("{flag} does not apply to --model {model} (the checkpoint holds its network and class names)");
        }
    }
    let Some(ckpt) = &a.weights else {
        bail!("--model {model} needs --weights CKPT (a checkpoint of aics detect-train)");
    };
    // R-CNN scores are SVM margins (positive: the class), the others probabilities
    let svm = model == "rcnn";
    let score = a.score.unwrap_or(if svm { 0.0 } else { 0.2 });
    let nms = a.nms.unwrap_or(if svm { 0.3 } else { 0.45 });
    let nms_ok = nms > 0.0 && nms <= 1.0;
    let score_ok = if svm {
        score.is_finite()
    } else {
        score > 0.0 && score < 1.0
    };
    if !(score_ok && nms_ok) {
        let want = if svm {
            "a finite SVM margin"
        } else {
            "in (0, 1)"
        };
        bail!("--score must be {want} and --nms in (0, 1], got {score} and {nms}");
    }
    let m = crate::detect_train::load_trained(ckpt, model, score, nms)?;
    if a.images.is_empty() {
        bail!("--model {model}: name the images to run on");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut results = Vec::new();
    for path in &a.images {
        let img = open_rgb(path)?;
        let dets: Vec<YoloDetection> = m
            .detect(&img)?
            .into_iter()
            .map(|(class, score, bbox)| YoloDetection { class, score, bbox })
            .collect();
        report(
            a,
            a.images.len(),
            path,
            &img,
            &dets,
            &m.names,
            1,
            &mut results,
        )?;
    }
    write_results(a, &results)
}

fn run_mtcnn(a: &DetectArgs) -> Result<()> {
    for (flag, given) in [
        ("--cfg", a.cfg.is_some()),
        ("--names", a.names.is_some()),
        ("--nms", a.nms.is_some()),
    ] {
        if given {
            bail!("{flag} does not apply to --model mtcnn (its cascade fixes its NMS thresholds)");
        }
    }
    let score = a.score.unwrap_or(0.7);
    if !(score > 0.0 && score < 1.0) {
        bail!("--score must be in (0, 1), got {score}");
    }
    let dir = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MTCNN));
    if !dir.join("pnet.pt").exists() {
        bail!("{}: no pnet.pt there; run `bash scripts/setup.sh` to fetch the MTCNN weights, or give --weights DIR", dir.display());
    }
    let m = aics_detect::mtcnn::Mtcnn::load(&dir)?;
    let mut settings = aics_detect::mtcnn::MtcnnSettings::default();
    settings.thresholds[2] = score;
    let images = default_images(a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut results = Vec::new();
    for path in &images {
        let img = open_rgb(path)?;
        let (w, h) = img.dimensions();
        let (faces, _) = m.detect(
            &Planar::from_rgb8_255(w as usize, h as usize, img.as_raw())?,
            settings,
        )?;
        let found: Vec<FoundFace> = faces
            .iter()
            .map(|f| (f.bbox, f.score, f.landmarks.to_vec()))
            .collect();
        report_faces(
            a,
            images.len(),
            path,
            &img,
            &found,
            "landmarks",
            &mut results,
        )?;
    }
    write_results(a, &results)
}

/// A face in photo pixels: box, score, key points.
type FoundFace = ([f32; 4], f32, Vec<(f32, f32)>);

const DEFAULT_BLAZEFACE: &str = ".cache/onnx-models/face_detection_front_128x128_barracuda.onnx";

fn run_blazeface(a: &DetectArgs) -> Result<()> {
    use aics_detect::blazeface::{blend, decode, Head, INPUT};
    use aics_onnx::Value;
    for (flag, given) in [("--cfg", a.cfg.is_some()), ("--names", a.names.is_some())] {
        if given {
            bail!("{flag} does not apply to --model blazeface (one class, face)");
        }
    }
    let score = a.score.unwrap_or(0.5);
    if !(score > 0.0 && score < 1.0) {
        bail!("--score must be in (0, 1), got {score}");
    }
    let blend_iou = a.nms.unwrap_or(0.3);
    if !(blend_iou > 0.0 && blend_iou <= 1.0) {
        bail!("--nms must be in (0, 1], got {blend_iou}");
    }
    let path = a
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BLAZEFACE));
    if !path.exists() {
        bail!("{}: not found; run `bash scripts/setup.sh` to fetch BlazeFace, or give --weights FILE.onnx", path.display());
    }
    let m = aics_onnx::open(&path)?;
    let names = m.input_names();
    let [input] = names.as_slice() else {
        bail!(
            "{}: BlazeFace takes one image input; this model has {}",
            path.display(),
            names.join(", ")
        );
    };
    let images = default_images(a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut results = Vec::new();
    for p in &images {
        let img = open_rgb(p)?;
        let (w, h) = img.dimensions();
        // letterboxed: the longer side to 128, centred on black
        let s = INPUT as f32 / w.max(h) as f32;
        let (nw, nh) = (
            ((w as f32 * s).round() as u32).max(1),
            ((h as f32 * s).round() as u32).max(1),
        );
        let small = aics_vision::resize::resize_bilinear_antialias(&img, nw, nh);
        let (ox, oy) = ((INPUT as u32 - nw) / 2, (INPUT as u32 - nh) / 2);
        let mut x = vec![-1f32; INPUT * INPUT * 3];
        for (px, py, pix) in small.enumerate_pixels() {
            let at = (((py + oy) as usize) * INPUT + (px + ox) as usize) * 3;
            for c in 0..3 {
                x[at + c] = pix[c] as f32 / 127.5 - 1.0;
            }
        }
        let x = Tensor::from_vec(x, &[1, INPUT, INPUT, 3])?;
        let outs = m
            .run(&[(input.as_str(), Value::F(x))])
            .with_context(|| format!("{}: {}", p.display(), path.display()))?;
        let f: Vec<Vec<f32>> = outs
            .iter()
            .map(|(_, v)| match v {
                Value::F(t) => t.to_vec(),
                Value::I(..) => Vec::new(),
            })
            .collect();
        if f.len() != 4 {
            bail!(
                "{}: {} outputs; BlazeFace has four (two heads' scores, then their boxes)",
                path.display(),
                f.len()
            );
        }
        let heads = [
            Head {
                scores: &f[0],
                boxes: &f[2],
                cells: 16,
                anchors: 2,
            },
            Head {
                scores: &f[1],
                boxes: &f[3],
                cells: 8,
                anchors: 6,
            },
        ];
        let faces = blend(decode(&heads, score)?, blend_iou);
        // canvas [0, 1] → photo pixels
        let to_px = |u: f32, v: f32| {
            (
                (u * INPUT as f32 - ox as f32) / s,
                (v * INPUT as f32 - oy as f32) / s,
            )
        };
        let found: Vec<FoundFace> = faces
            .iter()
            .map(|fc| {
                let (x0, y0) = to_px(fc.bbox[0], fc.bbox[1]);
                let (x1, y1) = to_px(fc.bbox[2], fc.bbox[3]);
                let pts = fc.keypoints.iter().map(|&(u, v)| to_px(u, v)).collect();
                ([x0, y0, x1, y1], fc.score, pts)
            })
            .collect();
        report_faces(a, images.len(), p, &img, &found, "keypoints", &mut results)?;
    }
    write_results(a, &results)
}

fn run_torchvision(a: &DetectArgs, name: &str) -> Result<()> {
    if a.cfg.is_some() {
        bail!("--cfg does not apply to --model {name} (its layers are torchvision's)");
    }
    let score = a.score.unwrap_or(0.5);
    if !(score > 0.0 && score < 1.0) {
        bail!("--score must be in (0, 1), got {score}");
    }
    if let Some(n) = a.nms {
        if !(n > 0.0 && n <= 1.0) {
            bail!("--nms must be in (0, 1], got {n}");
        }
    }
    let weights = match &a.weights {
        Some(p) => p.clone(),
        None => crate::weights_cmd::cached(name).with_context(|| {
            format!("--model {name}: no --weights given and the published COCO weights are not in the cache; run `aics weights fetch {name}` (needs internet) or give --weights PATH (a torchvision state dict)")
        })?,
    };
    let mut det = crate::detect_tv::TvDetector::load(name, &weights)?;
    det.set_thresholds(score as f64, a.nms.map(|n| n as f64));
    let classes = det.num_classes();
    let names = match &a.names {
        Some(p) => {
            let n = read_names(p)?;
            if n.len() != classes {
                bail!(
                    "{}: {} class names, but {} has {classes} labels (the background, label 0, included)",
                    p.display(),
                    n.len(),
                    weights.display()
                );
            }
            n
        }
        None => crate::detect_tv::label_names(classes),
    };
    let images = default_images(a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let _g = aics_tensor::no_grad();
    let mut results = Vec::new();
    for path in &images {
        let img = open_rgb(path)?;
        let d = det.detect(&crate::detect_tv::to_tensor(&img)?)?;
        let dets: Vec<YoloDetection> = d
            .boxes
            .iter()
            .zip(&d.scores)
            .zip(&d.labels)
            .map(|((b, &s), &l)| YoloDetection {
                class: l,
                score: s,
                bbox: *b,
            })
            .collect();
        report(a, images.len(), path, &img, &dets, &names, 0, &mut results)?;
    }
    write_results(a, &results)
}

pub fn run(mut a: DetectArgs) -> Result<()> {
    if a.model_name.ends_with(".onnx") {
        let path = PathBuf::from(&a.model_name);
        let m = aics_onnx::open(&path)?;
        let outs: Vec<&str> = m.graph().outputs.iter().map(|o| o.name.as_str()).collect();
        if outs == ["boxes", "scores", "labels"] {
            return run_onnx_detector(&a, &path, &m);
        }
        return run_onnx_darknet(&a, &path, m);
    }
    a.model = DetectModel::from_str(&a.model_name, false).map_err(|_| {
        let names: Vec<String> = DetectModel::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        anyhow::anyhow!(
            "unknown model `{}` (available: {}; or an ONNX file NET.onnx)",
            a.model_name,
            names.join(", ")
        )
    })?;
    if let Some(name) = a.model.torchvision() {
        return run_torchvision(&a, name);
    }
    if a.model == DetectModel::Mtcnn {
        return run_mtcnn(&a);
    }
    if a.model == DetectModel::Blazeface {
        return run_blazeface(&a);
    }
    match a.model {
        DetectModel::Yolov1 => return run_trained(&a, "yolov1"),
        DetectModel::Ssd => return run_trained(&a, "ssd"),
        DetectModel::Ssdlite => return run_trained(&a, "ssdlite"),
        DetectModel::FasterRcnn => return run_trained(&a, "faster_rcnn"),
        DetectModel::FastRcnn => return run_trained(&a, "fast_rcnn"),
        DetectModel::Rcnn => return run_trained(&a, "rcnn"),
        _ => {}
    }
    let settings = yolo_settings(&a)?;
    let cfg = or_default(&a.cfg, DEFAULT_CFG, "cfg", a.model)?;
    let weights = or_default(&a.weights, DEFAULT_WEIGHTS, "weights", a.model)?;
    let names_path = or_default(&a.names, DEFAULT_NAMES, "names", a.model)?;
    let names = read_names(&names_path)?;
    let images = default_images(&a)?;
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
    let mut results = Vec::new();
    for path in &images {
        let img = open_rgb(path)?;
        let (w, h) = img.dimensions();
        let planar = Planar::from_rgb8(w as usize, h as usize, img.as_raw())?;
        let dets = yolo.detect(&planar, settings)?;
        report(&a, images.len(), path, &img, &dets, &names, 1, &mut results)?;
    }
    write_results(&a, &results)
}

/// One photo's faces, from MTCNN or BlazeFace: the picture with the boxes and their points,
/// JSON (the points under `points_key`) or text on stdout, and COCO results rows.
fn report_faces(
    a: &DetectArgs,
    n_images: usize,
    path: &Path,
    img: &image::RgbImage,
    found: &[FoundFace],
    points_key: &str,
    results: &mut Vec<serde_json::Value>,
) -> Result<()> {
    let out_png = out_path(a, n_images, path);
    let boxes: Vec<LabelledBox> = found
        .iter()
        .map(|(b, sc, pts)| LabelledBox {
            bbox: *b,
            label: format!("face {:.0}%", 100.0 * sc),
            color: 2,
            points: pts.clone(),
        })
        .collect();
    let rows = found.iter().map(|(b, sc, pts)| {
        let mut d = json!({"box": b, "class": 0, "label": "face", "score": sc});
        d[points_key] = json!(pts.iter().map(|p| [p.0, p.1]).collect::<Vec<_>>());
        let line = format!(
            "  face {:5.1}%  [{:.0}, {:.0}, {:.0}, {:.0}]",
            100.0 * sc,
            b[0],
            b[1],
            b[2],
            b[3]
        );
        (d, line)
    });
    show(a, path, img, &out_png, &boxes, "faces", rows)?;
    push_results(results, path, found.iter().map(|(b, sc, _)| (1, *b, *sc)));
    Ok(())
}

/// darknet's -thresh (default 0.25) and NMS overlap (default 0.45), checked.
fn yolo_settings(a: &DetectArgs) -> Result<YoloSettings> {
    let score = a.score.unwrap_or(0.25);
    let nms = a.nms.unwrap_or(0.45);
    if !(score > 0.0 && score < 1.0) {
        bail!("--score must be in (0, 1), got {score}");
    }
    if !(nms > 0.0 && nms <= 1.0) {
        bail!("--nms must be in (0, 1], got {nms}");
    }
    Ok(YoloSettings { thresh: score, nms })
}

/// `aics detect --model NET.onnx`: a darknet network exported to ONNX (its outputs the
/// detection heads' inputs as darknet activates them, in layer order) run by aics's ONNX
/// runner, decoded with the heads of `--cfg`.
fn run_onnx_darknet(a: &DetectArgs, path: &Path, m: aics_onnx::OnnxModel) -> Result<()> {
    if a.weights.is_some() {
        bail!("--weights: {} carries its weights", path.display());
    }
    let settings = yolo_settings(a)?;
    let cfg = or_default(&a.cfg, DEFAULT_CFG, "cfg", DetectModel::Yolov3Tiny)?;
    let names_path = or_default(&a.names, DEFAULT_NAMES, "names", DetectModel::Yolov3Tiny)?;
    let names = read_names(&names_path)?;
    let yolo = Yolo::heads_of(&cfg)?;
    if names.len() != yolo.classes() {
        bail!(
            "{}: {} class names, but {} has {} classes",
            names_path.display(),
            names.len(),
            cfg.display(),
            yolo.classes()
        );
    }
    let inputs = m.input_names();
    let [input] = &inputs[..] else {
        bail!(
            "{}: {} inputs ({}); a darknet network has one",
            path.display(),
            inputs.len(),
            inputs.join(", ")
        );
    };
    let want = [1, yolo.net.channels, yolo.net.height, yolo.net.width];
    let declared = m.declared_dims(input);
    if declared.len() != 4
        || declared
            .iter()
            .zip(want)
            .any(|(d, w)| d.is_some_and(|d| d != w))
    {
        bail!(
            "{}: input '{input}' is {declared:?}, {} needs 1x{}x{}x{}",
            path.display(),
            cfg.display(),
            want[1],
            want[2],
            want[3]
        );
    }
    let images = default_images(a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut results = Vec::new();
    for p in &images {
        let img = open_rgb(p)?;
        let (w, h) = img.dimensions();
        let planar = Planar::from_rgb8(w as usize, h as usize, img.as_raw())?;
        let dets = yolo.detect_with(&planar, settings, &mut |x| {
            let outs = m
                .run(&[(input.as_str(), aics_onnx::Value::F(x.clone()))])
                .map_err(|e| aics_detect::DetectError::Arg {
                    op: "onnx",
                    msg: format!("{}: {e}", path.display()),
                })?;
            outs.into_iter()
                .map(|(name, v)| match v {
                    aics_onnx::Value::F(t) => Ok(t),
                    aics_onnx::Value::I(..) => Err(aics_detect::DetectError::Arg {
                        op: "onnx",
                        msg: format!("{}: output '{name}' is not a float tensor", path.display()),
                    }),
                })
                .collect()
        })?;
        report(a, images.len(), p, &img, &dets, &names, 1, &mut results)?;
    }
    write_results(a, &results)
}

/// `aics detect --model DET.onnx` for a detector's whole graph as `aics export` writes Faster
/// R-CNN (input (1, 3, H, W) in [0, 1], outputs `boxes` in its pixels, `scores`, `labels`):
/// each photo resized to H×W, its boxes scaled back, those scoring above --score (default
/// 0.5) kept.
fn run_onnx_detector(a: &DetectArgs, path: &Path, m: &aics_onnx::OnnxModel) -> Result<()> {
    for (flag, given) in [
        ("--weights", a.weights.is_some()),
        ("--cfg", a.cfg.is_some()),
        ("--nms (the graph runs its own NMS)", a.nms.is_some()),
    ] {
        if given {
            bail!("{flag} does not apply to {}", path.display());
        }
    }
    let score = a.score.unwrap_or(0.5);
    if !(0.0..1.0).contains(&score) {
        bail!("--score must be in [0, 1), got {score}");
    }
    let inputs = m.input_names();
    let dims = match &inputs[..] {
        [input] => m.declared_dims(input),
        _ => Vec::new(),
    };
    let &[Some(1), Some(3), Some(h), Some(w)] = dims.as_slice() else {
        bail!(
            "{}: a detector's graph takes one image (1, 3, H, W) of a fixed size; this one takes {} ({dims:?})",
            path.display(),
            inputs.join(", ")
        );
    };
    let names: Option<Vec<String>> = a.names.as_ref().map(|p| read_names(p)).transpose()?;
    let images = default_images(a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut results = Vec::new();
    for p in &images {
        let img = open_rgb(p)?;
        let x = crate::export_cmd::photo_input(p, [3, h, w])?;
        let outs = m
            .run(&[(inputs[0].as_str(), aics_onnx::Value::F(x))])
            .with_context(|| format!("{}: {}", path.display(), p.display()))?;
        let (boxes, scores, labels) = match &outs[..] {
            [(_, aics_onnx::Value::F(b)), (_, aics_onnx::Value::F(s)), (_, aics_onnx::Value::I(l, _))] => {
                (b.to_vec(), s.to_vec(), l.clone())
            }
            _ => bail!(
                "{}: boxes and scores must be float, labels int64",
                path.display()
            ),
        };
        if boxes.len() != 4 * scores.len() || labels.len() != scores.len() {
            bail!(
                "{}: {} box values, {} scores, {} labels",
                path.display(),
                boxes.len(),
                scores.len(),
                labels.len()
            );
        }
        let (sx, sy) = (
            img.width() as f32 / w as f32,
            img.height() as f32 / h as f32,
        );
        let mut dets = Vec::new();
        for ((b, &s), &l) in boxes.chunks_exact(4).zip(&scores).zip(&labels) {
            if s <= score {
                continue;
            }
            let class =
                usize::try_from(l).map_err(|_| anyhow::anyhow!("{}: label {l}", path.display()))?;
            dets.push(YoloDetection {
                class,
                score: s,
                bbox: [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy],
            });
        }
        let top = dets.iter().map(|d| d.class + 1).max().unwrap_or(0);
        let names = match &names {
            Some(n) if n.len() < top => bail!(
                "{}: {} class names, but the graph gives label {} (the background, label 0, counts)",
                a.names.as_ref().map_or(String::new(), |p| p.display().to_string()),
                n.len(),
                top - 1
            ),
            Some(n) => n.clone(),
            None => (0..top).map(|c| format!("class {c}")).collect(),
        };
        report(a, images.len(), p, &img, &dets, &names, 0, &mut results)?;
    }
    write_results(a, &results)
}

/// One photo's detections: the picture with labelled boxes (one label for a box that carries
/// several classes: darknet's NMS is per class), JSON or text on stdout, and COCO results rows
/// (category id = class + `id_offset`: 1 for darknet's 0-based classes, 0 for torchvision's
/// labels, which are COCO ids).
#[allow(clippy::too_many_arguments)]
fn report(
    a: &DetectArgs,
    n_images: usize,
    path: &Path,
    img: &image::RgbImage,
    dets: &[YoloDetection],
    names: &[String],
    id_offset: usize,
    results: &mut Vec<serde_json::Value>,
) -> Result<()> {
    let out_png = out_path(a, n_images, path);
    // R-CNN's scores are SVM margins, the others' probabilities
    let score = |s: f32, digits: usize| {
        if a.model == DetectModel::Rcnn {
            format!("{s:+.2}")
        } else {
            format!("{:.digits$}%", 100.0 * s)
        }
    };
    let mut boxes: Vec<LabelledBox> = Vec::new();
    for d in dets {
        let label = format!("{} {}", names[d.class], score(d.score, 0));
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
    let rows = dets.iter().map(|d| {
        let row =
            json!({"box": d.bbox, "class": d.class, "label": names[d.class], "score": d.score});
        let line = format!(
            "  {:<14} {:>6}  [{:.0}, {:.0}, {:.0}, {:.0}]",
            names[d.class],
            score(d.score, 1),
            d.bbox[0],
            d.bbox[1],
            d.bbox[2],
            d.bbox[3]
        );
        (row, line)
    });
    show(a, path, img, &out_png, &boxes, "detections", rows)?;
    push_results(
        results,
        path,
        dets.iter().map(|d| (d.class + id_offset, d.bbox, d.score)),
    );
    Ok(())
}

/// One photo's boxes drawn into `out_png`, and its detections on stdout: one JSON line with
/// each detection's row, or a header line counting the `noun` and each detection's text line.
fn show(
    a: &DetectArgs,
    path: &Path,
    img: &image::RgbImage,
    out_png: &Path,
    boxes: &[LabelledBox],
    noun: &str,
    rows: impl Iterator<Item = (serde_json::Value, String)>,
) -> Result<()> {
    write_boxes(out_png, img, boxes)?;
    let (json_rows, lines): (Vec<_>, Vec<_>) = rows.unzip();
    if a.json {
        let (w, h) = img.dimensions();
        println!(
            "{}",
            json!({"image": path, "width": w, "height": h, "detections": json_rows})
        );
    } else {
        println!(
            "{}: {} {noun} → {}",
            path.display(),
            lines.len(),
            out_png.display()
        );
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}

/// COCO results rows for one photo: `(category id, [x1, y1, x2, y2], score)` each.
fn push_results(
    results: &mut Vec<serde_json::Value>,
    path: &Path,
    dets: impl Iterator<Item = (usize, [f32; 4], f32)>,
) {
    let id = image_id(path);
    // a box clipped to nothing cannot match anything: dropped, as torchvision's
    // `remove_small_boxes` drops them
    for (c, [x1, y1, x2, y2], score) in dets.filter(|(_, b, _)| b[2] > b[0] && b[3] > b[1]) {
        results.push(json!({"image_id": id, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}));
    }
}

/// `--coco-results`, written atomically.
fn write_results(a: &DetectArgs, results: &[serde_json::Value]) -> Result<()> {
    if let Some(p) = &a.coco_results {
        aics_nn::checkpoint::write_atomic(p, serde_json::to_string(results)?.as_bytes())?;
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
