//! Darknet cfg and weights files, and YOLOv3-tiny against the darknet program
//! (fixtures/darknet/yolov3_tiny.json, made by fixtures/gen_darknet.py).

use std::path::PathBuf;

use aics_detect::darknet::{parse_cfg, Darknet, Layer};
use aics_detect::yolo::{Planar, Yolo, YoloDetection, YoloSettings};
use aics_testkit::json;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SMALL: &str = "[net]
width=16
height=16
channels=3

# a comment
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=6
size=1
activation=linear
";

#[test]
fn cfg_errors_name_the_line() {
    let cases = [
        ("[net]\nwidth=16\nheight 16\n", "line 3"),
        ("[net]\nwidth=16\n[convolutional\n", "line 3"),
        ("width=16\n[net]\n", "line 1"),
        (
            "[net]\nwidth=16\nheight=16\nchannels=3\n[convolutional]\nfilters=abc\n",
            "line 6",
        ),
        (
            "[net]\nwidth=16\nheight=16\nchannels=3\n[frobnicate]\n",
            "line 5",
        ),
        (
            "[net]\nwidth=16\nheight=16\nchannels=3\n[route]\nlayers=-1\n",
            "line 5",
        ),
        (
            "[net]\nwidth=16\nheight=16\nchannels=3\n[convolutional]\nactivation=swish\n",
            "line 6",
        ),
    ];
    for (text, want) in cases {
        let e = match Darknet::from_cfg(text) {
            Ok(_) => panic!("accepted a bad cfg:\n{text}"),
            Err(e) => e,
        };
        assert!(
            e.starts_with(want),
            "{text:?}: `{e}` should start with `{want}`"
        );
    }
    assert_eq!(parse_cfg(SMALL).unwrap().len(), 4);
}

#[test]
fn shapes_follow_darknet() {
    let net = Darknet::from_cfg(SMALL).unwrap();
    assert_eq!(net.shapes, vec![(4, 16, 16), (4, 8, 8), (6, 8, 8)]);
    // darknet's maxpool keeps the size at stride 1 (padding size − 1, after the data)
    let n =
        Darknet::from_cfg("[net]\nwidth=13\nheight=13\nchannels=2\n[maxpool]\nsize=2\nstride=1\n")
            .unwrap();
    assert_eq!(n.shapes, vec![(2, 13, 13)]);
    let n = Darknet::from_cfg(
        "[net]\nwidth=416\nheight=416\nchannels=2\n[maxpool]\nsize=2\nstride=2\n",
    )
    .unwrap();
    assert_eq!(n.shapes, vec![(2, 208, 208)]);
}

fn weights_file(net: &Darknet, extra: isize, major: i32, minor: i32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [major, minor, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    if major * 10 + minor >= 2 {
        b.extend_from_slice(&7i64.to_le_bytes());
    } else {
        b.extend_from_slice(&7i32.to_le_bytes());
    }
    let n = (net.num_weights() as isize + extra) as usize;
    for i in 0..n {
        b.extend_from_slice(&(i as f32 * 1e-3).to_le_bytes());
    }
    b
}

#[test]
fn weights_are_read_in_darknet_order_and_counted() {
    let net = Darknet::from_cfg(SMALL).unwrap();
    // 4 biases, 4 scales, 4 means, 4 variances, 4·3·3·3 weights; then 6 biases, 6·4 weights
    assert_eq!(net.num_weights(), 16 + 108 + 6 + 24);
    for (major, minor) in [(0, 2), (0, 1)] {
        let h = net
            .load_weights_bytes(&weights_file(&net, 0, major, minor))
            .unwrap();
        assert_eq!(h.seen, 7);
        let Layer::Conv(c) = &net.layers[0] else {
            panic!()
        };
        let v = |i: usize| i as f32 * 1e-3;
        assert_eq!(c.bias.to_vec()[0], v(0));
        assert_eq!(c.scales.as_ref().unwrap().to_vec()[0], v(4));
        assert_eq!(c.rolling_mean.as_ref().unwrap().to_vec()[0], v(8));
        assert_eq!(c.rolling_variance.as_ref().unwrap().to_vec()[0], v(12));
        assert_eq!(c.weight.to_vec()[0], v(16));
        let Layer::Conv(c2) = &net.layers[2] else {
            panic!()
        };
        assert_eq!(c2.bias.to_vec()[0], v(124));
        assert_eq!(c2.weight.to_vec()[23], v(153));
    }
    let short = net
        .load_weights_bytes(&weights_file(&net, -1, 0, 2))
        .unwrap_err();
    assert!(
        short.starts_with(
            "layer 2 (convolutional): weights needs 24 values but the file has 23 left"
        ),
        "{short}"
    );
    let long = net
        .load_weights_bytes(&weights_file(&net, 5, 0, 2))
        .unwrap_err();
    assert!(
        long.contains("5 values left after the last layer"),
        "{long}"
    );
    let early = net
        .load_weights_bytes(&weights_file(&net, -40, 0, 2))
        .unwrap_err();
    assert!(
        early.starts_with("layer 0 (convolutional): weights"),
        "{early}"
    );
    assert!(net.load_weights_bytes(&[0u8; 10]).is_err());
    let mut odd = weights_file(&net, 0, 0, 2);
    odd.push(0);
    assert!(net.load_weights_bytes(&odd).is_err());
}

fn cache(p: &str) -> PathBuf {
    let path = repo().join(".cache").join(p);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

fn yolo() -> Yolo {
    Yolo::load(
        &cache("weights/yolov3-tiny.cfg"),
        &cache("weights/yolov3-tiny.weights"),
    )
    .unwrap()
}

struct Want {
    class: usize,
    score: f64,
    bbox: [f64; 4],
}

fn wants(v: &Value) -> Vec<Want> {
    v.as_array()
        .expect("detections")
        .iter()
        .map(|d| {
            let b = json::f64s(&d["box"]);
            Want {
                class: d["class"].as_u64().expect("class") as usize,
                score: d["score"].as_f64().expect("score"),
                bbox: [b[0], b[1], b[2], b[3]],
            }
        })
        .collect()
}

/// Match detections to darknet's one to one: same class, every box edge within `px` pixels,
/// score within `ds`. A detection that only one side has must be within `ds` of the threshold
/// (a decoder difference can move it across).
fn compare(
    what: &str,
    got: &[YoloDetection],
    want: &[Want],
    thresh: f64,
    px: f64,
    ds: f64,
) -> usize {
    let mut used = vec![false; got.len()];
    let mut matched = 0;
    for w in want {
        let best = got
            .iter()
            .enumerate()
            .filter(|(i, g)| !used[*i] && g.class == w.class)
            .map(|(i, g)| {
                let e = (0..4)
                    .map(|k| (g.bbox[k] as f64 - w.bbox[k]).abs())
                    .fold(0.0, f64::max);
                (i, e, (g.score as f64 - w.score).abs())
            })
            .filter(|&(_, e, s)| e <= px && s <= ds)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _, _)) => {
                used[i] = true;
                matched += 1;
            }
            None => assert!(
                w.score < thresh + ds,
                "{what}: darknet's class {} {:.4} at {:?} has no match within {px} px and {ds} in {got:?}",
                w.class,
                w.score,
                w.bbox
            ),
        }
    }
    for (g, u) in got.iter().zip(&used) {
        assert!(
            *u || (g.score as f64) < thresh + ds,
            "{what}: {g:?} is not among darknet's detections"
        );
    }
    matched
}

#[test]
#[ignore = "needs the YOLOv3-tiny weights fetched by scripts/setup.sh"]
fn yolov3_tiny_equals_darknet_on_png() {
    let f = json::load("darknet/yolov3_tiny.json");
    let y = yolo();
    let mut n = 0;
    for im in f["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["png"].as_bool() == Some(true))
    {
        let file = repo().join(im["file"].as_str().unwrap());
        let img = Planar::open(&file).unwrap();
        for (key, thresh) in [("detections", 0.25f32), ("detections_thresh_0.1", 0.1)] {
            let got = y.detect(&img, YoloSettings { thresh, nms: 0.45 }).unwrap();
            let want = wants(&im[key]);
            assert_eq!(got.len(), want.len(), "{}: {key}: {got:?}", file.display());
            n += compare(
                &format!("{} {key}", file.display()),
                &got,
                &want,
                thresh as f64,
                1.0,
                1e-3,
            );
        }
    }
    assert!(n >= 30, "only {n} detections compared");
}

#[test]
#[ignore = "needs the YOLOv3-tiny weights and darknet's photos fetched by scripts/setup.sh"]
fn yolov3_tiny_equals_darknet_on_jpeg() {
    let f = json::load("darknet/yolov3_tiny.json");
    let y = yolo();
    let mut n = 0;
    for im in f["images"].as_array().unwrap() {
        let name = im["image"].as_str().unwrap();
        if !name.ends_with(".jpg") {
            continue;
        }
        let img = Planar::open(&cache(&format!("darknet/data/{name}"))).unwrap();
        let got = y.detect(&img, YoloSettings::default()).unwrap();
        n += compare(name, &got, &wants(&im["detections"]), 0.25, 2.0, 0.02);
    }
    assert!(n >= 20, "only {n} detections compared");
}

#[test]
#[ignore = "needs darknet's cfg files fetched by scripts/setup.sh"]
fn darknet_cfgs_build() {
    for (cfg, heads) in [
        ("yolov1.cfg", "detection"),
        ("yolov1-tiny.cfg", "detection"),
        ("yolov2-tiny-voc.cfg", "region"),
        ("yolov3-tiny.cfg", "yolo"),
    ] {
        let net = Darknet::read_cfg(&cache(&format!("darknet/cfg/{cfg}"))).unwrap();
        assert!(net.layers.iter().any(|l| l.kind() == heads), "{cfg}");
    }
    let net = Darknet::read_cfg(&cache("darknet/cfg/yolov1-tiny.cfg")).unwrap();
    assert_eq!(*net.shapes.last().unwrap(), (7 * 7 * (20 + 2 * 5), 1, 1));
}
