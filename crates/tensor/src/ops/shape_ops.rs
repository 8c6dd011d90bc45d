//! Shape ops: reshape, flatten, (un)squeeze, transpose, permute, narrow/slice, concat, stack,
//! pad, index_select, gather. Tensors are always contiguous, so reshape shares the data and
//! the others copy.

use rayon::prelude::*;

use crate::cpu::elementwise::strided_copy;
use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result, TensorError};
use crate::shape::{norm_dim, numel, split_at_dim, strides};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

fn invert(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

fn permute_data<T: Float>(x: &[T], shape: &[usize], perm: &[usize]) -> (Vec<T>, Vec<usize>) {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    (strided_copy(x, &pst, &out_shape), out_shape)
}

impl<T: Float> Tensor<T> {
    /// Same data, new shape (one dimension may be `usize::MAX` to infer it).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Reshape,
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let mut shape = shape.to_vec();
                let n = self.numel();
                if let Some(pos) = shape.iter().position(|&s| s == usize::MAX) {
                    let rest: usize = shape
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != pos)
                        .map(|(_, &s)| s)
                        .product();
                    if rest == 0 || !n.is_multiple_of(rest) {
                        return Err(shape_err(
                            "reshape",
                            format!(
                                "cannot infer a dimension reshaping {:?} to {:?}",
                                self.shape(),
                                shape
                            ),
                        ));
                    }
                    shape[pos] = n / rest;
                }
                if numel(&shape) != n {
                    return Err(shape_err(
                        "reshape",
                        format!(
                            "cannot reshape {:?} ({} elements) to {:?}",
                            self.shape(),
                            n,
                            shape
                        ),
                    ));
                }
                Ok(Tensor::from_op_arc(
                    self.data(),
                    shape,
                    "reshape",
                    &[self],
                    |g, _| vec![Some(g.to_vec())],
                ))
            }),
        )
    }

    /// Collapse dimensions `start..` into one (`flatten(1)` turns `[N,C,H,W]` into `[N,C·H·W]`).
    pub fn flatten(&self, start: usize) -> Result<Tensor<T>> {
        if start > self.rank() {
            return Err(TensorError::Dim {
                op: "flatten",
                dim: start as isize,
                rank: self.rank(),
            });
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor<T>> {
        let d = norm_dim(dim, self.rank() + 1, "unsqueeze")?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        self.reshape(&shape)
    }

    pub fn squeeze(&self, dim: isize) -> Result<Tensor<T>> {
        let d = norm_dim(dim, self.rank(), "squeeze")?;
        let mut shape = self.shape().to_vec();
        if shape[d] != 1 {
            return Err(shape_err(
                "squeeze",
                format!("dimension {d} of {:?} is not 1", self.shape()),
            ));
        }
        shape.remove(d);
        self.reshape(&shape)
    }

    /// Reorder dimensions: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Permute(perm.to_vec()),
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let r = self.rank();
                let mut seen = vec![false; r];
                if perm.len() != r
                    || perm
                        .iter()
                        .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
                {
                    return Err(arg_err(
                        "permute",
                        format!("{perm:?} is not a permutation of {r} dimensions"),
                    ));
                }
                let (out, out_shape) = permute_data(&self.data(), self.shape(), perm);
                let inv = invert(perm);
                let osh = out_shape.clone();
                Ok(Tensor::from_op(
                    out,
                    out_shape,
                    "permute",
                    &[self],
                    move |g, _| vec![Some(permute_data(g, &osh, &inv).0)],
                ))
            }),
        )
    }

    /// Swap two dimensions.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor<T>> {
        let a = norm_dim(d0, self.rank(), "transpose")?;
        let b = norm_dim(d1, self.rank(), "transpose")?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start..start+len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Slice {
                dim: trace::axis(dim, self.rank()),
                start,
                len,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let d = norm_dim(dim, self.rank(), "narrow")?;
                let (outer, n, inner) = split_at_dim(self.shape(), d);
                if start + len > n {
                    return Err(arg_err(
                        "narrow",
                        format!(
                            "range {start}..{} exceeds size {n} of dimension {d}",
                            start + len
                        ),
                    ));
                }
                let x = self.data();
                let mut out = Vec::with_capacity(outer * len * inner);
                for o in 0..outer {
                    out.extend_from_slice(
                        &x[(o * n + start) * inner..(o * n + start + len) * inner],
                    );
                }
                let mut shape = self.shape().to_vec();
                shape[d] = len;
                Ok(Tensor::from_op(
                    out,
                    shape,
                    "narrow",
                    &[self],
                    move |g, _| {
                        let mut gx = vec![T::zero(); outer * n * inner];
                        for o in 0..outer {
                            gx[(o * n + start) * inner..(o * n + start + len) * inner]
                                .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }

    /// Python-style slice `start..end` with `step` along `dim`.
    pub fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor<T>> {
        let d = norm_dim(dim, self.rank(), "slice")?;
        if step == 0 {
            return Err(arg_err("slice", "step must be positive"));
        }
        let n = self.shape()[d];
        let end = end.min(n);
        let idx: Vec<usize> = (start..end).step_by(step).collect();
        if step == 1 {
            return self.narrow(dim, start.min(end), idx.len());
        }
        self.index_select(dim, &idx)
    }

    /// Rows `indices` along `dim` (indices may repeat; the backward adds them up).
    pub fn index_select(&self, dim: isize, indices: &[usize]) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::IndexSelect {
                dim: trace::axis(dim, self.rank()),
                indices: indices.to_vec(),
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let d = norm_dim(dim, self.rank(), "index_select")?;
                let (outer, n, inner) = split_at_dim(self.shape(), d);
                if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
                    return Err(TensorError::Index {
                        op: "index_select",
                        index: bad,
                        size: n,
                    });
                }
                let x = self.data();
                let m = indices.len();
                let mut out = Vec::with_capacity(outer * m * inner);
                for o in 0..outer {
                    for &i in indices {
                        out.extend_from_slice(&x[(o * n + i) * inner..(o * n + i + 1) * inner]);
                    }
                }
                let mut shape = self.shape().to_vec();
                shape[d] = m;
                let idx = indices.to_vec();
                Ok(Tensor::from_op(
                    out,
                    shape,
                    "index_select",
                    &[self],
                    move |g, _| {
                        let mut gx = vec![T::zero(); outer * n * inner];
                        for o in 0..outer {
                            for (k, &i) in idx.iter().enumerate() {
                                let src = &g[(o * m + k) * inner..(o * m + k + 1) * inner];
                                gx[(o * n + i) * inner..(o * n + i + 1) * inner]
                                    .iter_mut()
                                    .zip(src)
                                    .for_each(|(a, &b)| *a += b);
                            }
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }

    /// `out[.., j, ..] = self[.., index[.., j, ..], ..]` along `dim`; `index` has the output's shape
    /// and matches `self` in every other dimension (PyTorch `gather`).
    pub fn gather(&self, dim: isize, index: &[usize], index_shape: &[usize]) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Gather {
                dim: trace::axis(dim, self.rank()),
                index: index.to_vec(),
                index_shape: index_shape.to_vec(),
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let d = norm_dim(dim, self.rank(), "gather")?;
                if index_shape.len() != self.rank() || numel(index_shape) != index.len() {
                    return Err(shape_err(
                        "gather",
                        format!(
                            "index shape {index_shape:?} does not fit a tensor of shape {:?}",
                            self.shape()
                        ),
                    ));
                }
                for (i, (&a, &b)) in index_shape.iter().zip(self.shape()).enumerate() {
                    if i != d && a != b {
                        return Err(shape_err(
                            "gather",
                            format!(
                                "index shape {index_shape:?} vs input {:?} at dim {i}",
                                self.shape()
                            ),
                        ));
                    }
                }
                let (outer, n, inner) = split_at_dim(self.shape(), d);
                let m = index_shape[d];
                if let Some(&bad) = index.iter().find(|&&i| i >= n) {
                    return Err(TensorError::Index {
                        op: "gather",
                        index: bad,
                        size: n,
                    });
                }
                let x = self.data();
                let mut out = vec![T::zero(); index.len()];
                for o in 0..outer {
                    for j in 0..m {
                        for i in 0..inner {
                            let k = (o * m + j) * inner + i;
                            out[k] = x[(o * n + index[k]) * inner + i];
                        }
                    }
                }
                let idx = index.to_vec();
                Ok(Tensor::from_op(
                    out,
                    index_shape.to_vec(),
                    "gather",
                    &[self],
                    move |g, _| {
                        let mut gx = vec![T::zero(); outer * n * inner];
                        for o in 0..outer {
                            for j in 0..m {
                                for i in 0..inner {
                                    let k = (o * m + j) * inner + i;
                                    gx[(o * n + idx[k]) * inner + i] += g[k];
                                }
                            }
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }

    /// Join tensors along `dim`; all other dimensions must match.
    pub fn concat(tensors: &[&Tensor<T>], dim: isize) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Concat(trace::axis(dim, tensors[0].rank())),
            tensors,
            trace::inner(|| -> Result<Tensor<T>> {
                let first = tensors
                    .first()
                    .ok_or_else(|| arg_err("concat", "no tensors given"))?;
                let d = norm_dim(dim, first.rank(), "concat")?;
                for t in tensors {
                    if t.rank() != first.rank()
                        || t.shape()
                            .iter()
                            .zip(first.shape())
                            .enumerate()
                            .any(|(i, (a, b))| i != d && a != b)
                    {
                        return Err(shape_err(
                            "concat",
                            format!(
                                "{:?} does not fit {:?} along dim {d}",
                                t.shape(),
                                first.shape()
                            ),
                        ));
                    }
                }
                let (outer, _, inner) = split_at_dim(first.shape(), d);
                let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
                let total: usize = sizes.iter().sum();
                let datas: Vec<_> = tensors.iter().map(|t| t.data()).collect();
                let mut out = Vec::with_capacity(outer * total * inner);
                for o in 0..outer {
                    for (x, &s) in datas.iter().zip(&sizes) {
                        out.extend_from_slice(&x[o * s * inner..(o + 1) * s * inner]);
                    }
                }
                let mut shape = first.shape().to_vec();
                shape[d] = total;
                Ok(Tensor::from_op(
                    out,
                    shape,
                    "concat",
                    tensors,
                    move |g, needs| {
                        let mut off = 0;
                        let mut res = Vec::with_capacity(sizes.len());
                        for (k, &s) in sizes.iter().enumerate() {
                            if needs[k] {
                                let mut gx = Vec::with_capacity(outer * s * inner);
                                for o in 0..outer {
                                    gx.extend_from_slice(
                                        &g[(o * total + off) * inner
                                            ..(o * total + off + s) * inner],
                                    );
                                }
                                res.push(Some(gx));
                            } else {
                                res.push(None);
                            }
                            off += s;
                        }
                        res
                    },
                ))
            }),
        )
    }

    /// Stack equal-shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor<T>], dim: isize) -> Result<Tensor<T>> {
        let first = tensors
            .first()
            .ok_or_else(|| arg_err("stack", "no tensors given"))?;
        let d = norm_dim(dim, first.rank() + 1, "stack")?;
        let us: Vec<Tensor<T>> = tensors
            .iter()
            .map(|t| t.unsqueeze(d as isize))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor<T>> = us.iter().collect();
        Tensor::concat(&refs, d as isize)
    }

    /// Constant padding: `pads[i] = (before, after)` for each dimension, from the first.
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Pad {
                pads: pads.to_vec(),
                value,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                if pads.len() != self.rank() {
                    return Err(arg_err(
                        "pad",
                        format!(
                            "{} (before, after) pairs for a tensor of rank {}",
                            pads.len(),
                            self.rank()
                        ),
                    ));
                }
                let in_shape = self.shape().to_vec();
                let out_shape: Vec<usize> = in_shape
                    .iter()
                    .zip(pads)
                    .map(|(&s, &(a, b))| s + a + b)
                    .collect();
                let ost = strides(&out_shape);
                let base: usize = pads.iter().zip(&ost).map(|(&(a, _), &s)| a * s).sum();
                // The input is a sequence of rows (its last dimension), each landing contiguously at
                // `base + Σ idx_i · out_stride_i` over the leading indices: copy row by row.
                let row = in_shape.last().copied().unwrap_or(1);
                let lead = &in_shape[..in_shape.len().saturating_sub(1)];
                let rows = numel(lead);
                let mut starts = Vec::with_capacity(rows);
                let mut idx = vec![0usize; lead.len()];
                for _ in 0..rows {
                    starts.push(base + idx.iter().zip(&ost).map(|(&i, &s)| i * s).sum::<usize>());
                    for d in (0..idx.len()).rev() {
                        idx[d] += 1;
                        if idx[d] < lead[d] {
                            break;
                        }
                        idx[d] = 0;
                    }
                }
                let mut out = vec![T::from_f64(value); numel(&out_shape)];
                let x = self.data();
                if row > 0 {
                    for (&p, src) in starts.iter().zip(x.chunks_exact(row)) {
                        out[p..p + row].copy_from_slice(src);
                    }
                }
                Ok(Tensor::from_op(
                    out,
                    out_shape,
                    "pad",
                    &[self],
                    move |g, _| {
                        let mut gx = Vec::with_capacity(rows * row);
                        for &p in &starts {
                            gx.extend_from_slice(&g[p..p + row]);
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }

    /// Reflection padding of the last two dimensions of an (N, C, H, W) tensor, as PyTorch's
    /// `ReflectionPad2d`: `pad = [left, right, top, bottom]`, each smaller than the dimension it
    /// pads. Row `-k` repeats row `k` (the edge itself is not repeated).
    pub fn reflection_pad2d(&self, pad: [usize; 4]) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::ReflectionPad(pad),
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let op = "reflection_pad2d";
                let &[n, c, h, w] = self.shape() else {
                    return Err(arg_err(
                        op,
                        format!("an (N, C, H, W) input, got {:?}", self.shape()),
                    ));
                };
                let [l, r, t, b] = pad;
                if l.max(r) >= w.max(1) || t.max(b) >= h.max(1) {
                    return Err(arg_err(
                        op,
                        format!(
                            "padding {pad:?} smaller than the input's width {w} and height {h}"
                        ),
                    ));
                }
                let (oh, ow) = (h + t + b, w + l + r);
                // source index of output position o along a dimension of size s padded by p before
                let src = |o: usize, p: usize, s: usize| -> usize {
                    let i = o as isize - p as isize;
                    let i = if i < 0 { -i } else { i };
                    let last = s as isize - 1;
                    (if i > last { 2 * last - i } else { i }) as usize
                };
                let cols: Vec<usize> = (0..ow).map(|ox| src(ox, l, w)).collect();
                let rows: Vec<usize> = (0..oh).map(|oy| src(oy, t, h)).collect();
                let x = self.data();
                let mut out = vec![T::zero(); n * c * oh * ow];
                out.par_chunks_mut(oh * ow)
                    .zip(x.par_chunks(h * w))
                    .for_each(|(o, xp)| {
                        for (orow, &iy) in o.chunks_exact_mut(ow).zip(&rows) {
                            let xr = &xp[iy * w..(iy + 1) * w];
                            for (v, &ix) in orow.iter_mut().zip(&cols) {
                                *v = xr[ix];
                            }
                        }
                    });
                Ok(Tensor::from_op(
                    out,
                    vec![n, c, oh, ow],
                    op,
                    &[self],
                    move |g, _| {
                        // each output's gradient flows back to the input it copied
                        let mut dx = vec![T::zero(); n * c * h * w];
                        dx.par_chunks_mut(h * w)
                            .zip(g.par_chunks(oh * ow))
                            .for_each(|(d, gp)| {
                                for (grow, &iy) in gp.chunks_exact(ow).zip(&rows) {
                                    let dr = &mut d[iy * w..(iy + 1) * w];
                                    for (&gv, &ix) in grow.iter().zip(&cols) {
                                        dr[ix] += gv;
                                    }
                                }
                            });
                        vec![Some(dx)]
                    },
                ))
            }),
        )
    }
}
