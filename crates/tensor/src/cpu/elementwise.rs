//! Elementwise kernels: maps, broadcast binary maps and the reduction of a broadcast gradient
//! back to an input's shape.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::PAR_THRESHOLD;
use crate::dtype::Float;

/// `out[i] = f(x[i])`.
pub fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    if x.len() >= PAR_THRESHOLD {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    }
}

/// `out[i] = f(a[i], b[i])` for equal-length slices.
pub fn zip_map<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    if a.len() >= PAR_THRESHOLD {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(&x, &y)| f(x, y))
            .collect()
    } else {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    }
}

/// Offset of row `r` (a multi-index over all but the last output dim) under `strides`.
#[inline]
fn row_offset(mut r: usize, out_shape: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for d in (0..out_shape.len().saturating_sub(1)).rev() {
        let n = out_shape[d];
        off += (r % n) * strides[d];
        r /= n;
    }
    off
}

/// Merge adjacent dims that both operands walk contiguously (or both broadcast), so the inner
/// rows get as long as possible: `[N,C,H,W] ⊙ [1,C,1,1]` becomes `[N,C,H·W] ⊙ [1,C,1]`.
fn coalesce(shape: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut sh, mut a, mut b) = (vec![shape[0]], vec![sa[0]], vec![sb[0]]);
    for d in 1..shape.len() {
        let last = sh.len() - 1;
        if sa[d] * shape[d] == a[last] && sb[d] * shape[d] == b[last] {
            sh[last] *= shape[d];
            a[last] = sa[d];
            b[last] = sb[d];
        } else {
            sh.push(shape[d]);
            a.push(sa[d]);
            b.push(sb[d]);
        }
    }
    (sh, a, b)
}

/// Broadcast binary map: `a` and `b` are read through broadcast strides `sa`, `sb` (0 along
/// broadcast dims) of the output shape.
pub fn broadcast_map<T: Float>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out_shape: &[usize],
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Vec<T> {
    let n: usize = out_shape.iter().product();
    if out_shape.is_empty() {
        return vec![f(a[0], b[0])];
    }
    if n == 0 {
        return Vec::new();
    }
    let (shape, sa, sb) = coalesce(out_shape, sa, sb);
    let inner = *shape.last().unwrap_or(&1);
    let (la, lb) = (sa[sa.len() - 1], sb[sb.len() - 1]);
    let row = |(r, o): (usize, &mut [MaybeUninit<T>])| {
        let len = o.len();
        let oa = row_offset(r, &shape, &sa);
        let ob = row_offset(r, &shape, &sb);
        // the common layouts get loops the compiler can vectorise
        match (la, lb) {
            (1, 1) => {
                let (ar, br) = (&a[oa..oa + len], &b[ob..ob + len]);
                for ((v, &x), &y) in o.iter_mut().zip(ar).zip(br) {
                    v.write(f(x, y));
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (v, &x) in o.iter_mut().zip(&a[oa..oa + len]) {
                    v.write(f(x, y));
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (v, &y) in o.iter_mut().zip(&b[ob..ob + len]) {
                    v.write(f(x, y));
                }
            }
            _ => {
                for (j, v) in o.iter_mut().enumerate() {
                    v.write(f(a[oa + j * la], b[ob + j * lb]));
                }
            }
        }
    };
    // SAFETY: n > 0, so inner > 0 and the rows of `inner` cover the output; every arm of `row`
    // writes its whole row.
    unsafe {
        super::filled(n, |out| {
            if n >= PAR_THRESHOLD {
                // rows of at least ~4096 elements per task
                let rows_per_task = 4096usize.div_ceil(inner).max(1);
                out.par_chunks_mut(inner * rows_per_task)
                    .enumerate()
                    .for_each(|(t, chunk)| {
                        for (i, o) in chunk.chunks_mut(inner).enumerate() {
                            row((t * rows_per_task + i, o));
                        }
                    });
            } else {
                out.chunks_mut(inner).enumerate().for_each(row);
            }
        })
    }
}

/// Sum a gradient of the broadcast `out_shape` down to `target` (the inverse of broadcasting).
pub fn reduce_to_shape<T: Float>(g: &[T], out_shape: &[usize], target: &[usize]) -> Vec<T> {
    if out_shape == target {
        return g.to_vec();
    }
    let tn: usize = target.iter().product();
    let mut res = vec![T::zero(); tn];
    if out_shape.is_empty() {
        res[0] = g[0];
        return res;
    }
    let st = crate::shape::broadcast_strides(target, out_shape);
    let inner = *out_shape.last().unwrap_or(&1);
    if inner == 0 {
        return res;
    }
    let lt = st[st.len() - 1];
    for (r, row) in g.chunks(inner).enumerate() {
        let ot = row_offset(r, out_shape, &st);
        if lt == 0 {
            let s: T = row.iter().copied().sum();
            res[ot] += s;
        } else {
            for (j, &v) in row.iter().enumerate() {
                res[ot + j * lt] += v;
            }
        }
    }
    res
}

/// Copy `x` read through `strides` (one per output dim) into a contiguous `out_shape` array.
/// This is how permute/transpose materialise.
pub fn strided_copy<T: Float>(x: &[T], strides: &[usize], out_shape: &[usize]) -> Vec<T> {
    let n: usize = out_shape.iter().product();
    if out_shape.is_empty() {
        return vec![x[0]];
    }
    let mut out = vec![T::zero(); n];
    let inner = *out_shape.last().unwrap_or(&1);
    if inner == 0 {
        return out;
    }
    let l = strides[strides.len() - 1];
    let row = |(r, o): (usize, &mut [T])| {
        let base = row_offset(r, out_shape, strides);
        for (j, v) in o.iter_mut().enumerate() {
            *v = x[base + j * l];
        }
    };
    if n >= PAR_THRESHOLD {
        out.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(row);
    }
    out
}
