//! Direct convolution with the output channels in the vector lanes and the positions of one
//! output row broadcast: the kernel for small maps (14×14, 7×7) at inference, where the
//! GEMM's column tiles of 32 positions fit badly (49 = 32 + 17) and the input would be copied
//! into tiles first.
//!
//! ```text
//!   weights  blocks of OB = 2L output channels, k-major (k = channel, kernel row, kernel column):
//!            w[(block·K + k)·OB + j] = W[block·OB + j, k]           (made once)
//!   tile     P positions of one output row (P ≤ 14 with AVX-512, ≤ 6 with AVX2) × OB channels,
//!            P·2 accumulators; a step of K loads two weight vectors and broadcasts P inputs
//!   output   each vector of accumulators (P positions × L channels) is transposed in registers,
//!            and every channel's P positions stored as one run, with `act(acc + b + r)`
//! ```
//! A 1×1 convolution without padding reads the whole plane as one row (subsampled first where
//! it is strided), so a 7×7 map is tiles of 13, 12, 12 and 12 positions. Maps with rows of 7 or
//! fewer take two to four whole rows a tile. A padded convolution reads a zero-bordered copy of
//! its input, so the kernel has no bounds to test.
//!
//! The tests hold it to the naive loop nest ([`super::conv::conv2d_fwd_naive`]).

use rayon::prelude::*;

use super::conv::Conv2dGeom;
use super::packed::{Epilogue, PackedWeights};
use super::SendPtr;

/// Whether the row kernel can run `g` on this CPU: one group, strides of 1 or 2 along the
/// rows, any padding and dilation.
pub fn applies(g: &Conv2dGeom) -> bool {
    g.groups == 1 && (g.sw == 1 || g.sw == 2) && super::packed::width().is_some()
}

/// The widest tile (positions) for `lanes`.
fn pmax(lanes: usize) -> usize {
    if lanes == 16 {
        14
    } else {
        6
    }
}

/// How the kernel reads the input of one convolution.
struct Plan {
    /// input offsets of each step of K (channel, kernel row, kernel column), from a tile's first
    /// input position
    koff: Vec<usize>,
    /// rows of output positions, their length, the input offset between rows, and between
    /// positions of a row
    rows: usize,
    row_len: usize,
    in_row: usize,
    step: usize,
    /// elements of one image's (padded) input
    in_image: usize,
}

/// Whether `g` is a 1×1 convolution with no padding: it reads its input as planes of its
/// output's size (subsampled first where the stride is over 1).
fn flat(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0
}

fn plan(g: &Conv2dGeom) -> Plan {
    let (c, kh, kw) = (g.c, g.kh, g.kw);
    if flat(g) {
        // the plane as one row
        return Plan {
            koff: (0..c).map(|ci| ci * g.ohw()).collect(),
            rows: 1,
            row_len: g.ohw(),
            in_row: 0,
            step: 1,
            in_image: c * g.ohw(),
        };
    }
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let mut koff = Vec::with_capacity(c * kh * kw);
    for ci in 0..c {
        for i in 0..kh {
            for j in 0..kw {
                koff.push(ci * hp * wp + i * g.dh * wp + j * g.dw);
            }
        }
    }
    Plan {
        koff,
        rows: g.oh,
        row_len: g.ow,
        in_row: g.sh * wp,
        step: g.sw,
        in_image: c * hp * wp,
    }
}

/// The input as the kernel reads it: with a zero border of (ph, pw) around every plane, or for
/// a strided 1×1 convolution, the positions it reads (every `sh`-th row, every `sw`-th column;
/// measured on ResNet-50's stride-2 1×1 layers: strided broadcasts ran at 180–210 GFLOP/s,
/// the subsampled planes at 260–290); None where the input serves as it is.
fn prepared(x: &[f32], g: &Conv2dGeom) -> Option<Vec<f32>> {
    if flat(g) {
        if g.sh == 1 && g.sw == 1 {
            return None;
        }
        let mut xs = vec![0f32; g.n * g.c * g.ohw()];
        let pick = |(plane, dst): (usize, &mut [f32])| {
            let src = &x[plane * g.hw()..(plane + 1) * g.hw()];
            for (oy, row) in dst.chunks_exact_mut(g.ow).enumerate() {
                let s = &src[oy * g.sh * g.w..];
                for (ox, d) in row.iter_mut().enumerate() {
                    *d = s[ox * g.sw];
                }
            }
        };
        super::for_each_chunk(&mut xs, g.ohw(), pick);
        return Some(xs);
    }
    if g.ph == 0 && g.pw == 0 {
        return None;
    }
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let mut xp = vec![0f32; g.n * g.c * hp * wp];
    let fill = |(plane, dst): (usize, &mut [f32])| {
        let src = &x[plane * g.hw()..(plane + 1) * g.hw()];
        for (r, row) in src.chunks_exact(g.w).enumerate() {
            dst[(r + g.ph) * wp + g.pw..][..g.w].copy_from_slice(row);
        }
    };
    super::for_each_chunk(&mut xp, hp * wp, fill);
    Some(xp)
}

/// `y = act(conv(x, W) + bias + residual)` for a convolution with one group, through weights
/// packed by [`PackedWeights::pack_rows`]. `y` is (N, O, OH, OW) and fully written. Panics if the
/// packing does not fit `g`, was made for another vector width, or `g` is not one
/// [`applies`] accepts.
pub fn conv2d_fwd(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue, y: &mut [f32]) {
    assert_eq!(y.len(), g.n * g.o * g.ohw(), "row conv: output length");
    // SAFETY: `y` holds the whole output.
    unsafe { run(x, w, g, epi, y.as_mut_ptr()) }
}

/// [`conv2d_fwd`] into a new vector, which is never filled with zeros first: every tile stores
/// all its channels' positions, and the tiles cover the output.
pub fn conv2d_fwd_new(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue) -> Vec<f32> {
    // SAFETY: `run` writes all N·O·OH·OW elements (or panics before writing, and the vector is
    // dropped empty).
    unsafe {
        super::filled(g.n * g.o * g.ohw(), |y| {
            run(x, w, g, epi, y.as_mut_ptr() as *mut f32)
        })
    }
}

/// # Safety
/// `y` must be valid for writes of the N·O·OH·OW output.
unsafe fn run(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue, y: *mut f32) {
    let lanes = w.rows_lanes();
    assert!(
        applies(g) && w.rows() == g.o && w.depth() == g.ckk() && lanes.is_some(),
        "row conv: weights {}x{} for {:?}",
        w.rows(),
        w.depth(),
        g
    );
    let lanes = lanes.expect("checked");
    g.check(x.len(), g.o * g.ckk());
    let p = g.ohw();
    epi.check("row conv", g.o, g.n * g.o * p);
    if p == 0 || g.o == 0 || g.n == 0 {
        return;
    }
    let pl = plan(g);
    let xp = prepared(x, g);
    let xin: &[f32] = xp.as_deref().unwrap_or(x);
    let ob = 2 * lanes;
    let blocks = g.o.div_ceil(ob);
    let k = pl.koff.len();
    let pm = pmax(lanes);
    // Tiles: whole rows, as many as fit in the widest tile, where rows are short (7×7 maps);
    // else chunks of a row, as even as they come, none wider than the widest tile.
    let (rows_per, chunks) = if pl.rows > 1 && 2 * pl.row_len <= pm {
        ((pm / pl.row_len).min(MAX_ROWS).min(pl.rows), 1)
    } else {
        (1, pl.row_len.div_ceil(pm))
    };
    let (base, extra) = (pl.row_len / chunks, pl.row_len % chunks);
    let chunk = |c: usize| (c * base + c.min(extra), base + usize::from(c < extra));
    let row_tiles = pl.rows.div_ceil(rows_per);
    // Loop order: where all the weights fit in half of L2 and an image's input does not, each
    // tile's inputs are read once for all channel blocks (they stay in L1); else each block's
    // weights once for a group of tiles (they stay in L2). Measured on ResNet-50's layers.
    // Tasks: groups of spatial tiles (of each image, and of each block when blocks are outer).
    let spatial = row_tiles * chunks;
    let threads = rayon::current_num_threads().max(1);
    let want = if g.macs() < 1 << 20 { 1 } else { 4 * threads };
    let blocks_inner =
        4 * k * blocks * ob <= 1 << 20 && 4 * pl.in_image > 1 << 20 && g.n * spatial >= want;
    let units = if blocks_inner { g.n } else { g.n * blocks };
    let groups = want.div_ceil(units).clamp(1, spatial);
    let tasks = units * groups;
    let yp = SendPtr(y);
    let task = |t: usize| {
        let (unit, sg) = (t / groups, t % groups);
        let (img, blks) = if blocks_inner {
            (unit, 0..blocks)
        } else {
            (unit / blocks, unit % blocks..unit % blocks + 1)
        };
        let tiles = sg * spatial / groups..(sg + 1) * spatial / groups;
        let xi = &xin[img * pl.in_image..(img + 1) * pl.in_image];
        let one = |blk: usize, st: usize| {
            let (rt, c) = (st / chunks, st % chunks);
            let wblk = &w.data()[blk * k * ob..(blk + 1) * k * ob];
            let o0 = blk * ob;
            let out = Out {
                y: &yp,
                img,
                o0,
                oc: ob.min(g.o - o0),
                o: g.o,
                p,
                epi,
            };
            let r = rt * rows_per;
            let nr = rows_per.min(pl.rows - r);
            let (x0, len) = chunk(c);
            // the tile's first input position, and its first output position
            let xoff = r * pl.in_row + x0 * pl.step;
            let q0 = r * pl.row_len + x0;
            // SAFETY: the width is this CPU's (`rows_lanes`); every input the tile reads,
            // xoff + j·in_row + koff[k] + i·step for rows j < nr and i < len, lies inside the
            // image's (padded) input (the geometry was checked); the tile's outputs (whole rows
            // where nr > 1) belong to this task alone.
            unsafe {
                let x = xi.as_ptr().add(xoff);
                tile(
                    lanes, nr, len, pl.step, pl.in_row, &pl.koff, x, wblk, q0, &out,
                )
            };
        };
        if blocks_inner {
            for st in tiles {
                for blk in blks.clone() {
                    one(blk, st);
                }
            }
        } else {
            for blk in blks {
                for st in tiles.clone() {
                    one(blk, st);
                }
            }
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// The most output rows one tile takes.
const MAX_ROWS: usize = 4;

/// Where a tile's outputs go: channels `o0..o0+oc` of image `img`.
pub(super) struct Out<'a> {
    y: &'a SendPtr<f32>,
    img: usize,
    o0: usize,
    oc: usize,
    o: usize,
    p: usize,
    epi: Epilogue<'a>,
}

/// One tile of `rows` output rows × `len` positions from output position `q0` (whole rows
/// where `rows` > 1, so that its outputs are one run).
///
/// # Safety
/// As at the call in [`run`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    lanes: usize,
    rows: usize,
    len: usize,
    stride: usize,
    in_row: usize,
    koff: &[usize],
    x: *const f32,
    w: &[f32],
    q0: usize,
    out: &Out,
) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($f:ident, $s:literal, $(($r:literal, $p:literal))*) => {
                match (rows, len) {
                    $(($r, $p) => x86::$f::<{ $r * $p }, $r, $s>(koff, x, in_row, w.as_ptr(), q0, out),)*
                    _ => unreachable!("tile of {rows} × {len} positions"),
                }
            };
        }
        macro_rules! wide {
            ($s:literal) => {
                go!(
                    tile512,
                    $s,
                    (1, 1)(1, 2)(1, 3)(1, 4)(1, 5)(1, 6)(1, 7)(1, 8)(1, 9)(1, 10)(1, 11)(1, 12)(
                        1, 13
                    )(1, 14)(2, 1)(2, 2)(2, 3)(2, 4)(2, 5)(2, 6)(2, 7)(3, 1)(3, 2)(3, 3)(
                        3, 4
                    )(4, 1)(4, 2)(4, 3)
                )
            };
        }
        macro_rules! narrow {
            ($s:literal) => {
                go!(
                    tile256,
                    $s,
                    (1, 1)(1, 2)(1, 3)(1, 4)(1, 5)(1, 6)(2, 1)(2, 2)(2, 3)(3, 1)(3, 2)(4, 1)
                )
            };
        }
        match (lanes, stride) {
            (16, 1) => wide!(1),
            (16, _) => wide!(2),
            (_, 1) => narrow!(1),
            _ => narrow!(2),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (lanes, rows, len, stride, in_row, koff, x, w, q0, out);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::vector::{finish, ActConsts, Vector};
    use super::Out;

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn tile512<const P: usize, const R: usize, const S: usize>(
        koff: &[usize],
        x: *const f32,
        in_row: usize,
        w: *const f32,
        q0: usize,
        out: &Out,
    ) {
        tile_generic::<__m512, P, R, S>(koff, x, in_row, w, q0, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile256<const P: usize, const R: usize, const S: usize>(
        koff: &[usize],
        x: *const f32,
        in_row: usize,
        w: *const f32,
        q0: usize,
        out: &Out,
    ) {
        tile_generic::<__m256, P, R, S>(koff, x, in_row, w, q0, out)
    }

    /// How many steps of K ahead the inputs are prefetched: 64, measured on ResNet-50's
    /// 1024→256 layer at 14×14 with its input and weights out of cache (0.74–0.92 ms with
    /// none, 0.38–0.55 ms with 64 ahead; 8, 16 and 32 ahead were slower, 96 and 128 no faster).
    const XAHEAD: usize = 64;

    /// How far ahead (f32s) the weights are prefetched: 4 KB, measured on ResNet-50's layers
    /// with their weights out of cache (up to 25% faster than none, or than 1 KB ahead).
    const PREFETCH: usize = 1024;

    /// `P` positions (`R` rows of `P / R`) × 2 vectors of channels over the steps `koff`, then
    /// the output pass.
    #[inline(always)]
    unsafe fn tile_generic<V: Vector, const P: usize, const R: usize, const S: usize>(
        koff: &[usize],
        x: *const f32,
        in_row: usize,
        w: *const f32,
        q0: usize,
        out: &Out,
    ) {
        let per = P / R;
        let mut acc = [[V::zero(); 2]; P];
        let mut wp = w;
        let last = (R - 1) * in_row + (per - 1) * S;
        for (step, &off) in koff.iter().enumerate() {
            // the inputs of a later step asked for ahead: the first block to read an input
            // plane reads it from memory or the other core's cache, a line or two a step, at
            // a stride the hardware does not run ahead of
            if let Some(&next) = koff.get(step + XAHEAD) {
                _mm_prefetch::<_MM_HINT_T0>(x.add(next) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(x.add(next + last) as *const i8);
            }
            let mut xr = [x.add(off); R];
            for j in 1..R {
                xr[j] = xr[j - 1].add(in_row);
            }
            // the weights of later steps asked for ahead: the first tile of a block reads them
            // from memory at batch 1 (a prefetch never faults, so the addresses past the end
            // are harmless)
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH) as *const i8);
            if V::L == 16 {
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH + 16) as *const i8);
            }
            let w0 = V::load(wp);
            let w1 = V::load(wp.add(V::L));
            for (i, a) in acc.iter_mut().enumerate() {
                let b = V::splat(*xr[i / per].add((i % per) * S));
                a[0] = V::fma(b, w0, a[0]);
                a[1] = V::fma(b, w1, a[1]);
            }
            wp = wp.add(2 * V::L);
        }
        let epi = out.epi;
        let consts = ActConsts::<V>::new(epi.act);
        let base = out.img * out.o * out.p + q0;
        let mut r = [V::zero(); 16];
        for v in 0..2 {
            let first = v * V::L;
            if first >= out.oc {
                break;
            }
            for (i, a) in acc.iter().enumerate() {
                r[i] = a[v];
            }
            for x in &mut r[P..V::L] {
                *x = V::zero();
            }
            V::transpose(&mut r[..V::L]);
            for (l, &col) in r[..V::L.min(out.oc - first)].iter().enumerate() {
                let o = out.o0 + first + l;
                let at = base + o * out.p;
                let res = epi.residual.map(|rs| rs.as_ptr().add(at));
                let bias = epi.bias.map(|b| b[o]);
                finish(col, bias, &consts, out.y.get().add(at), res, P);
            }
        }
    }
}
