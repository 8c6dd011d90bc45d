//! The box operators against torchvision 0.14 (`fixtures/boxes.json`, written by
//! `fixtures/gen_boxes.py`), and the differentiable ones against f64 finite differences.

use aics_detect::{
    batched_nms, box_convert, box_iou, clip_boxes_to_image, generalized_box_iou, nms,
    remove_small_boxes, AnchorGenerator, BoxCoder, BoxFormat,
};
use aics_tensor::gradcheck::gradcheck;
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{Rng, Tensor};
use aics_testkit::json::{f64s, usizes};
use serde_json::Value;

fn fixture() -> Value {
    aics_testkit::json::load("boxes.json")
}

fn f32s(v: &Value) -> Vec<f32> {
    f64s(v).into_iter().map(|x| x as f32).collect()
}

fn boxes64(v: &Value) -> Tensor<f64> {
    let d = f64s(v);
    let n = d.len() / 4;
    Tensor::from_vec(d, &[n, 4]).unwrap()
}

fn format(s: &str) -> BoxFormat {
    match s {
        "xyxy" => BoxFormat::Xyxy,
        "xywh" => BoxFormat::Xywh,
        "cxcywh" => BoxFormat::Cxcywh,
        other => panic!("format {other}"),
    }
}

#[test]
fn iou_and_giou_forward_and_backward_equal_torchvision() {
    let fx = fixture();
    for name in ["box_iou", "generalized_box_iou"] {
        let c = &fx["differentiable"][name];
        let a = boxes64(&c["a"]).requires_grad_(true);
        let b = boxes64(&c["b"]).requires_grad_(true);
        let out = if name == "box_iou" {
            box_iou(&a, &b)
        } else {
            generalized_box_iou(&a, &b)
        }
        .unwrap();
        assert_eq!(out.shape(), &[5, 4]);
        assert_close(name, &out.to_vec(), &f64s(&c["out"]), Tol::mixed(1e-12));
        out.backward_with(f64s(&c["gout"])).unwrap();
        let tol = Tol::mixed(1e-10);
        assert_close(
            &format!("{name} grad a"),
            &a.grad().unwrap().to_vec(),
            &f64s(&c["grad_a"]),
            tol,
        );
        assert_close(
            &format!("{name} grad b"),
            &b.grad().unwrap().to_vec(),
            &f64s(&c["grad_b"]),
            tol,
        );
    }
}

#[test]
fn conversions_clipping_and_small_boxes_equal_torchvision() {
    let fx = fixture();
    let d = &fx["differentiable"];
    for c in d["box_convert"].as_array().unwrap() {
        let (from, to) = (c["from"].as_str().unwrap(), c["to"].as_str().unwrap());
        let y = box_convert(&boxes64(&c["in"]), format(from), format(to)).unwrap();
        assert_close(
            &format!("{from}→{to}"),
            &y.to_vec(),
            &f64s(&c["out"]),
            Tol::mixed(1e-12),
        );
    }
    let size = usizes(&d["clip"]["size"]);
    let y = clip_boxes_to_image(&boxes64(&d["clip"]["in"]), (size[0], size[1])).unwrap();
    assert_close(
        "clip",
        &y.to_vec(),
        &f64s(&d["clip"]["out"]),
        Tol::mixed(0.0),
    );
    let r = &d["remove_small"];
    let keep = remove_small_boxes(&boxes64(&r["in"]), r["min_size"].as_f64().unwrap()).unwrap();
    assert_eq!(keep, usizes(&r["keep"]));
}

#[test]
fn nms_and_batched_nms_equal_torchvision() {
    let fx = fixture();
    let cases = fx["nms"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for (i, c) in cases.iter().enumerate() {
        let d = f32s(&c["boxes"]);
        let n = d.len() / 4;
        let b = Tensor::from_vec(d, &[n, 4]).unwrap();
        let scores = f32s(&c["scores"]);
        let thr = c["iou"].as_f64().unwrap();
        assert_eq!(
            nms(&b, &scores, thr).unwrap(),
            usizes(&c["keep"]),
            "case {i}: nms"
        );
        let classes = usizes(&c["classes"]);
        assert_eq!(
            batched_nms(&b, &scores, &classes, thr).unwrap(),
            usizes(&c["batched_keep"]),
            "case {i}: batched_nms"
        );
    }
}

#[test]
fn box_coder_equals_torchvision() {
    let fx = fixture();
    let clip = fx["bbox_xform_clip"].as_f64().unwrap();
    for c in fx["coder"].as_array().unwrap() {
        let w = f64s(&c["weights"]);
        let coder = BoxCoder::new([w[0], w[1], w[2], w[3]]);
        assert_eq!(coder.bbox_xform_clip, clip);
        let enc = coder
            .encode(&f32s(&c["targets"]), &f32s(&c["proposals"]))
            .unwrap();
        assert_close(
            &format!("encode {w:?}"),
            &enc,
            &f32s(&c["encoded"]),
            Tol::mixed(1e-5),
        );
        let dec = coder
            .decode(&f32s(&c["deltas"]), &f32s(&c["proposals"]))
            .unwrap();
        assert_close(
            &format!("decode {w:?}"),
            &dec,
            &f32s(&c["decoded"]),
            Tol::mixed(1e-4),
        );
    }
    // decoding what was encoded gives the targets back
    let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
    let (t, p) = ([2.0f64, 3.0, 40.0, 20.0], [0.0, 0.0, 30.0, 30.0]);
    let back = coder.decode(&coder.encode(&t, &p).unwrap(), &p).unwrap();
    assert_close("round trip", &back, &t, Tol::mixed(1e-12));
    assert!(coder.encode(&t[..3], &p[..3]).is_err());
}

#[test]
fn anchors_equal_torchvision() {
    let fx = fixture();
    for c in fx["anchors"].as_array().unwrap() {
        let sizes: Vec<Vec<f64>> = c["sizes"].as_array().unwrap().iter().map(f64s).collect();
        let ratios: Vec<Vec<f64>> = c["aspect_ratios"]
            .as_array()
            .unwrap()
            .iter()
            .map(f64s)
            .collect();
        let gen = AnchorGenerator::new(sizes, ratios).unwrap();
        let image = usizes(&c["image"]);
        let grids: Vec<(usize, usize)> = c["grids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (usizes(g)[0], usizes(g)[1]))
            .collect();
        let got: Vec<f64> = gen
            .anchors((image[0], image[1]), &grids)
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_close(
            &format!("anchors {grids:?}"),
            &got,
            &f64s(&c["anchors"]),
            Tol::mixed(0.0),
        );
    }
    // the chapter's 9 anchors a location
    assert_eq!(
        AnchorGenerator::faster_rcnn().num_anchors_per_location(),
        [9]
    );
    assert!(AnchorGenerator::new(vec![vec![32.0]], vec![]).is_err());
    assert!(AnchorGenerator::new(vec![vec![-1.0]], vec![vec![1.0]]).is_err());
}

/// IoU, GIoU and the conversions in f64 against central differences, over several seeds.
#[test]
fn differentiable_box_ops_pass_gradcheck() {
    for seed in 0..5u64 {
        let mut rng = Rng::new(seed);
        let mut boxes = |n: usize| {
            let xy = Tensor::<f64>::rand(&[n, 2], 0.0, 10.0, &mut rng);
            let wh = Tensor::<f64>::rand(&[n, 2], 1.0, 6.0, &mut rng);
            Tensor::concat(&[&xy, &xy.add(&wh).unwrap()], 1).unwrap()
        };
        let (a, b) = (boxes(4), boxes(3));
        for (name, r) in [
            (
                "box_iou",
                gradcheck(
                    &|t| Ok(box_iou(&t[0], &t[1]).unwrap()),
                    &[a.copy(), b.copy()],
                    &[true, true],
                    seed,
                ),
            ),
            (
                "giou",
                gradcheck(
                    &|t| Ok(generalized_box_iou(&t[0], &t[1]).unwrap()),
                    &[a.copy(), b.copy()],
                    &[true, true],
                    seed,
                ),
            ),
            (
                "convert",
                gradcheck(
                    &|t| Ok(box_convert(&t[0], BoxFormat::Cxcywh, BoxFormat::Xyxy).unwrap()),
                    &[a.copy()],
                    &[true],
                    seed,
                ),
            ),
        ] {
            let r = r.unwrap();
            assert!(r.passed, "{name}, seed {seed}: {r:?}");
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let three = Tensor::<f64>::zeros(&[2, 3]);
    let four = Tensor::<f64>::zeros(&[2, 4]);
    assert!(box_iou(&three, &four)
        .unwrap_err()
        .to_string()
        .contains("(N, 4)"));
    assert!(nms(&four, &[1.0], 0.5)
        .unwrap_err()
        .to_string()
        .contains("1 scores for 2 boxes"));
    assert!(batched_nms(&four, &[1.0, 0.5], &[0], 0.5).is_err());
    assert_eq!(
        nms(&Tensor::<f64>::zeros(&[0, 4]), &[], 0.5).unwrap(),
        Vec::<usize>::new()
    );
}
