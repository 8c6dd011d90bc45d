//! L-BFGS with an optional strong-Wolfe line search, following the algorithm of PyTorch's
//! `optim.LBFGS` (two-loop recursion over a history of (s, y) pairs; bracketing + zoom with cubic
//! interpolation). Neural style transfer optimises the image with it.
//!
//! Unlike the first-order optimizers, a step needs a closure that recomputes the loss and its
//! gradients, as PyTorch's `LBFGS.step(closure)`: through the [`Optimizer`] trait,
//! `opt.step_with(&mut || { zero grads; loss = f(); loss.backward(); Ok(loss) })`; `step()` alone
//! is an error.

use aics_tensor::Tensor;

use crate::error::{NnError, Result};
use crate::optim::Optimizer;

pub struct Lbfgs {
    params: Vec<(String, Tensor)>,
    pub lr: f64,
    pub max_iter: usize,
    pub max_eval: usize,
    pub tolerance_grad: f64,
    pub tolerance_change: f64,
    pub history_size: usize,
    pub strong_wolfe: bool,
    // state carried across steps
    d: Vec<f64>,
    t: f64,
    old_dirs: Vec<Vec<f64>>,
    old_stps: Vec<Vec<f64>>,
    ro: Vec<f64>,
    h_diag: f64,
    prev_flat_grad: Vec<f64>,
    n_iter: usize,
    pub func_evals: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clamped to `bounds`.
fn cubic_interpolate(
    x1: f64,
    f1: f64,
    g1: f64,
    x2: f64,
    f2: f64,
    g2: f64,
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_sq = d1 * d1 - g1 * g2;
    if d2_sq >= 0.0 {
        let d2 = d2_sq.sqrt();
        let m = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        m.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

impl Lbfgs {
    /// PyTorch's `optim.LBFGS` defaults: lr 1, max_iter 20, max_eval 25 (= max_iter · 5/4),
    /// tolerance_grad 1e-7, tolerance_change 1e-9, history 100, no line search.
    pub fn new(params: Vec<(String, Tensor)>) -> Self {
        Lbfgs {
            params,
            lr: 1.0,
            max_iter: 20,
            max_eval: 25,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            strong_wolfe: false,
            d: Vec::new(),
            t: 0.0,
            old_dirs: Vec::new(),
            old_stps: Vec::new(),
            ro: Vec::new(),
            h_diag: 1.0,
            prev_flat_grad: Vec::new(),
            n_iter: 0,
            func_evals: 0,
        }
    }

    /// Iterations per step; max_eval follows as in PyTorch (max_iter · 5/4) unless set after.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self.max_eval = max_iter * 5 / 4;
        self
    }
    setters! {
        lr: f64,
        max_eval: usize,
        tolerance_grad: f64,
        tolerance_change: f64,
        history_size: usize,
        /// PyTorch's `line_search_fn="strong_wolfe"`.
        strong_wolfe: bool,
    }

    fn flat_params(&self) -> Vec<f64> {
        self.params
            .iter()
            .flat_map(|(_, p)| p.data().iter().map(|&v| v as f64).collect::<Vec<_>>())
            .collect()
    }
    fn flat_grad(&self) -> Vec<f64> {
        self.params
            .iter()
            .flat_map(|(_, p)| super::grad_of(p).into_iter().map(|v| v as f64))
            .collect()
    }
    fn set_params(&self, x: &[f64]) -> Result<()> {
        let mut off = 0;
        for (_, p) in &self.params {
            let n = p.numel();
            p.set_data(x[off..off + n].iter().map(|&v| v as f32).collect())?;
            off += n;
        }
        Ok(())
    }
    /// Loss and gradient at `x + t·d` (parameters are left there).
    fn evaluate(
        &mut self,
        closure: &mut dyn FnMut() -> Result<f64>,
        x: &[f64],
        t: f64,
        d: &[f64],
    ) -> Result<(f64, Vec<f64>)> {
        let moved: Vec<f64> = x.iter().zip(d).map(|(a, b)| a + t * b).collect();
        self.set_params(&moved)?;
        let f = closure()?;
        self.func_evals += 1;
        Ok((f, self.flat_grad()))
    }

    /// One optimisation step (up to `max_iter` iterations). Returns the loss at entry.
    fn lbfgs_step(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let orig_loss = closure()?;
        self.func_evals += 1;
        let mut loss = orig_loss;
        let mut current_evals = 1;
        let mut flat_grad = self.flat_grad();
        if max_abs(&flat_grad) <= self.tolerance_grad {
            return Ok(orig_loss);
        }
        let mut n_iter = 0;
        while n_iter < self.max_iter {
            n_iter += 1;
            self.n_iter += 1;
            if self.n_iter == 1 {
                self.d = flat_grad.iter().map(|g| -g).collect();
                self.old_dirs.clear();
                self.old_stps.clear();
                self.ro.clear();
                self.h_diag = 1.0;
            } else {
                let y: Vec<f64> = flat_grad
                    .iter()
                    .zip(&self.prev_flat_grad)
                    .map(|(a, b)| a - b)
                    .collect();
                let s: Vec<f64> = self.d.iter().map(|v| v * self.t).collect();
                let ys = dot(&y, &s);
                if ys > 1e-10 {
                    if self.old_dirs.len() == self.history_size {
                        self.old_dirs.remove(0);
                        self.old_stps.remove(0);
                        self.ro.remove(0);
                    }
                    self.h_diag = ys / dot(&y, &y);
                    self.old_dirs.push(y);
                    self.old_stps.push(s);
                    self.ro.push(1.0 / ys);
                }
                // two-loop recursion: d = -H·g
                let k = self.old_dirs.len();
                let mut al = vec![0.0; k];
                let mut q: Vec<f64> = flat_grad.iter().map(|g| -g).collect();
                for i in (0..k).rev() {
                    al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
                    q.iter_mut()
                        .zip(&self.old_dirs[i])
                        .for_each(|(q, y)| *q -= al[i] * y);
                }
                let mut r: Vec<f64> = q.iter().map(|v| v * self.h_diag).collect();
                for (i, &a) in al.iter().enumerate() {
                    let be = dot(&self.old_dirs[i], &r) * self.ro[i];
                    r.iter_mut()
                        .zip(&self.old_stps[i])
                        .for_each(|(r, s)| *r += s * (a - be));
                }
                self.d = r;
            }
            self.prev_flat_grad = flat_grad.clone();
            let prev_loss = loss;
            self.t = if self.n_iter == 1 {
                (1.0f64).min(1.0 / flat_grad.iter().map(|g| g.abs()).sum::<f64>()) * self.lr
            } else {
                self.lr
            };
            let gtd = dot(&flat_grad, &self.d);
            if gtd > -self.tolerance_change {
                break;
            }
            let d = self.d.clone();
            let ls_evals;
            let opt_cond;
            if self.strong_wolfe {
                let x0 = self.flat_params();
                let (f, g, t, evals) =
                    self.strong_wolfe_search(closure, &x0, self.t, &d, loss, &flat_grad, gtd)?;
                self.t = t;
                loss = f;
                flat_grad = g;
                let x: Vec<f64> = x0.iter().zip(&d).map(|(a, b)| a + t * b).collect();
                self.set_params(&x)?;
                opt_cond = max_abs(&flat_grad) <= self.tolerance_grad;
                ls_evals = evals;
            } else {
                let x0 = self.flat_params();
                let x: Vec<f64> = x0.iter().zip(&d).map(|(a, b)| a + self.t * b).collect();
                self.set_params(&x)?;
                if n_iter != self.max_iter {
                    loss = closure()?;
                    self.func_evals += 1;
                    flat_grad = self.flat_grad();
                    opt_cond = max_abs(&flat_grad) <= self.tolerance_grad;
                    ls_evals = 1;
                } else {
                    opt_cond = false;
                    ls_evals = 0;
                }
            }
            current_evals += ls_evals;
            if n_iter == self.max_iter || current_evals >= self.max_eval || opt_cond {
                break;
            }
            if max_abs(&d) * self.t.abs() <= self.tolerance_change
                || (loss - prev_loss).abs() < self.tolerance_change
            {
                break;
            }
        }
        Ok(orig_loss)
    }

    /// Strong-Wolfe line search (c1 = 1e-4, c2 = 0.9, at most 25 evaluations): bracket a step
    /// satisfying the conditions, then zoom with safeguarded cubic interpolation.
    /// Returns (loss, gradient, step, evaluations).
    #[allow(clippy::too_many_arguments)]
    fn strong_wolfe_search(
        &mut self,
        closure: &mut dyn FnMut() -> Result<f64>,
        x: &[f64],
        mut t: f64,
        d: &[f64],
        f: f64,
        g: &[f64],
        gtd: f64,
    ) -> Result<(f64, Vec<f64>, f64, usize)> {
        let (c1, c2, tol, max_ls) = (1e-4, 0.9, self.tolerance_change, 25);
        let d_norm = max_abs(d);
        let (mut f_new, mut g_new) = self.evaluate(closure, x, t, d)?;
        let mut evals = 1;
        let mut gtd_new = dot(&g_new, d);
        let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.to_vec(), gtd);
        let mut done = false;
        let mut ls_iter = 0;
        // bracket: (step, loss, grad, directional derivative), one or two entries
        let mut br: Vec<(f64, f64, Vec<f64>, f64)>;
        loop {
            if f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) || gtd_new >= 0.0 {
                br = vec![
                    (t_prev, f_prev, g_prev, gtd_prev),
                    (t, f_new, g_new.clone(), gtd_new),
                ];
                break;
            }
            if gtd_new.abs() <= -c2 * gtd {
                br = vec![(t, f_new, g_new.clone(), gtd_new)];
                done = true;
                break;
            }
            let (min_step, max_step) = (t + 0.01 * (t - t_prev), t * 10.0);
            let tmp = t;
            t = cubic_interpolate(
                t_prev,
                f_prev,
                gtd_prev,
                t,
                f_new,
                gtd_new,
                Some((min_step, max_step)),
            );
            t_prev = tmp;
            f_prev = f_new;
            g_prev = g_new.clone();
            gtd_prev = gtd_new;
            let r = self.evaluate(closure, x, t, d)?;
            f_new = r.0;
            g_new = r.1;
            evals += 1;
            gtd_new = dot(&g_new, d);
            ls_iter += 1;
            if ls_iter == max_ls {
                br = vec![
                    (0.0, f, g.to_vec(), gtd),
                    (t, f_new, g_new.clone(), gtd_new),
                ];
                break;
            }
        }
        // zoom
        let mut insuf = false;
        let order = |br: &Vec<(f64, f64, Vec<f64>, f64)>| {
            if br[0].1 <= br[br.len() - 1].1 {
                (0, br.len() - 1)
            } else {
                (1, 0)
            }
        };
        let (mut lo, mut hi) = order(&br);
        while !done && ls_iter < max_ls && br.len() == 2 {
            if (br[1].0 - br[0].0).abs() * d_norm < tol {
                break;
            }
            t = cubic_interpolate(br[0].0, br[0].1, br[0].3, br[1].0, br[1].1, br[1].3, None);
            let (bmax, bmin) = (br[0].0.max(br[1].0), br[0].0.min(br[1].0));
            let eps = 0.1 * (bmax - bmin);
            if (bmax - t).min(t - bmin) < eps {
                if insuf || t >= bmax || t <= bmin {
                    t = if (t - bmax).abs() < (t - bmin).abs() {
                        bmax - eps
                    } else {
                        bmin + eps
                    };
                    insuf = false;
                } else {
                    insuf = true;
                }
            } else {
                insuf = false;
            }
            let (fn_, gn) = self.evaluate(closure, x, t, d)?;
            evals += 1;
            ls_iter += 1;
            let gtdn = dot(&gn, d);
            if fn_ > f + c1 * t * gtd || fn_ >= br[lo].1 {
                br[hi] = (t, fn_, gn, gtdn);
                (lo, hi) = order(&br);
            } else {
                if gtdn.abs() <= -c2 * gtd {
                    done = true;
                } else if gtdn * (br[hi].0 - br[lo].0) >= 0.0 {
                    br[hi] = br[lo].clone();
                }
                br[lo] = (t, fn_, gn, gtdn);
            }
        }
        let best = br.swap_remove(lo);
        Ok((best.1, best.2, best.0, evals))
    }
}

impl Optimizer for Lbfgs {
    /// L-BFGS re-evaluates the loss during its step: without a closure it cannot run.
    fn step(&mut self) -> Result<()> {
        Err(NnError::Config {
            layer: "L-BFGS".into(),
            msg: "step() needs the loss: call step_with(closure), as PyTorch's LBFGS.step(closure)"
                .into(),
        })
    }
    fn step_with(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        self.lbfgs_step(closure)
    }
    accessors!();
    /// The L-BFGS history (f64 directions and curvature pairs) is not saved in checkpoints.
    fn state(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }
    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<()> {
        match state.keys().next() {
            None => Ok(()),
            Some(k) => Err(NnError::Config {
                layer: "L-BFGS".into(),
                msg: format!("keeps no saved state, but `{k}` was given"),
            }),
        }
    }
    fn name(&self) -> &'static str {
        "lbfgs"
    }
}
