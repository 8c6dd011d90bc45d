//! Adam (L2 weight decay added to the gradient) and AdamW (decoupled decay `p *= 1 - lr·λ`),
//! PyTorch's update: `p -= lr/(1-β₁ᵗ) · m / (√v/√(1-β₂ᵗ) + ε)`.

use aics_tensor::Tensor;

use super::{chunked, load_slot, save_slots, scalar_state, with_param_and_grad, Optimizer};
use crate::error::Result;

pub struct Adam {
    params: Vec<(String, Tensor)>,
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay instead of L2.
    pub decoupled: bool,
    t: u64,
    m: Vec<Option<Vec<f32>>>,
    v: Vec<Option<Vec<f32>>>,
}

impl Adam {
    /// PyTorch's `optim.Adam` defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<(String, Tensor)>) -> Self {
        let n = params.len();
        Adam {
            params,
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
            m: vec![None; n],
            v: vec![None; n],
        }
    }
    /// PyTorch's `optim.AdamW`: decoupled weight decay, 1e-2 by default.
    pub fn adamw(params: Vec<(String, Tensor)>) -> Self {
        Adam {
            decoupled: true,
            weight_decay: 1e-2,
            ..Adam::new(params)
        }
    }
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }
    setters! {
        lr: f64,
        eps: f64,
        /// L2 penalty for Adam, decoupled decay for AdamW.
        weight_decay: f64,
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let _g = aics_tensor::no_grad();
        self.t += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        let step = (self.lr / bc1) as f32;
        let (b1f, b2f, eps, sbc2) = (b1 as f32, b2 as f32, self.eps as f32, bc2.sqrt() as f32);
        let (wd, lr) = (self.weight_decay as f32, self.lr as f32);
        let l2 = if self.decoupled { 0.0 } else { wd };
        let decay = if self.decoupled { 1.0 - lr * wd } else { 1.0 };
        // one pass over each parameter, in place: L2 term, both moments, the update
        // (elements zipped, not indexed, so that the loop has no bounds checks and vectorises)
        let update = |w: &mut [f32], g: &[f32], [m, v]: [&mut [f32]; 2]| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = if l2 != 0.0 { g + l2 * *w } else { g };
                *m = b1f * *m + (1.0 - b1f) * g;
                *v = b2f * *v + (1.0 - b2f) * g * g;
                *w = *w * decay - step * *m / (v.sqrt() / sbc2 + eps);
            }
        };
        for (i, (_, p)) in self.params.iter().enumerate() {
            if !p.has_grad() {
                continue;
            }
            let n = p.numel();
            let m = self.m[i].get_or_insert_with(|| vec![0.0; n]);
            let v = self.v[i].get_or_insert_with(|| vec![0.0; n]);
            with_param_and_grad(p, |w, g| chunked(w, g, [m, v], update));
        }
        Ok(())
    }
    accessors!();
    fn state(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut s = save_slots(
            &[("exp_avg", &self.m), ("exp_avg_sq", &self.v)],
            &self.params,
        );
        s.push(("step".into(), vec![], vec![self.t as f32]));
        s
    }
    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<()> {
        self.m = load_slot(state, "exp_avg", &self.params)?;
        self.v = load_slot(state, "exp_avg_sq", &self.params)?;
        self.t = scalar_state(state, "step").unwrap_or(0.0) as u64;
        Ok(())
    }
    fn name(&self) -> &'static str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }
}
