//! The ONNX backend test suite of the onnx 1.22.0 wheel (fetched into .cache/onnx-1.22.0 by
//! `scripts/setup.sh`): the node cases whose ops aics runs, and the full-architecture "light"
//! models against their stored outputs. Tolerances are the suite's own (rtol 1e-3, atol 1e-7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aics_onnx::check::check;
use aics_onnx::proto::dtype;
use aics_onnx::run::value_of;
use aics_onnx::{decode_tensor, load, OnnxModel, Value};
use aics_tensor::Tensor;

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/onnx-1.22.0/onnx/backend/test/data")
}

fn read_value(p: &Path) -> Result<Value, String> {
    read_value_as(p, None)
}

/// A stored value where the graph declares `declared` for it: the older test data (onnx 1.12)
/// stores BFLOAT16 values as UINT16 tensors of their bits, numpy having no bfloat16.
fn read_value_as(p: &Path, declared: Option<i32>) -> Result<Value, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut t = decode_tensor(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    if declared == Some(dtype::BFLOAT16) && t.data_type == dtype::UINT16 {
        t.data_type = dtype::BFLOAT16;
    }
    value_of(&t).map_err(|e| format!("{}: {e}", p.display()))
}

/// None when `got` equals `want` within the suite's tolerance; otherwise what differs.
fn compare(got: &Value, want: &Value) -> Option<String> {
    if got.shape() != want.shape() {
        return Some(format!(
            "shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w): (Vec<f64>, Vec<f64>) = match (got, want) {
        (Value::F(a), Value::F(b)) => (
            a.to_vec().iter().map(|&x| x as f64).collect(),
            b.to_vec().iter().map(|&x| x as f64).collect(),
        ),
        (Value::I(a, _), Value::I(b, _)) => {
            return (a != b).then(|| "integer values differ".to_string());
        }
        _ => return Some("a float tensor where an integer one is expected, or the reverse".into()),
    };
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else {
            a.is_finite() == b.is_finite() && (a == b || (a - b).abs() <= 1e-7 + 1e-3 * b.abs())
        };
        if !ok {
            return Some(format!("[{i}]: {a} against {b}"));
        }
    }
    None
}

/// Runs one case directory; Err says why it failed.
fn run_case(dir: &Path) -> Result<(), String> {
    let model = load(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let declared: std::collections::HashMap<String, i32> = model
        .graph
        .inputs
        .iter()
        .chain(&model.graph.outputs)
        .filter_map(|v| v.elem_type.map(|t| (v.name.clone(), t)))
        .collect();
    let m = OnnxModel::new(model).map_err(|e| e.to_string())?;
    let names = m.input_names();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    for set in sets {
        let mut inputs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let p = set.join(format!("input_{i}.pb"));
            if p.exists() {
                inputs.push((
                    name.as_str(),
                    read_value_as(&p, declared.get(name).copied())?,
                ));
            }
        }
        let outs = m.run(&inputs).map_err(|e| e.to_string())?;
        for (i, (name, got)) in outs.iter().enumerate() {
            let want = read_value_as(
                &set.join(format!("output_{i}.pb")),
                declared.get(name).copied(),
            )?;
            if let Some(d) = compare(got, &want) {
                return Err(format!("output '{name}' {d}"));
            }
        }
    }
    Ok(())
}

/// Per op (the case's first node's): (passed, failed, not run); and the failures, named.
type Table = BTreeMap<String, (usize, usize, usize)>;

/// Runs each case folder (`model.onnx` and `test_data_set_N/`) that `aics onnx check` passes.
fn run_cases(cases: &[PathBuf]) -> (Table, Vec<String>) {
    let mut table = Table::new();
    let mut failures = Vec::new();
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Ok(model) = load(dir.join("model.onnx")) else {
            failures.push(format!("{name}: does not load"));
            continue;
        };
        let op = model
            .graph
            .nodes
            .first()
            .map_or("?".into(), |n| n.op_type.clone());
        let r = check(&model);
        let runs = r.unsupported.is_empty() && r.problems.is_empty();
        let e = table.entry(op).or_default();
        if !runs {
            e.2 += 1;
            continue;
        }
        match run_case(dir) {
            Ok(()) => e.0 += 1,
            Err(why) => {
                e.1 += 1;
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    (table, failures)
}

#[test]
#[ignore = "needs the ONNX backend test suite: bash scripts/setup.sh"]
fn node_cases_of_the_ops_aics_runs() {
    let root = suite().join("node");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (run bash scripts/setup.sh)", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    cases.sort();
    assert_eq!(
        cases.len(),
        1765,
        "the onnx 1.22.0 suite has 1,765 node cases"
    );
    let (table, failures) = run_cases(&cases);
    let (p, f, n) = table
        .values()
        .fold((0, 0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1, acc.2 + v.2));
    for (op, (a, b, c)) in &table {
        if a + b > 0 {
            println!("{op:<28} passed {a:>4}  failed {b:>4}  not run {c:>4}");
        }
    }
    println!(
        "all: passed {p}, failed {f}, not run {n} of {}",
        cases.len()
    );
    // AICS_ONNX_TABLE=docs/onnx-conformance.md writes the table for the docs
    if let Some(path) = std::env::var_os("AICS_ONNX_TABLE") {
        let mut md = String::from(
            "# ONNX conformance\n\nThe node cases of the ONNX backend test suite (onnx 1.22.0 wheel, \
             1,765 cases) through aics, from `AICS_ONNX_TABLE=$PWD/docs/onnx-conformance.md cargo test \
             --release -p aics-onnx --test suite -- --ignored node_cases`. A case is *not run* when \
             `aics onnx check` finds an op, or a use of an op, that aics does not run; every case \
             that runs is held to the suite's tolerance (rtol 1e-3, atol 1e-7).\n\n",
        );
        md += &format!(
            "**All ops: {p} passed, {f} failed, {n} not run of {} ({:.1}% passed).**\n\n",
            cases.len(),
            100.0 * p as f64 / cases.len() as f64
        );
        md += "| op | passed | failed | not run |\n|---|---|---|---|\n";
        for (op, (a, b, c)) in &table {
            md += &format!("| {op} | {a} | {b} | {c} |\n");
        }
        std::fs::write(&path, md).unwrap();
    }
    for fl in &failures {
        println!("FAILED {fl}");
    }
    assert!(failures.is_empty(), "{} node cases failed", failures.len());
}

#[test]
#[ignore = "needs the ONNX backend test suite: bash scripts/setup.sh"]
fn light_models_give_their_stored_outputs() {
    let root = suite().join("light");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (run bash scripts/setup.sh)", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() >= 9, "{} light models", models.len());
    for path in models {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let model = load(&path).unwrap();
        let m = OnnxModel::new(model.clone()).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // the suite's input: arange(n) / n in the declared shape (unknown sizes as 1)
        let name = m.input_names()[0].clone();
        let decl = model.graph.inputs.iter().find(|i| i.name == name).unwrap();
        let shape: Vec<usize> = decl
            .shape
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| match d {
                aics_onnx::Dim::Value(v) => *v as usize,
                _ => 1,
            })
            .collect();
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
        let x = Value::F(Tensor::from_vec(x, &shape).unwrap());
        let outs = m
            .run(&[(name.as_str(), x)])
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let want = read_value(&root.join(format!("{stem}_output_0.pb"))).unwrap();
        if let Some(d) = compare(&outs[0].1, &want) {
            panic!("{stem}: {d}");
        }
        println!("{stem}: output {:?} equals the stored one", want.shape());
    }
}

#[test]
#[ignore = "needs the ONNX backend test suite: bash scripts/setup.sh"]
fn every_suite_model_reads_back_the_same_after_writing() {
    let (mut n, mut refused) = (0, 0);
    for sub in ["node", "light"] {
        let root = suite().join(sub);
        let mut files: Vec<PathBuf> = Vec::new();
        for e in std::fs::read_dir(&root).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                files.push(p.join("model.onnx"));
            } else if p.extension().is_some_and(|x| x == "onnx") {
                files.push(p);
            }
        }
        for f in files {
            let Ok(m) = load(&f) else { continue };
            // sequences, maps and optionals are refused, not written without their types
            let bytes = match aics_onnx::encode_model(&m) {
                Ok(b) => b,
                Err(e) => {
                    assert!(
                        e.to_string().contains("aics writes"),
                        "{}: {e}",
                        f.display()
                    );
                    refused += 1;
                    continue;
                }
            };
            let again =
                aics_onnx::decode_model(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(format!("{m:?}"), format!("{again:?}"), "{}", f.display());
            n += 1;
        }
    }
    assert!(n > 1600, "{n} models");
    println!("{n} models written and read back; {refused} refused (sequences, maps, optionals)");
}

/// Debian's libonnx-testdata 1.12.0 (fetched into .cache/libonnx-testdata by set-up): the node
/// cases of onnx 1.12, and the cases converted from PyTorch's models and operators and the
/// simple ones, through the runner. Every case whose ops aics runs passes.
#[test]
#[ignore = "needs Debian's libonnx-testdata: bash scripts/setup.sh"]
fn libonnx_testdata_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/libonnx-testdata");
    let mut all = Vec::new();
    for (part, want) in [
        ("node", 932),
        ("pytorch-converted", 0),
        ("pytorch-operator", 0),
        ("simple", 0),
    ] {
        let dir = root.join(part);
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run bash scripts/setup.sh)", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("model.onnx").exists())
            .collect();
        cases.sort();
        if want > 0 {
            assert_eq!(cases.len(), want, "{part}");
        }
        let (table, failures) = run_cases(&cases);
        let (p, f, n) = table
            .values()
            .fold((0, 0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1, acc.2 + v.2));
        println!(
            "libonnx-testdata {part}: passed {p}, failed {f}, not run {n} of {}",
            cases.len()
        );
        for fl in &failures {
            println!("FAILED {part}/{fl}");
        }
        all.extend(failures.into_iter().map(|f| format!("{part}/{f}")));
    }
    // onnx 1.12's reference truncated floats to bfloat16; aics rounds to nearest even, as the
    // onnx 1.22 cases (which pass) expect
    let known = [
        "node/test_cast_FLOAT_to_BFLOAT16:",
        "node/test_castlike_FLOAT_to_BFLOAT16:",
        "node/test_castlike_FLOAT_to_BFLOAT16_expanded:",
    ];
    let unexpected: Vec<&String> = all
        .iter()
        .filter(|f| !known.iter().any(|k| f.starts_with(k)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} cases failed: {unexpected:?}",
        unexpected.len()
    );
    assert_eq!(
        all.len(),
        known.len(),
        "the known differences changed: {all:?}"
    );
}
