//! Resident memory of a zoo model on the inference path at batch 1: after it is built, after
//! `prepare_inference`, and after each of five forward passes (the first packs the weights):
//! `cargo run --release -p aics-vision --example mem`. `MODEL=name` picks the model (resnet50 by
//! default), `PLAIN=1` skips `prepare_inference`. The allocator keeps freed memory and
//! transparent huge pages are off, as in `aics` (`HUGE=1` keeps them on).
use aics_nn::Module;
use aics_tensor::{no_grad, Rng, Tensor};
use aics_vision::{build, ModelConfig};
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn rss(k: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with(k)).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}
fn main() {
    // SAFETY: sets an allocator option (`mi_option_purge_delay`, as `aics` does) before any
    // threads exist.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    // and no transparent huge pages, as `aics` (HUGE=1 keeps them, to compare)
    if std::env::var("HUGE").is_err() {
        // SAFETY: sets a flag of this process; it only changes how later page faults are served.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let model = std::env::var("MODEL").unwrap_or("resnet50".into());
    let base = rss("VmRSS:");
    let cfg = ModelConfig {
        in_shape: [3, 224, 224],
        num_classes: 1000,
        hidden: vec![],
        seed: 0,
    };
    let mut m = build(&model, &cfg).unwrap();
    m.set_training(false);
    let mut bytes = 0usize;
    m.visit("", &mut |_, t, _| bytes += 4 * t.numel());
    println!("tensors: {:.1} MB", bytes as f64 / (1 << 20) as f64);
    println!(
        "built: rss {:.0} hwm {:.0}",
        rss("VmRSS:") - base,
        rss("VmHWM:") - base
    );
    if std::env::var("PLAIN").is_err() {
        m.prepare_inference().unwrap();
    }
    println!(
        "prepared: rss {:.0} hwm {:.0}",
        rss("VmRSS:") - base,
        rss("VmHWM:") - base
    );
    let x = Tensor::<f32>::randn(&[1, 3, 224, 224], 0.0, 1.0, &mut Rng::new(0));
    let _g = no_grad();
    for i in 0..5 {
        m.forward(&x).unwrap();
        println!(
            "forward {i}: rss {:.0} hwm {:.0}",
            rss("VmRSS:") - base,
            rss("VmHWM:") - base
        );
    }
}
