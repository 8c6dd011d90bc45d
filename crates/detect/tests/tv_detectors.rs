//! torchvision 0.14's detectors on key-hashed weights: Faster R-CNN
//! (`fixtures/rcnn/faster_rcnn.json`, from `fixtures/gen_faster_rcnn.py`) and SSD
//! (`fixtures/rcnn/ssd.json`, from `fixtures/gen_ssd.py`). Both sides fill every tensor with
//! `hash_fill` by its state-dict key (some then scaled by a factor the fixture names) and read
//! the same hashed image; parameter counts, keys and shapes, the transformed size, every feature
//! map, the RPN's proposals or SSD's default boxes, and the final boxes, scores and labels must
//! agree.
//!
//! Tolerances: torchvision itself, run in float32 and in float64 on these inputs, differs by up
//! to 1.0e-4 in a score and 0.026 px in a box for the MobileNetV3 Faster R-CNN (3.5e-6 and
//! 6e-4 px for ResNet-50), so boxes may differ by 0.05 px + 2e-4·|x| and scores by 3e-4.

use std::collections::HashMap;

use aics_detect::faster_rcnn::{upgrade_key, Detections, FasterRcnn, RcnnTrainSettings, Target};
use aics_detect::ssd::Ssd;
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

fn sizes(v: &Value) -> Vec<usize> {
    f64s(v).into_iter().map(|x| x as usize).collect()
}

/// The generator's weights: `hash_fill` by key, times the factor of the first prefix the key
/// starts with.
fn hashed(model: &dyn Module, scaled: &[(String, f64)]) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    state_dict(model)
        .into_iter()
        .map(|(k, t)| {
            let mut v = if k.ends_with("num_batches_tracked") {
                vec![0.0]
            } else {
                hash_fill(&k, t.shape())
            };
            if let Some((_, f)) = scaled.iter().find(|(p, _)| k.starts_with(p.as_str())) {
                v.iter_mut().for_each(|x| *x = (*x as f64 * f) as f32);
            }
            (k, (t.shape().to_vec(), v))
        })
        .collect()
}

/// Parameter count and state-dict keys and shapes.
fn check_layout(name: &str, model: &dyn Module, e: &Value, count: &str) {
    assert_eq!(
        num_params(model),
        e[count].as_u64().unwrap() as usize,
        "{name}: parameters"
    );
    let keys: Vec<(String, Vec<usize>)> = state_dict(model)
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec()))
        .collect();
    let want: Vec<(String, Vec<usize>)> = e["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_string(), sizes(&kv[1])))
        .collect();
    assert_eq!(keys, want, "{name}: state-dict keys and shapes");
}

fn image(fx: &Value) -> Tensor {
    let shape = sizes(&fx["image"]["shape"]);
    Tensor::from_vec(
        hash_uniform(fx["image"]["key"].as_str().unwrap(), shape.iter().product())
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        &shape,
    )
    .unwrap()
}

/// Shape, mean, mean magnitude and first values of each map.
fn check_maps<'a>(name: &str, maps: &[Tensor], want: impl Iterator<Item = (String, &'a Value)>) {
    let want: Vec<(String, &Value)> = want.collect();
    assert_eq!(maps.len(), want.len(), "{name}: feature maps");
    for (f, (lvl, st)) in maps.iter().zip(want) {
        assert_eq!(f.shape(), &sizes(&st["shape"])[..], "{name} map {lvl}");
        let v = f.to_vec_f64();
        let n = v.len() as f64;
        let abs_mean = st["abs_mean"].as_f64().unwrap();
        let what = format!("{name} map {lvl}");
        close(
            &format!("{what} mean"),
            v.iter().sum::<f64>() / n,
            st["mean"].as_f64().unwrap(),
            1e-4 * abs_mean,
        );
        close(
            &format!("{what} |mean|"),
            v.iter().map(|x| x.abs()).sum::<f64>() / n,
            abs_mean,
            1e-4 * abs_mean,
        );
        for (i, w) in f64s(&st["first"]).into_iter().enumerate() {
            close(&format!("{what} value {i}"), v[i], w, 1e-3 * abs_mean);
        }
    }
}

/// Each coordinate of `got` within `tol(want)` of `want`; returns the largest difference.
fn close_box(what: &str, got: &[f32; 4], want: &[f64], tol: impl Fn(f64) -> f64) -> f64 {
    assert_eq!(want.len(), 4, "{what}: a box of four numbers");
    let mut worst = 0f64;
    for (c, (&g, &w)) in got.iter().zip(want).enumerate() {
        close(&format!("{what}[{c}]"), g as f64, w, tol(w));
        worst = worst.max((g as f64 - w).abs());
    }
    worst
}

/// Boxes within 0.05 px + 2e-4·|x| (a box side is exp(dw)·anchor: a 1e-5 difference in dw
/// moves a 512-pixel anchor's side by 0.005 px).
fn box_tol(w: f64) -> f64 {
    5e-2 + 2e-4 * w.abs()
}

/// The same detections: each expected one found by label and nearest box within two places of
/// its rank (scores within 1e-5 may swap places).
fn check_detections(name: &str, d: &Detections, e: &Value) {
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
    let dist = |j: usize, i: usize| -> f64 {
        (0..4)
            .map(|c| (d.boxes[j][c] as f64 - wb[i][c]).abs())
            .sum()
    };
    for i in 0..ws.len() {
        let j = (0..d.scores.len())
            .filter(|&j| d.labels[j] == wl[i] as usize)
            .min_by(|&a, &b| dist(a, i).total_cmp(&dist(b, i)))
            .unwrap_or_else(|| panic!("{name}: no detection of label {} for #{i}", wl[i]));
        assert!(j.abs_diff(i) <= 2, "{name}: detection #{i} found at #{j}");
        db = db.max(close_box(
            &format!("{name} detection {i}"),
            &d.boxes[j],
            &wb[i],
            box_tol,
        ));
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

fn check_model(name: &str, mut model: FasterRcnn, fx: &Value) {
    let e = &fx["models"][name];
    check_layout(name, &model, e, "params_frozen");
    model.transform.min_size = fx["settings"]["min_size"].as_f64().unwrap();
    model.transform.max_size = fx["settings"]["max_size"].as_f64().unwrap();
    model.roi_heads.settings.score_thresh = e["box_score_thresh"].as_f64().unwrap();
    let lateral = e["lateral_scale"].as_f64().unwrap();
    let w = hashed(
        &model,
        &[("backbone.fpn.inner_blocks.".to_string(), lateral)],
    );
    model.load_state_dict(&w).unwrap();

    let _g = aics_tensor::no_grad();
    let t = model.trace(&[image(fx)]).unwrap();
    let size = sizes(&e["image_size"]);
    assert_eq!(
        t.images.sizes[0],
        (size[0], size[1]),
        "{name}: resized size"
    );
    assert_eq!(
        t.images.tensor.shape(),
        &sizes(&e["batch_shape"])[..],
        "{name}: batch shape"
    );
    let levels = e["features"].as_object().unwrap();
    check_maps(
        name,
        &t.features,
        levels.iter().map(|(k, v)| (k.clone(), v)),
    );

    let props = &t.proposals[0];
    assert_eq!(
        props.boxes.len(),
        e["num_proposals"].as_u64().unwrap() as usize,
        "{name}: proposals"
    );
    let mut worst = 0f64;
    for (i, w) in rows(&e["proposals"]).iter().enumerate() {
        worst = worst.max(close_box(
            &format!("{name} proposal {i}"),
            &props.boxes[i],
            w,
            box_tol,
        ));
    }
    eprintln!(
        "{name}: {} proposals, first 40 within {worst:.2e} px",
        props.boxes.len()
    );
    check_detections(name, &t.detections[0], e);

    // the four training losses of the image and its mirror, every candidate sampled
    let l = &e["loss"];
    let img = image(fx);
    let targets = targets_of(&l["targets"]);
    let batch = l["sampler_batch"].as_u64().unwrap() as usize;
    let ts = RcnnTrainSettings {
        rpn_batch: batch,
        box_batch: batch,
        ..Default::default()
    };
    let losses = model
        .losses(
            &[img.clone(), mirror(&img)],
            &targets,
            &ts,
            &mut aics_tensor::Rng::new(0),
        )
        .unwrap();
    for (what, got) in [
        ("loss_objectness", &losses.objectness),
        ("loss_rpn_box_reg", &losses.rpn_box_reg),
        ("loss_classifier", &losses.classifier),
        ("loss_box_reg", &losses.box_reg),
    ] {
        let want = l[what].as_f64().unwrap();
        let got = got.to_vec()[0] as f64;
        eprintln!("{name} {what}: {got} (torchvision {want})");
        close(&format!("{name} {what}"), got, want, 1e-4 * want.abs());
    }
}

/// Targets as the generators write them: `[{"boxes": [[x1, y1, x2, y2], …], "labels": […]}, …]`.
fn targets_of(v: &Value) -> Vec<Target> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| Target {
            boxes: rows(&t["boxes"])
                .iter()
                .map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
                .collect(),
            labels: sizes(&t["labels"]),
        })
        .collect()
}

/// The image mirrored left to right.
fn mirror(img: &Tensor) -> Tensor {
    let (h, w) = (img.shape()[1], img.shape()[2]);
    let v = img.to_vec();
    let m: Vec<f32> = (0..v.len())
        .map(|i| v[(i / w) * w + (w - 1 - i % w)])
        .collect();
    Tensor::from_vec(m, &[3, h, w]).unwrap()
}

fn check_ssd(name: &str) {
    let fx = load("rcnn/ssd.json");
    let e = &fx["models"][name];
    let mut model = Ssd::by_name(name, 91, 0).unwrap();
    check_layout(name, &model, e, "params");
    model.settings.score_thresh = e["score_thresh"].as_f64().unwrap();
    let scaled: Vec<(String, f64)> = e["scaled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap()))
        .collect();
    aics_nn::load_state_dict(&model, &hashed(&model, &scaled), true).unwrap();
    model.set_training(false);

    let _g = aics_tensor::no_grad();
    let t = model.trace(&[image(&fx)]).unwrap();
    let size = sizes(&e["image_size"]);
    assert_eq!(t.sizes[0], (size[0], size[1]), "{name}: resized size");
    let maps = e["features"].as_array().unwrap();
    check_maps(
        name,
        &t.features,
        maps.iter().enumerate().map(|(i, v)| (i.to_string(), v)),
    );
    check_maps(
        name,
        std::slice::from_ref(&t.logits),
        std::iter::once(("logits".to_string(), &e["logits"])),
    );
    check_maps(
        name,
        std::slice::from_ref(&t.deltas),
        std::iter::once(("deltas".to_string(), &e["deltas"])),
    );

    assert_eq!(
        t.anchors.len(),
        e["num_anchors"].as_u64().unwrap() as usize,
        "{name}: default boxes"
    );
    let stride = e["anchor_stride"].as_u64().unwrap() as usize;
    for (i, w) in rows(&e["anchors"]).iter().enumerate() {
        close_box(
            &format!("{name} default box {}", i * stride),
            &t.anchors[i * stride],
            w,
            |v| 1e-4 * (1.0 + v.abs()),
        );
    }
    check_detections(name, &t.detections[0], e);

    // the MultiBox loss of the image and its mirror
    let img = image(&fx);
    let list = model.transform.batch(&[img.clone(), mirror(&img)]).unwrap();
    let l = &e["loss"];
    let targets = targets_of(&l["targets"]);
    let loss = model.loss(&list.tensor, &targets).unwrap();
    assert_eq!(
        loss.num_foreground,
        l["num_foreground"].as_u64().unwrap() as usize,
        "{name}: matched default boxes"
    );
    for (what, got) in [
        ("bbox_regression", &loss.bbox_regression),
        ("classification", &loss.classification),
    ] {
        let want = l[what].as_f64().unwrap();
        close(
            &format!("{name} loss {what}"),
            got.to_vec()[0] as f64,
            want,
            1e-4 * want.abs(),
        );
    }
}

#[test]
fn ssd300_vgg16_matches_torchvision() {
    check_ssd("ssd300_vgg16");
}

#[test]
fn ssdlite320_mobilenet_v3_large_matches_torchvision() {
    check_ssd("ssdlite320_mobilenet_v3_large");
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
