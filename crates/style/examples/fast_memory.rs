//! Peak live heap bytes of one fast-style training step (the transformation network on a
//! batch of photos, the perceptual loss through VGG19 with random weights, backward, Adam), by
//! phase: `cargo run --release -p aics-style --example fast_memory -- 256 4`.
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Adam, Module};
use aics_style::fast::{transform_net, Perceptual};
use aics_style::vgg::{InputSpace, Vgg19, CAFFE_MEAN_RGB};
use aics_tensor::{Rng, Tensor};

use aics_testkit::alloc::{live, mb, peak, reset_peak, Counting};

#[global_allocator]
static A: Counting = Counting;

fn report(what: &str, base: usize) {
    let live = live();
    println!(
        "{what:<22} live +{:>8.1} MB, peak so far +{:>8.1} MB",
        mb(live.saturating_sub(base)),
        mb(peak().saturating_sub(base))
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (s, n) = (
        a.first().copied().unwrap_or(256),
        a.get(1).copied().unwrap_or(4),
    );
    let mut rng = Rng::new(0);
    let vgg = Vgg19::random(
        0,
        InputSpace::Caffe {
            bgr: true,
            mean_rgb: CAFFE_MEAN_RGB,
        },
    );
    let painting = Tensor::<f32>::rand(&[1, 3, s, s], 0.0, 1.0, &mut rng);
    let losses = Perceptual::new(&vgg, &painting, 1.0, 5.0, 1e2)?;
    let net = transform_net(0)?;
    let mut opt = Adam::new(parameters(&net)).lr(1e-3);
    let x = Tensor::<f32>::rand(&[n, 3, s, s], 0.0, 1.0, &mut rng);
    for step in 1..=2 {
        let base = live();
        reset_peak();
        println!(
            "step {step} ({s}², batch {n}): {:.1} MB live before",
            mb(base)
        );
        opt.zero_grad();
        let y = net.forward(&x)?;
        report("network forward", base);
        let (total, _) = losses.loss(&vgg, &x, &y)?;
        report("loss forward", base);
        drop(y);
        total.backward()?;
        report("backward", base);
        drop(total);
        report("graph dropped", base);
        opt.step()?;
        report("Adam step", base);
    }
    Ok(())
}
