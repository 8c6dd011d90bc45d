//! LeNet-5's training step at batch 64 on 28², op by op: the forward of each op, and the
//! backward of each op alone (its gradient from ones, through the graph of that op only).
//! `cargo run --release -p aics-vision --example lenet_ops` (`REPS=n`, 200 by default; medians).
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    for _ in 0..5 {
        f();
    }
    let mut t: Vec<f64> = (0..reps).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2] * 1e3
}

fn main() {
    // freed memory stays committed, as in the `aics` binary (mimalloc's purge delay, option 15)
    // SAFETY: an allocator option set before any threads exist.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng::new(0);
    let mut r =
        |s: &[usize], grad: bool| Tensor::<f32>::randn(s, 0.0, 1.0, &mut rng).requires_grad_(grad);
    type Op = Box<dyn Fn(&Tensor<f32>) -> Tensor<f32>>;
    let (w1, b1) = (r(&[6, 1, 5, 5], true), r(&[6], true));
    let (w2, b2) = (r(&[16, 6, 5, 5], true), r(&[16], true));
    let (f1, f2) = (r(&[120, 400], true), r(&[120], true));
    let cases: Vec<(&str, Vec<usize>, bool, Op)> = vec![
        ("conv1 1→6 5×5 p2", vec![64, 1, 28, 28], false, {
            let (w, b) = (w1.clone(), b1.clone());
            Box::new(move |x| {
                x.conv2d(&w, Some(&b), ConvParams::default().padding(2))
                    .unwrap()
            })
        }),
        ("relu1", vec![64, 6, 28, 28], true, Box::new(|x| x.relu())),
        (
            "pool1 2×2",
            vec![64, 6, 28, 28],
            true,
            Box::new(|x| x.max_pool2d(PoolParams::new(2).stride(2)).unwrap()),
        ),
        ("conv2 6→16 5×5", vec![64, 6, 14, 14], true, {
            let (w, b) = (w2.clone(), b2.clone());
            Box::new(move |x| x.conv2d(&w, Some(&b), ConvParams::default()).unwrap())
        }),
        ("relu2", vec![64, 16, 10, 10], true, Box::new(|x| x.relu())),
        (
            "pool2 2×2",
            vec![64, 16, 10, 10],
            true,
            Box::new(|x| x.max_pool2d(PoolParams::new(2).stride(2)).unwrap()),
        ),
        ("fc1 400→120", vec![64, 400], true, {
            let (w, b) = (f1.clone(), f2.clone());
            Box::new(move |x| x.linear(&w, Some(&b)).unwrap())
        }),
    ];
    if std::env::var("KERNELS").is_ok() {
        kernels(reps);
        return;
    }
    let (mut tf, mut tb) = (0.0, 0.0);
    for (name, shape, grad, op) in &cases {
        let x = r(shape, *grad);
        let fwd = median(reps, || {
            let t = Instant::now();
            std::hint::black_box(op(&x));
            t.elapsed().as_secs_f64()
        });
        let bwd = median(reps, || {
            let y = op(&x);
            let g = vec![1f32; y.numel()];
            let t = Instant::now();
            y.backward_with(g).unwrap();
            t.elapsed().as_secs_f64()
        });
        println!("{name:<20} forward {fwd:.3} ms  backward {bwd:.3} ms");
        tf += fwd;
        tb += bwd;
    }
    println!("{:<20} forward {tf:.3} ms  backward {tb:.3} ms", "all");
}

/// The kernels alone, without tensors or the graph.
fn kernels(reps: usize) {
    use aics_tensor::cpu::conv::{conv2d_bwd_data, conv2d_bwd_weight, conv2d_fwd, Conv2dGeom};
    use aics_tensor::cpu::pool::{max_pool_fwd, PoolGeom};
    let mut rng = Rng::new(0);
    let mut v = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
    let time = |name: &str, f: &mut dyn FnMut()| {
        let t = median(reps, || {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        });
        println!("{name:<28} {t:.3} ms");
    };
    let geom = |c: usize, h: usize, o: usize, p: usize| Conv2dGeom {
        n: 64,
        c,
        h,
        w: h,
        o,
        kh: 5,
        kw: 5,
        sh: 1,
        sw: 1,
        ph: p,
        pw: p,
        dh: 1,
        dw: 1,
        groups: 1,
        oh: h + 2 * p - 4,
        ow: h + 2 * p - 4,
    };
    for (name, g) in [("conv1", geom(1, 28, 6, 2)), ("conv2", geom(6, 14, 16, 0))] {
        let (x, wt, dy) = (
            v(g.n * g.c * g.hw()),
            v(g.o * g.ckk()),
            v(g.n * g.o * g.ohw()),
        );
        time(&format!("{name} fwd (im2col)"), &mut || {
            std::hint::black_box(conv2d_fwd(&x, &wt, &g));
        });
        if aics_tensor::cpu::direct::eligible(&g) {
            time(&format!("{name} fwd (direct)"), &mut || {
                std::hint::black_box(aics_tensor::cpu::direct::fwd(&x, &wt, &g));
            });
        }
        if aics_tensor::cpu::depthwise::eligible(&g) {
            time(&format!("{name} fwd (depthwise)"), &mut || {
                std::hint::black_box(aics_tensor::cpu::depthwise::fwd(&x, &wt, &g));
            });
            time(&format!("{name} dW (depthwise)"), &mut || {
                std::hint::black_box(aics_tensor::cpu::depthwise::bwd_weight(&x, &dy, &g));
            });
        }
        time(&format!("{name} dW"), &mut || {
            std::hint::black_box(conv2d_bwd_weight(&x, &dy, &g));
        });
        time(&format!("{name} dX"), &mut || {
            std::hint::black_box(conv2d_bwd_data(&dy, &wt, &g));
        });
    }
    for (name, planes, h) in [("pool1", 64 * 6, 28), ("pool2", 64 * 16, 10)] {
        let g = PoolGeom {
            planes,
            h,
            w: h,
            kh: 2,
            kw: 2,
            sh: 2,
            sw: 2,
            ph: 0,
            pw: 0,
            dh: 1,
            dw: 1,
            oh: h / 2,
            ow: h / 2,
        };
        let x = v(planes * h * h);
        time(&format!("{name} fwd"), &mut || {
            std::hint::black_box(max_pool_fwd(&x, &g));
        });
    }
}
