//! Matrix multiply. The fast path is the `gemm` crate, chosen over `matrixmultiply` by
//! measurement: square sgemm on 2 threads of an AVX-512 machine, 1024³ at 211 vs 179 GFLOP/s
//! and 2048³ at 206 vs 188 GFLOP/s (`aics bench` tracks it). The naive triple loop is its reference.
//!
//! Every matrix is described by a slice plus row and column strides, so transposed operands
//! are read in place: `Aᵀ` is `A` with its strides swapped.

use crate::dtype::Float;

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// Row-major `rows×cols` matrix.
    pub fn rm(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rm_t(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// `c[m×n] (row-major) = a[m×k]·b[k×n]`, or `+=` when `accumulate`.
/// `parallel` lets the kernel use the rayon pool; pass false when the caller already
/// parallelises over an outer loop.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        c.len() >= m * n,
        "gemm: output of {} elements for a {m}x{n} product",
        c.len()
    );
    check_views(m, n, k, &a, &b);
    if m <= ROWS_BY_DOTS && a.cs == 1 && b.rs == 1 && k >= 64 {
        return by_dots(m, n, k, a, b, c, accumulate, parallel);
    }
    let par = if parallel && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `c` is exclusively borrowed and holds m·n elements (checked above).
    unsafe { call(m, n, k, a, b, c.as_mut_ptr(), n, accumulate, par) }
}

/// Most rows of `A` that [`by_dots`] takes.
const ROWS_BY_DOTS: usize = 2;

/// `C (+)= A·B` for one or two rows of `A` and columns of `B` contiguous along k (a fully
/// connected layer at batch 1: `B` is the weight read in place): one dot product per output,
/// over blocks of columns in parallel. Such a product reads each weight once and is bound by
/// memory bandwidth; the GEMM kernels' packing of `B` would read it twice.
#[allow(clippy::too_many_arguments)]
fn by_dots<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    use rayon::prelude::*;
    // columns a task: at least 64 kB of B
    let cols = (16384 / k).max(1);
    for r in 0..m {
        let ar = &a.data[r * a.rs..][..k];
        let row = &mut c[r * n..(r + 1) * n];
        let block = |(jb, cb): (usize, &mut [T])| {
            super::simd::with_best(
                #[inline(always)]
                || {
                    for (jj, out) in cb.iter_mut().enumerate() {
                        let j = jb * cols + jj;
                        let d = super::dot(ar, &b.data[j * b.cs..j * b.cs + k]);
                        *out = if accumulate { *out + d } else { d };
                    }
                },
            )
        };
        if parallel && n * k >= 1 << 15 {
            row.par_chunks_mut(cols).enumerate().for_each(block);
        } else {
            row.chunks_mut(cols).enumerate().for_each(block);
        }
    }
}

/// Panics unless `a` covers an m×k and `b` a k×n strided extent: the kernel reads them through
/// raw pointers.
fn check_views<T>(m: usize, n: usize, k: usize, a: &Mat<T>, b: &Mat<T>) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    for (side, v, r, c) in [("left", a, m, k), ("right", b, k, n)] {
        let last = (r - 1)
            .checked_mul(v.rs)
            .and_then(|x| (c - 1).checked_mul(v.cs).and_then(|y| x.checked_add(y)));
        assert!(
            last.is_some_and(|i| i < v.data.len()),
            "gemm: {side} operand of {} elements (strides {}, {}) for a {r}x{c} matrix",
            v.data.len(),
            v.rs,
            v.cs
        );
    }
}

/// Like [`gemm`] but writes through a raw pointer with row stride `ldc`, so disjoint column
/// blocks of one output matrix can be filled from different threads. The operands' extents are
/// checked (panics as in [`gemm`]); the output's cannot be.
///
/// # Safety
/// `c` must be valid for writes at `i * ldc + j` for `i < m`, `j < n`, and no other thread may
/// touch those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: *mut T,
    ldc: usize,
    accumulate: bool,
) {
    check_views(m, n, k, &a, &b);
    // SAFETY: the operands' extents were checked above; `c`'s is the caller's contract.
    unsafe { call(m, n, k, a, b, c, ldc, accumulate, gemm::Parallelism::None) }
}

/// # Safety
/// As for [`gemm_strided`], and the views must cover their strided extents ([`check_views`]).
#[allow(clippy::too_many_arguments)]
unsafe fn call<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: *mut T,
    ldc: usize,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: inside the m×n extent at stride ldc that the caller vouches for.
                    *c.add(i * ldc + j) = T::zero();
                }
            }
        }
        return;
    }
    // SAFETY: `a` and `b` cover their extents (the callers ran `check_views`), `c` is valid
    // for the m×n writes at stride ldc (the callers' contract), and the strides are the views'.
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        ldc as isize,
        accumulate,
        a.data.as_ptr(),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr(),
        b.cs as isize,
        b.rs as isize,
        T::one(),
        T::one(),
        false,
        false,
        false,
        par,
    );
}

/// The reference: a plain triple loop, accumulated in f64.
#[allow(clippy::too_many_arguments)]
pub fn gemm_naive<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a.data[i * a.rs + p * a.cs].as_f64() * b.data[p * b.rs + j * b.cs].as_f64();
            }
            let v = T::from_f64(s);
            if accumulate {
                c[i * n + j] += v;
            } else {
                c[i * n + j] = v;
            }
        }
    }
}
