//! Fast kernels held to their naive references over random shapes.

use aics_tensor::cpu::conv::{
    conv2d_bwd_data, conv2d_bwd_naive, conv2d_bwd_weight, conv2d_fwd, conv2d_fwd_naive,
};
use aics_tensor::cpu::gemm::{gemm, gemm_naive, Mat};
use aics_tensor::ops::conv::conv2d_geom;
use aics_tensor::testing::{self, Tol};
use aics_tensor::{ConvParams, Rng};

fn randv(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// Fast (first) against naive (second), within `tol·(1 + |naive|)`; NaN fails.
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    testing::assert_close(what, a, b, Tol::mixed(tol as f64));
}

/// The forward and both gradients against the naive loops.
fn assert_conv_matches_naive(
    g: &aics_tensor::cpu::conv::Conv2dGeom,
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
    tag: &str,
) {
    let y = conv2d_fwd(x, wt, g);
    assert_close(&format!("fwd {tag}"), &y, &conv2d_fwd_naive(x, wt, g), 1e-4);
    let (dx, dw) = conv2d_bwd_naive(x, wt, dy, g);
    assert_close(&format!("dx {tag}"), &conv2d_bwd_data(dy, wt, g), &dx, 1e-4);
    let dw_fast = conv2d_bwd_weight(x, dy, g);
    assert_close(&format!("dw {tag}"), &dw_fast, &dw, 1e-4);
}

#[test]
fn gemm_matches_naive_with_transposes() {
    let mut rng = Rng::new(11);
    for _ in 0..20 {
        let (m, n, k) = (1 + rng.below(70), 1 + rng.below(70), 1 + rng.below(90));
        let a = randv(m * k, &mut rng);
        let b = randv(k * n, &mut rng);
        let (ta, tb) = (rng.below(2) == 1, rng.below(2) == 1);
        let am = if ta { Mat::rm_t(&a, m) } else { Mat::rm(&a, k) };
        let bm = if tb { Mat::rm_t(&b, k) } else { Mat::rm(&b, n) };
        let mut c1 = randv(m * n, &mut rng);
        let mut c2 = c1.clone();
        let acc = rng.below(2) == 1;
        gemm(m, n, k, am, bm, &mut c1, acc, true);
        gemm_naive(m, n, k, am, bm, &mut c2, acc);
        assert_close(&format!("gemm {m}x{n}x{k} ta={ta} tb={tb}"), &c1, &c2, 1e-4);
    }
}

/// One or two rows times a matrix read along its columns (a fully connected layer at batch 1,
/// which runs as one dot product per output): long and odd inner sizes, several column
/// blocks, with and without accumulation, on one thread and on the pool.
#[test]
fn few_row_products_match_naive() {
    let mut rng = Rng::new(12);
    for (m, n, k) in [
        (1, 1, 64),
        (1, 37, 100),
        (2, 300, 1001),
        (1, 700, 4133),
        (2, 5, 64),
        (1, 1000, 1280),
        (2, 13, 70),
    ] {
        let a = randv(m * k, &mut rng);
        let b = randv(k * n, &mut rng);
        for (acc, parallel) in [(false, true), (true, true), (true, false)] {
            let mut c1 = randv(m * n, &mut rng);
            let mut c2 = c1.clone();
            gemm(
                m,
                n,
                k,
                Mat::rm(&a, k),
                Mat::rm_t(&b, k),
                &mut c1,
                acc,
                parallel,
            );
            gemm_naive(m, n, k, Mat::rm(&a, k), Mat::rm_t(&b, k), &mut c2, acc);
            let tag = format!("{m}x{n}x{k} accumulate {acc} parallel {parallel}");
            assert_close(&tag, &c1, &c2, 1e-4);
        }
    }
}

#[test]
fn conv_fast_matches_naive_random_shapes() {
    let mut rng = Rng::new(5);
    for case in 0..40 {
        let groups = [1, 1, 2, 3][rng.below(4)];
        let c = groups * (1 + rng.below(4));
        let o = groups * (1 + rng.below(4));
        let (kh, kw) = (1 + rng.below(5), 1 + rng.below(5));
        let p = ConvParams {
            stride: (1 + rng.below(3), 1 + rng.below(3)),
            padding: (rng.below(kh), rng.below(kw)),
            dilation: (1 + rng.below(2), 1 + rng.below(2)),
            groups,
            output_padding: (0, 0),
        };
        let (h, w) = (kh * 2 + rng.below(12), kw * 2 + rng.below(12));
        // batches up to 40 so that small images are grouped several to a task
        let n = if case % 4 == 0 {
            8 + rng.below(33)
        } else {
            1 + rng.below(4)
        };
        let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c / groups, kh, kw], &p).unwrap();
        let x = randv(n * c * h * w, &mut rng);
        let wt = randv(o * (c / groups) * kh * kw, &mut rng);
        let dy = randv(n * o * g.oh * g.ow, &mut rng);
        let tag = format!("case {case}: {g:?}");
        assert_close(
            &format!("fwd {tag}"),
            &conv2d_fwd(&x, &wt, &g),
            &conv2d_fwd_naive(&x, &wt, &g),
            1e-4,
        );
        let (dx, dw) = conv2d_bwd_naive(&x, &wt, &dy, &g);
        assert_close(
            &format!("dx {tag}"),
            &conv2d_bwd_data(&dy, &wt, &g),
            &dx,
            1e-4,
        );
        assert_close(
            &format!("dw {tag}"),
            &conv2d_bwd_weight(&x, &dy, &g),
            &dw,
            1e-4,
        );
    }
}

/// The forward and the weight gradient in pools of different sizes (the task layout depends on
/// the thread count: one block for one thread, one per thread for a single small image).
#[test]
fn conv_in_pools_of_any_size() {
    let mut rng = Rng::new(21);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    for (n, fwd_threads, bwd_threads) in [(1, 1, 4), (1, 4, 1), (3, 2, 7), (2, 7, 2)] {
        let p = ConvParams::default().padding(1);
        let g = conv2d_geom("conv2d", &[n, 3, 9, 11], &[4, 3, 3, 3], &p).unwrap();
        let x = randv(n * 3 * 99, &mut rng);
        let wt = randv(4 * 27, &mut rng);
        let dy = randv(n * 4 * 99, &mut rng);
        let y = pool(fwd_threads).install(|| conv2d_fwd(&x, &wt, &g));
        let dw = pool(bwd_threads).install(|| conv2d_bwd_weight(&x, &dy, &g));
        let (_, want) = conv2d_bwd_naive(&x, &wt, &dy, &g);
        let tag = format!("n={n}, forward on {fwd_threads} threads, backward on {bwd_threads}");
        assert_close(
            &format!("y, {tag}"),
            &y,
            &conv2d_fwd_naive(&x, &wt, &g),
            1e-4,
        );
        assert_close(&format!("dw, {tag}"), &dw, &want, 1e-4);
    }
}

/// Small maps with large filters (ResNet's last stage) sum their weight gradient in few
/// partials, added up by chunks across the threads: held to the naive loop on one thread and
/// three.
#[test]
fn conv_weight_gradient_of_small_maps_with_few_partials() {
    let mut rng = Rng::new(23);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let (n, c, o) = (8, 64, 64);
    let p = ConvParams::default().padding(1);
    let g = conv2d_geom("conv2d", &[n, c, 4, 4], &[o, c, 3, 3], &p).unwrap();
    let x = randv(n * c * 16, &mut rng);
    let wt = randv(o * c * 9, &mut rng);
    let dy = randv(n * o * 16, &mut rng);
    let (_, want) = conv2d_bwd_naive(&x, &wt, &dy, &g);
    for threads in [1, 3] {
        let dw = pool(threads).install(|| conv2d_bwd_weight(&x, &dy, &g));
        assert_close(&format!("dw on {threads} threads"), &dw, &want, 1e-4);
    }
}

/// The same through autograd: a conv op's forward in one pool, its backward in another.
#[test]
fn conv_op_backward_in_another_pool() {
    use aics_tensor::Tensor;
    let mut rng = Rng::new(22);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let x = Tensor::<f32>::randn(&[1, 3, 9, 11], 0.0, 1.0, &mut rng);
    let w = Tensor::<f32>::randn(&[4, 3, 3, 3], 0.0, 1.0, &mut rng).requires_grad_(true);
    let p = ConvParams::default().padding(1);
    let y = pool(1).install(|| x.conv2d(&w, None, p).unwrap());
    pool(5).install(|| y.sum().backward().unwrap());
    let g = conv2d_geom("conv2d", x.shape(), w.shape(), &p).unwrap();
    let ones = vec![1.0f32; y.numel()];
    let (_, want) = conv2d_bwd_naive(&x.to_vec(), &w.to_vec(), &ones, &g);
    assert_close("dW", &w.grad().unwrap().to_vec(), &want, 1e-4);
}

/// Safe kernels check their slices' extents in release builds too.
#[test]
#[should_panic(expected = "gemm")]
fn gemm_refuses_a_short_operand() {
    let a = vec![1.0f32; 5]; // a 3×2 matrix needs 6
    let b = vec![1.0f32; 8];
    let mut c = vec![0.0f32; 12];
    gemm(
        3,
        4,
        2,
        Mat::rm(&a, 2),
        Mat::rm(&b, 4),
        &mut c,
        false,
        false,
    );
}

#[test]
#[should_panic(expected = "conv2d")]
fn conv_refuses_a_short_input() {
    let g = conv2d_geom(
        "conv2d",
        &[2, 3, 8, 8],
        &[4, 3, 3, 3],
        &ConvParams::default(),
    )
    .unwrap();
    let x = vec![0.0f32; 3 * 64]; // one image where the geometry says two
    let wt = vec![0.0f32; 4 * 27];
    let _ = conv2d_fwd(&x, &wt, &g);
}

#[test]
#[should_panic(expected = "inconsistent geometry")]
fn conv_refuses_an_inconsistent_geometry() {
    let mut g = conv2d_geom(
        "conv2d",
        &[1, 3, 8, 8],
        &[4, 3, 3, 3],
        &ConvParams::default(),
    )
    .unwrap();
    g.oh += 3; // output rows the input does not have
    let x = vec![0.0f32; 3 * 64];
    let wt = vec![0.0f32; 4 * 27];
    let _ = conv2d_fwd(&x, &wt, &g);
}

#[test]
fn conv_large_single_image_uses_blocks() {
    // big enough that the output columns are split into several blocks across threads
    let mut rng = Rng::new(9);
    let p = ConvParams::default().padding(1);
    let g = conv2d_geom("conv2d", &[1, 64, 40, 40], &[32, 64, 3, 3], &p).unwrap();
    let x = randv(64 * 1600, &mut rng);
    let wt = randv(32 * 64 * 9, &mut rng);
    let dy = randv(32 * 1600, &mut rng);
    assert_close(
        "fwd",
        &conv2d_fwd(&x, &wt, &g),
        &conv2d_fwd_naive(&x, &wt, &g),
        1e-3,
    );
    let (dx, dw) = conv2d_bwd_naive(&x, &wt, &dy, &g);
    assert_close("dx", &conv2d_bwd_data(&dy, &wt, &g), &dx, 1e-3);
    assert_close("dw", &conv2d_bwd_weight(&x, &dy, &g), &dw, 1e-3);
}

/// Backward-data forms the unfolded gradient a block of output positions at a time (4M
/// elements); with a large kernel over many channels the blocks end mid-row (ckk = 2592 here,
/// so 1618 columns per block against 48-pixel rows), for one sample and for several, with and
/// without stride, padding and dilation.
#[test]
fn conv_bwd_data_blocks_match_naive() {
    let mut rng = Rng::new(12);
    for (n, hw, p) in [
        (1, 48, ConvParams::default().padding(4)),
        (4, 48, ConvParams::default().padding(4)),
        (1, 96, ConvParams::default().stride(2).padding(4)),
        (3, 48, ConvParams::default().padding(8).dilation(2)),
    ] {
        let g = conv2d_geom("conv2d", &[n, 32, hw, hw], &[3, 32, 9, 9], &p).unwrap();
        assert!(g.ckk() * g.ohw() > 1 << 22, "one block would do");
        let x = randv(n * 32 * hw * hw, &mut rng);
        let wt = randv(3 * 32 * 81, &mut rng);
        let dy = randv(n * 3 * g.ohw(), &mut rng);
        let (dx, _) = conv2d_bwd_naive(&x, &wt, &dy, &g);
        assert_close(
            &format!("dx n={n} {p:?}"),
            &conv2d_bwd_data(&dy, &wt, &g),
            &dx,
            1e-3,
        );
    }
}

#[test]
fn autograd_accumulates_and_frees() {
    use aics_tensor::Tensor;
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])
        .unwrap()
        .requires_grad_(true);
    // x used twice: gradients add up
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![3.0, 5.0]);
    // a second backward accumulates into .grad
    x.mul_scalar(2.0).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, 7.0]);
    // no_grad records nothing
    let _g = aics_tensor::no_grad();
    let z = x.mul_scalar(3.0);
    assert!(!z.requires_grad());
    assert!(z.sum().backward().is_err());
}

/// A backward pass lets go of each node's inputs and saved tensors once it has used them, so
/// intermediate activations are freed while the loss is still alive; a second pass through the
/// same graph is an error that says so.
#[test]
fn backward_frees_the_graph_as_it_goes() {
    use aics_tensor::Tensor;
    let x = Tensor::<f32>::from_vec(vec![0.5, -1.0, 2.0], &[3])
        .unwrap()
        .requires_grad_(true);
    let a = x.mul_scalar(2.0);
    let b = a.exp();
    let loss = b.mul(&a).unwrap().sum();
    let (wa, wb) = (
        std::sync::Arc::downgrade(&a.data()),
        std::sync::Arc::downgrade(&b.data()),
    );
    drop((a, b));
    assert!(
        wa.upgrade().is_some() && wb.upgrade().is_some(),
        "the graph holds them"
    );
    loss.backward().unwrap();
    assert!(
        wa.upgrade().is_none() && wb.upgrade().is_none(),
        "freed by backward"
    );
    // d/dx of Σ 2x·e^{2x} = 2e^{2x}(1 + 2x)
    for (g, &v) in x.grad().unwrap().to_vec().iter().zip(&[0.5f32, -1.0, 2.0]) {
        let want = 2.0 * (2.0 * v).exp() * (1.0 + 2.0 * v);
        testing::assert_close_one("dx", *g as f64, want as f64, Tol::mixed(1e-4));
    }
    let err = loss.backward().unwrap_err().to_string();
    assert!(
        err.contains("freed") && err.contains("forward again"),
        "{err}"
    );
}

#[test]
fn long_chains_do_not_overflow_the_stack() {
    use aics_tensor::Tensor;
    let x = Tensor::<f32>::from_vec(vec![0.5], &[1])
        .unwrap()
        .requires_grad_(true);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.mul_scalar(1.0);
    }
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0]);
    // dropping a long graph must not overflow either
    drop(y);
}

#[test]
fn conv_grouped_samples_pointwise_and_grouped() {
    // many small images: several samples per task, including the 1×1 path and groups
    let mut rng = Rng::new(33);
    for (k, groups, pad) in [(1, 1, 0), (1, 2, 0), (3, 2, 1), (5, 1, 2)] {
        let p = ConvParams::default().padding(pad).groups(groups);
        let g = conv2d_geom("conv2d", &[24, 4, 6, 6], &[6, 4 / groups, k, k], &p).unwrap();
        let x = randv(24 * 4 * 36, &mut rng);
        let wt = randv(6 * (4 / groups) * k * k, &mut rng);
        let dy = randv(24 * 6 * g.oh * g.ow, &mut rng);
        assert_conv_matches_naive(&g, &x, &wt, &dy, &format!("k{k} g{groups}"));
    }
}

#[test]
fn winograd_matches_naive() {
    use aics_tensor::cpu::winograd::{conv3x3, conv3x3_bwd_data, flip_transpose, Tile};
    let mut rng = Rng::new(21);
    // odd sizes (partial tiles), every padding, batches (tiles across images), and more than one
    // tile block
    for (n, c, o, h, w, pad) in [
        (1, 8, 5, 9, 7, 1),
        (2, 3, 4, 8, 8, 0),
        (1, 4, 4, 5, 6, 2),
        (3, 6, 7, 31, 29, 1),
        (2, 5, 3, 3, 3, 0),
        (1, 3, 2, 4, 10, 2),
        (2, 4, 3, 40, 1, 1),
        // few tiles, many channels: the schedule that runs all tiles through each GEMM at once
        (2, 256, 256, 7, 6, 1),
        (1, 256, 256, 17, 19, 1),
    ] {
        for tile in [Tile::F2, Tile::F4] {
            let p = ConvParams::default().padding(pad);
            let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c, 3, 3], &p).unwrap();
            let x = randv(n * c * h * w, &mut rng);
            let wt = randv(o * c * 9, &mut rng);
            let tag = format!("{n}x{c}x{h}x{w} -> {o}, pad {pad}, {tile:?}");
            assert_close(
                &format!("winograd fwd {tag}"),
                &conv3x3(&x, n, c, h, w, &wt, o, pad, tile),
                &conv2d_fwd_naive(&x, &wt, &g),
                1e-3,
            );
            let dy = randv(n * o * g.oh * g.ow, &mut rng);
            let (dx, _) = conv2d_bwd_naive(&x, &wt, &dy, &g);
            let got = conv3x3(
                &dy,
                n,
                o,
                g.oh,
                g.ow,
                &flip_transpose(&wt, o, c),
                c,
                2 - pad,
                tile,
            );
            assert_close(&format!("winograd dx {tag}"), &got, &dx, 1e-3);
            let direct = conv3x3_bwd_data(&dy, n, o, g.oh, g.ow, &wt, c, pad, tile);
            assert_close(&format!("winograd bwd_data {tag}"), &direct, &dx, 1e-3);
        }
    }
}

#[test]
fn conv_op_through_winograd_matches_naive() {
    // large enough for the op to choose Winograd (each tile size): forward and input gradient
    // via autograd
    use aics_tensor::cpu::winograd::{plan, Tile};
    use aics_tensor::Tensor;
    let mut rng = Rng::new(4);
    let p = ConvParams::default().padding(1);
    for (hw, tile) in [(46, Tile::F2), (90, Tile::F4)] {
        let g = conv2d_geom("conv2d", &[1, 64, hw, hw], &[64, 64, 3, 3], &p).unwrap();
        assert_eq!(plan(&g), Some(tile));
        let x = randv(64 * hw * hw, &mut rng);
        let wt = randv(64 * 64 * 9, &mut rng);
        let dy = randv(64 * hw * hw, &mut rng);
        let xt = Tensor::from_vec(x.clone(), &[1, 64, hw, hw])
            .unwrap()
            .requires_grad_(true);
        let wtt = Tensor::from_vec(wt.clone(), &[64, 64, 3, 3])
            .unwrap()
            .requires_grad_(true);
        let y = xt.conv2d(&wtt, None, p).unwrap();
        let tag = format!("{tile:?}");
        assert_close(
            &format!("op fwd {tag}"),
            &y.to_vec(),
            &conv2d_fwd_naive(&x, &wt, &g),
            1e-3,
        );
        y.backward_with(dy.clone()).unwrap();
        let (dx, dw) = conv2d_bwd_naive(&x, &wt, &dy, &g);
        assert_close(
            &format!("op dx {tag}"),
            &xt.grad().unwrap().to_vec(),
            &dx,
            1e-3,
        );
        assert_close(
            &format!("op dw {tag}"),
            &wtt.grad().unwrap().to_vec(),
            &dw,
            1e-3,
        );
    }
}

#[test]
fn fused_conv_epilogues_equal_the_separate_ops() {
    // act(conv(x) + b + r) in one op against conv, add, activation: im2col, Winograd and
    // depthwise paths; with and without a residual; ReLU, ReLU6, leaky ReLU and none
    use aics_tensor::{Activation, Tensor};
    let mut rng = Rng::new(21);
    let cases = [
        (3, 5, 9, 1, Activation::Relu6, true),
        (64, 64, 30, 1, Activation::Relu, true),
        (64, 64, 30, 1, Activation::Identity, true),
        (16, 16, 12, 16, Activation::Relu6, false),
        // depthwise with its bias and activation in its own pass, and with a residual first
        (24, 24, 9, 24, Activation::LeakyRelu(0.2), false),
        (16, 16, 12, 16, Activation::Relu6, true),
        (8, 12, 7, 1, Activation::LeakyRelu(0.1), true),
    ];
    for (c, o, hw, groups, act, with_res) in cases {
        let x: Vec<f32> = randv(2 * c * hw * hw, &mut rng)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let x = Tensor::from_vec(x, &[2, c, hw, hw]).unwrap();
        let w = Tensor::from_vec(
            randv(o * (c / groups) * 9, &mut rng),
            &[o, c / groups, 3, 3],
        )
        .unwrap();
        let b = Tensor::from_vec(randv(o, &mut rng), &[o]).unwrap();
        let r = Tensor::from_vec(randv(2 * o * hw * hw, &mut rng), &[2, o, hw, hw]).unwrap();
        let dy = randv(2 * o * hw * hw, &mut rng);
        let p = ConvParams::default().padding(1).groups(groups);
        let run = |fused: bool| {
            let (x, w, b, r) = (
                x.copy().requires_grad_(true),
                w.copy().requires_grad_(true),
                b.copy().requires_grad_(true),
                r.copy().requires_grad_(true),
            );
            let res = with_res.then_some(&r);
            let y = if fused {
                x.conv2d_fused(&w, Some(&b), p, act, res).unwrap()
            } else {
                let mut y = x.conv2d(&w, Some(&b), p).unwrap();
                if let Some(r) = res {
                    y = y.add(r).unwrap();
                }
                match act {
                    Activation::Identity => y,
                    Activation::Relu => y.relu(),
                    Activation::Relu6 => y.clamp(0.0, 6.0),
                    Activation::LeakyRelu(s) => y.leaky_relu(s),
                }
            };
            y.backward_with(dy.clone()).unwrap();
            let gr = with_res.then(|| r.grad().unwrap().to_vec());
            (
                y.to_vec(),
                x.grad().unwrap().to_vec(),
                w.grad().unwrap().to_vec(),
                b.grad().unwrap().to_vec(),
                gr,
            )
        };
        let (a, e) = (run(true), run(false));
        let tag = format!("{c}->{o} {hw}x{hw} groups {groups} {act:?} residual {with_res}");
        assert_close(&format!("y {tag}"), &a.0, &e.0, 1e-6);
        assert_close(&format!("dx {tag}"), &a.1, &e.1, 1e-5);
        assert_close(&format!("dw {tag}"), &a.2, &e.2, 1e-5);
        assert_close(&format!("db {tag}"), &a.3, &e.3, 1e-5);
        assert_eq!(a.4.is_some(), with_res);
        if let (Some(g1), Some(g2)) = (&a.4, &e.4) {
            assert_close(&format!("dr {tag}"), g1, g2, 1e-6);
        }
    }
}

#[test]
fn fused_batch_norm_equals_its_composition() {
    // the one-op training batch norm against the chain of mean, subtract, square, power,
    // multiply and add it replaces: output and every gradient, with and without affine terms
    use aics_tensor::Tensor;
    let mut rng = Rng::new(13);
    for (shape, affine) in [
        (vec![4, 3, 5, 5], true),
        (vec![2, 16, 7, 9], true),
        (vec![6, 5], true),
        (vec![3, 4, 11], false),
        (vec![1, 8, 33, 33], true),
        // planes of one element and of six (the flat loop over whole periods), and enough
        // planes of 16 for several parallel blocks
        (vec![40, 12, 1, 1], true),
        (vec![300, 7, 2, 3], true),
        (vec![20, 30, 4, 4], false),
        // statistics summed in several blocks of samples and of columns
        (vec![70, 3, 32, 32], true),
    ] {
        let c = shape[1];
        let n: usize = shape.iter().product();
        // an offset and a spread per tensor, as activations have
        let x: Vec<f32> = randv(n, &mut rng).iter().map(|v| 3.0 + 2.5 * v).collect();
        let x = Tensor::from_vec(x, &shape).unwrap();
        let w = Tensor::from_vec(randv(c, &mut rng), &[c]).unwrap();
        let b = Tensor::from_vec(randv(c, &mut rng), &[c]).unwrap();
        let dy = randv(n, &mut rng);
        let run = |fused: bool| {
            let x = x.copy().requires_grad_(true);
            let (w, b) = (w.copy().requires_grad_(true), b.copy().requires_grad_(true));
            let (wo, bo) = if affine {
                (Some(&w), Some(&b))
            } else {
                (None, None)
            };
            let y = if fused {
                x.batch_norm(wo, bo, None, None, true, 0.1, 1e-5).unwrap()
            } else {
                x.batch_norm_reference(wo, bo, 1e-5).unwrap()
            };
            y.backward_with(dy.clone()).unwrap();
            let grads = if affine {
                vec![w.grad().unwrap().to_vec(), b.grad().unwrap().to_vec()]
            } else {
                vec![]
            };
            (y.to_vec(), x.grad().unwrap().to_vec(), grads)
        };
        let (a, r) = (run(true), run(false));
        let tag = format!("{shape:?}");
        assert_close(&format!("y {tag}"), &a.0, &r.0, 2e-5);
        assert_close(&format!("dx {tag}"), &a.1, &r.1, 2e-5);
        for (i, (g1, g2)) in a.2.iter().zip(&r.2).enumerate() {
            assert_close(&format!("affine grad {i} {tag}"), g1, g2, 2e-5);
        }
    }
}

#[test]
fn fused_conv_relu_equals_conv_then_relu() {
    // both the im2col and the Winograd paths, with and without a weight gradient; ReLU and leaky
    use aics_tensor::Tensor;
    let mut rng = Rng::new(9);
    for (c, o, hw, weight_grad, slope) in [
        (3, 5, 9, true, 0.0),
        (64, 64, 46, true, 0.0),
        (64, 64, 46, false, 0.0),
        (3, 5, 9, true, 0.1),
        (64, 64, 46, true, 0.1),
    ] {
        let x = Tensor::from_vec(randv(2 * c * hw * hw, &mut rng), &[2, c, hw, hw]).unwrap();
        let w = Tensor::from_vec(randv(o * c * 9, &mut rng), &[o, c, 3, 3]).unwrap();
        let b = Tensor::from_vec(randv(o, &mut rng), &[o]).unwrap();
        let dy = randv(2 * o * hw * hw, &mut rng);
        let p = ConvParams::default().padding(1);
        let run = |fused: bool| {
            let (x, w, b) = (
                x.copy().requires_grad_(true),
                w.copy().requires_grad_(weight_grad),
                b.copy().requires_grad_(true),
            );
            let y = match (fused, slope > 0.0) {
                (true, false) => x.conv2d_relu(&w, Some(&b), p).unwrap(),
                (false, false) => x.conv2d(&w, Some(&b), p).unwrap().relu(),
                (true, true) => x.conv2d_leaky_relu(&w, Some(&b), p, slope).unwrap(),
                (false, true) => x.conv2d(&w, Some(&b), p).unwrap().leaky_relu(slope),
            };
            y.backward_with(dy.clone()).unwrap();
            let gw = w.grad().map(|g| g.to_vec());
            (
                y.to_vec(),
                x.grad().unwrap().to_vec(),
                gw,
                b.grad().unwrap().to_vec(),
            )
        };
        let (a, b2) = (run(true), run(false));
        let tag = format!("{c}->{o} {hw}x{hw} slope {slope}");
        assert_close(&format!("y {tag}"), &a.0, &b2.0, 1e-6);
        assert_close(&format!("dx {tag}"), &a.1, &b2.1, 1e-6);
        assert_eq!(a.2.is_some(), weight_grad);
        if let (Some(g1), Some(g2)) = (&a.2, &b2.2) {
            assert_close(&format!("dw {tag}"), g1, g2, 1e-6);
        }
        assert_close(&format!("db {tag}"), &a.3, &b2.3, 1e-6);
    }
}

#[test]
fn depthwise_matches_naive_random_shapes() {
    use aics_tensor::cpu::depthwise;
    use aics_tensor::Activation;
    let mut rng = Rng::new(21);
    for case in 0..60 {
        // a few channels, and runs of channels longer than a vector (with a ragged end)
        // every fifth case has a channel multiplier (two or three outputs a channel), and every
        // seventh a single input channel (an ordinary convolution of one group: LeNet's first)
        let (c, m) = if case % 7 == 3 {
            (1, 2 + rng.below(7))
        } else if case % 3 == 0 {
            (17 + rng.below(60), 1)
        } else {
            (
                2 + rng.below(6),
                if case % 5 == 2 { 2 + rng.below(2) } else { 1 },
            )
        };
        let o = c * m;
        let (kh, kw) = (1 + rng.below(5), 1 + rng.below(5));
        let p = ConvParams {
            stride: (1 + rng.below(3), 1 + rng.below(3)),
            padding: (rng.below(kh + 1), rng.below(kw + 1)),
            dilation: (1 + rng.below(2), 1 + rng.below(2)),
            groups: c,
            output_padding: (0, 0),
        };
        // every fourth case has rows of several vectors (the vector kernel walks those row by
        // row, in groups of up to four vectors; narrower ones over the wide output)
        let (h, w) = if case % 4 == 1 {
            (kh * 2 + rng.below(6), 30 + rng.below(120))
        } else {
            (kh * 2 + rng.below(10), kw * 2 + rng.below(10))
        };
        let n = 1 + rng.below(3);
        let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, 1, kh, kw], &p).unwrap();
        assert!(depthwise::eligible(&g));
        let x = randv(n * c * h * w, &mut rng);
        let wt = randv(o * kh * kw, &mut rng);
        let dy = randv(n * o * g.oh * g.ow, &mut rng);
        let tag = format!("case {case}: {g:?}");
        let want = conv2d_fwd_naive(&x, &wt, &g);
        assert_close(
            &format!("fwd {tag}"),
            &depthwise::fwd(&x, &wt, &g),
            &want,
            1e-4,
        );
        // the bias and each activation in the kernel's own output pass
        let bias = randv(o, &mut rng);
        let act = [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::LeakyRelu(0.1),
        ][case % 4];
        let mut fused = want.clone();
        epilogue_reference(&mut fused, Some(&bias), None, o, g.oh * g.ow, act);
        assert_close(
            &format!("fwd + bias, {act:?}, {tag}"),
            &depthwise::fwd_fused(&x, &wt, &g, Some(&bias), act),
            &fused,
            1e-4,
        );
        let (dx, dw) = conv2d_bwd_naive(&x, &wt, &dy, &g);
        assert_close(
            &format!("dx {tag}"),
            &depthwise::bwd_data(&dy, &wt, &g),
            &dx,
            1e-4,
        );
        assert_close(
            &format!("dw {tag}"),
            &depthwise::bwd_weight(&x, &dy, &g),
            &dw,
            1e-4,
        );
    }
}

#[test]
fn max_pool_2x2_matches_a_direct_loop_with_ties_and_nan() {
    use aics_tensor::{PoolParams, Tensor};
    let mut rng = Rng::new(5);
    for (h, w) in [(7, 9), (8, 8), (2, 3)] {
        // small integers make ties common; a few NaNs
        let mut x: Vec<f32> = (0..2 * 3 * h * w)
            .map(|_| (rng.below(4) as f32) - 1.0)
            .collect();
        x[3] = f32::NAN;
        x[h * w + 1] = f32::NAN;
        x[h * w + w] = f32::NAN;
        let t = Tensor::from_vec(x.clone(), &[2, 3, h, w]).unwrap();
        let (y, idx) = t
            .max_pool2d_with_indices(PoolParams::new(2).stride(2))
            .unwrap();
        let (oh, ow) = (h / 2, w / 2);
        let y = y.to_vec();
        for pl in 0..6 {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut bi) = (f32::NEG_INFINITY, 2 * oy * w + 2 * ox);
                    for ki in 0..2 {
                        for kj in 0..2 {
                            let i = (2 * oy + ki) * w + 2 * ox + kj;
                            let v = x[pl * h * w + i];
                            if v > best || v.is_nan() {
                                (best, bi) = (v, i);
                            }
                        }
                    }
                    let o = pl * oh * ow + oy * ow + ox;
                    assert_eq!(idx[o] as usize, bi, "index at plane {pl} ({oy}, {ox})");
                    assert!(y[o] == best || (y[o].is_nan() && best.is_nan()));
                }
            }
        }
    }
}

#[test]
fn reflection_pad_rejects_bad_input() {
    use aics_tensor::Tensor;
    let x = Tensor::<f32>::zeros(&[1, 1, 3, 3]);
    assert!(x.reflection_pad2d([2, 2, 2, 2]).is_ok());
    assert!(x.reflection_pad2d([3, 0, 0, 0]).is_err());
    assert!(x.reflection_pad2d([0, 0, 0, 3]).is_err());
    assert!(Tensor::<f32>::zeros(&[3, 3])
        .reflection_pad2d([1; 4])
        .is_err());
}

#[test]
fn direct_conv_matches_naive() {
    // large kernels with few input or output channels: partial chunks, padding, batches, and
    // output-channel blocks of 3 and 4 (with a partial block)
    use aics_tensor::cpu::direct;
    let mut rng = Rng::new(77);
    for (n, c, o, h, w, k, pad) in [
        (1, 3, 32, 20, 70, 9, 4),
        (2, 32, 3, 13, 9, 9, 4),
        (1, 4, 5, 11, 12, 5, 0),
        (2, 2, 1, 6, 130, 5, 2),
        (1, 5, 2, 9, 9, 7, 3),
        // a 3×3 first layer on a large RGB image (YOLO's), and one with a partial block
        (1, 3, 16, 130, 131, 3, 1),
        (1, 3, 5, 131, 130, 3, 0),
        (1, 16, 32, 130, 129, 3, 1),
    ] {
        let p = ConvParams::default().padding(pad);
        let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c, k, k], &p).unwrap();
        assert!(direct::eligible(&g));
        let x = randv(n * c * h * w, &mut rng);
        let wt = randv(o * c * k * k, &mut rng);
        assert_close(
            &format!("direct {n}x{c}x{h}x{w} -> {o}, {k}x{k} pad {pad}"),
            &direct::fwd(&x, &wt, &g),
            &conv2d_fwd_naive(&x, &wt, &g),
            1e-4,
        );
    }
}

/// A random pooling window: kernel 1–4, stride 1–3, padding up to half the kernel (as PyTorch
/// allows), dilation 1–2 when `dilated`, either ceil mode.
fn random_pool(rng: &mut Rng, dilated: bool) -> aics_tensor::PoolParams {
    let (kh, kw) = (1 + rng.below(4), 1 + rng.below(4));
    aics_tensor::PoolParams {
        kernel: (kh, kw),
        stride: (1 + rng.below(3), 1 + rng.below(3)),
        padding: (rng.below(kh / 2 + 1), rng.below(kw / 2 + 1)),
        dilation: if dilated {
            (1 + rng.below(2), 1 + rng.below(2))
        } else {
            (1, 1)
        },
        ceil_mode: rng.below(2) == 1,
    }
}

/// Max pooling without a backward pass (values only, row maxima then column maxima) gives the
/// indexed kernel's values on random windows, strides, paddings, dilations and ceil modes, with
/// NaNs in the input propagating to the same outputs.
#[test]
fn max_pool_values_match_the_indexed_kernel() {
    use aics_tensor::Tensor;
    let mut rng = Rng::new(33);
    let mut compared = 0;
    for case in 0..80 {
        // every fifth case is the 2×2 pool of stride 2, which has a loop of its own
        let p = if case % 5 == 1 {
            aics_tensor::PoolParams::new(2).stride(2)
        } else {
            random_pool(&mut rng, true)
        };
        let (kh, kw) = p.kernel;
        let (n, c) = (1 + rng.below(2), 1 + rng.below(4));
        let (h, w) = (2 * kh + rng.below(12), 2 * kw + rng.below(12));
        let mut x = randv(n * c * h * w, &mut rng);
        if case % 4 == 0 {
            for _ in 0..3 {
                let i = rng.below(x.len());
                x[i] = f32::NAN;
            }
        }
        let x = Tensor::from_vec(x, &[n, c, h, w]).unwrap();
        let got = {
            let _g = aics_tensor::no_grad();
            x.max_pool2d(p)
        };
        let Ok((want, _)) = x.max_pool2d_with_indices(p) else {
            // a window that does not fit: refused by both
            assert!(got.is_err(), "case {case}: {p:?}");
            continue;
        };
        let got = got.unwrap();
        compared += 1;
        assert_eq!(got.shape(), want.shape(), "case {case}: {p:?}");
        for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "case {case} {p:?} at {i}: {a} against {b}"
            );
        }
    }
    assert!(compared >= 60, "only {compared} cases fit");
}

/// Max pooling with indices (the training path) against a naive loop over each window in row
/// order that keeps the first maximum and the last NaN, as PyTorch does: values and indices
/// equal, on inputs with many ties (small integers, ReLU-like zeros) and some NaNs.
#[test]
fn max_pool_indices_match_a_naive_window_loop() {
    use aics_tensor::Tensor;
    let mut rng = Rng::new(35);
    let mut compared = 0;
    for case in 0..80 {
        let p = random_pool(&mut rng, false);
        let (kh, kw) = p.kernel;
        let (h, w) = (2 * kh + rng.below(12), 2 * kw + rng.below(12));
        let c = 1 + rng.below(3);
        // ties everywhere: values in {0, 1, 2}, half of them clamped to 0
        let mut x: Vec<f32> = (0..c * h * w)
            .map(|_| (rng.below(3) as f32).max(0.0) * (rng.below(2) as f32))
            .collect();
        // a few NaNs, or one in eight (so that windows hold several, in different rows and
        // columns)
        let nans = match case % 3 {
            0 => 2,
            1 => x.len() / 8,
            _ => 0,
        };
        for _ in 0..nans {
            let i = rng.below(x.len());
            x[i] = f32::NAN;
        }
        let xt = Tensor::from_vec(x.clone(), &[1, c, h, w]).unwrap();
        let Ok((y, idx)) = xt.max_pool2d_with_indices(p) else {
            continue;
        };
        compared += 1;
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let y = y.to_vec();
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut bi) = (f32::NEG_INFINITY, None);
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let iy = (oy * p.stride.0 + ki) as isize - p.padding.0 as isize;
                            let ix = (ox * p.stride.1 + kj) as isize - p.padding.1 as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let i = iy as usize * w + ix as usize;
                            let v = x[ch * h * w + i];
                            // the first tap in the image is the index until a later one
                            // wins; a NaN always wins (so the last NaN stays)
                            if bi.is_none() {
                                bi = Some(i);
                            }
                            if v > best || v.is_nan() {
                                best = v;
                                bi = Some(i);
                            }
                        }
                    }
                    let o = (ch * oh + oy) * ow + ox;
                    let tag = format!("case {case} {p:?} channel {ch} at ({oy}, {ox})");
                    assert!(
                        y[o].to_bits() == best.to_bits() || (y[o].is_nan() && best.is_nan()),
                        "{tag}: {} against {best}",
                        y[o]
                    );
                    assert_eq!(Some(idx[o] as usize), bi, "{tag}");
                }
            }
        }
    }
    assert!(compared >= 60, "only {compared} cases fit");
}

/// `act(y + b + r)` one element at a time: the packed kernel's output pass spelled out.
fn epilogue_reference(
    y: &mut [f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    o: usize,
    p: usize,
    act: aics_tensor::Activation,
) {
    use aics_tensor::Activation;
    for (i, v) in y.iter_mut().enumerate() {
        let mut t = *v + bias.map_or(0.0, |b| b[(i / p) % o]);
        t += res.map_or(0.0, |r| r[i]);
        *v = match act {
            Activation::Identity => t,
            Activation::Relu => t.max(0.0),
            Activation::Relu6 => t.clamp(0.0, 6.0),
            Activation::LeakyRelu(s) => {
                if t > 0.0 {
                    t
                } else {
                    t * s as f32
                }
            }
        };
    }
}

#[test]
fn packed_conv_matches_naive() {
    use aics_tensor::cpu::packed::{conv2d_fwd as packed_fwd, PackedWeights};
    use aics_tensor::Activation;
    let mut rng = Rng::new(31);
    let level = aics_tensor::cpu::simd::level_name();
    // Column counts around the tiles (32 lanes with AVX-512, 16 with AVX2) and across images,
    // rows around the panels (14 and 6), K over more than one block (256 rows), 3×3 and
    // strided windows, one column.
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
    let cases: &[Case] = &[
        // n, c, h, w, o, k, stride, pad
        (1, 3, 7, 7, 5, 1, 1, 0),
        (2, 16, 7, 7, 29, 1, 1, 0),
        (3, 8, 5, 3, 14, 1, 1, 0),
        (1, 300, 4, 8, 33, 1, 1, 0),
        (4, 520, 2, 3, 6, 1, 1, 0),
        (1, 7, 1, 1, 70, 1, 1, 0),
        (2, 9, 33, 1, 13, 1, 1, 0),
        (5, 4, 3, 3, 7, 3, 1, 1),
        (2, 40, 9, 11, 15, 3, 2, 1),
        (1, 64, 6, 6, 20, 3, 1, 0),
    ];
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu(0.1),
    ];
    for (i, &(n, c, h, w, o, k, s, pad)) in cases.iter().enumerate() {
        let p = ConvParams::default().stride(s).padding(pad);
        let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c, k, k], &p).unwrap();
        let x = randv(n * c * h * w, &mut rng);
        let wt = randv(o * c * k * k, &mut rng);
        let Some(pw) = PackedWeights::pack(&wt, o, c * k * k) else {
            // only a CPU without AVX2 (or AICS_SIMD=base) has no packed kernel
            assert_eq!(level, "base", "no packing at {level}");
            continue;
        };
        assert!(pw.usable());
        let what = format!("packed conv {n}x{c}x{h}x{w} -> {o}, {k}x{k} s{s} p{pad} ({level})");
        let act = acts[i % acts.len()];
        check_fused_conv(&what, &x, &wt, &g, act, &mut rng, |epi, y| {
            packed_fwd(&x, &pw, &g, epi, y)
        });
    }
}

/// A fused forward kernel (`run(epilogue, output)`) against the naive loop and the reference
/// output pass, with no bias, a bias, and a bias and a residual, on an output full of NaN
/// (every element must be written).
fn check_fused_conv(
    what: &str,
    x: &[f32],
    wt: &[f32],
    g: &aics_tensor::cpu::conv::Conv2dGeom,
    act: aics_tensor::Activation,
    rng: &mut Rng,
    run: impl Fn(aics_tensor::cpu::packed::Epilogue, &mut [f32]),
) {
    use aics_tensor::cpu::packed::Epilogue;
    let ylen = g.n * g.o * g.oh * g.ow;
    let bias = randv(g.o, rng);
    let res: Vec<f32> = randv(ylen, rng).iter().map(|v| 3.0 * v).collect();
    for (with_bias, with_res) in [(false, false), (true, false), (true, true)] {
        let epi = Epilogue {
            bias: with_bias.then_some(&bias[..]),
            residual: with_res.then_some(&res[..]),
            act,
        };
        let mut got = vec![f32::NAN; ylen];
        run(epi, &mut got);
        let mut want = conv2d_fwd_naive(x, wt, g);
        epilogue_reference(&mut want, epi.bias, epi.residual, g.o, g.oh * g.ow, act);
        assert_close(
            &format!("{what}, {act:?}, bias {with_bias}, residual {with_res}"),
            &got,
            &want,
            1e-4,
        );
    }
}

#[test]
fn row_conv_matches_naive() {
    use aics_tensor::cpu::packed::PackedWeights;
    use aics_tensor::cpu::rowconv;
    use aics_tensor::Activation;
    let mut rng = Rng::new(33);
    let level = aics_tensor::cpu::simd::level_name();
    // Planes read as one row (49 positions: tiles of 13 and 12; strided 1×1 convolutions on
    // their subsampled input), rows in chunks (one output row of 19 in two), several short rows
    // a tile (4×4 and 6-wide maps), stride 2 with and without padding, dilation, channel counts
    // around the two vectors of a block, one image read for all blocks at once (an input over
    // 1 MB), and the 7×7 stem.
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );
    let cases: &[Case] = &[
        // n, c, h, w, o, k, stride, pad, dilation
        (1, 3, 7, 7, 5, 1, 1, 0, 1),
        (2, 16, 7, 7, 29, 1, 1, 0, 1),
        (3, 8, 5, 3, 40, 1, 1, 0, 1),
        (1, 300, 4, 8, 33, 3, 1, 1, 1),
        (2, 40, 9, 11, 15, 3, 2, 1, 1),
        (1, 20, 6, 6, 70, 3, 1, 0, 1),
        (2, 12, 5, 5, 17, 3, 1, 1, 2),
        (1, 9, 33, 2, 13, 1, 2, 0, 1),
        (1, 64, 64, 64, 40, 3, 1, 1, 1),
        (2, 3, 40, 40, 16, 7, 2, 3, 1),
        (1, 1, 1, 1, 1, 1, 1, 0, 1),
        (2, 16, 14, 14, 40, 1, 2, 0, 1),
        (1, 8, 3, 40, 20, 3, 2, 0, 1),
    ];
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu(0.1),
    ];
    for (i, &(n, c, h, w, o, k, s, pad, d)) in cases.iter().enumerate() {
        let p = ConvParams::default().stride(s).padding(pad).dilation(d);
        let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c, k, k], &p).unwrap();
        assert_eq!(rowconv::applies(&g), level != "base", "{g:?}");
        let x = randv(n * c * h * w, &mut rng);
        let wt = randv(o * c * k * k, &mut rng);
        let Some(pw) = PackedWeights::pack_rows(&wt, o, c * k * k) else {
            assert_eq!(level, "base", "no packing at {level}");
            continue;
        };
        assert!(pw.rows_lanes().is_some());
        let what = format!("row conv {n}x{c}x{h}x{w} -> {o}, {k}x{k} s{s} p{pad} d{d} ({level})");
        let act = acts[i % acts.len()];
        check_fused_conv(&what, &x, &wt, &g, act, &mut rng, |epi, y| {
            rowconv::conv2d_fwd(&x, &pw, &g, epi, y)
        });
    }
}

#[test]
fn packed_conv_op_equals_the_plain_op_and_its_gradients() {
    use aics_tensor::{Activation, PackedWeights, Tensor};
    let mut rng = Rng::new(32);
    let x = Tensor::<f32>::randn(&[2, 24, 5, 7], 0.0, 1.0, &mut rng).requires_grad_(true);
    let w = Tensor::<f32>::randn(&[40, 24, 1, 1], 0.0, 0.3, &mut rng).requires_grad_(true);
    let b = Tensor::<f32>::randn(&[40], 0.0, 1.0, &mut rng);
    let r = Tensor::<f32>::randn(&[2, 40, 5, 7], 0.0, 1.0, &mut rng);
    let p = ConvParams::default();
    let pw = PackedWeights::for_conv(&w, &p);
    assert_eq!(
        pw.is_some(),
        aics_tensor::cpu::simd::level_name() != "base",
        "a 1×1 convolution is packed wherever there is AVX2"
    );
    // other convolutions are not packed
    let w3 = Tensor::<f32>::zeros(&[4, 24, 3, 3]);
    assert!(PackedWeights::for_conv(&w3, &p).is_none());
    assert!(PackedWeights::for_conv(&w, &p.stride(2)).is_none());
    let Some(pw) = pw else { return };
    let act = Activation::Relu6;
    let plain = x.conv2d_fused(&w, Some(&b), p, act, Some(&r)).unwrap();
    let packed = x
        .conv2d_fused_packed(&w, &pw, Some(&b), p, act, Some(&r))
        .unwrap();
    assert_close("packed op", &packed.to_vec(), &plain.to_vec(), 1e-5);
    // the backward pass is the plain op's
    let g1 = {
        plain.sum().backward().unwrap();
        (x.grad().unwrap().to_vec(), w.grad().unwrap().to_vec())
    };
    x.zero_grad();
    w.zero_grad();
    packed.sum().backward().unwrap();
    assert_close("packed op dx", &x.grad().unwrap().to_vec(), &g1.0, 1e-5);
    assert_close("packed op dw", &w.grad().unwrap().to_vec(), &g1.1, 1e-5);
}

/// Strided convolutions over every small width, kernel, padding and dilation, the im2col rows
/// that are padding at both ends or all padding included, against the naive loop.
#[test]
fn strided_conv_rows_with_padding_match_naive() {
    let mut rng = Rng::new(11);
    let mut ran = 0;
    for w in 1..10 {
        for k in [1, 2, 3, 5, 7] {
            for s in 2..5 {
                for pad in 0..=k / 2 + 1 {
                    for d in 1..3 {
                        let p = ConvParams::default().stride(s).padding(pad).dilation(d);
                        let Ok(g) = conv2d_geom("conv2d", &[1, 2, 3, w], &[3, 2, 1, k], &p) else {
                            continue;
                        };
                        let x = randv(2 * 3 * w, &mut rng);
                        let wt = randv(3 * 2 * k, &mut rng);
                        assert_close(
                            &format!("w {w} k {k} s {s} pad {pad} d {d}"),
                            &conv2d_fwd(&x, &wt, &g),
                            &conv2d_fwd_naive(&x, &wt, &g),
                            1e-4,
                        );
                        ran += 1;
                    }
                }
            }
        }
    }
    assert!(ran > 300, "{ran} geometries");
}

/// Tiny maps (1×1 to 3×3, the last stage of a ResNet on 32² images) at batch 12: the dense
/// path of 1×1 convolutions on 1×1 maps, and the tap table of im2col and col2im, against the
/// naive loop.
#[test]
fn tiny_maps_and_dense_convs_match_naive() {
    let mut rng = Rng::new(41);
    for (h, w) in [(1, 1), (1, 2), (2, 2), (3, 1), (3, 3)] {
        for (k, pad, stride, groups) in [(1, 0, 1, 1), (3, 1, 1, 1), (3, 1, 2, 1), (3, 2, 1, 2)] {
            let p = ConvParams::default()
                .padding(pad)
                .stride(stride)
                .groups(groups);
            let (n, c, o) = (12, 6, 8);
            let g = conv2d_geom("conv2d", &[n, c, h, w], &[o, c / groups, k, k], &p).unwrap();
            let x = randv(n * c * h * w, &mut rng);
            let wt = randv(o * (c / groups) * k * k, &mut rng);
            let dy = randv(n * o * g.oh * g.ow, &mut rng);
            let tag = format!("{h}×{w} k{k} pad {pad} stride {stride} groups {groups}");
            assert_conv_matches_naive(&g, &x, &wt, &dy, &tag);
        }
    }
}

/// A convolution whose outer taps see only padding (3×3 on 1×1 maps, 5×5 dilated on 2×3)
/// runs on its live taps alone: its output and its gradients (input, weight with zeros at the
/// dead taps, bias) equal the naive loop's over the whole kernel.
#[test]
fn convs_with_dead_taps_equal_the_whole_kernel() {
    use aics_tensor::{Activation, Tensor};
    let mut rng = Rng::new(42);
    for (h, w, k, pad, dil, stride) in [
        (1, 1, 3, 1, 1, 1),
        (1, 1, 5, 2, 1, 1),
        (2, 3, 5, 4, 2, 1),
        (1, 4, 3, 1, 1, 2),
        (2, 2, 3, 2, 1, 1),
    ] {
        let p = ConvParams::default()
            .padding(pad)
            .dilation(dil)
            .stride(stride);
        // (the 3×3 on 1×1 maps with more filters than one parallel block of the trimming takes)
        let (n, c, o) = if (h, w, k) == (1, 1, 3) {
            (2, 64, 72)
        } else {
            (5, 4, 6)
        };
        let x = Tensor::<f32>::randn(&[n, c, h, w], 0.0, 1.0, &mut rng).requires_grad_(true);
        let wt = Tensor::<f32>::randn(&[o, c, k, k], 0.0, 1.0, &mut rng).requires_grad_(true);
        let b = Tensor::<f32>::randn(&[o], 0.0, 1.0, &mut rng).requires_grad_(true);
        let g = conv2d_geom("conv2d", x.shape(), wt.shape(), &p).unwrap();
        let y = x
            .conv2d_fused(&wt, Some(&b), p, Activation::Identity, None)
            .unwrap();
        let tag = format!("{h}×{w} k{k} pad {pad} dilation {dil} stride {stride}");
        let mut want = conv2d_fwd_naive(&x.to_vec(), &wt.to_vec(), &g);
        let bv = b.to_vec();
        for (i, v) in want.iter_mut().enumerate() {
            *v += bv[(i / (g.oh * g.ow)) % o];
        }
        assert_close(&format!("fwd {tag}"), &y.to_vec(), &want, 1e-4);
        let dy = Tensor::<f32>::randn(y.shape(), 0.0, 1.0, &mut rng);
        y.mul(&dy).unwrap().sum().backward().unwrap();
        let (dx, dw) = conv2d_bwd_naive(&x.to_vec(), &wt.to_vec(), &dy.to_vec(), &g);
        assert_close(&format!("dx {tag}"), &x.grad().unwrap().to_vec(), &dx, 1e-4);
        assert_close(
            &format!("dw {tag}"),
            &wt.grad().unwrap().to_vec(),
            &dw,
            1e-4,
        );
        let mut db = vec![0f32; o];
        for (i, v) in dy.to_vec().iter().enumerate() {
            db[(i / (g.oh * g.ow)) % o] += v;
        }
        assert_close(&format!("db {tag}"), &b.grad().unwrap().to_vec(), &db, 1e-4);
    }
}

/// Instance norm is batch norm with one plane a channel: the one-op instance norm on
/// (N, C, H, W) against the reference batch norm on (1, N·C, H·W), output and input gradient,
/// on enough planes for several parallel blocks.
#[test]
fn instance_norm_equals_batch_norm_over_planes() {
    use aics_tensor::Tensor;
    let mut rng = Rng::new(14);
    for shape in [[20usize, 30, 4, 4], [3, 5, 9, 7], [50, 40, 1, 3]] {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = randv(n, &mut rng).iter().map(|v| 1.0 + 3.0 * v).collect();
        let dy = randv(n, &mut rng);
        let run = |instance: bool| {
            let x = Tensor::from_vec(x.clone(), &shape)
                .unwrap()
                .requires_grad_(true);
            let y = if instance {
                x.instance_norm(None, None, 1e-5).unwrap()
            } else {
                x.reshape(&[1, shape[0] * shape[1], shape[2] * shape[3]])
                    .unwrap()
                    .batch_norm_reference(None, None, 1e-5)
                    .unwrap()
            };
            y.backward_with(dy.clone()).unwrap();
            (y.to_vec(), x.grad().unwrap().to_vec())
        };
        let (a, r) = (run(true), run(false));
        assert_close(&format!("y {shape:?}"), &a.0, &r.0, 2e-5);
        assert_close(&format!("dx {shape:?}"), &a.1, &r.1, 2e-5);
    }
}
