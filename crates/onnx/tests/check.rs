//! `check` on the reference fixture and on graphs with structural faults.

use std::path::PathBuf;

use aics_onnx::check::{check, describe};
use aics_onnx::{load, Graph, Model, Node, ValueInfo};

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn the_fixture_lists_its_ops_inputs_and_no_problems() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx/small.onnx");
    let r = check(&load(path).unwrap());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let ops: Vec<String> = r.ops.keys().map(|(d, o)| format!("{d}:{o}")).collect();
    // the If node's two branches hold one Constant each
    assert_eq!(
        ops,
        [
            ":Constant",
            ":Conv",
            ":Identity",
            ":If",
            ":LeakyRelu",
            ":Reshape",
            ":Resize",
            "com.example:Custom"
        ]
    );
    assert_eq!(r.ops[&(String::new(), "Constant".to_string())], 2);
    let inputs: Vec<String> = r.inputs.iter().map(describe).collect();
    assert_eq!(inputs, ["x: FLOAT[batch, 3, 8, 8]", "cond: BOOL[]"]);
    assert_eq!(describe(&r.outputs[0]), "y: FLOAT[batch, ?]");
    assert_eq!(r.parameters, 108 + 4 + 2 + 4 + 2 + 10);
    let unsupported: Vec<String> = r
        .unsupported
        .iter()
        .map(|(d, o)| format!("{d}:{o}"))
        .collect();
    assert_eq!(unsupported, ["com.example:Custom"]);
}

#[test]
fn a_cycle_a_value_made_twice_and_a_missing_output_are_named() {
    let m = Model {
        opsets: vec![(String::new(), 13)],
        graph: Graph {
            // b needs c, which the next node makes from b: a cycle
            nodes: vec![
                node("first", "Add", &["x", "c"], &["b"]),
                node("second", "Relu", &["b"], &["c"]),
                node("third", "Relu", &["x"], &["b"]),
            ],
            inputs: vec![value("x")],
            outputs: vec![value("c"), value("nowhere")],
            ..Default::default()
        },
        ..Default::default()
    };
    let r = check(&m);
    assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    assert!(
        r.problems[0].contains("node 'first' (Add): input 'c'"),
        "{}",
        r.problems[0]
    );
    assert!(
        r.problems[1].contains("node 'third' (Relu): output 'b' is made a second time"),
        "{}",
        r.problems[1]
    );
    assert!(
        r.problems[2].contains("output 'nowhere'"),
        "{}",
        r.problems[2]
    );
    // no opset at all is a problem too
    let r = check(&Model::default());
    assert!(
        r.problems.iter().any(|p| p.contains("no opset")),
        "{:?}",
        r.problems
    );
}
