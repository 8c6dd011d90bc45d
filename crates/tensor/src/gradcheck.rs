//! Finite-difference gradient check in f64: the analytical gradient of `L = Σ f(x) ⊙ r` (r a fixed
//! random projection) against central differences `(L(x+ε) - L(x-ε)) / 2ε`, element by element.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::ops::conv::ConvParams;
use crate::ops::pool::PoolParams;
use crate::ops::recurrent::{Cell, RecurrentOpts};
use crate::ops::upsample::Interp;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::testing::{self, Tol};

#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// Largest |analytical - numerical| over all checked elements.
    pub max_abs_err: f64,
    /// Largest |analytical - numerical| / max(1, |numerical|).
    pub max_rel_err: f64,
    pub checked: usize,
    pub passed: bool,
}

/// Check `f` at `inputs`; `wrt[i]` says whether input i is differentiated. Passes when every
/// element agrees within `atol + rtol·|numerical|` ([`crate::testing`]: a NaN or infinity on
/// either side fails).
#[allow(clippy::type_complexity)]
pub fn gradcheck(
    f: &dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
    inputs: &[Tensor<f64>],
    wrt: &[bool],
    seed: u64,
) -> Result<GradCheckReport> {
    let (eps, atol, rtol) = (1e-6, 1e-7, 1e-5);
    let leaves: Vec<Tensor<f64>> = inputs
        .iter()
        .zip(wrt)
        .map(|(t, &w)| t.copy().requires_grad_(w))
        .collect();
    let out = f(&leaves)?;
    let mut rng = Rng::new(seed);
    let r = Tensor::<f64>::rand(out.shape(), -1.0, 1.0, &mut rng);
    out.mul(&r)?.sum().backward()?;
    let rd = r.data();
    let loss_at = |xs: &[Tensor<f64>]| -> Result<f64> {
        let _g = no_grad();
        let o = f(xs)?;
        Ok(o.data().iter().zip(rd.iter()).map(|(a, b)| a * b).sum())
    };
    let (mut max_abs, mut max_rel, mut checked, mut passed) = (0.0f64, 0.0f64, 0usize, true);
    for (i, leaf) in leaves.iter().enumerate() {
        if !wrt[i] {
            continue;
        }
        let analytic = leaf
            .grad()
            .map(|g| g.to_vec())
            .unwrap_or_else(|| vec![0.0; leaf.numel()]);
        let base = leaf.to_vec();
        for j in 0..base.len() {
            let mut xs: Vec<Tensor<f64>> = leaves.iter().map(|t| t.detach()).collect();
            let mut plus = base.clone();
            plus[j] += eps;
            xs[i] = Tensor::from_vec(plus, leaf.shape())?;
            let lp = loss_at(&xs)?;
            let mut minus = base.clone();
            minus[j] -= eps;
            xs[i] = Tensor::from_vec(minus, leaf.shape())?;
            let lm = loss_at(&xs)?;
            let num = (lp - lm) / (2.0 * eps);
            // a non-finite value on either side fails, and stays NaN in the report
            let err = (analytic[j] - num).abs();
            passed &= testing::within(analytic[j], num, Tol::new(atol, rtol));
            max_abs = testing::nan_max(max_abs, err);
            max_rel = testing::nan_max(max_rel, err / num.abs().max(1.0));
            checked += 1;
        }
    }
    Ok(GradCheckReport {
        max_abs_err: max_abs,
        max_rel_err: max_rel,
        checked,
        passed,
    })
}

/// The function under test in an [`OpCase`].
pub type OpFn = Box<dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>> + Send + Sync>;

/// One named op check: input shapes, an optional input range (for ops with kinks or restricted
/// domains), and the function under test.
pub struct OpCase {
    pub name: &'static str,
    pub shapes: Vec<Vec<usize>>,
    pub range: Option<(f64, f64)>,
    pub f: OpFn,
}

fn case(
    name: &'static str,
    shapes: &[&[usize]],
    range: Option<(f64, f64)>,
    f: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>> + Send + Sync + 'static,
) -> OpCase {
    OpCase {
        name,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        range,
        f: Box::new(f),
    }
}

impl OpCase {
    /// Draw inputs for `seed` and check every input's gradient.
    pub fn run(&self, seed: u64) -> Result<GradCheckReport> {
        let mut rng = Rng::new(seed.wrapping_mul(7919).wrapping_add(1));
        let inputs: Vec<Tensor<f64>> = self
            .shapes
            .iter()
            .map(|s| match self.range {
                Some((lo, hi)) => Tensor::rand(s, lo, hi, &mut rng),
                None => Tensor::randn(s, 0.0, 1.0, &mut rng),
            })
            .collect();
        gradcheck(&*self.f, &inputs, &vec![true; inputs.len()], seed)
    }
}

fn p() -> ConvParams {
    ConvParams::default()
}

/// The gradient checks of every differentiable op: strides, padding, dilation, groups,
/// ceil_mode, overlapping pools, broadcasting, non-contiguous (permuted) inputs.
/// Kinks are kept away from: relu-like inputs are shifted off 0, max pools use distinct values.
pub fn op_cases() -> Vec<OpCase> {
    vec![
        case("add", &[&[2, 3, 4], &[3, 1]], None, |x| x[0].add(&x[1])),
        case("sub", &[&[2, 1, 4], &[3, 4]], None, |x| x[0].sub(&x[1])),
        case("mul", &[&[2, 3, 4], &[1, 3, 1]], None, |x| x[0].mul(&x[1])),
        case("mul_scalar_like", &[&[4, 5], &[]], None, |x| {
            x[0].mul(&x[1])
        }),
        case("div", &[&[2, 3], &[3]], Some((0.5, 2.0)), |x| {
            x[0].div(&x[1])
        }),
        case("maximum", &[&[3, 4], &[3, 4]], None, |x| {
            x[0].maximum(&x[1])
        }),
        case("tanh", &[&[3, 5]], None, |x| Ok(x[0].tanh())),
        case("sigmoid", &[&[3, 5]], None, |x| Ok(x[0].sigmoid())),
        case("exp", &[&[7]], None, |x| Ok(x[0].exp())),
        case("softplus", &[&[7]], None, |x| Ok(x[0].softplus())),
        case("log", &[&[6]], Some((0.2, 3.0)), |x| Ok(x[0].log())),
        case("sqrt", &[&[6]], Some((0.2, 3.0)), |x| Ok(x[0].sqrt())),
        case("powf", &[&[6]], Some((0.2, 3.0)), |x| Ok(x[0].powf(1.7))),
        case("square", &[&[6]], None, |x| Ok(x[0].square())),
        case("affine", &[&[6]], None, |x| {
            Ok(x[0].mul_scalar(3.0).add_scalar(-1.0).neg())
        }),
        case("relu", &[&[4, 4]], Some((0.1, 1.0)), |x| {
            Ok(x[0].add_scalar(-0.55).relu())
        }),
        case("leaky_relu", &[&[4, 4]], Some((0.1, 1.0)), |x| {
            Ok(x[0].add_scalar(-0.55).leaky_relu(0.2))
        }),
        case("hardswish_middle", &[&[4, 4]], Some((0.1, 1.0)), |x| {
            Ok(x[0].mul_scalar(2.5).hardswish())
        }),
        case("hardswish_tails", &[&[4, 4]], Some((0.1, 1.0)), |x| {
            x[0].add_scalar(4.2)
                .hardswish()
                .add(&x[0].add_scalar(-4.2).hardswish())
        }),
        case("hardsigmoid", &[&[4, 4]], Some((0.1, 1.0)), |x| {
            x[0].mul_scalar(2.5)
                .hardsigmoid()
                .add(&x[0].add_scalar(4.2).hardsigmoid())
        }),
        case("channel_affine", &[&[2, 3, 2, 2], &[3], &[3]], None, |x| {
            x[0].channel_affine(&x[1], &x[2])
        }),
        case("prelu", &[&[2, 3, 2, 2], &[3]], Some((0.1, 1.0)), |x| {
            x[0].add_scalar(-0.55).prelu(&x[1])
        }),
        case("sum", &[&[3, 4]], None, |x| Ok(x[0].sum())),
        case("mean", &[&[3, 4]], None, |x| Ok(x[0].mean())),
        case("sum_dim", &[&[2, 3, 4]], None, |x| x[0].sum_dim(1, false)),
        case("mean_dims", &[&[2, 3, 4]], None, |x| {
            x[0].mean_dims(&[0, 2], true)
        }),
        case("max_dim", &[&[3, 5]], None, |x| {
            Ok(x[0].max_dim(1, false)?.0)
        }),
        case("reshape", &[&[2, 6]], None, |x| {
            x[0].reshape(&[3, 4])?.mul(&x[0].reshape(&[3, 4])?)
        }),
        case("permute", &[&[2, 3, 4]], None, |x| x[0].permute(&[2, 0, 1])),
        case("transpose", &[&[2, 3, 4]], None, |x| x[0].transpose(0, 2)),
        case("narrow", &[&[4, 5]], None, |x| x[0].narrow(1, 1, 3)),
        case("slice_step", &[&[4, 7]], None, |x| x[0].slice(1, 1, 7, 2)),
        case("index_select_repeat", &[&[4, 3]], None, |x| {
            x[0].index_select(0, &[3, 0, 3])
        }),
        case("gather", &[&[3, 4]], None, |x| {
            x[0].gather(1, &[0, 3, 1, 1, 2, 0], &[3, 2])
        }),
        case("concat", &[&[2, 3], &[2, 2]], None, |x| {
            Tensor::concat(&[&x[0], &x[1]], 1)
        }),
        case("stack", &[&[2, 3], &[2, 3]], None, |x| {
            Tensor::stack(&[&x[0], &x[1]], 0)
        }),
        case("reflection_pad2d", &[&[2, 2, 3, 4]], None, |x| {
            x[0].reflection_pad2d([3, 1, 2, 0])
        }),
        case("pad", &[&[1, 2, 3, 3]], None, |x| {
            x[0].pad(&[(0, 0), (0, 0), (1, 2), (2, 1)], 0.5)
        }),
        case("embedding", &[&[5, 3]], None, |x| {
            x[0].embedding(&[4, 0, 4, 2], &[2, 2])
        }),
        case("matmul", &[&[3, 4], &[4, 5]], None, |x| x[0].matmul(&x[1])),
        case("bmm", &[&[2, 3, 4], &[2, 4, 5]], None, |x| {
            x[0].matmul(&x[1])
        }),
        case("gram", &[&[3, 5]], None, |x| x[0].gram()),
        case("gram_batched", &[&[2, 3, 4]], None, |x| x[0].gram()),
        case("bmm_shared", &[&[2, 3, 4], &[4, 5]], None, |x| {
            x[0].matmul(&x[1])
        }),
        case("linear", &[&[3, 4], &[5, 4], &[5]], None, |x| {
            x[0].linear(&x[1], Some(&x[2]))
        }),
        case("linear_3d_nobias", &[&[2, 3, 4], &[5, 4]], None, |x| {
            x[0].linear(&x[1], None)
        }),
        case(
            "conv3x3_pad1",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]],
            None,
            |x| x[0].conv2d(&x[1], Some(&x[2]), p().padding(1)),
        ),
        case(
            "conv3x3_relu",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]],
            None,
            |x| x[0].conv2d_relu(&x[1], Some(&x[2]), p().padding(1)),
        ),
        case(
            "conv3x3_leaky_relu",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]],
            None,
            |x| x[0].conv2d_leaky_relu(&x[1], Some(&x[2]), p().padding(1), 0.1),
        ),
        case(
            "conv1x1",
            &[&[2, 3, 4, 4], &[5, 3, 1, 1], &[5]],
            None,
            |x| x[0].conv2d(&x[1], Some(&x[2]), p()),
        ),
        case("conv1x3", &[&[1, 2, 5, 6], &[3, 2, 1, 3]], None, |x| {
            x[0].conv2d(
                &x[1],
                None,
                ConvParams {
                    padding: (0, 1),
                    ..p()
                },
            )
        }),
        case("conv3x1", &[&[1, 2, 5, 6], &[3, 2, 3, 1]], None, |x| {
            x[0].conv2d(
                &x[1],
                None,
                ConvParams {
                    padding: (1, 0),
                    ..p()
                },
            )
        }),
        case("conv_stride2", &[&[2, 2, 7, 7], &[3, 2, 3, 3]], None, |x| {
            x[0].conv2d(&x[1], None, p().stride(2).padding(1))
        }),
        case(
            "conv_stride_hw",
            &[&[1, 2, 7, 8], &[3, 2, 3, 2]],
            None,
            |x| {
                x[0].conv2d(
                    &x[1],
                    None,
                    ConvParams {
                        stride: (2, 3),
                        ..p()
                    },
                )
            },
        ),
        case(
            "conv_dilation2",
            &[&[1, 2, 7, 7], &[2, 2, 3, 3]],
            None,
            |x| x[0].conv2d(&x[1], None, p().dilation(2).padding(2)),
        ),
        case(
            "conv_groups2",
            &[&[2, 4, 5, 5], &[6, 2, 3, 3], &[6]],
            None,
            |x| x[0].conv2d(&x[1], Some(&x[2]), p().groups(2).padding(1)),
        ),
        case(
            "conv_depthwise",
            &[&[1, 3, 5, 5], &[3, 1, 3, 3]],
            None,
            |x| x[0].conv2d(&x[1], None, p().groups(3).padding(1)),
        ),
        case(
            "conv_11x11_s4",
            &[&[1, 1, 15, 15], &[2, 1, 11, 11]],
            None,
            |x| x[0].conv2d(&x[1], None, p().stride(4).padding(2)),
        ),
        case(
            "conv_permuted_input",
            &[&[5, 5, 1, 2], &[2, 2, 3, 3]],
            None,
            |x| x[0].permute(&[2, 3, 0, 1])?.conv2d(&x[1], None, p()),
        ),
        case(
            "convT_s2_k4_p1",
            &[&[1, 3, 3, 3], &[3, 2, 4, 4], &[2]],
            None,
            |x| x[0].conv_transpose2d(&x[1], Some(&x[2]), p().stride(2).padding(1)),
        ),
        case("convT_outpad", &[&[2, 2, 3, 3], &[2, 3, 3, 3]], None, |x| {
            x[0].conv_transpose2d(&x[1], None, p().stride(2).padding(1).output_padding(1))
        }),
        case("convT_groups", &[&[1, 4, 3, 3], &[4, 1, 3, 3]], None, |x| {
            x[0].conv_transpose2d(&x[1], None, p().groups(2))
        }),
        case(
            "convT_dilation",
            &[&[1, 2, 3, 3], &[2, 2, 3, 3]],
            None,
            |x| x[0].conv_transpose2d(&x[1], None, p().dilation(2)),
        ),
        case("maxpool2x2", &[&[2, 2, 4, 4]], None, |x| {
            x[0].max_pool2d(PoolParams::new(2))
        }),
        case("maxpool3s2_overlap", &[&[1, 2, 7, 7]], None, |x| {
            x[0].max_pool2d(PoolParams::new(3).stride(2))
        }),
        case("maxpool3s2_pad1", &[&[1, 2, 6, 6]], None, |x| {
            x[0].max_pool2d(PoolParams::new(3).stride(2).padding(1))
        }),
        case("maxpool_ceil", &[&[1, 2, 8, 8]], None, |x| {
            x[0].max_pool2d(PoolParams::new(3).stride(2).ceil_mode(true))
        }),
        case("maxpool_dilation", &[&[1, 1, 7, 7]], None, |x| {
            x[0].max_pool2d(PoolParams::new(2).stride(1).dilation(2))
        }),
        case("avgpool2x2", &[&[2, 2, 4, 4]], None, |x| {
            x[0].avg_pool2d(PoolParams::new(2), true)
        }),
        case("avgpool_pad_incl", &[&[1, 2, 5, 5]], None, |x| {
            x[0].avg_pool2d(PoolParams::new(3).stride(2).padding(1), true)
        }),
        case("avgpool_pad_excl", &[&[1, 2, 5, 5]], None, |x| {
            x[0].avg_pool2d(PoolParams::new(3).stride(2).padding(1), false)
        }),
        case("avgpool_ceil", &[&[1, 1, 6, 6]], None, |x| {
            x[0].avg_pool2d(
                PoolParams::new(3).stride(2).padding(1).ceil_mode(true),
                false,
            )
        }),
        case("lppool2", &[&[1, 2, 6, 6]], Some((0.1, 1.0)), |x| {
            x[0].lp_pool2d(2.0, PoolParams::new(2))
        }),
        case("adaptive_avg", &[&[1, 2, 7, 5]], None, |x| {
            x[0].adaptive_avg_pool2d(3, 2)
        }),
        case("softmax", &[&[3, 5]], None, |x| x[0].softmax(1)),
        case("softmax_dim0_3d", &[&[3, 2, 4]], None, |x| x[0].softmax(0)),
        case("log_softmax", &[&[3, 5]], None, |x| x[0].log_softmax(-1)),
        case("lrn5", &[&[1, 7, 2, 2]], Some((-3.0, 3.0)), |x| {
            x[0].lrn(5, 0.1, 0.75, 2.0)
        }),
        case("lrn3", &[&[2, 4, 3]], Some((-3.0, 3.0)), |x| {
            x[0].lrn(3, 0.5, 0.75, 1.0)
        }),
        case(
            "batch_norm_train",
            &[&[4, 3, 2, 2], &[3], &[3]],
            None,
            |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), None, None, true, 0.1, 1e-5),
        ),
        case("batch_norm_1d", &[&[5, 3], &[3], &[3]], None, |x| {
            x[0].batch_norm(Some(&x[1]), Some(&x[2]), None, None, true, 0.1, 1e-5)
        }),
        case(
            "conv2d_fused_relu6_residual",
            &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4], &[2, 4, 5, 5]],
            Some((-2.0, 2.0)),
            |x| {
                x[0].conv2d_fused(
                    &x[1],
                    Some(&x[2]),
                    ConvParams::default().padding(1),
                    crate::Activation::Relu6,
                    Some(&x[3]),
                )
            },
        ),
        case(
            "conv2d_fused_relu_residual_depthwise",
            &[&[1, 3, 6, 6], &[3, 1, 3, 3], &[3], &[1, 3, 3, 3]],
            None,
            |x| {
                x[0].conv2d_fused(
                    &x[1],
                    Some(&x[2]),
                    ConvParams::default().padding(1).stride(2).groups(3),
                    crate::Activation::Relu,
                    Some(&x[3]),
                )
            },
        ),
        case("batch_norm_plain", &[&[3, 2, 5]], None, |x| {
            x[0].batch_norm(None, None, None, None, true, 0.1, 1e-5)
        }),
        case(
            "batch_norm_weight_only",
            &[&[2, 3, 2, 2], &[3]],
            None,
            |x| x[0].batch_norm(Some(&x[1]), None, None, None, true, 0.1, 1e-5),
        ),
        case("batch_norm_bias_only", &[&[2, 3, 2, 2], &[3]], None, |x| {
            x[0].batch_norm(None, Some(&x[1]), None, None, true, 0.1, 1e-5)
        }),
        case("instance_norm", &[&[2, 3, 3, 3], &[3], &[3]], None, |x| {
            x[0].instance_norm(Some(&x[1]), Some(&x[2]), 1e-5)
        }),
        case("instance_norm_plain_1d", &[&[2, 2, 5]], None, |x| {
            x[0].instance_norm(None, None, 1e-5)
        }),
        case(
            "instance_norm_weight_only",
            &[&[1, 2, 2, 3], &[2]],
            None,
            |x| x[0].instance_norm(Some(&x[1]), None, 1e-5),
        ),
        case(
            "instance_norm_bias_only",
            &[&[1, 2, 2, 3], &[2]],
            None,
            |x| x[0].instance_norm(None, Some(&x[1]), 1e-5),
        ),
        case("nearest2x", &[&[1, 2, 3, 3]], None, |x| {
            x[0].upsample(6, 6, Interp::Nearest)
        }),
        case("nearest_size", &[&[1, 1, 3, 3]], None, |x| {
            x[0].upsample(7, 5, Interp::Nearest)
        }),
        case("bilinear", &[&[1, 2, 3, 4]], None, |x| {
            x[0].upsample(
                6,
                7,
                Interp::Bilinear {
                    align_corners: false,
                },
            )
        }),
        case("bilinear_ac", &[&[1, 2, 3, 4]], None, |x| {
            x[0].upsample(
                5,
                8,
                Interp::Bilinear {
                    align_corners: true,
                },
            )
        }),
        recurrent_case("rnn_tanh", Cell::RnnTanh, 3, 3, false, false, None, false),
        recurrent_case(
            "rnn_relu_rev_len",
            Cell::RnnRelu,
            3,
            3,
            false,
            false,
            Some(vec![4, 2, 3]),
            true,
        ),
        recurrent_case("lstm", LSTM, 3, 3, true, false, None, false),
        recurrent_case(
            "lstm_peephole_rev_len",
            LSTM_PEEP,
            3,
            3,
            true,
            false,
            Some(vec![2, 4, 1]),
            true,
        ),
        recurrent_case(
            "lstm_coupled_peephole_len",
            LSTM_CPL_PEEP,
            3,
            3,
            true,
            false,
            Some(vec![3, 4, 2]),
            false,
        ),
        recurrent_case("lstm_coupled", LSTM_CPL, 3, 3, false, false, None, true),
        recurrent_case(
            "lstm_proj_len",
            LSTM,
            3,
            2,
            true,
            true,
            Some(vec![4, 1, 3]),
            false,
        ),
        recurrent_case(
            "lstm_proj_peephole_rev",
            LSTM_PEEP,
            3,
            2,
            true,
            true,
            None,
            true,
        ),
        recurrent_case("gru", GRU, 3, 3, false, false, None, false),
        recurrent_case(
            "gru_rev_len",
            GRU,
            3,
            3,
            false,
            false,
            Some(vec![1, 4, 3]),
            true,
        ),
        recurrent_case("gru_cho", GRU_CHO, 3, 3, false, false, None, false),
        recurrent_case(
            "gru_cho_rev_len",
            GRU_CHO,
            3,
            3,
            false,
            false,
            Some(vec![2, 3, 4]),
            true,
        ),
    ]
}

const LSTM: Cell = Cell::Lstm {
    peephole: false,
    coupled: false,
};
const LSTM_PEEP: Cell = Cell::Lstm {
    peephole: true,
    coupled: false,
};
const LSTM_CPL: Cell = Cell::Lstm {
    peephole: false,
    coupled: true,
};
const LSTM_CPL_PEEP: Cell = Cell::Lstm {
    peephole: true,
    coupled: true,
};
const GRU: Cell = Cell::Gru { reset_after: true };
const GRU_CHO: Cell = Cell::Gru { reset_after: false };

/// One direction of a recurrent layer over 4 steps of a batch of 3 (hidden `h`, state `p`), its
/// output, final state and final cell state flattened into one tensor. Inputs: the input
/// projection, h0, W_hh, b_hh, then c0 (`with_c0`), the peepholes and W_hr (`p < h`) as the cell
/// has them.
#[allow(clippy::too_many_arguments)]
fn recurrent_case(
    name: &'static str,
    cell: Cell,
    h: usize,
    p: usize,
    with_c0: bool,
    proj: bool,
    lengths: Option<Vec<usize>>,
    reverse: bool,
) -> OpCase {
    let (t, n, gh) = (4, 3, cell.gates() * h);
    let mut shapes: Vec<Vec<usize>> = vec![vec![t, n, gh], vec![n, p], vec![gh, p], vec![gh]];
    if with_c0 {
        shapes.push(vec![n, h]);
    }
    let peep = cell.peepholes();
    if peep > 0 {
        shapes.push(vec![peep, h]);
    }
    if proj {
        shapes.push(vec![p, h]);
    }
    OpCase {
        name,
        shapes,
        range: None,
        f: Box::new(move |x| {
            let mut k = 4;
            let mut next = |on: bool| {
                on.then(|| {
                    k += 1;
                    &x[k - 1]
                })
            };
            let opts = RecurrentOpts {
                b_hh: Some(&x[3]),
                c0: next(with_c0),
                peephole: next(peep > 0),
                w_hr: next(proj),
                lengths: lengths.as_deref(),
                reverse,
            };
            // keep the recurrence away from saturation: W_hh at half scale
            let out = x[0].recurrent(cell, &x[1], &x[2].mul_scalar(0.5), opts)?;
            let mut parts = vec![
                out.output.reshape(&[t * n * p])?,
                out.h_n.reshape(&[n * p])?,
            ];
            if let Some(c) = out.c_n {
                parts.push(c.reshape(&[n * h])?);
            }
            let refs: Vec<&Tensor<f64>> = parts.iter().collect();
            Tensor::concat(&refs, 0)
        }),
    }
}
