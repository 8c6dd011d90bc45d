//! Shape arithmetic: element counts, strides, dimension normalisation and broadcasting.

use crate::error::{Result, TensorError};

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Map a possibly negative dimension to `0..rank`.
pub fn norm_dim(d: isize, rank: usize, op: &'static str) -> Result<usize> {
    let r = rank as isize;
    let n = if d < 0 { d + r } else { d };
    if n < 0 || n >= r.max(1) {
        return Err(TensorError::Dim { op, dim: d, rank });
    }
    Ok(n as usize)
}

/// NumPy/PyTorch broadcasting of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize], op: &'static str) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(TensorError::Broadcast {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            });
        };
    }
    Ok(out)
}

/// Strides of `shape` viewed in the broadcast `out` shape: 0 along broadcast dimensions.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

/// Split `shape` around `dim` into (outer, size, inner).
pub fn split_at_dim(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    )
}
