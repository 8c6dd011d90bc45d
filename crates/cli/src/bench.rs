//! `aics bench`: the speed workloads, one JSON line each (`{"workload", "seconds", "gflop_s"}`),
//! timed as the median of repeated runs after warm-up. `bench/torch_bench.py` runs the same
//! workloads in PyTorch and `bench/compare.py` prints the ratios.

use std::time::Instant;

use aics_nn::loss::cross_entropy;
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Module, Sgd};
use aics_tensor::{no_grad, ConvParams, PoolParams, Rng, Tensor};
use aics_vision::{build, ModelConfig};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// One JSON line per workload instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only workloads whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Minimum seconds of timed runs per workload.
    #[arg(long, default_value_t = 1.0)]
    pub min_time: f64,
    /// Time one model workload layer by layer and convolution by convolution (with the kernel
    /// each ran on) instead: vgg19_fwd_b1, resnet50_fwd_b1, resnet50_fwd_b8 or
    /// mobilenet_v2_fwd_b1. The median of 7 passes after 2 warm-up ones.
    #[arg(long)]
    pub profile: Option<String>,
    /// Run the whole-model inference workloads (and --profile) on the plain path, without
    /// `prepare_inference` (no batch norm folding, no fused activations or residual adds).
    #[arg(long)]
    pub plain: bool,
}

/// The whole-model inference workloads: (workload, zoo model, batch), at 224².
const MODEL_WORKLOADS: [(&str, &str, usize); 4] = [
    ("vgg19_fwd_b1", "vgg19", 1),
    ("resnet50_fwd_b1", "resnet50", 1),
    ("resnet50_fwd_b8", "resnet50", 8),
    ("mobilenet_v2_fwd_b1", "mobilenet_v2", 1),
];

/// The ONNX workloads: (workload, file in .cache/onnx-bench written by bench/export_onnx.py).
const ONNX_WORKLOADS: [(&str, &str); 2] = [
    ("onnx_resnet50_b1", "resnet50.onnx"),
    ("onnx_mobilenet_v2_b1", "mobilenet_v2.onnx"),
];

/// Zoo model `model` for 224² ImageNet inputs in evaluation mode, on the inference path (as
/// `aics classify` runs it) unless `plain`.
fn imagenet_model(model: &str, plain: bool) -> Result<Box<dyn Module>> {
    let cfg = ModelConfig {
        in_shape: [3, 224, 224],
        num_classes: 1000,
        hidden: vec![],
        seed: 0,
    };
    let mut m = build(model, &cfg)?;
    m.set_training(false);
    if !plain {
        m.prepare_inference()?;
    }
    Ok(m)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `aics bench --profile WORKLOAD`: per-layer and per-convolution times of one forward pass.
fn profile(name: &str, json: bool, plain: bool) -> Result<()> {
    let Some(&(_, model, batch)) = MODEL_WORKLOADS.iter().find(|w| w.0 == name) else {
        let names: Vec<&str> = MODEL_WORKLOADS.iter().map(|w| w.0).collect();
        anyhow::bail!("--profile takes one of {}; got {name}", names.join(", "));
    };
    let m = imagenet_model(model, plain)?;
    let x = Tensor::<f32>::randn(&[batch, 3, 224, 224], 0.0, 1.0, &mut Rng::new(0));
    let _g = no_grad();
    for _ in 0..2 {
        m.forward(&x)?;
    }
    const RUNS: usize = 7;
    let mut totals = Vec::new();
    let mut layers: Vec<(aics_nn::SummaryRow, Vec<f64>)> = Vec::new();
    let mut convs: Vec<(aics_tensor::profile::OpRecord, Vec<f64>)> = Vec::new();
    for run in 0..RUNS {
        let t = Instant::now();
        let (sum, ops) = aics_tensor::profile::record_ops(|| aics_nn::inspect::summary(&m, &x));
        totals.push(t.elapsed().as_secs_f64());
        let sum = sum?;
        if run == 0 {
            layers = sum.rows.into_iter().map(|r| (r, Vec::new())).collect();
            convs = ops.into_iter().map(|o| (o, Vec::new())).collect();
            continue;
        }
        for ((_, v), r) in layers.iter_mut().zip(&sum.rows) {
            v.push(r.seconds);
        }
        for ((_, v), o) in convs.iter_mut().zip(&ops) {
            v.push(o.seconds);
        }
    }
    let total = median(totals);
    let gflops = |macs: u64, s: f64| 2.0 * macs as f64 / s / 1e9;
    let layer_rows: Vec<(aics_nn::SummaryRow, f64)> = layers
        .into_iter()
        .map(|(r, v)| {
            let t = if v.is_empty() { r.seconds } else { median(v) };
            (r, t)
        })
        .collect();
    let conv_rows: Vec<(aics_tensor::profile::OpRecord, f64)> = convs
        .into_iter()
        .map(|(o, v)| {
            let t = if v.is_empty() { o.seconds } else { median(v) };
            (o, t)
        })
        .collect();
    let conv_total: f64 = conv_rows.iter().map(|c| c.1).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({"workload": name, "seconds": total, "conv_seconds": conv_total, "threads": aics_tensor::num_threads()})
        );
        for (r, t) in &layer_rows {
            println!(
                "{}",
                serde_json::json!({"layer": r.name, "type": r.layer, "output": r.output, "macs": r.macs, "seconds": t})
            );
        }
        for (o, t) in &conv_rows {
            println!(
                "{}",
                serde_json::json!({"op": o.op, "detail": o.detail, "macs": o.macs, "seconds": t})
            );
        }
        return Ok(());
    }
    println!(
        "# {name}: {:.2} ms a pass on {} threads (median of {RUNS}); convolutions {:.2} ms ({:.0}%)",
        total * 1e3,
        aics_tensor::num_threads(),
        conv_total * 1e3,
        100.0 * conv_total / total
    );
    println!(
        "{:<24} {:<34} {:>18} {:>9} {:>6} {:>8}",
        "layer", "type", "output", "ms", "%", "GFLOP/s"
    );
    for (r, t) in &layer_rows {
        let out = format!("{:?}", r.output);
        println!(
            "{:<24} {:<34} {:>18} {:>9.3} {:>6.1} {:>8.1}",
            r.name,
            r.layer.chars().take(34).collect::<String>(),
            out,
            t * 1e3,
            100.0 * t / total,
            gflops(r.macs as u64, *t)
        );
    }
    println!();
    println!("convolutions, slowest first:");
    println!(
        "{:<64} {:>9} {:>6} {:>8}",
        "kernel: shape", "ms", "%", "GFLOP/s"
    );
    let mut sorted: Vec<&(aics_tensor::profile::OpRecord, f64)> = conv_rows.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (o, t) in sorted {
        println!(
            "{:<64} {:>9.3} {:>6.1} {:>8.1}",
            o.detail,
            t * 1e3,
            100.0 * t / total,
            gflops(o.macs, *t)
        );
    }
    Ok(())
}

/// The (key prefix, factor) pairs by which the parity fixtures scale a detector's key-hashed
/// weights (`fixtures/rcnn/*.json`; none when the fixtures are not there).
fn detector_scales(model: &str) -> Vec<(String, f64)> {
    let read = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(format!("fixtures/rcnn/{f}")).ok()?).ok()
    };
    if model.starts_with("fasterrcnn") {
        let key = model.replace("_320_fpn", "_fpn");
        read("faster_rcnn.json")
            .and_then(|v| v["models"][&key]["lateral_scale"].as_f64())
            .map(|f| vec![("backbone.fpn.inner_blocks.".to_string(), f)])
            .unwrap_or_default()
    } else {
        read("ssd.json")
            .and_then(|v| {
                v["models"][model]["scaled"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_f64()?)))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

/// Median seconds of `f` over at least 5 runs and `min_time` seconds, after 2 warm-up runs.
pub(crate) fn time(min_time: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed().as_secs_f64() < min_time && times.len() < 200) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

pub(crate) struct Outcome {
    pub(crate) name: &'static str,
    pub(crate) seconds: f64,
    pub(crate) flop: Option<f64>,
    pub(crate) images: Option<f64>,
    /// Tokens a second, for sequence models.
    pub(crate) tokens: Option<f64>,
    /// Resident memory the workload added at its peak, in MB ([`MemMark`]).
    pub(crate) peak_mb: Option<f64>,
}

/// The resident memory a workload adds at its peak: the process's peak resident set (Linux's
/// VmHWM, reset when the mark is made) less its resident set when the mark was made, before the
/// workload was built. So it counts the weights, the activations and every buffer, but not the
/// program itself. Only the first workload a run measures gets a number: the allocator keeps
/// freed memory mapped for reuse (so that training steps do not fault their buffers in again),
/// and a later workload would reuse what an earlier one left. `bash bench/peak_memory.sh` runs
/// each model workload on its own, and PyTorch and onnxruntime the same way. None where /proc
/// is not there.
pub(crate) struct MemMark(Option<f64>);

impl MemMark {
    pub(crate) fn new() -> Self {
        static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if TAKEN.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return MemMark(None);
        }
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        MemMark(if reset { status_mb("VmRSS") } else { None })
    }
    pub(crate) fn peak_mb(&self) -> Option<f64> {
        Some(status_mb("VmHWM")? - self.0?)
    }
}

/// A `kB` line of /proc/self/status, in MB.
fn status_mb(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    let kb: f64 = line[key.len() + 1..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

impl Outcome {
    /// A workload measured by its time alone.
    fn time_only(name: &'static str, seconds: f64) -> Self {
        Outcome {
            name,
            seconds,
            flop: None,
            images: None,
            tokens: None,
            peak_mb: None,
        }
    }
}

fn conv_case(rng: &mut Rng, shape: [usize; 4]) -> (Tensor, Tensor, f64) {
    let x = Tensor::<f32>::randn(&shape, 0.0, 1.0, rng);
    let w = Tensor::<f32>::randn(&[256, shape[1], 3, 3], 0.0, 0.05, rng);
    let flop = 2.0 * (shape[0] * 256 * shape[2] * shape[3] * shape[1] * 9) as f64;
    (x, w, flop)
}

/// `n` boxes in a 1000×1000 image, 10 to 110 pixels a side, and their scores, from key-hashed
/// values (`bench/torch_bench.py` makes the same ones).
fn nms_case(n: usize) -> (Tensor, Vec<f32>) {
    let u = aics_tensor::hash_uniform("bench.nms", 5 * n);
    let mut b = Vec::with_capacity(4 * n);
    for i in 0..n {
        let (x, y) = (u[i] * 1000.0, u[n + i] * 1000.0);
        let (w, h) = (10.0 + u[2 * n + i] * 100.0, 10.0 + u[3 * n + i] * 100.0);
        b.extend([x as f32, y as f32, (x + w) as f32, (y + h) as f32]);
    }
    let scores = u[4 * n..].iter().map(|&s| s as f32).collect();
    (Tensor::from_vec(b, &[n, 4]).expect("n×4 boxes"), scores)
}

/// A (1, 512, 38, 50) feature map (stride 16 of a 608×800 image) and 300 regions in it.
fn roi_case() -> (Tensor, Tensor) {
    let x = Tensor::from_vec(
        aics_tensor::hash_fill("bench.roi.x", &[1, 512, 38, 50]),
        &[1, 512, 38, 50],
    )
    .expect("feature map");
    let u = aics_tensor::hash_uniform("bench.roi.boxes", 4 * 300);
    let mut r = Vec::with_capacity(5 * 300);
    for i in 0..300 {
        let (x0, y0) = (u[4 * i] * 700.0, u[4 * i + 1] * 500.0);
        let (w, h) = (16.0 + u[4 * i + 2] * 300.0, 16.0 + u[4 * i + 3] * 300.0);
        r.extend([0.0, x0, y0, x0 + w, y0 + h].map(|v| v as f32));
    }
    (x, Tensor::from_vec(r, &[300, 5]).expect("300 regions"))
}

/// Multiply-adds of one forward pass of `m` on `x` (counted by the ops).
fn model_macs(m: &dyn Module, x: &Tensor) -> Result<usize> {
    let _g = no_grad();
    let (y, macs) = aics_tensor::profile::count_macs(|| m.forward(x));
    y?;
    Ok(macs as usize)
}

/// Median seconds of one SGD step (momentum 0.9, cross-entropy on 10 classes) of zoo model
/// `name` on batch `x`, and the step's FLOPs (3 × forward).
fn train_step(name: &str, x: &Tensor, min_time: f64) -> Result<(f64, f64)> {
    let s = x.shape();
    let model = build(
        name,
        &ModelConfig {
            in_shape: [s[1], s[2], s[3]],
            num_classes: 10,
            hidden: vec![],
            seed: 0,
        },
    )?;
    let mut opt = Sgd::new(parameters(&model)).lr(0.01).momentum(0.9);
    let y: Vec<usize> = (0..s[0]).map(|i| i % 10).collect();
    let flop = 3.0 * 2.0 * model_macs(&model, x)? as f64;
    let secs = time(min_time, || {
        opt.zero_grad();
        let loss = cross_entropy(&model.forward(x)?, &y, None, 0.0)?;
        loss.backward()?;
        opt.step()?;
        Ok(())
    })?;
    Ok((secs, flop))
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(p) = &a.profile {
        if a.filter.is_some() {
            anyhow::bail!("--profile times one workload; it takes no --filter");
        }
        return profile(p, a.json, a.plain);
    }
    let mut rng = Rng::new(0);
    let want = |n: &str| a.filter.as_ref().is_none_or(|f| n.contains(f.as_str()));
    let mut out: Vec<Outcome> = Vec::new();
    let p1 = ConvParams::default().padding(1);

    for n in [1024usize, 2048] {
        let name = if n == 1024 {
            "sgemm_1024"
        } else {
            "sgemm_2048"
        };
        if !want(name) {
            continue;
        }
        let a_ = Tensor::<f32>::randn(&[n, n], 0.0, 1.0, &mut rng);
        let b_ = Tensor::<f32>::randn(&[n, n], 0.0, 1.0, &mut rng);
        let _g = no_grad();
        let s = time(a.min_time, || {
            a_.matmul(&b_)?;
            Ok(())
        })?;
        out.push(Outcome {
            name,
            seconds: s,
            flop: Some(2.0 * (n * n * n) as f64),
            images: None,
            tokens: None,
            peak_mb: None,
        });
    }

    for (name, shape) in [
        ("conv3x3_256_56", [1, 256, 56, 56]),
        ("conv_lab33", [1, 256, 24, 40]),
    ] {
        let names: &[&str] = if name == "conv_lab33" {
            &["conv_lab33_fwd", "conv_lab33_bwd"]
        } else {
            &["conv3x3_256_56_fwd", "conv3x3_256_56_fwdbwd"]
        };
        if !names.iter().any(|n| want(n)) {
            continue;
        }
        let (x, w, flop) = conv_case(&mut rng, shape);
        let fwd = if name == "conv_lab33" {
            "conv_lab33_fwd"
        } else {
            "conv3x3_256_56_fwd"
        };
        if want(fwd) {
            let _g = no_grad();
            let s = time(a.min_time, || {
                x.conv2d(&w, None, p1)?;
                Ok(())
            })?;
            out.push(Outcome {
                name: fwd,
                seconds: s,
                flop: Some(flop),
                images: None,
                tokens: None,
                peak_mb: None,
            });
        }
        let xg = x.detach().requires_grad_(true);
        let wg = w.detach().requires_grad_(true);
        let gy =
            Tensor::<f32>::randn(&[shape[0], 256, shape[2], shape[3]], 0.0, 1.0, &mut rng).to_vec();
        if name == "conv3x3_256_56" && want("conv3x3_256_56_fwdbwd") {
            let s = time(a.min_time, || {
                let y = xg.conv2d(&wg, None, p1)?;
                y.backward_with(gy.clone())?;
                Ok(())
            })?;
            out.push(Outcome {
                name: "conv3x3_256_56_fwdbwd",
                seconds: s,
                flop: Some(3.0 * flop),
                images: None,
                tokens: None,
                peak_mb: None,
            });
        }
        if name == "conv_lab33" && want("conv_lab33_bwd") {
            // backward only: the forward runs outside the timed region
            let mut times = Vec::new();
            let start = Instant::now();
            let mut i = 0;
            while times.len() < 5
                || (start.elapsed().as_secs_f64() < 2.0 * a.min_time && times.len() < 200)
            {
                let y = xg.conv2d(&wg, None, p1)?;
                let t = Instant::now();
                y.backward_with(gy.clone())?;
                if i >= 2 {
                    times.push(t.elapsed().as_secs_f64());
                }
                i += 1;
            }
            times.sort_by(|a, b| a.total_cmp(b));
            out.push(Outcome {
                name: "conv_lab33_bwd",
                seconds: times[times.len() / 2],
                flop: Some(2.0 * flop),
                images: None,
                tokens: None,
                peak_mb: None,
            });
        }
    }

    if want("maxpool3s2_fwdbwd") {
        let x = Tensor::<f32>::randn(&[1, 64, 112, 112], 0.0, 1.0, &mut rng).requires_grad_(true);
        let p = PoolParams::new(3).stride(2).padding(1);
        let gy = vec![1.0f32; 64 * 56 * 56];
        let s = time(a.min_time, || {
            x.max_pool2d(p)?.backward_with(gy.clone())?;
            Ok(())
        })?;
        out.push(Outcome::time_only("maxpool3s2_fwdbwd", s));
    }

    // detection ops, on the same key-hashed inputs as bench/torch_bench.py
    if want("nms_10k") {
        let (boxes, scores) = nms_case(10_000);
        let s = time(a.min_time, || {
            aics_detect::nms(&boxes, &scores, 0.5)?;
            Ok(())
        })?;
        out.push(Outcome::time_only("nms_10k", s));
    }
    for name in ["roi_pool_512x38x50_300", "roi_align_512x38x50_300"] {
        if !want(name) {
            continue;
        }
        let (x, rois) = roi_case();
        let _g = no_grad();
        let s = time(a.min_time, || {
            if name.starts_with("roi_pool") {
                x.roi_pool(&rois, (7, 7), 1.0 / 16.0)?;
            } else {
                x.roi_align(&rois, (7, 7), 1.0 / 16.0, 2, false)?;
            }
            Ok(())
        })?;
        out.push(Outcome::time_only(name, s));
    }

    // YOLOv3-tiny, the official COCO weights fetched by set-up, batch norm folded: the network
    // forward to both heads' raw outputs (decoding and NMS take well under a millisecond)
    if want("yolov3_tiny_416_fwd") {
        let cfg = std::path::Path::new(".cache/weights/yolov3-tiny.cfg");
        let weights = std::path::Path::new(".cache/weights/yolov3-tiny.weights");
        if cfg.exists() && weights.exists() {
            let net = aics_detect::darknet::Darknet::read_cfg(cfg)?;
            net.load_weights(weights)?;
            let net = net.fused()?;
            let x = Tensor::from_vec(
                aics_tensor::hash_uniform("yolov3_tiny_416_fwd/input", 3 * 416 * 416)
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
                &[1, 3, 416, 416],
            )?;
            let macs = model_macs(&net, &x)?;
            let _g = no_grad();
            let s = time(a.min_time, || {
                net.forward_heads(&x)?;
                Ok(())
            })?;
            out.push(Outcome {
                name: "yolov3_tiny_416_fwd",
                seconds: s,
                flop: Some(2.0 * macs as f64),
                images: Some(1.0),
                tokens: None,
                peak_mb: None,
            });
        } else {
            eprintln!(
                "yolov3_tiny_416_fwd: skipped, {} not found (run `bash scripts/setup.sh`)",
                weights.display()
            );
        }
    }

    // torchvision's detectors: one 480×640 image, each model's own resize and post-processing,
    // eval mode, key-hashed weights scaled as the parity fixtures scale them, so that the heads
    // see unsaturated scores and post-processing has real work (the bench script gives
    // torchvision the same weights)
    for (name, model) in [
        (
            "faster_rcnn_mobilenet_320_fwd",
            "fasterrcnn_mobilenet_v3_large_320_fpn",
        ),
        ("ssd300_fwd", "ssd300_vgg16"),
        ("ssdlite320_fwd", "ssdlite320_mobilenet_v3_large"),
    ] {
        if !want(name) {
            continue;
        }
        let det = crate::detect_tv::TvDetector::build(model, 91, 0)?;
        let m = det.module();
        let scaled = detector_scales(model);
        let w: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = aics_nn::state_dict(m)
            .into_iter()
            .map(|(k, t)| {
                let mut v = if k.ends_with("num_batches_tracked") {
                    vec![0.0]
                } else {
                    aics_tensor::hash_fill(&k, t.shape())
                };
                if let Some((_, f)) = scaled.iter().find(|(p, _)| k.starts_with(p.as_str())) {
                    v.iter_mut().for_each(|x| *x = (*x as f64 * f) as f32);
                }
                (k, (t.shape().to_vec(), v))
            })
            .collect();
        aics_nn::load_state_dict(m, &w, true)?;
        m.set_training(false);
        let x = Tensor::from_vec(
            aics_tensor::hash_uniform(&format!("{name}/input"), 3 * 480 * 640)
                .iter()
                .map(|&v| v as f32)
                .collect(),
            &[3, 480, 640],
        )?;
        let _g = no_grad();
        let s = time(a.min_time, || {
            det.detect(&x)?;
            Ok(())
        })?;
        out.push(Outcome {
            name,
            seconds: s,
            flop: None,
            images: Some(1.0),
            tokens: None,
            peak_mb: None,
        });
    }

    // one training step of each chapter detector, and R-CNN's warped regions
    crate::bench_detect::run(&want, a.min_time, &mut out)?;
    // recurrent language models: a training step, and inference one token at a time
    crate::bench_rnn::run(&want, a.min_time, &mut out)?;
    // one DCGAN iteration (discriminator and generator steps) at 64²
    crate::bench_gan::run(&want, a.min_time, &mut out)?;

    if want("lenet5_train_b64") {
        let mark = MemMark::new();
        let x = Tensor::<f32>::rand(&[64, 1, 28, 28], 0.0, 1.0, &mut rng);
        let (s, _) = train_step("lenet5", &x, a.min_time)?;
        out.push(Outcome {
            name: "lenet5_train_b64",
            seconds: s,
            flop: None,
            images: Some(64.0 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    // whole models, eval-mode forward at their ImageNet size
    for (name, model, batch) in MODEL_WORKLOADS {
        if !want(name) {
            continue;
        }
        let mark = MemMark::new();
        let m = imagenet_model(model, a.plain)?;
        let x = Tensor::<f32>::randn(&[batch, 3, 224, 224], 0.0, 1.0, &mut rng);
        let flop = 2.0 * model_macs(&m, &x)? as f64;
        let _g = no_grad();
        let s = time(a.min_time, || {
            m.forward(&x)?;
            Ok(())
        })?;
        out.push(Outcome {
            name,
            seconds: s,
            flop: Some(flop),
            images: Some(batch as f64 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    // torchvision's exports (bench/export_onnx.py) through aics's ONNX runner
    for (name, file) in ONNX_WORKLOADS {
        if !want(name) {
            continue;
        }
        let path = std::path::Path::new(".cache/onnx-bench").join(file);
        if !path.exists() {
            eprintln!(
                "{name}: {} not found (python3 bench/export_onnx.py writes it); skipped",
                path.display()
            );
            continue;
        }
        let mark = MemMark::new();
        let m = aics_onnx::open(&path)?;
        let input = m.input_names().first().cloned().unwrap_or_default();
        let x = Tensor::<f32>::randn(&[1, 3, 224, 224], 0.0, 1.0, &mut rng);
        let s = time(a.min_time, || {
            m.run(&[(input.as_str(), aics_onnx::Value::F(x.clone()))])?;
            Ok(())
        })?;
        out.push(Outcome {
            name,
            seconds: s,
            flop: None,
            images: Some(1.0 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    if want("resnet18_train_32_b64") {
        let mark = MemMark::new();
        let x = Tensor::<f32>::randn(&[64, 3, 32, 32], 0.0, 1.0, &mut rng);
        let (s, flop) = train_step("resnet18", &x, a.min_time)?;
        out.push(Outcome {
            name: "resnet18_train_32_b64",
            seconds: s,
            flop: Some(flop),
            images: Some(64.0 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    // one Gatys step: VGG19 to relu5_1, content + style (+ TV) losses, backward to the image
    for (name, h, w, textbook) in [
        ("gatys_step_256", 256, 256, false),
        ("gatys_step_512", 512, 512, false),
        ("gatys_step_textbook", 192, 320, true),
    ] {
        if !want(name) {
            continue;
        }
        use aics_style::gatys::{self, Config};
        let mark = MemMark::new();
        let cfg = if textbook {
            Config::textbook()
        } else {
            Config::default()
        };
        let (vgg, targets, x) = gatys::random_problem(h, w, &cfg, 0)?;
        let s = time(a.min_time, || {
            x.zero_grad();
            let (total, _) = gatys::loss(&vgg, &x, &targets, &cfg)?;
            total.backward()?;
            Ok(())
        })?;
        out.push(Outcome {
            peak_mb: mark.peak_mb(),
            ..Outcome::time_only(name, s)
        });
    }

    // fast style transfer: the transformation network's forward pass on a 512² photo
    if want("fast_style_512") {
        let mark = MemMark::new();
        let net = aics_style::fast::transform_net(0)?;
        net.set_training(false);
        let x = Tensor::<f32>::rand(&[1, 3, 512, 512], 0.0, 1.0, &mut rng);
        let _g = aics_tensor::no_grad();
        let s = time(a.min_time, || {
            net.forward(&x)?;
            Ok(())
        })?;
        out.push(Outcome {
            name: "fast_style_512",
            seconds: s,
            flop: None,
            images: Some(1.0 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    // one fast-style training step: the transformation network on 4 photos at 256², the
    // perceptual loss through VGG19 (random weights) to relu4_3, backward, Adam
    if want("fast_style_train_256_b4") {
        let mark = MemMark::new();
        use aics_style::vgg::{InputSpace, Vgg19, CAFFE_MEAN_RGB};
        let vgg = Vgg19::random(
            0,
            InputSpace::Caffe {
                bgr: true,
                mean_rgb: CAFFE_MEAN_RGB,
            },
        );
        let painting = Tensor::<f32>::rand(&[1, 3, 256, 256], 0.0, 1.0, &mut rng);
        let losses = aics_style::fast::Perceptual::new(&vgg, &painting, 1.0, 5.0, 1e2)?;
        let net = aics_style::fast::transform_net(0)?;
        let mut opt = aics_nn::Adam::new(parameters(&net)).lr(1e-3);
        let x = Tensor::<f32>::rand(&[4, 3, 256, 256], 0.0, 1.0, &mut rng);
        let s = time(a.min_time, || {
            opt.zero_grad();
            let y = net.forward(&x)?;
            let (total, _) = losses.loss(&vgg, &x, &y)?;
            total.backward()?;
            opt.step()?;
            Ok(())
        })?;
        out.push(Outcome {
            name: "fast_style_train_256_b4",
            seconds: s,
            flop: None,
            images: Some(4.0 / s),
            tokens: None,
            peak_mb: mark.peak_mb(),
        });
    }

    let threads = aics_tensor::num_threads();
    // the machine's measured FMA peak on these threads, for each vector width it has
    let peaks = aics_tensor::cpu::simd::fma_peak(0.3);
    let peak = peaks.iter().map(|p| p.1).fold(0.0, f64::max);
    let simd = aics_tensor::cpu::simd::level_name();
    if a.json {
        let mut v = serde_json::json!({"workload": "_info", "threads": threads, "simd": simd});
        for (name, g) in &peaks {
            v[format!("fma_peak_{name}")] = serde_json::json!(g);
        }
        println!("{v}");
    } else {
        let p: Vec<String> = peaks
            .iter()
            .map(|(n, g)| format!("{n} {g:.0} GFLOP/s"))
            .collect();
        println!(
            "# {threads} threads, kernels for {simd}; measured FMA peak: {}",
            if p.is_empty() {
                "-".into()
            } else {
                p.join(", ")
            }
        );
        println!(
            "{:<24} {:>12} {:>10} {:>7} {:>10} {:>9}",
            "workload", "seconds", "GFLOP/s", "% peak", "images/s", "peak MB"
        );
    }
    for o in &out {
        let gflops = o.flop.map(|f| f / o.seconds / 1e9);
        let share = gflops.filter(|_| peak > 0.0).map(|g| g / peak);
        if a.json {
            let mut v = serde_json::json!({"workload": o.name, "seconds": o.seconds, "gflop_s": gflops, "peak_share": share, "threads": threads});
            if let Some(i) = o.images {
                v["images_s"] = serde_json::json!(i);
            }
            if let Some(t) = o.tokens {
                v["tokens_s"] = serde_json::json!(t);
            }
            if let Some(m) = o.peak_mb {
                v["peak_mb"] = serde_json::json!(m);
            }
            println!("{v}");
        } else {
            let g = gflops
                .map(|g| format!("{g:.1}"))
                .unwrap_or_else(|| "-".into());
            let i = o
                .images
                .map(|i| format!("{i:.0}"))
                .or(o.tokens.map(|t| format!("{t:.0} tok")))
                .unwrap_or_else(|| "-".into());
            let sh = share
                .map(|s| format!("{:.0}", 100.0 * s))
                .unwrap_or_else(|| "-".into());
            let mb = o
                .peak_mb
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<24} {:>12.6} {:>10} {:>7} {:>10} {:>9}",
                o.name, o.seconds, g, sh, i, mb
            );
        }
    }
    Ok(())
}
