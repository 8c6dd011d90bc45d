//! Depthwise 2-D convolution (groups = C_in = C_out, MobileNet's 3×3 layers) as direct loops:
//! each channel is convolved with its own K×K filter, so there is no reduction over channels and
//! im2col + GEMM would be a matrix product with a single row — all memory traffic, no reuse.
//! Here every (sample, channel) plane is one task, and for each filter tap the kernels walk
//! whole output rows, which are contiguous in stride 1 and vectorise. The general im2col
//! kernels in `conv.rs` (and their naive reference) are what these are tested against.

use rayon::prelude::*;

use super::conv::Conv2dGeom;
use crate::dtype::Float;

/// Whether `g` is a depthwise convolution these kernels handle.
pub fn eligible(g: &Conv2dGeom) -> bool {
    g.groups > 1 && g.groups == g.c && g.o == g.c
}

/// Output positions `lo..hi` whose input column `ow·s + k·d − p` lies in `0..w`.
fn valid_range(w: usize, ow: usize, s: usize, k: usize, d: usize, p: usize) -> (usize, usize) {
    let off = k * d; // input column = ow·s + off − p
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    // largest ow with ow·s + off − p ≤ w − 1
    let hi = if w + p < off + 1 {
        0
    } else {
        ((w - 1 + p - off) / s + 1).min(ow)
    };
    (lo.min(hi), hi)
}

/// Every filter tap of one plane, row by row: `f(oh, ih, tap, lo, hi, first)` for output row
/// `oh`, the input row `ih` it reads through tap `tap = kh·KW + kw`, and the output columns
/// `lo..hi` whose input columns `first, first + s, …` are inside the image.
#[inline(always)]
fn for_each_tap(g: &Conv2dGeom, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
    for oh in 0..g.oh {
        for kh in 0..g.kh {
            let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
            if ih < 0 || ih >= g.h as isize {
                continue;
            }
            for kw in 0..g.kw {
                let (lo, hi) = valid_range(g.w, g.ow, g.sw, kw, g.dw, g.pw);
                if lo < hi {
                    let first = lo * g.sw + kw * g.dw - g.pw;
                    f(oh, ih as usize, kh * g.kw + kw, lo, hi, first);
                }
            }
        }
    }
}

/// Forward: `x` (N, C, H, W), `wt` (C, 1, KH, KW) → `y` (N, C, OH, OW), no bias.
pub fn fwd<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), wt.len());
    assert!(eligible(g), "depthwise conv: not eligible for {g:?}");
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut y = vec![T::zero(); g.n * g.c * ohw];
    // with a column stride s, each input row is first split into its s phases (columns
    // q, q + s, q + 2s, …) so that every tap reads a contiguous run
    let s = g.sw;
    let phase_start: Vec<usize> = (0..s)
        .scan(0, |acc, q| {
            let start = *acc;
            *acc += (g.w + s - 1 - q) / s;
            Some(start)
        })
        .collect();
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
        let c = plane % g.c;
        let xp = &x[plane * hw..(plane + 1) * hw];
        let wc = &wt[c * kk..(c + 1) * kk];
        let split: Vec<T> = if s == 1 {
            Vec::new()
        } else {
            let mut v = Vec::with_capacity(hw);
            for row in xp.chunks_exact(g.w) {
                for q in 0..s {
                    v.extend(row.iter().skip(q).step_by(s));
                }
            }
            v
        };
        // the row loops compiled for this CPU's widest vectors
        super::simd::with_best(
            #[inline(always)]
            || {
                for_each_tap(g, |oh, ih, tap, lo, hi, first| {
                    let wv = wc[tap];
                    let yr = &mut yp[oh * g.ow + lo..oh * g.ow + hi];
                    let xr = if s == 1 {
                        &xp[ih * g.w + first..ih * g.w + first + (hi - lo)]
                    } else {
                        let at = ih * g.w + phase_start[first % s] + first / s;
                        &split[at..at + (hi - lo)]
                    };
                    for (o, &xv) in yr.iter_mut().zip(xr) {
                        *o += wv * xv;
                    }
                })
            },
        );
    });
    y
}

/// Gradient with respect to the input: each tap scatters `w·dy` back to the input positions
/// it read (per plane, so no two tasks write the same element).
pub fn bwd_data<T: Float>(dy: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(g.n * g.c * g.hw(), wt.len());
    assert!(
        eligible(g) && dy.len() == g.n * g.o * g.ohw(),
        "depthwise conv backward: {g:?}"
    );
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dx = vec![T::zero(); g.n * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        let c = plane % g.c;
        let dyp = &dy[plane * ohw..(plane + 1) * ohw];
        let wc = &wt[c * kk..(c + 1) * kk];
        super::simd::with_best(
            #[inline(always)]
            || {
                for_each_tap(g, |oh, ih, tap, lo, hi, first| {
                    let (wv, dyr) = (wc[tap], &dyp[oh * g.ow + lo..oh * g.ow + hi]);
                    let dxr = &mut dxp[ih * g.w..(ih + 1) * g.w];
                    if g.sw == 1 {
                        for (d, &gv) in dxr[first..first + (hi - lo)].iter_mut().zip(dyr) {
                            *d += wv * gv;
                        }
                    } else {
                        for (i, &gv) in dyr.iter().enumerate() {
                            dxr[first + i * g.sw] += wv * gv;
                        }
                    }
                })
            },
        );
    });
    dx
}

/// Gradient with respect to the filters: `dw[c, kh, kw] = Σ_n Σ_(oh, ow) dy · x`, one task
/// per channel summing its samples in order (deterministic).
pub fn bwd_weight<T: Float>(x: &[T], dy: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), g.o * g.ckk());
    assert!(
        eligible(g) && dy.len() == g.n * g.o * g.ohw(),
        "depthwise conv backward: {g:?}"
    );
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dw = vec![T::zero(); g.c * kk];
    dw.par_chunks_mut(kk).enumerate().for_each(|(c, dwc)| {
        for n in 0..g.n {
            let plane = n * g.c + c;
            let xp = &x[plane * hw..(plane + 1) * hw];
            let dyp = &dy[plane * ohw..(plane + 1) * ohw];
            super::simd::with_best(
                #[inline(always)]
                || {
                    for_each_tap(g, |oh, ih, tap, lo, hi, first| {
                        let (xr, dyr) = (
                            &xp[ih * g.w..(ih + 1) * g.w],
                            &dyp[oh * g.ow + lo..oh * g.ow + hi],
                        );
                        dwc[tap] += if g.sw == 1 {
                            dot(dyr, &xr[first..first + (hi - lo)])
                        } else {
                            dyr.iter()
                                .enumerate()
                                .fold(T::zero(), |s, (i, &gv)| s + gv * xr[first + i * g.sw])
                        };
                    })
                },
            );
        }
    });
    dw
}

/// `Σ a·b` in 16 interleaved partial sums (a fixed order, so deterministic), which vectorise.
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    const L: usize = 16;
    let mut acc = [T::zero(); L];
    let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ar.iter().zip(br).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for v in acc {
        s += v;
    }
    s
}
