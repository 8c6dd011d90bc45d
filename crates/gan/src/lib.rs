//! aics-gan: generative adversarial networks as the chapter tells them.
//!
//! * [`models`]: the original GAN's multilayer perceptrons, DCGAN's all-convolutional generator
//!   and discriminator (PyTorch's DCGAN example's `main.N` keys), and WGAN's critic (DCGAN's
//!   discriminator without the sigmoid).
//! * [`loss`]: the minimax and non-saturating generator losses, the discriminator's
//!   cross-entropy, and the Wasserstein critic's loss.
//! * [`train`]: one training iteration (discriminator or critic updates, then a generator
//!   update) and WGAN's weight clipping.
//! * [`toy`]: the 2-D mixtures `ring8` and `grid25` with their mode coverage.
//! * [`metrics`]: class histograms, their divergence from uniform, and the Fréchet distance
//!   between two sets of feature vectors.

pub mod error;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod toy;
pub mod train;

pub use error::{GanError, Result};
pub use loss::Objective;
pub use models::{Arch, Discriminator, Gan, GanConfig, Generator};
pub use toy::{Coverage, Toy};
pub use train::{clip_weights, GanTrainer, StepStats};
