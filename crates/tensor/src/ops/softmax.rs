//! Softmax and log-softmax along a dimension, computed with the max subtracted for stability.
//! Backward: softmax `dx = y ⊙ (g - Σ g⊙y)`; log-softmax `dx = g - softmax · Σ g`.

use std::sync::Arc;

use crate::dtype::Float;
use crate::error::Result;
use crate::shape::{norm_dim, split_at_dim};
use crate::tensor::Tensor;

/// Apply `f(lane_in, lane_out)` to every lane along the reduced dim (strided by `inner`).
fn for_lanes<T: Float>(
    x: &[T],
    out: &mut [T],
    outer: usize,
    n: usize,
    inner: usize,
    f: impl Fn(&[T], &mut [T]),
) {
    let mut lin = vec![T::zero(); n];
    let mut lout = vec![T::zero(); n];
    for o in 0..outer {
        for i in 0..inner {
            for j in 0..n {
                lin[j] = x[(o * n + j) * inner + i];
            }
            f(&lin, &mut lout);
            for j in 0..n {
                out[(o * n + j) * inner + i] = lout[j];
            }
        }
    }
}

fn log_softmax_lane<T: Float>(x: &[T], y: &mut [T]) {
    let m = x.iter().copied().fold(T::neg_infinity(), T::max);
    let s: T = x.iter().map(|&v| (v - m).exp()).sum();
    let lse = m + s.ln();
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v - lse);
}

impl<T: Float> Tensor<T> {
    pub fn softmax(&self, dim: isize) -> Result<Tensor<T>> {
        let d = norm_dim(dim, self.rank(), "softmax")?;
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        let mut y = vec![T::zero(); self.numel()];
        for_lanes(&self.data(), &mut y, outer, n, inner, |x, out| {
            log_softmax_lane(x, out);
            out.iter_mut().for_each(|v| *v = v.exp());
        });
        let y = Arc::new(y);
        let yc = y.clone();
        Ok(Tensor::from_op_arc(
            y,
            self.shape().to_vec(),
            "softmax",
            &[self],
            move |g, _| {
                let mut gx = vec![T::zero(); g.len()];
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| (o * n + j) * inner + i;
                        let dot: T = (0..n).map(|j| g[at(j)] * yc[at(j)]).sum();
                        (0..n).for_each(|j| gx[at(j)] = yc[at(j)] * (g[at(j)] - dot));
                    }
                }
                vec![Some(gx)]
            },
        ))
    }

    pub fn log_softmax(&self, dim: isize) -> Result<Tensor<T>> {
        let d = norm_dim(dim, self.rank(), "log_softmax")?;
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        let mut y = vec![T::zero(); self.numel()];
        for_lanes(&self.data(), &mut y, outer, n, inner, log_softmax_lane);
        let y = Arc::new(y);
        let yc = y.clone();
        Ok(Tensor::from_op_arc(
            y,
            self.shape().to_vec(),
            "log_softmax",
            &[self],
            move |g, _| {
                let mut gx = vec![T::zero(); g.len()];
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| (o * n + j) * inner + i;
                        let sum: T = (0..n).map(|j| g[at(j)]).sum();
                        (0..n).for_each(|j| gx[at(j)] = g[at(j)] - yc[at(j)].exp() * sum);
                    }
                }
                vec![Some(gx)]
            },
        ))
    }
}
