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
    /// A zoo model (mobilenet_v2, resnet50, vgg19, …) or an ONNX classifier (`model.onnx`: one
    /// image input, N×3×H×W or N×H×W×3, or N×1×H×W for grayscale; its first output the class
    /// scores; ImageNet's class names when there are 1000).
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
    /// ONNX models: the pixel range the model was trained on: imagenet (ImageNet's mean and
    /// standard deviation, as torchvision's exports), unit ([0, 1]) or symmetric ([-1, 1]).
    /// Grayscale models take the [0, 1] gray level.
    #[arg(long, default_value = "imagenet")]
    pub input_range: String,
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    if a.model.ends_with(".onnx") {
        return run_onnx(a);
    }
    if a.input_range != "imagenet" {
        bail!(
            "--input-range applies to ONNX models; {} takes ImageNet-normalised images",
            a.model
        );
    }
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

/// `aics classify --model file.onnx`: the image resized and centre-cropped to the model's
/// declared input size (as torchvision's 256 → 224), in its layout and pixel range.
fn run_onnx(a: ClassifyArgs) -> Result<()> {
    use aics_onnx::Value;
    use aics_tensor::Tensor;
    let path = PathBuf::from(&a.model);
    if a.weights.is_some() {
        bail!(
            "--weights: an ONNX model carries its weights ({})",
            path.display()
        );
    }
    if !matches!(a.input_range.as_str(), "imagenet" | "unit" | "symmetric") {
        bail!(
            "--input-range {}: expected imagenet, unit or symmetric",
            a.input_range
        );
    }
    let m = aics_onnx::open(&path)?;
    let names = m.input_names();
    let [input] = names.as_slice() else {
        bail!(
            "{}: a classifier takes one image input; this model has {} ({}); use `aics onnx run`",
            path.display(),
            names.len(),
            names.join(", ")
        );
    };
    let dims = m.declared_dims(input);
    if dims.len() != 4 {
        bail!(
            "{}: input '{input}' has {} dimensions; a classifier takes a batch of images (4)",
            path.display(),
            dims.len()
        );
    }
    // N×C×H×W, or N×H×W×C with 3 channels last
    let nhwc = dims[3] == Some(3) && dims[1] != Some(3);
    let (c, h, w) = if nhwc {
        (3, dims[1], dims[2])
    } else {
        (dims[1].unwrap_or(3), dims[2], dims[3])
    };
    if c != 1 && c != 3 {
        bail!(
            "{}: input '{input}' has {c} channels; a classifier takes 1 or 3",
            path.display()
        );
    }
    let size = match (h, w) {
        (Some(h), Some(w)) if h != w => bail!("{}: input '{input}' is {h}×{w}; classify crops square images (use `aics onnx run` for others)", path.display()),
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => 224,
    };
    let resize = ((size as f64) * 256.0 / 224.0).round() as u32;
    // the class scores: probabilities already when a Softmax makes the output
    let out_name = m
        .graph()
        .outputs
        .first()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let is_probs = m
        .graph()
        .nodes
        .iter()
        .any(|n| n.op_type == "Softmax" && n.outputs.contains(&out_name));
    let names_imagenet = imagenet::class_names();
    for img in &a.images {
        let x = imagenet::preprocess(img, resize, size as u32)?;
        // ImageNet-normalised RGB → the model's range and channels
        let unit = x
            .mul(&Tensor::from_vec(
                vec![0.229f32, 0.224, 0.225],
                &[1, 3, 1, 1],
            )?)?
            .add(&Tensor::from_vec(
                vec![0.485f32, 0.456, 0.406],
                &[1, 3, 1, 1],
            )?)?;
        let x = if c == 1 {
            unit.mean_dims(&[1], true)?
        } else {
            match a.input_range.as_str() {
                "unit" => unit,
                "symmetric" => unit.mul_scalar(2.0).add_scalar(-1.0),
                _ => x,
            }
        };
        let x = if nhwc { x.permute(&[0, 2, 3, 1])? } else { x };
        let outs = m
            .run(&[(input.as_str(), Value::F(x))])
            .with_context(|| format!("{}: {}", img.display(), path.display()))?;
        let Some((_, Value::F(scores))) = outs.into_iter().next() else {
            bail!("{}: the first output is not a float tensor", path.display());
        };
        let k = scores.shape().last().copied().unwrap_or(0);
        if scores.numel() != k || k == 0 {
            bail!(
                "{}: output {:?} is not one row of class scores",
                path.display(),
                scores.shape()
            );
        }
        let probs = if is_probs {
            scores.to_vec()
        } else {
            scores.reshape(&[1, k])?.softmax(1)?.to_vec()
        };
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
        let label = |i: usize| {
            if k == 1000 {
                names_imagenet
                    .get(i)
                    .map(|s| s.split(',').next().unwrap_or(s).to_string())
                    .unwrap_or_default()
            } else {
                format!("class {i}")
            }
        };
        let top: Vec<usize> = order.into_iter().take(a.top.max(1)).collect();
        if a.json {
            let t: Vec<_> = top
                .iter()
                .map(|&i| serde_json::json!({"class": i, "label": label(i), "prob": probs[i]}))
                .collect();
            println!("{}", serde_json::json!({"image": img, "top": t}));
        } else {
            let t: Vec<String> = top
                .iter()
                .map(|&i| format!("{} {:.1}%", label(i), 100.0 * probs[i]))
                .collect();
            println!("{}: {}", img.display(), t.join(", "));
        }
    }
    Ok(())
}
