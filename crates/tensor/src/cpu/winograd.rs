//! Winograd convolution F(m×m, 3×3) (Lavin & Gray, 2015) for stride-1, undilated, ungrouped 3×3
//! convolutions with many channels, with output tiles of m = 2 or m = 4 pixels a side. Each
//! (m+2)×(m+2) input tile and each 3×3 filter is transformed so that an m×m output tile costs
//! (m+2)² multiplies instead of 9·m² (16 instead of 36 for m = 2, 36 instead of 144 for m = 4),
//! done as (m+2)² GEMMs over channels.
//!
//! ```text
//!   U[ξ] (O, C)  = (G·g·Gᵀ)[ξ]        weight transform, ξ = 0..(m+2)²
//!   V[ξ] (C, T)  = (Bᵀ·d·B)[ξ]        input transform, T = tiles of all images
//!   M[ξ] (O, T)  = U[ξ] · V[ξ]        one GEMM per ξ
//!   y tile (m×m) = Aᵀ · M · A          output transform
//! ```
//! With m = 4 the GEMMs need 44% fewer flops than with m = 2, at the cost of larger transforms
//! and somewhat larger rounding error (the interpolation points are 0, ±1, ±2 and ∞).
//!
//! The backward-data pass of such a convolution is again one: the full convolution of dY with the
//! flipped, transposed filters, padding 2 - p.

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use super::{copy_padded, SendPtr};
use crate::dtype::Float;

/// The output tile of a Winograd convolution: F(2×2, 3×3) or F(4×4, 3×3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// 2×2 output tiles from 4×4 input tiles: 16 GEMMs.
    F2,
    /// 4×4 output tiles from 6×6 input tiles: 36 GEMMs with 44% fewer flops in all.
    F4,
}

impl Tile {
    /// Output pixels per tile side.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Tiles over all images of an (n, ·, oh, ow) output.
    fn count(self, n: usize, oh: usize, ow: usize) -> usize {
        n * oh.div_ceil(self.m()) * ow.div_ceil(self.m())
    }
}

/// Which Winograd tile, if any, the convolution `g` should run with: the path applies to 3×3,
/// stride-1, undilated, ungrouped convolutions and pays off with many channels (64, or 32 on
/// images of 64² pixels and more, where im2col's unfolded input gets large) and enough
/// output tiles for the GEMMs not to get too thin (measured against im2col + GEMM and between
/// the two tiles with `aics bench` and the `convlayers` example).
pub fn plan(g: &super::conv::Conv2dGeom) -> Option<Tile> {
    let applies = g.kh == 3
        && g.kw == 3
        && (g.sh, g.sw, g.dh, g.dw, g.groups) == (1, 1, 1, 1, 1)
        && g.ph == g.pw
        && g.ph <= 2
        && ((g.c >= 64 && g.o >= 64) || (g.c >= 32 && g.o >= 32 && g.ohw() >= 64 * 64));
    if !applies {
        return None;
    }
    if g.ohw() <= 64 {
        return None;
    }
    let pays = |t: Tile| {
        let tiles = t.count(g.n, g.oh, g.ow);
        tiles >= 512 || (tiles >= 64 && by_xi(tiles, g.c, g.o))
    };
    [Tile::F4, Tile::F2].into_iter().find(|&t| pays(t))
}

/// Whether to run all tiles through each GEMM at once instead of in cache-sized blocks: when
/// the tiles are few and the channels many, the transformed filters U ((m+2)²·O·C) outweigh a
/// block's tiles, and reading them once per block would dominate.
fn by_xi(tiles: usize, c: usize, o: usize) -> bool {
    tiles <= 1024 && c * o >= 256 * 256
}

/// `Bᵀ·d` for one column or row of `A` = m + 2 input points.
#[inline(always)]
fn bt<T: Float, const A: usize>(d: &[T; A]) -> [T; A] {
    let mut v = [T::zero(); A];
    if A == 4 {
        v[0] = d[0] - d[2];
        v[1] = d[1] + d[2];
        v[2] = d[2] - d[1];
        v[3] = d[1] - d[3];
    } else {
        let (c2, c4, c5) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        v[0] = c4 * d[0] - c5 * d[2] + d[4];
        v[1] = d[3] + d[4] - c4 * (d[1] + d[2]);
        v[2] = d[4] - d[3] + c4 * (d[1] - d[2]);
        v[3] = d[4] - d[2] + c2 * (d[3] - d[1]);
        v[4] = d[4] - d[2] - c2 * (d[3] - d[1]);
        v[5] = c4 * d[1] - c5 * d[3] + d[5];
    }
    v
}

/// `Aᵀ·q` for one column or row of `A` transformed points → the first m = A - 2 entries.
#[inline(always)]
fn at<T: Float, const A: usize>(q: &[T; A]) -> [T; A] {
    let mut y = [T::zero(); A];
    if A == 4 {
        y[0] = q[0] + q[1] + q[2];
        y[1] = q[1] - q[2] - q[3];
    } else {
        let (c2, c4, c8) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let (s12, d12) = (q[1] + q[2], q[1] - q[2]);
        let (s34, d34) = (q[3] + q[4], q[3] - q[4]);
        y[0] = q[0] + s12 + s34;
        y[1] = d12 + c2 * d34;
        y[2] = s12 + c4 * s34;
        y[3] = d12 + c8 * d34 + q[5];
    }
    y
}

/// `G·g` for one column or row of a 3×3 filter → `A` points.
#[inline(always)]
fn gt<T: Float, const A: usize>(g: [T; 3]) -> [T; A] {
    let mut u = [T::zero(); A];
    let h = T::from_f64(0.5);
    if A == 4 {
        u[0] = g[0];
        u[1] = h * (g[0] + g[1] + g[2]);
        u[2] = h * (g[0] - g[1] + g[2]);
        u[3] = g[2];
    } else {
        let f = |x: f64| T::from_f64(x);
        let (s, d) = (g[0] + g[2], g[1]);
        u[0] = f(0.25) * g[0];
        u[1] = f(-1.0 / 6.0) * (s + d);
        u[2] = f(-1.0 / 6.0) * (s - d);
        let e = f(1.0 / 24.0) * g[0] + f(1.0 / 6.0) * g[2];
        u[3] = e + f(1.0 / 12.0) * d;
        u[4] = e - f(1.0 / 12.0) * d;
        u[5] = g[2];
    }
    u
}

/// 3×3 convolution, stride 1, padding `pad`, with Winograd tile `tile`: `x` (N, C, H, W),
/// `wt` (O, C, 3, 3) → (N, O, H+2p-2, W+2p-2).
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
    tile: Tile,
) -> Vec<T> {
    check("conv3x3", x.len(), n, c, h, w, wt.len(), o, pad);
    let u = transform_filters(wt, o, c, tile);
    conv3x3_transformed(x, n, c, h, w, &u, o, pad, tile)
}

/// The nine taps of filter (oi, ci) of `wt` (·, C, 3, 3), read with one bounds check, not one
/// per tap.
#[inline(always)]
fn taps<T: Float>(wt: &[T], c: usize, oi: usize, ci: usize) -> [T; 9] {
    let f: &[T; 9] = wt[(oi * c + ci) * 9..][..9].try_into().expect("nine taps");
    *f
}

/// U for the O×C filters `filter(o, c)` and Winograd tile `tile`.
fn filters_for<T: Float>(
    o: usize,
    c: usize,
    tile: Tile,
    filter: impl Fn(usize, usize) -> [T; 9] + Sync,
) -> Vec<T> {
    match tile {
        Tile::F2 => transformed_filters::<T, 4>(o, c, filter),
        Tile::F4 => transformed_filters::<T, 6>(o, c, filter),
    }
}

/// The filters `wt` (O, C, 3, 3) transformed for `tile`, as [`conv3x3_transformed`] takes them
/// (U[ξ][o][c], (m+2)²·O·C values): made once for weights that do not change (the inference
/// path), instead of on each call of [`conv3x3`].
pub fn transform_filters<T: Float>(wt: &[T], o: usize, c: usize, tile: Tile) -> Vec<T> {
    assert_eq!(
        wt.len(),
        o * c * 9,
        "winograd filters: {o}x{c}x3x3 from {}",
        wt.len()
    );
    filters_for(o, c, tile, |oi, ci| taps(wt, c, oi, ci))
}

/// [`conv3x3`] with the filters already transformed by [`transform_filters`] for `tile`.
/// Panics unless `u` holds (m+2)²·O·C values.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_transformed<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    u: &[T],
    o: usize,
    pad: usize,
    tile: Tile,
) -> Vec<T> {
    let a = tile.m() + 2;
    check("conv3x3", x.len(), n, c, h, w, o * c * 9, o, pad);
    assert_eq!(
        u.len(),
        a * a * o * c,
        "winograd: transformed filters of {} values for {o}x{c} channels with {tile:?}",
        u.len()
    );
    match tile {
        Tile::F2 => conv3x3_u::<T, 4>(x, n, c, h, w, u, o, pad),
        Tile::F4 => conv3x3_u::<T, 6>(x, n, c, h, w, u, o, pad),
    }
}

/// The backward-data pass of a Winograd-eligible convolution with padding `pad`: `dy`
/// (N, O, OH, OW) and the forward's `wt` (O, C, 3, 3) → dX (N, C, H, W). The same as
/// `conv3x3(dy, n, o, oh, ow, &flip_transpose(wt, o, c), c, 2 - pad, tile)`, with the flipped
/// filters transformed straight from `wt`.
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
    tile: Tile,
) -> Vec<T> {
    check(
        "conv3x3_bwd_data",
        dy.len(),
        n,
        o,
        oh,
        ow,
        wt.len(),
        c,
        2 - pad.min(2),
    );
    assert!(pad <= 2, "conv3x3_bwd_data: padding {pad} > 2");
    // filter (ci ← oi) of the full convolution is wt[oi][ci] turned by 180°
    let u = filters_for(c, o, tile, |ci, oi| {
        let mut f = taps(wt, c, oi, ci);
        f.reverse();
        f
    });
    conv3x3_transformed(dy, n, o, oh, ow, &u, c, 2 - pad, tile)
}

/// Panics unless `x` holds (N, C, H, W), the filters O×C 3×3, and the padded image fits a
/// 3×3 window with padding at most 2: the kernels write through raw pointers on its strength.
#[allow(clippy::too_many_arguments)]
fn check(
    op: &str,
    xlen: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    wlen: usize,
    o: usize,
    pad: usize,
) {
    assert!(
        xlen == n * c * h * w && wlen == o * c * 9,
        "{op}: input of {xlen} and filters of {wlen} elements for N={n} C={c} H={h} W={w} O={o}"
    );
    assert!(
        pad <= 2 && h + 2 * pad >= 3 && w + 2 * pad >= 3,
        "{op}: a {h}x{w} image with padding {pad} does not fit a 3x3 window"
    );
}

/// U[ξ][o][c] = (G·g·Gᵀ)[ξ] for the 3×3 filters `filter(o, c)`, built by output channel in
/// parallel.
fn transformed_filters<T: Float, const A: usize>(
    o: usize,
    c: usize,
    filter: impl Fn(usize, usize) -> [T; 9] + Sync,
) -> Vec<T> {
    // CB input channels at a time, as vector lanes: their filters are gathered tap by tap,
    // transformed lane-wise, and written out one cache line per ξ. (Written straight, the
    // (m+2)² elements of one filter would go to addresses O·C apart, which share cache sets.)
    const CB: usize = 16;
    // Every element is written below, through the pointer, so the vector starts
    // uninitialised and gets its length at the end.
    let ulen = A * A * o * c;
    let mut u: Vec<T> = Vec::with_capacity(ulen);
    let up = SendPtr(u.as_mut_ptr());
    (0..o).into_par_iter().for_each(|oi| {
        let mut g = [[T::zero(); CB]; 9];
        let mut gg = [[[T::zero(); CB]; 3]; A]; // G·g: A rows of 3
        let mut out = [[[T::zero(); CB]; A]; A]; // G·g·Gᵀ
        for c0 in (0..c).step_by(CB) {
            let nb = CB.min(c - c0);
            for k in 0..nb {
                let f = filter(oi, c0 + k);
                for (tap, &val) in g.iter_mut().zip(&f) {
                    tap[k] = val;
                }
            }
            for j in 0..3 {
                for lane in 0..CB {
                    let col = gt::<T, A>([g[j][lane], g[3 + j][lane], g[6 + j][lane]]);
                    for (row, &val) in gg.iter_mut().zip(&col) {
                        row[j][lane] = val;
                    }
                }
            }
            for (row, out_row) in gg.iter().zip(out.iter_mut()) {
                for lane in 0..CB {
                    let r = gt::<T, A>([row[0][lane], row[1][lane], row[2][lane]]);
                    for (dst, &val) in out_row.iter_mut().zip(&r) {
                        dst[lane] = val;
                    }
                }
            }
            for (xi, src) in out.iter().flatten().enumerate() {
                // SAFETY: output channel oi alone writes the elements (ξ, oi, ·), and
                // c0 + nb ≤ c keeps these inside row (ξ, oi).
                unsafe {
                    let dst = up.get().add((xi * o + oi) * c + c0);
                    std::ptr::copy_nonoverlapping(src.as_ptr(), dst, nb);
                }
            }
        }
    });
    // SAFETY: each (ξ, oi) row of c elements was written in full, by blocks c0..c0 + nb.
    unsafe { u.set_len(ulen) };
    u
}

/// [`conv3x3`] with tiles of `A` = m + 2 points and the filters already transformed: `u` is
/// U[ξ][o][c].
#[allow(clippy::too_many_arguments)]
fn conv3x3_u<T: Float, const A: usize>(
    x: &[T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    u: &[T],
    o: usize,
    pad: usize,
) -> Vec<T> {
    let m = A - 2;
    let xis = A * A;
    let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
    let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
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
    // Every output pixel is written by exactly one tile's output transform, so the output
    // starts uninitialised and gets its length once all are written.
    let ylen = n * o * oh * ow;
    let mut y: Vec<T> = Vec::with_capacity(ylen);
    let yp = SendPtr(y.as_mut_ptr());
    if by_xi(tt, c, o) {
        // Few tiles, many channels: all tiles at once, so that each U[ξ] is read once.
        // V[c][ξ][t] by channel → the GEMMs M[ξ][o][t] side by side → outputs by channel.
        let mut v = vec![T::zero(); xis * c * tt];
        v.par_chunks_mut(xis * tt).enumerate().for_each_init(
            || vec![T::zero(); Tiles::scratch::<A>(tw)],
            |rows, (ci, vc)| {
                for (tl, len) in geo.runs(0, tt) {
                    geo.input_run::<T, A>(x, ci, tl, len, rows, vc, (tt, 0), tl);
                }
            },
        );
        let mut mm = vec![T::zero(); xis * o * tt];
        mm.par_chunks_mut(o * tt).enumerate().for_each(|(xi, mx)| {
            let vx = Mat {
                data: &v[xi * tt..],
                rs: xis * tt,
                cs: 1,
            };
            gemm(o, tt, c, Mat::rm(&u[xi * o * c..], c), vx, mx, false, false);
        });
        drop(v);
        (0..o).into_par_iter().for_each_init(
            || vec![T::zero(); Tiles::scratch::<A>(tw)],
            |rows, oi| {
                for (tl, len) in geo.runs(0, tt) {
                    // SAFETY: output channel oi's planes are written by this task alone.
                    unsafe { geo.output_run::<T, A>(&mm, oi, tl, len, tt, tl, rows, &yp) };
                }
            },
        );
        // SAFETY: the output transforms above wrote all ylen elements.
        unsafe { y.set_len(ylen) };
        return y;
    }
    // Tiles are processed in blocks small enough that a block's V and M stay in cache:
    // per block, input transform → GEMMs → output transform.
    // (measured: 96 tiles for F(2×2), 64 for F(4×4))
    let tile_block = if A == 4 { 96 } else { 64 };
    let threads = rayon::current_num_threads();
    let nblocks = tt.div_ceil(tile_block).div_ceil(threads) * threads;
    let tb = tt.div_ceil(nblocks.min(tt).max(1));
    let nblocks = tt.div_ceil(tb);
    (0..nblocks).into_par_iter().for_each_init(
        || {
            (
                vec![T::zero(); xis * c * tb],
                vec![T::zero(); xis * o * tb],
                vec![T::zero(); Tiles::scratch::<A>(tb)],
            )
        },
        |(v, mm, rows), bi| {
            let t0 = bi * tb;
            let nt = tb.min(tt - t0);
            // V[ξ][c][t]
            for (tl, len) in geo.runs(t0, nt) {
                for ci in 0..c {
                    geo.input_run::<T, A>(x, ci, t0 + tl, len, rows, v, (c * nt, nt), tl);
                }
            }
            // M[ξ] = U[ξ] · V[ξ]
            for xi in 0..xis {
                gemm(
                    o,
                    nt,
                    c,
                    Mat::rm(&u[xi * o * c..], c),
                    Mat::rm(&v[xi * c * nt..], nt),
                    &mut mm[xi * o * nt..(xi + 1) * o * nt],
                    false,
                    false,
                );
            }
            // output transform
            for (tl, len) in geo.runs(t0, nt) {
                for oi in 0..o {
                    // SAFETY: each tile, and so each output pixel, belongs to one block.
                    unsafe { geo.output_run::<T, A>(mm, oi, t0 + tl, len, nt, tl, rows, &yp) };
                }
            }
        },
    );
    // SAFETY: the blocks' output transforms wrote all ylen elements.
    unsafe { y.set_len(ylen) };
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
    /// Scratch space for the transforms of runs of up to `len` tiles of `A` points a side.
    fn scratch<const A: usize>(len: usize) -> usize {
        let m = A - 2;
        // input: a raw row, A rows and A transformed rows, of m phases of len + 1;
        // output: A·m rows and m rows of m·len
        ((2 * A + 1) * m * (len + 1)).max((A + m) * m * len)
    }

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
    /// at least [`Tiles::scratch`]`(len)` elements.
    ///
    /// The input rows are split into their m phases (columns m·i + s, s < m), so that both
    /// transforms run as vector loops over the tiles: tile i's columns m·i .. m·i+A are element
    /// i of phases 0..m and element i+1 of phases 0 and 1.
    #[allow(clippy::too_many_arguments)]
    fn input_run<T: Float, const A: usize>(
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
        let m = A - 2;
        let (h, w) = (self.h, self.w);
        let (ni, r) = (t / self.tiles, t % self.tiles);
        let (ty, tx) = (r / self.tw, r % self.tw);
        let xc = &x[(ni * self.c + ci) * h * w..(ni * self.c + ci + 1) * h * w];
        // the A input rows under the run, columns m·tx - pad .. + m·len + 2, zero-padded,
        // each as m phases of len + 1 elements (the last element of phases ≥ 2 is unused)
        let n1 = len + 1;
        let width = m * len + 2;
        let x0 = (m * tx) as isize - self.pad as isize;
        let (raw, rest) = rows[..(2 * A + 1) * m * n1].split_at_mut(m * n1);
        let raw = &mut raw[..width];
        let (d, r) = rest.split_at_mut(A * m * n1);
        for (i, dr) in d.chunks_exact_mut(m * n1).enumerate() {
            let iy = (m * ty + i) as isize - self.pad as isize;
            if iy < 0 || iy >= h as isize {
                dr.fill(T::zero());
                continue;
            }
            copy_padded(&xc[iy as usize * w..(iy as usize + 1) * w], x0, raw);
            let mut it = dr.chunks_exact_mut(n1);
            let mut ph: [&mut [T]; A] = std::array::from_fn(|_| it.next().unwrap_or_default());
            for (i, cols) in raw.chunks_exact(m).enumerate() {
                for (p, &val) in ph.iter_mut().zip(cols) {
                    p[i] = val;
                }
            }
            ph[0][len] = raw[m * len];
            ph[1][len] = raw[m * len + 1];
        }
        // Bᵀ·d down the columns: row k of r is a combination of the A rows of d
        {
            let ds: [&[T]; A] = std::array::from_fn(|i| &d[i * m * n1..(i + 1) * m * n1]);
            let mut it = r.chunks_exact_mut(m * n1);
            let mut rs: [&mut [T]; A] = std::array::from_fn(|_| it.next().unwrap());
            for j in 0..m * n1 {
                let col = bt::<T, A>(&std::array::from_fn(|i| ds[i][j]));
                for (rk, &val) in rs.iter_mut().zip(&col) {
                    rk[j] = val;
                }
            }
        }
        // ·B along each row: tile i covers phases 0..m at i and phases 0, 1 at i + 1
        for (k, rk) in r.chunks_exact(m * n1).enumerate() {
            let src: [&[T]; A] = std::array::from_fn(|q| {
                let (p, o) = if q < m { (q, 0) } else { (q - m, 1) };
                &rk[p * n1 + o..p * n1 + o + len]
            });
            let mut it = v[A * k * sx..(A * k + A) * sx].chunks_exact_mut(sx);
            let mut dst: [&mut [T]; A] =
                std::array::from_fn(|_| &mut it.next().unwrap()[ci * sc + tl..][..len]);
            for i in 0..len {
                let out = bt::<T, A>(&std::array::from_fn(|q| src[q][i]));
                for (dj, &val) in dst.iter_mut().zip(&out) {
                    dj[i] = val;
                }
            }
        }
    }

    /// Output transform `Aᵀ·M·A` of output channel `oi` for the `len` tiles from tile `t` (one
    /// tile row), read from columns `tl..tl+len` of `mm` ((m+2)² × O rows of stride `nt`),
    /// written into `y`. `rows` is scratch space of at least [`Tiles::scratch`]`(len)` elements.
    ///
    /// # Safety
    /// `y` must have room for N·O·OH·OW elements, and no other thread may write these tiles' pixels.
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_run<T: Float, const A: usize>(
        &self,
        mm: &[T],
        oi: usize,
        t: usize,
        len: usize,
        nt: usize,
        tl: usize,
        rows: &mut [T],
        y: &SendPtr<T>,
    ) {
        let m = A - 2;
        let (ni, r) = (t / self.tiles, t % self.tiles);
        let (ty, tx) = (r / self.tw, r % self.tw);
        // Aᵀ·M down each column j (vector loops over the run's tiles): s rows (j, k), k < m
        let (s, out) = rows[..(A + m) * m * len].split_at_mut(A * m * len);
        for (j, sj) in s.chunks_exact_mut(m * len).enumerate() {
            let q: [&[T]; A] =
                std::array::from_fn(|r| &mm[((r * A + j) * self.o + oi) * nt + tl..][..len]);
            let mut it = sj.chunks_exact_mut(len);
            let mut sk: [&mut [T]; A] = std::array::from_fn(|_| it.next().unwrap_or_default());
            for i in 0..len {
                let col = at::<T, A>(&std::array::from_fn(|r| q[r][i]));
                for (dst, &val) in sk[..m].iter_mut().zip(&col) {
                    dst[i] = val;
                }
            }
        }
        // ·A along the rows: output row k of tile i from s rows (·, k)
        for (k, ok) in out.chunks_exact_mut(m * len).enumerate() {
            let sr: [&[T]; A] = std::array::from_fn(|j| &s[(j * m + k) * len..][..len]);
            for i in 0..len {
                let row = at::<T, A>(&std::array::from_fn(|j| sr[j][i]));
                ok[m * i..m * i + m].copy_from_slice(&row[..m]);
            }
        }
        let (oh, ow) = (self.oh, self.ow);
        let plane = (ni * self.o + oi) * oh * ow;
        let x0 = m * tx;
        let cols = (m * len).min(ow - x0); // the last tile of a row may stick out
        for (k, ok) in out.chunks_exact(m * len).enumerate() {
            let yy = m * ty + k;
            if yy < oh {
                // SAFETY: row yy of this plane, columns x0..x0+cols, lies inside y (caller).
                let dst = std::slice::from_raw_parts_mut(y.get().add(plane + yy * ow + x0), cols);
                dst.copy_from_slice(&ok[..cols]);
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
