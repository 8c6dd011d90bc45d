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
fn close(case: &str, name: &str, got: &[f32], shape: &[usize], want: &Value) -> f64 {
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
        (mean - wm).abs() <= 1e-4 * scale,
        "{case}/{name}: mean {mean} against onnxruntime's {wm}"
    );
    worst
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
        for (name, want) in c["outputs"].as_object().unwrap() {
            let (shape, model) = npy(&io.join(format!("{name}.npy")));
            let d = close(case, name, &model, &shape, want);
            assert!(
                d <= 1e-4,
                "{case}/{name}: aics's model vs onnxruntime {d:.2e}"
            );
            let (shape, reread) = npy(&back.join(format!("{name}.npy")));
            let d = close(case, name, &reread, &shape, want);
            assert!(
                d <= 1e-4,
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
        if c["inputs"].as_array().unwrap().iter().any(|i| i == "rois") {
            // a symbolic count of regions: the regions three times over give the outputs
            // three times
            let (mut shape, r) = npy(&io.join("rois.npy"));
            shape[0] *= 3;
            let r3: Vec<f32> = r.iter().chain(&r).chain(&r).copied().collect();
            let three = dir.path().join(format!("{case}-rois3.npy"));
            std::fs::write(&three, aics_io::npz::npy_bytes(&shape, &r3)).unwrap();
            let out3 = dir.path().join(format!("{case}-rois3"));
            ok(&aics(&[
                "onnx",
                "run",
                file.to_str().unwrap(),
                "--input",
                &format!("input={}", io.join("input.npy").display()),
                "--input",
                &format!("rois={}", three.display()),
                "--output-dir",
                out3.to_str().unwrap(),
            ]));
            for (name, want) in c["outputs"].as_object().unwrap() {
                let (mut shape, y3) = npy(&out3.join(format!("{name}.npy")));
                shape[0] /= 3;
                for part in y3.chunks(y3.len() / 3) {
                    let d = close(case, name, part, &shape, want);
                    assert!(
                        d <= 1e-4,
                        "{case}/{name} for three times the regions: {d:.2e}"
                    );
                }
            }
        }
        if args.iter().any(|a| a == "--dynamic-batch") {
            // a symbolic batch: the input three times over gives the same outputs three times
            let (mut shape, x) = npy(&io.join("input.npy"));
            shape[0] *= 3;
            let x3: Vec<f32> = x.iter().chain(&x).chain(&x).copied().collect();
            let three = dir.path().join(format!("{case}-x3.npy"));
            std::fs::write(&three, aics_io::npz::npy_bytes(&shape, &x3)).unwrap();
            let out3 = dir.path().join(format!("{case}-x3"));
            ok(&aics(&[
                "onnx",
                "run",
                file.to_str().unwrap(),
                "--input",
                &format!("input={}", three.display()),
                "--output-dir",
                out3.to_str().unwrap(),
            ]));
            for (name, want) in c["outputs"].as_object().unwrap() {
                let (mut shape, y3) = npy(&out3.join(format!("{name}.npy")));
                shape[0] /= 3;
                for part in y3.chunks(y3.len() / 3) {
                    let d = close(case, name, part, &shape, want);
                    assert!(d <= 1e-4, "{case}/{name} at three times the batch: {d:.2e}");
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
