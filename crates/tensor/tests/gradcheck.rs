//! f64 central-difference gradient checks for every differentiable op, several seeds and shapes.

use aics_tensor::gradcheck::gradcheck;
use aics_tensor::{ConvParams, Interp, PoolParams, Result, Rng, Tensor};

type T64 = Tensor<f64>;

/// Random inputs of the given shapes; `f` maps them to the op's output; every input differentiated.
fn check(name: &str, shapes: &[&[usize]], f: impl Fn(&[T64]) -> Result<T64>) {
    for seed in 0..3u64 {
        let mut rng = Rng::new(seed * 7919 + 1);
        let inputs: Vec<T64> = shapes.iter().map(|s| T64::randn(s, 0.0, 1.0, &mut rng)).collect();
        let wrt = vec![true; inputs.len()];
        let r = gradcheck(&f, &inputs, &wrt, seed).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.passed, "{name} (seed {seed}): max abs err {:.3e}, rel {:.3e}", r.max_abs_err, r.max_rel_err);
    }
}

/// Like `check`, but inputs drawn in [lo, hi) (for ops with kinks or restricted domains).
fn check_range(name: &str, shapes: &[&[usize]], lo: f64, hi: f64, f: impl Fn(&[T64]) -> Result<T64>) {
    for seed in 0..3u64 {
        let mut rng = Rng::new(seed * 104729 + 3);
        let inputs: Vec<T64> = shapes.iter().map(|s| T64::rand(s, lo, hi, &mut rng)).collect();
        let r = gradcheck(&f, &inputs, &vec![true; inputs.len()], seed).unwrap();
        assert!(r.passed, "{name} (seed {seed}): max abs err {:.3e}", r.max_abs_err);
    }
}

#[test]
fn elementwise_broadcast() {
    check("add", &[&[2, 3, 4], &[3, 1]], |x| x[0].add(&x[1]));
    check("sub", &[&[2, 1, 4], &[3, 4]], |x| x[0].sub(&x[1]));
    check("mul", &[&[2, 3, 4], &[1, 3, 1]], |x| x[0].mul(&x[1]));
    check("mul_scalar_like", &[&[4, 5], &[]], |x| x[0].mul(&x[1]));
    check_range("div", &[&[2, 3], &[3]], 0.5, 2.0, |x| x[0].div(&x[1]));
    check("maximum", &[&[3, 4], &[3, 4]], |x| x[0].maximum(&x[1]));
}

#[test]
fn unary() {
    check("tanh", &[&[3, 5]], |x| Ok(x[0].tanh()));
    check("sigmoid", &[&[3, 5]], |x| Ok(x[0].sigmoid()));
    check("exp", &[&[7]], |x| Ok(x[0].exp()));
    check("softplus", &[&[7]], |x| Ok(x[0].softplus()));
    check_range("log", &[&[6]], 0.2, 3.0, |x| Ok(x[0].log()));
    check_range("sqrt", &[&[6]], 0.2, 3.0, |x| Ok(x[0].sqrt()));
    check_range("powf", &[&[6]], 0.2, 3.0, |x| Ok(x[0].powf(1.7)));
    check("square", &[&[6]], |x| Ok(x[0].square()));
    check("affine", &[&[6]], |x| Ok(x[0].mul_scalar(3.0).add_scalar(-1.0).neg()));
    // kinks: keep away from 0
    check_range("relu", &[&[4, 4]], 0.1, 1.0, |x| Ok(x[0].add_scalar(-0.55).relu()));
    check_range("leaky_relu", &[&[4, 4]], 0.1, 1.0, |x| Ok(x[0].add_scalar(-0.55).leaky_relu(0.2)));
    check_range("prelu", &[&[2, 3, 2, 2], &[3]], 0.1, 1.0, |x| x[0].add_scalar(-0.55).prelu(&x[1]));
}

#[test]
fn reductions_and_shapes() {
    check("sum", &[&[3, 4]], |x| Ok(x[0].sum()));
    check("mean", &[&[3, 4]], |x| Ok(x[0].mean()));
    check("sum_dim", &[&[2, 3, 4]], |x| x[0].sum_dim(1, false));
    check("mean_dims", &[&[2, 3, 4]], |x| x[0].mean_dims(&[0, 2], true));
    check("max_dim", &[&[3, 5]], |x| Ok(x[0].max_dim(1, false)?.0));
    check("reshape", &[&[2, 6]], |x| x[0].reshape(&[3, 4])?.mul(&x[0].reshape(&[3, 4])?));
    check("permute", &[&[2, 3, 4]], |x| x[0].permute(&[2, 0, 1]));
    check("transpose", &[&[2, 3, 4]], |x| x[0].transpose(0, 2));
    check("narrow", &[&[4, 5]], |x| x[0].narrow(1, 1, 3));
    check("slice_step", &[&[4, 7]], |x| x[0].slice(1, 1, 7, 2));
    check("index_select_repeat", &[&[4, 3]], |x| x[0].index_select(0, &[3, 0, 3]));
    check("gather", &[&[3, 4]], |x| x[0].gather(1, &[0, 3, 1, 1, 2, 0], &[3, 2]));
    check("concat", &[&[2, 3], &[2, 2]], |x| Tensor::concat(&[&x[0], &x[1]], 1));
    check("stack", &[&[2, 3], &[2, 3]], |x| Tensor::stack(&[&x[0], &x[1]], 0));
    check("pad", &[&[1, 2, 3, 3]], |x| x[0].pad(&[(0, 0), (0, 0), (1, 2), (2, 1)], 0.5));
    check("embedding", &[&[5, 3]], |x| x[0].embedding(&[4, 0, 4, 2], &[2, 2]));
}

#[test]
fn matmul_and_linear() {
    check("matmul", &[&[3, 4], &[4, 5]], |x| x[0].matmul(&x[1]));
    check("bmm", &[&[2, 3, 4], &[2, 4, 5]], |x| x[0].matmul(&x[1]));
    check("bmm_shared", &[&[2, 3, 4], &[4, 5]], |x| x[0].matmul(&x[1]));
    check("linear", &[&[3, 4], &[5, 4], &[5]], |x| x[0].linear(&x[1], Some(&x[2])));
    check("linear_3d_nobias", &[&[2, 3, 4], &[5, 4]], |x| x[0].linear(&x[1], None));
}

#[test]
fn conv2d() {
    let p = ConvParams::default;
    check("conv3x3_pad1", &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]], |x| x[0].conv2d(&x[1], Some(&x[2]), p().padding(1)));
    check("conv1x1", &[&[2, 3, 4, 4], &[5, 3, 1, 1], &[5]], |x| x[0].conv2d(&x[1], Some(&x[2]), p()));
    check("conv1x3", &[&[1, 2, 5, 6], &[3, 2, 1, 3]], |x| x[0].conv2d(&x[1], None, ConvParams { padding: (0, 1), ..p() }));
    check("conv3x1", &[&[1, 2, 5, 6], &[3, 2, 3, 1]], |x| x[0].conv2d(&x[1], None, ConvParams { padding: (1, 0), ..p() }));
    check("conv_stride2", &[&[2, 2, 7, 7], &[3, 2, 3, 3]], |x| x[0].conv2d(&x[1], None, p().stride(2).padding(1)));
    check("conv_stride_hw", &[&[1, 2, 7, 8], &[3, 2, 3, 2]], |x| x[0].conv2d(&x[1], None, ConvParams { stride: (2, 3), ..p() }));
    check("conv_dilation2", &[&[1, 2, 7, 7], &[2, 2, 3, 3]], |x| x[0].conv2d(&x[1], None, p().dilation(2).padding(2)));
    check("conv_groups2", &[&[2, 4, 5, 5], &[6, 2, 3, 3], &[6]], |x| x[0].conv2d(&x[1], Some(&x[2]), p().groups(2).padding(1)));
    check("conv_depthwise", &[&[1, 3, 5, 5], &[3, 1, 3, 3]], |x| x[0].conv2d(&x[1], None, p().groups(3).padding(1)));
    check("conv_11x11_s4", &[&[1, 1, 15, 15], &[2, 1, 11, 11]], |x| x[0].conv2d(&x[1], None, p().stride(4).padding(2)));
    // non-contiguous input: a permuted tensor fed to the conv
    check("conv_permuted_input", &[&[5, 5, 1, 2], &[2, 2, 3, 3]], |x| x[0].permute(&[2, 3, 0, 1])?.conv2d(&x[1], None, p()));
}

#[test]
fn conv_transpose2d() {
    let p = ConvParams::default;
    check("convT_s2_k4_p1", &[&[1, 3, 3, 3], &[3, 2, 4, 4], &[2]], |x| x[0].conv_transpose2d(&x[1], Some(&x[2]), p().stride(2).padding(1)));
    check("convT_outpad", &[&[2, 2, 3, 3], &[2, 3, 3, 3]], |x| x[0].conv_transpose2d(&x[1], None, p().stride(2).padding(1).output_padding(1)));
    check("convT_groups", &[&[1, 4, 3, 3], &[4, 1, 3, 3]], |x| x[0].conv_transpose2d(&x[1], None, p().groups(2)));
    check("convT_dilation", &[&[1, 2, 3, 3], &[2, 2, 3, 3]], |x| x[0].conv_transpose2d(&x[1], None, p().dilation(2)));
}

#[test]
fn pooling() {
    // distinct values so that the max is unique (ties make max non-differentiable)
    check("maxpool2x2", &[&[2, 2, 4, 4]], |x| x[0].max_pool2d(PoolParams::new(2)));
    check("maxpool3s2_overlap", &[&[1, 2, 7, 7]], |x| x[0].max_pool2d(PoolParams::new(3).stride(2)));
    check("maxpool3s2_pad1", &[&[1, 2, 6, 6]], |x| x[0].max_pool2d(PoolParams::new(3).stride(2).padding(1)));
    check("maxpool_ceil", &[&[1, 2, 8, 8]], |x| x[0].max_pool2d(PoolParams::new(3).stride(2).ceil_mode(true)));
    check("maxpool_dilation", &[&[1, 1, 7, 7]], |x| x[0].max_pool2d(PoolParams::new(2).stride(1).dilation(2)));
    check("avgpool2x2", &[&[2, 2, 4, 4]], |x| x[0].avg_pool2d(PoolParams::new(2), true));
    check("avgpool_pad_incl", &[&[1, 2, 5, 5]], |x| x[0].avg_pool2d(PoolParams::new(3).stride(2).padding(1), true));
    check("avgpool_pad_excl", &[&[1, 2, 5, 5]], |x| x[0].avg_pool2d(PoolParams::new(3).stride(2).padding(1), false));
    check("avgpool_ceil", &[&[1, 1, 6, 6]], |x| x[0].avg_pool2d(PoolParams::new(3).stride(2).padding(1).ceil_mode(true), false));
    check_range("lppool2", &[&[1, 2, 6, 6]], 0.1, 1.0, |x| x[0].lp_pool2d(2.0, PoolParams::new(2)));
    check("adaptive_avg", &[&[1, 2, 7, 5]], |x| x[0].adaptive_avg_pool2d(3, 2));
}

#[test]
fn normalisation_and_softmax() {
    check("softmax", &[&[3, 5]], |x| x[0].softmax(1));
    check("softmax_dim0_3d", &[&[3, 2, 4]], |x| x[0].softmax(0));
    check("log_softmax", &[&[3, 5]], |x| x[0].log_softmax(-1));
    check_range("lrn5", &[&[1, 7, 2, 2]], -3.0, 3.0, |x| x[0].lrn(5, 0.1, 0.75, 2.0));
    check_range("lrn3", &[&[2, 4, 3]], -3.0, 3.0, |x| x[0].lrn(3, 0.5, 0.75, 1.0));
    check("batch_norm_train", &[&[4, 3, 2, 2], &[3], &[3]], |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), None, None, true, 0.1, 1e-5));
    check("batch_norm_1d", &[&[5, 3], &[3], &[3]], |x| x[0].batch_norm(Some(&x[1]), Some(&x[2]), None, None, true, 0.1, 1e-5));
    check("instance_norm", &[&[2, 3, 3, 3], &[3], &[3]], |x| x[0].instance_norm(Some(&x[1]), Some(&x[2]), 1e-5));
}

#[test]
fn upsampling() {
    check("nearest2x", &[&[1, 2, 3, 3]], |x| x[0].upsample(6, 6, Interp::Nearest));
    check("nearest_size", &[&[1, 1, 3, 3]], |x| x[0].upsample(7, 5, Interp::Nearest));
    check("bilinear", &[&[1, 2, 3, 4]], |x| x[0].upsample(6, 7, Interp::Bilinear { align_corners: false }));
    check("bilinear_ac", &[&[1, 2, 3, 4]], |x| x[0].upsample(5, 8, Interp::Bilinear { align_corners: true }));
}
