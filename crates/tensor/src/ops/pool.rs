//! Pooling ops with PyTorch's semantics: `max_pool2d` (padding, dilation, ceil_mode, indices),
//! `avg_pool2d` (count_include_pad, ceil_mode), `lp_pool2d`, `adaptive_avg_pool2d`.

use std::sync::Arc;

use crate::cpu::pool::{self as k, pool_out_size, PoolGeom};
use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

/// Hyper-parameters of a 2-D pooling window, as `(height, width)` pairs. `stride` defaults to
/// the kernel size, as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
}

impl PoolParams {
    pub fn new(k: usize) -> Self {
        PoolParams {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    pub fn ceil_mode(mut self, c: bool) -> Self {
        self.ceil_mode = c;
        self
    }
}

fn pool_geom(op: &'static str, x: &[usize], p: &PoolParams) -> Result<PoolGeom> {
    if x.len() != 4 && x.len() != 3 {
        return Err(shape_err(
            op,
            format!("expected input (N, C, H, W) or (C, H, W), got {x:?}"),
        ));
    }
    let (h, w) = (x[x.len() - 2], x[x.len() - 1]);
    let (kh, kw) = p.kernel;
    if kh == 0
        || kw == 0
        || p.stride.0 == 0
        || p.stride.1 == 0
        || p.dilation.0 == 0
        || p.dilation.1 == 0
    {
        return Err(arg_err(
            op,
            format!("kernel, stride and dilation must be positive, got {p:?}"),
        ));
    }
    if p.padding.0 * 2 > kh || p.padding.1 * 2 > kw {
        return Err(arg_err(
            op,
            format!(
                "padding {:?} must be at most half the kernel {:?}",
                p.padding, p.kernel
            ),
        ));
    }
    let oh = pool_out_size(h, kh, p.stride.0, p.padding.0, p.dilation.0, p.ceil_mode);
    let ow = pool_out_size(w, kw, p.stride.1, p.padding.1, p.dilation.1, p.ceil_mode);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(shape_err(
            op,
            format!(
                "kernel {:?} does not fit input {x:?} with padding {:?}",
                p.kernel, p.padding
            ),
        ));
    };
    Ok(PoolGeom {
        planes: x[..x.len() - 2].iter().product(),
        h,
        w,
        kh,
        kw,
        sh: p.stride.0,
        sw: p.stride.1,
        ph: p.padding.0,
        pw: p.padding.1,
        dh: p.dilation.0,
        dw: p.dilation.1,
        oh,
        ow,
    })
}

fn out_shape(x: &[usize], oh: usize, ow: usize) -> Vec<usize> {
    let mut s = x[..x.len() - 2].to_vec();
    s.extend([oh, ow]);
    s
}

impl<T: Float> Tensor<T> {
    /// Max pooling; also returns the argmax of each output as a flat index into its H·W plane
    /// (PyTorch's `return_indices=True`).
    pub fn max_pool2d_with_indices(&self, p: PoolParams) -> Result<(Tensor<T>, Vec<u32>)> {
        let (t, idx) = self.max_pool2d_indexed(p)?;
        Ok((
            t,
            Arc::try_unwrap(idx).unwrap_or_else(|a| a.as_ref().clone()),
        ))
    }

    /// Max pooling with its backward pass, and the indices that pass reads.
    fn max_pool2d_indexed(&self, p: PoolParams) -> Result<(Tensor<T>, Arc<Vec<u32>>)> {
        let g = pool_geom("max_pool2d", self.shape(), &p)?;
        let (y, idx) = k::max_pool_fwd(&self.data(), &g);
        let idx = Arc::new(idx);
        let ic = idx.clone();
        let t = Tensor::from_op(
            y,
            out_shape(self.shape(), g.oh, g.ow),
            "max_pool2d",
            &[self],
            move |gy, _| vec![Some(k::max_pool_bwd(gy, &ic, &g))],
        );
        trace::record(Op::MaxPool(p), &[self], &[&t]);
        Ok((t, idx))
    }

    pub fn max_pool2d(&self, p: PoolParams) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::MaxPool(p),
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                if !(crate::autograd::grad_enabled() && self.requires_grad()) {
                    // no backward pass: the values alone, without the indices it would read
                    let g = pool_geom("max_pool2d", self.shape(), &p)?;
                    let y = k::max_pool_values(&self.data(), &g);
                    return Ok(Tensor::from_op(
                        y,
                        out_shape(self.shape(), g.oh, g.ow),
                        "max_pool2d",
                        &[self],
                        |_, _| vec![None],
                    ));
                }
                Ok(self.max_pool2d_indexed(p)?.0)
            }),
        )
    }

    /// Average pooling; `count_include_pad` counts padded zeros in the divisor (PyTorch default true).
    pub fn avg_pool2d(&self, p: PoolParams, count_include_pad: bool) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::AvgPool {
                p,
                count_include_pad,
            },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                if p.dilation != (1, 1) {
                    return Err(arg_err(
                        "avg_pool2d",
                        "dilation is not supported for average pooling",
                    ));
                }
                let g = pool_geom("avg_pool2d", self.shape(), &p)?;
                let y = k::avg_pool_fwd(&self.data(), &g, count_include_pad);
                Ok(Tensor::from_op(
                    y,
                    out_shape(self.shape(), g.oh, g.ow),
                    "avg_pool2d",
                    &[self],
                    move |gy, _| vec![Some(k::avg_pool_bwd(gy, &g, count_include_pad))],
                ))
            }),
        )
    }

    /// Power-average pooling `(Σ x^p)^(1/p)` over each window (PyTorch `LPPool2d`; p = 2 is L2
    /// pooling), built from differentiable ops exactly as PyTorch defines it.
    pub fn lp_pool2d(&self, norm_type: f64, p: PoolParams) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::LpPool { norm: norm_type, p },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                if norm_type <= 0.0 {
                    return Err(arg_err(
                        "lp_pool2d",
                        format!("norm_type must be positive, got {norm_type}"),
                    ));
                }
                let area = (p.kernel.0 * p.kernel.1) as f64;
                let pp = PoolParams {
                    padding: (0, 0),
                    dilation: (1, 1),
                    ..p
                };
                let s = self.powf(norm_type).avg_pool2d(pp, true)?;
                Ok(s.relu().mul_scalar(area).powf(1.0 / norm_type))
            }),
        )
    }

    /// Adaptive average pooling to `(oh, ow)` (PyTorch `adaptive_avg_pool2d`).
    pub fn adaptive_avg_pool2d(&self, oh: usize, ow: usize) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::AdaptiveAvgPool { oh, ow },
            &[self],
            trace::inner(|| -> Result<Tensor<T>> {
                let x = self.shape();
                if (x.len() != 4 && x.len() != 3) || oh == 0 || ow == 0 {
                    return Err(shape_err("adaptive_avg_pool2d", format!("expected input (N, C, H, W) and a positive output size, got {x:?} -> ({oh}, {ow})")));
                }
                let (h, w) = (x[x.len() - 2], x[x.len() - 1]);
                let planes: usize = x[..x.len() - 2].iter().product();
                let y = k::adaptive_avg_fwd(&self.data(), planes, h, w, oh, ow);
                Ok(Tensor::from_op(
                    y,
                    out_shape(x, oh, ow),
                    "adaptive_avg_pool2d",
                    &[self],
                    move |gy, _| vec![Some(k::adaptive_avg_bwd(gy, planes, h, w, oh, ow))],
                ))
            }),
        )
    }
}
