//! `aics onnx check MODEL`: what an ONNX model needs, found before anything runs (inputs,
//! outputs, opsets, the ops it uses and the ones aics cannot run, structural faults).

use std::path::PathBuf;

use aics_onnx::check::{check, describe};
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
    }
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

fn op_name(domain: &str, op: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" {
        op.to_string()
    } else {
        format!("{domain}.{op}")
    }
}
