//! `aics onnx check MODEL`: what an ONNX model needs, found before anything runs (inputs,
//! outputs, opsets, the ops it uses and the ones aics cannot run, structural faults).

use std::path::PathBuf;

use aics_onnx::check::{check, describe, op_name};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args, Debug)]
pub struct OnnxArgs {
    #[command(subcommand)]
    pub cmd: OnnxCmd,
}

#[derive(Subcommand, Debug)]
pub enum OnnxCmd {
    /// Print a model's inputs, outputs, opsets and ops, and every op aics cannot run and every
    /// structural fault at once; exits non-zero if there are any.
    Check(CheckArgs),
    /// Run a model on inputs from .npy files and print (or save) its outputs.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The .onnx file (initializers in external files are read from beside it).
    pub model: PathBuf,
    /// An input as NAME=FILE.npy; every graph input needs one.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub inputs: Vec<String>,
    /// Write each output to DIR/NAME.npy (float32).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// One JSON line per output instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The .onnx file.
    pub model: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: OnnxArgs) -> Result<()> {
    match a.cmd {
        OnnxCmd::Check(c) => run_check(c),
        OnnxCmd::Run(r) => run_model(r),
    }
}

fn run_model(a: RunArgs) -> Result<()> {
    use aics_onnx::proto::dtype;
    use aics_onnx::Value;
    use aics_tensor::Tensor;
    let m = aics_onnx::open(&a.model)?;
    let declared = &m.graph().inputs;
    let names = m.input_names();
    let mut feeds: Vec<(String, Value)> = Vec::new();
    for spec in &a.inputs {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--input {spec}: expected NAME=FILE.npy");
        };
        if !names.iter().any(|n| n == name) {
            bail!(
                "--input {spec}: the model has no input '{name}' (its inputs: {})",
                names.join(", ")
            );
        }
        let t = aics_io::npz::load_npy(std::path::Path::new(file))?;
        let float = declared
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.elem_type)
            .is_none_or(|e| {
                matches!(
                    e,
                    dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16
                )
            });
        let v = if float {
            Value::F(Tensor::from_vec(t.data, &t.shape)?)
        } else {
            Value::I(t.data.iter().map(|&x| x.round() as i64).collect(), t.shape)
        };
        feeds.push((name.to_string(), v));
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !feeds.iter().any(|(f, _)| f == *n))
        .collect();
    if !missing.is_empty() {
        let m: Vec<String> = missing
            .iter()
            .map(|s| format!("--input {s}=FILE.npy"))
            .collect();
        bail!("{}: inputs not given: {}", a.model.display(), m.join(" "));
    }
    let refs: Vec<(&str, Value)> = feeds.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let outs = m.run(&refs)?;
    if let Some(dir) = &a.output_dir {
        std::fs::create_dir_all(dir)?;
    }
    for (name, v) in outs {
        let (shape, data): (Vec<usize>, Vec<f32>) = match &v {
            Value::F(t) => (t.shape().to_vec(), t.to_vec()),
            Value::I(d, s) => (s.clone(), d.iter().map(|&x| x as f32).collect()),
        };
        let n = data.len().max(1) as f64;
        let mean = data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let min = data.iter().copied().fold(f32::INFINITY, f32::min);
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let first: Vec<f32> = data.iter().take(8).copied().collect();
        let mut saved = None;
        if let Some(dir) = &a.output_dir {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = dir.join(format!("{safe}.npy"));
            aics_nn::checkpoint::write_atomic(&path, &aics_io::npz::npy_bytes(&shape, &data))?;
            saved = Some(path.display().to_string());
        }
        if a.json {
            println!(
                "{}",
                json!({"output": name, "shape": shape, "min": min, "max": max, "mean": mean, "first": first, "file": saved})
            );
        } else {
            println!(
                "{name} {shape:?}  min {min:.6}  max {max:.6}  mean {mean:.6}  first {first:?}"
            );
            if let Some(p) = saved {
                println!("  saved {p}");
            }
        }
    }
    Ok(())
}

fn run_check(a: CheckArgs) -> Result<()> {
    let model = aics_onnx::load(&a.model)?;
    let r = check(&model);
    let path = a.model.display();
    if a.json {
        let ops: Vec<_> = r
            .ops
            .iter()
            .map(|((d, o), n)| json!({"domain": d, "op": o, "count": n, "supported": !r.unsupported.contains(&(d.clone(), o.clone()))}))
            .collect();
        println!(
            "{}",
            json!({
                "model": path.to_string(),
                "ir_version": model.ir_version,
                "producer": format!("{} {}", model.producer_name, model.producer_version).trim(),
                "opsets": r.opsets,
                "inputs": r.inputs.iter().map(describe).collect::<Vec<_>>(),
                "outputs": r.outputs.iter().map(describe).collect::<Vec<_>>(),
                "nodes": r.nodes,
                "initializers": r.initializers,
                "parameters": r.parameters,
                "ops": ops,
                "unsupported": r.unsupported.iter().map(|(d, o)| op_name(d, o)).collect::<Vec<_>>(),
                "problems": r.problems,
            })
        );
    } else {
        println!("model      {path}");
        let producer = format!("{} {}", model.producer_name, model.producer_version);
        println!(
            "format     IR version {}, made by {}",
            model.ir_version,
            producer.trim()
        );
        let opsets: Vec<String> = r
            .opsets
            .iter()
            .map(|(d, v)| format!("{} {v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        println!("opsets     {}", opsets.join(", "));
        for (label, vs) in [("input", &r.inputs), ("output", &r.outputs)] {
            for v in vs {
                println!("{label:<10} {}", describe(v));
            }
        }
        println!(
            "graph      {} nodes, {} initializers ({} values)",
            r.nodes, r.initializers, r.parameters
        );
        println!("ops");
        for ((d, o), n) in &r.ops {
            let mark = if r.unsupported.contains(&(d.clone(), o.clone())) {
                "  (not supported)"
            } else {
                ""
            };
            println!("  {:<28} {n:>5}{mark}", op_name(d, o));
        }
        for p in &r.problems {
            println!("problem    {p}");
        }
    }
    let mut faults = Vec::new();
    if !r.unsupported.is_empty() {
        let names: Vec<String> = r.unsupported.iter().map(|(d, o)| op_name(d, o)).collect();
        faults.push(format!(
            "{} op type(s) aics cannot run yet: {}",
            names.len(),
            names.join(", ")
        ));
    }
    if !r.problems.is_empty() {
        faults.push(format!(
            "{} structural problem(s), the first: {}",
            r.problems.len(),
            r.problems[0]
        ));
    }
    if !faults.is_empty() {
        bail!("{path}: {}", faults.join("; "));
    }
    Ok(())
}
