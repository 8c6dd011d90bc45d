//! Pooling kernels over planes (one plane = one channel of one sample): max pooling with argmax
//! indices, average pooling (PyTorch's padding and `count_include_pad` rules), adaptive
//! average pooling. Backward of max pooling scatters into the argmax, so overlapping windows
//! (3×3 stride 2) add up correctly.

use rayon::prelude::*;

use crate::dtype::Float;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

/// PyTorch's pooling output size, including the `ceil_mode` rule that the last window must
/// start inside the input or its left padding.
pub fn pool_out_size(
    i: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil: bool,
) -> Option<usize> {
    let eff = d * (k.max(1) - 1) + 1;
    if s == 0 || i + 2 * p < eff {
        return None;
    }
    let num = i + 2 * p - eff + if ceil { s - 1 } else { 0 };
    let mut o = num / s + 1;
    if ceil && (o - 1) * s >= i + p {
        o -= 1;
    }
    Some(o)
}

/// Planes per rayon task: small planes are batched so that task overhead stays negligible.
fn planes_per_task(plane: usize) -> usize {
    (1 << 14) / plane.max(1) + 1
}

/// Valid kernel taps along one axis for each output position: (input start, first tap, end tap),
/// so that the inner loops need no bounds checks on the padding.
fn tap_ranges(
    out: usize,
    inp: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> Vec<(isize, usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * s) as isize - p as isize;
            let lo = if start < 0 {
                ((-start) as usize).div_ceil(d)
            } else {
                0
            };
            let hi = if (inp as isize) > start {
                (((inp as isize - start) as usize).div_ceil(d)).min(k)
            } else {
                0
            };
            (start, lo, hi.max(lo))
        })
        .collect()
}

/// Max pooling: (values, flat argmax index within the plane) per output element. Ties keep the
/// first maximum and NaN propagates, as in PyTorch.
pub fn max_pool_fwd<T: Float>(x: &[T], g: &PoolGeom) -> (Vec<T>, Vec<u32>) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![T::zero(); g.planes * ohw];
    let mut idx = vec![0u32; g.planes * ohw];
    if is_pairs(g) {
        max_pool_pairs(x, g, &mut y, &mut idx);
        return (y, idx);
    }
    let rows = tap_ranges(g.oh, g.h, g.kh, g.sh, g.ph, g.dh);
    let cols = tap_ranges(g.ow, g.w, g.kw, g.sw, g.pw, g.dw);
    let by_rows = g.dh == 1 && g.dw == 1;
    let cg = by_rows.then(|| col_gather(g, &rows, &cols));
    y.par_chunks_mut(ohw)
        .zip(idx.par_chunks_mut(ohw))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each_init(
            // each task's scratch for `max_pool_plane_by_rows`
            || cg.as_ref().map(|_| PoolScratch::new(g)),
            |scratch, (pl, (yp, ip))| {
                let xp = &x[pl * hw..(pl + 1) * hw];
                if let (Some(cg), Some(scratch)) = (&cg, scratch) {
                    // the whole plane under the widest vectors (small planes have short rows)
                    super::simd::with_best(
                        #[inline(always)]
                        || max_pool_plane_by_rows(xp, g, &rows, cg, yp, ip, scratch),
                    );
                    return;
                }
                for (oy, &(ys, klo, khi)) in rows.iter().enumerate() {
                    for (ox, &(xs, jlo, jhi)) in cols.iter().enumerate() {
                        let mut best = T::neg_infinity();
                        let mut bi = ((ys + (klo * g.dh) as isize) as usize) * g.w
                            + (xs + (jlo * g.dw) as isize) as usize;
                        for ki in klo..khi {
                            let row = (ys + (ki * g.dh) as isize) as usize * g.w;
                            for kj in jlo..jhi {
                                let i = row + (xs + (kj * g.dw) as isize) as usize;
                                let v = xp[i];
                                if v > best || v.is_nan() {
                                    best = v;
                                    bi = i;
                                }
                            }
                        }
                        yp[oy * g.ow + ox] = best;
                        ip[oy * g.ow + ox] = bi as u32;
                    }
                }
            },
        );
    (y, idx)
}

/// Whether `g` is a 2×2 pool of stride 2 whose windows all lie inside the input (no padding,
/// no dilation, no partial window from `ceil_mode`): LeNet's, VGG's and U-Net's pools.
fn is_pairs(g: &PoolGeom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw) == (2, 2, 2, 2, 0, 0, 1, 1)
        && 2 * g.oh <= g.h
        && 2 * g.ow <= g.w
}

/// [`max_pool_fwd`] for [`is_pairs`] geometries: each window's four values in the general
/// loop's order (top row, then bottom row), with its rule (a larger value or a NaN takes the
/// place), branch-free over a whole output row. Many planes to a task: LeNet's are 28×28.
fn max_pool_pairs<T: Float>(x: &[T], g: &PoolGeom, y: &mut [T], idx: &mut [u32]) {
    let (w, hw, ohw) = (g.w, g.h * g.w, g.oh * g.ow);
    if ohw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(idx.par_chunks_mut(ohw))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(pl, (yp, ip))| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            super::simd::with_best(
                #[inline(always)]
                || {
                    for (oy, (yr, ir)) in yp
                        .chunks_exact_mut(g.ow)
                        .zip(ip.chunks_exact_mut(g.ow))
                        .enumerate()
                    {
                        let r0 = 2 * oy * w;
                        let (top, bottom) =
                            (&xp[r0..r0 + 2 * g.ow], &xp[r0 + w..r0 + w + 2 * g.ow]);
                        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
                            let i0 = (r0 + 2 * ox) as u32;
                            let (mut b, mut bi) = (top[2 * ox], i0);
                            for (v, i) in [
                                (top[2 * ox + 1], i0 + 1),
                                (bottom[2 * ox], i0 + w as u32),
                                (bottom[2 * ox + 1], i0 + w as u32 + 1),
                            ] {
                                #[allow(clippy::eq_op)]
                                let take = v > b || v != v;
                                b = if take { v } else { b };
                                bi = if take { i } else { bi };
                            }
                            *yv = b;
                            *iv = bi;
                        }
                    }
                },
            );
        });
}

/// The gathers of [`max_pool_plane_by_rows`], the same for every plane: for each window column
/// `kj` and output `o`, the slot of the row maxima it reads (`oy·W + c`, or the sentinel slot
/// `OH·W` for a column in the padding); and each output's index before any tap wins.
struct ColGather {
    slots: Vec<u32>,
    init: Vec<u32>,
}

fn col_gather(
    g: &PoolGeom,
    rows: &[(isize, usize, usize)],
    cols: &[(isize, usize, usize)],
) -> ColGather {
    let (ohw, w) = (g.oh * g.ow, g.w);
    let sentinel = (g.oh * w) as u32;
    let mut slots = vec![sentinel; g.kw * ohw];
    let mut init = vec![0u32; ohw];
    for (oy, &(ys, klo, _)) in rows.iter().enumerate() {
        let first = (ys + klo as isize).max(0) as usize;
        for (ox, &(xs, jlo, jhi)) in cols.iter().enumerate() {
            let o = oy * g.ow + ox;
            init[o] = (first * w) as u32 + (xs + jlo as isize).max(0) as u32;
            for kj in jlo..jhi {
                slots[kj * ohw + o] = (oy * w) as u32 + (xs + kj as isize) as u32;
            }
        }
    }
    ColGather { slots, init }
}

/// [`max_pool_fwd`] of one plane without dilation, in two passes: down each output row's
/// window rows, each input column's maximum and its flat index, a vector loop along the row;
/// then across the window's columns for the whole plane at once: each window column's maxima
/// gathered into a run over all outputs, taken in with vector selects. The result is the
/// general loop's, which visits a window row by row: the first maximum (the smallest flat
/// index), or, when there are NaNs, the last NaN (the largest flat index).
#[inline(always)]
fn max_pool_plane_by_rows<T: Float>(
    xp: &[T],
    g: &PoolGeom,
    rows: &[(isize, usize, usize)],
    cg: &ColGather,
    yp: &mut [T],
    ip: &mut [u32],
    scratch: &mut PoolScratch<T>,
) {
    let (w, ohw) = (g.w, g.oh * g.ow);
    let PoolScratch { mv, mi, gv, gi } = scratch;
    for (oy, &(ys, klo, khi)) in rows.iter().enumerate() {
        // (a window with no rows in the image keeps -inf at its first tap, as the general loop)
        let first = (ys + klo as isize).max(0) as usize;
        let (bv, bi) = (&mut mv[oy * w..(oy + 1) * w], &mut mi[oy * w..(oy + 1) * w]);
        bv.iter_mut().for_each(|v| *v = T::neg_infinity());
        for (c, a) in bi.iter_mut().enumerate() {
            *a = (first * w + c) as u32;
        }
        for ki in klo..khi {
            let r = (ys + ki as isize) as usize;
            let row = &xp[r * w..(r + 1) * w];
            let base = (r * w) as u32;
            // branch-free selects, so that the loop vectorises
            for (c, ((b, a), &v)) in bv.iter_mut().zip(bi.iter_mut()).zip(row).enumerate() {
                #[allow(clippy::eq_op)]
                let take = v > *b || v != v;
                *b = if take { v } else { *b };
                *a = if take { base + c as u32 } else { *a };
            }
        }
    }
    // the sentinel: -inf with the largest index never wins over a tap inside the plane
    mv[g.oh * w] = T::neg_infinity();
    mi[g.oh * w] = u32::MAX;
    for ((v, i), &k) in gv.iter_mut().zip(gi.iter_mut()).zip(&cg.slots) {
        *v = mv[k as usize];
        *i = mi[k as usize];
    }
    yp.iter_mut().for_each(|v| *v = T::neg_infinity());
    ip.copy_from_slice(&cg.init);
    for (tv, ti) in gv.chunks_exact(ohw).zip(gi.chunks_exact(ohw)) {
        for ((b, bi), (&v, &i)) in yp.iter_mut().zip(ip.iter_mut()).zip(tv.iter().zip(ti)) {
            // a NaN wins over a number and over an earlier NaN; among numbers the larger, and
            // of equal ones the earlier in the window's row order
            #[allow(clippy::eq_op)]
            let (vn, bn) = (v != v, *b != *b);
            let take = (vn & (!bn | (i >= *bi))) | (v > *b) | ((v == *b) & (i < *bi));
            *b = if take { v } else { *b };
            *bi = if take { i } else { *bi };
        }
    }
}

/// Per-task scratch of [`max_pool_plane_by_rows`]: the row maxima and their indices (with the
/// sentinel slot), and the gathered runs.
struct PoolScratch<T> {
    mv: Vec<T>,
    mi: Vec<u32>,
    gv: Vec<T>,
    gi: Vec<u32>,
}

impl<T: Float> PoolScratch<T> {
    fn new(g: &PoolGeom) -> Self {
        let (m, n) = (g.oh * g.w + 1, g.kw * g.oh * g.ow);
        PoolScratch {
            mv: vec![T::neg_infinity(); m],
            mi: vec![0; m],
            gv: vec![T::neg_infinity(); n],
            gi: vec![0; n],
        }
    }
}

/// Max pooling's values alone (inference: no indices to keep), per output row in two passes:
/// the maximum over the window's input rows, element by element along the whole row (a vector
/// loop), then over the window's columns of that row. The same values as [`max_pool_fwd`],
/// NaN included.
pub fn max_pool_values<T: Float>(x: &[T], g: &PoolGeom) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let rows = tap_ranges(g.oh, g.h, g.kh, g.sh, g.ph, g.dh);
    let cols = tap_ranges(g.ow, g.w, g.kw, g.sw, g.pw, g.dw);
    let mut y = vec![T::zero(); g.planes * ohw];
    if ohw == 0 {
        return y;
    }
    let max = |a: T, b: T| if b > a || b.is_nan() { b } else { a };
    if is_pairs(g) {
        // each output row: the maxima of the two input rows, element by element, then of each
        // pair of those (both vector loops); a NaN anywhere in a window gives NaN, as above
        y.par_chunks_mut(ohw)
            .enumerate()
            .with_min_len(planes_per_task(hw))
            .for_each_init(
                || vec![T::zero(); 2 * g.ow],
                |v, (pl, yp)| {
                    let xp = &x[pl * hw..(pl + 1) * hw];
                    super::simd::with_best(
                        #[inline(always)]
                        || {
                            for (oy, yr) in yp.chunks_exact_mut(g.ow).enumerate() {
                                let r0 = 2 * oy * g.w;
                                let top = &xp[r0..r0 + 2 * g.ow];
                                let bottom = &xp[r0 + g.w..r0 + g.w + 2 * g.ow];
                                for ((m, &a), &b) in v.iter_mut().zip(top).zip(bottom) {
                                    *m = max(a, b);
                                }
                                for (o, pair) in yr.iter_mut().zip(v.chunks_exact(2)) {
                                    *o = max(pair[0], pair[1]);
                                }
                            }
                        },
                    );
                },
            );
        return y;
    }
    y.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(pl, yp)| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            let mut m = vec![T::neg_infinity(); g.w];
            for (oy, &(ys, klo, khi)) in rows.iter().enumerate() {
                super::simd::with_best(
                    #[inline(always)]
                    || {
                        m.iter_mut().for_each(|v| *v = T::neg_infinity());
                        for ki in klo..khi {
                            let r = (ys + (ki * g.dh) as isize) as usize * g.w;
                            for (v, &xv) in m.iter_mut().zip(&xp[r..r + g.w]) {
                                // (a NaN kept stays: nothing compares above it)
                                *v = max(*v, xv);
                            }
                        }
                    },
                );
                for (ox, &(xs, jlo, jhi)) in cols.iter().enumerate() {
                    let mut best = T::neg_infinity();
                    for kj in jlo..jhi {
                        best = max(best, m[(xs + (kj * g.dw) as isize) as usize]);
                    }
                    yp[oy * g.ow + ox] = best;
                }
            }
        });
    y
}

pub fn max_pool_bwd<T: Float>(gy: &[T], idx: &[u32], g: &PoolGeom) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut gx = vec![T::zero(); g.planes * hw];
    gx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(pl, gp)| {
            for (&v, &i) in gy[pl * ohw..(pl + 1) * ohw]
                .iter()
                .zip(&idx[pl * ohw..(pl + 1) * ohw])
            {
                gp[i as usize] += v;
            }
        });
    gx
}

/// The window of output (oy, ox) for average pooling: (y0, y1, x0, x1, divisor).
#[inline]
fn avg_window(
    g: &PoolGeom,
    oy: usize,
    ox: usize,
    count_include_pad: bool,
) -> (usize, usize, usize, usize, usize) {
    let hs = (oy * g.sh) as isize - g.ph as isize;
    let ws = (ox * g.sw) as isize - g.pw as isize;
    let he = (hs + g.kh as isize).min((g.h + g.ph) as isize);
    let we = (ws + g.kw as isize).min((g.w + g.pw) as isize);
    let pool = ((he - hs) * (we - ws)).max(0) as usize;
    let (y0, x0) = (hs.max(0) as usize, ws.max(0) as usize);
    let (y1, x1) = (
        he.min(g.h as isize).max(0) as usize,
        we.min(g.w as isize).max(0) as usize,
    );
    let inside = y1.saturating_sub(y0) * x1.saturating_sub(x0);
    (
        y0,
        y1.max(y0),
        x0,
        x1.max(x0),
        if count_include_pad { pool } else { inside },
    )
}

pub fn avg_pool_fwd<T: Float>(x: &[T], g: &PoolGeom, count_include_pad: bool) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![T::zero(); g.planes * ohw];
    y.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(pl, yp)| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (y0, y1, x0, x1, div) = avg_window(g, oy, ox, count_include_pad);
                    if div == 0 || y0 >= y1 || x0 >= x1 {
                        continue;
                    }
                    let mut s = T::zero();
                    for iy in y0..y1 {
                        s += xp[iy * g.w + x0..iy * g.w + x1].iter().copied().sum::<T>();
                    }
                    yp[oy * g.ow + ox] = s / T::from_usize(div);
                }
            }
        });
    y
}

pub fn avg_pool_bwd<T: Float>(gy: &[T], g: &PoolGeom, count_include_pad: bool) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut gx = vec![T::zero(); g.planes * hw];
    gx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(pl, gp)| {
            let gyp = &gy[pl * ohw..(pl + 1) * ohw];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (y0, y1, x0, x1, div) = avg_window(g, oy, ox, count_include_pad);
                    if div == 0 {
                        continue;
                    }
                    let v = gyp[oy * g.ow + ox] / T::from_usize(div);
                    for iy in y0..y1 {
                        gp[iy * g.w + x0..iy * g.w + x1]
                            .iter_mut()
                            .for_each(|e| *e += v);
                    }
                }
            }
        });
    gx
}

/// Adaptive average pooling: window `[floor(i·H/OH), ceil((i+1)·H/OH))`.
pub fn adaptive_windows(i: usize, inp: usize, out: usize) -> (usize, usize) {
    (i * inp / out, ((i + 1) * inp).div_ceil(out))
}

pub fn adaptive_avg_fwd<T: Float>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<T> {
    let mut y = vec![T::zero(); planes * oh * ow];
    y.par_chunks_mut(oh * ow)
        .enumerate()
        .with_min_len(planes_per_task(h * w))
        .for_each(|(pl, yp)| {
            let xp = &x[pl * h * w..(pl + 1) * h * w];
            for oy in 0..oh {
                let (y0, y1) = adaptive_windows(oy, h, oh);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_windows(ox, w, ow);
                    let mut s = T::zero();
                    for iy in y0..y1 {
                        s += xp[iy * w + x0..iy * w + x1].iter().copied().sum::<T>();
                    }
                    yp[oy * ow + ox] = s / T::from_usize((y1 - y0) * (x1 - x0));
                }
            }
        });
    y
}

pub fn adaptive_avg_bwd<T: Float>(
    gy: &[T],
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<T> {
    let mut gx = vec![T::zero(); planes * h * w];
    gx.par_chunks_mut(h * w)
        .enumerate()
        .with_min_len(planes_per_task(h * w))
        .for_each(|(pl, gp)| {
            for oy in 0..oh {
                let (y0, y1) = adaptive_windows(oy, h, oh);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_windows(ox, w, ow);
                    let v = gy[pl * oh * ow + oy * ow + ox] / T::from_usize((y1 - y0) * (x1 - x0));
                    for iy in y0..y1 {
                        gp[iy * w + x0..iy * w + x1]
                            .iter_mut()
                            .for_each(|e| *e += v);
                    }
                }
            }
        });
    gx
}
