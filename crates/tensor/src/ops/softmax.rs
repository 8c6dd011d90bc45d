//! Softmax and log-softmax along a dimension, computed with the max subtracted for stability.
//! Backward: softmax `dx = y ⊙ (g - Σ g⊙y)`; log-softmax `dx = g - softmax · Σ g`.

use std::sync::Arc;

use crate::dtype::Float;
use crate::error::Result;
use crate::shape::{norm_dim, split_at_dim};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

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

/// `x − m − ln Σ exp(x − m)` with `m` the lane's maximum. The shift and the log-sum are
/// subtracted one after the other: folded into one `m + ln Σ` first, the log-sum would vanish in
/// the rounding of a large `m` (logits of 3.6·10¹² round away any term below 2¹⁸).
fn log_softmax_lane<T: Float>(x: &[T], y: &mut [T]) {
    let m = x.iter().copied().fold(T::neg_infinity(), T::max);
    let s: T = x.iter().map(|&v| (v - m).exp()).sum();
    let ls = s.ln();
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = (v - m) - ls);
}

/// `exp(x − m) / Σ exp(x − m)`, as PyTorch computes it.
fn softmax_lane<T: Float>(x: &[T], y: &mut [T]) {
    let m = x.iter().copied().fold(T::neg_infinity(), T::max);
    let mut s = T::zero();
    for (o, &v) in y.iter_mut().zip(x) {
        *o = (v - m).exp();
        s += *o;
    }
    let r = T::one() / s;
    y.iter_mut().for_each(|o| *o *= r);
}

impl<T: Float> Tensor<T> {
    pub fn softmax(&self, dim: isize) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Softmax(trace::axis(dim, self.rank())),
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let d = norm_dim(dim, self.rank(), "softmax")?;
                let (outer, n, inner) = split_at_dim(self.shape(), d);
                let mut y = vec![T::zero(); self.numel()];
                for_lanes(&self.data(), &mut y, outer, n, inner, softmax_lane);
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
            }),
        )
    }

    pub fn log_softmax(&self, dim: isize) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::LogSoftmax(trace::axis(dim, self.rank())),
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
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
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, Tol};
    use crate::Tensor;

    /// Logits so large that `m + ln Σ` rounds back to `m`. The values are PyTorch 1.13's:
    /// `torch.softmax(torch.full((1, 1000), 3.6411243e12), 1)` is 0.001 everywhere and
    /// `log_softmax` −6.9077554; for [3.6411243e12, 3.6411243e12 + 524288, 0] they are
    /// [0, 1, 0] and [−524288, 0, −3641124847616].
    #[test]
    fn large_logits_keep_their_log_sum() {
        let x = Tensor::<f32>::full(&[1, 1000], 3.641_124_3e12);
        assert_close(
            "softmax",
            &x.softmax(1).unwrap().to_vec(),
            &[0.001f32; 1000],
            Tol::mixed(1e-6),
        );
        let want = vec![-6.907_755_4f32; 1000];
        assert_close(
            "log_softmax",
            &x.log_softmax(1).unwrap().to_vec(),
            &want,
            Tol::mixed(1e-6),
        );
        let y = Tensor::<f32>::from_vec(
            vec![3.641_124_3e12, 3.641_124_3e12 + 524_288.0, 0.0],
            &[1, 3],
        )
        .unwrap();
        assert_close(
            "softmax",
            &y.softmax(1).unwrap().to_vec(),
            &[0.0f32, 1.0, 0.0],
            Tol::mixed(1e-6),
        );
        let want = [-524_288.0f32, 0.0, -3_641_124_847_616.0];
        assert_close(
            "log_softmax",
            &y.log_softmax(1).unwrap().to_vec(),
            &want,
            Tol::mixed(1e-6),
        );
    }
}
