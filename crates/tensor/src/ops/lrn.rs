//! Local response normalisation across channels (AlexNet; PyTorch `LocalResponseNorm`):
//! `y_c = x_c · s_c^(-β)`, `s_c = k + α/n · Σ_{c' ∈ win(c)} x_{c'}²`, with the window
//! `c - n/2 ..= c + (n-1)/2` clipped to the channels (zero padding, divisor always n).
//! Backward: `dx_i = g_i s_i^(-β) - (2αβ/n) x_i Σ_{c: i ∈ win(c)} g_c x_c s_c^(-β-1)`.

use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

impl<T: Float> Tensor<T> {
    pub fn lrn(&self, size: usize, alpha: f64, beta: f64, k: f64) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Lrn {
                size,
                alpha,
                beta,
                k,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let sh = self.shape();
                if sh.len() < 3 {
                    return Err(shape_err(
                        "lrn",
                        format!("expected input (N, C, ...), got {sh:?}"),
                    ));
                }
                if size == 0 {
                    return Err(arg_err("lrn", "size must be positive"));
                }
                let (n, c) = (sh[0], sh[1]);
                let inner: usize = sh[2..].iter().product();
                let x = self.data();
                let (a, b, kk) = (
                    T::from_f64(alpha / size as f64),
                    T::from_f64(beta),
                    T::from_f64(k),
                );
                let lo = size / 2;
                let hi = (size - 1) / 2;
                // scale s for every element
                let mut s = vec![kk; x.len()];
                for ni in 0..n {
                    for ci in 0..c {
                        let c0 = ci.saturating_sub(lo);
                        let c1 = (ci + hi).min(c - 1);
                        for cj in c0..=c1 {
                            let src = &x[(ni * c + cj) * inner..(ni * c + cj + 1) * inner];
                            let dst = &mut s[(ni * c + ci) * inner..(ni * c + ci + 1) * inner];
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d += a * v * v);
                        }
                    }
                }
                let y: Vec<T> = x.iter().zip(&s).map(|(&v, &sv)| v * sv.powf(-b)).collect();
                Ok(Tensor::from_op(
                    y,
                    sh.to_vec(),
                    "lrn",
                    &[self],
                    move |g, _| {
                        // t_c = g_c x_c s_c^(-β-1)
                        let t: Vec<T> = g
                            .iter()
                            .zip(x.iter())
                            .zip(&s)
                            .map(|((&gv, &xv), &sv)| gv * xv * sv.powf(-b - T::one()))
                            .collect();
                        let two_ab = T::from_f64(2.0) * a * b;
                        let mut gx: Vec<T> = g
                            .iter()
                            .zip(&s)
                            .map(|(&gv, &sv)| gv * sv.powf(-b))
                            .collect();
                        for ni in 0..n {
                            for ci in 0..c {
                                // channels whose window contains ci: cj - lo <= ci <= cj + hi
                                let c0 = ci.saturating_sub(hi);
                                let c1 = (ci + lo).min(c - 1);
                                for cj in c0..=c1 {
                                    for e in 0..inner {
                                        let i = (ni * c + ci) * inner + e;
                                        gx[i] -= two_ab * x[i] * t[(ni * c + cj) * inner + e];
                                    }
                                }
                            }
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }
}
