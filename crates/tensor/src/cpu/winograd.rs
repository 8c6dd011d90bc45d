//! Winograd F(2×2, 3×3) convolution (Lavin & Gray, 2015) for stride-1, undilated, ungrouped 3×3
//! convolutions with many channels: each 4×4 input tile and 3×3 filter are transformed so that
//! a 2×2 output tile costs 16 multiplies instead of 36, done as 16 GEMMs over channels.
//!
//! ```text
//!   U[ξ] (O, C)  = (G·g·Gᵀ)[ξ]        weight transform, ξ = 0..16
//!   V[ξ] (C, T)  = (Bᵀ·d·B)[ξ]        input transform, T = tiles of all images
//!   M[ξ] (O, T)  = U[ξ] · V[ξ]        16 GEMMs
//!   y tile (2×2) = Aᵀ · M · A          output transform
//! ```
//! The backward-data pass of such a convolution is again one: the full convolution of dY with the
//! flipped, transposed filters, padding 2 - p.

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use super::SendPtr;
use crate::dtype::Float;

/// Whether the Winograd path applies and pays off: many channels and many output tiles
/// (measured against im2col + GEMM with `aics bench`; below ~512 tiles the GEMMs get too thin).
pub fn eligible(g: &super::conv::Conv2dGeom) -> bool {
    let tiles = g.n * g.oh.div_ceil(2) * g.ow.div_ceil(2);
    g.kh == 3
        && g.kw == 3
        && (g.sh, g.sw, g.dh, g.dw, g.groups) == (1, 1, 1, 1, 1)
        && g.ph == g.pw
        && g.ph <= 2
        && g.c >= 64
        && g.o >= 64
        && tiles >= 512
}

/// `G·g·Gᵀ` for one 3×3 filter → 4×4.
fn filter_transform<T: Float>(g: &[T]) -> [T; 16] {
    let h = T::from_f64(0.5);
    let mut t = [T::zero(); 12]; // G·g (4×3)
    for j in 0..3 {
        let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
        t[j] = a;
        t[3 + j] = h * (a + b + c);
        t[6 + j] = h * (a - b + c);
        t[9 + j] = c;
    }
    let mut u = [T::zero(); 16];
    for i in 0..4 {
        let (a, b, c) = (t[3 * i], t[3 * i + 1], t[3 * i + 2]);
        u[4 * i] = a;
        u[4 * i + 1] = h * (a + b + c);
        u[4 * i + 2] = h * (a - b + c);
        u[4 * i + 3] = c;
    }
    u
}

/// `Bᵀ·d·B` for one 4×4 tile.
#[inline(always)]
fn input_transform<T: Float>(d: &[T; 16]) -> [T; 16] {
    let mut t = [T::zero(); 16];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
        t[j] = d0 - d2;
        t[4 + j] = d1 + d2;
        t[8 + j] = d2 - d1;
        t[12 + j] = d1 - d3;
    }
    let mut v = [T::zero(); 16];
    for i in 0..4 {
        let (a, b, c, e) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        v[4 * i] = a - c;
        v[4 * i + 1] = b + c;
        v[4 * i + 2] = c - b;
        v[4 * i + 3] = b - e;
    }
    v
}

/// `Aᵀ·m·A` for one 4×4 product tile → 2×2.
#[inline(always)]
fn output_transform<T: Float>(m: &[T; 16]) -> [T; 4] {
    let mut t = [T::zero(); 8];
    for j in 0..4 {
        t[j] = m[j] + m[4 + j] + m[8 + j];
        t[4 + j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    [
        t[0] + t[1] + t[2],
        t[1] - t[2] - t[3],
        t[4] + t[5] + t[6],
        t[5] - t[6] - t[7],
    ]
}

/// 3×3 convolution, stride 1, padding `pad`: `x` (N, C, H, W), `wt` (O, C, 3, 3) → (N, O, H+2p-2, W+2p-2).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    wt: &[T],
    o: usize,
    pad: usize,
) -> Vec<T> {
    let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    let tt = n * tiles;
    // U[ξ][o][c]
    let mut u = vec![T::zero(); 16 * o * c];
    let up = SendPtr(u.as_mut_ptr());
    (0..o * c).into_par_iter().for_each(|oc| {
        for (xi, &v) in filter_transform(&wt[oc * 9..oc * 9 + 9]).iter().enumerate() {
            // SAFETY: filter oc alone writes element (ξ, oc).
            unsafe { *up.get().add(xi * o * c + oc) = v };
        }
    });
    // Tiles are processed in blocks small enough that a block's V and M stay in cache:
    // per block, input transform → 16 GEMMs → output transform.
    const TILE_BLOCK: usize = 96;
    let threads = rayon::current_num_threads();
    let nblocks = tt.div_ceil(TILE_BLOCK).div_ceil(threads) * threads;
    let tb = tt.div_ceil(nblocks.min(tt).max(1));
    let nblocks = tt.div_ceil(tb);
    let mut y = vec![T::zero(); n * o * oh * ow];
    let yp = SendPtr(y.as_mut_ptr());
    (0..nblocks).into_par_iter().for_each_init(
        || (vec![T::zero(); 16 * c * tb], vec![T::zero(); 16 * o * tb]),
        |(v, m), bi| {
            let t0 = bi * tb;
            let nt = tb.min(tt - t0);
            // V[ξ][c][t]
            let mut d = [T::zero(); 16];
            for ci in 0..c {
                for tl in 0..nt {
                    let t = t0 + tl;
                    let (ni, r) = (t / tiles, t % tiles);
                    let (ty, tx) = (r / tw, r % tw);
                    let xc = &x[(ni * c + ci) * h * w..(ni * c + ci + 1) * h * w];
                    let (y0, x0) = (
                        (2 * ty) as isize - pad as isize,
                        (2 * tx) as isize - pad as isize,
                    );
                    if y0 >= 0 && x0 >= 0 && y0 + 4 <= h as isize && x0 + 4 <= w as isize {
                        let base = y0 as usize * w + x0 as usize;
                        for i in 0..4 {
                            d[4 * i..4 * i + 4]
                                .copy_from_slice(&xc[base + i * w..base + i * w + 4]);
                        }
                    } else {
                        for i in 0..4 {
                            let iy = y0 + i as isize;
                            for j in 0..4 {
                                let ix = x0 + j as isize;
                                d[4 * i + j] =
                                    if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                        xc[iy as usize * w + ix as usize]
                                    } else {
                                        T::zero()
                                    };
                            }
                        }
                    }
                    for (xi, &val) in input_transform(&d).iter().enumerate() {
                        v[(xi * c + ci) * nt + tl] = val;
                    }
                }
            }
            // M[ξ] = U[ξ] · V[ξ]
            for xi in 0..16 {
                gemm(
                    o,
                    nt,
                    c,
                    Mat::rm(&u[xi * o * c..], c),
                    Mat::rm(&v[xi * c * nt..], nt),
                    &mut m[xi * o * nt..(xi + 1) * o * nt],
                    false,
                    false,
                );
            }
            // output transform
            let mut mt = [T::zero(); 16];
            for oi in 0..o {
                for tl in 0..nt {
                    let t = t0 + tl;
                    let (ni, r) = (t / tiles, t % tiles);
                    let (ty, tx) = (r / tw, r % tw);
                    for (xi, e) in mt.iter_mut().enumerate() {
                        *e = m[(xi * o + oi) * nt + tl];
                    }
                    let res = output_transform(&mt);
                    for i in 0..2 {
                        let yy = 2 * ty + i;
                        if yy >= oh {
                            continue;
                        }
                        for j in 0..2 {
                            let xx = 2 * tx + j;
                            if xx < ow {
                                // SAFETY: each tile, and so each output pixel, belongs to one block.
                                unsafe {
                                    *yp.get().add(((ni * o + oi) * oh + yy) * ow + xx) =
                                        res[2 * i + j]
                                };
                            }
                        }
                    }
                }
            }
        },
    );
    y
}

/// Flip each 3×3 filter and swap its in/out channels: (O, C, 3, 3) → (C, O, 3, 3). The
/// backward-data pass is the convolution of dY with these.
pub fn flip_transpose<T: Float>(wt: &[T], o: usize, c: usize) -> Vec<T> {
    let mut f = vec![T::zero(); wt.len()];
    for oi in 0..o {
        for ci in 0..c {
            for k in 0..9 {
                f[(ci * o + oi) * 9 + (8 - k)] = wt[(oi * c + ci) * 9 + k];
            }
        }
    }
    f
}
