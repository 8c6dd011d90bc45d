//! Loading published weights into zoo models: PyTorch checkpoints (`.pth`, zip or legacy
//! format, read by aics-io without executing anything), aics/safetensors checkpoints, and
//! MatConvNet `.mat` files of VGG networks (the textbook's `imagenet-vgg-verydeep-19.mat`).
//! Keys are torchvision's, so the mapping is the identity for PyTorch files; every missing,
//! unexpected or mis-shaped tensor is an error naming it.

use std::collections::HashMap;
use std::path::Path;

use aics_nn::checkpoint::{load_checkpoint, TensorMap};
use aics_nn::{load_state_dict, Module, NnError, Result};

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
