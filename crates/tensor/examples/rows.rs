//! Times the row kernel (channels in the vector lanes) against the packed GEMM on ResNet-50's
//! convolution shapes at batch 1, and checks its output against the naive loop:
//! `cargo run --release -p aics-tensor --example rows`. `ONLY=c,o,h` times one shape; `COLD=n`
//! cycles through n copies of the weights, and `COLDX=1` of the inputs too.
use aics_tensor::cpu::conv::{conv2d_fwd_naive, Conv2dGeom};
use aics_tensor::cpu::packed::{self, Epilogue, PackedWeights};
use aics_tensor::cpu::rowconv;
use aics_tensor::Activation;
use std::time::Instant;
fn time(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..100 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
fn main() {
    let shapes = [
        (1024usize, 256usize, 14usize, 1usize, 1usize),
        (2048, 512, 7, 1, 1),
        (512, 2048, 7, 1, 1),
        (256, 1024, 14, 1, 1),
        (512, 128, 28, 1, 1),
        (256, 64, 56, 1, 1),
        (64, 256, 56, 1, 1),
        (512, 512, 7, 3, 1),
        (256, 256, 14, 3, 1),
        (128, 128, 28, 3, 1),
        (512, 512, 14, 3, 2),
        (256, 256, 28, 3, 2),
        (128, 128, 56, 3, 2),
        (256, 512, 56, 1, 2),
        (512, 1024, 28, 1, 2),
        (1024, 2048, 14, 1, 2),
        (3, 64, 224, 7, 2),
        (64, 64, 56, 3, 1),
        (512, 512, 28, 3, 1),
        (256, 256, 56, 3, 1),
        (128, 128, 112, 3, 1),
    ];
    // MOBILENET=1: MobileNetV2's 1×1 layers and its stem instead
    let mobile = [
        (96, 576, 14, 1, 1),
        (576, 96, 14, 1, 1),
        (160, 960, 7, 1, 1),
        (960, 160, 7, 1, 1),
        (320, 1280, 7, 1, 1),
        (64, 384, 14, 1, 1),
        (384, 64, 14, 1, 1),
        (32, 192, 28, 1, 1),
        (192, 32, 28, 1, 1),
        (128, 512, 28, 1, 1),
        (512, 128, 28, 1, 1),
        (512, 256, 28, 1, 1),
        (3, 32, 224, 3, 2),
        (16, 96, 112, 1, 1),
        (32, 16, 112, 1, 1),
        (24, 144, 56, 1, 1),
        (144, 24, 56, 1, 1),
        (96, 24, 56, 1, 1),
    ];
    let shapes: Vec<_> = if std::env::var("MOBILENET").is_ok() {
        mobile.to_vec()
    } else {
        shapes.to_vec()
    };
    // BATCH=n: n images (1 by default)
    let n: usize = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // ONLY=c,o,h: that shape alone
    let only = std::env::var("ONLY").ok();
    for (c, o, h, k, s) in shapes {
        if only.as_deref().is_some_and(|v| v != format!("{c},{o},{h}")) {
            continue;
        }
        let pd = if k == 1 { 0 } else { k / 2 };
        let oh = (h + 2 * pd - k) / s + 1;
        let g = Conv2dGeom {
            n,
            c,
            h,
            w: h,
            o,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            ph: pd,
            pw: pd,
            dh: 1,
            dw: 1,
            groups: 1,
            oh,
            ow: oh,
        };
        let x: Vec<f32> = (0..n * c * h * h)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..c * o * k * k)
            .map(|i| ((i * 31) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let epi = Epilogue {
            bias: None,
            residual: None,
            act: Activation::Identity,
        };
        let mut y = vec![0f32; n * o * oh * oh];
        let mut y2 = vec![0f32; n * o * oh * oh];
        // COLD=n: cycle through n copies of the weights, as a model's layers do at batch 1
        let copies: usize = std::env::var("COLD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let rws: Vec<PackedWeights> = (0..copies)
            .map(|_| PackedWeights::pack_rows(&w, o, c * k * k).unwrap())
            .collect();
        // COLDX=1: the inputs too (a copy of them for each copy of the weights)
        let xs: Vec<Vec<f32>> = if std::env::var("COLDX").is_ok() {
            (0..copies).map(|_| x.clone()).collect()
        } else {
            vec![x.clone()]
        };
        let mut it = 0;
        let tr = time(|| {
            it += 1;
            rowconv::conv2d_fwd(&xs[it % xs.len()], &rws[it % copies], &g, epi, &mut y2)
        });
        let fl = 2.0 * (n * c * o * oh * oh * k * k) as f64;
        // (the packed kernel unfolds strided 1×1 inputs tile by tile as it packs them)
        let tp = if k == 1 {
            let pws: Vec<PackedWeights> = (0..copies)
                .map(|_| PackedWeights::pack(&w, o, c).unwrap())
                .collect();
            let mut it = 0;
            time(|| {
                it += 1;
                packed::conv2d_fwd(&xs[it % xs.len()], &pws[it % copies], &g, epi, &mut y)
            })
        } else {
            f64::NAN
        };
        let yn = conv2d_fwd_naive(&x, &w, &g);
        let err = yn
            .iter()
            .zip(&y2)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{c}->{o} k{k} s{s} {h}x{h}: packed {:.3} ms {:.0} GF/s | rows {:.3} ms {:.0} GF/s  err {err:.2e}", tp * 1e3, fl / tp / 1e9, tr * 1e3, fl / tr / 1e9);
    }
}
