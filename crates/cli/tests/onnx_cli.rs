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
