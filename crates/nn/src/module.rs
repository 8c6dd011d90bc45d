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
    /// For a `#[module(transparent)]` struct: each container field with its key, so that a
    /// summary or a feature capture looks into them ([`crate::inspect`]).
    fn transparent_children(&self, _f: &mut dyn FnMut(&str, &dyn Module)) {}
    /// [`Module::prepare_inference`] on each child module.
    fn prepare_inference_fields(&mut self) -> Result<()> {
        Ok(())
    }
    /// The module as `Any`, so that a container can recognise the layers it fuses.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
    /// The module as `Any`, to find a fused layer by type in a block's forward.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
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

    /// Enter the inference path, once, in evaluation mode: batch norm folded into the
    /// convolution before it, and the activation after it (ReLU, ReLU6, leaky ReLU) and, in
    /// residual blocks, the shortcut's add applied in the convolution's output pass. The outputs
    /// are the plain path's up to float rounding. One way: the folded weights replace the
    /// convolutions' (the batch norms become identities), so train or save the model before,
    /// not after. Containers fuse the layer sequences they hold; models with their own forward
    /// fuse their blocks; other modules prepare their children.
    fn prepare_inference(&mut self) -> Result<()> {
        self.prepare_inference_fields()
    }

    /// The logits plus any auxiliary logits with their loss weights (GoogLeNet's two side
    /// classifiers, 0.3 each; Inception-v3's head). Only models with auxiliary heads return any,
    /// and only in training mode.
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        Ok((self.forward(x)?, Vec::new()))
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
    /// The named children, taken out (to rebuild them into another container, as torchvision's
    /// detectors slice a classifier's `features`).
    pub fn into_layers(self) -> Vec<(String, Box<dyn Module>)> {
        self.layers
    }
}

impl Fields for Sequential {}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let seen = crate::inspect::open(self);
        let mut h = x.clone();
        for (name, l) in &self.layers {
            h = crate::inspect::call(name, l.as_ref(), &h).map_err(|e| match e {
                NnError::Tensor(t) => NnError::Config {
                    layer: format!("layer `{name}` ({})", l.type_name()),
                    msg: t.to_string(),
                },
                other => other,
            })?;
        }
        seen.close(&h);
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
    fn prepare_inference(&mut self) -> Result<()> {
        for (_, l) in self.layers.iter_mut() {
            l.prepare_inference()?;
        }
        crate::fuse::fuse_sequence(&mut self.layers)
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

impl Fields for Concat {}

impl Module for Concat {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let seen = crate::inspect::open(self);
        let outs: Vec<Tensor> = self
            .paths
            .iter()
            .map(|(name, p)| crate::inspect::call(name, p, x))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        let y = Tensor::concat(&refs, 1)?;
        seen.close(&y);
        Ok(y)
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
    fn prepare_inference(&mut self) -> Result<()> {
        for (_, p) in self.paths.iter_mut() {
            p.prepare_inference()?;
        }
        Ok(())
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

impl Fields for Box<dyn Module> {
    fn prepare_inference_fields(&mut self) -> Result<()> {
        (**self).prepare_inference_fields()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        (**self).as_any_mut()
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        (**self).as_any()
    }
}

/// A boxed model is a model (the zoo returns `Box<dyn Module>`).
impl Module for Box<dyn Module> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // the boxed module is this one's only child, under the same key
        let _seen = crate::inspect::open(self);
        crate::inspect::call("", &**self, x)
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
    fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Vec<(f32, Tensor)>)> {
        (**self).forward_with_aux(x)
    }
    fn prepare_inference(&mut self) -> Result<()> {
        (**self).prepare_inference()
    }
}
