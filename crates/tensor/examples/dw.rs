//! Times the depthwise 3×3 forward (with bias and ReLU6, as MobileNetV2 runs it) on
//! MobileNetV2's shapes at batch 1: `cargo run --release -p aics-tensor --example dw`.
use aics_tensor::cpu::conv::Conv2dGeom;
use aics_tensor::cpu::depthwise;
use aics_tensor::Activation;
use std::time::Instant;
fn main() {
    let shapes = [
        (32usize, 112usize, 1usize),
        (96, 112, 2),
        (144, 56, 1),
        (144, 56, 2),
        (192, 28, 1),
        (384, 14, 1),
        (576, 14, 1),
        (576, 14, 2),
        (960, 7, 1),
    ];
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut total = 0.0;
    // ONLY=<channels> times that shape alone
    let only: Option<usize> = std::env::var("ONLY").ok().and_then(|v| v.parse().ok());
    for (c, h, s) in shapes {
        if only.is_some_and(|o| o != c) {
            continue;
        }
        let oh = (h + 2 - 3) / s + 1;
        let g = Conv2dGeom {
            n: 1,
            c,
            h,
            w: h,
            o: c,
            kh: 3,
            kw: 3,
            sh: s,
            sw: s,
            ph: 1,
            pw: 1,
            dh: 1,
            dw: 1,
            groups: c,
            oh,
            ow: oh,
        };
        let x: Vec<f32> = (0..c * h * h)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..c * 9)
            .map(|i| ((i * 31) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.01).collect();
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            let y = depthwise::fwd_fused(&x, &w, &g, Some(&b), Activation::Relu6);
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(y);
        }
        total += best;
        println!("{c} ch {h}x{h} s{s}: {:.1} us", best * 1e6);
    }
    println!("total {:.1} us", total * 1e6);
}
