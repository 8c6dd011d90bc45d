//! Reader for the reference fixtures in `fixtures/ops/*.json`, written by
//! `fixtures/gen_ops.py` with PyTorch in float64: inputs, params, output, an upstream gradient
//! `gout`, and the gradients of `Σ output ⊙ gout` with respect to each input.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use aics_tensor::Tensor;

pub struct Fixture {
    pub name: String,
    pub op: String,
    pub params: Value,
    pub inputs: BTreeMap<String, Tensor<f64>>,
    pub output: Tensor<f64>,
    pub gout: Option<Tensor<f64>>,
    pub grads: BTreeMap<String, Tensor<f64>>,
}

fn tensor(v: &Value) -> Result<Tensor<f64>, String> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .ok_or("missing shape")?
        .iter()
        .map(|d| d.as_u64().unwrap_or(0) as usize)
        .collect();
    let data: Vec<f64> = match &v["data"] {
        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        _ => return Err("missing data".into()),
    };
    Tensor::from_vec(data, &shape).map_err(|e| e.to_string())
}

fn tensors(v: &Value) -> Result<BTreeMap<String, Tensor<f64>>, String> {
    let mut m = BTreeMap::new();
    if let Some(o) = v.as_object() {
        for (k, t) in o {
            m.insert(k.clone(), tensor(t).map_err(|e| format!("{k}: {e}"))?);
        }
    }
    Ok(m)
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Fixture {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            op: v["op"].as_str().unwrap_or("").to_string(),
            params: v["params"].clone(),
            inputs: tensors(&v["inputs"])?,
            output: tensor(&v["output"])?,
            gout: if v["gout"].is_null() {
                None
            } else {
                Some(tensor(&v["gout"])?)
            },
            grads: tensors(&v["grads"])?,
        })
    }

    /// Every fixture in a directory, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Fixture>, String> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Fixture::load(p)).collect()
    }

    pub fn input(&self, name: &str) -> Tensor<f64> {
        self.inputs
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("fixture {}: no input {name}", self.name))
    }
    pub fn usizes(&self, key: &str) -> Vec<usize> {
        self.params[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0) as usize).collect())
            .unwrap_or_default()
    }
    pub fn pair(&self, key: &str) -> (usize, usize) {
        let v = self.usizes(key);
        (
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
        )
    }
    pub fn f64s(&self, key: &str) -> Option<Vec<f64>> {
        self.params[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
    }
    pub fn num(&self, key: &str) -> f64 {
        self.params[key].as_f64().unwrap_or(f64::NAN)
    }
    pub fn flag(&self, key: &str) -> bool {
        self.params[key].as_bool().unwrap_or(false)
    }

    /// Run `f` on fresh leaves made from the inputs, compare its output, back-propagate `gout`
    /// and compare every gradient the fixture holds. Returns the worst error seen.
    pub fn check(
        &self,
        f: impl Fn(&BTreeMap<String, Tensor<f64>>) -> aics_tensor::Result<Tensor<f64>>,
        tol: f64,
    ) -> Result<f64, String> {
        let no_grad: Vec<String> = self.params["no_grad"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let leaves: BTreeMap<String, Tensor<f64>> = self
            .inputs
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.copy()
                        .requires_grad_(self.grads.contains_key(k) && !no_grad.contains(k)),
                )
            })
            .collect();
        let out = f(&leaves).map_err(|e| format!("{}: {e}", self.name))?;
        let close = |what: &str, got: &Tensor<f64>, want: &Tensor<f64>| -> Result<f64, String> {
            if got.numel() != want.numel() {
                return Err(format!(
                    "{} {what}: shape {:?}, expected {:?}",
                    self.name,
                    got.shape(),
                    want.shape()
                ));
            }
            aics_tensor::testing::compare(
                &got.data(),
                &want.data(),
                aics_tensor::testing::Tol::mixed(tol),
            )
            .map(|r| r.max_abs)
            .map_err(|m| format!("{} {what}{m}", self.name))
        };
        let mut worst = close("output", &out, &self.output)?;
        if self.grads.is_empty() {
            return Ok(worst);
        }
        let gout = self
            .gout
            .as_ref()
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![1.0; out.numel()]);
        out.backward_with(gout)
            .map_err(|e| format!("{}: {e}", self.name))?;
        for (k, want) in &self.grads {
            let got = leaves[k]
                .grad()
                .ok_or_else(|| format!("{}: no gradient for {k}", self.name))?;
            worst = worst.max(close(&format!("grad {k}"), &got, want)?);
        }
        Ok(worst)
    }
}
