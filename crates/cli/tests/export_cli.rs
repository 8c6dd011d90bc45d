//! `aics export` end to end: the written file, run by onnxruntime
//! (fixtures/onnx/export.json, from fixtures/gen_onnx_export.py), gives the aics model's
//! outputs, and aics's ONNX runner gives them too after reading the file back; bad requests get
//! one clear line.

mod common;

use std::path::Path;

use common::{aics, err, ok, tmp};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/onnx/export.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = aics_io::npz::load_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (t.shape.clone(), t.data)
}

/// `got`'s values against onnxruntime's sampled ones, relative to the largest magnitude.
fn close(case: &str, name: &str, got: &[f32], shape: &[usize], want: &Value, tol: f64) -> f64 {
    let ws: Vec<usize> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape, ws, "{case}/{name}: shape");
    let stride = want["stride"].as_u64().unwrap() as usize;
    let vals: Vec<f64> = want["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let scale = vals.iter().fold(1e-6f64, |a, v| a.max(v.abs()));
    let mut worst = 0.0f64;
    for (i, w) in vals.iter().enumerate() {
        let d = (got[i * stride] as f64 - w).abs() / scale;
        assert!(
            d.is_finite(),
            "{case}/{name}[{}]: {}",
            i * stride,
            got[i * stride]
        );
        worst = worst.max(d);
    }
    let mean = got.iter().map(|&v| v as f64).sum::<f64>() / got.len() as f64;
    let wm = want["mean"].as_f64().unwrap();
    assert!(
        (mean - wm).abs() <= tol * scale,
        "{case}/{name}: mean {mean} against onnxruntime's {wm}"
    );
    worst
}

/// A torchvision detector's weights as fixtures/gen_onnx_export.py makes them (`hashed`):
/// `hash_fill` by each key of fixtures/rcnn/faster_rcnn.json, the keys under a prefix scaled
/// (in float32).
fn hashed_tensors(spec: &Value) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/rcnn/faster_rcnn.json"
    );
    let rcnn: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let keys = rcnn["models"][spec["model"].as_str().unwrap()]["state_dict"]
        .as_array()
        .unwrap();
    let prefix = spec["scale"][0].as_str().unwrap();
    let factor = spec["scale"][1].as_f64().unwrap() as f32;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for kv in keys {
        let k = kv[0].as_str().unwrap();
        if k.ends_with("num_batches_tracked") {
            continue;
        }
        let shape: Vec<usize> = kv[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let mut v = aics_tensor::hash_fill(k, &shape);
        if k.starts_with(prefix) {
            v.iter_mut().for_each(|x| *x *= factor);
        }
        tensors.push((k.to_string(), shape, v));
    }
    tensors
}

/// [`hashed_tensors`] written as safetensors to the spec's `file` ({dir} is `dir`); its path.
fn write_hashed(spec: &Value, dir: &Path) -> String {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = hashed_tensors(spec)
        .into_iter()
        .map(|(k, shape, v)| (k, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (k.clone(), view)
        })
        .collect();
    let file = spec["file"]
        .as_str()
        .unwrap()
        .replace("{dir}", dir.to_str().unwrap());
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();
    file
}

fn check_cases(assets: bool) {
    let fx = fixture();
    let dir = tmp(if assets { "export-assets" } else { "export" });
    std::fs::write(
        dir.path().join("corpus.txt"),
        fx["corpus"].as_str().unwrap(),
    )
    .unwrap();
    let sub = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("{dir}", dir.path().to_str().unwrap())
            })
            .collect()
    };
    let mut ran = 0;
    for (case, c) in fx["cases"].as_object().unwrap() {
        if c["assets"].as_bool().unwrap() != assets {
            continue;
        }
        ran += 1;
        let file = dir.path().join(format!("{case}.onnx"));
        let io = dir.path().join(case);
        // a model to export made first (a language model trained for a few steps)
        if !c["prepare"].is_null() {
            for cmd in c["prepare"].as_array().unwrap() {
                let cmd = sub(cmd);
                let refs: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
                ok(&aics(&refs));
            }
        }
        // hashed weights: float32 evaluations of such a network differ more (see the fixture)
        let mut tol = 1e-4;
        if !c["hashed"].is_null() {
            write_hashed(&c["hashed"], dir.path());
            tol = c["hashed"]["tolerance"].as_f64().unwrap();
        }
        let mut args: Vec<String> = vec!["export".into()];
        args.extend(sub(&c["args"]));
        // the fetched weights, from the workspace's root
        let cache = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.cache/weights");
        if case.starts_with("mtcnn") {
            args.extend(["--weights".into(), format!("{cache}/mtcnn")]);
        } else if case == "yolov3-tiny" {
            args.extend([
                "--cfg".into(),
                format!("{cache}/yolov3-tiny.cfg"),
                "--weights".into(),
                format!("{cache}/yolov3-tiny.weights"),
            ]);
        }
        args.extend([
            "--onnx".into(),
            file.display().to_string(),
            "--save-io".into(),
            io.display().to_string(),
        ]);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let text = ok(&aics(&refs));
        assert!(text.contains("largest relative difference"), "{text}");
        // the file read back and run by aics's ONNX runner
        let back = dir.path().join(format!("{case}-back"));
        let mut run: Vec<String> = vec!["onnx".into(), "run".into(), file.display().to_string()];
        for name in c["inputs"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            run.push("--input".into());
            run.push(format!(
                "{name}={}",
                io.join(format!("{name}.npy")).display()
            ));
        }
        run.extend(["--output-dir".into(), back.display().to_string()]);
        let refs: Vec<&str> = run.iter().map(|s| s.as_str()).collect();
        ok(&aics(&refs));
        if c["outputs"].get("labels").is_some() {
            // a detector's detections, matched one to one (near-equal scores may swap)
            let want = |name: &str| -> Vec<f32> {
                let o = &c["outputs"][name];
                assert_eq!(
                    o["stride"].as_u64(),
                    Some(1),
                    "{case}/{name}: every value kept"
                );
                o["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            };
            let (wb, ws, wl) = (want("boxes"), want("scores"), want("labels"));
            assert!(!ws.is_empty(), "{case}: onnxruntime detects nothing");
            for (what, from) in [("aics's model", &io), ("re-imported", &back)] {
                let got = |name: &str| npy(&from.join(format!("{name}.npy"))).1;
                let d = aics_detect::boxes::match_detections(
                    (&wb, &ws, &wl),
                    (&got("boxes"), &got("scores"), &got("labels")),
                )
                .unwrap_or_else(|e| panic!("{case}: {what} vs onnxruntime: {e}"));
                assert!(d <= tol, "{case}: {what} vs onnxruntime {d:.2e}");
            }
            continue;
        }
        for (name, want) in c["outputs"].as_object().unwrap() {
            let (shape, model) = npy(&io.join(format!("{name}.npy")));
            let d = close(case, name, &model, &shape, want, tol);
            assert!(
                d <= tol,
                "{case}/{name}: aics's model vs onnxruntime {d:.2e}"
            );
            let (shape, reread) = npy(&back.join(format!("{name}.npy")));
            let d = close(case, name, &reread, &shape, want, tol);
            assert!(
                d <= tol,
                "{case}/{name}: re-imported vs onnxruntime {d:.2e}"
            );
        }
        if args.iter().any(|a| a == "--external-data") {
            // the weights beside the model, the graph alone in it
            let data = dir.path().join(format!("{case}.onnx.data"));
            let (m, d) = (
                std::fs::metadata(&file).unwrap().len(),
                std::fs::metadata(&data).unwrap().len(),
            );
            assert!(
                d > 1_000_000 && m < 100_000,
                "{case}: model {m} bytes, data {d}"
            );
        }
        let inputs: Vec<&str> = c["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap())
            .collect();
        // a symbolic batch, or count of regions: that input three times over (the others as
        // they are) gives the outputs three times
        let tripled = if args.iter().any(|a| a == "--dynamic-batch") {
            Some("input")
        } else {
            inputs
                .iter()
                .copied()
                .find(|&i| i == "rois" || i == "regions")
        };
        if let Some(count) = tripled {
            let (mut shape, x) = npy(&io.join(format!("{count}.npy")));
            shape[0] *= 3;
            let x3: Vec<f32> = x.iter().chain(&x).chain(&x).copied().collect();
            let three = dir.path().join(format!("{case}-x3.npy"));
            std::fs::write(&three, aics_io::npz::npy_bytes(&shape, &x3)).unwrap();
            let out3 = dir.path().join(format!("{case}-x3"));
            let mut run = vec![
                "onnx".to_string(),
                "run".into(),
                file.display().to_string(),
                "--input".into(),
                format!("{count}={}", three.display()),
                "--output-dir".into(),
                out3.display().to_string(),
            ];
            for other in inputs.iter().filter(|&&i| i != count) {
                run.push("--input".into());
                run.push(format!(
                    "{other}={}",
                    io.join(format!("{other}.npy")).display()
                ));
            }
            let refs: Vec<&str> = run.iter().map(|s| s.as_str()).collect();
            ok(&aics(&refs));
            for (name, want) in c["outputs"].as_object().unwrap() {
                let (mut shape, y3) = npy(&out3.join(format!("{name}.npy")));
                shape[0] /= 3;
                for part in y3.chunks(y3.len() / 3) {
                    let d = close(case, name, part, &shape, want, 1e-4);
                    assert!(d <= 1e-4, "{case}/{name} at three times {count}: {d:.2e}");
                }
            }
        }
    }
    assert!(ran > 0);
}

#[test]
fn exported_models_give_onnxruntimes_outputs() {
    check_cases(false);
}

#[test]
#[ignore = "needs the MTCNN and YOLOv3-tiny weights from scripts/setup.sh"]
fn exported_pretrained_detectors_give_onnxruntimes_outputs() {
    check_cases(true);
}

/// Inside a Faster R-CNN's graph, each proposal is pooled from the pyramid level its size picks
/// (torchvision's MultiScaleRoIAlign): the graph's pooled regions (`roi_heads/pooled`) equal the
/// model's pooling of the graph's own proposals (`proposals`), which fall on at least three of
/// ResNet-50's four pooled levels.
#[test]
fn a_faster_rcnn_graph_pools_each_proposal_from_its_level() {
    let fx = fixture();
    let spec = &fx["cases"]["fasterrcnn_resnet50_fpn"]["hashed"];
    let name = spec["model"].as_str().unwrap();
    let dir = tmp("export-levels");
    let weights = write_hashed(spec, dir.path());
    let file = dir.path().join("levels.onnx");
    let (h, w) = (320, 320);
    ok(&aics(&[
        "export",
        "--model",
        name,
        "--weights",
        &weights,
        "--input",
        &format!("3x{h}x{w}"),
        "--onnx",
        file.to_str().unwrap(),
    ]));
    let mut model = aics_onnx::load(&file).unwrap();
    for v in ["proposals", "roi_heads/pooled"] {
        model.graph.outputs.push(aics_onnx::ValueInfo {
            name: v.into(),
            elem_type: Some(aics_onnx::proto::dtype::FLOAT),
            shape: None,
            other_type: false,
        });
    }
    let graph = aics_onnx::OnnxModel::new(model).unwrap();
    let x: Vec<f32> = aics_tensor::hash_uniform("export/levels", 3 * h * w)
        .into_iter()
        .map(|u| u as f32)
        .collect();
    let x = aics_tensor::Tensor::from_vec(x, &[1, 3, h, w]).unwrap();
    let out = graph
        .run(&[("input", aics_onnx::Value::F(x.clone()))])
        .unwrap();
    let get = |n: &str| match &out.iter().find(|(k, _)| k == n).unwrap().1 {
        aics_onnx::Value::F(t) => t.clone(),
        _ => panic!("{n}: a float tensor"),
    };
    let (props, pooled) = (get("proposals"), get("roi_heads/pooled"));
    let boxes: Vec<[f32; 4]> = props
        .to_vec()
        .chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect();
    // the levels ⌊4 + log2(√area / 224)⌋, clamped to 2…5, that the proposals take
    let mut levels = [0usize; 4];
    for b in &boxes {
        let k = (4.0 + (((b[2] - b[0]) * (b[3] - b[1])).sqrt() / 224.0).log2()).floor();
        levels[(k.clamp(2.0, 5.0) - 2.0) as usize] += 1;
    }
    assert!(
        levels.iter().filter(|&&n| n > 0).count() >= 3,
        "proposals a level: {levels:?}"
    );
    let map: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = hashed_tensors(spec)
        .into_iter()
        .map(|(k, shape, v)| (k, (shape, v)))
        .collect();
    let net = aics_detect::faster_rcnn::FasterRcnn::by_name(name, 91, 0).unwrap();
    net.load_state_dict(&map).unwrap();
    let _g = aics_tensor::no_grad();
    let feats = net
        .backbone
        .features(&net.transform.normalize(&x).unwrap())
        .unwrap();
    let want = net
        .roi_heads
        .pool
        .pool(&feats, &[boxes], &[(h, w)])
        .unwrap();
    assert_eq!(pooled.shape(), want.shape());
    let (g, wv) = (pooled.to_vec(), want.to_vec());
    let scale = wv.iter().fold(1e-6f64, |m, &v| m.max((v as f64).abs()));
    let worst = g
        .iter()
        .zip(&wv)
        .map(|(a, b)| (*a as f64 - *b as f64).abs() / scale)
        .fold(
            0.0f64,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        );
    assert!(
        worst <= 1e-4,
        "pooled regions: {worst:.2e} from the model's"
    );
}

/// `aics detect --model x.onnx` on a Faster R-CNN exported whole finds what the checkpoint finds
/// through aics's own detector on the same photo (the photo at the graph's size, so that both
/// see the same pixels).
#[test]
fn a_faster_rcnn_graph_detects_as_its_checkpoint() {
    let dir = tmp("export-detect");
    let d = |name: &str| dir.path().join(name).display().to_string();
    ok(&aics(&[
        "data",
        "synth-detect",
        "--out",
        &d("synth"),
        "--images",
        "12",
        "--classes",
        "3",
        "--size",
        "128",
        "--seed",
        "2",
    ]));
    ok(&aics(&[
        "detect-train",
        "--model",
        "faster_rcnn",
        "--dataset",
        &format!("synth:{}", d("synth")),
        "--size",
        "128",
        // trained long enough for scores that stand apart (after one epoch hundreds of
        // detections score within 1e-3 of each other, and which make the cut at 100 is noise)
        "--epochs",
        "15",
        "--batch",
        "4",
        "--threads",
        "1",
        "--checkpoint",
        &d("frcnn.safetensors"),
    ]));
    let photo = d("synth/images/00001.png");
    ok(&aics(&[
        "export",
        "--model",
        "faster_rcnn",
        "--weights",
        &d("frcnn.safetensors"),
        "--sample",
        &photo,
        "--onnx",
        &d("frcnn.onnx"),
    ]));
    let run = |model: &[&str], out: &str| -> Vec<(f32, [f32; 4], String)> {
        let mut args = vec!["detect"];
        args.extend(model);
        args.extend([photo.as_str(), "--score", "0.15", "--json", "--out", out]);
        let text = ok(&aics(&args));
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let b: Vec<f32> = d["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                (
                    d["score"].as_f64().unwrap() as f32,
                    [b[0], b[1], b[2], b[3]],
                    d["label"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let onnx = run(&["--model", &d("frcnn.onnx")], &d("a"));
    let ck = d("frcnn.safetensors");
    // the graph's NMS overlap is torchvision's 0.5
    let native = run(
        &["--model", "faster_rcnn", "--weights", &ck, "--nms", "0.5"],
        &d("b"),
    );
    assert!(
        !native.is_empty(),
        "the checkpoint finds nothing above 0.15"
    );
    // the graph's labels count the background (class 0), the checkpoint's names do not
    let flat = |v: &[(f32, [f32; 4], String)], labels: &dyn Fn(&str) -> f32| {
        (
            v.iter().flat_map(|d| d.1).collect::<Vec<f32>>(),
            v.iter().map(|d| d.0).collect::<Vec<f32>>(),
            v.iter().map(|d| labels(&d.2)).collect::<Vec<f32>>(),
        )
    };
    let names = ["circle", "square", "triangle"];
    let (nb, ns, nl) = flat(&native, &|l| {
        names.iter().position(|n| *n == l).unwrap() as f32 + 1.0
    });
    let (ob, os, ol) = flat(&onnx, &|l| {
        l.strip_prefix("class ").unwrap().parse::<f32>().unwrap()
    });
    let diff = aics_detect::boxes::match_detections((&nb, &ns, &nl), (&ob, &os, &ol)).unwrap();
    assert!(
        diff <= 1e-4,
        "the ONNX graph's detections vs the checkpoint's: {diff:.2e}"
    );
}

#[test]
fn bad_requests_get_one_line() {
    let dir = tmp("export-bad");
    let out = dir.path().join("x.onnx");
    let o = out.to_str().unwrap();
    let e = err(&aics(&["export", "--model", "nope", "--onnx", o]));
    assert!(e.contains("unknown model `nope`"), "{e}");
    let e = err(&aics(&[
        "export",
        "--model",
        "fast_style",
        "--classes",
        "3",
        "--onnx",
        o,
    ]));
    assert!(e.contains("--classes does not apply"), "{e}");
    let e = err(&aics(&[
        "export", "--model", "lenet5", "--batch", "0", "--onnx", o,
    ]));
    assert!(e.contains("--batch"), "{e}");
    let e = err(&aics(&[
        "export",
        "--model",
        "lenet5",
        "--weights",
        "/nonexistent/w.pth",
        "--onnx",
        o,
    ]));
    assert!(e.contains("/nonexistent/w.pth"), "{e}");
    // VGG's 7×7 adaptive pooling from 3×3 maps has uneven windows
    let e = err(&aics(&[
        "export",
        "--model",
        "vgg11",
        "--input",
        "3x96x96",
        "--classes",
        "2",
        "--onnx",
        o,
    ]));
    assert!(e.contains("uneven windows"), "{e}");
    let e = err(&aics(&["export", "--model", "fast_rcnn", "--onnx", o]));
    assert!(e.contains("needs --weights"), "{e}");
    let e = err(&aics(&[
        "export",
        "--model",
        "fast_rcnn",
        "--dynamic-batch",
        "--onnx",
        o,
    ]));
    assert!(e.contains("always symbolic"), "{e}");
    assert!(!out.exists());
}
