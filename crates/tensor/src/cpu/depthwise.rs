//! Depthwise 2-D convolution (groups = C_in = C_out, MobileNet's 3×3 layers) as direct loops:
//! each channel is convolved with its own K×K filter, so there is no reduction over channels and
//! im2col + GEMM would be a matrix product with a single row — all memory traffic, no reuse.
//! Here every (sample, channel) plane is one task, and for each filter tap the kernels walk
//! whole output rows, which are contiguous in stride 1 and vectorise. The general im2col
//! kernels in `conv.rs` (and their naive reference) are what these are tested against.

use rayon::prelude::*;

use super::conv::Conv2dGeom;
use super::copy_run;
use crate::dtype::Float;
use crate::ops::conv::{epilogue_plane, Activation};

/// Whether `g` is a depthwise convolution these kernels handle: one group per input channel,
/// each with `O / C` output channels (the channel multiplier; 1 in MobileNet). A convolution of a
/// single input channel (LeNet's first layer on grayscale images) is one with a multiplier of O.
pub fn eligible(g: &Conv2dGeom) -> bool {
    g.groups == g.c && g.c > 0 && g.o.is_multiple_of(g.c) && (g.groups > 1 || g.o > 1)
}

/// Output channels per input channel.
fn multiplier(g: &Conv2dGeom) -> usize {
    g.o / g.c
}

/// The input plane that output plane `plane` (sample · O + output channel) reads.
fn in_plane(g: &Conv2dGeom, plane: usize) -> usize {
    (plane / g.o) * g.c + (plane % g.o) / multiplier(g)
}

/// The zero-bordered phase planes that the kernels copy a plane into (see [`fwd`]): their
/// width `wq` (the wide output's row pitch), the length of one plane, and each tap's
/// (phase, offset into its phase plane). Every phase plane is hq × wq, with a spare row so that
/// the last tap's run stays inside.
struct Phases {
    wq: usize,
    len: usize,
    taps: Vec<(usize, usize)>,
}

impl Phases {
    fn new(g: &Conv2dGeom) -> Phases {
        let (sh, sw) = (g.sh, g.sw);
        let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
        let (wq, hq) = (wp.div_ceil(sw), hp.div_ceil(sh) + 1);
        let taps = (0..g.kh)
            .flat_map(|kh| (0..g.kw).map(move |kw| (kh * g.dh, kw * g.dw)))
            .map(|(dy, dx)| ((dy % sh) * sw + dx % sw, (dy / sh) * wq + dx / sw))
            .collect();
        Phases {
            wq,
            len: hq * wq,
            taps,
        }
    }

    /// Each tap's offset into all the phase planes: phase · plane length + offset.
    fn offsets(&self) -> Vec<usize> {
        self.taps
            .iter()
            .map(|&(ph, off)| ph * self.len + off)
            .collect()
    }
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

/// Forward: `x` (N, C, H, W), `wt` (O, 1, KH, KW) → `y` (N, O, OH, OW), no bias.
///
/// Plane by plane, each tap as one long vector loop: the input plane is copied into a
/// zero-bordered buffer split into the stride's s×s phases (rows and columns q, q + s, …), all
/// of one width `wq`. Output pixel (oy, ox) reads, through tap (kh, kw), element
/// `(oy + kh·dh/s)·wq + ox + kw·dw/s` of phase `(kh·dh mod s, kw·dw mod s)`, so a "wide" output
/// of `oh` rows of `wq` columns gets each tap as `out[i] += w·phase[offset + i]` over all of it
/// (the columns past `ow` are computed and dropped) — no per-row or per-pixel edge cases, even
/// on 7×7 planes. Tasks take runs of planes, so small planes do not drown in scheduling.
pub fn fwd<T: Float>(x: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    fwd_fused(x, wt, g, None, Activation::Identity)
}

/// [`fwd`] with the bias and the activation applied to each plane as it is written:
/// `act(conv(x) + bias[c])` (MobileNet's folded batch norm and ReLU6). Panics unless `bias`
/// holds one value a channel.
pub fn fwd_fused<T: Float>(
    x: &[T],
    wt: &[T],
    g: &Conv2dGeom,
    bias: Option<&[T]>,
    act: Activation,
) -> Vec<T> {
    g.check(x.len(), wt.len());
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            g.o,
            "depthwise conv: bias of {} for {} channels",
            b.len(),
            g.o
        );
    }
    assert!(eligible(g), "depthwise conv: not eligible for {g:?}");
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let (sh, sw) = (g.sh, g.sw);
    let phases = Phases::new(g);
    let (wq, phase_len, taps) = (phases.wq, phases.len, &phases.taps);
    let wide = g.oh * wq;
    let planes = g.n * g.o;
    if ohw == 0 || planes == 0 {
        return vec![T::zero(); planes * ohw];
    }
    // Every output element is written once below, through the pointer (row by row from the
    // wide output), so the vector starts uninitialised and gets its length at the end.
    let mut y: Vec<T> = Vec::with_capacity(planes * ohw);
    let yp = super::SendPtr(y.as_mut_ptr());
    let per_task = (planes / (8 * rayon::current_num_threads()).max(1)).clamp(1, 64);
    let tasks = planes.div_ceil(per_task);
    let epi = bias.is_some() || act != Activation::Identity;
    // the vector kernel's view of the phase planes: each tap's offset into them
    #[cfg(target_arch = "x86_64")]
    let lanes = vector_lanes::<T>();
    #[cfg(target_arch = "x86_64")]
    let offsets = phases.offsets();
    (0..tasks).into_par_iter().for_each(|task| {
        // borders stay zero: only the image's pixels are written, plane after plane; the
        // vector kernel reads up to a vector past the last tap's run (into lanes it drops)
        let slack = 64;
        let mut pad = vec![T::zero(); sh * sw * phase_len + slack];
        let mut out = vec![T::zero(); wide + slack];
        // the input plane in `pad` (output planes of one input channel follow each other)
        let mut filled = None;
        for plane in task * per_task..((task + 1) * per_task).min(planes) {
            let ip = in_plane(g, plane);
            let xp = &x[ip * hw..(ip + 1) * hw];
            let fresh = filled != Some(ip);
            filled = Some(ip);
            let oc = plane % g.o;
            let wc = &wt[oc * kk..(oc + 1) * kk];
            let b = bias.map_or(T::zero(), |b| b[oc]);
            #[cfg(target_arch = "x86_64")]
            if let Some(lanes) = lanes {
                // strides 1 and 2 copied by the vector kernel itself
                let fill = g.sw <= 2;
                if !fill && fresh {
                    super::simd::with_best(
                        #[inline(always)]
                        || fill_phases(xp, g, wq, phase_len, &mut pad),
                    );
                }
                let plane_job = x86::Plane {
                    x: (fill && fresh).then_some(xp.as_ptr() as *const f32),
                    g,
                    phase_len,
                    pad: pad.as_mut_ptr() as *mut f32,
                    taps: &offsets,
                    w: wc.as_ptr() as *const f32,
                    bias: bias.map(|_| b.as_f64() as f32),
                    act,
                    wq,
                    out: out.as_mut_ptr() as *mut f32,
                    // SAFETY: plane `plane` belongs to this task alone.
                    y: unsafe { (yp.get() as *mut f32).add(plane * ohw) },
                };
                // SAFETY: T is f32 (`vector_lanes`), the CPU has the width's instructions, `pad`
                // and `out` hold a run of `wide` from every tap's offset plus the slack, and
                // `y` has the plane's OH·OW elements.
                unsafe {
                    if lanes == 16 {
                        x86::plane512(&plane_job)
                    } else {
                        x86::plane256(&plane_job)
                    }
                }
                continue;
            }
            super::simd::with_best(
                #[inline(always)]
                || {
                    if fresh {
                        fill_phases(xp, g, wq, phase_len, &mut pad);
                    }
                    let out = &mut out[..wide];
                    taps_wide(wc, taps, &pad, phase_len, out);
                    if epi {
                        // over the wide output (its dropped columns too): one pass a plane
                        epilogue_plane(out, b, None, act);
                    }
                    for (r, orow) in out.chunks_exact(wq).enumerate() {
                        let row = &orow[..g.ow];
                        // SAFETY: plane `plane` belongs to this task alone, and its row r
                        // lies inside the planes·OH·OW elements of `y`'s allocation.
                        // (element by element, inlined: a call to memcpy costs more than a
                        // 7- or 14-element row)
                        let dst = unsafe { yp.get().add(plane * ohw + r * g.ow) };
                        for (i, &v) in row.iter().enumerate() {
                            // SAFETY: as above, i < OW.
                            unsafe { dst.add(i).write(v) };
                        }
                    }
                },
            );
        }
    });
    // SAFETY: the tasks cover every plane, and each wrote all OH rows of OW of its planes.
    unsafe { y.set_len(planes * ohw) };
    y
}

/// The f32 lanes of the vector kernel below when `T` is f32 and the CPU has AVX2 or AVX-512
/// (the packed kernels' width), else None (then the portable loops run).
#[cfg(target_arch = "x86_64")]
fn vector_lanes<T: Float>() -> Option<usize> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(super::packed::width)
        .flatten()
        .map(|w| w.lanes())
}

/// The forward pass of one plane in vector registers, f32: the same sums as [`taps_wide`] (a
/// multiply and an add per tap, the taps in order, then the bias and the activation), written
/// straight to the output. Rows at least a vector long are walked vector by vector, four at a
/// time (across rows where rows are short); shorter ones over the wide output (as in [`fwd`]),
/// then copied out row by row with a masked store.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::conv::Conv2dGeom;
    use super::super::vector::{finish, ActConsts, Vector};
    use crate::ops::conv::Activation;

    pub(super) struct Plane<'a> {
        /// the input plane, to copy into `pad` here; None when `pad` holds it already
        pub x: Option<*const f32>,
        pub g: &'a Conv2dGeom,
        pub phase_len: usize,
        /// the phase planes (see [`super::fwd`])
        pub pad: *mut f32,
        /// each tap's offset into `pad`: phase · phase length + row and column offset
        pub taps: &'a [usize],
        /// the plane's filter, one weight a tap
        pub w: *const f32,
        pub bias: Option<f32>,
        pub act: Activation,
        /// the width of a phase plane (the wide output's row pitch)
        pub wq: usize,
        /// scratch for the wide output
        pub out: *mut f32,
        /// the plane's OH × OW output
        pub y: *mut f32,
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn taps_dot512(
        a: *const f32,
        len: usize,
        b: *const f32,
        offsets: &[usize],
        sums: *mut f32,
    ) {
        taps_dot::<__m512>(a, len, b, offsets, sums)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn taps_dot256(
        a: *const f32,
        len: usize,
        b: *const f32,
        offsets: &[usize],
        sums: *mut f32,
    ) {
        taps_dot::<__m256>(a, len, b, offsets, sums)
    }

    /// [`super::taps_dot`] in vectors: `sums[t] = Σ_i a[i]·b[offsets[t] + i]` for `i <
    /// len` (a whole number of vectors), eight taps (four with AVX2) at a time, each load of
    /// `a` serving them all; each sum's lanes are added in order at the end.
    #[inline(always)]
    unsafe fn taps_dot<V: Vector>(
        a: *const f32,
        len: usize,
        b: *const f32,
        offsets: &[usize],
        sums: *mut f32,
    ) {
        let mut t = 0;
        while t < offsets.len() {
            let left = offsets.len() - t;
            let o = |u: usize| offsets[t + u];
            let out = sums.add(t);
            t += if V::L == 16 && left >= 8 {
                let offs = [o(0), o(1), o(2), o(3), o(4), o(5), o(6), o(7)];
                put_sums(dots::<V, 8>(a, len, b, offs), out)
            } else if left >= 4 {
                put_sums(dots::<V, 4>(a, len, b, [o(0), o(1), o(2), o(3)]), out)
            } else if left >= 2 {
                put_sums(dots::<V, 2>(a, len, b, [o(0), o(1)]), out)
            } else {
                put_sums(dots::<V, 1>(a, len, b, [o(0)]), out)
            };
        }
    }

    /// `U` dot products of `a` with `b` from each offset, in registers.
    #[inline(always)]
    unsafe fn dots<V: Vector, const U: usize>(
        a: *const f32,
        len: usize,
        b: *const f32,
        offs: [usize; U],
    ) -> [V; U] {
        let mut acc = [V::zero(); U];
        let mut i = 0;
        while i < len {
            let av = V::load(a.add(i));
            for (s, &off) in acc.iter_mut().zip(&offs) {
                *s = V::fma(av, V::load(b.add(off + i)), *s);
            }
            i += V::L;
        }
        acc
    }

    /// Each vector's lanes added in order into `out[u]`; returns `U`.
    #[inline(always)]
    unsafe fn put_sums<V: Vector, const U: usize>(v: [V; U], out: *mut f32) -> usize {
        let mut lanes = [0f32; 16];
        for (u, s) in v.iter().enumerate() {
            s.store(lanes.as_mut_ptr());
            *out.add(u) = lanes[..V::L].iter().sum();
        }
        U
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn plane512(p: &Plane) {
        plane::<__m512>(p)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn plane256(p: &Plane) {
        plane::<__m256>(p)
    }

    /// `U` vectors of sums, the u-th from position `at[u]` of the wide output on.
    #[inline(always)]
    unsafe fn sums<V: Vector, const U: usize>(p: &Plane, at: [usize; U]) -> [V; U] {
        let mut acc = [V::zero(); U];
        for (t, &off) in p.taps.iter().enumerate() {
            let w = V::splat(*p.w.add(t));
            let src = p.pad.add(off) as *const f32;
            for (a, &at) in acc.iter_mut().zip(&at) {
                *a = a.add(w.mul(V::load(src.add(at))));
            }
        }
        acc
    }

    /// [`super::fill_phases`] for column strides 1 and 2, in vectors: each input row is copied
    /// (stride 1) or split into its even and odd columns (stride 2) with a masked tail.
    #[inline(always)]
    unsafe fn fill<V: Vector>(x: *const f32, p: &Plane) {
        let g = p.g;
        let (sh, sw, l) = (g.sh, g.sw, V::L);
        for iy in 0..g.h {
            let py = iy + g.ph;
            let src = x.add(iy * g.w);
            let row0 = p.pad.add((py % sh) * sw * p.phase_len + (py / sh) * p.wq);
            if sw == 1 {
                let dst = row0.add(g.pw);
                let mut j = 0;
                while j + l <= g.w {
                    V::load(src.add(j)).store(dst.add(j));
                    j += l;
                }
                if j < g.w {
                    V::load_n(src.add(j), g.w - j).store_n(dst.add(j), g.w - j);
                }
            } else {
                // padded column pw + i: phase (pw + i) mod 2, column (pw + i) / 2
                let p0 = g.pw % 2;
                let even_col = row0.add(p0 * p.phase_len + g.pw / 2);
                let odd_col = row0.add((1 - p0) * p.phase_len + g.pw.div_ceil(2));
                let pairs = g.w / 2;
                let mut i = 0;
                while i + l <= pairs {
                    let (e, o) =
                        V::deinterleave(V::load(src.add(2 * i)), V::load(src.add(2 * i + l)));
                    e.store(even_col.add(i));
                    o.store(odd_col.add(i));
                    i += l;
                }
                if i < pairs {
                    let left = 2 * (pairs - i);
                    let a = V::load_n(src.add(2 * i), left.min(l));
                    let b = if left > l {
                        V::load_n(src.add(2 * i + l), left - l)
                    } else {
                        V::zero()
                    };
                    let (e, o) = V::deinterleave(a, b);
                    e.store_n(even_col.add(i), pairs - i);
                    o.store_n(odd_col.add(i), pairs - i);
                }
                if g.w % 2 == 1 {
                    *even_col.add(pairs) = *src.add(g.w - 1);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn plane<V: Vector>(p: &Plane) {
        if let Some(x) = p.x {
            fill::<V>(x, p);
        }
        let a = ActConsts::<V>::new(p.act);
        let (oh, ow) = (p.g.oh, p.g.ow);
        if ow >= V::L {
            // the vectors of every row, four at a time (across rows where rows are short)
            let per_row = ow.div_ceil(V::L);
            let total = oh * per_row;
            // (position in the wide output, in the output, lanes) of vector `i`
            let at = |i: usize| {
                let (r, c) = (i / per_row, (i % per_row) * V::L);
                (r * p.wq + c, r * ow + c, V::L.min(ow - c))
            };
            let mut i = 0;
            while i < total {
                i += match total - i {
                    1 => store_rows::<V, 1>(p, &a, i, at),
                    2 => store_rows::<V, 2>(p, &a, i, at),
                    3 => store_rows::<V, 3>(p, &a, i, at),
                    _ => store_rows::<V, 4>(p, &a, i, at),
                };
            }
        } else {
            run::<V>(p, oh * p.wq);
            for r in 0..oh {
                let v = V::load_n(p.out.add(r * p.wq), ow);
                finish(v, p.bias, &a, p.y.add(r * ow), None, ow);
            }
        }
    }

    /// Vectors `i..i + U` of the plane's rows (`at(i)`: position in the wide output, in the
    /// output, lanes): their sums with the bias and the activation, each stored at its place
    /// in the output. Returns `U`.
    #[inline(always)]
    unsafe fn store_rows<V: Vector, const U: usize>(
        p: &Plane,
        a: &ActConsts<V>,
        i: usize,
        at: impl Fn(usize) -> (usize, usize, usize),
    ) -> usize {
        let ats: [(usize, usize, usize); U] = std::array::from_fn(|u| at(i + u));
        let v = sums::<V, U>(p, ats.map(|t| t.0));
        for (v, (_, to, n)) in v.into_iter().zip(ats) {
            finish(v, p.bias, a, p.y.add(to), None, n);
        }
        U
    }

    /// The sums at positions `0..len` of the wide output into the scratch `out`, in groups of
    /// up to four vectors (independent sums, so the adds of one tap overlap).
    #[inline(always)]
    unsafe fn run<V: Vector>(p: &Plane, len: usize) {
        let chunks = len.div_ceil(V::L);
        let mut c = 0;
        while c < chunks {
            let u = (chunks - c).min(4);
            let j = c * V::L;
            let l = V::L;
            match u {
                4 => put(p, sums::<V, 4>(p, [j, j + l, j + 2 * l, j + 3 * l]), j),
                3 => put(p, sums::<V, 3>(p, [j, j + l, j + 2 * l]), j),
                2 => put(p, sums::<V, 2>(p, [j, j + l]), j),
                _ => put(p, sums::<V, 1>(p, [j]), j),
            }
            c += u;
        }
    }

    #[inline(always)]
    unsafe fn put<V: Vector, const U: usize>(p: &Plane, v: [V; U], j: usize) {
        for (u, v) in v.into_iter().enumerate() {
            v.store(p.out.add(j + u * V::L));
        }
    }
}

/// Copy the plane `xp` into the zero-bordered phase planes `pad` (see [`fwd`]): padded pixel
/// (py, px) goes to phase `(py mod sh, px mod sw)`, row `py / sh`, column `px / sw`.
#[inline(always)]
fn fill_phases<T: Float>(xp: &[T], g: &Conv2dGeom, wq: usize, phase_len: usize, pad: &mut [T]) {
    let (sh, sw) = (g.sh, g.sw);
    for iy in 0..g.h {
        let py = iy + g.ph;
        let src = &xp[iy * g.w..(iy + 1) * g.w];
        let row0 = (py % sh) * sw * phase_len + (py / sh) * wq;
        if sw == 1 {
            copy_run(&mut pad[row0 + g.pw..row0 + g.pw + g.w], src);
        } else if sw == 2 {
            // input columns 2i and 2i + 1 go to the two phases together (one vector loop)
            let p0 = g.pw % 2;
            let (c0, c1) = (g.pw / 2, g.pw.div_ceil(2));
            let pairs = g.w / 2;
            let (lo, hi) = pad.split_at_mut(row0 + phase_len);
            let (a, b) = (&mut lo[row0..], &mut hi[..]);
            // phase p0 takes the even input columns, the other phase the odd ones
            let (even, odd) = if p0 == 0 { (a, b) } else { (b, a) };
            let (even, odd) = (&mut even[c0..c0 + pairs], &mut odd[c1..c1 + pairs]);
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(src.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            if g.w % 2 == 1 {
                let base = row0 + p0 * phase_len + c0 + pairs;
                pad[base] = src[g.w - 1];
            }
        } else {
            for q in 0..sw {
                // padded columns q, q + sw, … that hold image pixels
                let first = if g.pw > q { (g.pw - q).div_ceil(sw) } else { 0 };
                let col = q + first * sw; // its first, ≥ pw
                if col >= g.pw + g.w {
                    continue;
                }
                let count = (g.pw + g.w - col).div_ceil(sw);
                let base = row0 + q * phase_len + first;
                let from = src[col - g.pw..].iter().step_by(sw);
                for (d, &v) in pad[base..base + count].iter_mut().zip(from) {
                    *d = v;
                }
            }
        }
    }
}

/// `out[i] = Σ_tap w[tap]·pad[phase·len + offset + i]` over the wide output, the taps in order,
/// in runs of 64 outputs held in registers across the taps. A multiply and an add, not a fused
/// multiply-add: the sums round as the plain loop's did (the detectors compared with
/// torchvision's outputs sit at the edge of their tolerances), and the fused form bought no time.
#[inline(always)]
fn taps_wide<T: Float>(
    wc: &[T],
    taps: &[(usize, usize)],
    pad: &[T],
    phase_len: usize,
    out: &mut [T],
) {
    const RUN: usize = 64;
    let n = out.len();
    let mut i = 0;
    while i < n {
        let len = RUN.min(n - i);
        let mut acc = [T::zero(); RUN];
        // a whole run through fixed-size arrays, so that the sums stay in registers; the last,
        // shorter run through slices
        if len == RUN {
            for (&wv, &(ph, off)) in wc.iter().zip(taps) {
                let src: &[T; RUN] = pad[ph * phase_len + off + i..][..RUN]
                    .try_into()
                    .expect("a run");
                for (a, &xv) in acc.iter_mut().zip(src) {
                    *a += wv * xv;
                }
            }
        } else {
            for (&wv, &(ph, off)) in wc.iter().zip(taps) {
                let src = &pad[ph * phase_len + off + i..][..len];
                for (a, &xv) in acc.iter_mut().zip(src) {
                    *a += wv * xv;
                }
            }
        }
        copy_run(&mut out[i..i + len], &acc[..len]);
        i += len;
    }
}

/// Gradient with respect to the input: each tap scatters `w·dy` back to the input positions
/// it read (per plane, so no two tasks write the same element).
pub fn bwd_data<T: Float>(dy: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(g.n * g.c * g.hw(), wt.len());
    assert!(
        eligible(g) && dy.len() == g.n * g.o * g.ohw(),
        "depthwise conv backward: {g:?}"
    );
    let (hw, ohw, kk, m) = (g.hw(), g.ohw(), g.kk(), multiplier(g));
    let mut dx = vec![T::zero(); g.n * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, dxp)| {
        // the input channel's output planes, one after another
        let o0 = (plane / g.c) * g.o + (plane % g.c) * m;
        for op in o0..o0 + m {
            let oc = op % g.o;
            let dyp = &dy[op * ohw..(op + 1) * ohw];
            let wc = &wt[oc * kk..(oc + 1) * kk];
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
        }
    });
    dx
}

/// Gradient with respect to the filters: `dw[o, kh, kw] = Σ_n Σ_(oh, ow) dy · x`, one task
/// per output channel summing its samples in order (deterministic).
///
/// In the forward pass's wide layout: the input plane goes into its zero-bordered phase planes,
/// dY into a wide plane of `oh` rows of `wq` (zeros past `ow`), and each tap's gradient is the
/// dot product of the two over the whole wide plane, the taps eight at a time so that each
/// load of dY serves eight sums. (A dropped column's zero meets the input pixel a tap would
/// read there: finite pixels add nothing; an infinite one makes the sum NaN, where the loss is
/// not finite anyway.)
pub fn bwd_weight<T: Float>(x: &[T], dy: &[T], g: &Conv2dGeom) -> Vec<T> {
    g.check(x.len(), g.o * g.ckk());
    assert!(
        eligible(g) && dy.len() == g.n * g.o * g.ohw(),
        "depthwise conv backward: {g:?}"
    );
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let phases = Phases::new(g);
    let (wq, phase_len) = (phases.wq, phases.len);
    let wide = (g.oh * wq).next_multiple_of(DOT_LANES);
    let offsets = phases.offsets();
    // (the last tap's run of `wide` stays inside the phase planes and their slack)
    let pad_len = g.sh * g.sw * phase_len + DOT_LANES;
    assert!(offsets.iter().all(|&o| o + wide <= pad_len));
    let mut dw = vec![T::zero(); g.o * kk];
    if ohw == 0 {
        return dw;
    }
    #[cfg(target_arch = "x86_64")]
    let lanes = vector_lanes::<T>();
    dw.par_chunks_mut(kk).enumerate().for_each(|(oc, dwc)| {
        let mut pad = vec![T::zero(); pad_len];
        let mut dyw = vec![T::zero(); wide];
        let mut sums = vec![T::zero(); kk];
        for n in 0..g.n {
            let plane = n * g.o + oc;
            let ip = in_plane(g, plane);
            let dyp = &dy[plane * ohw..(plane + 1) * ohw];
            super::simd::with_best(
                #[inline(always)]
                || {
                    fill_phases(&x[ip * hw..(ip + 1) * hw], g, wq, phase_len, &mut pad);
                    for (r, row) in dyp.chunks_exact(g.ow).enumerate() {
                        copy_run(&mut dyw[r * wq..r * wq + g.ow], row);
                    }
                    #[cfg(target_arch = "x86_64")]
                    if let Some(lanes) = lanes {
                        let (a, b) = (dyw.as_ptr() as *const f32, pad.as_ptr() as *const f32);
                        let out = sums.as_mut_ptr() as *mut f32;
                        // SAFETY: T is f32 (`vector_lanes`), the CPU has the width's
                        // instructions, `dyw` holds `wide` (a whole number of vectors), `pad` a
                        // run of `wide` from every offset (checked above), and `sums` one per
                        // tap.
                        unsafe {
                            if lanes == 16 {
                                x86::taps_dot512(a, wide, b, &offsets, out)
                            } else {
                                x86::taps_dot256(a, wide, b, &offsets, out)
                            }
                        }
                        return;
                    }
                    taps_dot(&dyw, &pad, &offsets, &mut sums);
                },
            );
            for (d, &s) in dwc.iter_mut().zip(&sums) {
                *d += s;
            }
        }
    });
    dw
}

/// Lanes of the dot products of [`taps_dot`] (a whole number of them per wide plane).
const DOT_LANES: usize = 16;

/// `sums[t] = Σ_i a[i]·b[offsets[t] + i]` over all of `a` (a whole number of
/// [`DOT_LANES`]), eight taps at a time, each in its own lanes, added across them at the end.
#[inline(always)]
fn taps_dot<T: Float>(a: &[T], b: &[T], offsets: &[usize], sums: &mut [T]) {
    const G: usize = 8;
    for (offs, out) in offsets.chunks(G).zip(sums.chunks_mut(G)) {
        let mut acc = [[T::zero(); DOT_LANES]; G];
        for (i, av) in a.chunks_exact(DOT_LANES).enumerate() {
            let i = i * DOT_LANES;
            for (acc, &off) in acc.iter_mut().zip(offs) {
                let bv: &[T; DOT_LANES] =
                    b[off + i..off + i + DOT_LANES].try_into().expect("a run");
                for ((s, &x), &y) in acc.iter_mut().zip(av).zip(bv) {
                    *s += x * y;
                }
            }
        }
        for (o, acc) in out.iter_mut().zip(&acc) {
            *o = acc.iter().fold(T::zero(), |s, &v| s + v);
        }
    }
}
