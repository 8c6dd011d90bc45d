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

/// Forward: `x` (N, C, H, W), `wt` (C, 1, KH, KW) → `y` (N, C, OH, OW), no bias.
pub fn fwd<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut y = vec![T::zero(); g.n * g.c * ohw];
    y.par_chunks_mut(ohw).enumerate().for_each(|(plane, yp)| {
        let c = plane % g.c;
        let xp = &x[plane * hw..(plane + 1) * hw];
        let wc = &wt[c * kk..(c + 1) * kk];
        for oh in 0..g.oh {
            let yr = &mut yp[oh * g.ow..(oh + 1) * g.ow];
            for kh in 0..g.kh {
                let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
                if ih < 0 || ih >= g.h as isize {
                    continue;
                }
                let xr = &xp[ih as usize * g.w..(ih as usize + 1) * g.w];
                for kw in 0..g.kw {
                    let wv = wc[kh * g.kw + kw];
                    let (lo, hi) = valid_range(g.w, g.ow, g.sw, kw, g.dw, g.pw);
                    if lo >= hi {
                        continue;
                    }
                    let first = lo * g.sw + kw * g.dw - g.pw;
                    if g.sw == 1 {
                        let xs = &xr[first..first + (hi - lo)];
                        for (o, &xv) in yr[lo..hi].iter_mut().zip(xs) {
                            *o += wv * xv;
                        }
                    } else {
                        for (i, o) in yr[lo..hi].iter_mut().enumerate() {
                            *o += wv * xr[first + i * g.sw];
                        }
                    }
                }
            }
        }
    });
    y
}

/// Gradient with respect to the input: each tap scatters `w·dy` back to the input positions
/// it read (per plane, so no two tasks write the same element).
pub fn bwd_data<T: Float>(dy: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dx = vec![T::zero(); g.n * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        let c = plane % g.c;
        let dyp = &dy[plane * ohw..(plane + 1) * ohw];
        let wc = &wt[c * kk..(c + 1) * kk];
        for oh in 0..g.oh {
            let dyr = &dyp[oh * g.ow..(oh + 1) * g.ow];
            for kh in 0..g.kh {
                let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
                if ih < 0 || ih >= g.h as isize {
                    continue;
                }
                let dxr = &mut dxp[ih as usize * g.w..(ih as usize + 1) * g.w];
                for kw in 0..g.kw {
                    let wv = wc[kh * g.kw + kw];
                    let (lo, hi) = valid_range(g.w, g.ow, g.sw, kw, g.dw, g.pw);
                    if lo >= hi {
                        continue;
                    }
                    let first = lo * g.sw + kw * g.dw - g.pw;
                    if g.sw == 1 {
                        let xs = &mut dxr[first..first + (hi - lo)];
                        for (d, &gv) in xs.iter_mut().zip(&dyr[lo..hi]) {
                            *d += wv * gv;
                        }
                    } else {
                        for (i, &gv) in dyr[lo..hi].iter().enumerate() {
                            dxr[first + i * g.sw] += wv * gv;
                        }
                    }
                }
            }
        }
    });
    dx
}

/// Gradient with respect to the filters: `dw[c, kh, kw] = Σ_n Σ_(oh, ow) dy · x`, one task
/// per channel summing its samples in order (deterministic).
pub fn bwd_weight<T: Float>(x: &[T], dy: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dw = vec![T::zero(); g.c * kk];
    dw.par_chunks_mut(kk).enumerate().for_each(|(c, dwc)| {
        for n in 0..g.n {
            let plane = n * g.c + c;
            let xp = &x[plane * hw..(plane + 1) * hw];
            let dyp = &dy[plane * ohw..(plane + 1) * ohw];
            for kh in 0..g.kh {
                for kw in 0..g.kw {
                    let (lo, hi) = valid_range(g.w, g.ow, g.sw, kw, g.dw, g.pw);
                    if lo >= hi {
                        continue;
                    }
                    let first = lo * g.sw + kw * g.dw - g.pw;
                    let mut acc = T::zero();
                    for oh in 0..g.oh {
                        let ih = (oh * g.sh + kh * g.dh) as isize - g.ph as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let xr = &xp[ih as usize * g.w..(ih as usize + 1) * g.w];
                        let dyr = &dyp[oh * g.ow + lo..oh * g.ow + hi];
                        if g.sw == 1 {
                            acc += dyr
                                .iter()
                                .zip(&xr[first..first + (hi - lo)])
                                .fold(T::zero(), |s, (&a, &b)| s + a * b);
                        } else {
                            for (i, &gv) in dyr.iter().enumerate() {
                                acc += gv * xr[first + i * g.sw];
                            }
                        }
                    }
                    dwc[kh * g.kw + kw] += acc;
                }
            }
        }
    });
    dw
}
