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
            && e.contains("3 op type(s) aics cannot run yet: If, Resize, com.example.Custom"),
        "{e}"
    );
    // the same as JSON
    let out = aics(&["onnx", "check", "--json", MODEL]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"], 7);
    assert_eq!(v["unsupported"].as_array().unwrap().len(), 3);
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
