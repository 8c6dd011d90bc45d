//! Times the backward pass of the textbook lab's convolution (256→256, 3×3, padding 1, on
//! 1×256×24×40) in its parts: the input gradient (Winograd) and the weight gradient (im2col +
//! GEMM): `cargo run --release -p aics-tensor --example lab33`.
use aics_tensor::cpu::conv::{conv2d_bwd_weight, Conv2dGeom};
use aics_tensor::cpu::winograd;
use aics_tensor::Rng;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut b = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

fn main() {
    let (c, h, w) = (256, 24, 40);
    let g = Conv2dGeom {
        n: 1,
        c,
        h,
        w,
        o: c,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        ph: 1,
        pw: 1,
        dh: 1,
        dw: 1,
        groups: 1,
        oh: h,
        ow: w,
    };
    let mut rng = Rng::new(0);
    let mut randv = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
    let (x, wt, dy) = (randv(c * h * w), randv(c * c * 9), randv(c * h * w));
    let gflop = 2.0 * (c * c * 9 * h * w) as f64 / 1e9;
    let tile = winograd::plan(&g).expect("a Winograd shape");
    let t = best(30, || {
        std::hint::black_box(winograd::conv3x3_bwd_data(&dy, 1, c, h, w, &wt, c, 1, tile));
    });
    println!("dX (Winograd):  {:.2} ms", t * 1e3);
    let t = best(30, || {
        std::hint::black_box(conv2d_bwd_weight(&x, &dy, &g));
    });
    println!(
        "dW (im2col + GEMM): {:.2} ms, {:.0} GFLOP/s",
        t * 1e3,
        gflop / t
    );
    gemm_alone();
}

/// The weight gradient's product alone, on columns unfolded beforehand, in each orientation
/// (`dW = dY · colsᵀ`, or `dWᵀ = cols · dYᵀ` with `dYᵀ` read in place or transposed first).
fn gemm_alone() {
    use aics_tensor::cpu::gemm::{gemm, Mat};
    let (o, ckk, k) = (256usize, 2304usize, 960usize);
    let mut rng = Rng::new(1);
    let mut randv = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
    let (dy, cols) = (randv(o * k), randv(ckk * k));
    let dyt: Vec<f32> = (0..k * o).map(|i| dy[(i % o) * k + i / o]).collect();
    let gflop = 2.0 * (o * ckk * k) as f64 / 1e9;
    let mut c = vec![0f32; o * ckk];
    let cases = [
        ("dY·colsᵀ", o, ckk, Mat::rm(&dy, k), Mat::rm_t(&cols, k)),
        ("cols·dYᵀ", ckk, o, Mat::rm(&cols, k), Mat::rm_t(&dy, k)),
        (
            "cols·(dYᵀ row-major)",
            ckk,
            o,
            Mat::rm(&cols, k),
            Mat::rm(&dyt, o),
        ),
    ];
    for (name, m, n, a, b) in cases {
        let t = best(30, || gemm(m, n, k, a, b, &mut c, false, true));
        println!("{name}: {:.2} ms, {:.0} GFLOP/s", t * 1e3, gflop / t);
    }
}
