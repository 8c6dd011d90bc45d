//! 2-D convolution kernels: forward, backward-data and backward-weight, as im2col + GEMM, with
//! the direct loop nests beside them as the reference. Transposed convolution reuses the same
//! three kernels with the roles of input and output swapped.
//!
//! GEMM shapes, per sample and group g (G groups, Cg = C/G, Og = O/G, CKK = Cg·KH·KW, P = OH·OW):
//! ```text
//!   weight  W[g]   (Og, CKK)          row-major slice of [O, Cg, KH, KW]
//!   col     col[g] (CKK, P)           im2col of the input channels of group g
//!   forward Y[g]   (Og, P)  = W[g] · col[g]
//!   dW      dW[g]  (Og, CKK) += dY[g] · col[g]ᵀ
//!   dX      dcol   (CKK, P) = W[g]ᵀ · dY[g], then col2im (adds overlapping windows)
//! ```
//! The output columns P are cut into blocks so that one block of `col` stays in cache and so
//! that a single image still spreads over all threads.

use rayon::prelude::*;

use super::gemm::{gemm, gemm_strided, Mat};
use super::{copy_padded, Scratch, SendPtr, PAR_THRESHOLD};
use crate::dtype::Float;

/// Geometry of one conv2d call: every size and output-size formula lives here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

/// `floor((i + 2p - d(k-1) - 1) / s) + 1`, or None when the window does not fit.
pub fn conv_out_size(i: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let eff = d * (k.max(1) - 1) + 1;
    if s == 0 || i + 2 * p < eff {
        return None;
    }
    Some((i + 2 * p - eff) / s + 1)
}

impl Conv2dGeom {
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    pub fn og(&self) -> usize {
        self.o / self.groups
    }
    pub fn kk(&self) -> usize {
        self.kh * self.kw
    }
    pub fn ckk(&self) -> usize {
        self.cg() * self.kk()
    }
    pub fn hw(&self) -> usize {
        self.h * self.w
    }
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.o * self.ohw() * self.ckk()
    }
    /// A 1×1 convolution of one group on 1×1 maps: a fully connected layer over the batch.
    pub(crate) fn is_dense(&self) -> bool {
        self.is_pointwise() && self.groups == 1 && self.h == 1 && self.w == 1
    }
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
    /// Panics unless `x` (N, C, H, W) and `wt` (O, C/G, KH, KW) have this geometry's sizes and
    /// the geometry is consistent (groups divide both channel counts, OH and OW follow from the
    /// input, kernel, stride, padding and dilation). The kernels index through raw pointers on
    /// the strength of this check, so every public kernel makes it once per call.
    pub fn check(&self, x: usize, wt: usize) {
        assert!(
            self.is_consistent(),
            "conv2d: inconsistent geometry {self:?}"
        );
        assert!(
            x == self.n * self.c * self.hw() && wt == self.o * self.ckk(),
            "conv2d: input of {x} and weight of {wt} elements for {self:?}"
        );
    }
    /// Whether the derived sizes follow from the others (see [`Conv2dGeom::check`]).
    pub fn is_consistent(&self) -> bool {
        self.groups > 0
            && self.c.is_multiple_of(self.groups)
            && self.o.is_multiple_of(self.groups)
            && self.kh > 0
            && self.kw > 0
            && self.dh > 0
            && self.dw > 0
            && conv_out_size(self.h, self.kh, self.sh, self.ph, self.dh) == Some(self.oh)
            && conv_out_size(self.w, self.kw, self.sw, self.pw, self.dw) == Some(self.ow)
    }
    /// How the work is cut into tasks for a pool of `threads` workers.
    /// A block of `col` is at most about 16 MB of f32 (measured best on the 3×3 256-channel
    /// workloads), or 1 MB when a group has at most 64 output channels: there the GEMM does
    /// little work per unfolded element and the block is better written and read in L2 (32 → 64
    /// channels, stride 2, at 512²: 24 ms instead of 32–38); there are enough tasks to keep every thread busy; and small images are grouped
    /// several to a task so that each GEMM is large enough to run at full speed.
    fn tasks(&self, threads: usize) -> TaskLayout {
        const SMALL: usize = 1 << 16;
        let budget: usize = if self.og() <= 64 { 1 << 18 } else { 1 << 22 };
        let p = self.ohw().max(1);
        let threads = threads.max(1);
        let n = self.n.max(1);
        let mut nblk = (self.ckk() * p).div_ceil(budget).max(1);
        if n * nblk < threads {
            nblk = threads.div_ceil(n);
        }
        let nblk = nblk.min(p);
        let nb = p.div_ceil(nblk);
        let nblk = p.div_ceil(nb);
        let mut spt = 1;
        if nblk == 1 && self.ckk() * p < SMALL {
            // group samples, keeping at least two tasks per thread
            spt = (SMALL / (self.ckk() * p)).min(n / (2 * threads)).max(1);
        }
        TaskLayout { spt, nblk, nb }
    }
}

/// How a convolution's work is cut into tasks: `spt` samples per task, `nblk` column blocks
/// per sample, `nb` columns per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TaskLayout {
    spt: usize,
    nblk: usize,
    nb: usize,
}

/// Fill `rows` (KH·KW rows of stride `ld`, nb columns) with the windows of one input channel
/// `xc` (H, W) for the output positions `p0..p0+nb`.
pub(crate) fn im2col_channel<T: Float>(
    xc: &[T],
    g: &Conv2dGeom,
    p0: usize,
    nb: usize,
    rows: &mut [T],
    ld: usize,
) {
    let (h, w) = (g.h as isize, g.w as isize);
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let r = (ki * g.kw + kj) * ld;
            let dst = &mut rows[r..r + nb];
            let off = (kj * g.dw) as isize - g.pw as isize;
            let mut p = p0;
            while p < p0 + nb {
                let (oy, ox0) = (p / g.ow, p % g.ow);
                let seg = (g.ow - ox0).min(p0 + nb - p);
                let d = &mut dst[p - p0..p - p0 + seg];
                let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                if iy < 0 || iy >= h {
                    d.fill(T::zero());
                } else {
                    let xrow = &xc[(iy * w) as usize..((iy + 1) * w) as usize];
                    if g.sw == 1 {
                        copy_padded(xrow, ox0 as isize + off, d);
                    } else {
                        // t in lo..hi reads inside the row; the rest is padding
                        let x0 = ox0 as isize;
                        let first = |bound: isize| {
                            ((bound - off).max(0) as usize).div_ceil(g.sw) as isize - x0
                        };
                        let lo = first(0).clamp(0, d.len() as isize) as usize;
                        let hi = first(w).clamp(lo as isize, d.len() as isize) as usize;
                        d[..lo].fill(T::zero());
                        d[hi..].fill(T::zero());
                        if lo < hi {
                            let start = (((ox0 + lo) * g.sw) as isize + off) as usize;
                            for (v, &x) in
                                d[lo..hi].iter_mut().zip(xrow[start..].iter().step_by(g.sw))
                            {
                                *v = x;
                            }
                        }
                    }
                }
                p += seg;
            }
        }
    }
}

/// The adjoint of [`im2col_channel`]: add `rows` (KH·KW rows of stride `ld`, nb columns) back
/// into the channel `dxc` (H, W).
fn col2im_channel<T: Float>(
    rows: &[T],
    g: &Conv2dGeom,
    p0: usize,
    nb: usize,
    dxc: &mut [T],
    ld: usize,
) {
    let (h, w) = (g.h as isize, g.w as isize);
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let r = (ki * g.kw + kj) * ld;
            let src = &rows[r..r + nb];
            let off = (kj * g.dw) as isize - g.pw as isize;
            let mut p = p0;
            while p < p0 + nb {
                let (oy, ox0) = (p / g.ow, p % g.ow);
                let seg = (g.ow - ox0).min(p0 + nb - p);
                let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                if iy >= 0 && iy < h {
                    let s = &src[p - p0..p - p0 + seg];
                    let xrow = &mut dxc[(iy * w) as usize..((iy + 1) * w) as usize];
                    if g.sw == 1 {
                        let lo = (-off - ox0 as isize).clamp(0, seg as isize) as usize;
                        let hi = (w - off - ox0 as isize).clamp(lo as isize, seg as isize) as usize;
                        let start = ((ox0 + lo) as isize + off) as usize;
                        xrow[start..start + (hi - lo)]
                            .iter_mut()
                            .zip(&s[lo..hi])
                            .for_each(|(d, &v)| *d += v);
                    } else {
                        for (t, &v) in s.iter().enumerate() {
                            let ix = ((ox0 + t) * g.sw) as isize + off;
                            if ix >= 0 && ix < w {
                                xrow[ix as usize] += v;
                            }
                        }
                    }
                }
                p += seg;
            }
        }
    }
}

/// im2col of group `gi` of one sample `xn` (C, H, W) into `buf` (CKK rows of stride `ld`, nb columns).
fn im2col_group<T: Float>(
    xn: &[T],
    g: &Conv2dGeom,
    gi: usize,
    p0: usize,
    nb: usize,
    buf: &mut [T],
    ld: usize,
) {
    let (cg, hw, kk) = (g.cg(), g.hw(), g.kk());
    for cl in 0..cg {
        let c = gi * cg + cl;
        im2col_channel(
            &xn[c * hw..(c + 1) * hw],
            g,
            p0,
            nb,
            &mut buf[cl * kk * ld..],
            ld,
        );
    }
}

/// The columns of one task: samples `s0..s0+ns`, output positions `p0..p0+len`, for group `gi`,
/// as a (CKK, ns·len) matrix in `buf`; sample j occupies columns `j·len..(j+1)·len`.
#[allow(clippy::too_many_arguments)]
fn im2col_task<T: Float>(
    x: &[T],
    g: &Conv2dGeom,
    gi: usize,
    s0: usize,
    ns: usize,
    p0: usize,
    len: usize,
    buf: &mut [T],
    taps: Option<&TapTable>,
) {
    let chw = g.c * g.hw();
    let width = ns * len;
    if let Some(taps) = taps {
        let (cg, hw, kk) = (g.cg(), g.hw(), g.kk());
        // the channel with a zero after it, where the padding's entries point
        let mut xz = vec![T::zero(); hw + 1];
        for j in 0..ns {
            let xn = &x[(s0 + j) * chw..(s0 + j + 1) * chw];
            for cl in 0..cg {
                let c = gi * cg + cl;
                xz[..hw].copy_from_slice(&xn[c * hw..(c + 1) * hw]);
                for t in 0..kk {
                    let at = (cl * kk + t) * width + j * len;
                    taps.gather(t, p0, &xz, &mut buf[at..at + len]);
                }
            }
        }
        return;
    }
    for j in 0..ns {
        let xn = &x[(s0 + j) * chw..(s0 + j + 1) * chw];
        im2col_group(xn, g, gi, p0, len, &mut buf[j * len..], width);
    }
}

/// Where each tap of each output position reads in its input channel, for maps so small that
/// im2col's runs along a row are a few elements each (ResNet's 4×4 and 2×2 maps at 32² input):
/// there a table lookup per element beats a row copy per run.
pub(crate) struct TapTable {
    /// `len` entries per tap: the offset in the channel, or H·W in the padding
    at: Vec<u32>,
    len: usize,
    hw: usize,
}

impl TapTable {
    /// Largest map (output positions) the table is used for.
    pub(crate) const MAX_POSITIONS: usize = 256;

    /// The table of `g`'s output positions, when its maps are small.
    pub(crate) fn small(g: &Conv2dGeom) -> Option<TapTable> {
        let len = g.ohw();
        if g.ohw() > Self::MAX_POSITIONS || g.hw() >= u32::MAX as usize {
            return None;
        }
        let mut at = Vec::with_capacity(g.kk() * len);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                for q in 0..len {
                    let (oy, ox) = (q / g.ow, q % g.ow);
                    let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                    let ix = (ox * g.sw + kj * g.dw) as isize - g.pw as isize;
                    let inside = (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                    at.push(if inside {
                        (iy as usize * g.w + ix as usize) as u32
                    } else {
                        g.hw() as u32
                    });
                }
            }
        }
        Some(TapTable {
            at,
            len,
            hw: g.hw(),
        })
    }

    /// `dst[q] = xz[at]` for tap `t` at the output positions `p0..p0 + dst.len()`, from a
    /// channel `xz` (H·W) with one zero after it, which the padding's entries read.
    #[inline]
    pub(crate) fn gather<T: Float>(&self, t: usize, p0: usize, xz: &[T], dst: &mut [T]) {
        let at = &self.at[t * self.len..(t + 1) * self.len][p0..p0 + dst.len()];
        assert!(xz.len() > self.hw, "tap table: channel");
        for (d, &a) in dst.iter_mut().zip(at) {
            // SAFETY: every entry is at most H·W (built so in `small`), and xz holds H·W + 1.
            *d = unsafe { *xz.get_unchecked(a as usize) };
        }
    }

    /// The adjoint of the gathers: `dxc` (H·W) = the sum over taps of `rows` (KH·KW rows of
    /// stride `ld`, this table's positions) added where each tap read. `dz` is scratch of
    /// H·W + 1 elements; its last one takes the padding's sums.
    pub(crate) fn col2im<T: Float>(&self, rows: &[T], ld: usize, dz: &mut [T], dxc: &mut [T]) {
        let taps = self.at.len() / self.len.max(1);
        assert!(
            dz.len() > self.hw
                && dxc.len() == self.hw
                && (taps == 0 || rows.len() >= (taps - 1) * ld + self.len),
            "tap table: rows or channel"
        );
        dz.fill(T::zero());
        for t in 0..taps {
            let src = &rows[t * ld..t * ld + self.len];
            for (&v, &a) in src.iter().zip(&self.at[t * self.len..(t + 1) * self.len]) {
                // SAFETY: every entry is at most H·W (built so in `small`); dz holds H·W + 1.
                unsafe { *dz.get_unchecked_mut(a as usize) += v };
            }
        }
        dxc.copy_from_slice(&dz[..self.hw]);
    }
}

/// Rows and columns of the zero-bordered plane that the taps of `g` read, with the input
/// at (PH, PW) in it: the extent of every tap over every output position.
fn bordered_plane(g: &Conv2dGeom) -> (usize, usize) {
    (
        (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1,
        (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1,
    )
}

/// The adjoint of im2col for one channel of a map whose output columns step by one input
/// column (`sw == 1`): each tap's rows are added, a run of OW at a time, into a zeroed plane
/// with the padding around the input ([`bordered_plane`]), whose interior is then `dxc`.
/// Every element sums its taps in tap order, so the sums are the scatter's, bit for bit, in
/// a few vector adds per output row instead of one scalar add per tap and position. `pad` is
/// scratch of at least the bordered plane's size.
fn col2im_bordered<T: Float>(rows: &[T], ld: usize, g: &Conv2dGeom, pad: &mut [T], dxc: &mut [T]) {
    let (hp, wp) = bordered_plane(g);
    let (oh, ow) = (g.oh, g.ow);
    assert!(
        g.sw == 1
            && pad.len() >= hp * wp
            && dxc.len() == g.hw()
            && rows.len() >= (g.kk() - 1) * ld + oh * ow,
        "col2im: bordered plane, rows or channel"
    );
    let pad = &mut pad[..hp * wp];
    pad.fill(T::zero());
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let src = &rows[(ki * g.kw + kj) * ld..][..oh * ow];
            for (oy, s) in src.chunks_exact(ow).enumerate() {
                let at = (oy * g.sh + ki * g.dh) * wp + kj * g.dw;
                for (d, &v) in pad[at..at + ow].iter_mut().zip(s) {
                    *d += v;
                }
            }
        }
    }
    for (iy, row) in dxc.chunks_exact_mut(g.w).enumerate() {
        let py = iy + g.ph;
        for (ix, d) in row.iter_mut().enumerate() {
            let px = ix + g.pw;
            // (inputs past the last window are read by no tap)
            *d = if py < hp && px < wp {
                pad[py * wp + px]
            } else {
                T::zero()
            };
        }
    }
}

/// Gather dY of a task's samples for group `gi` into a (Og, ns·len) matrix.
#[allow(clippy::too_many_arguments)]
fn gather_dy<T: Float>(
    dy: &[T],
    g: &Conv2dGeom,
    gi: usize,
    s0: usize,
    ns: usize,
    p0: usize,
    len: usize,
    out: &mut [T],
) {
    let (og, p) = (g.og(), g.ohw());
    let width = ns * len;
    for o in 0..og {
        for j in 0..ns {
            let src = &dy[((s0 + j) * g.o + gi * og + o) * p + p0..][..len];
            out[o * width + j * len..o * width + (j + 1) * len].copy_from_slice(src);
        }
    }
}

/// Number of partial weight-gradient sums in the backward pass (fixed, for reproducibility).
const PARTIALS: usize = 16;

/// Fewest output columns (summed over) per partial weight gradient, where there are few.
const PART_COLUMNS: usize = 256;

/// `a·b` (m×k times k×n) as a new row-major matrix, the GEMM sharing the pool's threads (for
/// the dense convolutions: 1×1 kernels on 1×1 maps).
fn product<T: Float>(m: usize, n: usize, k: usize, a: Mat<T>, b: Mat<T>) -> Vec<T> {
    let mut c = vec![T::zero(); m * n];
    gemm(m, n, k, a, b, &mut c, false, true);
    c
}

/// Forward: `x` (N, C, H, W), `wt` (O, C/G, KH, KW) → `y` (N, O, OH, OW), no bias.
///
/// The unfolded input is not kept for the weight gradient, which unfolds it again: kept
/// columns live until the backward pass reaches their layer, so over a network they add up
/// (ResNet-18's training step at batch 64 on 32×32 held about 110 MB of them, a third of its
/// peak; LeNet-5's 15 MB of 33), and unfolding again cost no time that alternated runs of those
/// steps could measure.
pub fn conv2d_fwd<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), wt.len());
    if g.is_dense() {
        // a fully connected layer: Y (N, O) = X (N, C) · Wᵀ, one GEMM over the whole batch
        let (n, o, c) = (g.n, g.o, g.c);
        return product(n, o, c, Mat::rm(x, c), Mat::rm_t(wt, c));
    }
    let (ckk, og, p) = (g.ckk(), g.og(), g.ohw());
    // Every output element is written once below, through the pointer, so the vector starts
    // uninitialised and gets its length at the end.
    let ylen = g.n * g.o * p;
    let mut y: Vec<T> = Vec::with_capacity(ylen);
    let TaskLayout { spt, nblk, nb } = g.tasks(rayon::current_num_threads());
    let direct = g.is_pointwise() && spt == 1; // the input itself is the column matrix
    let nchunks = g.n.div_ceil(spt);
    let yp = SendPtr(y.as_mut_ptr());
    let taps = if direct { None } else { TapTable::small(g) };
    (0..nchunks * nblk).into_par_iter().for_each_init(
        || {
            (
                Scratch::<T>::new(if direct { 0 } else { ckk * spt * nb }),
                Scratch::<T>::new(if spt > 1 { og * spt * nb } else { 0 }),
            )
        },
        |(buf, tmp), task| {
            let (ci, bi) = (task / nblk, task % nblk);
            let (s0, p0) = (ci * spt, bi * nb);
            let ns = spt.min(g.n - s0);
            let len = nb.min(p - p0);
            let width = ns * len;
            for gi in 0..g.groups {
                let wg = Mat::rm(&wt[gi * og * ckk..], ckk);
                let col = if direct {
                    Mat {
                        data: &x[(s0 * g.c + gi * ckk) * p + p0..],
                        rs: p,
                        cs: 1,
                    }
                } else {
                    let b = &mut buf[..ckk * width];
                    im2col_task(x, g, gi, s0, ns, p0, len, b, taps.as_ref());
                    Mat::rm(&buf[..], width)
                };
                if spt == 1 {
                    // SAFETY: task (ci, bi) alone writes rows gi·Og.. of sample s0, columns p0..p0+len.
                    unsafe {
                        gemm_strided(
                            og,
                            len,
                            ckk,
                            wg,
                            col,
                            yp.get().add((s0 * g.o + gi * og) * p + p0),
                            p,
                            false,
                        )
                    };
                } else {
                    gemm(
                        og,
                        width,
                        ckk,
                        wg,
                        col,
                        &mut tmp[..og * width],
                        false,
                        false,
                    );
                    for o in 0..og {
                        for j in 0..ns {
                            let src = &tmp[o * width + j * len..o * width + (j + 1) * len];
                            // SAFETY: samples s0..s0+ns belong to this task alone.
                            unsafe {
                                let dst = yp.get().add(((s0 + j) * g.o + gi * og + o) * p + p0);
                                std::ptr::copy_nonoverlapping(src.as_ptr(), dst, len);
                            }
                        }
                    }
                }
            }
        },
    );
    // SAFETY: the tasks (sample chunk × column block) cover every sample and column, and each
    // wrote all O rows of its part, group by group (a GEMM that sets, not adds, or a copy).
    unsafe { y.set_len(ylen) };
    y
}

/// Backward-weight: `dW` (O, C/G, KH, KW) = Σ_n dY_n · col_nᵀ, the input unfolded a block at a
/// time.
pub fn conv2d_bwd_weight<T: Float>(x: &[T], dy: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), g.o * g.ckk());
    assert_eq!(dy.len(), g.n * g.o * g.ohw(), "conv2d backward: dY size");
    if g.is_dense() {
        // dW (O, C) = dYᵀ · X over the whole batch in one GEMM
        let (n, o, c) = (g.n, g.o, g.c);
        return product(o, c, n, Mat::rm_t(dy, o), Mat::rm(x, c));
    }
    let (ckk, og, p) = (g.ckk(), g.og(), g.ohw());
    let TaskLayout { spt, nblk, nb } = g.tasks(rayon::current_num_threads());
    let direct = g.is_pointwise() && spt == 1;
    let wlen = g.o * ckk;
    let tasks = g.n.div_ceil(spt) * nblk;
    // A fixed number of partial sums, each over a fixed set of tasks, added in order: the result
    // does not depend on how rayon schedules the work, so training runs repeat bit for bit.
    // Each partial is a whole dW to zero, fill and add up at the end, so small-map layers with
    // large filters (ResNet's 512×512×3×3 on 4×4 maps: 9.4 MB each) get fewer of them, with
    // at least PART_COLUMNS summed columns each, but never fewer than two (one per core).
    let parts = tasks
        .min(PARTIALS)
        .min((g.n * p).div_ceil(PART_COLUMNS).max(2));
    let taps = if direct { None } else { TapTable::small(g) };
    let partials: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut dw = vec![T::zero(); wlen];
            let mut buf = Scratch::<T>::new(if direct { 0 } else { ckk * spt * nb });
            let mut dyt = Scratch::<T>::new(if spt > 1 { og * spt * nb } else { 0 });
            for task in (part..tasks).step_by(parts) {
                let (ci, bi) = (task / nblk, task % nblk);
                let (s0, p0) = (ci * spt, bi * nb);
                let ns = spt.min(g.n - s0);
                let len = nb.min(p - p0);
                let width = ns * len;
                for gi in 0..g.groups {
                    let dyg = if spt == 1 {
                        Mat {
                            data: &dy[(s0 * g.o + gi * og) * p + p0..],
                            rs: p,
                            cs: 1,
                        }
                    } else {
                        gather_dy(dy, g, gi, s0, ns, p0, len, &mut dyt);
                        Mat::rm(&dyt[..], width)
                    };
                    let colt = if direct {
                        Mat {
                            data: &x[(s0 * g.c + gi * ckk) * p + p0..],
                            rs: 1,
                            cs: p,
                        }
                    } else {
                        im2col_task(x, g, gi, s0, ns, p0, len, &mut buf, taps.as_ref());
                        Mat::rm_t(&buf[..], width)
                    };
                    gemm(
                        og,
                        ckk,
                        width,
                        dyg,
                        colt,
                        &mut dw[gi * og * ckk..(gi + 1) * og * ckk],
                        true,
                        false,
                    );
                }
            }
            dw
        })
        .collect();
    let mut it = partials.into_iter();
    let mut dw = it.next().unwrap_or_else(|| vec![T::zero(); wlen]);
    let rest: Vec<Vec<T>> = it.collect();
    // the partials added in order, element by element, by chunks across the threads
    const CHUNK: usize = 1 << 14;
    let add = |(i, d): (usize, &mut [T])| {
        for part in &rest {
            for (a, &b) in d.iter_mut().zip(&part[i * CHUNK..]) {
                *a += b;
            }
        }
    };
    if wlen * rest.len() >= PAR_THRESHOLD {
        dw.par_chunks_mut(CHUNK).enumerate().for_each(add);
    } else if !rest.is_empty() {
        dw.chunks_mut(CHUNK).enumerate().for_each(add);
    }
    dw
}

/// Largest unfolded gradient block of [`conv2d_bwd_data`] (elements): whole images below it run
/// as one GEMM (smaller blocks cost ResNet-18's 32² backward about 10%).
const BWD_DATA_BLOCK: usize = 1 << 22;

/// Backward-data: `dX` (N, C, H, W) from `dY` (N, O, OH, OW): `dcol` (CKK, P) = W[g]ᵀ · dY[g],
/// then col2im. `dcol` is formed a block of output positions at a time (at most
/// [`BWD_DATA_BLOCK`] elements), so a large kernel on a large image (9×9 over 32 channels at
/// 256²: 648 MB for a whole image) needs no more than 16 MB per thread.
pub fn conv2d_bwd_data<T: Float>(dy: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (ckk, og, p, hw, kk, cg) = (g.ckk(), g.og(), g.ohw(), g.hw(), g.kk(), g.cg());
    let chw = g.c * hw;
    g.check(g.n * g.c * g.hw(), wt.len());
    assert_eq!(dy.len(), g.n * g.o * g.ohw(), "conv2d backward: dY size");
    if g.is_dense() {
        // dX (N, C) = dY (N, O) · W, one GEMM over the whole batch
        let (n, o, c) = (g.n, g.o, g.c);
        return product(n, c, o, Mat::rm(dy, o), Mat::rm(wt, c));
    }
    let mut dx = vec![T::zero(); g.n * chw];
    let threads = rayon::current_num_threads();
    let spt = g.tasks(threads).spt;
    let nb = (BWD_DATA_BLOCK / ckk.max(1)).clamp(1, p.max(1));
    if g.n >= threads {
        // chunks of samples in parallel
        let spt = if g.is_pointwise() { 1 } else { spt };
        let buf_len = match (g.is_pointwise(), spt > 1) {
            (true, _) => 0,
            (false, true) => ckk * spt * p, // grouped samples are small (ckk·P < 2¹⁶)
            (false, false) => ckk * nb,
        };
        // small maps: where output columns step by one and rows hold 8 or more, the columns
        // are added back as runs into a bordered plane; else through a table of where each
        // tap reads
        let small = !g.is_pointwise() && g.ohw() <= TapTable::MAX_POSITIONS;
        let bordered = small && g.sw == 1 && g.ow >= 8;
        let taps = if small && !bordered {
            TapTable::small(g)
        } else {
            None
        };
        let scratch = match (bordered, &taps) {
            (true, _) => {
                let (hp, wp) = bordered_plane(g);
                hp * wp
            }
            (false, Some(_)) => hw + 1,
            (false, None) => 0,
        };
        dx.par_chunks_mut(spt * chw).enumerate().for_each_init(
            || {
                (
                    Scratch::<T>::new(buf_len),
                    Scratch::<T>::new(if spt > 1 { og * spt * p } else { 0 }),
                    Scratch::<T>::new(scratch),
                )
            },
            |(buf, dyt, dz), (ci, dxc)| {
                let s0 = ci * spt;
                let ns = dxc.len() / chw;
                let width = ns * p;
                for gi in 0..g.groups {
                    let wgt = Mat::rm_t(&wt[gi * og * ckk..], ckk);
                    if g.is_pointwise() {
                        let dyg = Mat::rm(&dy[(s0 * g.o + gi * og) * p..], p);
                        let dxg = &mut dxc[gi * cg * hw..(gi + 1) * cg * hw];
                        gemm(ckk, p, og, wgt, dyg, dxg, false, false);
                    } else if spt > 1 {
                        gather_dy(dy, g, gi, s0, ns, 0, p, dyt);
                        let dyg = Mat::rm(&dyt[..], width);
                        gemm(
                            ckk,
                            width,
                            og,
                            wgt,
                            dyg,
                            &mut buf[..ckk * width],
                            false,
                            false,
                        );
                        for j in 0..ns {
                            for cl in 0..cg {
                                let c = gi * cg + cl;
                                let dxc = &mut dxc[j * chw + c * hw..j * chw + (c + 1) * hw];
                                let rows = &buf[cl * kk * width + j * p..];
                                match &taps {
                                    _ if bordered => col2im_bordered(rows, width, g, dz, dxc),
                                    Some(t) => t.col2im(rows, width, dz, dxc),
                                    None => col2im_channel(rows, g, 0, p, dxc, width),
                                }
                            }
                        }
                    } else {
                        for p0 in (0..p).step_by(nb) {
                            let len = nb.min(p - p0);
                            let dyg = Mat::rm(&dy[(s0 * g.o + gi * og) * p + p0..], p);
                            gemm(ckk, len, og, wgt, dyg, &mut buf[..ckk * len], false, false);
                            for cl in 0..cg {
                                let c = gi * cg + cl;
                                let dxc = &mut dxc[c * hw..(c + 1) * hw];
                                let rows = &buf[cl * kk * len..];
                                match (&taps, p0 == 0 && len == p) {
                                    (_, true) if bordered => col2im_bordered(rows, len, g, dz, dxc),
                                    (Some(t), true) => t.col2im(rows, len, dz, dxc),
                                    _ => col2im_channel(rows, g, p0, len, dxc, len),
                                }
                            }
                        }
                    }
                }
            },
        );
    } else {
        // fewer samples than threads: each GEMM and col2im runs in parallel
        let mut buf = vec![T::zero(); if g.is_pointwise() { 0 } else { ckk * nb }];
        for (ni, dxn) in dx.chunks_mut(chw).enumerate() {
            for gi in 0..g.groups {
                let wgt = Mat::rm_t(&wt[gi * og * ckk..], ckk);
                let dxg = &mut dxn[gi * cg * hw..(gi + 1) * cg * hw];
                if g.is_pointwise() {
                    let dyg = Mat::rm(&dy[(ni * g.o + gi * og) * p..], p);
                    gemm(ckk, p, og, wgt, dyg, dxg, false, true);
                    continue;
                }
                for p0 in (0..p).step_by(nb) {
                    let len = nb.min(p - p0);
                    let dyg = Mat::rm(&dy[(ni * g.o + gi * og) * p + p0..], p);
                    gemm(ckk, len, og, wgt, dyg, &mut buf[..ckk * len], false, true);
                    dxg.par_chunks_mut(hw)
                        .zip(buf.par_chunks(kk * len))
                        .for_each(|(dxc, rows)| col2im_channel(rows, g, p0, len, dxc, len));
                }
            }
        }
    }
    dx
}

/// Reference forward: the direct loop nest, accumulated in f64.
pub fn conv2d_fwd_naive<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), wt.len());
    let mut y = vec![T::zero(); g.n * g.o * g.ohw()];
    for n in 0..g.n {
        for o in 0..g.o {
            let gi = o / g.og();
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = 0.0f64;
                    for cl in 0..g.cg() {
                        let c = gi * g.cg() + cl;
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                if let Some(xi) = tap(g, n, c, oy, ox, ki, kj) {
                                    s += x[xi].as_f64()
                                        * wt[((o * g.cg() + cl) * g.kh + ki) * g.kw + kj].as_f64();
                                }
                            }
                        }
                    }
                    y[((n * g.o + o) * g.oh + oy) * g.ow + ox] = T::from_f64(s);
                }
            }
        }
    }
    y
}

/// Index into x (N, C, H, W) of the tap (ki, kj) of output (oy, ox), or None in the padding.
fn tap(
    g: &Conv2dGeom,
    n: usize,
    c: usize,
    oy: usize,
    ox: usize,
    ki: usize,
    kj: usize,
) -> Option<usize> {
    let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
    let ix = (ox * g.sw + kj * g.dw) as isize - g.pw as isize;
    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
        return None;
    }
    Some(((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize)
}

/// Reference backward: (dX, dW) by the same loop nest as the forward.
pub fn conv2d_bwd_naive<T: Float>(x: &[T], wt: &[T], dy: &[T], g: &Conv2dGeom) -> (Vec<T>, Vec<T>) {
    g.check(x.len(), wt.len());
    assert_eq!(dy.len(), g.n * g.o * g.ohw(), "conv2d backward: dY size");
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; wt.len()];
    for n in 0..g.n {
        for o in 0..g.o {
            let gi = o / g.og();
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let d = dy[((n * g.o + o) * g.oh + oy) * g.ow + ox].as_f64();
                    for cl in 0..g.cg() {
                        let c = gi * g.cg() + cl;
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                if let Some(xi) = tap(g, n, c, oy, ox, ki, kj) {
                                    let wi = ((o * g.cg() + cl) * g.kh + ki) * g.kw + kj;
                                    dx[xi] += d * wt[wi].as_f64();
                                    dw[wi] += d * x[xi].as_f64();
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (
        dx.into_iter().map(T::from_f64).collect(),
        dw.into_iter().map(T::from_f64).collect(),
    )
}
