//! Differentiable ops: each validates its arguments, calls a CPU kernel and records its backward
//! beside its forward.

pub mod conv;
pub mod elementwise;
pub mod lrn;
pub mod matmul;
pub mod norm;
pub mod operators;
pub mod pool;
pub mod recurrent;
pub mod reduce;
pub mod roi;
pub mod shape_ops;
pub mod softmax;
pub mod upsample;

use crate::dtype::Float;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

impl<T: Float> Tensor<T> {
    /// Parametric ReLU with one slope per channel (dim 1), or a single shared slope.
    pub fn prelu(&self, weight: &Tensor<T>) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Prelu,
            &[self, weight],
            trace::inner(|| -> Result<Tensor<T>> {
                let n = weight.numel();
                let sh = self.shape();
                let mut ws = vec![1; sh.len()];
                if n != 1 {
                    if sh.len() < 2 || sh[1] != n {
                        return Err(shape_err(
                            "prelu",
                            format!(
                                "weight of {n} slopes does not fit input {sh:?} (channel dim 1)"
                            ),
                        ));
                    }
                    ws[1] = n;
                }
                let w = weight.reshape(&ws)?;
                // prelu(x) = relu(x) - w · relu(-x)
                self.relu().sub(&self.neg().relu().mul(&w)?)
            }),
        )
    }

    /// Rows of an embedding table `self` (V, D) for ids given as a tensor of integral values
    /// (`[S..]` → `[S.., D]`): [`Tensor::embedding`] with the ids as an operand, so that a trace
    /// records them as an input of the graph rather than as constants. An id that is negative,
    /// fractional or not below V is an error.
    pub fn embedding_ids(&self, ids: &Tensor<T>) -> Result<Tensor<T>> {
        let v = self.shape().first().copied().unwrap_or(0);
        let mut idx = Vec::with_capacity(ids.numel());
        for &x in ids.data().iter() {
            let f = x.as_f64();
            if !(f >= 0.0 && f.fract() == 0.0 && f < v as f64) {
                return Err(crate::error::arg_err(
                    "embedding",
                    format!("id {f} is not a row of a table of {v}"),
                ));
            }
            idx.push(f as usize);
        }
        trace::recorded(
            || Op::Embedding,
            &[self, ids],
            trace::inner(|| self.embedding(&idx, ids.shape())),
        )
    }

    /// Rows of an embedding table `self` (V, D) for integer ids: output `[ids_shape.., D]`.
    pub fn embedding(&self, ids: &[usize], ids_shape: &[usize]) -> Result<Tensor<T>> {
        if self.rank() != 2 || ids_shape.iter().product::<usize>() != ids.len() {
            return Err(shape_err(
                "embedding",
                format!(
                    "table {:?} must be (V, D) and ids must fill {ids_shape:?}",
                    self.shape()
                ),
            ));
        }
        let mut shape = ids_shape.to_vec();
        shape.push(self.shape()[1]);
        self.index_select(0, ids)?.reshape(&shape)
    }
}
