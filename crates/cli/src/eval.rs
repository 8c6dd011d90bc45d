//! `aics eval` (accuracy, loss, per-class accuracy and confusion matrix of a checkpoint on a test
//! set) and `aics predict` (top-k classes for image files).

use std::path::PathBuf;

use aics_data::{ColorMode, DataLoader};
use aics_nn::Module;
use aics_tensor::{no_grad, Tensor};
use anyhow::{Context, Result};

use crate::data_spec;
use crate::meta::load_model;
use crate::train::{evaluate, limit, normalize};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set to evaluate on (default: the one the checkpoint was trained on).
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    let (_, meta, model) = load_model(&a.checkpoint)?;
    let spec = a.dataset.clone().unwrap_or_else(|| meta.dataset.clone());
    let gray = meta.in_shape[0] == 1;
    let ds = data_spec::load(&spec, (meta.in_shape[1], meta.in_shape[2]), gray)?;
    if ds.in_shape() != meta.in_shape || ds.test.num_classes() != meta.num_classes {
        anyhow::bail!(
            "{}: model expects {:?} images in {} classes, data set {spec} has {:?} in {}",
            a.checkpoint.display(),
            meta.in_shape,
            meta.num_classes,
            ds.in_shape(),
            ds.test.num_classes()
        );
    }
    let test = limit(ds.test, a.limit_test);
    let loader = DataLoader::new(
        test.clone(),
        a.batch_size.max(1),
        false,
        0,
        Some(normalize(&meta.mean, &meta.std)?),
        false,
    )?;
    let (loss, acc, confusion) = evaluate(&model, &loader, meta.num_classes)?;
    let per_class: Vec<f64> = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| row[i] as f64 / row.iter().sum::<usize>().max(1) as f64)
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"checkpoint": a.checkpoint, "dataset": spec, "images": test.len(), "loss": loss, "accuracy": acc, "per_class_accuracy": per_class, "confusion": confusion})
        );
        return Ok(());
    }
    println!(
        "{} on {spec} ({} images): loss {loss:.4}, accuracy {:.2}%",
        a.checkpoint.display(),
        test.len(),
        100.0 * acc
    );
    println!("{:<16} {:>9}", "class", "accuracy");
    for (i, acc) in per_class.iter().enumerate() {
        println!(
            "{:<16} {:>8.2}%",
            meta.classes.get(i).map(|s| s.as_str()).unwrap_or("?"),
            100.0 * acc
        );
    }
    println!("confusion matrix (rows: true class, columns: predicted):");
    for row in &confusion {
        println!(
            "  {}",
            row.iter().map(|v| format!("{v:>5}")).collect::<String>()
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (PNG or JPEG); resized to the model's input size.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Invert intensities (dark objects on a light background, unlike MNIST-style data).
    #[arg(long)]
    pub invert: bool,
}

pub fn run_predict(a: PredictArgs) -> Result<()> {
    let (_, meta, model) = load_model(&a.checkpoint)?;
    model.set_training(false);
    let _g = no_grad();
    let [c, h, w] = meta.in_shape;
    let mode = if c == 1 {
        ColorMode::Gray
    } else {
        ColorMode::Rgb
    };
    for path in &a.images {
        let mut img = aics_data::load_image(path, h, w, mode)
            .with_context(|| format!("cannot read image {}", path.display()))?;
        if a.invert {
            img.iter_mut().for_each(|v| *v = 1.0 - *v);
        }
        let plane = h * w;
        for (ch, chunk) in img.chunks_mut(plane).enumerate() {
            let (m, s) = (
                meta.mean[ch % meta.mean.len()],
                meta.std[ch % meta.std.len()],
            );
            chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
        let probs = model
            .forward(&Tensor::from_vec(img, &[1, c, h, w])?)?
            .softmax(1)?
            .to_vec();
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
        let top: Vec<String> = order
            .iter()
            .take(a.top.max(1))
            .map(|&i| {
                format!(
                    "{} {:.1}%",
                    meta.classes.get(i).map(|s| s.as_str()).unwrap_or("?"),
                    100.0 * probs[i]
                )
            })
            .collect();
        println!("{}: {}", path.display(), top.join(", "));
    }
    Ok(())
}
