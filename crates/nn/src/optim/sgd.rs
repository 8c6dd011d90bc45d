//! SGD with momentum, dampening 0, Nesterov and L2 weight decay (PyTorch `optim.SGD`):
//! `d = g + λp; b = μb + d (b₀ = d); d = nesterov ? d + μb : b; p -= lr·d`.

use aics_tensor::Tensor;

use super::{chunked, load_slot, save_slots, with_param_and_grad, Optimizer};
use crate::error::Result;

pub struct Sgd {
    params: Vec<(String, Tensor)>,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    bufs: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    /// PyTorch's defaults: lr 1e-3, no momentum, no weight decay, no Nesterov.
    pub fn new(params: Vec<(String, Tensor)>) -> Self {
        let n = params.len();
        Sgd {
            params,
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            bufs: vec![None; n],
        }
    }
    setters! {
        lr: f64,
        momentum: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
        nesterov: bool,
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let _g = aics_tensor::no_grad();
        let (lr, mu, wd) = (
            self.lr as f32,
            self.momentum as f32,
            self.weight_decay as f32,
        );
        let nesterov = self.nesterov;
        for ((_, p), buf) in self.params.iter().zip(self.bufs.iter_mut()) {
            if !p.has_grad() {
                continue;
            }
            // one pass over each parameter, in place: L2 term, momentum buffer, the update
            if mu == 0.0 {
                let f = if wd != 0.0 {
                    plain::<true>
                } else {
                    plain::<false>
                };
                with_param_and_grad(p, |w, g| chunked(w, g, [], |w, g, []| f(w, g, lr, wd)));
                continue;
            }
            let first = buf.is_none();
            let n = p.numel();
            let b = buf.get_or_insert_with(|| vec![0.0; n]);
            let f = match (wd != 0.0, first, nesterov) {
                (false, false, false) => momentum::<false, false, false>,
                (false, false, true) => momentum::<false, false, true>,
                (false, true, false) => momentum::<false, true, false>,
                (false, true, true) => momentum::<false, true, true>,
                (true, false, false) => momentum::<true, false, false>,
                (true, false, true) => momentum::<true, false, true>,
                (true, true, false) => momentum::<true, true, false>,
                (true, true, true) => momentum::<true, true, true>,
            };
            with_param_and_grad(p, |w, g| {
                chunked(w, g, [b], |w, g, [b]| f(w, g, b, lr, mu, wd))
            });
        }
        Ok(())
    }
    accessors!();
    fn state(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        save_slots(&[("momentum_buffer", &self.bufs)], &self.params)
    }
    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<()> {
        self.bufs = load_slot(state, "momentum_buffer", &self.params)?;
        Ok(())
    }
    fn name(&self) -> &'static str {
        "sgd"
    }
}

// The update loops, one copy per setting of the flags, so that each is a branch-free loop that
// vectorises.

/// `p -= lr·(g + λp)`.
fn plain<const DECAY: bool>(w: &mut [f32], g: &[f32], lr: f32, wd: f32) {
    for (w, &g) in w.iter_mut().zip(g) {
        let d = if DECAY { g + wd * *w } else { g };
        *w -= lr * d;
    }
}

/// `d = g + λp; b = μb + d (b₀ = d); p -= lr·(nesterov ? d + μb : b)`.
fn momentum<const DECAY: bool, const FIRST: bool, const NESTEROV: bool>(
    w: &mut [f32],
    g: &[f32],
    b: &mut [f32],
    lr: f32,
    mu: f32,
    wd: f32,
) {
    for ((w, &g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
        let d = if DECAY { g + wd * *w } else { g };
        // the first step's buffer is the gradient itself, as PyTorch's
        *b = if FIRST { d } else { mu * *b + d };
        *w -= lr * if NESTEROV { d + mu * *b } else { *b };
    }
}
