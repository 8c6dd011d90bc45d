//! Peak live heap bytes of one Gatys step (VGG19 with random weights), by phase, and the
//! fastest forward and backward times of a few steps:
//! `cargo run --release -p aics-style --example gatys_memory -- 512 512`.
use aics_style::gatys::{self, Config};

use aics_testkit::alloc::{live, mb, peak, reset_peak, Counting};

#[global_allocator]
static A: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (h, w) = (
        a.first().copied().unwrap_or(512),
        a.get(1).copied().unwrap_or(512),
    );
    let cfg = Config::default();
    let (vgg, targets, x) = gatys::random_problem(h, w, &cfg, 0)?;
    let base = live();
    reset_peak();
    println!("{h}x{w}: before the step {:.1} MB live", mb(base));
    let (total, _) = gatys::loss(&vgg, &x, &targets, &cfg)?;
    println!(
        "after forward: {:.1} MB live (+{:.1}), peak +{:.1}",
        mb(live()),
        mb(live() - base),
        mb(peak() - base)
    );
    total.backward()?;
    println!(
        "after backward: peak +{:.1} MB over the state before the step",
        mb(peak() - base)
    );
    drop(total);
    println!("after dropping the graph: {:.1} MB live", mb(live()));
    // fastest of a few steps, by phase
    let (mut f, mut b) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        x.zero_grad();
        let t = std::time::Instant::now();
        let (total, _) = gatys::loss(&vgg, &x, &targets, &cfg)?;
        f = f.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        total.backward()?;
        b = b.min(t.elapsed().as_secs_f64());
    }
    println!("forward {:.1} ms, backward {:.1} ms", f * 1e3, b * 1e3);
    Ok(())
}
