//! The adversarial objectives, on the discriminator's logits `l` (D(x) = σ(l)).
//!
//! * Discriminator (GAN, DCGAN): `−log D(x) − log(1 − D(G(z)))`, averaged: binary cross-entropy
//!   on logits with targets 1 for real and 0 for generated samples (PyTorch's `BCELoss` after a
//!   sigmoid, computed stably).
//! * Generator, minimax: minimise `log(1 − D(G(z)))`, the game as first written. Its gradient
//!   vanishes while D rejects the samples confidently, early in training.
//! * Generator, non-saturating: minimise `−log D(G(z))`, same fixed point, strong gradients
//!   early (Goodfellow et al., 2014, §3).
//! * Wasserstein (WGAN): the critic minimises `mean f(G(z)) − mean f(x)`, the generator
//!   `−mean f(G(z))`; `mean f(x) − mean f(G(z))` estimates the Wasserstein-1 distance (up to the
//!   Lipschitz constant the clipping allows).

use aics_nn::loss::bce_with_logits;
use aics_tensor::Tensor;

use crate::error::Result;

/// Which game the two networks play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Cross-entropy discriminator, generator minimising `log(1 − D(G(z)))`.
    Minimax,
    /// Cross-entropy discriminator, generator minimising `−log D(G(z))` (DCGAN's).
    NonSaturating,
    /// WGAN's critic and generator losses.
    Wasserstein,
}

fn bce_const(logits: &Tensor, target: f32) -> Result<Tensor> {
    let y = Tensor::full(logits.shape(), target);
    Ok(bce_with_logits(logits, &y)?)
}

/// The discriminator's (critic's) loss on real and generated logits, as the two terms
/// `(on real, on generated)`: their sum is the loss. PyTorch's DCGAN example backpropagates
/// them one after the other, which gives the same gradients.
pub fn d_loss(real: &Tensor, fake: &Tensor, obj: Objective) -> Result<(Tensor, Tensor)> {
    Ok(match obj {
        Objective::Minimax | Objective::NonSaturating => {
            (bce_const(real, 1.0)?, bce_const(fake, 0.0)?)
        }
        Objective::Wasserstein => (real.mean().neg(), fake.mean()),
    })
}

/// The generator's loss on the discriminator's logits of its samples.
pub fn g_loss(fake: &Tensor, obj: Objective) -> Result<Tensor> {
    Ok(match obj {
        Objective::Minimax => bce_const(fake, 0.0)?.neg(),
        Objective::NonSaturating => bce_const(fake, 1.0)?,
        Objective::Wasserstein => fake.mean().neg(),
    })
}
