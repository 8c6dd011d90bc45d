//! Times each ResNet-18 convolution shape at 32×32, batch 64: forward, and backward (input
//! and weight gradients): `cargo run --release -p aics-tensor --example r18`.
//! `MODE=x` or `MODE=w` asks for only the input's or only the weight's gradient, `MODE=none`
//! for the forward alone; `LAYER=i` times only the i-th shape, `REPS=n` runs each n times
//! (best of them; 15 by default). `SHAPE=n,c,o,k,stride,pad,h,w` times that one shape instead.
use aics_tensor::{ConvParams, Rng, Tensor};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut rng = Rng::new(0);
    // (c, o, k, stride, pad, input size, count in the model)
    let mut layers = vec![
        (3, 64, 7, 2, 3, 32, 1),
        (64, 64, 3, 1, 1, 8, 4),
        (64, 128, 3, 2, 1, 8, 1),
        (64, 128, 1, 2, 0, 8, 1),
        (128, 128, 3, 1, 1, 4, 3),
        (128, 256, 3, 2, 1, 4, 1),
        (128, 256, 1, 2, 0, 4, 1),
        (256, 256, 3, 1, 1, 2, 3),
        (256, 512, 3, 2, 1, 2, 1),
        (256, 512, 1, 2, 0, 2, 1),
        (512, 512, 3, 1, 1, 1, 3),
    ];
    let mut batch = 64;
    let mut width = None;
    if let Ok(v) = std::env::var("SHAPE") {
        let v: Vec<usize> = v
            .split(',')
            .map(|t| t.parse().expect("SHAPE: numbers"))
            .collect();
        assert_eq!(v.len(), 8, "SHAPE=n,c,o,k,stride,pad,h,w");
        batch = v[0];
        width = Some(v[7]);
        layers = vec![(v[1], v[2], v[3], v[4], v[5], v[6], 1)];
    }
    let only: Option<usize> = std::env::var("LAYER").ok().and_then(|v| v.parse().ok());
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut total = 0.0;
    for (i, &(c, o, k, s, pad, h, count)) in layers.iter().enumerate() {
        if only.is_some_and(|l| l != i) {
            continue;
        }
        let x = Tensor::<f32>::randn(&[batch, c, h, width.unwrap_or(h)], 0.0, 1.0, &mut rng)
            .requires_grad_(std::env::var("MODE").map_or(true, |m| m != "w" && m != "none"));
        let wt = Tensor::<f32>::randn(&[o, c, k, k], 0.0, 0.05, &mut rng)
            .requires_grad_(std::env::var("MODE").map_or(true, |m| m != "x" && m != "none"));
        let p = ConvParams::default().padding(pad).stride(s);
        let mut best_f = f64::MAX;
        let mut best_b = f64::MAX;
        for _ in 0..reps {
            x.zero_grad();
            wt.zero_grad();
            let t = Instant::now();
            let y = x.conv2d(&wt, None, p).unwrap();
            let f = t.elapsed().as_secs_f64();
            if std::env::var("MODE").is_ok_and(|m| m == "none") {
                best_f = best_f.min(f);
                continue;
            }
            let t = Instant::now();
            y.sum().backward().unwrap();
            let b = t.elapsed().as_secs_f64();
            best_f = best_f.min(f);
            best_b = best_b.min(b);
        }
        total += (best_f + best_b) * count as f64;
        println!(
            "{c:>4}->{o:<4} k{k} s{s} {h:>2}x{h:<2} x{count} fwd {:7.3} ms  bwd {:7.3} ms",
            best_f * 1e3,
            best_b * 1e3,
        );
    }
    println!("total (weighted by count) {:.2} ms", total * 1e3);
}
