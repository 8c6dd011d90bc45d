//! Times conv2d forward and input-gradient for each VGG19 layer shape (up to relu5_1) at one
//! image size: `cargo run --release -p aics-tensor --example convlayers -- 256 256`.
//! The backward time includes the `sum` that starts it.
use aics_tensor::{ConvParams, Rng, Tensor};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (h, w) = (
        args.first().copied().unwrap_or(256),
        args.get(1).copied().unwrap_or(256),
    );
    let mut rng = Rng::new(0);
    let layers = [
        (3, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 2),
        (128, 256, 4),
        (256, 256, 4),
        (256, 256, 4),
        (256, 256, 4),
        (256, 512, 8),
        (512, 512, 8),
        (512, 512, 8),
        (512, 512, 8),
        (512, 512, 16),
    ];
    let mut total = 0.0;
    for (c, o, s) in layers {
        let x =
            Tensor::<f32>::randn(&[1, c, h / s, w / s], 0.0, 1.0, &mut rng).requires_grad_(true);
        let wt = Tensor::<f32>::randn(&[o, c, 3, 3], 0.0, 0.05, &mut rng);
        let p = ConvParams::default().padding(1);
        let mut best_f = f64::MAX;
        let mut best_b = f64::MAX;
        for _ in 0..5 {
            x.zero_grad();
            let t = Instant::now();
            let y = x.conv2d(&wt, None, p).unwrap();
            let f = t.elapsed().as_secs_f64();
            let t = Instant::now();
            y.sum().backward().unwrap();
            let b = t.elapsed().as_secs_f64();
            best_f = best_f.min(f);
            best_b = best_b.min(b);
        }
        let gf = 2.0 * (o * c * 9 * (h / s) * (w / s)) as f64 / 1e9;
        total += best_f + best_b;
        println!(
            "{c:>4}->{o:<4} {:>4}x{:<4} fwd {:7.2} ms ({:6.1} GF/s)  bwd {:7.2} ms ({:6.1} GF/s)",
            h / s,
            w / s,
            best_f * 1e3,
            gf / best_f,
            best_b * 1e3,
            gf / best_b
        );
    }
    println!("total {:.1} ms", total * 1e3);
}
