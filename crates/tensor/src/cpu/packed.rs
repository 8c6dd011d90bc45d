//! The convolution GEMM `Y = W · cols(X)` in f32 with the weights packed once into the
//! micro-kernel's panel layout, and the right operand (the unfolded input) packed tile by tile
//! straight from the input, so that no im2col matrix is ever built.
//!
//! Layout (L = the vector's f32 lanes, 16 with AVX-512 and 8 with AVX2):
//! ```text
//!   weights  panels of MR rows, k-major:   a[(panel·K + k)·MR + r] = W[panel·MR + r, k]
//!   columns  tiles of NR = 2L columns:     b[k·NR + j] = cols(X)[k, tile·NR + j]
//!   micro-kernel: MR × NR accumulators in registers (14 × 32 with AVX-512, 6 × 16 with AVX2),
//!   one weight broadcast and two column vectors a step of K
//! ```
//! The columns of every image in the batch are numbered one after another, so that small
//! outputs (7×7) of several images fill the tiles together. A tile that straddles two images,
//! or the last one, is stored in pieces. The bias, the activation and a residual are applied
//! as the accumulators are stored (`act(acc + b + r)`), so the output is written once.
//!
//! The tests hold it to the naive loop nest ([`super::conv::conv2d_fwd_naive`]). The ops run
//! 1×1 convolutions through it on the inference path, where the weights are packed once
//! (measured: for 3×3 windows, unfolding the input 32 columns at a time costs more than
//! im2col + the GEMM crate).

use rayon::prelude::*;

use super::conv::{im2col_channel, Conv2dGeom};
use super::winograd::Tile;
use super::{copy_run, SendPtr};
use crate::ops::conv::Activation;

/// The vector width this CPU gives the packed kernel, or None (then callers use the GEMM crate).
pub(super) fn width() -> Option<Width> {
    #[cfg(target_arch = "x86_64")]
    match super::simd::level_name() {
        "avx512" => return Some(Width::Avx512),
        "avx2" => return Some(Width::Avx2),
        _ => {}
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    Avx512,
    Avx2,
}

impl Width {
    /// f32 lanes of a vector.
    pub(super) fn lanes(self) -> usize {
        match self {
            Width::Avx512 => 16,
            Width::Avx2 => 8,
        }
    }
    /// Rows of a weight panel (the micro-kernel's broadcasts).
    fn mr(self) -> usize {
        match self {
            Width::Avx512 => 14,
            Width::Avx2 => 6,
        }
    }
    fn nr(self) -> usize {
        2 * self.lanes()
    }
}

/// A convolution's weights `(O, C, KH, KW)` (one group) in the layout of the kernel that runs
/// it, made once for weights that do not change: packed into the micro-kernel's panels for the
/// vector width of this CPU ([`PackedWeights::pack`], 1×1 convolutions), or transformed for a
/// Winograd tile ([`PackedWeights::winograd`], 3×3 convolutions).
#[derive(Clone, Debug)]
pub struct PackedWeights {
    kind: Kind,
    m: usize,
    k: usize,
    data: Vec<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `m × k` in panels of the width's MR rows, k-major.
    Panels(Width),
    /// `m × k` in blocks of two vectors' rows (output channels), k-major, for the row kernel
    /// ([`super::rowconv`]).
    Rows(Width),
    /// U[ξ][o][c] for the tile (`m` = O, `k` = C).
    Winograd(Tile),
}

impl PackedWeights {
    /// Pack the row-major `m × k` matrix `w`. None where the CPU has no AVX2 (or `AICS_SIMD`
    /// says `base`); panics unless `w` holds `m·k` values.
    pub fn pack(w: &[f32], m: usize, k: usize) -> Option<PackedWeights> {
        assert_eq!(w.len(), m * k, "packed weights: {m}x{k} from {}", w.len());
        let width = width()?;
        Some(PackedWeights {
            kind: Kind::Panels(width),
            m,
            k,
            data: panels(w, m, k, width.mr()),
        })
    }

    /// Pack the row-major `m × k` matrix `w` (a convolution's weights, one group) for the row
    /// kernel ([`super::rowconv`]): blocks of two vectors' rows, zeros past `m`. None where the
    /// CPU has no AVX2; panics unless `w` holds `m·k` values.
    pub fn pack_rows(w: &[f32], m: usize, k: usize) -> Option<PackedWeights> {
        assert_eq!(w.len(), m * k, "row weights: {m}x{k} from {}", w.len());
        let width = width()?;
        Some(PackedWeights {
            kind: Kind::Rows(width),
            m,
            k,
            data: panels(w, m, k, 2 * width.lanes()),
        })
    }

    /// The vector lanes of row-kernel weights packed for this CPU's width, if these are such.
    pub fn rows_lanes(&self) -> Option<usize> {
        match self.kind {
            Kind::Rows(w) if width() == Some(w) => Some(w.lanes()),
            _ => None,
        }
    }

    /// The packed values.
    pub(super) fn data(&self) -> &[f32] {
        &self.data
    }

    /// The 3×3 filters `wt` (O, C, 3, 3) transformed for Winograd tile `tile`
    /// ([`super::winograd::transform_filters`]). Panics unless `wt` holds O·C·9 values.
    pub fn winograd(wt: &[f32], o: usize, c: usize, tile: Tile) -> PackedWeights {
        PackedWeights {
            kind: Kind::Winograd(tile),
            m: o,
            k: c,
            data: super::winograd::transform_filters(wt, o, c, tile),
        }
    }

    /// The Winograd tile these filters were transformed for, if they were.
    pub fn winograd_tile(&self) -> Option<Tile> {
        match self.kind {
            Kind::Winograd(t) => Some(t),
            Kind::Panels(_) | Kind::Rows(_) => None,
        }
    }

    /// The transformed filters, U[ξ][o][c], if these are Winograd filters.
    pub fn winograd_filters(&self) -> Option<&[f32]> {
        self.winograd_tile().map(|_| &self.data[..])
    }

    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.m
    }
    /// Columns (input channels × kernel area; input channels for Winograd filters).
    pub fn depth(&self) -> usize {
        self.k
    }
    /// Whether these are panels packed for the vector width the kernels use now.
    pub fn usable(&self) -> bool {
        matches!(self.kind, Kind::Panels(w) if width() == Some(w))
    }
}

/// The row-major `m × k` matrix `w` in panels of `mr` rows, k-major, zeros past `m`:
/// `out[(panel·k + kk)·mr + r] = w[panel·mr + r, kk]`.
fn panels(w: &[f32], m: usize, k: usize, mr: usize) -> Vec<f32> {
    let mut data = vec![0f32; m.div_ceil(mr) * k * mr];
    data.par_chunks_mut(k * mr)
        .enumerate()
        .for_each(|(p, panel)| {
            let rows = mr.min(m - p * mr);
            let w = &w[p * mr * k..];
            for (kk, dst) in panel.chunks_exact_mut(mr).enumerate() {
                for (r, d) in dst[..rows].iter_mut().enumerate() {
                    *d = w[r * k + kk];
                }
            }
        });
    data
}

/// What the output pass adds and applies: `act(acc + bias[row] + residual)`.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

impl Epilogue<'_> {
    /// Panics unless the bias holds `o` values, the residual `len` (the whole output), and a
    /// leaky slope is positive and finite: the kernels read them through raw pointers.
    pub(super) fn check(&self, kernel: &str, o: usize, len: usize) {
        if let Some(b) = self.bias {
            assert_eq!(b.len(), o, "{kernel}: bias length");
        }
        if let Some(r) = self.residual {
            assert_eq!(r.len(), len, "{kernel}: residual length");
        }
        if let Activation::LeakyRelu(s) = self.act {
            assert!(s > 0.0 && s.is_finite(), "{kernel}: leaky slope {s}");
        }
    }
}

/// A piece of a tile inside one image: columns `off..off+len` of the tile are output positions
/// `q0..q0+len` of image `img`.
#[derive(Clone, Copy, Default)]
struct Seg {
    img: usize,
    q0: usize,
    off: usize,
    len: usize,
}

/// The pieces of the columns `c0..c0+w` (numbered across images of `p` positions each).
fn segments(c0: usize, w: usize, p: usize, out: &mut Vec<Seg>) {
    out.clear();
    let mut c = c0;
    while c < c0 + w {
        let (img, q0) = (c / p, c % p);
        let len = (p - q0).min(c0 + w - c);
        out.push(Seg {
            img,
            q0,
            off: c - c0,
            len,
        });
        c += len;
    }
}

/// `y = act(conv(x, W) + bias + residual)` for a convolution with one group, through the packed
/// weights. `y` is (N, O, OH, OW) and fully written. Panics if the packing does not fit `g` or
/// was made for another vector width (check [`PackedWeights::usable`]).
pub fn conv2d_fwd(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue, y: &mut [f32]) {
    assert_eq!(y.len(), g.n * g.o * g.ohw(), "packed conv: output length");
    // SAFETY: `y` holds the whole output.
    unsafe { run(x, w, g, epi, y.as_mut_ptr()) }
}

/// [`conv2d_fwd`] into a new vector, which is never filled with zeros first: the kernel writes
/// every element (the first block of K stores every tile) before it reads any back.
pub fn conv2d_fwd_new(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue) -> Vec<f32> {
    // SAFETY: `run` writes all N·O·OH·OW elements (it panics before writing anything on a bad
    // argument, and the vector is then dropped empty).
    unsafe {
        super::filled(g.n * g.o * g.ohw(), |y| {
            run(x, w, g, epi, y.as_mut_ptr() as *mut f32)
        })
    }
}

/// # Safety
/// `y` must be valid for writes (and reads of what was written) of the N·O·OH·OW output.
unsafe fn run(x: &[f32], w: &PackedWeights, g: &Conv2dGeom, epi: Epilogue, y: *mut f32) {
    assert!(
        g.groups == 1 && w.m == g.o && w.k == g.ckk() && w.usable(),
        "packed conv: weights {}x{} for {:?}",
        w.m,
        w.k,
        g
    );
    g.check(x.len(), g.o * g.ckk());
    let p = g.ohw();
    epi.check("packed conv", g.o, g.n * g.o * p);
    let Kind::Panels(width) = w.kind else {
        unreachable!("`usable` was checked: panels")
    };
    let (mr, nr, k) = (width.mr(), width.nr(), w.k);
    let ncols = g.n * p;
    if ncols == 0 || g.o == 0 {
        return;
    }
    let tiles = ncols.div_ceil(nr);
    let panels = g.o.div_ceil(mr);
    // Tasks: ranges of tiles, and ranges of panels where there are too few tiles to keep every
    // thread busy (then each task packs its tiles itself; packing is 1/M of the multiply-adds).
    let threads = rayon::current_num_threads().max(1);
    let macs = g.o * k * ncols;
    let target = if macs < 1 << 20 { 1 } else { 4 * threads };
    // Every task over a range of tiles reads all its panels' weights, and every task over a
    // range of panels packs all its tiles: choose the split that moves the least data (the
    // weights of a layer at batch 1 and 7×7 are read from memory, at 49 uses a weight).
    let (a_size, b_size) = (g.o * k, k * ncols);
    let (tile_chunks, panel_chunks) = (1..=target.min(tiles))
        .map(|tc| (tc, panels.min(target.div_ceil(tc))))
        .filter(|&(tc, pc)| tc * pc >= target.min(tiles * panels))
        .min_by_key(|&(tc, pc)| tc * a_size + pc * b_size)
        .unwrap_or((1, 1));
    // K is cut into blocks of whole input channels (KC ≈ 256 rows) so that a block of a weight
    // panel (14 × KC) stays in L1 while the tiles of a group stream from L2; the accumulators
    // go through the output between blocks.
    let kk = g.kk();
    let cpb = (KC / kk).max(1);
    let blocks = g.c.div_ceil(cpb);
    let kc_max = cpb * kk;
    // tiles packed together: one block of a weight panel is read once for all of them
    let group = ((1usize << 19) / (4 * kc_max * nr)).clamp(1, 16);
    let yp = SendPtr(y);
    let run = |task: usize| {
        let (tc, pc) = (task / panel_chunks, task % panel_chunks);
        let (t0, t1) = (tc * tiles / tile_chunks, (tc + 1) * tiles / tile_chunks);
        let (p0, p1) = (pc * panels / panel_chunks, (pc + 1) * panels / panel_chunks);
        let slot = kc_max * nr;
        let group = group.min(t1 - t0);
        SCRATCH.with_borrow_mut(|buf| {
            // every element a tile reads is written by `pack_tile` first
            if buf.len() < group * slot + 16 {
                *buf = vec![0f32; group * slot + 16];
            }
            // 64-byte aligned start
            let a0 = buf.as_ptr().align_offset(64).min(16);
            let bt = &mut buf[a0..a0 + group * slot];
            let mut group_segs: Vec<Vec<Seg>> = vec![Vec::new(); group];
            for blk in 0..blocks {
                let (c0, c1) = (blk * cpb, ((blk + 1) * cpb).min(g.c));
                let (k0, kc) = (c0 * kk, (c1 - c0) * kk);
                let mut t = t0;
                while t < t1 {
                    let gn = group.min(t1 - t);
                    for (j, segs_j) in group_segs.iter_mut().enumerate().take(gn) {
                        let col0 = (t + j) * nr;
                        let wcols = nr.min(ncols - col0);
                        segments(col0, wcols, p, segs_j);
                        pack_tile(
                            x,
                            g,
                            c0..c1,
                            segs_j,
                            wcols,
                            nr,
                            &mut bt[j * slot..(j + 1) * slot],
                        );
                    }
                    let body = |panel: usize, j: usize| {
                        let a = &w.data[(panel * k + k0) * mr..(panel * k + k0 + kc) * mr];
                        let rows = mr.min(g.o - panel * mr);
                        let wcols = nr.min(ncols - (t + j) * nr);
                        let out = Out {
                            y: &yp,
                            m0: panel * mr,
                            rows,
                            o: g.o,
                            p,
                            segs: &group_segs[j],
                            epi,
                            first: blk == 0,
                            last: blk + 1 == blocks,
                        };
                        // SAFETY: the width was checked to be this CPU's (`usable`); the tile's
                        // columns and the panel's rows belong to this task alone, and `Out`
                        // reads and writes only inside the output (N, O, P).
                        unsafe { tile(width, kc, a, &bt[j * slot..], wcols, &out) };
                    };
                    for panel in p0..p1 {
                        for j in 0..gn {
                            body(panel, j);
                        }
                    }
                    t += gn;
                }
            }
        })
    };
    let tasks = tile_chunks * panel_chunks;
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

thread_local! {
    /// Each thread's packed tiles, kept from call to call.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows of the unfolded input in one block of K (rounded down to whole input channels).
const KC: usize = 256;

/// Pack the input channels `chans` of the columns `segs` (one tile, `wcols` ≤ `nr` wide) of the
/// unfolded input into `bt` (rows of `nr`, or of `nr/2` when `wcols` fits in one vector), zeros
/// past `wcols`.
fn pack_tile(
    x: &[f32],
    g: &Conv2dGeom,
    chans: std::ops::Range<usize>,
    segs: &[Seg],
    wcols: usize,
    nr: usize,
    bt: &mut [f32],
) {
    let ld = tile_stride(wcols, nr);
    let (chw, hw, kk) = (g.c * g.hw(), g.hw(), g.kk());
    let rows = chans.len() * kk;
    if wcols < ld {
        for row in bt[..rows * ld].chunks_mut(ld) {
            row[wcols..].fill(0.0);
        }
    }
    let pointwise = g.is_pointwise();
    for s in segs {
        let xn = &x[s.img * chw..(s.img + 1) * chw];
        if pointwise {
            // the rows are the input's channels as they are
            for (cl, c) in chans.clone().enumerate() {
                copy_run(
                    &mut bt[cl * ld + s.off..][..s.len],
                    &xn[c * hw + s.q0..][..s.len],
                );
            }
            continue;
        }
        for (cl, c) in chans.clone().enumerate() {
            im2col_channel(
                &xn[c * hw..(c + 1) * hw],
                g,
                s.q0,
                s.len,
                &mut bt[cl * kk * ld + s.off..],
                ld,
            );
        }
    }
}

/// The row stride of a packed tile `wcols` wide: one vector's lanes when it fits, else two.
fn tile_stride(wcols: usize, nr: usize) -> usize {
    if wcols <= nr / 2 {
        nr / 2
    } else {
        nr
    }
}

/// Where a tile's accumulators go.
struct Out<'a> {
    y: &'a SendPtr<f32>,
    m0: usize,
    rows: usize,
    o: usize,
    p: usize,
    segs: &'a [Seg],
    epi: Epilogue<'a>,
    /// start from zero (else from the partial sums stored in the output)
    first: bool,
    /// apply the epilogue (else store the partial sums as they are)
    last: bool,
}

/// # Safety
/// The CPU has `width`'s instructions; `a` holds a panel (K·MR), `b` a packed tile; `out`'s
/// rows and segments lie inside the output and belong to the caller alone.
unsafe fn tile(width: Width, k: usize, a: &[f32], b: &[f32], wcols: usize, out: &Out) {
    #[cfg(target_arch = "x86_64")]
    let one = wcols <= width.lanes(); // one vector's columns (see `tile_stride`)
    match width {
        Width::Avx512 => {
            if one {
                x86::tile512::<1>(k, a.as_ptr(), b.as_ptr(), out)
            } else {
                x86::tile512::<2>(k, a.as_ptr(), b.as_ptr(), out)
            }
        }
        Width::Avx2 => {
            if one {
                x86::tile256::<1>(k, a.as_ptr(), b.as_ptr(), out)
            } else {
                x86::tile256::<2>(k, a.as_ptr(), b.as_ptr(), out)
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (width, k, a, b, wcols, out);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::vector::{finish, ActConsts, Vector};
    use super::{Activation, Out};

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn tile512<const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        out: &Out,
    ) {
        tile_generic::<__m512, 14, NV>(k, a, b, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile256<const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        out: &Out,
    ) {
        tile_generic::<__m256, 6, NV>(k, a, b, out)
    }

    /// `MR × NV·L` accumulators over `k` steps, then the output pass.
    #[inline(always)]
    unsafe fn tile_generic<V: Vector, const MR: usize, const NV: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        out: &Out,
    ) {
        let ld = NV * V::L;
        let mut acc = [[V::zero(); NV]; MR];
        if !out.first {
            load::<V, MR, NV>(&mut acc, out);
        }
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k {
            let mut bv = [V::zero(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = V::load(bp.add(v * V::L));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = V::splat(*ap.add(r));
                for v in 0..NV {
                    row[v] = V::fma(av, bv[v], row[v]);
                }
            }
            ap = ap.add(MR);
            bp = bp.add(ld);
        }
        store::<V, MR, NV>(&acc, out);
    }

    /// The partial sums of an earlier block of K, from the output.
    #[inline(always)]
    unsafe fn load<V: Vector, const MR: usize, const NV: usize>(
        acc: &mut [[V; NV]; MR],
        out: &Out,
    ) {
        let whole = out.segs.len() == 1 && out.segs[0].len == NV * V::L;
        let mut spill = [0f32; 32];
        for (r, row) in acc.iter_mut().enumerate().take(out.rows) {
            let m = out.m0 + r;
            if whole {
                let s = out.segs[0];
                let src = out.y.get().add((s.img * out.o + m) * out.p + s.q0);
                for (v, x) in row.iter_mut().enumerate() {
                    *x = V::load(src.add(v * V::L));
                }
                continue;
            }
            for s in out.segs {
                let src = out.y.get().add((s.img * out.o + m) * out.p + s.q0);
                std::ptr::copy_nonoverlapping(src, spill.as_mut_ptr().add(s.off), s.len);
            }
            for (v, x) in row.iter_mut().enumerate() {
                *x = V::load(spill.as_ptr().add(v * V::L));
            }
        }
    }

    #[inline(always)]
    unsafe fn store<V: Vector, const MR: usize, const NV: usize>(acc: &[[V; NV]; MR], out: &Out) {
        let epi = out.epi;
        let (act, bias, residual) = if out.last {
            (epi.act, epi.bias, epi.residual)
        } else {
            (Activation::Identity, None, None)
        };
        let consts = ActConsts::<V>::new(act);
        let bias_of = |r: usize| bias.map(|b| b[out.m0 + r]);
        let whole = out.segs.len() == 1 && out.segs[0].len == NV * V::L;
        let mut spill = [0f32; 32];
        for (r, row) in acc.iter().enumerate().take(out.rows) {
            let m = out.m0 + r;
            if whole {
                let s = out.segs[0];
                let at = (s.img * out.o + m) * out.p + s.q0;
                let dst = out.y.get().add(at);
                for (v, &x) in row.iter().enumerate() {
                    let res = residual.map(|rs| rs.as_ptr().add(at + v * V::L));
                    finish(x, bias_of(r), &consts, dst.add(v * V::L), res, V::L);
                }
                continue;
            }
            for (v, &x) in row.iter().enumerate() {
                x.store(spill.as_mut_ptr().add(v * V::L));
            }
            for s in out.segs {
                let at = (s.img * out.o + m) * out.p + s.q0;
                let dst = out.y.get().add(at);
                let mut j = 0;
                while j < s.len {
                    let n = (s.len - j).min(V::L);
                    let x = V::load_n(spill.as_ptr().add(s.off + j), n);
                    let res = residual.map(|rs| rs.as_ptr().add(at + j));
                    finish(x, bias_of(r), &consts, dst.add(j), res, n);
                    j += n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_images() {
        let mut s = Vec::new();
        segments(30, 32, 49, &mut s);
        let got: Vec<_> = s.iter().map(|s| (s.img, s.q0, s.off, s.len)).collect();
        assert_eq!(got, vec![(0, 30, 0, 19), (1, 0, 19, 13)]);
        segments(0, 5, 2, &mut s);
        let got: Vec<_> = s.iter().map(|s| (s.img, s.q0, s.off, s.len)).collect();
        assert_eq!(got, vec![(0, 0, 0, 2), (1, 0, 2, 2), (2, 0, 4, 1)]);
    }
}
