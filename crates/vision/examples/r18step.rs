//! Phases of a ResNet-18 training step on 32² images at batch 64 (forward, backward, SGD
//! step; medians of `REPS=n`, 10 by default): `cargo run --release -p aics-vision --example
//! r18step`. `MODEL=lenet5` times LeNet-5 on 28² instead; `LAYERS=1` adds each layer type's
//! forward time (grad mode on); `RSS=1` prints resident memory and page faults after each
//! step; `FWD_ONLY=n` runs n forward passes alone (for a profiler); `BN=1` and `POOL=1` time
//! ResNet-18's batch norms and its stem's max pool alone (and LeNet-5's two). `INSTALL=1` runs
//! everything on a worker of the pool, as the `aics` binary does; `PURGE=ms` sets the
//! allocator's purge delay (-1, never, by default, as in `aics`).
use std::time::Instant;

use aics_nn::loss::cross_entropy;
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Sgd};
use aics_tensor::{Rng, Tensor};
use aics_vision::{build, ModelConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // freed memory stays committed, as in the `aics` binary (mimalloc's purge delay, option 15)
    let purge = std::env::var("PURGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    // SAFETY: an allocator option set before any threads exist.
    unsafe { libmimalloc_sys::mi_option_set(15, purge) };
    // INSTALL=1: the whole run on a worker of the pool, as the `aics` binary runs its commands
    if std::env::var("INSTALL").is_ok() {
        let pool = rayon::ThreadPoolBuilder::new().build()?;
        let r = pool.install(|| steps().map_err(|e| e.to_string()));
        return r.map_err(|e| e.into());
    }
    steps()
}

fn steps() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("POOL").is_ok() {
        pool_bench();
        return Ok(());
    }
    if std::env::var("BN").is_ok() {
        bn_bench();
        return Ok(());
    }
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // MODEL=lenet5 times LeNet-5 on 1×28×28 instead
    let name = std::env::var("MODEL").unwrap_or_else(|_| "resnet18".into());
    let in_shape = if name == "lenet5" {
        [1, 28, 28]
    } else {
        [3, 32, 32]
    };
    let x = Tensor::<f32>::randn(
        &[64, in_shape[0], in_shape[1], in_shape[2]],
        0.0,
        1.0,
        &mut Rng::new(0),
    );
    let model = build(
        &name,
        &ModelConfig {
            in_shape,
            num_classes: 10,
            hidden: vec![],
            seed: 0,
        },
    )?;
    let mut opt = Sgd::new(parameters(&model)).lr(0.01).momentum(0.9);
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    if let Ok(n) = std::env::var("FWD_ONLY") {
        // forward passes alone (grad mode on), for a profiler
        for _ in 0..n.parse().unwrap_or(100) {
            cross_entropy(&model.forward(&x)?, &y, None, 0.0)?;
        }
        return Ok(());
    }
    let (mut f, mut b, mut s) = (vec![], vec![], vec![]);
    for r in 0..reps + 2 {
        opt.zero_grad();
        let t0 = Instant::now();
        let loss = cross_entropy(&model.forward(&x)?, &y, None, 0.0)?;
        let t1 = Instant::now();
        loss.backward()?;
        drop(loss);
        let t2 = Instant::now();
        opt.step()?;
        let t3 = Instant::now();
        if std::env::var("RSS").is_ok() {
            let st = std::fs::read_to_string("/proc/self/status")?;
            let rss = st.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("");
            let stat = std::fs::read_to_string("/proc/self/stat")?;
            let minflt = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .nth(7)
                .unwrap_or("");
            eprintln!("step {r}: {rss} minflt {minflt}");
        }
        if r >= 2 {
            f.push((t1 - t0).as_secs_f64());
            b.push((t2 - t1).as_secs_f64());
            s.push((t3 - t2).as_secs_f64());
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2] * 1e3
    };
    println!(
        "forward {:.2} ms  backward {:.2} ms  step {:.2} ms",
        med(f),
        med(b),
        med(s)
    );
    if std::env::var("LAYERS").is_ok() {
        let mut acc: std::collections::BTreeMap<String, f64> = Default::default();
        for _ in 0..reps {
            let sum = aics_nn::inspect::summary(&model, &x)?;
            for r in sum.rows {
                *acc.entry(r.layer.clone()).or_default() += r.seconds * 1e3 / reps as f64;
            }
        }
        for (k, v) in acc {
            println!("{k:<40} {v:.2} ms");
        }
    }
    Ok(())
}

#[allow(dead_code)]
pub fn pool_bench() {
    use aics_tensor::PoolParams;
    // ResNet-18's stem pool, then LeNet-5's two 2×2 pools
    for (s, p) in [
        (
            [64usize, 64, 16, 16],
            PoolParams::new(3).stride(2).padding(1),
        ),
        ([64, 6, 28, 28], PoolParams::new(2).stride(2)),
        ([64, 16, 10, 10], PoolParams::new(2).stride(2)),
    ] {
        let x = Tensor::<f32>::randn(&s, 0.0, 1.0, &mut Rng::new(0)).requires_grad_(true);
        for _ in 0..3 {
            x.max_pool2d(p).unwrap();
        }
        let t = Instant::now();
        for _ in 0..50 {
            x.max_pool2d(p).unwrap();
        }
        println!(
            "maxpool fwd {s:?} {:.3} ms",
            t.elapsed().as_secs_f64() * 1e3 / 50.0
        );
    }
}

#[allow(dead_code)]
pub fn bn_bench() {
    for s in [
        [64usize, 64, 16, 16],
        [64, 64, 8, 8],
        [64, 128, 4, 4],
        [64, 256, 2, 2],
        [64, 512, 1, 1],
    ] {
        let x = Tensor::<f32>::randn(&s, 0.0, 1.0, &mut Rng::new(0)).requires_grad_(true);
        let w = Tensor::<f32>::ones(&[s[1]]).requires_grad_(true);
        let b = Tensor::<f32>::zeros(&[s[1]]).requires_grad_(true);
        let run = || {
            let y = x
                .batch_norm(Some(&w), Some(&b), None, None, true, 0.1, 1e-5)
                .unwrap();
            let t = Instant::now();
            y.backward_with(vec![1.0; y.numel()]).unwrap();
            t.elapsed().as_secs_f64()
        };
        for _ in 0..3 {
            run();
        }
        let (mut f, mut bw) = (0.0, 0.0);
        for _ in 0..50 {
            let t = Instant::now();
            let bt = run();
            f += t.elapsed().as_secs_f64() - bt;
            bw += bt;
        }
        println!(
            "bn {:?}: fwd {:.3} ms bwd {:.3} ms",
            s,
            f / 50.0 * 1e3,
            bw / 50.0 * 1e3
        );
    }
}
