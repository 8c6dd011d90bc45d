//! RMSprop (PyTorch `optim.RMSprop`, not centered): `s = αs + (1-α)g²`,
//! `b = μb + g/(√s + ε)` and `p -= lr·b` with momentum, else `p -= lr·g/(√s + ε)`.

use aics_tensor::Tensor;

use super::{decayed_grad, load_slot, save_slots, Optimizer};
use crate::error::Result;

pub struct RmsProp {
    params: Vec<(String, Tensor)>,
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    sq: Vec<Option<Vec<f32>>>,
    buf: Vec<Option<Vec<f32>>>,
}

impl RmsProp {
    /// PyTorch's `optim.RMSprop` defaults: lr 1e-2, alpha 0.99, eps 1e-8, no momentum, no
    /// weight decay.
    pub fn new(params: Vec<(String, Tensor)>) -> Self {
        let n = params.len();
        RmsProp {
            params,
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            sq: vec![None; n],
            buf: vec![None; n],
        }
    }
    setters! {
        lr: f64,
        /// Smoothing constant of the squared-gradient average.
        alpha: f64,
        eps: f64,
        momentum: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        let _g = aics_tensor::no_grad();
        let (lr, a, eps, mu, wd) = (
            self.lr as f32,
            self.alpha as f32,
            self.eps as f32,
            self.momentum as f32,
            self.weight_decay as f32,
        );
        for (i, (_, p)) in self.params.iter().enumerate() {
            if !p.has_grad() {
                continue;
            }
            let g = decayed_grad(p, wd);
            let sq = self.sq[i].get_or_insert_with(|| vec![0.0; g.len()]);
            let upd: Vec<f32> = g
                .iter()
                .zip(sq.iter_mut())
                .map(|(&g, s)| {
                    *s = a * *s + (1.0 - a) * g * g;
                    g / (s.sqrt() + eps)
                })
                .collect();
            let upd = if mu != 0.0 {
                let b = self.buf[i].get_or_insert_with(|| vec![0.0; g.len()]);
                b.iter_mut().zip(&upd).for_each(|(b, &u)| *b = mu * *b + u);
                b.clone()
            } else {
                upd
            };
            p.update_data(|w| w.iter_mut().zip(&upd).for_each(|(w, &u)| *w -= lr * u));
        }
        Ok(())
    }
    accessors!();
    fn state(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        save_slots(
            &[("square_avg", &self.sq), ("momentum_buffer", &self.buf)],
            &self.params,
        )
    }
    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<()> {
        self.sq = load_slot(state, "square_avg", &self.params)?;
        self.buf = load_slot(state, "momentum_buffer", &self.params)?;
        Ok(())
    }
    fn name(&self) -> &'static str {
        "rmsprop"
    }
}
