//! The losses of neural style transfer, generic over the float type (checked against f64
//! finite differences in the tests). `F` is a feature map (1, C, H, W) viewed as a C × HW
//! matrix.
//!
//! * Gram matrix `G = F·Fᵀ` (C × C): which channels fire together, wherever they fire — the
//!   texture statistics that stand for "style". [`GramNorm`] says whether it is divided by C·H·W.
//! * Content loss between the image's and the photo's features at one layer.
//! * Style loss between Gram matrices at one layer.
//! * Total variation: squared differences of neighbouring pixels, a smoothness prior.

use aics_nn::{NnError, Result};
use aics_tensor::{Float, Tensor};

/// How the Gram matrix and the losses are normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossForm {
    /// `G = F·Fᵀ / (C·H·W)`; content and style losses are means of squared differences.
    /// Sizes and layers then weigh in evenly, which suits the default weights.
    Mean,
    /// The textbook lab: `G = F·Fᵀ`; `L_content = Σ(X−P)² / (2·N·C·H·W)`;
    /// `L_style = Σ(G−A)² / (4·N·C²·(H·W)²)` per layer.
    Textbook,
}

fn dims<T: Float>(f: &Tensor<T>) -> Result<(usize, usize, usize)> {
    match *f.shape() {
        [n, c, h, w] => Ok((n, c, h * w)),
        ref s => Err(NnError::Config {
            layer: "style loss".into(),
            msg: format!("expected a feature map (N, C, H, W), got {s:?}"),
        }),
    }
}

/// Gram matrix of a (1, C, H, W) feature map (batch N > 1: Gram matrices of each, (N, C, C)).
pub fn gram<T: Float>(f: &Tensor<T>, form: LossForm) -> Result<Tensor<T>> {
    let (n, c, hw) = dims(f)?;
    let g = if n == 1 {
        f.reshape(&[c, hw])?.gram()?
    } else {
        f.reshape(&[n, c, hw])?.gram()?
    };
    Ok(match form {
        LossForm::Mean => g.mul_scalar(1.0 / (c * hw) as f64),
        LossForm::Textbook => g,
    })
}

/// Content loss between features `x` and target `p` (same shape).
pub fn content_loss<T: Float>(x: &Tensor<T>, p: &Tensor<T>, form: LossForm) -> Result<Tensor<T>> {
    let (n, c, hw) = dims(x)?;
    let d = x.sub(p)?.square().sum();
    Ok(match form {
        LossForm::Mean => d.mul_scalar(1.0 / (n * c * hw) as f64),
        LossForm::Textbook => d.mul_scalar(1.0 / (2 * n * c * hw) as f64),
    })
}

/// Style loss at one layer: the image's features `x` against the style's Gram matrix `a`.
/// For a batch (N > 1) against one (C, C) matrix, the `Mean` form is the sum of the N images' losses.
pub fn style_loss<T: Float>(x: &Tensor<T>, a: &Tensor<T>, form: LossForm) -> Result<Tensor<T>> {
    let (n, c, hw) = dims(x)?;
    let g = gram(x, form)?;
    let d = g.sub(a)?.square().sum();
    Ok(match form {
        LossForm::Mean => d.mul_scalar(1.0 / (c * c) as f64),
        LossForm::Textbook => {
            d.mul_scalar(1.0 / (4.0 * n as f64 * (c * c) as f64 * (hw as f64).powi(2)))
        }
    })
}

/// Total variation of an image batch (N, C, H, W): the mean of squared differences between
/// vertical and horizontal neighbours.
pub fn tv_loss<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let s = x.shape().to_vec();
    if s.len() != 4 || s[2] < 2 || s[3] < 2 {
        return Err(NnError::Config {
            layer: "tv loss".into(),
            msg: format!("expected an image (N, C, H, W) with H, W ≥ 2, got {s:?}"),
        });
    }
    let (h, w) = (s[2], s[3]);
    let dv = x.narrow(2, 1, h - 1)?.sub(&x.narrow(2, 0, h - 1)?)?;
    let dh = x.narrow(3, 1, w - 1)?.sub(&x.narrow(3, 0, w - 1)?)?;
    Ok(dv.square().mean().add(&dh.square().mean())?)
}
