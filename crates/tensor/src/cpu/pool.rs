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
    let rows = tap_ranges(g.oh, g.h, g.kh, g.sh, g.ph, g.dh);
    let cols = tap_ranges(g.ow, g.w, g.kw, g.sw, g.pw, g.dw);
    let mut y = vec![T::zero(); g.planes * ohw];
    let mut idx = vec![0u32; g.planes * ohw];
    // the common 2×2, stride-2 window with no padding: two input rows per output row
    let fast2x2 = (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw) == (2, 2, 2, 2, 0, 0, 1, 1)
        && 2 * g.oh <= g.h
        && 2 * g.ow <= g.w;
    let by_rows = g.dh == 1 && g.dw == 1;
    y.par_chunks_mut(ohw)
        .zip(idx.par_chunks_mut(ohw))
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each_init(
            // each task's column maxima and their rows, for `max_pool_plane_by_rows`
            || (vec![T::neg_infinity(); g.w], vec![0u32; g.w]),
            |(best, at), (pl, (yp, ip))| {
                let xp = &x[pl * hw..(pl + 1) * hw];
                if fast2x2 {
                    max_pool_2x2_plane(xp, g, yp, ip);
                    return;
                }
                if by_rows {
                    // the whole plane under the widest vectors (small planes have short rows)
                    super::simd::with_best(
                        #[inline(always)]
                        || max_pool_plane_by_rows(xp, g, &rows, &cols, yp, ip, best, at),
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

/// [`max_pool_fwd`] of one plane without dilation, in two passes per output row: down the
/// window's rows, each input column's maximum and the row it is in; then across the window's
/// columns. The result is the general loop's, which visits a window row by row: the first
/// maximum (smallest row, then smallest column), or, when there are NaNs, the last NaN
/// (largest row, then largest column). `best` and `at` are scratch of W elements.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn max_pool_plane_by_rows<T: Float>(
    xp: &[T],
    g: &PoolGeom,
    rows: &[(isize, usize, usize)],
    cols: &[(isize, usize, usize)],
    yp: &mut [T],
    ip: &mut [u32],
    best: &mut [T],
    at: &mut [u32],
) {
    let w = g.w;
    for (oy, &(ys, klo, khi)) in rows.iter().enumerate() {
        // (a window with no rows in the image keeps -inf at its first tap, as the general loop)
        let first = (ys + klo as isize).max(0) as usize;
        best.iter_mut().for_each(|v| *v = T::neg_infinity());
        at.iter_mut().for_each(|r| *r = first as u32);
        for ki in klo..khi {
            let r = (ys + ki as isize) as usize;
            let row = &xp[r * w..(r + 1) * w];
            // branch-free selects, so that the loop vectorises
            for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(row) {
                #[allow(clippy::eq_op)]
                let take = v > *b || v != v;
                *b = if take { v } else { *b };
                *a = if take { r as u32 } else { *a };
            }
        }
        for (ox, &(xs, jlo, jhi)) in cols.iter().enumerate() {
            let c0 = (xs + jlo as isize).max(0) as usize;
            let (mut bv, mut br, mut bc) = (T::neg_infinity(), first, c0);
            for kj in jlo..jhi {
                let c = (xs + kj as isize) as usize;
                let (v, r) = (best[c], at[c] as usize);
                let take = if v.is_nan() {
                    !bv.is_nan() || r >= br
                } else {
                    !bv.is_nan() && (v > bv || (v == bv && r < br))
                };
                if take {
                    (bv, br, bc) = (v, r, c);
                }
            }
            yp[oy * g.ow + ox] = bv;
            ip[oy * g.ow + ox] = (br * w + bc) as u32;
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

/// [`max_pool_fwd`] of one plane for a 2×2 window, stride 2, no padding (windows inside the
/// plane), visiting each window's taps in the same order as the general loop.
fn max_pool_2x2_plane<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ip: &mut [u32]) {
    let w = g.w;
    for oy in 0..g.oh {
        let r0 = &xp[2 * oy * w..(2 * oy + 1) * w];
        let r1 = &xp[(2 * oy + 1) * w..(2 * oy + 2) * w];
        let (yr, ir) = (
            &mut yp[oy * g.ow..(oy + 1) * g.ow],
            &mut ip[oy * g.ow..(oy + 1) * g.ow],
        );
        for ox in 0..g.ow {
            let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
            let (mut best, mut bi) = (a, 0);
            if b > best || b.is_nan() {
                (best, bi) = (b, 1);
            }
            if c > best || c.is_nan() {
                (best, bi) = (c, w);
            }
            if d > best || d.is_nan() {
                (best, bi) = (d, w + 1);
            }
            // a NaN first tap stays unless a later NaN replaces it, as in the general loop
            yr[ox] = best;
            ir[ox] = (2 * oy * w + 2 * ox + bi) as u32;
        }
    }
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
