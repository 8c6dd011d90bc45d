//! `coco_eval` and `voc_eval` against pycocotools 2.0.11 and a transcription of the VOC devkit
//! (fixtures/gen_map.py, cross-checked there against the mean-average-precision package).

use aics_detect::data::{parse_coco, parse_results, Dataset, Detection};
use aics_detect::{coco_eval, voc_eval, VocAp};
use aics_tensor::testing::{within, Tol};
use aics_testkit::json;
use serde_json::Value;

const CASES: [&str; 6] = ["basic", "crowd", "ties", "many", "random", "empty"];
const TOL: Tol = Tol::new(1e-9, 0.0);

fn load(case: &str) -> (Value, Dataset, Vec<Detection>) {
    let f = json::load(&format!("map/{case}.json"));
    let gt = parse_coco(&f["gt"].to_string()).unwrap_or_else(|e| panic!("{case}: gt: {e}"));
    let dt = parse_results(&f["dt"].to_string(), &gt).unwrap_or_else(|e| panic!("{case}: dt: {e}"));
    (f, gt, dt)
}

fn check(what: &str, got: f64, want: f64) {
    assert!(
        within(got, want, TOL),
        "{what}: got {got}, pycocotools/devkit {want}"
    );
}

#[test]
fn coco_stats_equal_pycocotools() {
    for case in CASES {
        let (f, gt, dt) = load(case);
        let ev = coco_eval(&gt, &dt);
        let want = json::f64s(&f["coco"]["stats"]);
        assert_eq!(want.len(), 12);
        let got = ev.stats().to_array();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            check(
                &format!("{case}: stats[{i}] ({})", aics_detect::CocoStats::NAMES[i]),
                *g,
                *w,
            );
        }
        let per = ev.per_class_ap();
        let want_pc = f["coco"]["per_class"].as_object().expect("per_class");
        assert_eq!(per.len(), want_pc.len(), "{case}: classes");
        for (id, w) in want_pc {
            let id: u64 = id.parse().expect("class id");
            let w = w.as_f64().expect("per-class AP");
            check(&format!("{case}: class {id} AP"), per[&id], w);
        }
    }
}

#[test]
fn voc_ap_equals_the_devkit() {
    for case in CASES {
        let (f, gt, dt) = load(case);
        let mut keys = vec![("voc07", VocAp::ElevenPoint), ("voc", VocAp::AllPoint)];
        if f.get("voc_iou07").is_some() {
            keys.push(("voc_iou07", VocAp::AllPoint));
        }
        for (key, kind) in keys {
            let iou = f[key]["iou"].as_f64().expect("iou");
            let ev = voc_eval(&gt, &dt, iou, kind);
            for (id, w) in f[key]["per_class"].as_object().expect("per_class") {
                let id: u64 = id.parse().expect("class id");
                let got = ev
                    .per_class
                    .get(&id)
                    .unwrap_or_else(|| panic!("{case} {key}: class {id} missing"));
                match (got, w.as_f64()) {
                    (None, None) => {}
                    (Some(c), Some(w)) => check(&format!("{case} {key}: class {id}"), c.ap, w),
                    (g, w) => panic!(
                        "{case} {key}: class {id}: got {:?}, want {w:?}",
                        g.as_ref().map(|c| c.ap)
                    ),
                }
            }
            check(
                &format!("{case} {key}: mAP"),
                ev.map,
                f[key]["mAP"].as_f64().expect("mAP"),
            );
        }
    }
}

/// The fixtures cover what the evaluation has to get right; if a regenerated fixture lost one
/// of these, the parity tests above would no longer test it.
#[test]
fn fixtures_cover_the_hard_cases() {
    let mut crowd = false;
    let mut empty_image = false;
    let mut over_100 = false;
    let mut tie = false;
    let mut difficult = false;
    let mut undetected_class = false;
    for case in CASES {
        let (_, gt, dt) = load(case);
        crowd |= gt.annotations.iter().any(|a| a.iscrowd);
        difficult |= gt.annotations.iter().any(|a| a.difficult);
        empty_image |= gt
            .images
            .iter()
            .any(|im| !gt.annotations.iter().any(|a| a.image_id == im.id));
        over_100 |= gt
            .images
            .iter()
            .any(|im| dt.iter().filter(|d| d.image_id == im.id).count() > 100);
        tie |= dt.iter().enumerate().any(|(i, d)| {
            dt[..i]
                .iter()
                .any(|e| e.score == d.score && e.category_id == d.category_id)
        });
        undetected_class |= gt.categories.iter().any(|c| {
            gt.annotations.iter().any(|a| a.category_id == c.id)
                && !dt.iter().any(|d| d.category_id == c.id)
        });
    }
    assert!(crowd && empty_image && over_100 && tie && difficult && undetected_class);
}

/// A result file may name VOC images by file name or stem.
#[test]
fn results_name_images_by_file() {
    let (_, gt, _) = load("basic");
    let im = &gt.images[0];
    let stem = std::path::Path::new(&im.file_name)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for name in [im.file_name.clone(), stem] {
        let text = format!(
            r#"[{{"image_id": "{name}", "category_id": {}, "bbox": [1, 2, 3, 4], "score": 0.5}}]"#,
            gt.categories[0].id
        );
        let d = parse_results(&text, &gt).unwrap();
        assert_eq!(d[0].image_id, im.id);
    }
    let bad = format!(
        r#"[{{"image_id": "nope.jpg", "category_id": {}, "bbox": [1, 2, 3, 4], "score": 0.5}}]"#,
        gt.categories[0].id
    );
    let e = parse_results(&bad, &gt).unwrap_err();
    assert!(e.contains("nope.jpg"), "{e}");
}
