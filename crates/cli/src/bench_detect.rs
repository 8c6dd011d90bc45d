//! The chapter detectors' training workloads for `aics bench`: one optimiser step (forward,
//! loss, backward, Adam) of each model `aics detect-train` trains, at 192² with the batch the
//! comparison script uses, and R-CNN's unit of work, a batch of warped regions through
//! MobileNetV2. `bench/torch_bench.py` builds the same networks and losses in PyTorch and
//! torchvision and runs the same workloads (same images, boxes and proposals, from the formulas
//! below).

use aics_detect::faster_rcnn::{FastRcnn, FasterRcnn, RcnnTrainSettings};
use aics_detect::selective_search::RgbView;
use aics_detect::ssd::{Ssd, Target};
use aics_detect::yolov1::{yolov1_loss, V1Object, Yolov1Scales};
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Adam, Module};
use aics_tensor::{no_grad, Rng, Tensor};
use anyhow::Result;

use crate::bench::{time, Outcome};
use crate::detect_train::{head_output, yolov1_cfg, yolov1_head, HeadKind};

const SIZE: usize = 192;
const CLASSES: usize = 5;

/// `n` images (3, 192, 192) in [0, 1], key-hashed.
fn images(n: usize) -> Vec<Tensor> {
    let u = aics_tensor::hash_uniform("bench.detect.images", n * 3 * SIZE * SIZE);
    u.chunks_exact(3 * SIZE * SIZE)
        .map(|c| {
            Tensor::from_vec(c.iter().map(|&v| v as f32).collect(), &[3, SIZE, SIZE])
                .expect("3×192×192")
        })
        .collect()
}

/// Three objects in image `i` (xyxy pixels, labels 1 … 5), laid out by a formula that
/// `bench/torch_bench.py` repeats.
fn targets(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| {
            let mut t = Target::default();
            for j in 0..3 {
                let (x0, y0) = ((12 + 56 * j + 4 * (i % 4)) as f32, (20 + 44 * j) as f32);
                let (w, h) = ((28 + 8 * j) as f32, (44 - 6 * j) as f32);
                t.boxes.push([x0, y0, x0 + w, y0 + h]);
                t.labels.push(1 + (i + j) % CLASSES);
            }
            t
        })
        .collect()
}

/// 200 proposals an image, as selective search gives about that many on these scenes.
fn proposals(n: usize) -> Vec<Vec<[f32; 4]>> {
    let one: Vec<[f32; 4]> = (0..200)
        .map(|k| {
            let (x0, y0) = (((k * 37) % 150) as f32, ((k * 53) % 150) as f32);
            let (w, h) = ((16 + (k * 7) % 48) as f32, (16 + (k * 11) % 48) as f32);
            [x0, y0, (x0 + w).min(192.0), (y0 + h).min(192.0)]
        })
        .collect();
    vec![one; n]
}

fn batch(images: &[Tensor]) -> Result<Tensor> {
    let refs: Vec<&Tensor> = images.iter().collect();
    Ok(Tensor::stack(&refs, 0)?)
}

/// Median seconds of one Adam step of `loss` over `m`'s parameters.
fn step_time(
    m: &dyn Module,
    min_time: f64,
    mut loss: impl FnMut() -> Result<Tensor>,
) -> Result<f64> {
    m.set_training(true);
    let mut opt = Adam::new(parameters(m)).lr(1e-3);
    time(min_time, || {
        opt.zero_grad();
        let l = loss()?;
        l.backward()?;
        opt.step()?;
        Ok(())
    })
}

pub(crate) fn run(
    want: &dyn Fn(&str) -> bool,
    min_time: f64,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    let classes = CLASSES + 1;
    let mut push = |name: &'static str, s: f64, n: usize| {
        out.push(Outcome {
            name,
            seconds: s,
            flop: None,
            images: Some(n as f64 / s),
            tokens: None,
            peak_mb: None,
        })
    };
    if want("yolov1_train_192_b16") {
        let n = 16;
        let cfg = yolov1_cfg(SIZE, SIZE / 32, CLASSES, HeadKind::Conv);
        let net = aics_detect::darknet::Darknet::from_cfg(&cfg)
            .map_err(|e| anyhow::anyhow!("yolov1 cfg: {e}"))?;
        net.randomize(&mut Rng::new(0));
        let head = yolov1_head(&net, HeadKind::Conv, CLASSES, SIZE / 32)
            .ok_or_else(|| anyhow::anyhow!("yolov1: no head"))?;
        let x = batch(&images(n))?;
        let objs: Vec<Vec<V1Object>> = targets(n)
            .iter()
            .map(|t| {
                t.boxes
                    .iter()
                    .zip(&t.labels)
                    .map(|(b, &l)| V1Object {
                        class: l - 1,
                        bbox: [
                            (b[0] + b[2]) / 2.0 / SIZE as f32,
                            (b[1] + b[3]) / 2.0 / SIZE as f32,
                            (b[2] - b[0]) / SIZE as f32,
                            (b[3] - b[1]) / SIZE as f32,
                        ],
                    })
                    .collect()
            })
            .collect();
        let s = step_time(&net, min_time, || {
            let o = head_output(&net, &x, HeadKind::Conv, &head)?;
            let l = yolov1_loss(&o, &head, &objs, Yolov1Scales::default())?;
            Ok(l.loss.mul_scalar(1.0 / n as f64))
        })?;
        push("yolov1_train_192_b16", s, n);
    }
    if want("ssd_train_192_b16") {
        let n = 16;
        let m = Ssd::small(classes, SIZE, 0)?;
        let x = batch(&images(n))?.add_scalar(-0.5).mul_scalar(2.0);
        let t = targets(n);
        let s = step_time(&m, min_time, || {
            let l = m.loss(&x, &t)?;
            Ok(l.bbox_regression.add(&l.classification)?)
        })?;
        push("ssd_train_192_b16", s, n);
    }
    if want("faster_rcnn_train_192_b8") {
        let n = 8;
        let m = FasterRcnn::small(classes, SIZE, 0)?;
        let ts = RcnnTrainSettings {
            box_batch: 128,
            ..Default::default()
        };
        let (x, t) = (images(n), targets(n));
        let mut rng = Rng::new(0);
        let s = step_time(&m, min_time, || {
            Ok(m.losses(&x, &t, &ts, &mut rng)?.total()?)
        })?;
        push("faster_rcnn_train_192_b8", s, n);
    }
    if want("fast_rcnn_train_192_b2") {
        let n = 2;
        let m = FastRcnn::small(classes, SIZE, 0)?;
        let (x, t, p) = (images(n), targets(n), proposals(n));
        let mut rng = Rng::new(0);
        let s = step_time(&m, min_time, || {
            let (c, b) = m.losses(&x, &p, &t, &mut rng)?;
            Ok(c.add(&b)?)
        })?;
        push("fast_rcnn_train_192_b2", s, n);
    }
    if want("rcnn_regions_96_b64") {
        // 64 of the proposals warped (16 px of context) and through MobileNetV2's features
        let n = 64;
        let u = aics_tensor::hash_uniform("bench.detect.images", 3 * SIZE * SIZE);
        let px: Vec<u8> = u.iter().map(|&v| (v * 255.0) as u8).collect();
        let img = RgbView {
            width: SIZE,
            height: SIZE,
            pixels: &px,
        };
        let m = crate::detect_rcnn::build(classes, 96, Some(Some(std::path::Path::new("none"))))?;
        let p = &proposals(1)[0][..n];
        let _g = no_grad();
        let s = time(min_time, || {
            m.features(&img, p, true)?;
            Ok(())
        })?;
        push("rcnn_regions_96_b64", s, n);
    }
    Ok(())
}
