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
    // torchvision publishes GoogLeNet without its auxiliary classifiers
    let model_name = match a.model.as_str() {
        "googlenet" => "googlenet_noaux",
        "inception_v3" => "inception_v3",
        m => m,
    };
    let weights = match (&a.weights, model_name) {
        (Some(w), _) => w.clone(),
        (None, m) => match crate::weights_cmd::cached(m) {
            Some(p) => p,
            None if m == "mobilenet_v2" => PathBuf::from(DEFAULT_MOBILENET),
            None => bail!(
                "no weights for {m}: run `aics weights fetch {m}`, or pass --weights PATH (torchvision's published .pth file)"
            ),
        },
    };
    if a.weights.is_none() && !weights.exists() {
        bail!("{}: not found; run `bash scripts/setup.sh` to fetch the MobileNetV2 weights, or pass --weights PATH", weights.display());
    }
    // torchvision's evaluation sizes: Inception-v3 resizes to 342 and crops 299
    let (resize, crop) = if model_name.starts_with("inception_v3") {
        (342, 299)
    } else {
        (256, 224)
    };
    let mut model = build(
        model_name,
        &ModelConfig {
            in_shape: [3, crop as usize, crop as usize],
            num_classes: 1000,
            hidden: vec![],
            seed: 0,
        },
    )?;
    // torchvision's GoogLeNet and Inception-v3 weights were trained on inputs scaled to
    // [-1, 1] per channel; torchvision converts ImageNet-normalised inputs (`transform_input`)
    let transform_input =
        model_name.starts_with("googlenet") || model_name.starts_with("inception_v3");
    aics_vision::weights::load_weights(&model, &weights)?;
    model.set_training(false);
    // the inference path: batch norms folded, activations and residual adds fused
    model.prepare_inference()?;
    let _g = no_grad();
    let names = imagenet::class_names();
    for path in &a.images {
        let mut x = imagenet::preprocess(path, resize, crop)?;
        if transform_input {
            x = imagenet::to_unit_range(&x)?;
        }
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
