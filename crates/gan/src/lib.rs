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
//!
//! A DCGAN for 32² gray images, one training iteration and a few samples:
//!
//! ```
//! use aics_gan::{train::sample, Gan, GanConfig, GanTrainer, Objective};
//! use aics_tensor::{Rng, Tensor};
//!
//! let mut cfg = GanConfig::dcgan(1, 32);
//! cfg.width = 8; // ngf = ndf (64 in the paper)
//! let mut rng = Rng::new(0);
//! let mut trainer = GanTrainer::new(Gan::new(&cfg, &mut rng)?, Objective::NonSaturating, None);
//! let real = Tensor::rand(&[16, 1, 32, 32], -1.0, 1.0, &mut rng); // images in [−1, 1]
//! let z_dim = cfg.z_dim;
//! let stats = trainer.iteration(&[real], &mut |n| Tensor::randn(&[n, z_dim], 0.0, 1.0, &mut rng))?;
//! assert!(stats.d_loss.is_finite() && stats.g_loss.is_finite());
//! let g = &trainer.gan.generator;
//! let images = sample(g, &g.noise(4, &mut Rng::new(1)))?;
//! assert_eq!(images.shape(), [4, 1, 32, 32]);
//! # Ok::<(), aics_gan::GanError>(())
//! ```

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
