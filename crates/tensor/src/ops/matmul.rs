//! Matrix products: `matmul` (2-D, and batched 3-D with an optional shared right operand) and the
//! fused `linear` layer op `y = x·Wᵀ + b` (PyTorch `F.linear`).

use rayon::prelude::*;

use crate::cpu::gemm::{gemm, Mat};
use crate::dtype::Float;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

impl<T: Float> Tensor<T> {
    /// `[m,k]·[k,n] → [m,n]`; `[b,m,k]·[b,k,n] → [b,m,n]`; `[b,m,k]·[k,n] → [b,m,n]`.
    pub fn matmul(&self, rhs: &Tensor<T>) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::MatMul,
            &[self, rhs],
            trace::inner(|| -> Result<Tensor<T>> {
                let (a, b) = (self.shape(), rhs.shape());
                let bad = || shape_err("matmul", format!("cannot multiply {a:?} by {b:?}"));
                let (batch, m, k, n, shared_rhs) = match (a.len(), b.len()) {
                    (2, 2) if a[1] == b[0] => (1, a[0], a[1], b[1], true),
                    (3, 3) if a[0] == b[0] && a[2] == b[1] => (a[0], a[1], a[2], b[2], false),
                    (3, 2) if a[2] == b[0] => (a[0], a[1], a[2], b[1], true),
                    _ => return Err(bad()),
                };
                let out_shape = if a.len() == 2 {
                    vec![m, n]
                } else {
                    vec![batch, m, n]
                };
                crate::profile::add_macs(batch * m * n * k);
                let (ad, bd) = (self.data(), rhs.data());
                let mut out = vec![T::zero(); batch * m * n];
                let bstride = if shared_rhs { 0 } else { k * n };
                if batch == 1 {
                    gemm(
                        m,
                        n,
                        k,
                        Mat::rm(&ad, k),
                        Mat::rm(&bd, n),
                        &mut out,
                        false,
                        true,
                    );
                } else {
                    out.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| {
                        gemm(
                            m,
                            n,
                            k,
                            Mat::rm(&ad[i * m * k..], k),
                            Mat::rm(&bd[i * bstride..], n),
                            c,
                            false,
                            false,
                        )
                    });
                }
                Ok(Tensor::from_op(
                    out,
                    out_shape,
                    "matmul",
                    &[self, rhs],
                    move |g, needs| {
                        // dA = dC·Bᵀ ; dB = Aᵀ·dC (summed over the batch when B is shared)
                        let ga = needs[0].then(|| {
                            let mut ga = vec![T::zero(); batch * m * k];
                            ga.par_chunks_mut(m * k).enumerate().for_each(|(i, c)| {
                                gemm(
                                    m,
                                    k,
                                    n,
                                    Mat::rm(&g[i * m * n..], n),
                                    Mat::rm_t(&bd[i * bstride..], n),
                                    c,
                                    false,
                                    batch == 1,
                                )
                            });
                            ga
                        });
                        let gb = needs[1].then(|| {
                            if shared_rhs {
                                // Stack the batch into rows: dB = A_allᵀ · dC_all, one GEMM.
                                let mut gb = vec![T::zero(); k * n];
                                gemm(
                                    k,
                                    n,
                                    batch * m,
                                    Mat::rm_t(&ad, k),
                                    Mat::rm(g, n),
                                    &mut gb,
                                    false,
                                    true,
                                );
                                gb
                            } else {
                                let mut gb = vec![T::zero(); batch * k * n];
                                gb.par_chunks_mut(k * n).enumerate().for_each(|(i, c)| {
                                    gemm(
                                        k,
                                        n,
                                        m,
                                        Mat::rm_t(&ad[i * m * k..], k),
                                        Mat::rm(&g[i * m * n..], n),
                                        c,
                                        false,
                                        false,
                                    )
                                });
                                gb
                            }
                        });
                        vec![ga, gb]
                    },
                ))
            }),
        )
    }

    /// Gram matrices: `x` (N, C, K) → (N, C, C) with `G = X·Xᵀ` per batch element (or (C, K)
    /// → (C, C)). The same values as `x.matmul(&x.transpose(-2, -1))`, without the transposed
    /// copy; the backward is `dX = (dG + dGᵀ)·X`, and only `x` itself is kept for it.
    pub fn gram(&self) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Gram,
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let s = self.shape();
                let (batch, c, k) = match *s {
                    [c, k] => (1, c, k),
                    [b, c, k] => (b, c, k),
                    _ => {
                        return Err(shape_err(
                            "gram",
                            format!("expected (C, K) or (N, C, K), got {s:?}"),
                        ))
                    }
                };
                let mut shape = s.to_vec();
                let last = shape.len() - 1;
                shape[last] = c;
                crate::profile::add_macs(batch * c * c * k);
                let xd = self.data();
                let mut out = vec![T::zero(); batch * c * c];
                for (i, o) in out.chunks_mut((c * c).max(1)).enumerate() {
                    let f = &xd[i * c * k..];
                    gemm(c, c, k, Mat::rm(f, k), Mat::rm_t(f, k), o, false, true);
                }
                Ok(Tensor::from_op(out, shape, "gram", &[self], move |g, _| {
                    let mut gx = vec![T::zero(); batch * c * k];
                    for (i, dx) in gx.chunks_mut((c * k).max(1)).enumerate() {
                        let dg = &g[i * c * c..(i + 1) * c * c];
                        let mut sym = vec![T::zero(); c * c];
                        for r in 0..c {
                            for q in 0..c {
                                sym[r * c + q] = dg[r * c + q] + dg[q * c + r];
                            }
                        }
                        gemm(
                            c,
                            k,
                            c,
                            Mat::rm(&sym, c),
                            Mat::rm(&xd[i * c * k..], k),
                            dx,
                            false,
                            true,
                        );
                    }
                    vec![Some(gx)]
                }))
            }),
        )
    }

    /// `y = x·Wᵀ + b` with `x: [.., in]`, `W: [out, in]`, `b: [out]` (PyTorch `F.linear`).
    pub fn linear(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Linear {
                bias: bias.is_some(),
            },
            &trace::present(&[Some(self), Some(weight), bias]),
            trace::inner(|| -> Result<Tensor<T>> {
                let xs = self.shape();
                let ws = weight.shape();
                if xs.is_empty() || ws.len() != 2 || xs[xs.len() - 1] != ws[1] {
                    return Err(shape_err(
                        "linear",
                        format!(
                            "input {xs:?} does not fit weight {ws:?} (expected [.., {}])",
                            ws.get(1).copied().unwrap_or(0)
                        ),
                    ));
                }
                let (o, i) = (ws[0], ws[1]);
                if let Some(b) = bias {
                    if b.shape() != [o] {
                        return Err(shape_err(
                            "linear",
                            format!(
                                "bias {:?} does not fit weight {ws:?} (expected [{o}])",
                                b.shape()
                            ),
                        ));
                    }
                }
                let rows = self.numel() / i.max(1);
                crate::profile::add_macs(rows * o * i);
                let (xd, wd) = (self.data(), weight.data());
                let mut out = vec![T::zero(); rows * o];
                if let Some(b) = bias {
                    let bd = b.data();
                    out.chunks_mut(o).for_each(|r| r.copy_from_slice(&bd));
                }
                gemm(
                    rows,
                    o,
                    i,
                    Mat::rm(&xd, i),
                    Mat::rm_t(&wd, i),
                    &mut out,
                    bias.is_some(),
                    true,
                );
                let mut out_shape = xs.to_vec();
                *out_shape.last_mut().unwrap_or(&mut 0) = o;
                let mut inputs = vec![self, weight];
                if let Some(b) = bias {
                    inputs.push(b);
                }
                Ok(Tensor::from_op(
                    out,
                    out_shape,
                    "linear",
                    &inputs,
                    move |g, needs| {
                        let gx = needs[0].then(|| {
                            let mut gx = vec![T::zero(); rows * i];
                            gemm(
                                rows,
                                i,
                                o,
                                Mat::rm(g, o),
                                Mat::rm(&wd, i),
                                &mut gx,
                                false,
                                true,
                            );
                            gx
                        });
                        let gw = needs[1].then(|| {
                            let mut gw = vec![T::zero(); o * i];
                            gemm(
                                o,
                                i,
                                rows,
                                Mat::rm_t(g, o),
                                Mat::rm(&xd, i),
                                &mut gw,
                                false,
                                true,
                            );
                            gw
                        });
                        let mut res = vec![gx, gw];
                        if needs.len() > 2 {
                            res.push(needs[2].then(|| {
                                let mut gb = vec![T::zero(); o];
                                g.chunks(o)
                                    .for_each(|r| gb.iter_mut().zip(r).for_each(|(a, &b)| *a += b));
                                gb
                            }));
                        }
                        res
                    },
                ))
            }),
        )
    }
}
