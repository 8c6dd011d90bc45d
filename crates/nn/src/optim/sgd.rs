//! SGD with momentum, dampening 0, Nesterov and L2 weight decay (PyTorch `optim.SGD`):
//! `d = g + λp; b = μb + d (b₀ = d); d = nesterov ? d + μb : b; p -= lr·d`.

use aics_tensor::Tensor;

use super::{decayed_grad, load_slot, save_slots, Optimizer};
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
        for ((_, p), buf) in self.params.iter().zip(self.bufs.iter_mut()) {
            if !p.has_grad() {
                continue;
            }
            let mut d = decayed_grad(p, wd);
            if mu != 0.0 {
                let b = match buf {
                    Some(b) => {
                        b.iter_mut().zip(&d).for_each(|(b, &d)| *b = mu * *b + d);
                        b
                    }
                    None => buf.insert(d.clone()),
                };
                if self.nesterov {
                    d.iter_mut().zip(b.iter()).for_each(|(d, &b)| *d += mu * b);
                } else {
                    d.copy_from_slice(b);
                }
            }
            p.update_data(|w| w.iter_mut().zip(&d).for_each(|(w, &d)| *w -= lr * d));
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
