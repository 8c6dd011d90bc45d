//! A small YOLOv1 (darknet cfg, random weights) learns synthetic scenes with the YOLOv1 loss:
//! the loss falls and the trained network finds the objects of its training scenes.

use aics_detect::darknet::{Darknet, HeadOutput, Layer};
use aics_detect::data::Detection;
use aics_detect::synth::{scene, SynthConfig};
use aics_detect::yolo::{decode_detection, nms_sort};
use aics_detect::yolov1::{yolov1_loss, V1Object, Yolov1Scales};
use aics_detect::{voc_eval, VocAp};
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Adam, Module};
use aics_tensor::{Rng, Tensor};

const CFG: &str = "[net]\nwidth=64\nheight=64\nchannels=3\n\
[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=leaky\n[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=32\nsize=3\npad=1\nactivation=leaky\n[maxpool]\nsize=2\nstride=2\n\
[convolutional]\nbatch_normalize=1\nfilters=32\nsize=3\npad=1\nactivation=leaky\n[maxpool]\nsize=2\nstride=2\n\
[connected]\noutput=256\nactivation=leaky\n\
[connected]\noutput=224\nactivation=linear\n\
[detection]\nclasses=4\ncoords=4\nside=4\nnum=2\nsqrt=1\nrescore=1\n";

#[test]
fn yolov1_learns_its_training_scenes() {
    let net = Darknet::from_cfg(CFG).unwrap();
    net.randomize(&mut Rng::new(1));
    let head = net
        .layers
        .iter()
        .find_map(|l| {
            if let Layer::Detection(h) = l {
                Some(h.clone())
            } else {
                None
            }
        })
        .unwrap();
    let cfg = SynthConfig {
        images: 8,
        classes: 4,
        width: 64,
        height: 64,
        min_objects: 1,
        max_objects: 2,
        min_size: 12.0,
        max_overlap: 0.1,
        seed: 3,
    };
    let scenes: Vec<_> = (0..cfg.images)
        .map(|i| scene(&cfg, i, None).unwrap())
        .collect();
    let mut x = Vec::new();
    for s in &scenes {
        for c in 0..3 {
            for p in 0..64 * 64 {
                x.push(s.rgb[p * 3 + c] as f32 / 255.0);
            }
        }
    }
    let x = Tensor::from_vec(x, &[cfg.images, 3, 64, 64]).unwrap();
    let objects: Vec<Vec<V1Object>> = scenes
        .iter()
        .map(|s| {
            s.objects
                .iter()
                .map(|&(c, b)| V1Object {
                    class: c as usize - 1,
                    bbox: [
                        ((b[0] + b[2] / 2.0) / 64.0) as f32,
                        ((b[1] + b[3] / 2.0) / 64.0) as f32,
                        (b[2] / 64.0) as f32,
                        (b[3] / 64.0) as f32,
                    ],
                })
                .collect()
        })
        .collect();
    let mut opt = Adam::new(parameters(&net)).lr(2e-3);
    net.set_training(true);
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..300 {
        opt.zero_grad();
        let out = net.forward(&x).unwrap();
        let l = yolov1_loss(&out, &head, &objects, Yolov1Scales::default()).unwrap();
        let v = l.loss.to_vec()[0];
        assert!(v.is_finite());
        first.get_or_insert(v);
        last = v;
        l.loss.backward().unwrap();
        opt.step().unwrap();
    }
    let first = first.unwrap();
    assert!(last < 0.1 * first, "loss {first} → {last}");
    // the trained network finds its training objects
    net.set_training(false);
    let _g = aics_tensor::no_grad();
    let mut dets = Vec::new();
    for (i, s) in scenes.iter().enumerate() {
        let xi = x.narrow(0, i, 1).unwrap();
        for h in net.forward_heads(&xi).unwrap() {
            let HeadOutput::Detection(hd, t) = h else {
                continue;
            };
            let mut c = decode_detection(hd, &t, 64, 64, 0.2).unwrap();
            nms_sort(&mut c, 0.45);
            for d in aics_detect::yolo::detections(&c, 0.2) {
                let [x1, y1, x2, y2] = d.bbox;
                dets.push(Detection {
                    image_id: i as u64 + 1,
                    category_id: d.class as u64 + 1,
                    bbox: [x1 as f64, y1 as f64, (x2 - x1) as f64, (y2 - y1) as f64],
                    score: d.score as f64,
                });
            }
        }
        let _ = s;
    }
    let gt = aics_detect::data::Dataset {
        images: (0..cfg.images)
            .map(|i| aics_detect::data::Image {
                id: i as u64 + 1,
                file_name: format!("{i}.png"),
                width: 64,
                height: 64,
            })
            .collect(),
        annotations: scenes
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.objects.iter().map(move |&(c, b)| (i, c, b)))
            .enumerate()
            .map(|(k, (i, c, b))| aics_detect::data::Annotation {
                id: k as u64 + 1,
                image_id: i as u64 + 1,
                category_id: c,
                bbox: b,
                area: None,
                iscrowd: false,
                difficult: false,
            })
            .collect(),
        categories: (1..=4)
            .map(|id| aics_detect::data::Category {
                id,
                name: format!("c{id}"),
            })
            .collect(),
    };
    let map = voc_eval(&gt, &dets, 0.5, VocAp::AllPoint).map;
    eprintln!("loss {first} → {last}, training-set mAP@0.5 {map}");
    assert!(
        map > 0.7,
        "training-set mAP@0.5 {map}, {} detections",
        dets.len()
    );
}
