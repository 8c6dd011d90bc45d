//! `aics export --model M [--weights W] --onnx OUT.onnx`: an aics model written as ONNX, traced
//! on an input of the model's size, then run from the written graph by aics's ONNX runner on a
//! fresh input and compared with the model.

use std::path::{Path, PathBuf};

use aics_detect::darknet::HeadOutput;
use aics_nn::Module;
use aics_onnx::export::{check_export, export_with, Input, Spec};
use aics_tensor::{hash_uniform, Tensor};
use anyhow::{bail, Context, Result};

use crate::data_spec::{self, parse_chw};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A zoo classifier (`aics summary --model` names them), `fast_style` (the feed-forward
    /// style network), `lm` (a character language model of `aics lm train`: ids and state in,
    /// logits and state out), `yolov3-tiny`, `mtcnn-pnet`/`mtcnn-rnet`/`mtcnn-onet`,
    /// torchvision's `ssd300_vgg16` and `ssdlite320_mobilenet_v3_large` (class logits and box
    /// deltas per default box), or a checkpoint of `aics detect-train` (`ssd`, `ssdlite`,
    /// `yolov1`; `fast_rcnn`: the image and its regions (K, 5) of rows (image index, x1, y1,
    /// x2, y2) in its pixels in, class logits and box deltas of each region out, K symbolic;
    /// `rcnn`: regions warped as R-CNN warps them in, SVM scores and box deltas out;
    /// `faster_rcnn`: the whole detector, a photo in [0, 1] in, boxes, scores and labels out),
    /// or torchvision's `fasterrcnn_resnet50_fpn`, `fasterrcnn_mobilenet_v3_large_fpn` and
    /// `fasterrcnn_mobilenet_v3_large_320_fpn` whole (their weights from --weights, else
    /// initial weights for --classes, default 91).
    #[arg(long)]
    pub model: String,
    /// The weights: a checkpoint of `aics train` or `aics stylize-train`, a torchvision .pth or
    /// .safetensors file for zoo models, darknet's .weights for yolov3-tiny (default: the file
    /// set-up fetches), facenet-pytorch's folder for mtcnn (default: set-up's). Without it, a zoo
    /// model or fast_style is exported with its random initial weights (seed 0).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Darknet .cfg file for yolov3-tiny (default: the file set-up fetches).
    #[arg(long)]
    pub cfg: Option<PathBuf>,
    /// Where to write the model.
    #[arg(long)]
    pub onnx: PathBuf,
    /// The input size CxHxW the graph is traced at (default: the model's usual input).
    #[arg(long, value_parser = parse_chw)]
    pub input: Option<[usize; 3]>,
    /// The batch size the graph is traced at (fast_rcnn, rcnn: the count of regions; Fast
    /// R-CNN's graph takes one image).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Make the batch size symbolic (`batch`) in the graph: the model is traced at two batch
    /// sizes, and the graph is checked at a third.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Number of classes of a zoo model (default: the model's usual count).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Time steps of a language model's input (`--model lm`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Hidden sizes of the MLP or the LSTM of lstm_seq, e.g. 100,50.
    #[arg(long)]
    pub hidden: Option<String>,
    /// Write the weights to OUT.onnx.data beside the model (ONNX's external data); done
    /// anyway for weights over 1.9 GB, which one protobuf file cannot hold.
    #[arg(long)]
    pub external_data: bool,
    /// A photo to check a Faster R-CNN's graph on (resized to the graph's size), instead of
    /// uniform noise, on which a trained detector finds nothing; with --save-io it is the input
    /// written.
    #[arg(long, value_name = "IMAGE")]
    pub sample: Option<PathBuf>,
    /// Also write the check's input (DIR/input.npy) and the model's outputs for it
    /// (DIR/NAME.npy, computed by the model, not from the graph), for running the file in
    /// another runtime and comparing.
    #[arg(long, value_name = "DIR")]
    pub save_io: Option<PathBuf>,
}

/// A two-stage detector's outputs.
const DETECTIONS: [&str; 3] = ["boxes", "scores", "labels"];

/// A model ready to trace, with its usual input size and its outputs' names.
struct Exportable {
    net: Net,
    input: [usize; 3],
    outputs: Vec<&'static str>,
}

/// An input: name, shape, whether it holds ids, its batch axis (None: a size fixed in the
/// graph).
type InputSpec = (&'static str, Vec<usize>, bool, Option<usize>);

enum Net {
    Plain(Box<dyn Module>),
    FastStyle(aics_nn::Sequential),
    Yolo(aics_detect::darknet::Darknet),
    MtcnnP(aics_detect::mtcnn::PNet),
    MtcnnR(aics_detect::mtcnn::RNet),
    MtcnnO(aics_detect::mtcnn::ONet),
    Lm(aics_text::lm::CharLm),
    Ssd(aics_detect::ssd::Ssd),
    FastRcnn(aics_detect::faster_rcnn::FastRcnn),
    Rcnn(aics_detect::rcnn::Rcnn),
    /// Written by [`faster_rcnn_graph`]: two traced networks and the steps between them.
    FasterRcnn(aics_detect::faster_rcnn::FasterRcnn),
}

impl Net {
    fn module(&self) -> &dyn Module {
        match self {
            Net::Plain(m) => m.as_ref(),
            Net::FastStyle(m) => m,
            Net::Yolo(m) => m,
            Net::MtcnnP(m) => m,
            Net::MtcnnR(m) => m,
            Net::MtcnnO(m) => m,
            Net::Lm(m) => m,
            Net::Ssd(m) => m,
            Net::FastRcnn(m) => m,
            Net::Rcnn(m) => m,
            Net::FasterRcnn(m) => m,
        }
    }

    /// The graph's inputs: name, shape, whether they are ids (int64), and the batch axis.
    /// `batch` is the images' count, or for Fast R-CNN the regions'.
    fn inputs(&self, batch: usize, chw: [usize; 3], steps: usize) -> Vec<InputSpec> {
        match self {
            Net::FastRcnn(_) => vec![
                ("input", vec![1, chw[0], chw[1], chw[2]], false, None),
                ("rois", vec![batch, 5], false, Some(0)),
            ],
            Net::FasterRcnn(_) => vec![("input", vec![1, chw[0], chw[1], chw[2]], false, None)],
            Net::Rcnn(_) => vec![(
                "regions",
                vec![batch, chw[0], chw[1], chw[2]],
                false,
                Some(0),
            )],
            Net::Lm(m) => {
                let c = m.cfg;
                let mut v = vec![
                    ("ids", vec![steps, batch], true, Some(1)),
                    ("h0", vec![c.layers, batch, c.hidden], false, Some(1)),
                ];
                if c.cell.has_c() {
                    v.push(("c0", vec![c.layers, batch, c.hidden], false, Some(1)));
                }
                v
            }
            _ => vec![("input", vec![batch, chw[0], chw[1], chw[2]], false, Some(0))],
        }
    }

    fn run(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &xs[0];
        match self {
            Net::Ssd(m) => {
                let (logits, deltas, _) = m.heads(x)?;
                Ok(vec![logits, deltas])
            }
            Net::FastRcnn(m) => {
                let (logits, deltas) = m.network(x, &xs[1])?;
                Ok(vec![logits, deltas])
            }
            Net::Rcnn(m) => {
                let f = m.forward(x)?;
                Ok(vec![m.svm.forward(&f)?, m.bbox_pred.forward(&f)?])
            }
            Net::FasterRcnn(m) => {
                let d = m.detect_network(&m.transform.normalize(x)?)?;
                let n = d.boxes.len();
                Ok(vec![
                    Tensor::from_vec(d.boxes.concat(), &[n, 4])?,
                    Tensor::from_vec(d.scores, &[n])?,
                    Tensor::from_vec(d.labels.iter().map(|&l| l as f32).collect(), &[n])?,
                ])
            }
            Net::Lm(m) => {
                let state = aics_nn::RecurrentState {
                    h: xs[1].clone(),
                    c: xs.get(2).cloned(),
                };
                let (logits, st) = m.forward_tensor(x, Some(&state))?;
                let mut out = vec![logits, st.h];
                out.extend(st.c);
                Ok(out)
            }
            Net::Plain(m) => Ok(vec![m.forward(x)?]),
            Net::FastStyle(m) => Ok(vec![aics_style::fast::stylize(m, x)?]),
            Net::Yolo(m) => Ok(m
                .forward_heads(x)?
                .into_iter()
                .map(HeadOutput::into_tensor)
                .collect()),
            Net::MtcnnP(m) => {
                let (a, b) = m.forward2(x)?;
                Ok(vec![a, b])
            }
            Net::MtcnnR(m) => {
                let (a, b) = m.forward2(x)?;
                Ok(vec![a, b])
            }
            Net::MtcnnO(m) => {
                let (a, b, c) = m.forward3(x)?;
                Ok(vec![a, b, c])
            }
        }
    }
}

fn build(a: &ExportArgs) -> Result<Exportable> {
    let not_for = |flag: &str, given: bool| -> Result<()> {
        if given {
            bail!("{flag} does not apply to --model {}", a.model);
        }
        Ok(())
    };
    let ex = |net, input, outputs| Exportable {
        net,
        input,
        outputs,
    };
    match a.model.as_str() {
        "fast_style" => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            let net = match &a.weights {
                Some(w) => crate::stylize_train::load_net(w)?,
                None => aics_style::fast::transform_net(0)?,
            };
            Ok(ex(Net::FastStyle(net), [3, 256, 256], vec!["output"]))
        }
        "lm" => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            not_for("--input", a.input.is_some())?;
            let Some(w) = &a.weights else {
                bail!("--model lm needs --weights CHECKPOINT (a checkpoint of `aics lm train`)");
            };
            let ck = aics_nn::checkpoint::load_checkpoint(w)?;
            let meta = crate::lm::meta_of(&ck)?;
            let lm = crate::lm::load_lm(&ck, &meta)?;
            let outputs = if meta.cfg.cell.has_c() {
                vec!["logits", "h_n", "c_n"]
            } else {
                vec!["logits", "h_n"]
            };
            Ok(ex(Net::Lm(lm), [0, 0, 0], outputs))
        }
        "fasterrcnn_resnet50_fpn"
        | "fasterrcnn_mobilenet_v3_large_fpn"
        | "fasterrcnn_mobilenet_v3_large_320_fpn" => {
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            let net = match &a.weights {
                Some(w) => {
                    not_for("--classes (the weights give them)", a.classes.is_some())?;
                    match crate::detect_tv::TvDetector::load(&a.model, w)? {
                        crate::detect_tv::TvDetector::Rcnn(m) => m,
                        crate::detect_tv::TvDetector::Ssd(_) => {
                            unreachable!("a Faster R-CNN name")
                        }
                    }
                }
                // the architecture with its initial weights, for COCO's 91 classes or others
                None => aics_detect::faster_rcnn::FasterRcnn::by_name(
                    &a.model,
                    a.classes.unwrap_or(91),
                    0,
                )?,
            };
            // the short side the transform resizes to, square
            let s = net.transform.min_size as usize;
            Ok(ex(Net::FasterRcnn(net), [3, s, s], DETECTIONS.to_vec()))
        }
        "ssd300_vgg16" | "ssdlite320_mobilenet_v3_large" => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            not_for("--input", a.input.is_some())?;
            let net = match &a.weights {
                Some(w) => match crate::detect_tv::TvDetector::load(&a.model, w)? {
                    crate::detect_tv::TvDetector::Ssd(m) => m,
                    crate::detect_tv::TvDetector::Rcnn(_) => unreachable!("an SSD name"),
                },
                None => aics_detect::ssd::Ssd::by_name(&a.model, 91, 0)?,
            };
            let s = if a.model == "ssd300_vgg16" { 300 } else { 320 };
            Ok(ex(Net::Ssd(net), [3, s, s], vec!["logits", "deltas"]))
        }
        "ssd" | "ssdlite" | "yolov1" | "fast_rcnn" | "faster_rcnn" | "rcnn" => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            not_for("--input", a.input.is_some())?;
            let Some(w) = &a.weights else {
                bail!(
                    "--model {} needs --weights CKPT (a checkpoint of aics detect-train)",
                    a.model
                );
            };
            // torchvision's Faster R-CNN thresholds (the other graphs end before thresholds)
            let trained = crate::detect_train::load_trained(w, &a.model, 0.05, 0.5)?;
            let size = trained.size;
            match trained.into_trainee() {
                crate::detect_train::Trainee::Ssd(m) => {
                    Ok(ex(Net::Ssd(m), [3, size, size], vec!["logits", "deltas"]))
                }
                crate::detect_train::Trainee::Yolov1 { net, .. } => Ok(ex(
                    Net::Plain(Box::new(net)),
                    [3, size, size],
                    vec!["output"],
                )),
                crate::detect_train::Trainee::Svm(m) => {
                    let s = m.warp;
                    Ok(ex(
                        Net::Rcnn(m),
                        [3, s, s],
                        vec!["svm_scores", "box_deltas"],
                    ))
                }
                crate::detect_train::Trainee::Rcnn(m, _) => {
                    Ok(ex(Net::FasterRcnn(m), [3, size, size], DETECTIONS.to_vec()))
                }
                crate::detect_train::Trainee::Fast(m) => Ok(ex(
                    Net::FastRcnn(m),
                    [3, size, size],
                    vec!["class_logits", "box_deltas"],
                )),
            }
        }
        "yolov3-tiny" => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            let cfg = a
                .cfg
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::detect::DEFAULT_CFG));
            let weights = a
                .weights
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::detect::DEFAULT_WEIGHTS));
            for p in [&cfg, &weights] {
                if !p.exists() {
                    bail!("{}: not found; run `bash scripts/setup.sh` to fetch YOLOv3-tiny, or pass --cfg and --weights", p.display());
                }
            }
            let net = aics_detect::darknet::Darknet::read_cfg(&cfg)?;
            net.load_weights(&weights)?;
            let input = [net.channels, net.height, net.width];
            let heads = net.num_heads();
            let names: Vec<&'static str> = ["yolo_0", "yolo_1", "yolo_2", "yolo_3"]
                .into_iter()
                .take(heads)
                .collect();
            if names.len() != heads {
                bail!(
                    "{}: {heads} detection heads; export writes up to 4",
                    cfg.display()
                );
            }
            Ok(ex(Net::Yolo(net), input, names))
        }
        m if m.starts_with("mtcnn-") => {
            not_for("--classes", a.classes.is_some())?;
            not_for("--hidden", a.hidden.is_some())?;
            not_for("--cfg", a.cfg.is_some())?;
            let dir = a
                .weights
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::detect::DEFAULT_MTCNN));
            if !dir.join("pnet.pt").exists() {
                bail!("{}: no pnet.pt there; run `bash scripts/setup.sh` to fetch the MTCNN weights, or give --weights DIR", dir.display());
            }
            let all = aics_detect::mtcnn::Mtcnn::load(&dir)?;
            Ok(match m {
                "mtcnn-pnet" => ex(
                    Net::MtcnnP(all.pnet),
                    [3, 12, 12],
                    vec!["regression", "probability"],
                ),
                "mtcnn-rnet" => ex(
                    Net::MtcnnR(all.rnet),
                    [3, 24, 24],
                    vec!["regression", "probability"],
                ),
                "mtcnn-onet" => ex(
                    Net::MtcnnO(all.onet),
                    [3, 48, 48],
                    vec!["regression", "landmarks", "probability"],
                ),
                other => bail!("unknown model `{other}` (mtcnn-pnet, mtcnn-rnet, mtcnn-onet)"),
            })
        }
        name => {
            not_for("--cfg", a.cfg.is_some())?;
            if aics_vision::zoo_entry(name).is_none() {
                bail!(
                    "unknown model `{name}` (a zoo classifier: {}; or fast_style, lm, yolov3-tiny, mtcnn-pnet, mtcnn-rnet, mtcnn-onet, ssd300_vgg16, ssdlite320_mobilenet_v3_large, ssd, ssdlite, yolov1)",
                    aics_vision::model_names().join(", ")
                );
            }
            // a checkpoint of `aics train` knows its model's configuration
            if let Some(w) = &a.weights {
                if let Ok(ck) = aics_nn::checkpoint::load_checkpoint(w) {
                    if let Ok(meta) = crate::meta::ModelMeta::from_checkpoint(&ck) {
                        if meta.model != name {
                            bail!(
                                "{}: a checkpoint of {}, not of {name}",
                                w.display(),
                                meta.model
                            );
                        }
                        not_for("--classes (the checkpoint gives them)", a.classes.is_some())?;
                        not_for("--hidden (the checkpoint gives them)", a.hidden.is_some())?;
                        let model = meta.build(0)?;
                        ck.load_into(model.as_ref())?;
                        return Ok(ex(Net::Plain(model), meta.in_shape, vec!["output"]));
                    }
                }
            }
            let (shape, classes) = aics_vision::default_shape(name);
            let input = a.input.unwrap_or(shape);
            let cfg = aics_vision::ModelConfig {
                in_shape: input,
                num_classes: a.classes.unwrap_or(classes),
                hidden: data_spec::parse_hidden(a.hidden.as_deref())?,
                seed: 0,
            };
            let model = aics_vision::build(name, &cfg)?;
            if let Some(w) = &a.weights {
                aics_vision::weights::load_weights(model.as_ref(), w)?;
            }
            Ok(ex(Net::Plain(model), input, vec!["output"]))
        }
    }
}

pub fn run(a: ExportArgs) -> Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if (a.model == "fast_rcnn" || a.model == "rcnn") && a.dynamic_batch {
        bail!(
            "--dynamic-batch does not apply to --model {}: the count of regions is always symbolic",
            a.model
        );
    }
    let e = build(&a)?;
    let two_stage = matches!(e.net, Net::FasterRcnn(_));
    let resizable = matches!(e.net, Net::Plain(_) | Net::FastStyle(_))
        || (two_stage && a.model.starts_with("fasterrcnn_"));
    if a.input.is_some() && !resizable {
        bail!(
            "--input does not apply to --model {}: its input size is fixed",
            a.model
        );
    }
    if a.steps.is_some() && !matches!(e.net, Net::Lm(_)) {
        bail!("--steps applies to --model lm only");
    }
    if a.sample.is_some() && !two_stage {
        bail!("--sample applies to the Faster R-CNN models only");
    }
    if two_stage && (a.batch != 1 || a.dynamic_batch) {
        bail!(
            "--batch and --dynamic-batch do not apply to --model {}: its graph takes one image",
            a.model
        );
    }
    // regions in (Fast R-CNN's and R-CNN's): always a symbolic count of them, --batch traced
    let regions = match e.net {
        Net::FastRcnn(_) => Some("rois"),
        Net::Rcnn(_) => Some("regions"),
        _ => None,
    };
    let symbolic = a.dynamic_batch || regions.is_some();
    let steps = a.steps.unwrap_or(16);
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let chw = a.input.unwrap_or(e.input);
    e.net.module().set_training(false);
    let specs = e.net.inputs(a.batch, chw, steps);
    let vocab = match &e.net {
        Net::Lm(m) => m.cfg.vocab,
        _ => 0,
    };
    // inputs from hashed uniform numbers in [0, 1) (ids: spread over the vocabulary)
    let examples = |tag: &str, batch: usize| -> Vec<Tensor> {
        e.net
            .inputs(batch, chw, steps)
            .iter()
            .map(|(name, shape, is_ids, _)| {
                let n = shape.iter().product();
                let u = hash_uniform(&format!("export/{tag}/{name}"), n);
                if *name == "rois" {
                    return rois(&u, shape[0], [chw[1], chw[2]]);
                }
                let v: Vec<f32> = u
                    .into_iter()
                    .map(|u| {
                        if *is_ids {
                            (u * vocab as f64).floor() as f32
                        } else {
                            u as f32
                        }
                    })
                    .collect();
                Tensor::from_vec(v, shape).expect("length matches")
            })
            .collect()
    };
    let named = aics_nn::state_dict(e.net.module());
    let spec = Spec {
        inputs: specs
            .iter()
            .map(|(name, _, int64, axis)| Input {
                name,
                int64: *int64,
                batch_axis: *axis,
                symbol: regions.unwrap_or("batch"),
            })
            .collect(),
        outputs: e.outputs.clone(),
        named: &named,
    };
    let names: Vec<&str> = specs.iter().map(|s| s.0).collect();
    let mut fwd = |xs: &[Tensor]| e.net.run(xs).map_err(|e| e.to_string());
    let t0 = std::time::Instant::now();
    let model = match &e.net {
        Net::FasterRcnn(m) => faster_rcnn_graph(m, &examples("trace", 1)[0]),
        _ => {
            let second = symbolic.then(|| examples("trace", a.batch + 1));
            export_with(
                &spec,
                &examples("trace", a.batch),
                second.as_deref(),
                &mut fwd,
            )
            .map_err(anyhow::Error::from)
        }
    }
    .with_context(|| format!("exporting {}", a.model))?;
    let mut checks = vec![match &a.sample {
        Some(p) => vec![photo_input(p, chw)?],
        None => examples("check", a.batch),
    }];
    if symbolic {
        checks.push(examples("check", a.batch + 2));
    }
    if two_stage {
        checks.push(examples("check-2", 1));
    }
    let (err, outputs) = if two_stage {
        check_detections(&model, &names, &checks, &mut fwd)
    } else {
        check_export(&model, &names, &checks, &mut fwd).map_err(anyhow::Error::from)
    }
    .with_context(|| format!("checking the export of {}", a.model))?;
    if err > 1e-3 {
        bail!(
            "the written graph does not reproduce {} on another input (largest relative difference {err:.2e}): an op was not traced",
            a.model
        );
    }
    let bytes: usize = model
        .graph
        .initializers
        .iter()
        .map(|t| match &t.data {
            aics_onnx::TensorData::Raw(b) => b.len(),
            _ => 0,
        })
        .sum();
    let external = a.external_data || bytes > 1_900_000_000;
    write(&model, &a.onnx, external)?;
    if let Some(dir) = &a.save_io {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // the first check's input and the model's outputs for it
        let (xs, ys) = (&checks[0], &outputs[0]);
        let npy = |name: &str, t: &Tensor| -> Result<()> {
            let path = dir.join(format!("{name}.npy"));
            aics_nn::checkpoint::write_atomic(
                &path,
                &aics_io::npz::npy_bytes(t.shape(), &t.to_vec()),
            )?;
            Ok(())
        };
        for (name, x) in names.iter().zip(xs) {
            npy(name, x)?;
        }
        for (name, y) in e.outputs.iter().zip(ys) {
            npy(name, y)?;
        }
    }
    let params: usize = model
        .graph
        .initializers
        .iter()
        .map(|t| t.dims.iter().product::<i64>() as usize)
        .sum();
    let shapes: Vec<String> = specs
        .iter()
        .map(|(n, s, _, ax)| {
            let d: Vec<String> = s
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if symbolic && Some(i) == *ax {
                        regions.unwrap_or("batch").to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            format!("{n} {}", d.join("x"))
        })
        .collect();
    println!(
        "wrote {} ({} nodes, {} initializers, {params} values, opset {}) in {:.2} s; inputs {}; aics's runner on the written graph: largest relative difference {err:.1e}",
        a.onnx.display(),
        model.graph.nodes.len(),
        model.graph.initializers.len(),
        aics_onnx::export::OPSET,
        t0.elapsed().as_secs_f64(),
        shapes.join(", "),
    );
    Ok(())
}

/// [`check_export`] for a detector's graph (outputs boxes (D, 4), scores (D), labels (D)):
/// every detection of the model matched to one of the graph's with the same label,
/// as detections of near-equal scores may come in either order. Returns the largest difference
/// of a matched box or score relative to the largest coordinate or score, and the model's
/// outputs for each input.
fn check_detections(
    model: &aics_onnx::Model,
    names: &[&str],
    inputs: &[Vec<Tensor>],
    forward: &mut aics_onnx::export::Forward<'_>,
) -> Result<(f64, Vec<Vec<Tensor>>)> {
    let mut matched = |got: &[(String, Tensor)], want: &[Tensor]| {
        let g: Vec<Vec<f32>> = got.iter().map(|(_, t)| t.to_vec()).collect();
        let w: Vec<Vec<f32>> = want.iter().map(|t| t.to_vec()).collect();
        aics_detect::boxes::match_detections((&w[0], &w[1], &w[2]), (&g[0], &g[1], &g[2]))
            .map_err(|e| aics_onnx::OnnxError::Export(e.to_string()))
    };
    Ok(aics_onnx::export::check_export_by(
        model,
        names,
        inputs,
        forward,
        &mut matched,
    )?)
}

/// The photo at `path` as a detector's graph of input size `chw` takes it: resized to it
/// (the aspect not kept), values in [0, 1], (1, 3, H, W).
pub(crate) fn photo_input(path: &Path, chw: [usize; 3]) -> Result<Tensor> {
    let img = crate::detect::open_rgb(path)?;
    let img = image::imageops::resize(
        &img,
        chw[2] as u32,
        chw[1] as u32,
        image::imageops::FilterType::Triangle,
    );
    Ok(crate::detect_tv::to_tensor(&img)?.unsqueeze(0)?)
}

/// A Faster R-CNN as one graph (aics_onnx::two_stage): its two networks traced, the first on
/// `x` (1, 3, H, W), the second with a symbolic count of regions, and joined by the proposal
/// layer, the pooling and the post-processing.
fn faster_rcnn_graph(
    m: &aics_detect::faster_rcnn::FasterRcnn,
    x: &Tensor,
) -> Result<aics_onnx::Model> {
    use aics_onnx::two_stage::{two_stage, RpnLevel, TwoStage};
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let named = aics_nn::state_dict(m);
    let params: std::collections::HashSet<String> = named.iter().map(|(n, _)| n.clone()).collect();
    let feats = {
        let _g = aics_tensor::no_grad();
        m.backbone.features(&m.transform.normalize(x)?)?
    };
    let (levels, pooled) = (feats.len(), m.roi_heads.pool.levels.min(feats.len()));
    let mut names: Vec<String> = (0..levels).map(|l| format!("rpn_objectness_{l}")).collect();
    names.extend((0..levels).map(|l| format!("rpn_deltas_{l}")));
    names.extend((0..pooled).map(|p| format!("features_{p}")));
    let spec = Spec {
        inputs: vec![Input {
            name: "input",
            int64: false,
            batch_axis: None,
            symbol: "batch",
        }],
        outputs: names.iter().map(|s| s.as_str()).collect(),
        named: &named,
    };
    let mut first = |xs: &[Tensor]| -> std::result::Result<Vec<Tensor>, String> {
        // the photo normalized in the graph
        let x = m.transform.normalize(&xs[0]).map_err(|e| e.to_string())?;
        let f = m.backbone.features(&x).map_err(|e| e.to_string())?;
        let (mut o, mut d) = (Vec::new(), Vec::new());
        for t in &f {
            let (a, b) = m.rpn.head.level(t).map_err(|e| e.to_string())?;
            o.push(a);
            d.push(b);
        }
        o.extend(d);
        o.extend(f.into_iter().take(pooled));
        Ok(o)
    };
    let first = export_with(&spec, std::slice::from_ref(x), None, &mut first)
        .context("the backbone and the region proposal network")?;
    // the second network on pooled regions, their count symbolic
    let (c, o) = (feats[0].shape()[1], m.roi_heads.pool.output);
    let pooled_input = |k: usize| {
        let shape = [k, c, o, o];
        let v = hash_uniform("export/trace/pooled", shape.iter().product());
        Tensor::from_vec(v.into_iter().map(|u| u as f32).collect(), &shape).expect("length matches")
    };
    let spec = Spec {
        inputs: vec![Input {
            name: "pooled",
            int64: false,
            batch_axis: Some(0),
            symbol: "rois",
        }],
        outputs: vec!["class_logits", "box_deltas"],
        named: &named,
    };
    let mut second = |xs: &[Tensor]| -> std::result::Result<Vec<Tensor>, String> {
        let hd = m
            .roi_heads
            .box_head
            .forward(&xs[0])
            .map_err(|e| e.to_string())?;
        let (l, d) = m
            .roi_heads
            .box_predictor
            .predict(&hd)
            .map_err(|e| e.to_string())?;
        Ok(vec![l, d])
    };
    let second = export_with(
        &spec,
        &[pooled_input(3)],
        Some(&[pooled_input(5)]),
        &mut second,
    )
    .context("the box head")?;
    let grids: Vec<(usize, usize)> = feats.iter().map(|f| (f.shape()[2], f.shape()[3])).collect();
    let anchors = m.rpn.anchor_generator.anchors((h, w), &grids)?;
    let per = m.rpn.anchor_generator.num_anchors_per_location();
    let mut at = 0;
    let mut rpn_levels = Vec::new();
    for (&(gh, gw), &a) in grids.iter().zip(&per) {
        let n = gh * gw * a;
        let Some(part) = anchors.get(at..at + n) else {
            bail!("{} anchors for the levels {grids:?}", anchors.len());
        };
        rpn_levels.push(RpnLevel {
            anchors_per_location: a,
            height: gh,
            width: gw,
            anchors: part.iter().map(|b| b.map(|v| v as f32)).collect(),
        });
        at += n;
    }
    let (rs, hs) = (&m.rpn.settings, &m.roi_heads.settings);
    let ts = TwoStage {
        image: (h, w),
        levels: rpn_levels,
        pre_nms_top_n: rs.pre_nms_top_n,
        post_nms_top_n: rs.post_nms_top_n,
        rpn_nms_thresh: rs.nms_thresh,
        rpn_score_thresh: rs.score_thresh,
        min_size: rs.min_size,
        rpn_weights: m.rpn.coder.weights,
        rpn_clip: m.rpn.coder.bbox_xform_clip,
        pool_scales: aics_detect::faster_rcnn::MultiScaleRoiAlign::scales(
            &feats[..pooled],
            &[(h, w)],
        ),
        pool_output: o,
        sampling_ratio: m.roi_heads.pool.sampling_ratio as i64,
        max_pool: m.roi_heads.pool.max_pool,
        box_weights: m.roi_heads.coder.weights,
        box_clip: m.roi_heads.coder.bbox_xform_clip,
        classes: m.num_classes,
        score_thresh: hs.score_thresh,
        nms_thresh: hs.nms_thresh,
        detections: hs.detections_per_img,
    };
    Ok(two_stage(first, second, &params, &ts)?)
}

/// `k` regions (rows of image 0, x1, y1, x2, y2) inside an image of `hw` pixels from uniform
/// numbers `u` (at least 5 a region): corners anywhere in the image, sides of at least 4 pixels.
fn rois(u: &[f64], k: usize, hw: [usize; 2]) -> Tensor {
    let (h, w) = (hw[0] as f64, hw[1] as f64);
    let mut v = Vec::with_capacity(5 * k);
    for r in u.chunks_exact(5).take(k) {
        let (x1, y1) = (r[1] * (w - 4.0), r[2] * (h - 4.0));
        let (x2, y2) = (
            x1 + 4.0 + r[3] * (w - 4.0 - x1),
            y1 + 4.0 + r[4] * (h - 4.0 - y1),
        );
        v.extend([0.0, x1 as f32, y1 as f32, x2 as f32, y2 as f32]);
    }
    Tensor::from_vec(v, &[k, 5]).expect("five values a region")
}

fn write(model: &aics_onnx::Model, path: &Path, external: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if external {
        // tensors under 1 KiB stay in the model file
        aics_onnx::save_with_external_data(model, path, 1024)?;
    } else {
        aics_onnx::save(model, path)?;
    }
    Ok(())
}
