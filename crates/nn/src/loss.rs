//! Losses (mean reduction, PyTorch semantics): cross-entropy with logits (class weights, label
//! smoothing), NLL, MSE, L1, smooth-L1, BCE with logits. Built from differentiable tensor ops.

use aics_tensor::{Float, Tensor, TensorError};

use crate::error::{config, Result};

fn check_targets(op: &str, target: &[usize], n: usize, k: usize) -> Result<()> {
    if target.len() != n {
        return Err(config(
            op,
            format!("{} targets for a batch of {n}", target.len()),
        ));
    }
    if let Some(&t) = target.iter().find(|&&t| t >= k) {
        return Err(config(
            op,
            format!("target class {t} out of range for {k} classes"),
        ));
    }
    Ok(())
}

fn check_weight<T: Float>(op: &str, weight: Option<&[T]>, k: usize) -> Result<()> {
    match weight {
        Some(w) if w.len() != k => Err(config(
            op,
            format!("{} class weights for {k} classes", w.len()),
        )),
        _ => Ok(()),
    }
}

/// `-Σ_n w[y_n]·logp[n, y_n] / Σ_n w[y_n]` on log-probabilities `logp` (N, K).
pub fn nll_loss<T: Float>(
    logp: &Tensor<T>,
    target: &[usize],
    weight: Option<&[T]>,
) -> Result<Tensor<T>> {
    let s = logp.shape();
    if s.len() != 2 {
        return Err(config(
            "nll_loss",
            format!("expected log-probabilities (N, K), got {s:?}"),
        ));
    }
    let (n, k) = (s[0], s[1]);
    check_targets("nll_loss", target, n, k)?;
    check_weight("nll_loss", weight, k)?;
    let picked = logp.gather(1, target, &[n, 1])?; // [N,1]
    let w: Vec<T> = target
        .iter()
        .map(|&t| weight.map_or(T::one(), |w| w[t]))
        .collect();
    let denom: f64 = w.iter().map(|v| v.as_f64()).sum();
    let wt = Tensor::from_vec(w, &[n, 1])?;
    Ok(picked.mul(&wt)?.sum().mul_scalar(-1.0 / denom))
}

/// Cross-entropy of logits (N, K) against class indices, as `F.cross_entropy`.
pub fn cross_entropy<T: Float>(
    logits: &Tensor<T>,
    target: &[usize],
    weight: Option<&[T]>,
    label_smoothing: f64,
) -> Result<Tensor<T>> {
    let s = logits.shape();
    if s.len() != 2 {
        return Err(config(
            "cross_entropy",
            format!("expected logits (N, K), got {s:?}"),
        ));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(config(
            "cross_entropy",
            format!("label_smoothing must be in [0, 1], got {label_smoothing}"),
        ));
    }
    let (n, k) = (s[0], s[1]);
    check_targets("cross_entropy", target, n, k)?;
    check_weight("cross_entropy", weight, k)?;
    let logp = logits.log_softmax(1)?;
    let nll = nll_loss(&logp, target, weight)?;
    if label_smoothing == 0.0 {
        return Ok(nll);
    }
    // smooth term: -Σ_n Σ_k w_k·logp[n,k], normalised like the NLL term (by Σ w[y_n], or N).
    let (smooth, denom) = match weight {
        Some(w) => {
            let wrow = Tensor::from_vec(w.to_vec(), &[1, k])?;
            let d: f64 = target.iter().map(|&t| w[t].as_f64()).sum();
            (logp.mul(&wrow)?.sum(), d)
        }
        None => (logp.sum(), n as f64),
    };
    let eps = label_smoothing;
    Ok(nll
        .mul_scalar(1.0 - eps)
        .add(&smooth.mul_scalar(-eps / (k as f64 * denom)))?)
}

fn same_shape<T: Float>(op: &str, x: &Tensor<T>, y: &Tensor<T>) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(crate::error::NnError::Tensor(TensorError::Shape {
            op: "loss",
            msg: format!("{op}: input {:?} vs target {:?}", x.shape(), y.shape()),
        }));
    }
    Ok(())
}

pub fn mse_loss<T: Float>(x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
    same_shape("mse_loss", x, y)?;
    Ok(x.sub(y)?.square().mean())
}

pub fn l1_loss<T: Float>(x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
    same_shape("l1_loss", x, y)?;
    Ok(x.sub(y)?.abs().mean())
}

pub fn smooth_l1_loss<T: Float>(x: &Tensor<T>, y: &Tensor<T>, beta: f64) -> Result<Tensor<T>> {
    same_shape("smooth_l1_loss", x, y)?;
    if beta <= 0.0 {
        return l1_loss(x, y);
    }
    Ok(x.sub(y)?.smooth_l1(beta).mean())
}

/// `mean((1 − y)·x + log(1 + e^{−x}))`, BCE on logits in PyTorch's form, with the stable
/// softplus. Its gradient is `σ(x) − y` everywhere; the form `max(x, 0) − x·y +
/// log(1 + e^{−|x|})` has the same values but, built from `relu` and `abs`, a gradient of
/// `−y` at exactly x = 0, where the kinks' one-sided derivatives are taken as 0.
pub fn bce_with_logits<T: Float>(x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
    same_shape("bce_with_logits", x, y)?;
    let t = x.mul(&y.neg().add_scalar(1.0))?.add(&x.neg().softplus())?;
    Ok(t.mean())
}
