//! Loading published weights into zoo models: PyTorch checkpoints (`.pth`, zip or legacy
//! format, read by aics-io without executing anything) and aics/safetensors checkpoints.
//! Keys are torchvision's, so the mapping is the identity; every missing, unexpected or
//! mis-shaped tensor is an error naming it.

use std::collections::HashMap;
use std::path::Path;

use aics_nn::checkpoint::{load_checkpoint, TensorMap};
use aics_nn::{load_state_dict, Module, NnError, Result};

/// Read the tensors of a `.pth` or `.safetensors` file by name.
pub fn read_weights(path: &Path) -> Result<TensorMap> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    if is_safetensors {
        return Ok(load_checkpoint(path)?.model_tensors());
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
