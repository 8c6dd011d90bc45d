//! Neural style transfer (Gatys, Ecker & Bethge, 2016): optimise an image so that its VGG19
//! features match a photo's (content) and the Gram matrices of its features match a painting's
//! (style).
//!
//! * [`vgg`]: the VGG19 convolutional trunk with named layers (`relu4_2`, …), loaded from the
//!   original weights in three published formats, run only as deep as the losses need;
//! * [`loss`]: Gram matrix, content, style and total-variation losses, generic over the float
//!   type so that they are checked against f64 finite differences;
//! * [`gatys`]: targets, the optimisation loop (L-BFGS or Adam), initialisation, the textbook
//!   preset, multi-scale runs;
//! * [`fast`]: Johnson et al.'s feed-forward image-transformation network and its perceptual
//!   losses;
//! * [`picture`]: reading, resizing and writing images, and luminance-only colour transfer.

pub mod fast;
pub mod gatys;
pub mod loss;
pub mod picture;
pub mod vgg;

pub use aics_nn::{NnError, Result};
