//! Normalisation built from differentiable ops: batch norm (train: batch statistics and an
//! update of the running ones; eval: running statistics) and instance norm. Composed ops keep
//! the backward exact: `d(var)/d(mean) = 0`, so autograd of the composition is the textbook one.

use crate::dtype::Float;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// Shape `[1, C, 1, 1, ...]` to broadcast a per-channel vector against `x`.
fn channel_shape(x: &[usize]) -> Vec<usize> {
    let mut s = vec![1; x.len()];
    s[1] = x[1];
    s
}

impl<T: Float> Tensor<T> {
    /// Batch normalisation over all dims but the channel dim 1 (BatchNorm1d on (N, C) or (N, C, L),
    /// BatchNorm2d on (N, C, H, W)). In training, `running_mean`/`running_var` are updated in place
    /// with `momentum` (the variance stored is unbiased, as in PyTorch).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        running_mean: Option<&Tensor<T>>,
        running_var: Option<&Tensor<T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor<T>> {
        let sh = self.shape().to_vec();
        if sh.len() < 2 {
            return Err(shape_err(
                "batch_norm",
                format!("expected input (N, C, ...), got {sh:?}"),
            ));
        }
        let c = sh[1];
        for (name, t) in [
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ] {
            if let Some(t) = t {
                if t.shape() != [c] {
                    return Err(shape_err(
                        "batch_norm",
                        format!(
                            "{name} {:?} does not fit {c} channels of input {sh:?}",
                            t.shape()
                        ),
                    ));
                }
            }
        }
        let cs = channel_shape(&sh);
        let dims: Vec<isize> = (0..sh.len() as isize).filter(|&d| d != 1).collect();
        let count = self.numel() / c.max(1);
        // Per-channel work happens on C-vectors; the full tensor is touched only by the
        // statistics (training) and one multiply and one add.
        let (centered, var) = if training {
            if count <= 1 {
                return Err(shape_err(
                    "batch_norm",
                    format!(
                        "expected more than 1 value per channel when training, got input {sh:?}"
                    ),
                ));
            }
            let mean = self.mean_dims(&dims, true)?;
            let centered = self.sub(&mean)?;
            let var = centered.square().mean_dims(&dims, true)?;
            if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                let (m, v) = (mean.data(), var.data());
                let mo = T::from_f64(momentum);
                let unbias = T::from_f64(count as f64 / (count as f64 - 1.0));
                rm.update_data(|r| {
                    r.iter_mut()
                        .zip(m.iter())
                        .for_each(|(r, &m)| *r = (T::one() - mo) * *r + mo * m)
                });
                rv.update_data(|r| {
                    r.iter_mut()
                        .zip(v.iter())
                        .for_each(|(r, &v)| *r = (T::one() - mo) * *r + mo * v * unbias)
                });
            }
            (centered, var)
        } else {
            match (running_mean, running_var) {
                (Some(rm), Some(rv)) => {
                    // y = x·s + (b − μ·s) with s = w / √(σ² + ε)
                    let mut scale = rv.detach().add_scalar(eps).powf(-0.5);
                    if let Some(w) = weight {
                        scale = scale.mul(w)?;
                    }
                    let mut shift = rm.detach().mul(&scale)?.neg();
                    if let Some(b) = bias {
                        shift = shift.add(b)?;
                    }
                    return self.mul(&scale.reshape(&cs)?)?.add(&shift.reshape(&cs)?);
                }
                _ => return self.batch_norm(weight, bias, None, None, true, momentum, eps),
            }
        };
        let mut scale = var.add_scalar(eps).powf(-0.5);
        if let Some(w) = weight {
            scale = scale.mul(&w.reshape(&cs)?)?;
        }
        let mut y = centered.mul(&scale)?;
        if let Some(b) = bias {
            y = y.add(&b.reshape(&cs)?)?;
        }
        Ok(y)
    }

    /// Instance normalisation: statistics per sample and channel over the spatial dims.
    pub fn instance_norm(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        eps: f64,
    ) -> Result<Tensor<T>> {
        let sh = self.shape().to_vec();
        if sh.len() < 3 {
            return Err(shape_err(
                "instance_norm",
                format!("expected input (N, C, H, W) or (N, C, L), got {sh:?}"),
            ));
        }
        let dims: Vec<isize> = (2..sh.len() as isize).collect();
        let mean = self.mean_dims(&dims, true)?;
        let centered = self.sub(&mean)?;
        let var = centered.square().mean_dims(&dims, true)?;
        let mut y = centered.mul(&var.add_scalar(eps).powf(-0.5))?;
        let cs = channel_shape(&sh);
        if let Some(w) = weight {
            y = y.mul(&w.reshape(&cs)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&b.reshape(&cs)?)?;
        }
        Ok(y)
    }

    /// Inverted dropout: zero each element with probability `p` and scale the rest by `1/(1-p)`.
    pub fn dropout(&self, p: f64, rng: &mut crate::rng::Rng) -> Result<Tensor<T>> {
        if !(0.0..1.0).contains(&p) {
            return Err(crate::error::arg_err(
                "dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let keep = T::from_f64(1.0 / (1.0 - p));
        let mask: Vec<T> = (0..self.numel())
            .map(|_| if rng.uniform() < p { T::zero() } else { keep })
            .collect();
        self.mul(&Tensor::raw(mask, self.shape().to_vec()))
    }
}
