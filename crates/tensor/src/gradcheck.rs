//! Finite-difference gradient check in f64: the analytical gradient of `L = Σ f(x) ⊙ r` (r a fixed
//! random projection) against central differences `(L(x+ε) - L(x-ε)) / 2ε`, element by element.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Largest |analytical - numerical| over all checked elements.
    pub max_abs_err: f64,
    /// Largest |analytical - numerical| / max(1, |numerical|).
    pub max_rel_err: f64,
    pub checked: usize,
    pub passed: bool,
}

/// Check `f` at `inputs`; `wrt[i]` says whether input i is differentiated. Passes when every
/// element agrees within `atol + rtol·|numerical|`.
pub fn gradcheck(
    f: &dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
    inputs: &[Tensor<f64>],
    wrt: &[bool],
    seed: u64,
) -> Result<GradCheckReport> {
    let (eps, atol, rtol) = (1e-6, 1e-7, 1e-5);
    let leaves: Vec<Tensor<f64>> = inputs.iter().zip(wrt).map(|(t, &w)| t.copy().requires_grad_(w)).collect();
    let out = f(&leaves)?;
    let mut rng = Rng::new(seed);
    let r = Tensor::<f64>::rand(out.shape(), -1.0, 1.0, &mut rng);
    out.mul(&r)?.sum().backward()?;
    let rd = r.data();
    let loss_at = |xs: &[Tensor<f64>]| -> Result<f64> {
        let _g = no_grad();
        let o = f(xs)?;
        Ok(o.data().iter().zip(rd.iter()).map(|(a, b)| a * b).sum())
    };
    let (mut max_abs, mut max_rel, mut checked, mut passed) = (0.0f64, 0.0f64, 0usize, true);
    for (i, leaf) in leaves.iter().enumerate() {
        if !wrt[i] {
            continue;
        }
        let analytic = leaf.grad().map(|g| g.to_vec()).unwrap_or_else(|| vec![0.0; leaf.numel()]);
        let base = leaf.to_vec();
        for j in 0..base.len() {
            let mut xs: Vec<Tensor<f64>> = leaves.iter().map(|t| t.detach()).collect();
            let mut plus = base.clone();
            plus[j] += eps;
            xs[i] = Tensor::from_vec(plus, leaf.shape())?;
            let lp = loss_at(&xs)?;
            let mut minus = base.clone();
            minus[j] -= eps;
            xs[i] = Tensor::from_vec(minus, leaf.shape())?;
            let lm = loss_at(&xs)?;
            let num = (lp - lm) / (2.0 * eps);
            let err = (analytic[j] - num).abs();
            max_abs = max_abs.max(err);
            max_rel = max_rel.max(err / num.abs().max(1.0));
            if err > atol + rtol * num.abs() {
                passed = false;
            }
            checked += 1;
        }
    }
    Ok(GradCheckReport { max_abs_err: max_abs, max_rel_err: max_rel, checked, passed })
}
