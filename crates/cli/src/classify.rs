//! `aics classify`: ImageNet classification of image files with a zoo model and published
//! weights (default: the MobileNetV2 ImageNet weights fetched by `scripts/setup.sh`).

use std::path::PathBuf;

use aics_nn::Module;
use aics_tensor::no_grad;
use aics_vision::{build, imagenet, ModelConfig};
use anyhow::{bail, Context, Result};

/// Where `scripts/fetch-assets.sh` puts torchvision's MobileNetV2 weights.
const DEFAULT_MOBILENET: &str = ".cache/weights/mobilenet_v2-b0353104.pth";

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    #[arg(long, default_value = "mobilenet_v2")]
    pub model: String,
    /// Weights file (.pth as published by torchvision, or .safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// One JSON line per image.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    let weights = match (&a.weights, a.model.as_str()) {
        (Some(w), _) => w.clone(),
        (None, "mobilenet_v2") => PathBuf::from(DEFAULT_MOBILENET),
        (None, m) => bail!(
            "no weights for {m}: pass --weights PATH (torchvision's published .pth file for {m})"
        ),
    };
    if a.weights.is_none() && !weights.exists() {
        bail!("{}: not found; run `bash scripts/setup.sh` to fetch the MobileNetV2 weights, or pass --weights PATH", weights.display());
    }
    let model = build(
        &a.model,
        &ModelConfig {
            in_shape: [3, 224, 224],
            num_classes: 1000,
            hidden: vec![],
            seed: 0,
        },
    )?;
    aics_vision::weights::load_weights(&model, &weights)?;
    model.set_training(false);
    let _g = no_grad();
    let names = imagenet::class_names();
    for path in &a.images {
        let x = imagenet::preprocess(path, 256, 224)?;
        let probs = model
            .forward(&x)
            .with_context(|| format!("{}: forward pass", path.display()))?
            .softmax(1)?
            .to_vec();
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
        let top: Vec<(usize, &str, f32)> = order
            .iter()
            .take(a.top.max(1))
            .map(|&i| (i, names.get(i).copied().unwrap_or("?"), probs[i]))
            .collect();
        if a.json {
            let t: Vec<_> = top
                .iter()
                .map(|(i, l, p)| serde_json::json!({"class": i, "label": l, "prob": p}))
                .collect();
            println!("{}", serde_json::json!({"image": path, "top": t}));
        } else {
            let t: Vec<String> = top
                .iter()
                .map(|(_, l, p)| format!("{} {:.1}%", l.split(',').next().unwrap_or(l), 100.0 * p))
                .collect();
            println!("{}: {}", path.display(), t.join(", "));
        }
    }
    Ok(())
}
