//! Reductions: sum and mean (all, or over dimensions), max over a dimension with its argmax.

use crate::dtype::Float;
use crate::error::Result;
use crate::shape::{norm_dim, split_at_dim};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

impl<T: Float> Tensor<T> {
    /// Sum of all elements, shape `[]` (accumulated in f64, so an f32 sum of many large terms
    /// keeps its digits).
    pub fn sum(&self) -> Tensor<T> {
        let s = T::from_f64(self.data().iter().map(|v| v.as_f64()).sum());
        let n = self.numel();
        let y = Tensor::from_op(vec![s], vec![], "sum", &[self], move |g, _| {
            vec![Some(vec![g[0]; n])]
        });
        trace::record(Op::Sum, &[self], &[&y]);
        y
    }

    /// Mean of all elements, shape `[]`.
    pub fn mean(&self) -> Tensor<T> {
        let n = self.numel().max(1);
        let s: f64 = self.data().iter().map(|v| v.as_f64()).sum();
        let inv = T::one() / T::from_usize(n);
        let numel = self.numel();
        let m = T::from_f64(s / n as f64);
        let y = Tensor::from_op(vec![m], vec![], "mean", &[self], move |g, _| {
            vec![Some(vec![g[0] * inv; numel])]
        });
        trace::record(Op::Mean, &[self], &[&y]);
        y
    }

    /// Sum over one dimension.
    pub fn sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::SumDims {
                dims: vec![trace::axis(dim, self.rank())],
                keepdim,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let d = norm_dim(dim, self.rank(), "sum_dim")?;
                let (outer, n, inner) = split_at_dim(self.shape(), d);
                let x = self.data();
                let mut out = vec![T::zero(); outer * inner];
                for o in 0..outer {
                    let dst = &mut out[o * inner..(o + 1) * inner];
                    for j in 0..n {
                        let src = &x[(o * n + j) * inner..(o * n + j + 1) * inner];
                        dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                    }
                }
                let mut shape = self.shape().to_vec();
                if keepdim {
                    shape[d] = 1;
                } else {
                    shape.remove(d);
                }
                Ok(Tensor::from_op(
                    out,
                    shape,
                    "sum_dim",
                    &[self],
                    move |g, _| {
                        let mut gx = vec![T::zero(); outer * n * inner];
                        for o in 0..outer {
                            for j in 0..n {
                                gx[(o * n + j) * inner..(o * n + j + 1) * inner]
                                    .copy_from_slice(&g[o * inner..(o + 1) * inner]);
                            }
                        }
                        vec![Some(gx)]
                    },
                ))
            }),
        )
    }

    /// Sum over several dimensions.
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::SumDims {
                dims: trace::axes(dims, self.rank()),
                keepdim,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let mut ds: Vec<usize> = dims
                    .iter()
                    .map(|&d| norm_dim(d, self.rank(), "sum_dims"))
                    .collect::<Result<_>>()?;
                ds.sort_unstable();
                ds.dedup();
                let mut t = self.clone();
                for &d in &ds {
                    t = t.sum_dim(d as isize, true)?;
                }
                if !keepdim {
                    let shape: Vec<usize> = self
                        .shape()
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !ds.contains(i))
                        .map(|(_, &s)| s)
                        .collect();
                    t = t.reshape(&shape)?;
                }
                Ok(t)
            }),
        )
    }

    /// Mean over several dimensions.
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::MeanDims {
                dims: trace::axes(dims, self.rank()),
                keepdim,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let mut count = 1usize;
                for &d in dims {
                    count *= self.shape()[norm_dim(d, self.rank(), "mean_dims")?];
                }
                Ok(self
                    .sum_dims(dims, keepdim)?
                    .mul_scalar(1.0 / count.max(1) as f64))
            }),
        )
    }

    /// Maximum over one dimension: (values, argmax indices). The gradient goes to the argmax.
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor<T>, Vec<usize>)> {
        let d = norm_dim(dim, self.rank(), "max_dim")?;
        let (outer, n, inner) = split_at_dim(self.shape(), d);
        if n == 0 {
            return Err(crate::error::arg_err(
                "max_dim",
                "reduction over an empty dimension",
            ));
        }
        let x = self.data();
        let mut vals = vec![T::neg_infinity(); outer * inner];
        let mut idx = vec![0usize; outer * inner];
        for o in 0..outer {
            for j in 0..n {
                for i in 0..inner {
                    let v = x[(o * n + j) * inner + i];
                    let k = o * inner + i;
                    if v > vals[k] || (j == 0) || v.is_nan() {
                        vals[k] = v;
                        idx[k] = j;
                    }
                }
            }
        }
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[d] = 1;
        } else {
            shape.remove(d);
        }
        let idx_c = idx.clone();
        let t = Tensor::from_op(vals, shape, "max_dim", &[self], move |g, _| {
            let mut gx = vec![T::zero(); outer * n * inner];
            for o in 0..outer {
                for i in 0..inner {
                    let k = o * inner + i;
                    gx[(o * n + idx_c[k]) * inner + i] += g[k];
                }
            }
            vec![Some(gx)]
        });
        trace::record(Op::MaxDim { dim: d, keepdim }, &[self], &[&t]);
        Ok((t, idx))
    }

    /// Index of the maximum along `dim` (first one on ties).
    pub fn argmax(&self, dim: isize) -> Result<Vec<usize>> {
        let _g = crate::autograd::no_grad();
        Ok(self.max_dim(dim, false)?.1)
    }

    /// The largest element as a 0-d tensor, differentiable as PyTorch's `x.max()`: the gradient
    /// is split evenly among all elements equal to the maximum. A NaN anywhere is the result,
    /// and the gradient is then split among the NaNs.
    pub fn max(&self) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Max,
            &[self],
            trace::inner(|| -> Result<Tensor<T>> { self.extreme("max", |a, b| b > a) }),
        )
    }

    /// The smallest element as a 0-d tensor (ties and NaN as in [`Tensor::max`]).
    pub fn min(&self) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Min,
            &[self],
            trace::inner(|| -> Result<Tensor<T>> { self.extreme("min", |a, b| b < a) }),
        )
    }

    fn extreme(&self, op: &'static str, better: fn(T, T) -> bool) -> Result<Tensor<T>> {
        let x = self.data();
        let m = x
            .iter()
            .copied()
            .reduce(|a, b| {
                if a.is_nan() || (!b.is_nan() && !better(a, b)) {
                    a
                } else {
                    b
                }
            })
            .ok_or_else(|| crate::error::arg_err(op, "empty tensor"))?;
        let xk = self.requires_grad().then(|| x.clone());
        Ok(Tensor::from_op(
            vec![m],
            vec![],
            op,
            &[self],
            move |g, _| {
                let x = xk.as_deref().map_or(&[][..], |v| v);
                let hit = |v: T| if m.is_nan() { v.is_nan() } else { v == m };
                let count = x.iter().filter(|&&v| hit(v)).count().max(1);
                let share = g[0] / T::from_usize(count);
                vec![Some(
                    x.iter()
                        .map(|&v| if hit(v) { share } else { T::zero() })
                        .collect(),
                )]
            },
        ))
    }

    /// Largest element.
    pub fn max_all(&self) -> Result<T> {
        self.data()
            .iter()
            .copied()
            .reduce(|a, b| if b > a { b } else { a })
            .ok_or_else(|| crate::error::arg_err("max_all", "empty tensor"))
    }
}
