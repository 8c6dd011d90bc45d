//! CPU kernels. Plain functions on contiguous slices with sizes passed in; no autograd, no
//! shape validation (callers in `crate::ops` validate once). Fast kernels sit beside the naive
//! loop nests they are tested against.

pub mod conv;
pub mod depthwise;
pub mod direct;
pub mod elementwise;
pub mod gemm;
pub mod packed;
pub mod pool;
pub mod rowconv;
pub mod simd;
pub(crate) mod vector;
pub mod winograd;

/// Work below this many elements runs on one thread: rayon's fork/join costs more than it saves.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// A vector of `n` elements that `fill` writes into its uninitialised storage, with no zero
/// fill first: on output passes that overwrite every element anyway (batch norm, broadcast
/// maps, copies), the zero fill of a reused allocation costs as much again as the pass.
///
/// # Safety
/// `fill` must write every element of the slice it is given (a panic inside it is fine: the
/// vector is then dropped empty).
pub(crate) unsafe fn filled<T>(
    n: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's contract: `fill` initialised all n elements.
    unsafe { v.set_len(n) };
    v
}

/// `Σ a` in 16 interleaved partial sums (a fixed order, so deterministic), which vectorise.
#[inline(always)]
pub(crate) fn sum<T: crate::dtype::Float>(a: &[T]) -> T {
    const L: usize = 16;
    let mut acc = [T::zero(); L];
    let ac = a.chunks_exact(L);
    let mut s = ac.remainder().iter().fold(T::zero(), |s, &x| s + x);
    for x in ac {
        for l in 0..L {
            acc[l] += x[l];
        }
    }
    for v in acc {
        s += v;
    }
    s
}

/// `Σ a·b` in 16 interleaved partial sums (a fixed order, so deterministic), which vectorise.
#[inline(always)]
pub(crate) fn dot<T: crate::dtype::Float>(a: &[T], b: &[T]) -> T {
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

/// `dst[t] = src[x0 + t]` where that index lies inside `src`, zero elsewhere: one row of an
/// input read through zero padding.
pub(crate) fn copy_padded<T: crate::dtype::Float>(src: &[T], x0: isize, dst: &mut [T]) {
    let (n, w) = (dst.len() as isize, src.len() as isize);
    let lo = (-x0).clamp(0, n) as usize;
    let hi = (w - x0).clamp(lo as isize, n) as usize;
    dst[..lo].fill(T::zero());
    if hi > lo {
        dst[lo..hi].copy_from_slice(&src[(x0 + lo as isize) as usize..(x0 + hi as isize) as usize]);
    }
    dst[hi..].fill(T::zero());
}

/// `dst = src` for short rows (a 7- to 112-element row of a small plane, a tile's 32 columns),
/// as vector moves inlined at the caller rather than a call to the library's memmove, whose
/// set-up costs more than such a row.
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    const V: usize = 16;
    let mut d = dst.chunks_exact_mut(V);
    let mut s = src.chunks_exact(V);
    for (a, b) in (&mut d).zip(&mut s) {
        let a: &mut [T; V] = a.try_into().expect("a run");
        *a = *<&[T; V]>::try_from(b).expect("a run");
    }
    for (a, &b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = b;
    }
}

/// `f(i, chunk)` for the `size`-element chunks of `v` (the last may be shorter), in parallel
/// when `v` holds at least [`PAR_THRESHOLD`] elements.
pub(crate) fn for_each_chunk<T: Send>(
    v: &mut [T],
    size: usize,
    f: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    use rayon::prelude::*;
    if v.len() >= PAR_THRESHOLD {
        v.par_chunks_mut(size).enumerate().for_each(f);
    } else {
        v.chunks_mut(size).enumerate().for_each(f);
    }
}

/// A raw output pointer shared by parallel tasks that write disjoint elements (each use
/// states why its writes are disjoint).
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: the pointer is only written through, at elements that each use proves disjoint from
// every other thread's, and the buffer it points into outlives the parallel section.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for Send; shared references to it only hand out the raw pointer.
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

thread_local! {
    /// Scratch buffers given back by [`Scratch`] on this thread, for the next to take.
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<u64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps for reuse, and the largest it keeps (bytes).
const SCRATCH_KEPT: usize = 4;
const SCRATCH_MAX_BYTES: usize = 16 << 20;

/// A kernel's scratch of `n` elements that comes from a per-thread pool of buffers and goes
/// back to it when dropped, so that the work buffers of small, frequent ops (im2col blocks of a
/// training step's convolutions) are neither allocated nor zeroed every time. Its contents are
/// unspecified: zeros, or what an earlier user left. Every user writes what it reads.
pub(crate) struct Scratch<T> {
    buf: Vec<u64>,
    n: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: crate::dtype::Float> Scratch<T> {
    pub(crate) fn new(n: usize) -> Self {
        // every bit pattern is an f32 or f64, and 8-byte words align both
        let plain = [std::any::TypeId::of::<f32>(), std::any::TypeId::of::<f64>()]
            .contains(&std::any::TypeId::of::<T>());
        assert!(plain, "scratch: f32 and f64 only");
        let words = (n * std::mem::size_of::<T>()).div_ceil(8);
        let mut buf = SCRATCH_POOL
            .try_with(|p| p.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        if buf.len() < words {
            buf = vec![0u64; words];
        }
        Scratch {
            buf,
            n,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `buf` holds at least n·size_of::<T>() bytes, 8-byte aligned, and T is f32 or
        // f64 (checked in `new`), for which every bit pattern is a value.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const T, self.n) }
    }
}

impl<T> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `self` is borrowed exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut T, self.n) }
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() * 8 <= SCRATCH_MAX_BYTES && !buf.is_empty() {
            let _ = SCRATCH_POOL.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < SCRATCH_KEPT {
                    p.push(buf);
                }
            });
        }
    }
}
