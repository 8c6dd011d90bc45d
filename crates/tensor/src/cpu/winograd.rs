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
use super::{copy_padded, SendPtr};
use crate::dtype::Float;

/// Whether the Winograd path applies and pays off: many channels and many output tiles
/// (measured against im2col + GEMM with `aics bench` and the `convlayers` example; below ~512
/// tiles the GEMMs get too thin, unless the channels are many: from 256×256 channels, 64 tiles
/// are enough when all tiles go through each GEMM at once).
pub fn eligible(g: &super::conv::Conv2dGeom) -> bool {
    let tiles = g.n * g.oh.div_ceil(2) * g.ow.div_ceil(2);
    g.kh == 3
        && g.kw == 3
        && (g.sh, g.sw, g.dh, g.dw, g.groups) == (1, 1, 1, 1, 1)
        && g.ph == g.pw
        && g.ph <= 2
        && g.c >= 64
        && g.o >= 64
        && (tiles >= 512 || (tiles >= 64 && by_xi(tiles, g.c, g.o)))
}

/// Whether to run all tiles through each of the 16 GEMMs at once instead of in cache-sized
/// blocks: when the tiles are few and the channels many, the transformed filters U (16·O·C)
/// outweigh a block's tiles, and reading them once per block would dominate.
fn by_xi(tiles: usize, c: usize, o: usize) -> bool {
    tiles <= 1024 && c * o >= 256 * 256
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
    let u = transformed_filters(o, c, |oi, ci| {
        std::array::from_fn(|k| wt[(oi * c + ci) * 9 + k])
    });
    conv3x3_u(x, n, c, h, w, &u, o, pad)
}

/// The backward-data pass of a Winograd-eligible convolution with padding `pad`: `dy`
/// (N, O, OH, OW) and the forward's `wt` (O, C, 3, 3) → dX (N, C, H, W). The same as
/// `conv3x3(dy, n, o, oh, ow, &flip_transpose(wt, o, c), c, 2 - pad)`, with the flipped filters
/// transformed straight from `wt`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_bwd_data<T: Float>(
    dy: &[T],
    n: usize,
    o: usize,
    oh: usize,
    ow: usize,
    wt: &[T],
    c: usize,
    pad: usize,
) -> Vec<T> {
    // filter (ci ← oi) of the full convolution is wt[oi][ci] turned by 180°
    let u = transformed_filters(c, o, |ci, oi| {
        std::array::from_fn(|k| wt[(oi * c + ci) * 9 + 8 - k])
    });
    conv3x3_u(dy, n, o, oh, ow, &u, c, 2 - pad)
}

/// U[ξ][o][c] = (G·g·Gᵀ)[ξ] for the 3×3 filters `filter(o, c)`, built row by row in parallel.
fn transformed_filters<T: Float>(
    o: usize,
    c: usize,
    filter: impl Fn(usize, usize) -> [T; 9] + Sync,
) -> Vec<T> {
    let mut u = vec![T::zero(); 16 * o * c];
    let up = SendPtr(u.as_mut_ptr());
    (0..o).into_par_iter().for_each(|oi| {
        for ci in 0..c {
            for (xi, &v) in filter_transform(&filter(oi, ci)).iter().enumerate() {
                // SAFETY: output channel oi alone writes the elements (ξ, oi, ·).
                unsafe { *up.get().add((xi * o + oi) * c + ci) = v };
            }
        }
    });
    u
}

/// [`conv3x3`] with the filters already transformed: `u` is U[ξ][o][c].
#[allow(clippy::too_many_arguments)]
fn conv3x3_u<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    u: &[T],
    o: usize,
    pad: usize,
) -> Vec<T> {
    let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    let tt = n * tiles;
    let geo = Tiles {
        c,
        h,
        w,
        o,
        oh,
        ow,
        tw,
        tiles,
        pad,
    };
    let mut y = vec![T::zero(); n * o * oh * ow];
    let yp = SendPtr(y.as_mut_ptr());
    if by_xi(tt, c, o) {
        // Few tiles, many channels: all tiles at once, so that each U[ξ] is read once.
        // V[c][ξ][t] by channel → the 16 GEMMs M[ξ][o][t] side by side → outputs by channel.
        let mut v = vec![T::zero(); 16 * c * tt];
        v.par_chunks_mut(16 * tt).enumerate().for_each_init(
            || vec![T::zero(); 8 * (2 * tw + 2)],
            |rows, (ci, vc)| {
                for (tl, len) in geo.runs(0, tt) {
                    geo.input_run(x, ci, tl, len, rows, vc, (tt, 0), tl);
                }
            },
        );
        let mut m = vec![T::zero(); 16 * o * tt];
        m.par_chunks_mut(o * tt).enumerate().for_each(|(xi, mx)| {
            let vx = Mat {
                data: &v[xi * tt..],
                rs: 16 * tt,
                cs: 1,
            };
            gemm(o, tt, c, Mat::rm(&u[xi * o * c..], c), vx, mx, false, false);
        });
        drop(v);
        (0..o).into_par_iter().for_each_init(
            || vec![T::zero(); 12 * tw],
            |rows, oi| {
                for (tl, len) in geo.runs(0, tt) {
                    // SAFETY: output channel oi's planes are written by this task alone.
                    unsafe { geo.output_run(&m, oi, tl, len, tt, tl, rows, &yp) };
                }
            },
        );
        return y;
    }
    // Tiles are processed in blocks small enough that a block's V and M stay in cache:
    // per block, input transform → 16 GEMMs → output transform.
    const TILE_BLOCK: usize = 96;
    let threads = rayon::current_num_threads();
    let nblocks = tt.div_ceil(TILE_BLOCK).div_ceil(threads) * threads;
    let tb = tt.div_ceil(nblocks.min(tt).max(1));
    let nblocks = tt.div_ceil(tb);
    (0..nblocks).into_par_iter().for_each_init(
        || {
            (
                vec![T::zero(); 16 * c * tb],
                vec![T::zero(); 16 * o * tb],
                vec![T::zero(); 16 * tb + 16], // input: 8·(2·tb + 2), output: 12·tb
            )
        },
        |(v, m, rows), bi| {
            let t0 = bi * tb;
            let nt = tb.min(tt - t0);
            // V[ξ][c][t]
            for (tl, len) in geo.runs(t0, nt) {
                for ci in 0..c {
                    geo.input_run(x, ci, t0 + tl, len, rows, v, (c * nt, nt), tl);
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
            for (tl, len) in geo.runs(t0, nt) {
                for oi in 0..o {
                    // SAFETY: each tile, and so each output pixel, belongs to one block.
                    unsafe { geo.output_run(m, oi, t0 + tl, len, nt, tl, rows, &yp) };
                }
            }
        },
    );
    y
}

/// Tile geometry of one [`conv3x3`] call, with the transforms of a run of tiles that share
/// one image and one tile row (so that their input rows and output rows are contiguous, and
/// the transforms run along them as vector loops).
struct Tiles {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    tw: usize,
    tiles: usize,
    pad: usize,
}

impl Tiles {
    /// The runs of the tiles `t0..t0+nt`, as `(offset in the block, length)`.
    fn runs(&self, t0: usize, nt: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut tl = 0;
        std::iter::from_fn(move || {
            if tl >= nt {
                return None;
            }
            let tx = (t0 + tl) % self.tiles % self.tw;
            let len = (self.tw - tx).min(nt - tl);
            let r = (tl, len);
            tl += len;
            Some(r)
        })
    }

    /// Input transform `Bᵀ·d·B` of channel `ci` for the `len` tiles from tile `t` (in one tile
    /// row): element ξ of tile i goes to `v[ξ·sx + ci·sc + tl + i]`. `rows` is scratch space of
    /// at least 8·(2·len + 2) elements.
    #[allow(clippy::too_many_arguments)]
    fn input_run<T: Float>(
        &self,
        x: &[T],
        ci: usize,
        t: usize,
        len: usize,
        rows: &mut [T],
        v: &mut [T],
        (sx, sc): (usize, usize),
        tl: usize,
    ) {
        let (h, w) = (self.h, self.w);
        let (ni, r) = (t / self.tiles, t % self.tiles);
        let (ty, tx) = (r / self.tw, r % self.tw);
        let xc = &x[(ni * self.c + ci) * h * w..(ni * self.c + ci + 1) * h * w];
        // the four input rows under the run, columns 2·tx - pad .. + 2·len + 2, zero-padded
        let width = 2 * len + 2;
        let x0 = (2 * tx) as isize - self.pad as isize;
        let (d, r) = rows.split_at_mut(4 * width);
        for i in 0..4 {
            let row = &mut d[i * width..(i + 1) * width];
            let iy = (2 * ty + i) as isize - self.pad as isize;
            if iy < 0 || iy >= h as isize {
                row.fill(T::zero());
                continue;
            }
            copy_padded(&xc[iy as usize * w..(iy as usize + 1) * w], x0, row);
        }
        // Bᵀ·d down the columns: r_k are combinations of the four rows
        {
            let (d0, rest) = d.split_at(width);
            let (d1, rest) = rest.split_at(width);
            let (d2, d3) = rest.split_at(width);
            let (r0, rest) = r.split_at_mut(width);
            let (r1, rest) = rest.split_at_mut(width);
            let (r2, r3) = rest.split_at_mut(width);
            for j in 0..width {
                r0[j] = d0[j] - d2[j];
                r1[j] = d1[j] + d2[j];
                r2[j] = d2[j] - d1[j];
                r3[j] = d1[j] - d3[j];
            }
        }
        // ·B along each row: tile i covers columns 2i..2i+4
        for k in 0..4 {
            let rk = &r[k * width..(k + 1) * width];
            let base = |j: usize| (4 * k + j) * sx + ci * sc + tl;
            let (v0, v1, v2, v3) = (base(0), base(1), base(2), base(3));
            for i in 0..len {
                let (a, b, cc, e) = (rk[2 * i], rk[2 * i + 1], rk[2 * i + 2], rk[2 * i + 3]);
                v[v0 + i] = a - cc;
                v[v1 + i] = b + cc;
                v[v2 + i] = cc - b;
                v[v3 + i] = b - e;
            }
        }
    }

    /// Output transform `Aᵀ·m·A` of output channel `oi` for the `len` tiles from tile `t` (one
    /// tile row), read from columns `tl..tl+len` of `m` (16 × O rows of stride `nt`), written
    /// into `y`. `rows` is scratch space of at least 12·len elements.
    ///
    /// # Safety
    /// `y` must hold N·O·OH·OW elements, and no other thread may write these tiles' pixels.
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_run<T: Float>(
        &self,
        m: &[T],
        oi: usize,
        t: usize,
        len: usize,
        nt: usize,
        tl: usize,
        rows: &mut [T],
        y: &SendPtr<T>,
    ) {
        let (ni, r) = (t / self.tiles, t % self.tiles);
        let (ty, tx) = (r / self.tw, r % self.tw);
        let q: [&[T]; 16] = std::array::from_fn(|xi| &m[(xi * self.o + oi) * nt + tl..][..len]);
        // Aᵀ·m down the columns (vector loops over the run's tiles), then ·A along the rows
        let (sd, out) = rows.split_at_mut(8 * len);
        let (s, d) = sd.split_at_mut(4 * len);
        for j in 0..4 {
            let (a, b, c, e) = (q[j], q[4 + j], q[8 + j], q[12 + j]);
            let sj = &mut s[j * len..(j + 1) * len];
            let dj = &mut d[j * len..(j + 1) * len];
            for i in 0..len {
                sj[i] = a[i] + b[i] + c[i];
                dj[i] = b[i] - c[i] - e[i];
            }
        }
        let (out0, out1) = out[..4 * len].split_at_mut(2 * len);
        for (src, dst) in [(&*s, out0), (&*d, out1)] {
            let (t0, rest) = src.split_at(len);
            let (t1, rest) = rest.split_at(len);
            let (t2, t3) = rest.split_at(len);
            for i in 0..len {
                dst[2 * i] = t0[i] + t1[i] + t2[i];
                dst[2 * i + 1] = t1[i] - t2[i] - t3[i];
            }
        }
        let (out0, out1) = out[..4 * len].split_at(2 * len);
        let (oh, ow) = (self.oh, self.ow);
        let plane = (ni * self.o + oi) * oh * ow;
        let x0 = 2 * tx;
        let cols = (2 * len).min(ow - x0); // the last tile of a row may stick out
        for (i, out) in [out0, out1].into_iter().enumerate() {
            let yy = 2 * ty + i;
            if yy < oh {
                // SAFETY: row yy of this plane, columns x0..x0+cols, lies inside y (caller).
                let dst = std::slice::from_raw_parts_mut(y.get().add(plane + yy * ow + x0), cols);
                dst.copy_from_slice(&out[..cols]);
            }
        }
    }
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
