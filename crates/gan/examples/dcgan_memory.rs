//! Peak live heap bytes of DCGAN iterations at 64², batch 64 (the `dcgan64_step_b64` workload),
//! by phase: `cargo run --release -p aics-gan --example dcgan_memory`.
use aics_gan::loss::{d_loss, g_loss};
use aics_gan::{Gan, GanConfig, GanTrainer, Objective};
use aics_nn::Module;
use aics_tensor::{Rng, Tensor};
use aics_testkit::alloc::{live, mb, peak, reset_peak, Counting};

#[global_allocator]
static A: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let b = 64;
    let cfg = GanConfig::dcgan(3, 64);
    let mut tr = GanTrainer::new(
        Gan::new(&cfg, &mut Rng::new(0))?,
        Objective::NonSaturating,
        None,
    );
    let real = Tensor::randn(&[b, 3, 64, 64], 0.0, 0.5, &mut Rng::new(1));
    let z = Tensor::randn(&[b, 100], 0.0, 1.0, &mut Rng::new(2));
    // two iterations so that the optimizers' state exists
    for _ in 0..2 {
        tr.iteration(std::slice::from_ref(&real), &mut |_| z.clone())?;
    }
    let base = live();
    println!("networks and optimizer state: {:.1} MB live", mb(base));
    reset_peak();
    let (g, d) = (&tr.gan.generator, &tr.gan.discriminator);
    let fake = g.forward(&z)?;
    println!(
        "G forward: +{:.1} MB live, peak +{:.1}",
        mb(live() - base),
        mb(peak() - base)
    );
    let lr = d.forward(&real)?;
    let lf = d.forward(&fake.detach())?;
    let (x, y) = d_loss(&lr, &lf, Objective::NonSaturating)?;
    let loss = x.add(&y)?;
    println!(
        "D forwards: +{:.1} MB live, peak +{:.1}",
        mb(live() - base),
        mb(peak() - base)
    );
    loss.backward()?;
    drop((loss, x, y, lr, lf));
    println!(
        "D backward: +{:.1} MB live, peak +{:.1}",
        mb(live() - base),
        mb(peak() - base)
    );
    let l = g_loss(&d.forward(&fake)?, Objective::NonSaturating)?;
    println!(
        "D forward on G(z): +{:.1} MB live, peak +{:.1}",
        mb(live() - base),
        mb(peak() - base)
    );
    l.backward()?;
    drop((l, fake));
    println!(
        "G backward: +{:.1} MB live, peak +{:.1}",
        mb(live() - base),
        mb(peak() - base)
    );
    reset_peak();
    tr.iteration(std::slice::from_ref(&real), &mut |_| z.clone())?;
    println!(
        "one whole iteration: peak +{:.1} MB over {:.1} MB",
        mb(peak() - base),
        mb(base)
    );
    Ok(())
}
