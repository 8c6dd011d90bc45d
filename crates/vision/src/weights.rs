//! Loading published weights into zoo models: PyTorch checkpoints (`.pth`, zip or legacy
//! format, read by aics-io without executing anything), aics/safetensors checkpoints, and
//! MatConvNet `.mat` files of VGG networks (the textbook's `imagenet-vgg-verydeep-19.mat`).
//! Keys are torchvision's, so the mapping is the identity for PyTorch files; every missing,
//! unexpected or mis-shaped tensor is an error naming it.

use std::collections::HashMap;
use std::path::Path;

use aics_nn::checkpoint::{load_checkpoint, TensorMap};
use aics_nn::{load_state_dict, Module, NnError, Result};

/// Where torchvision publishes its ImageNet weights.
pub const TORCHVISION_BASE_URL: &str = "https://download.pytorch.org/models/";

/// torchvision's published ImageNet weights (IMAGENET1K_V1) for each zoo model that has them:
/// the file name, whose last 8 hex digits before `.pth` start the file's SHA-256.
pub const PUBLISHED: &[(&str, &str)] = &[
    ("alexnet", "alexnet-owt-7be5be79.pth"),
    ("vgg11", "vgg11-8a719046.pth"),
    ("vgg13", "vgg13-19584684.pth"),
    ("vgg16", "vgg16-397923af.pth"),
    ("vgg19", "vgg19-dcbb9e9d.pth"),
    ("vgg11_bn", "vgg11_bn-6002323d.pth"),
    ("vgg13_bn", "vgg13_bn-abd245e5.pth"),
    ("vgg16_bn", "vgg16_bn-6c64b313.pth"),
    ("vgg19_bn", "vgg19_bn-c79401a0.pth"),
    ("resnet18", "resnet18-f37072fd.pth"),
    ("resnet34", "resnet34-b627a593.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("resnet101", "resnet101-63fe2227.pth"),
    ("resnet152", "resnet152-394f9c45.pth"),
    ("mobilenet_v2", "mobilenet_v2-b0353104.pth"),
    ("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth"),
    ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth"),
    ("googlenet_noaux", "googlenet-1378be20.pth"),
    ("inception_v3", "inception_v3_google-0cc3c7bd.pth"),
    // detectors trained on COCO (91 classes with the background), for `aics detect`
    (
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    ),
    (
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
    ),
    (
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
    ),
    ("ssd300_vgg16", "ssd300_vgg16_coco-b556d3b4.pth"),
    (
        "ssdlite320_mobilenet_v3_large",
        "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
    ),
];

/// The published weights file for a zoo model name (`googlenet` maps to the weights without
/// auxiliary classifiers, which is what torchvision publishes).
pub fn published_file(model: &str) -> Option<&'static str> {
    let model = if model == "googlenet" {
        "googlenet_noaux"
    } else {
        model
    };
    PUBLISHED.iter().find(|(m, _)| *m == model).map(|(_, f)| *f)
}

/// The SHA-256 prefix torchvision puts in a weights file name (`resnet18-f37072fd.pth` →
/// `f37072fd`).
pub fn hash_prefix(file: &str) -> Option<&str> {
    let stem = file.strip_suffix(".pth")?;
    let h = stem.rsplit('-').next()?;
    (h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit())).then_some(h)
}

/// Read the tensors of a `.pth`, `.safetensors` or MatConvNet `.mat` file by name.
pub fn read_weights(path: &Path) -> Result<TensorMap> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "safetensors" {
        return Ok(load_checkpoint(path)?.model_tensors());
    }
    if ext == "mat" {
        return Ok(read_matconvnet_vgg(path)?.0);
    }
    let entries = aics_io::load_pth(path).map_err(|e| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(entries
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.data)))
        .collect::<HashMap<_, _>>())
}

/// Load a weights file into `model` (all tensors must match by name and shape).
pub fn load_weights(model: &dyn Module, path: &Path) -> Result<()> {
    let tensors = read_weights(path)?;
    load_state_dict(model, &tensors, true).map_err(|e| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// A MatConvNet VGG (simplenn layout) under torchvision's VGG keys: its convolutions in order
/// become `features.N` (N counting the ReLU and pooling layers in between, as torchvision's
/// table does), and `fc6`/`fc7`/`fc8` — stored as 7×7 and 1×1 convolutions — become
/// `classifier.0/3/6` with their kernels flattened in (C, H, W) order, which is the order
/// torchvision's `flatten` gives. Also returns the mean pixel (RGB, 0–255) the file was trained
/// with, if it records one.
pub fn read_matconvnet_vgg(path: &Path) -> Result<(TensorMap, Option<[f32; 3]>)> {
    let bad = |msg: String| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let model = aics_io::load_matconvnet(path).map_err(|e| bad(e.to_string()))?;
    let names: Vec<&str> = model.convs.iter().map(|c| c.name.as_str()).collect();
    let keys = matconvnet_vgg_keys(&names);
    let mut map = TensorMap::new();
    for (conv, key) in model.convs.into_iter().zip(keys) {
        let w = conv.weight;
        let shape = if key.starts_with("classifier") {
            let out = w.shape[0];
            vec![out, w.numel() / out.max(1)]
        } else {
            w.shape
        };
        map.insert(format!("{key}.weight"), (shape, w.data));
        map.insert(format!("{key}.bias"), (conv.bias.shape, conv.bias.data));
    }
    if map.is_empty() {
        return Err(bad("no convolution layers found".into()));
    }
    Ok((map, model.mean_rgb))
}

/// torchvision VGG module names for MatConvNet layer names `conv{block}_{i}` and `fc{6,7,8}`:
/// convolutions are `features.N` with N advancing by 2 per conv (conv, ReLU) and by 1 more for
/// the pool between blocks; the fully connected layers are `classifier.0/3/6`.
pub fn matconvnet_vgg_keys(names: &[&str]) -> Vec<String> {
    let (mut feature, mut fc) = (0usize, 0usize);
    let mut prev_block: Option<&str> = None;
    names
        .iter()
        .map(|name| {
            if name.starts_with("fc") {
                fc += 1;
                return format!("classifier.{}", 3 * (fc - 1));
            }
            let block = name.split('_').next();
            if prev_block.is_some() && block != prev_block {
                feature += 1;
            }
            prev_block = block;
            feature += 2;
            format!("features.{}", feature - 2)
        })
        .collect()
}
