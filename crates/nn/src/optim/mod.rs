//! Optimizers (SGD, Adam, AdamW, RMSprop, L-BFGS) with PyTorch's update rules, learning-rate
//! schedules, and gradient clipping. Optimizer state can be saved into a checkpoint and loaded
//! back, so a resumed run continues exactly.

/// Builder setters for an optimizer's settings: `pub fn NAME(mut self, NAME: TYPE) -> Self`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $name: $ty) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}

/// The `Optimizer` methods that read and set the learning rate and list the parameters, for a
/// struct with fields `lr` and `params`.
macro_rules! accessors {
    () => {
        fn get_lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
        }
        fn params(&self) -> &[(String, Tensor)] {
            &self.params
        }
    };
}

pub mod adam;
pub mod lbfgs;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;

use aics_tensor::Tensor;

pub use adam::Adam;
pub use lbfgs::Lbfgs;
pub use rmsprop::RmsProp;
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use crate::error::Result;

/// An optimizer over a fixed list of named parameters, built as PyTorch's are: the parameters,
/// then named settings with PyTorch's defaults (`Sgd::new(params).lr(0.05).momentum(0.9)`).
pub trait Optimizer: Send {
    /// Apply one update from the parameters' accumulated gradients. L-BFGS, which must
    /// re-evaluate the loss, refuses this and needs [`Optimizer::step_with`].
    fn step(&mut self) -> Result<()>;
    /// PyTorch's `step(closure)`: `closure` zeroes the gradients, computes the loss,
    /// back-propagates and returns the loss. First-order optimizers call it once and then
    /// [`Optimizer::step`]; L-BFGS calls it as often as its line search needs. Returns the loss
    /// of the first evaluation.
    fn step_with(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let loss = closure()?;
        self.step()?;
        Ok(loss)
    }
    /// The current learning rate (PyTorch's `param_groups[0]["lr"]`).
    fn get_lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    fn params(&self) -> &[(String, Tensor)];
    /// Per-parameter state tensors under stable names (for checkpoints).
    fn state(&self) -> Vec<(String, Vec<usize>, Vec<f32>)>;
    /// Restore state saved by `state`; unknown or mis-shaped entries are errors.
    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<()>;
    fn name(&self) -> &'static str;

    fn zero_grad(&self) {
        self.params().iter().for_each(|(_, p)| p.zero_grad());
    }
}

/// Gradient of a parameter, or zeros if it received none this step.
pub(crate) fn grad_of(p: &Tensor) -> Vec<f32> {
    p.with_grad(|g| g.map(|g| g.clone()))
        .unwrap_or_else(|| vec![0.0; p.numel()])
}

/// Run `f(weights, gradient)` in place on a parameter that has a gradient (no copies of either);
/// false if it has none.
pub(crate) fn with_param_and_grad(p: &Tensor, f: impl FnOnce(&mut [f32], &[f32])) -> bool {
    p.with_grad(|g| match g {
        Some(g) => {
            p.update_data(|w| f(w, g));
            true
        }
        None => false,
    })
}

/// Apply `f` to matching chunks of a parameter update's slices, over the thread pool when there
/// are enough elements to gain from it. Every element's arithmetic is the same either way.
pub(crate) fn chunked<const K: usize>(
    w: &mut [f32],
    g: &[f32],
    state: [&mut [f32]; K],
    f: impl Fn(&mut [f32], &[f32], [&mut [f32]; K]) + Sync,
) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    if w.len() < 4 * CHUNK || rayon::current_num_threads() < 2 {
        return f(w, g, state);
    }
    type Part<'a, const K: usize> = (&'a mut [f32], &'a [f32], [&'a mut [f32]; K]);
    let mut parts: Vec<Part<K>> = Vec::new();
    let mut ws = w.chunks_mut(CHUNK);
    let mut gs = g.chunks(CHUNK);
    let mut ss: Vec<std::slice::ChunksMut<f32>> =
        state.into_iter().map(|s| s.chunks_mut(CHUNK)).collect();
    while let (Some(w), Some(g)) = (ws.next(), gs.next()) {
        let st: [&mut [f32]; K] = std::array::from_fn(|k| ss[k].next().unwrap_or_default());
        parts.push((w, g, st));
    }
    parts.into_par_iter().for_each(|(w, g, st)| f(w, g, st));
}

/// The gradient with L2 weight decay folded in: `g + λ·p`.
pub(crate) fn decayed_grad(p: &Tensor, weight_decay: f32) -> Vec<f32> {
    let mut g = grad_of(p);
    if weight_decay != 0.0 {
        let pd = p.data();
        g.iter_mut()
            .zip(pd.iter())
            .for_each(|(g, &w)| *g += weight_decay * w);
    }
    g
}

/// Scale all gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping (PyTorch `clip_grad_norm_`).
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> f64 {
    let mut sq = 0.0f64;
    for (_, p) in params {
        p.with_grad(|g| {
            if let Some(g) = g {
                sq += g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            }
        });
    }
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (_, p) in params {
            p.with_grad(|g| {
                if let Some(g) = g {
                    g.iter_mut().for_each(|v| *v *= coef as f32);
                }
            });
        }
    }
    norm
}

/// Named slot state (e.g. momentum buffers): `"{slot}.{param}"`.
pub(crate) fn save_slots(
    slots: &[(&str, &[Option<Vec<f32>>])],
    params: &[(String, Tensor)],
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (slot, bufs) in slots {
        for ((name, p), b) in params.iter().zip(bufs.iter()) {
            if let Some(b) = b {
                out.push((format!("{slot}.{name}"), p.shape().to_vec(), b.clone()));
            }
        }
    }
    out
}

pub(crate) fn load_slot(
    state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    slot: &str,
    params: &[(String, Tensor)],
) -> Result<Vec<Option<Vec<f32>>>> {
    params
        .iter()
        .map(|(name, p)| match state.get(&format!("{slot}.{name}")) {
            None => Ok(None),
            Some((_, d)) if d.len() == p.numel() => Ok(Some(d.clone())),
            Some((s, _)) => Err(crate::error::NnError::ShapeMismatch {
                key: format!("optimizer.{slot}.{name}"),
                expected: p.shape().to_vec(),
                got: s.clone(),
            }),
        })
        .collect()
}

pub(crate) fn scalar_state(
    state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    key: &str,
) -> Option<f64> {
    state
        .get(key)
        .and_then(|(_, d)| d.first().map(|&v| v as f64))
}
