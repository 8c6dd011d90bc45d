//! Checkpoints as safetensors files: the model's state dict under its PyTorch keys, the
//! optimizer's state under `optimizer.*`, and string metadata (model name, epoch, settings).
//! Files are written atomically (temp file in the same folder, fsync, rename, fsync folder), so
//! a crash mid-save leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use aics_tensor::Rng;

use crate::error::{NnError, Result};
use crate::module::{state_dict, Module};
use crate::optim::Optimizer;

pub const OPTIM_PREFIX: &str = "optimizer.";
/// Metadata key of the model's random streams (dropout's): a JSON object, key → `Rng::state`.
pub const RNG_META: &str = "aics.rng";

/// Tensors by name: (shape, data).
pub type TensorMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

pub struct Checkpoint {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    pub tensors: TensorMap,
}

impl Checkpoint {
    /// The model's tensors (everything outside `optimizer.`).
    pub fn model_tensors(&self) -> TensorMap {
        self.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with(OPTIM_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    /// The optimizer's state, prefix removed.
    pub fn optimizer_state(&self) -> TensorMap {
        self.tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(OPTIM_PREFIX)
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect()
    }
    /// The state of the optimizer saved as `name` by [`save_checkpoint_optims`], prefix
    /// removed.
    pub fn optimizer_state_of(&self, name: &str) -> TensorMap {
        let pre = format!("{OPTIM_PREFIX}{name}.");
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&pre).map(|s| (s.to_string(), v.clone())))
            .collect()
    }
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|s| s.as_str())
    }
    /// Load the model tensors into `model`, and its random streams (dropout's) where the file
    /// has them, naming this file in any error.
    pub fn load_into(&self, model: &dyn Module) -> Result<()> {
        let bad = |msg: String| NnError::Checkpoint {
            path: self.path.clone(),
            msg,
        };
        crate::module::load_state_dict(model, &self.model_tensors(), true)
            .map_err(|e| bad(e.to_string()))?;
        let Some(text) = self.meta(RNG_META) else {
            return Ok(()); // written before checkpoints carried them, or a model without any
        };
        let saved: HashMap<String, String> = serde_json::from_str(text)
            .map_err(|e| bad(format!("unreadable {RNG_META} metadata ({e})")))?;
        let mut found = 0;
        let mut err = None;
        model.visit_rngs(
            "",
            &mut |k, r| match saved.get(&k).map(|s| Rng::from_state(s)) {
                Some(Some(state)) => {
                    *r.lock().unwrap_or_else(|p| p.into_inner()) = state;
                    found += 1;
                }
                Some(None) => err = Some(format!("random stream `{k}`: unreadable state")),
                None => err = Some(format!("no random stream `{k}` saved for this model")),
            },
        );
        if let Some(e) = err {
            return Err(bad(e));
        }
        if found != saved.len() {
            return Err(bad(format!(
                "{} random streams saved, the model has {found}",
                saved.len()
            )));
        }
        Ok(())
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| NnError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Save model (and optimizer) state with metadata.
pub fn save_checkpoint(
    path: &Path,
    model: &dyn Module,
    optim: Option<&dyn Optimizer>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let optims: Vec<(&str, &dyn Optimizer)> = optim.map(|o| ("", o)).into_iter().collect();
    save_checkpoint_optims(path, model, &optims, metadata)
}

/// Save a model trained by several optimizers (a GAN's generator and discriminator): each
/// optimizer's state goes under `optimizer.NAME.` (read back by
/// [`Checkpoint::optimizer_state_of`]); an empty name is [`save_checkpoint`]'s layout.
pub fn save_checkpoint_optims(
    path: &Path,
    model: &dyn Module,
    optims: &[(&str, &dyn Optimizer)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, t) in state_dict(model) {
        entries.push((
            k,
            t.shape().to_vec(),
            t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    for (name, o) in optims {
        let pre = if name.is_empty() {
            OPTIM_PREFIX.to_string()
        } else {
            format!("{OPTIM_PREFIX}{name}.")
        };
        for (k, shape, data) in o.state() {
            entries.push((
                format!("{pre}{k}"),
                shape,
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
    }
    let mut meta = metadata;
    meta.insert("format".into(), "aics-checkpoint-v1".into());
    let mut rngs = serde_json::Map::new();
    model.visit_rngs("", &mut |k, r| {
        let state = r.lock().unwrap_or_else(|p| p.into_inner()).state();
        rngs.insert(k, serde_json::Value::String(state));
    });
    if !rngs.is_empty() {
        meta.insert(RNG_META.into(), serde_json::Value::Object(rngs).to_string());
    }
    for (name, o) in optims {
        let sep = if name.is_empty() { "" } else { "." };
        meta.insert(format!("optimizer{sep}{name}"), o.name().into());
        meta.insert(format!("lr{sep}{name}"), o.get_lr().to_string());
    }
    let bad = |msg: String| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .map(|(k, s, d)| {
            TensorView::new(Dtype::F32, s.clone(), d)
                .map(|v| (k.clone(), v))
                .map_err(|e| bad(format!("{k}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Read a checkpoint (or any safetensors file of f32/f64/i64 tensors).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| NnError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Checkpoint::from_bytes(&bytes, path)
}

impl Checkpoint {
    /// Like [`load_checkpoint`], but for the file's bytes already in memory; `path` is
    /// recorded in the result and names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        parse_checkpoint(bytes, path)
    }
}

fn parse_checkpoint(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let bad = |msg: String| NnError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("cannot read the safetensors header ({e})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupt or truncated ({e})")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; expected F32, F64 or I64"
                )))
            }
        };
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        metadata,
        tensors,
    })
}
