//! One training iteration of a GAN and WGAN's weight clipping.
//!
//! An iteration takes `n_critic` real batches (1 for GAN and DCGAN, 5 for WGAN, 100 in WGAN's
//! first 25 generator steps and every 500th: [`GanTrainer::critic_steps`]). For each:
//! new latent codes, the generator's samples, and one discriminator (critic) update on the real
//! batch against those samples, detached from the generator; WGAN then clips every critic
//! parameter to [−c, c] (Arjovsky et al., 2017, Algorithm 1). Then one generator update: with
//! one discriminator step it reuses that step's samples, as PyTorch's DCGAN example does (its
//! generator runs once an iteration); WGAN draws fresh codes, as the WGAN paper does.

use aics_nn::distributed::{CommHandle, DdpOptions, DistributedDataParallel};
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Module};
use aics_tensor::{no_grad, Rng, Tensor};

use crate::error::{GanError, Result};
use crate::loss::{d_loss, g_loss, Objective};
use crate::models::Gan;

/// What one iteration measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// The last discriminator (critic) loss.
    pub d_loss: f64,
    /// The generator loss.
    pub g_loss: f64,
    /// Mean D(x) on the last real batch: the probability for GAN/DCGAN, the critic value for WGAN.
    pub d_real: f64,
    /// Mean D(G(z)) on the last generated batch before the discriminator's update.
    pub d_fake: f64,
    /// WGAN: `mean f(x) − mean f(G(z))` of the last critic step, the Wasserstein estimate.
    pub wasserstein: Option<f64>,
}

/// Clip every value of `params` to [−c, c] in place.
pub fn clip_weights(params: &[(String, Tensor)], c: f32) {
    for (_, p) in params {
        p.update_data(|v| v.iter_mut().for_each(|x| *x = x.clamp(-c, c)));
    }
}

/// A GAN with its two optimizers and its game.
pub struct GanTrainer {
    pub gan: Gan,
    pub opt_g: Box<dyn Optimizer>,
    pub opt_d: Box<dyn Optimizer>,
    pub objective: Objective,
    /// Discriminator (critic) updates per generator update.
    pub n_critic: usize,
    /// WGAN's clipping bound c.
    pub clip: Option<f32>,
    /// WGAN: 100 critic steps for the first 25 generator steps and every 500th, as the WGAN
    /// authors' code trains the critic closer to optimality there ([`GanTrainer::critic_steps`]).
    pub critic_boost: bool,
    /// Iterations done (the step numbers errors name).
    pub step: u64,
    /// Data-parallel training: the reducers of the discriminator's and the generator's
    /// gradients ([`GanTrainer::distribute`]).
    ddp: Option<(DistributedDataParallel, DistributedDataParallel)>,
}

fn finite(step: u64, what: &'static str, t: &Tensor) -> Result<f64> {
    let v = t.item()? as f64;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(GanError::NotFinite {
            step: step + 1,
            what,
            value: v,
        })
    }
}

fn mean_of(t: &Tensor, prob: bool) -> f64 {
    let d = t.data();
    let n = d.len().max(1) as f64;
    if prob {
        d.iter()
            .map(|&l| 1.0 / (1.0 + (-(l as f64)).exp()))
            .sum::<f64>()
            / n
    } else {
        d.iter().map(|&l| l as f64).sum::<f64>() / n
    }
}

impl GanTrainer {
    /// Networks with the papers' optimizers: Adam (lr 2e-4, β₁ 0.5) for GAN and DCGAN, RMSprop
    /// (lr 5e-5) and c = 0.01, 5 critic steps, for WGAN. `lr` overrides both learning rates.
    pub fn new(gan: Gan, objective: Objective, lr: Option<f64>) -> Self {
        let pg = parameters(&gan.generator);
        let pd = parameters(&gan.discriminator);
        let (opt_g, opt_d, n_critic, clip): (Box<dyn Optimizer>, Box<dyn Optimizer>, usize, _) =
            match objective {
                Objective::Wasserstein => {
                    let lr = lr.unwrap_or(5e-5);
                    (
                        Box::new(aics_nn::RmsProp::new(pg).lr(lr)),
                        Box::new(aics_nn::RmsProp::new(pd).lr(lr)),
                        5,
                        Some(0.01),
                    )
                }
                _ => {
                    let lr = lr.unwrap_or(2e-4);
                    (
                        Box::new(aics_nn::Adam::new(pg).lr(lr).betas(0.5, 0.999)),
                        Box::new(aics_nn::Adam::new(pd).lr(lr).betas(0.5, 0.999)),
                        1,
                        None,
                    )
                }
            };
        GanTrainer {
            gan,
            opt_g,
            opt_d,
            objective,
            n_critic,
            clip,
            critic_boost: objective == Objective::Wasserstein,
            step: 0,
            ddp: None,
        }
    }

    /// Trains on every rank of `group`'s data-parallel group: each network's gradients are
    /// averaged over the ranks after each of its backward passes, and both networks start as
    /// rank 0's. Each rank then passes its own part of every batch to
    /// [`GanTrainer::iteration`].
    pub fn distribute(&mut self, group: &CommHandle, options: DdpOptions) -> Result<()> {
        let d =
            DistributedDataParallel::with_handle(&self.gan.discriminator, group, options.clone())?;
        let g = DistributedDataParallel::with_handle(&self.gan.generator, group, options)?;
        self.ddp = Some((d, g));
        Ok(())
    }

    /// The real batches the next iteration takes: `n_critic`, or 100 in WGAN's boosted
    /// iterations (generator steps 0–24 and every 500th).
    pub fn critic_steps(&self) -> usize {
        if self.critic_boost && (self.step < 25 || self.step.is_multiple_of(500)) {
            100
        } else {
            self.n_critic
        }
    }

    /// One iteration: a discriminator update per real batch of `reals` (`n_critic` of them),
    /// then a generator update. `noise` draws the latent codes for `n` samples.
    pub fn iteration(
        &mut self,
        reals: &[Tensor],
        noise: &mut dyn FnMut(usize) -> Tensor,
    ) -> Result<StepStats> {
        if reals.is_empty() {
            return Err(crate::error::config(
                "an iteration needs at least one real batch",
            ));
        }
        let (g, d) = (&self.gan.generator, &self.gan.discriminator);
        let wgan = self.objective == Objective::Wasserstein;
        let reuse = reals.len() == 1;
        let mut stats = StepStats::default();
        let mut kept_fake = None;
        for real in reals {
            let z = noise(real.shape()[0]);
            // the samples for the discriminator: detached; kept with their graph when the
            // generator's update reuses them
            let fake = if reuse {
                let f = g.forward(&z)?;
                kept_fake = Some(f.clone());
                f.detach()
            } else {
                let _ng = no_grad();
                g.forward(&z)?
            };
            self.opt_d.zero_grad();
            let lr = d.forward(real)?;
            let lf = d.forward(&fake)?;
            let (a, b) = d_loss(&lr, &lf, self.objective)?;
            let loss = a.add(&b)?;
            stats.d_loss = finite(self.step, "discriminator loss", &loss)?;
            match self.ddp.as_mut() {
                Some((dd, _)) => dd.backward(&loss)?,
                None => loss.backward()?,
            }
            self.opt_d.step()?;
            if let Some(c) = self.clip {
                clip_weights(self.opt_d.params(), c);
            }
            stats.d_real = mean_of(&lr, !wgan);
            stats.d_fake = mean_of(&lf, !wgan);
            if wgan {
                stats.wasserstein = Some(stats.d_real - stats.d_fake);
            }
        }
        self.opt_g.zero_grad();
        let fake = match kept_fake {
            Some(f) => f,
            None => g.forward(&noise(reals[0].shape()[0]))?,
        };
        let loss = g_loss(&d.forward(&fake)?, self.objective)?;
        stats.g_loss = finite(self.step, "generator loss", &loss)?;
        match self.ddp.as_mut() {
            // the discriminator's gradients of this pass are not used: its next update zeroes them
            Some((_, dg)) => dg.backward(&loss)?,
            None => loss.backward()?,
        }
        self.opt_g.step()?;
        self.step += 1;
        Ok(stats)
    }
}

/// The generator's samples for codes `z`, in evaluation mode and without a graph; the generator
/// is left in training mode.
pub fn sample(g: &crate::models::Generator, z: &Tensor) -> Result<Tensor> {
    let _ng = no_grad();
    g.set_training(false);
    let out = g.forward(z);
    g.set_training(true);
    Ok(out?)
}

/// Latent codes for iteration `step` of a run seeded `seed`: a stream of its own, so that a
/// resumed run draws exactly the codes the uninterrupted run would have.
pub fn step_rng(seed: u64, step: u64) -> Rng {
    Rng::derive(seed ^ 0x6a09_e667_f3bc_c908, step)
}
