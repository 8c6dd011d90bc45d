//! `aics map`, `aics detect` and `aics data synth-detect` end to end: the numbers of the library
//! through the command line, and one clear line on bad input.

mod common;

use common::{aics, err, ok, tmp, TempDir};
use std::path::PathBuf;
use std::process::Command;

use aics_tensor::testing::{within, Tol};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `aics data synth-detect` into `out`: `images` scenes of `classes` classes at `size`².
fn synth_set(out: &std::path::Path, images: usize, classes: usize, size: usize, seed: u64) {
    ok(&aics(&[
        "data",
        "synth-detect",
        "--out",
        s(out),
        "--images",
        &images.to_string(),
        "--classes",
        &classes.to_string(),
        "--size",
        &size.to_string(),
        "--seed",
        &seed.to_string(),
    ]));
}

/// A fresh folder `name` with a synthetic set in `set/`: the folder, the set and its
/// `synth:` spec.
fn synth_case(
    name: &str,
    images: usize,
    classes: usize,
    size: usize,
    seed: u64,
) -> (TempDir, PathBuf, String) {
    let d = tmp(name);
    let set = d.join("set");
    synth_set(&set, images, classes, size, seed);
    let spec = format!("synth:{}", s(&set));
    (d, set, spec)
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn map_prints_pycocotools_numbers_and_voc_ap() {
    let f = fixture("map/random.json");
    let d = tmp("map");
    let (gt, dt) = (d.join("gt.json"), d.join("dt.json"));
    std::fs::write(&gt, f["gt"].to_string()).unwrap();
    std::fs::write(&dt, f["dt"].to_string()).unwrap();
    let out: Value = serde_json::from_str(&ok(&aics(&[
        "map",
        "--gt",
        s(&gt),
        "--dt",
        s(&dt),
        "--json",
    ])))
    .unwrap();
    let names = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];
    for (i, n) in names.iter().enumerate() {
        let (got, want) = (
            out[n].as_f64().unwrap(),
            f["coco"]["stats"][i].as_f64().unwrap(),
        );
        assert!(
            within(got, want, Tol::new(1e-9, 0.0)),
            "{n}: {got} vs {want}"
        );
    }
    let plot = d.join("pr.png");
    let out: Value = serde_json::from_str(&ok(&aics(&[
        "map",
        "--gt",
        s(&gt),
        "--dt",
        s(&dt),
        "--metric",
        "voc07",
        "--json",
        "--plot",
        s(&plot),
    ])))
    .unwrap();
    let want = f["voc07"]["mAP"].as_f64().unwrap();
    assert!(
        within(out["mAP"].as_f64().unwrap(), want, Tol::new(1e-9, 0.0)),
        "{out}"
    );
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
    // the table form, and VOC at another IoU
    let text = ok(&aics(&[
        "map",
        "--gt",
        s(&gt),
        "--dt",
        s(&dt),
        "--metric",
        "voc",
        "--iou",
        "0.7",
    ]));
    assert!(text.contains("mAP (voc, IoU 0.7)"), "{text}");
}

#[test]
fn map_refuses_bad_files_in_one_line() {
    let d = tmp("mapbad");
    let f = fixture("map/basic.json");
    let gt = d.join("gt.json");
    std::fs::write(&gt, f["gt"].to_string()).unwrap();
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let e = err(&aics(&["map", "--gt", s(&bad), "--dt", s(&bad)]));
    assert!(e.contains("bad.json"), "{e}");
    let dt = d.join("dt.json");
    std::fs::write(
        &dt,
        r#"[{"image_id": 7, "category_id": 999, "bbox": [1, 2, 3, 4], "score": 0.5}]"#,
    )
    .unwrap();
    let e = err(&aics(&["map", "--gt", s(&gt), "--dt", s(&dt)]));
    assert!(
        e.contains("dt.json") && (e.contains("999") || e.contains("unknown image")),
        "{e}"
    );
    std::fs::write(&dt, "[]").unwrap();
    let e = err(&aics(&[
        "map",
        "--gt",
        s(&gt),
        "--dt",
        s(&dt),
        "--metric",
        "coco",
        "--iou",
        "0.52",
    ]));
    assert!(e.contains("--iou"), "{e}");
    let xml = d.join("voc");
    std::fs::create_dir_all(&xml).unwrap();
    std::fs::write(
        xml.join("a.xml"),
        "<annotation><filename>a.png</filename><object>",
    )
    .unwrap();
    let e = err(&aics(&["map", "--gt", s(&xml), "--dt", s(&dt)]));
    assert!(e.contains("a.xml"), "{e}");
}

#[test]
fn detect_refuses_bad_input_in_one_line() {
    let d = tmp("detbad");
    let cfg = d.join("bad.cfg");
    std::fs::write(
        &cfg,
        "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters 4\n",
    )
    .unwrap();
    let w = d.join("w.weights");
    std::fs::write(&w, [0u8; 24]).unwrap();
    let names = d.join("names.txt");
    std::fs::write(&names, "a\nb\n").unwrap();
    let img = d.join("img.png");
    std::fs::write(&img, b"not a png").unwrap();
    let e = err(&aics(&[
        "detect",
        "--model",
        "darknet",
        "--cfg",
        s(&cfg),
        "--weights",
        s(&w),
        "--names",
        s(&names),
        s(&img),
    ]));
    assert!(e.contains("bad.cfg") && e.contains("line 6"), "{e}");
    let good = d.join("good.cfg");
    std::fs::write(&good, "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=14\nsize=1\nactivation=linear\n[yolo]\nmask=0,1\nanchors=4,4,8,8\nclasses=2\nnum=2\n").unwrap();
    let e = err(&aics(&[
        "detect",
        "--model",
        "darknet",
        "--cfg",
        s(&good),
        "--weights",
        s(&w),
        "--names",
        s(&names),
        s(&img),
    ]));
    assert!(e.contains("w.weights") && e.contains("layer 0"), "{e}");
    // a weights file of the right size, then an image that does not decode
    let mut bytes = Vec::new();
    for v in [0i32, 2, 0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 4 * (14 + 14 * 3)));
    std::fs::write(&w, &bytes).unwrap();
    let e = err(&aics(&[
        "detect",
        "--model",
        "darknet",
        "--cfg",
        s(&good),
        "--weights",
        s(&w),
        "--names",
        s(&names),
        s(&img),
    ]));
    assert!(e.contains("img.png"), "{e}");
    // a mismatched names file, and options that do not apply
    std::fs::write(&names, "a\n").unwrap();
    let e = err(&aics(&[
        "detect",
        "--model",
        "darknet",
        "--cfg",
        s(&good),
        "--weights",
        s(&w),
        "--names",
        s(&names),
        s(&img),
    ]));
    assert!(e.contains("names.txt"), "{e}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "mtcnn",
        "--nms",
        "0.3",
        s(&img),
    ]));
    assert!(e.contains("--nms"), "{e}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "darknet",
        "--score",
        "1.5",
        "--cfg",
        s(&good),
    ]));
    assert!(e.contains("--score"), "{e}");
}

#[test]
fn synth_detect_writes_a_data_set_map_can_score() {
    let d = tmp("synth");
    let out = d.join("set");
    ok(&aics(&[
        "data",
        "synth-detect",
        "--out",
        s(&out),
        "--images",
        "6",
        "--classes",
        "4",
        "--seed",
        "5",
        "--size",
        "128",
    ]));
    let gt: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("annotations.json")).unwrap())
            .unwrap();
    assert_eq!(gt["images"].as_array().unwrap().len(), 6);
    assert_eq!(std::fs::read_dir(out.join("voc")).unwrap().count(), 6);
    // the ground truth as detections scores 1 on both metrics
    let dets: Vec<Value> = gt["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| serde_json::json!({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}))
        .collect();
    let dt = d.join("dt.json");
    std::fs::write(&dt, serde_json::to_string(&dets).unwrap()).unwrap();
    // VOC numbers classes by name order: results name them instead
    let name = |id: &Value| {
        gt["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["id"] == id)
            .unwrap()["name"]
            .clone()
    };
    let named: Vec<Value> = dets.iter().map(|x| serde_json::json!({"image_id": x["image_id"], "category_id": name(&x["category_id"]), "bbox": x["bbox"], "score": 1.0})).collect();
    let dt_named = d.join("dt_named.json");
    std::fs::write(&dt_named, serde_json::to_string(&named).unwrap()).unwrap();
    let coco: Value = serde_json::from_str(&ok(&aics(&[
        "map",
        "--gt",
        s(&out.join("annotations.json")),
        "--dt",
        s(&dt),
        "--json",
    ])))
    .unwrap();
    assert_eq!(coco["AP50"].as_f64(), Some(1.0), "{coco}");
    let voc: Value = serde_json::from_str(&ok(&aics(&[
        "map",
        "--gt",
        s(&out.join("voc")),
        "--dt",
        s(&dt_named),
        "--metric",
        "voc",
        "--json",
    ])))
    .unwrap();
    assert_eq!(voc["mAP"].as_f64(), Some(1.0), "{voc}");
    let e = err(&aics(&[
        "data",
        "synth-detect",
        "--out",
        s(&out),
        "--classes",
        "16",
    ]));
    assert!(e.contains("classes"), "{e}");
}

#[test]
#[ignore = "needs the YOLOv3-tiny weights and darknet's photos fetched by scripts/setup.sh"]
fn detect_default_finds_the_dog_bicycle_and_truck() {
    let d = tmp("det");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_aics"))
        .current_dir(&root)
        .args([
            "detect",
            "--json",
            "--out",
            s(&d),
            "--coco-results",
            s(&d.join("r.json")),
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    let labels: Vec<&str> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].as_str().unwrap())
        .collect();
    for want in ["dog", "bicycle", "truck"] {
        assert!(labels.contains(&want), "{labels:?}");
    }
    assert!(d.join("detections.png").exists());
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(r.as_array().unwrap().len(), labels.len());
    let out = Command::new(env!("CARGO_BIN_EXE_aics"))
        .current_dir(&root)
        .args(["detect", "--model", "mtcnn", "--json", "--out", s(&d)])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["detections"].as_array().unwrap().len(), 4);
    assert_eq!(v["detections"][0]["landmarks"].as_array().unwrap().len(), 5);
}

#[test]
fn detect_train_runs_logs_and_refuses_a_different_resume() {
    let (d, set, _) = synth_case("dtrain", 20, 3, 64, 2);
    let ck = d.join("y.safetensors");
    let spec = format!("synth:{}", s(&set));
    let args = [
        "detect-train",
        "--dataset",
        &spec,
        "--size",
        "64",
        "--epochs",
        "2",
        "--batch",
        "4",
        "--checkpoint",
        s(&ck),
    ];
    let text = ok(&aics(&args));
    assert!(text.contains("epoch 2:"), "{text}");
    let log = std::fs::read_to_string(ck.with_extension("jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            v["loss"].as_f64().unwrap().is_finite() && v["val_map50_voc"].as_f64().is_some(),
            "{line}"
        );
    }
    // the checkpoint detects
    let img = set.join("images/00001.png");
    let v: Value = serde_json::from_str(&ok(&aics(&[
        "detect",
        "--model",
        "yolov1",
        "--weights",
        s(&ck),
        "--json",
        "--out",
        s(&d),
        "--score",
        "0.01",
        s(&img),
    ])))
    .unwrap();
    assert!(v["detections"].as_array().is_some(), "{v}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "yolov1",
        "--weights",
        s(&set.join("annotations.json")),
        s(&img),
    ]));
    assert!(e.contains("annotations.json"), "{e}");
    // the same settings resume (nothing left to do); others are refused in one line
    ok(&aics(&[&args[..], &["--resume"]].concat()));
    let e = err(&aics(&[
        "detect-train",
        "--dataset",
        &spec,
        "--size",
        "64",
        "--epochs",
        "3",
        "--batch",
        "4",
        "--checkpoint",
        s(&ck),
        "--resume",
    ]));
    assert!(e.contains("--resume"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--dataset",
        "synth:/nonexistent",
        "--checkpoint",
        s(&ck),
    ]));
    assert!(e.contains("nonexistent"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--dataset",
        &spec,
        "--size",
        "100",
    ]));
    assert!(e.contains("--size"), "{e}");
}

/// `--grid`: YOLOv1 at S = size/16, initialised from an S = size/32 checkpoint (the same
/// weights), predicts on the finer grid; a grid that is neither is refused in one line.
#[test]
fn detect_train_yolov1_finer_grid() {
    let (d, set, spec) = synth_case("dgrid", 12, 3, 64, 5);
    let (coarse, fine) = (d.join("s2.safetensors"), d.join("s4.safetensors"));
    let train = |ck: &std::path::Path, extra: &[&str]| {
        let args = [
            &[
                "detect-train",
                "--model",
                "yolov1",
                "--head",
                "conv",
                "--dataset",
                &spec,
                "--size",
                "64",
                "--epochs",
                "1",
                "--batch",
                "4",
                "--checkpoint",
                s(ck),
            ][..],
            extra,
        ]
        .concat();
        aics(&args)
    };
    assert!(ok(&train(&coarse, &[])).contains("S=2,"));
    let text = ok(&train(&fine, &["--grid", "4", "--init", s(&coarse)]));
    assert!(text.contains("S=4,"), "{text}");
    // every box of every cell above a tiny score, nothing suppressed: more than S = 2 could
    // give (2·2 cells × 2 boxes × 3 classes = 24), at most S = 4's 96
    let img = set.join("images/00001.png");
    let v: Value = serde_json::from_str(&ok(&aics(&[
        "detect",
        "--model",
        "yolov1",
        "--weights",
        s(&fine),
        "--json",
        "--out",
        s(&d.join("pic")),
        "--score",
        "1e-9",
        "--nms",
        "1",
        s(&img),
    ])))
    .unwrap();
    let n = v["detections"].as_array().map_or(0, |a| a.len());
    assert!(n > 24 && n <= 96, "{n} detections: {v}");
    let x = d.join("x.safetensors");
    let e = err(&train(&x, &["--grid", "3"]));
    assert!(e.contains("--grid 3 with --size 64"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "ssd",
        "--grid",
        "4",
        "--dataset",
        &spec,
        "--size",
        "64",
        "--checkpoint",
        s(&x),
    ]));
    assert!(e.contains("--model yolov1 only"), "{e}");
    assert!(!x.exists());
}

/// torchvision's detectors from a state dict: an SSDlite with 3 labels saved by the library,
/// run by `aics detect`; and one clear line for what does not fit.
#[test]
fn detect_runs_torchvision_detectors_from_a_state_dict() {
    use aics_nn::Module;
    let d = tmp("tvdet");
    let model = aics_detect::ssd::Ssd::by_name("ssdlite320_mobilenet_v3_large", 3, 7).unwrap();
    model.set_training(false);
    let w = d.join("ssdlite.safetensors");
    aics_nn::checkpoint::save_checkpoint(&w, &model, None, Default::default()).unwrap();
    let img = d.join("photo.png");
    image::RgbImage::from_fn(80, 60, |x, y| {
        image::Rgb([(3 * x) as u8, (4 * y) as u8, 90])
    })
    .save(&img)
    .unwrap();
    let run = |score: &str| -> Value {
        let out = ok(&aics(&[
            "detect",
            "--model",
            "ssdlite320_mobilenet_v3_large",
            "--weights",
            s(&w),
            "--score",
            score,
            "--json",
            "--out",
            s(&d),
            s(&img),
        ]));
        serde_json::from_str(out.trim()).unwrap()
    };
    let low = run("0.2");
    let dets = low["detections"].as_array().unwrap();
    assert!(!dets.is_empty(), "{low}");
    for det in dets {
        let b: Vec<f64> = det["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] >= 0.0
                && b[1] >= 0.0
                && b[2] <= 80.0
                && b[3] <= 60.0
                && b[0] <= b[2]
                && b[1] <= b[3],
            "{det}"
        );
        let (c, sc) = (
            det["class"].as_u64().unwrap(),
            det["score"].as_f64().unwrap(),
        );
        assert!((1..3).contains(&c) && sc > 0.2 && sc <= 1.0, "{det}");
    }
    assert!(d.join("detections.png").is_file());
    // a higher --score keeps a subset
    let high = run("0.6");
    assert!(high["detections"].as_array().unwrap().len() <= dets.len());

    let names = d.join("two.names");
    std::fs::write(&names, "background\ncat\n").unwrap();
    let e = err(&aics(&[
        "detect",
        "--model",
        "ssdlite320_mobilenet_v3_large",
        "--weights",
        s(&w),
        "--names",
        s(&names),
        "--out",
        s(&d),
        s(&img),
    ]));
    assert!(e.contains("two.names") && e.contains("3 labels"), "{e}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "fasterrcnn_resnet50_fpn",
        "--weights",
        s(&w),
        "--out",
        s(&d),
        s(&img),
    ]));
    assert!(
        e.contains("ssdlite.safetensors") && e.contains("roi_heads.box_predictor.cls_score.bias"),
        "{e}"
    );
    let e = err(&aics(&[
        "detect",
        "--model",
        "ssd300_vgg16",
        "--weights",
        s(&w),
        "--out",
        s(&d),
        s(&img),
    ]));
    assert!(e.contains("ssdlite.safetensors"), "{e}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "ssd300_vgg16",
        "--cfg",
        s(&w),
        "--weights",
        s(&w),
        s(&img),
    ]));
    assert!(e.contains("--cfg"), "{e}");
    // no --weights and nothing in the cache
    let out = Command::new(env!("CARGO_BIN_EXE_aics"))
        .args([
            "detect",
            "--model",
            "fasterrcnn_mobilenet_v3_large_fpn",
            s(&img),
        ])
        .env("XDG_CACHE_HOME", d.join("empty-cache"))
        .output()
        .unwrap();
    let e = err(&out);
    assert!(
        e.contains("aics weights fetch fasterrcnn_mobilenet_v3_large_fpn"),
        "{e}"
    );
}

/// SSD, Faster R-CNN and Fast R-CNN through `aics detect-train` and back through
/// `aics detect`; a checkpoint given to another detector, or --head, is one clear line.
#[test]
fn detect_train_ssd_and_faster_rcnn_run_and_detect() {
    let (d, set, spec) = synth_case("dtrain2", 20, 3, 128, 4);
    let img = set.join("images/00001.png");
    for model in ["ssd", "faster_rcnn", "fast_rcnn"] {
        let ck = d.join(format!("{model}.safetensors"));
        let text = ok(&aics(&[
            "detect-train",
            "--model",
            model,
            "--dataset",
            &spec,
            "--size",
            "128",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--checkpoint",
            s(&ck),
        ]));
        assert!(text.contains("epoch 1:"), "{text}");
        let log = std::fs::read_to_string(ck.with_extension("jsonl")).unwrap();
        let v: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
        let v: Value = serde_json::from_str(&ok(&aics(&[
            "detect",
            "--model",
            model,
            "--weights",
            s(&ck),
            "--json",
            "--score",
            "0.01",
            "--out",
            s(&d),
            s(&img),
        ])))
        .unwrap();
        assert!(v["detections"].as_array().is_some(), "{v}");
        // the RPN figure: 9 anchors, and the proposals of a Faster R-CNN
        let png = d.join(format!("{model}.anchors.png"));
        let out = aics(&[
            "anchors",
            "--image",
            s(&img),
            "--weights",
            s(&ck),
            "--out",
            s(&png),
        ]);
        if model == "faster_rcnn" {
            let text = ok(&out);
            assert!(text.contains("9 anchors") && png.is_file(), "{text}");
        } else {
            let e = err(&out);
            assert!(e.contains("not faster_rcnn"), "{e}");
        }
        let other = if model == "ssd" { "faster_rcnn" } else { "ssd" };
        let e = err(&aics(&[
            "detect",
            "--model",
            other,
            "--weights",
            s(&ck),
            s(&img),
        ]));
        assert!(
            e.contains(&format!("a {model} checkpoint, not {other}")),
            "{e}"
        );
    }
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "ssd",
        "--head",
        "conv",
        "--dataset",
        &spec,
    ]));
    assert!(e.contains("--head"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "ssd",
        "--dataset",
        &spec,
        "--size",
        "96",
    ]));
    assert!(e.contains("multiple of 64"), "{e}");
}

/// A data set with a degenerate box, a box outside its image, an unknown category or a missing
/// image: one clear line, and no checkpoint written.
#[test]
fn detect_train_refuses_bad_data_sets() {
    let (d, set, _) = synth_case("dtrainbad", 12, 2, 64, 3);
    let ann = set.join("annotations.json");
    let orig: Value = serde_json::from_str(&std::fs::read_to_string(&ann).unwrap()).unwrap();
    let ck = d.join("c.safetensors");
    let spec = format!("synth:{}", s(&set));
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit); 4] = [
        (
            "has no area",
            Box::new(|v: &mut Value| v["annotations"][0]["bbox"][2] = 0.0.into()),
        ),
        (
            "lies outside the 64×64 image",
            Box::new(|v: &mut Value| v["annotations"][1]["bbox"][0] = 60.0.into()),
        ),
        (
            "unknown category id 99",
            Box::new(|v: &mut Value| v["annotations"][0]["category_id"] = 99.into()),
        ),
        (
            "cannot read the image",
            Box::new(|v: &mut Value| v["images"][0]["file_name"] = "gone.png".into()),
        ),
    ];
    for (want, edit) in cases {
        let mut v = orig.clone();
        edit(&mut v);
        std::fs::write(&ann, v.to_string()).unwrap();
        let e = err(&aics(&[
            "detect-train",
            "--model",
            "ssd",
            "--dataset",
            &spec,
            "--size",
            "128",
            "--epochs",
            "1",
            "--checkpoint",
            s(&ck),
        ]));
        assert!(e.contains(want), "{want}: {e}");
        assert!(!ck.exists(), "{want}: a checkpoint was written");
    }
}

/// Selective search through `aics proposals`: drawn on a photo, and its recall of a data set.
#[test]
fn proposals_draws_and_reports_recall() {
    let (d, set, _) = synth_case("props", 4, 3, 96, 6);
    let img = set.join("images/00001.png");
    let png = d.join("p.png");
    let text = ok(&aics(&[
        "proposals",
        s(&img),
        "--out",
        s(&png),
        "--top",
        "5",
    ]));
    assert!(text.contains("proposals in") && png.is_file(), "{text}");
    let spec = format!("synth:{}", s(&set));
    let text = ok(&aics(&[
        "proposals",
        "--dataset",
        &spec,
        "--mode",
        "single",
    ]));
    let last = text.lines().last().unwrap();
    assert!(last.trim_start().starts_with("all"), "{text}");
    let r: Vec<f64> = last
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        r.len() == 2 && r[0] > 0.5 && r[0] <= 1.0 && r[1] <= r[0],
        "{text}"
    );
    let e = err(&aics(&["proposals", s(&img), "--dataset", &spec]));
    assert!(e.contains("not both"), "{e}");
    let e = err(&aics(&["proposals", s(&img), "--limit", "3"]));
    assert!(e.contains("--limit"), "{e}");
}

/// R-CNN through `aics detect-train` (random backbone weights, so that no fetched file is
/// needed) and back through `aics detect`; options that do not apply are refused.
#[test]
fn detect_train_rcnn_solves_once_and_detects() {
    let (d, set, spec) = synth_case("dtrain_rcnn", 12, 2, 64, 5);
    let img = set.join("images/00001.png");
    let ck = d.join("rcnn.safetensors");
    let train = |extra: &[&str]| {
        let mut v = vec![
            "detect-train",
            "--model",
            "rcnn",
            "--dataset",
            &spec,
            "--size",
            "64",
            "--warp",
            "48",
            "--backbone-weights",
            "none",
            "--checkpoint",
            s(&ck),
        ];
        v.extend_from_slice(extra);
        aics(&v)
    };
    let text = ok(&train(&[]));
    assert!(
        text.contains("val mAP@0.5") && text.contains("positives"),
        "{text}"
    );
    let log = std::fs::read_to_string(ck.with_extension("jsonl")).unwrap();
    let v: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let m = v["val_map50_voc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&m), "{v}");
    assert!(v["proposals_per_image"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["classes"].as_array().unwrap().len(), 2, "{v}");
    let text = ok(&train(&["--resume"]));
    assert!(text.contains("trained to the end already"), "{text}");
    let v: Value = serde_json::from_str(&ok(&aics(&[
        "detect",
        "--model",
        "rcnn",
        "--weights",
        s(&ck),
        "--json",
        "--score",
        "-5",
        "--out",
        s(&d),
        s(&img),
    ])))
    .unwrap();
    assert!(v["detections"].as_array().is_some(), "{v}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "ssd",
        "--weights",
        s(&ck),
        s(&img),
    ]));
    assert!(e.contains("a rcnn checkpoint, not ssd"), "{e}");
    let e = err(&train(&["--epochs", "3"]));
    assert!(e.contains("--epochs and --lr do not apply"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "ssd",
        "--dataset",
        &spec,
        "--warp",
        "64",
    ]));
    assert!(e.contains("--warp applies to --model rcnn only"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "rcnn",
        "--dataset",
        &spec,
        "--size",
        "64",
        "--backbone-weights",
        s(&d.join("missing.pth")),
    ]));
    assert!(e.contains("missing.pth: not found"), "{e}");
}

/// `aics data tile` cuts a data set into tiles that train as they are; Faster R-CNN on the
/// MobileNetV2 backbone trains on them and its checkpoint detects; misplaced options are refused.
#[test]
fn tiles_train_a_mobilenet_faster_rcnn() {
    let (d, set, _) = synth_case("tiles", 3, 2, 128, 6);
    let tiles = d.join("tiles");
    let text = ok(&aics(&[
        "data",
        "tile",
        "--dataset",
        &format!(
            "coco:{}:{}",
            s(&set.join("annotations.json")),
            s(&set.join("images"))
        ),
        "--out",
        s(&tiles),
        "--tile",
        "96",
        "--stride",
        "32",
    ]));
    // offsets 0 and 32 on each axis: 4 tiles an image
    assert!(text.starts_with("12 tiles of 3 images"), "{text}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(tiles.join("annotations.json")).unwrap())
            .unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 12);
    assert!(tiles.join("images/00001_32_32.png").is_file());
    let ck = d.join("frcnn.safetensors");
    let spec = format!("synth:{}", s(&tiles));
    let text = ok(&aics(&[
        "detect-train",
        "--model",
        "faster_rcnn",
        "--backbone",
        "mobilenet_v2",
        "--backbone-weights",
        "none",
        "--dataset",
        &spec,
        "--size",
        "96",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--checkpoint",
        s(&ck),
    ]));
    assert!(text.contains("epoch 1:"), "{text}");
    let v: Value = serde_json::from_str(&ok(&aics(&[
        "detect",
        "--model",
        "faster_rcnn",
        "--weights",
        s(&ck),
        "--json",
        "--score",
        "0.01",
        "--out",
        s(&d),
        s(&tiles.join("images/00001_0_0.png")),
    ])))
    .unwrap();
    assert!(v["detections"].as_array().is_some(), "{v}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "ssd",
        "--backbone",
        "mobilenet_v2",
        "--dataset",
        &spec,
    ]));
    assert!(
        e.contains("--backbone applies to --model faster_rcnn only"),
        "{e}"
    );
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "yolov1",
        "--backbone-weights",
        "x.pth",
        "--dataset",
        &spec,
    ]));
    assert!(e.contains("--backbone-weights applies"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "fast_rcnn",
        "--augment",
        "yolo",
        "--dataset",
        &spec,
    ]));
    assert!(e.contains("--augment yolo does not apply"), "{e}");
    let e = err(&aics(&[
        "detect-train",
        "--model",
        "rcnn",
        "--distributed",
        "--dataset",
        &spec,
    ]));
    assert!(
        e.contains("--distributed does not apply to --model rcnn"),
        "{e}"
    );
    let e = err(&aics(&[
        "data",
        "tile",
        "--dataset",
        &spec,
        "--out",
        s(&d.join("t2")),
        "--tile",
        "32",
        "--stride",
        "64",
    ]));
    assert!(e.contains("stride"), "{e}");
}

/// torchvision's SSDlite320 trains through `aics detect-train --model ssdlite` (at 320² only)
/// and its checkpoint detects.
#[test]
fn detect_train_ssdlite_runs_and_detects() {
    let (d, set, spec) = synth_case("ssdlite", 4, 2, 64, 8);
    let ck = d.join("ssdlite.safetensors");
    let train = |size: &str| {
        aics(&[
            "detect-train",
            "--model",
            "ssdlite",
            "--dataset",
            &spec,
            "--val",
            &spec,
            "--size",
            size,
            "--epochs",
            "1",
            "--batch",
            "2",
            "--checkpoint",
            s(&ck),
        ])
    };
    let e = err(&train("192"));
    assert!(e.contains("--size 320"), "{e}");
    let text = ok(&train("320"));
    assert!(
        text.contains("ssdlite320_mobilenet_v3_large (2 classes)"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&ok(&aics(&[
        "detect",
        "--model",
        "ssdlite",
        "--weights",
        s(&ck),
        "--json",
        "--score",
        "0.01",
        "--out",
        s(&d),
        s(&set.join("images/00001.png")),
    ])))
    .unwrap();
    assert!(v["detections"].as_array().is_some(), "{v}");
}

#[test]
#[ignore = "needs BlazeFace: bash scripts/setup.sh"]
fn blazeface_finds_the_faces_facenet_pytorchs_mtcnn_finds() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/fixtures/mtcnn/mtcnn.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<Vec<f64>> = fx["images"][0]["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let d = common::tmp("blazeface");
    let out = common::aics(&[
        "detect",
        "--model",
        "blazeface",
        "--weights",
        &format!("{root}/.cache/onnx-models/face_detection_front_128x128_barracuda.onnx"),
        "--json",
        "--out",
        d.to_str().unwrap(),
        &format!("{root}/fixtures/mtcnn/faces.png"),
    ]);
    let v: serde_json::Value = serde_json::from_str(common::ok(&out).trim()).unwrap();
    let dets = v["detections"].as_array().unwrap();
    let eyes: Vec<[(f64, f64); 2]> = fx["images"][0]["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let p = |i: usize| (l[i][0].as_f64().unwrap(), l[i][1].as_f64().unwrap());
            [p(0), p(1)]
        })
        .collect();
    // each face: its box centre inside a distinct face of facenet-pytorch's MTCNN, and its
    // eyes (the subject's right eye first, on the image's left) within a quarter of that box's
    // diagonal of MTCNN's eye landmarks
    let inside =
        |b: &[f64], p: (f64, f64)| b[0] <= p.0 && p.0 <= b[2] && b[1] <= p.1 && p.1 <= b[3];
    let near = |k: usize, p: (f64, f64), e: usize| {
        let w = &want[k];
        let diag = ((w[2] - w[0]).powi(2) + (w[3] - w[1]).powi(2)).sqrt();
        ((p.0 - eyes[k][e].0).powi(2) + (p.1 - eyes[k][e].1).powi(2)).sqrt() <= 0.25 * diag
    };
    let mut matched = vec![false; want.len()];
    for det in dets {
        let b: Vec<f64> = det["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let kp = det["keypoints"].as_array().unwrap();
        assert_eq!(kp.len(), 6);
        let pt = |i: usize| (kp[i][0].as_f64().unwrap(), kp[i][1].as_f64().unwrap());
        let centre = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let k = want
            .iter()
            .position(|w| inside(w, centre))
            .unwrap_or_else(|| panic!("{det} matches no MTCNN face of {want:?}"));
        assert!(!matched[k], "two detections of face {k}");
        assert!(
            near(k, pt(0), 0) && near(k, pt(1), 1),
            "{det}: eyes far from {:?}",
            eyes[k]
        );
        matched[k] = true;
        let s = det["score"].as_f64().unwrap();
        assert!(s > 0.5 && s <= 1.0, "{s}");
    }
    assert!(matched.iter().filter(|&&m| m).count() >= 3, "{dets:?}");
    assert!(d.join("detections.png").is_file());
}

#[test]
fn blazeface_refuses_options_it_has_no_use_for() {
    let e = err(&aics(&[
        "detect",
        "--model",
        "blazeface",
        "--names",
        "coco.names",
    ]));
    assert!(
        e.contains("--names does not apply to --model blazeface"),
        "{e}"
    );
    let e = err(&aics(&["detect", "--model", "blazeface", "--score", "1.5"]));
    assert!(e.contains("--score must be in (0, 1)"), "{e}");
    let e = err(&aics(&[
        "detect",
        "--model",
        "blazeface",
        "--weights",
        "missing.onnx",
    ]));
    assert!(e.contains("missing.onnx: not found"), "{e}");
}

/// YOLOv3-tiny exported to ONNX and run through `aics detect --model NET.onnx` (the heads from
/// its cfg) finds the boxes the native network finds on darknet's dog photo.
#[test]
#[ignore = "needs YOLOv3-tiny and darknet's photos from scripts/setup.sh"]
fn yolov3_tiny_from_its_onnx_export_detects_as_the_native_network() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let d = tmp("detect-onnx");
    let file = d.join("yolov3-tiny.onnx");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aics"))
            .current_dir(&root)
            .args(args)
            .output()
            .unwrap()
    };
    ok(&run(&[
        "export",
        "--model",
        "yolov3-tiny",
        "--onnx",
        s(&file),
    ]));
    let native: Value =
        serde_json::from_str(&ok(&run(&["detect", "--json", "--out", s(&d.join("a"))]))).unwrap();
    let onnx: Value = serde_json::from_str(&ok(&run(&[
        "detect",
        "--model",
        s(&file),
        "--json",
        "--out",
        s(&d.join("b")),
    ])))
    .unwrap();
    let (a, b) = (
        native["detections"].as_array().unwrap(),
        onnx["detections"].as_array().unwrap(),
    );
    assert!(a.len() >= 3, "{native}");
    assert_eq!(a.len(), b.len(), "{native}\n{onnx}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["label"], y["label"]);
        let diff = |k: &str| (x[k].as_f64().unwrap() - y[k].as_f64().unwrap()).abs();
        assert!(diff("score") < 1e-4, "{x} {y}");
        for i in 0..4 {
            let bd = (x["box"][i].as_f64().unwrap() - y["box"][i].as_f64().unwrap()).abs();
            assert!(bd < 0.05, "{x} {y}");
        }
    }
    // a file that is no darknet network's export is refused with one line
    let e = err(&run(&[
        "detect",
        "--model",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/onnx/small.onnx"
        ),
        "--out",
        s(&d.join("c")),
    ]));
    assert!(e.contains("small.onnx"), "{e}");
}
