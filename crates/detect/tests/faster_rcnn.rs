//! Faster R-CNN against torchvision 0.14 (`fixtures/rcnn/faster_rcnn.json`, written by
//! `fixtures/gen_faster_rcnn.py`): the same key-hashed weights on both sides (`hash_fill` by
//! state-dict key, the FPN's lateral convs scaled by the fixture's `lateral_scale`), the same
//! hashed image; parameter counts, keys and shapes, the transformed size, every pyramid level,
//! the RPN's proposals and the final boxes, scores and labels must agree.
//!
//! Tolerances: torchvision itself, run in float32 and in float64 on these inputs, differs by up
//! to 1.0e-4 in a score and 0.026 px in a box for the MobileNetV3 model (3.5e-6 and 6e-4 px
//! for ResNet-50), so boxes may differ by 0.05 px + 2e-4·|x| and scores by 3e-4.

use std::collections::HashMap;

use aics_detect::faster_rcnn::{upgrade_key, FasterRcnn};
use aics_nn::{num_params, state_dict, Kind, Module};
use aics_tensor::{hash_fill, hash_uniform, Tensor};
use aics_testkit::json::{f64s, load};
use serde_json::Value;

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        got.is_finite() && (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tolerance {tol})"
    );
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(f64s).collect()
}

/// The model with the generator's weights.
fn hashed(model: &FasterRcnn, lateral: f64) {
    let weights: HashMap<String, (Vec<usize>, Vec<f32>)> = state_dict(model)
        .into_iter()
        .map(|(k, t)| {
            let mut v = hash_fill(&k, t.shape());
            if k.starts_with("backbone.fpn.inner_blocks.") {
                v.iter_mut().for_each(|x| *x = (*x as f64 * lateral) as f32);
            }
            (k, (t.shape().to_vec(), v))
        })
        .collect();
    model.load_state_dict(&weights).unwrap();
}

fn check_model(name: &str, model: FasterRcnn, fx: &Value) {
    let e = &fx["models"][name];
    assert_eq!(
        num_params(&model),
        e["params_frozen"].as_u64().unwrap() as usize,
        "{name}: parameters"
    );
    let keys: Vec<(String, Vec<usize>)> = state_dict(&model)
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec()))
        .collect();
    let want: Vec<(String, Vec<usize>)> = e["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap().to_string(),
                f64s(&kv[1]).into_iter().map(|v| v as usize).collect(),
            )
        })
        .collect();
    assert_eq!(keys, want, "{name}: state-dict keys and shapes");

    let mut model = model;
    model.transform.min_size = fx["settings"]["min_size"].as_f64().unwrap();
    model.transform.max_size = fx["settings"]["max_size"].as_f64().unwrap();
    model.roi_heads.settings.score_thresh = e["box_score_thresh"].as_f64().unwrap();
    hashed(&model, e["lateral_scale"].as_f64().unwrap());

    let shape: Vec<usize> = f64s(&fx["image"]["shape"])
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let img = Tensor::from_vec(
        hash_uniform(fx["image"]["key"].as_str().unwrap(), shape.iter().product())
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        &shape,
    )
    .unwrap();
    let _g = aics_tensor::no_grad();
    let t = model.trace(&[img]).unwrap();
    let size = f64s(&e["image_size"]);
    assert_eq!(
        t.images.sizes[0],
        (size[0] as usize, size[1] as usize),
        "{name}: resized size"
    );
    let batch: Vec<usize> = f64s(&e["batch_shape"])
        .into_iter()
        .map(|v| v as usize)
        .collect();
    assert_eq!(t.images.tensor.shape(), &batch[..], "{name}: batch shape");

    let levels = e["features"].as_object().unwrap();
    assert_eq!(t.features.len(), levels.len(), "{name}: pyramid levels");
    for (f, (lvl, st)) in t.features.iter().zip(levels) {
        let want_shape: Vec<usize> = f64s(&st["shape"]).into_iter().map(|v| v as usize).collect();
        assert_eq!(f.shape(), &want_shape[..], "{name} level {lvl}");
        let v = f.to_vec_f64();
        let n = v.len() as f64;
        let abs_mean = st["abs_mean"].as_f64().unwrap();
        close(
            &format!("{name} level {lvl} mean"),
            v.iter().sum::<f64>() / n,
            st["mean"].as_f64().unwrap(),
            1e-4 * abs_mean,
        );
        close(
            &format!("{name} level {lvl} |mean|"),
            v.iter().map(|x| x.abs()).sum::<f64>() / n,
            abs_mean,
            1e-4 * abs_mean,
        );
        for (i, w) in f64s(&st["first"]).into_iter().enumerate() {
            close(
                &format!("{name} level {lvl} value {i}"),
                v[i],
                w,
                1e-3 * abs_mean,
            );
        }
    }

    let props = &t.proposals[0];
    assert_eq!(
        props.boxes.len(),
        e["num_proposals"].as_u64().unwrap() as usize,
        "{name}: proposals"
    );
    let mut worst = 0f64;
    for (i, w) in rows(&e["proposals"]).iter().enumerate() {
        for c in 0..4 {
            let d = (props.boxes[i][c] as f64 - w[c]).abs();
            worst = worst.max(d);
            close(
                &format!("{name} proposal {i}[{c}]"),
                props.boxes[i][c] as f64,
                w[c],
                // a box side is exp(dw)·anchor: a 1e-5 difference in dw moves a 512-pixel
                // anchor's side by 0.005 px
                5e-2 + 2e-4 * w[c].abs(),
            );
        }
    }
    eprintln!(
        "{name}: {} proposals, first 40 within {worst:.2e} px",
        props.boxes.len()
    );

    let d = &t.detections[0];
    let (wb, ws, wl) = (rows(&e["boxes"]), f64s(&e["scores"]), f64s(&e["labels"]));
    assert!(
        !ws.is_empty(),
        "{name}: the fixture has no detections to compare"
    );
    assert_eq!(
        d.scores.len(),
        ws.len(),
        "{name}: detections {:?} vs {:?}",
        d.scores,
        ws
    );
    let (mut db, mut ds) = (0f64, 0f64);
    for i in 0..ws.len() {
        // the same detection, found by label and box (scores within 1e-5 may swap places)
        let j = (0..d.scores.len())
            .filter(|&j| d.labels[j] == wl[i] as usize)
            .min_by(|&a, &b| {
                let da: f64 = (0..4)
                    .map(|c| (d.boxes[a][c] as f64 - wb[i][c]).abs())
                    .sum();
                let dbb: f64 = (0..4)
                    .map(|c| (d.boxes[b][c] as f64 - wb[i][c]).abs())
                    .sum();
                da.total_cmp(&dbb)
            })
            .unwrap_or_else(|| panic!("{name}: no detection of label {} for #{i}", wl[i]));
        assert!(j.abs_diff(i) <= 2, "{name}: detection #{i} found at #{j}");
        for c in 0..4 {
            close(
                &format!("{name} detection {i} box[{c}]"),
                d.boxes[j][c] as f64,
                wb[i][c],
                5e-2 + 2e-4 * wb[i][c].abs(),
            );
            db = db.max((d.boxes[j][c] as f64 - wb[i][c]).abs());
        }
        close(
            &format!("{name} detection {i} score"),
            d.scores[j] as f64,
            ws[i],
            3e-4,
        );
        ds = ds.max((d.scores[j] as f64 - ws[i]).abs());
    }
    eprintln!(
        "{name}: {} detections, boxes within {db:.2e} px, scores within {ds:.2e}",
        ws.len()
    );
}

#[test]
fn fasterrcnn_resnet50_fpn_matches_torchvision() {
    let fx = load("rcnn/faster_rcnn.json");
    let e = &fx["models"]["fasterrcnn_resnet50_fpn"];
    let model = FasterRcnn::resnet50_fpn(91, e["frozen_eps"].as_f64().unwrap(), 0).unwrap();
    check_model("fasterrcnn_resnet50_fpn", model, &fx);
}

#[test]
fn fasterrcnn_mobilenet_v3_large_fpn_matches_torchvision() {
    let fx = load("rcnn/faster_rcnn.json");
    let name = "fasterrcnn_mobilenet_v3_large_fpn";
    check_model(name, FasterRcnn::by_name(name, 91, 0).unwrap(), &fx);
}

#[test]
fn trainable_batch_norm_count_matches_torchvision() {
    let fx = load("rcnn/faster_rcnn.json");
    for name in [
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn",
    ] {
        let e = &fx["models"][name];
        let frozen = e["params_frozen"].as_u64().unwrap() as usize;
        let trainable = e["params_trainable"].as_u64().unwrap() as usize;
        // the difference is the batch norms' affine terms, which frozen batch norm keeps as
        // buffers (the only buffers named `weight` and `bias`)
        let model = FasterRcnn::by_name(name, 91, 0).unwrap();
        let mut affine = 0;
        model.visit("", &mut |k, t, kind| {
            if kind == Kind::Buffer && (k.ends_with(".weight") || k.ends_with(".bias")) {
                affine += t.numel();
            }
        });
        assert_eq!(num_params(&model), frozen, "{name}");
        assert_eq!(frozen + affine, trainable, "{name}");
    }
}

#[test]
fn old_checkpoint_keys_are_renamed() {
    assert_eq!(
        upgrade_key("rpn.head.conv.weight"),
        "rpn.head.conv.0.0.weight"
    );
    assert_eq!(
        upgrade_key("backbone.fpn.inner_blocks.2.bias"),
        "backbone.fpn.inner_blocks.2.0.bias"
    );
    assert_eq!(
        upgrade_key("backbone.fpn.layer_blocks.0.weight"),
        "backbone.fpn.layer_blocks.0.0.weight"
    );
    assert_eq!(
        upgrade_key("backbone.fpn.layer_blocks.0.0.weight"),
        "backbone.fpn.layer_blocks.0.0.weight"
    );
    assert_eq!(
        upgrade_key("roi_heads.box_head.fc6.weight"),
        "roi_heads.box_head.fc6.weight"
    );
}
