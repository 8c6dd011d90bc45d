//! Nearest and bilinear resizing of (N, C, H, W) tensors with PyTorch's coordinate rules
//! (`F.interpolate` modes `nearest` and `bilinear`, with or without `align_corners`).
//! Both are separable: each output row/column reads a few input rows/columns with weights.

use crate::dtype::Float;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interp {
    Nearest,
    Bilinear { align_corners: bool },
}

/// For each output coordinate: (i0, i1, weight of i1).
fn taps(inp: usize, out: usize, mode: Interp) -> Vec<(usize, usize, f64)> {
    (0..out)
        .map(|d| match mode {
            Interp::Nearest => {
                let s = ((d as f64) * (inp as f64 / out as f64)).floor() as usize;
                let s = s.min(inp - 1);
                (s, s, 0.0)
            }
            Interp::Bilinear { align_corners } => {
                let src = if align_corners {
                    if out > 1 {
                        d as f64 * (inp - 1) as f64 / (out - 1) as f64
                    } else {
                        0.0
                    }
                } else {
                    ((d as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0)
                };
                let i0 = (src.floor() as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, src - i0 as f64)
            }
        })
        .collect()
}

impl<T: Float> Tensor<T> {
    /// Resize the last two dimensions to `(oh, ow)`.
    pub fn upsample(&self, oh: usize, ow: usize, mode: Interp) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Upsample { oh, ow, mode },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let sh = self.shape();
                if sh.len() != 4 || oh == 0 || ow == 0 || sh[2] == 0 || sh[3] == 0 {
                    return Err(shape_err(
                        "upsample",
                        format!(
                    "expected input (N, C, H, W) and a positive size, got {sh:?} -> ({oh}, {ow})"
                ),
                    ));
                }
                let (h, w) = (sh[2], sh[3]);
                let planes = sh[0] * sh[1];
                let (ty, tx) = (taps(h, oh, mode), taps(w, ow, mode));
                let x = self.data();
                let mut y = vec![T::zero(); planes * oh * ow];
                let nearest = mode == Interp::Nearest;
                // plane by plane, in parallel where there is enough to share
                let fwd = |(p, yp): (usize, &mut [T])| {
                    let xp = &x[p * h * w..(p + 1) * h * w];
                    for (yr, &(y0, y1, ly)) in yp.chunks_exact_mut(ow).zip(&ty) {
                        if nearest {
                            // a copy: the same source row and column whatever the weight
                            let xr = &xp[y0 * w..(y0 + 1) * w];
                            for (v, &(x0, _, _)) in yr.iter_mut().zip(&tx) {
                                *v = xr[x0];
                            }
                            continue;
                        }
                        for (v, &(x0, x1, lx)) in yr.iter_mut().zip(&tx) {
                            let s = (1.0 - ly)
                                * ((1.0 - lx) * xp[y0 * w + x0].as_f64()
                                    + lx * xp[y0 * w + x1].as_f64())
                                + ly * ((1.0 - lx) * xp[y1 * w + x0].as_f64()
                                    + lx * xp[y1 * w + x1].as_f64());
                            *v = T::from_f64(s);
                        }
                    }
                };
                if y.len() >= crate::cpu::PAR_THRESHOLD {
                    use rayon::prelude::*;
                    y.par_chunks_mut(oh * ow).enumerate().for_each(fwd);
                } else {
                    y.chunks_mut(oh * ow).enumerate().for_each(fwd);
                }
                Ok(Tensor::from_op(
                    y,
                    vec![sh[0], sh[1], oh, ow],
                    "upsample",
                    &[self],
                    move |g, _| {
                        let mut gx = vec![T::zero(); planes * h * w];
                        let bwd = |(p, gp): (usize, &mut [T])| {
                            for (oy, &(y0, y1, ly)) in ty.iter().enumerate() {
                                if nearest {
                                    let gr = &g[(p * oh + oy) * ow..(p * oh + oy + 1) * ow];
                                    let dst = &mut gp[y0 * w..(y0 + 1) * w];
                                    for (&v, &(x0, _, _)) in gr.iter().zip(&tx) {
                                        dst[x0] += v;
                                    }
                                    continue;
                                }
                                for (ox, &(x0, x1, lx)) in tx.iter().enumerate() {
                                    let v = g[(p * oh + oy) * ow + ox];
                                    let (ly, lx) = (T::from_f64(ly), T::from_f64(lx));
                                    let (my, mx) = (T::one() - ly, T::one() - lx);
                                    gp[y0 * w + x0] += v * my * mx;
                                    gp[y0 * w + x1] += v * my * lx;
                                    gp[y1 * w + x0] += v * ly * mx;
                                    gp[y1 * w + x1] += v * ly * lx;
                                }
                            }
                        };
                        if g.len() >= crate::cpu::PAR_THRESHOLD {
                            use rayon::prelude::*;
                            gx.par_chunks_mut(h * w).enumerate().for_each(bwd);
                        } else {
                            gx.chunks_mut(h * w).enumerate().for_each(bwd);
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }
}
