//! `aics summary`: per-layer output shape, parameters, weights and multiply-adds of a model.

use aics_nn::Module;
use aics_tensor::{no_grad, Tensor};
use aics_vision::{build, default_shape, ModelConfig};
use anyhow::Result;

use crate::data_spec::{self, parse_chw};

#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    #[arg(long, default_value = "lenet5")]
    pub model: String,
    /// Input shape CxHxW (default: 1x28x28 for mlp/lenet5, 3x224x224 for the ImageNet models).
    #[arg(long, value_parser = parse_chw)]
    pub input: Option<[usize; 3]>,
    /// Number of classes (default: 10 for mlp/lenet5, 1000 for the ImageNet models).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Hidden sizes of the MLP, e.g. 100,50.
    #[arg(long)]
    pub hidden: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: SummaryArgs) -> Result<()> {
    let hidden = data_spec::parse_hidden(a.hidden.as_deref())?;
    let (shape, classes) = default_shape(&a.model);
    let input = a.input.unwrap_or(shape);
    let model = build(
        &a.model,
        &ModelConfig {
            in_shape: input,
            num_classes: a.classes.unwrap_or(classes),
            hidden,
            seed: 0,
        },
    )?;
    let _g = no_grad();
    model.set_training(false);
    let x = Tensor::zeros(&[1, input[0], input[1], input[2]]);
    let aics_nn::inspect::Summary {
        rows,
        macs,
        params,
        weights,
    } = aics_nn::inspect::summary(&model, &x)?;
    if a.json {
        let layers: Vec<_> = rows.iter().map(|r| serde_json::json!({"name": r.name, "layer": r.layer, "output": r.output, "params": r.params, "weights": r.weights, "macs": r.macs})).collect();
        println!(
            "{}",
            serde_json::json!({"model": a.model, "input": input, "layers": layers, "total_params": params, "total_weights": weights, "total_macs": macs})
        );
        return Ok(());
    }
    println!(
        "{} on input {}x{}x{}",
        a.model, input[0], input[1], input[2]
    );
    println!(
        "{:<10} {:<32} {:<18} {:>10} {:>10} {:>12}",
        "name", "layer", "output", "params", "weights", "mult-adds"
    );
    for r in &rows {
        let shape = r
            .output
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<10} {:<32} {:<18} {:>10} {:>10} {:>12}",
            r.name, r.layer, shape, r.params, r.weights, r.macs
        );
    }
    println!(
        "{:<10} {:<32} {:<18} {:>10} {:>10} {:>12}",
        "total", "", "", params, weights, macs
    );
    Ok(())
}
