//! Direct convolution for stride-1, undilated, ungrouped convolutions with large kernels and few
//! input or output channels, such as the 9×9 convolutions at both ends of an image-to-image
//! network. There im2col would copy the input KH·KW times over (81× for 9×9) to feed a GEMM with
//! only a few rows or a short inner dimension; instead each output row is accumulated in
//! registers: `OB` output channels × `S` segments of `L` pixels, one weight broadcast per
//! (channel, tap) and output channel, one input load per tap and segment.

use rayon::prelude::*;

use super::conv::Conv2dGeom;
use super::{copy_padded, SendPtr};
use crate::dtype::Float;

/// Pixels per segment (one 512-bit vector of f32).
const L: usize = 16;
/// Segments per chunk of an output row.
const S: usize = 4;

/// Whether the direct kernel applies and pays off (measured against im2col + GEMM with
/// `aics bench`'s fast_style_512: a 9×9 3 → 32 and a 9×9 32 → 3 convolution at 512²; and on
/// YOLOv3-tiny's first two 3×3 layers, 3 → 16 at 416² and 16 → 32 at 208²).
pub fn eligible(g: &Conv2dGeom) -> bool {
    (g.sh, g.sw, g.dh, g.dw, g.groups) == (1, 1, 1, 1, 1)
        && ((g.kh * g.kw >= 25 && (g.o <= 4 || g.c <= 4))
            || (g.kh * g.kw >= 9 && g.c <= 16 && g.ohw() >= 128 * 128))
}

/// One chunk of L·S pixels from `x0` of output row `oy`, for one block of OB output channels:
/// Σ over channels and taps of weight × shifted input row, held in registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk_acc<T: Float, const OB: usize, const FMA: bool>(
    planes: &[T],
    wblk: &[T],
    g: &Conv2dGeom,
    oy: usize,
    x0: usize,
    hp: usize,
    wp: usize,
) -> [[T; L * S]; OB] {
    let (kh, kw, kk) = (g.kh, g.kw, g.kk());
    let chunk = L * S;
    let mut acc = [[T::zero(); L * S]; OB];
    for ci in 0..g.c {
        let plane = &planes[ci * hp * wp..(ci + 1) * hp * wp];
        let wc = &wblk[ci * kk * OB..(ci + 1) * kk * OB];
        for ki in 0..kh {
            let xr = &plane[(oy + ki) * wp + x0..][..chunk + kw - 1];
            let wr = &wc[ki * kw * OB..(ki + 1) * kw * OB];
            for (kj, wv) in wr.chunks_exact(OB).enumerate() {
                let xs: &[T; L * S] = xr[kj..kj + chunk].try_into().unwrap();
                for (a, &w) in acc.iter_mut().zip(wv) {
                    for (v, &x) in a.iter_mut().zip(xs) {
                        *v = if FMA { w.mul_add(x, *v) } else { *v + w * x };
                    }
                }
            }
        }
    }
    acc
}

/// The forward pass: `x` (N, C, H, W), `wt` (O, C, KH, KW) → (N, O, OH, OW).
pub fn fwd<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), wt.len());
    assert!(eligible(g), "direct conv: not eligible for {g:?}");
    if !g.o.is_multiple_of(4) && g.o.is_multiple_of(3) {
        fwd_ob::<T, 3>(x, wt, g)
    } else {
        fwd_ob::<T, 4>(x, wt, g)
    }
}

fn fwd_ob<T: Float, const OB: usize>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (kh, kw, kk) = (g.kh, g.kw, g.kk());
    let chunk = L * S;
    // The input, zero-padded and widened so that every chunk of every output row reads inside
    // its row: (OH + KH - 1) rows of OWp + KW - 1.
    let owp = g.ow.div_ceil(chunk) * chunk;
    let (hp, wp) = (g.oh + kh - 1, owp + kw - 1);
    let mut xp = vec![T::zero(); g.n * g.c * hp * wp];
    xp.par_chunks_mut(hp * wp)
        .zip(x.par_chunks(g.hw().max(1)))
        .for_each(|(plane, src)| {
            for (r, row) in plane.chunks_exact_mut(wp).enumerate() {
                let iy = r as isize - g.ph as isize;
                if iy >= 0 && (iy as usize) < g.h {
                    let iy = iy as usize;
                    copy_padded(&src[iy * g.w..(iy + 1) * g.w], -(g.pw as isize), row);
                }
            }
        });
    // Weights by block of OB output channels: [block][c][tap][OB], zero past O.
    let blocks = g.o.div_ceil(OB);
    let mut wb = vec![T::zero(); blocks * g.c * kk * OB];
    for o in 0..g.o {
        for ci in 0..g.c {
            for t in 0..kk {
                wb[(((o / OB) * g.c + ci) * kk + t) * OB + o % OB] = wt[(o * g.c + ci) * kk + t];
            }
        }
    }
    let mut y = vec![T::zero(); g.n * g.o * g.ohw()];
    let yp = SendPtr(y.as_mut_ptr());
    let fma = super::simd::has_fma();
    (0..g.n * g.oh * blocks).into_par_iter().for_each(|task| {
        let (row, bi) = (task / blocks, task % blocks);
        let (ni, oy) = (row / g.oh, row % g.oh);
        let o0 = bi * OB;
        let nob = OB.min(g.o - o0);
        let wblk = &wb[bi * g.c * kk * OB..(bi + 1) * g.c * kk * OB];
        let planes = &xp[ni * g.c * hp * wp..(ni + 1) * g.c * hp * wp];
        for x0 in (0..g.ow).step_by(chunk) {
            let acc = super::simd::with_best(
                #[inline(always)]
                || {
                    if fma {
                        chunk_acc::<T, OB, true>(planes, wblk, g, oy, x0, hp, wp)
                    } else {
                        chunk_acc::<T, OB, false>(planes, wblk, g, oy, x0, hp, wp)
                    }
                },
            );
            let cols = chunk.min(g.ow - x0);
            for (b, a) in acc.iter().enumerate().take(nob) {
                let at = ((ni * g.o + o0 + b) * g.oh + oy) * g.ow + x0;
                // SAFETY: this task alone writes row oy of output channels o0..o0+nob of image
                // ni, and at + cols ≤ its end.
                unsafe {
                    std::ptr::copy_nonoverlapping(a.as_ptr(), yp.get().add(at), cols);
                }
            }
        }
    });
    y
}
