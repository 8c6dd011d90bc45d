//! The `Module` trait, the `Sequential` container, and state-dict helpers. Parameter names are
//! PyTorch's state-dict keys (`features.0.weight`, `bn1.running_mean`), so loading a PyTorch
//! checkpoint is an identity mapping.

use std::collections::HashMap;
use std::sync::Mutex;

use aics_tensor::{Rng, Tensor};

use crate::error::{NnError, Result};

/// `#[derive(Module)]`: the derive macro beside the trait of the same name, as serde's are.
pub use aics_derive::Module;

/// What a named tensor of a module is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Trained by the optimizer.
    Param,
    /// Saved state that is not trained (batch-norm running statistics).
    Buffer,
}

/// One row of `aics summary`.
#[derive(Clone, Debug)]
pub struct SummaryRow {
    pub name: String,
    pub layer: String,
    pub output: Vec<usize>,
    pub params: usize,
    /// Parameters that are weights (not biases or norm shifts): the chapter's "number of weights".
    pub weights: usize,
    pub macs: usize,
}

/// The walk over a module's own fields: parameters, buffers, child modules, random streams and
/// the train/eval flag. `#[derive(Module)]` writes it from the struct's marked fields (see
/// `aics_derive`); [`Module`]'s `visit`, `set_training`, `visit_rngs` and `type_name` call it
/// unless a module overrides them (containers with a list of children do).
pub trait Fields {
    fn visit_fields(&self, _prefix: &str, _f: &mut dyn FnMut(String, &Tensor, Kind)) {}
    fn set_training_fields(&self, _training: bool) {}
    fn visit_rngs_fields(&self, _prefix: &str, _f: &mut dyn FnMut(String, &Mutex<Rng>)) {}
    fn type_name_fields(&self) -> String {
        "Module".into()
    }
}

/// A layer or a model. `forward` is the inference/training computation; behaviour that differs
/// between training and evaluation (dropout, batch norm) follows `set_training`.
///
/// As in PyTorch, a model is a struct of its layers plus a forward:
///
/// ```
/// use aics_nn::{Linear, Module, ReLU, Result};
/// use aics_tensor::{Rng, Tensor};
///
/// #[derive(Module)]
/// struct Mlp {
///     #[module]
///     fc1: Linear,
///     #[module]
///     fc2: Linear,
/// }
///
/// impl Module for Mlp {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         self.fc2.forward(&self.fc1.forward(x)?.relu())
///     }
/// }
///
/// let mut rng = Rng::new(0);
/// let net = Mlp { fc1: Linear::new(4, 8, true, &mut rng)?, fc2: Linear::new(8, 2, true, &mut rng)? };
/// let keys: Vec<String> = aics_nn::state_dict(&net).into_iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
/// assert_eq!(net.type_name(), "Mlp");
/// # let _ = ReLU;
/// # Ok::<(), aics_nn::NnError>(())
/// ```
pub trait Module: Fields + Send + Sync {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// A short type name for summaries (`Conv2d`, `ReLU`): the struct's name by default.
    fn type_name(&self) -> String {
        self.type_name_fields()
    }

    /// Visit every parameter and buffer with its full state-dict key.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        self.visit_fields(prefix, f)
    }

    /// Switch training/evaluation behaviour (recursively for containers).
    fn set_training(&self, training: bool) {
        self.set_training_fields(training)
    }

    /// Visit every random stream the module draws from while training (dropout's) with its
    /// state-dict-style key, so that a checkpoint saves it and a resumed run draws exactly what
    /// the uninterrupted run would have. Containers visit their children.
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        self.visit_rngs_fields(prefix, f)
    }

    /// Multiply-adds of one forward pass for the given input and output shapes.
    fn macs(&self, _input: &[usize], _output: &[usize]) -> usize {
        0
    }

    /// Run the forward pass and also return the output of the sub-layer at `path` (dot-separated
    /// child names, as in the state-dict keys), if this module has one there.
    fn forward_capture(&self, x: &Tensor, _path: &str) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.forward(x)?, None))
    }

    /// The logits plus any auxiliary logits with their loss weights (GoogLeNet's two side
    /// classifiers, 0.3 each; Inception-v3's head). Only models with auxiliary heads return any,
    /// and only in training mode.
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        Ok((self.forward(x)?, Vec::new()))
    }

    /// Run the forward pass and record one summary row per leaf layer (containers recurse).
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let y = self.forward(x)?;
        let (mut params, mut weights) = (0, 0);
        self.visit("", &mut |k, t, kind| {
            if kind == Kind::Param {
                params += t.numel();
                if k.ends_with("weight") {
                    weights += t.numel();
                }
            }
        });
        rows.push(SummaryRow {
            name: name.to_string(),
            layer: self.type_name(),
            output: y.shape().to_vec(),
            params,
            weights,
            macs: self.macs(x.shape(), y.shape()),
        });
        Ok(y)
    }
}

/// The state-dict key of child `name` under `prefix` (`layer1` + `0` → `layer1.0`).
/// An empty `name` adds no level, so a container can lay its children's keys out flat.
pub fn key(prefix: &str, name: &str) -> String {
    if name.is_empty() {
        prefix.to_string()
    } else if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Layers applied in order. Children are named `0`, `1`, … (like `nn.Sequential`) or given
/// explicit names (like the attributes of a PyTorch model class), which become key prefixes.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }
    /// Append a layer named by its position.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(m)));
        self
    }
    /// Append a layer with an explicit name.
    pub fn push(mut self, name: &str, m: impl Module + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(m)));
        self
    }
    pub fn push_boxed(&mut self, name: &str, m: Box<dyn Module>) {
        self.layers.push((name.to_string(), m));
    }
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    pub fn layers(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.layers.iter().map(|(n, m)| (n.as_str(), m.as_ref()))
    }
}

impl Fields for Sequential {}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (name, l) in &self.layers {
            h = l.forward(&h).map_err(|e| match e {
                NnError::Tensor(t) => NnError::Config {
                    layer: format!("layer `{name}` ({})", l.type_name()),
                    msg: t.to_string(),
                },
                other => other,
            })?;
        }
        Ok(h)
    }
    fn type_name(&self) -> String {
        "Sequential".into()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        for (name, l) in &self.layers {
            l.visit(&key(prefix, name), f);
        }
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        for (name, l) in &self.layers {
            l.visit_rngs(&key(prefix, name), f);
        }
    }
    fn set_training(&self, training: bool) {
        self.layers
            .iter()
            .for_each(|(_, l)| l.set_training(training));
    }
    fn forward_capture(&self, x: &Tensor, path: &str) -> Result<(Tensor, Option<Tensor>)> {
        let mut h = x.clone();
        let mut found = None;
        for (name, l) in &self.layers {
            let rest = if name.is_empty() {
                Some(path)
            } else {
                path.strip_prefix(name.as_str())
            };
            match rest {
                Some("") => {
                    h = l.forward(&h)?;
                    found = Some(h.clone());
                }
                Some(r) if r.starts_with('.') || name.is_empty() => {
                    let (y, c) = l.forward_capture(&h, r.trim_start_matches('.'))?;
                    h = y;
                    found = found.or(c);
                }
                _ => h = l.forward(&h)?,
            }
        }
        Ok((h, found))
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let mut h = x.clone();
        for (n, l) in &self.layers {
            h = l.summarize(&key(name, n), &h, rows)?;
        }
        Ok(h)
    }
}

/// Parallel paths applied to the same input, outputs concatenated along channels (dim 1): the
/// Inception module. A path's name prefixes its keys; an empty name lays them out flat, as
/// torchvision's Inception-v3 blocks do (`Mixed_5b.branch5x5_1.conv.weight`).
#[derive(Default)]
pub struct Concat {
    paths: Vec<(String, Sequential)>,
}

impl Concat {
    pub fn new() -> Self {
        Self::default()
    }
    /// Append a path.
    pub fn path(mut self, name: &str, p: Sequential) -> Self {
        self.paths.push((name.to_string(), p));
        self
    }
}

/// The part of a capture `path` below the child `name` (`Some("")` when it names the child).
fn sub_path<'a>(name: &str, path: &'a str) -> Option<&'a str> {
    if name.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(name) {
        Some("") => Some(""),
        Some(r) if r.starts_with('.') => Some(&r[1..]),
        _ => None,
    }
}

impl Fields for Concat {}

impl Module for Concat {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let outs: Vec<Tensor> = self
            .paths
            .iter()
            .map(|(_, p)| p.forward(x))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok(Tensor::concat(&refs, 1)?)
    }
    fn type_name(&self) -> String {
        format!("Concat({} paths)", self.paths.len())
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        for (name, p) in &self.paths {
            p.visit(&key(prefix, name), f);
        }
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        for (name, p) in &self.paths {
            p.visit_rngs(&key(prefix, name), f);
        }
    }
    fn set_training(&self, training: bool) {
        self.paths
            .iter()
            .for_each(|(_, p)| p.set_training(training));
    }
    fn forward_capture(&self, x: &Tensor, path: &str) -> Result<(Tensor, Option<Tensor>)> {
        let mut outs = Vec::with_capacity(self.paths.len());
        let mut found = None;
        for (name, p) in &self.paths {
            match sub_path(name, path) {
                Some("") if !name.is_empty() => {
                    let y = p.forward(x)?;
                    found = Some(y.clone());
                    outs.push(y);
                }
                Some(r) => {
                    let (y, c) = p.forward_capture(x, r)?;
                    found = found.or(c);
                    outs.push(y);
                }
                None => outs.push(p.forward(x)?),
            }
        }
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok((Tensor::concat(&refs, 1)?, found))
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let outs: Vec<Tensor> = self
            .paths
            .iter()
            .map(|(n, p)| p.summarize(&key(name, n), x, rows))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok(Tensor::concat(&refs, 1)?)
    }
}

/// Trainable parameters with their keys, in state-dict order.
pub fn parameters(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    m.visit("", &mut |k, t, kind| {
        if kind == Kind::Param {
            v.push((k, t.clone()))
        }
    });
    v
}

/// Parameters and buffers with their keys, in state-dict order.
pub fn state_dict(m: &dyn Module) -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    m.visit("", &mut |k, t, _| v.push((k, t.clone())));
    v
}

pub fn num_params(m: &dyn Module) -> usize {
    parameters(m).iter().map(|(_, t)| t.numel()).sum()
}

/// Copy tensors into the model by key. Every model tensor must be present with the same shape;
/// extra keys are an error when `strict`.
pub fn load_state_dict(
    m: &dyn Module,
    tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    strict: bool,
) -> Result<()> {
    let own = state_dict(m);
    for (k, t) in &own {
        let Some((shape, data)) = tensors.get(k) else {
            return Err(NnError::MissingKey {
                key: k.clone(),
                shape: t.shape().to_vec(),
            });
        };
        if shape.iter().product::<usize>() != t.numel()
            || (shape.as_slice() != t.shape()
                && !(t.shape().is_empty() && shape.iter().product::<usize>() == 1))
        {
            return Err(NnError::ShapeMismatch {
                key: k.clone(),
                expected: t.shape().to_vec(),
                got: shape.clone(),
            });
        }
        t.set_data(data.clone())?;
    }
    if strict {
        let names: std::collections::HashSet<&String> = own.iter().map(|(k, _)| k).collect();
        let mut extra: Vec<&String> = tensors.keys().filter(|k| !names.contains(k)).collect();
        extra.sort();
        if let Some(k) = extra.first() {
            return Err(NnError::UnexpectedKey { key: (*k).clone() });
        }
    }
    Ok(())
}

impl Fields for Box<dyn Module> {}

/// A boxed model is a model (the zoo returns `Box<dyn Module>`).
impl Module for Box<dyn Module> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
    fn type_name(&self) -> String {
        (**self).type_name()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        (**self).visit(prefix, f)
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        (**self).visit_rngs(prefix, f)
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
    }
    fn macs(&self, input: &[usize], output: &[usize]) -> usize {
        (**self).macs(input, output)
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        (**self).summarize(name, x, rows)
    }
    fn forward_capture(&self, x: &Tensor, path: &str) -> Result<(Tensor, Option<Tensor>)> {
        (**self).forward_capture(x, path)
    }
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        (**self).forward_with_aux(x)
    }
}
