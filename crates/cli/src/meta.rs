//! What a checkpoint must record to rebuild its model and preprocess inputs: stored as
//! safetensors string metadata next to the weights.

use std::collections::HashMap;
use std::path::Path;

use aics_nn::checkpoint::{load_checkpoint, Checkpoint};
use aics_nn::Module;
use aics_vision::{build, ModelConfig};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub model: String,
    pub in_shape: [usize; 3],
    pub num_classes: usize,
    pub hidden: Vec<usize>,
    pub dataset: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub classes: Vec<String>,
}

impl ModelMeta {
    pub fn config(&self, seed: u64) -> ModelConfig {
        ModelConfig {
            in_shape: self.in_shape,
            num_classes: self.num_classes,
            hidden: self.hidden.clone(),
            seed,
        }
    }
    pub fn build(&self, seed: u64) -> Result<Box<dyn Module>> {
        Ok(build(&self.model, &self.config(seed))?)
    }
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([(
            "aics.model".to_string(),
            serde_json::to_string(self).unwrap_or_default(),
        )])
    }
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<ModelMeta> {
        let s = ck.meta("aics.model").with_context(|| {
            format!(
                "{}: not an aics training checkpoint (no model description in its metadata)",
                ck.path.display()
            )
        })?;
        serde_json::from_str(s).with_context(|| {
            format!(
                "{}: unreadable model description in metadata",
                ck.path.display()
            )
        })
    }
}

/// Load a checkpoint, rebuild its model and load the weights into it.
pub fn load_model(path: &Path) -> Result<(Checkpoint, ModelMeta, Box<dyn Module>)> {
    let ck = load_checkpoint(path)?;
    let meta = ModelMeta::from_checkpoint(&ck)?;
    let model = meta.build(0)?;
    ck.load_into(&model)?;
    Ok((ck, meta, model))
}
