//! The GAN workload of `aics bench`, repeated by `bench/torch_bench.py` in PyTorch:
//!
//! * `dcgan64_step_b64`: one DCGAN iteration on 64×64 RGB images, batch 64 (nz 100,
//!   ngf = ndf = 64, as PyTorch's DCGAN example): the discriminator on a real batch and on the
//!   generator's samples, its Adam step, then the generator's Adam step through the
//!   discriminator. Reported in images a second (real images consumed).

use aics_gan::{Gan, GanConfig, GanTrainer, Objective};
use aics_tensor::{Rng, Tensor};
use anyhow::Result;

use crate::bench::{time, Outcome};

pub(crate) fn run(
    want: &dyn Fn(&str) -> bool,
    min_time: f64,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    if !want("dcgan64_step_b64") {
        return Ok(());
    }
    let b = 64;
    let cfg = GanConfig::dcgan(3, 64);
    let mut tr = GanTrainer::new(
        Gan::new(&cfg, &mut Rng::new(0))?,
        Objective::NonSaturating,
        None,
    );
    // real images: a formula the PyTorch side repeats
    let real = Tensor::from_vec(
        (0..b * 3 * 64 * 64)
            .map(|i| (i as f32 * 0.001).sin())
            .collect(),
        &[b, 3, 64, 64],
    )?;
    let z = Tensor::randn(&[b, 100], 0.0, 1.0, &mut Rng::new(1));
    let s = time(min_time, || {
        tr.iteration(std::slice::from_ref(&real), &mut |_| z.clone())?;
        Ok(())
    })?;
    out.push(Outcome {
        name: "dcgan64_step_b64",
        seconds: s,
        flop: None,
        images: Some(b as f64 / s),
        tokens: None,
        peak_mb: None,
    });
    Ok(())
}
