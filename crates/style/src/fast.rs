//! Fast style transfer (Johnson, Alahi & Fei-Fei, 2016): instead of optimising each image, train
//! an image-transformation network once per painting with the same perceptual losses, then
//! stylise any photo with one forward pass.
//!
//! The network: a 9×9 convolution, two stride-2 3×3 convolutions (down to 1/4 resolution, 128
//! channels), five residual blocks, two nearest-neighbour ×2 upsamplings each followed by a 3×3
//! convolution, and a final 9×9 convolution to RGB; instance normalisation and ReLU after every
//! convolution but the last. Input and output are RGB images in [0, 1]. Every convolution reads
//! its input through reflection padding, so that the borders do not darken.
//!
//! The last convolution works in 0–255 pixel units, as in the paper's network, and a fixed
//! [`PixelScale`] brings its output to [0, 1]. Adam moves each weight by about the learning rate
//! whatever the scale, so this keeps the reference step size meaningful: without it, a step of
//! 1e-3 on the last layer's weights moves the output 255 times further relative to its range.

use aics_nn::layers::{Conv2d, InstanceNorm2d, ReLU, ReflectionPad2d, Upsample};
use aics_nn::{Module, Result, Sequential};
use aics_tensor::{ConvParams, Interp, Rng, Tensor};

use crate::gatys::Losses;
use crate::loss::{content_loss, gram, style_loss, tv_loss, LossForm};
use crate::vgg::Vgg19;

/// A k×k convolution without padding of its own (the reflection padding before it keeps the
/// size: see [`pad`]).
fn conv(c: usize, o: usize, k: usize, stride: usize, rng: &mut Rng) -> Result<Conv2d> {
    Conv2d::new(c, o, k, ConvParams::default().stride(stride), true, rng)
}

/// The reflection padding in front of a k×k convolution.
fn pad(k: usize) -> ReflectionPad2d {
    ReflectionPad2d { pad: k / 2 }
}

/// reflection pad → conv → instance norm → ReLU.
fn unit(c: usize, o: usize, k: usize, stride: usize, rng: &mut Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push("pad", pad(k))
        .push("conv", conv(c, o, k, stride, rng)?)
        .push("norm", InstanceNorm2d::new(o, true))
        .push("relu", ReLU))
}

/// `x + IN(conv(ReLU(IN(conv(x)))))`.
#[derive(Module)]
pub struct ResidualBlock {
    #[module(flatten)]
    body: Sequential,
}

impl Module for ResidualBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.body.forward(x)?.add(x)?)
    }
}

/// Multiplies by 1/255: from the last convolution's 0–255 pixel units to [0, 1].
#[derive(Module)]
pub struct PixelScale;

impl Module for PixelScale {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.mul_scalar(1.0 / 255.0))
    }
}

fn residual(c: usize, rng: &mut Rng) -> Result<ResidualBlock> {
    Ok(ResidualBlock {
        body: Sequential::new()
            .push("pad1", pad(3))
            .push("conv1", conv(c, c, 3, 1, rng)?)
            .push("in1", InstanceNorm2d::new(c, true))
            .push("relu", ReLU)
            .push("pad2", pad(3))
            .push("conv2", conv(c, c, 3, 1, rng)?)
            .push("in2", InstanceNorm2d::new(c, true)),
    })
}

/// The image-transformation network.
pub fn transform_net(seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let r = &mut rng;
    let mut net = Sequential::new()
        .push("down1", unit(3, 32, 9, 1, r)?)
        .push("down2", unit(32, 64, 3, 2, r)?)
        .push("down3", unit(64, 128, 3, 2, r)?);
    for i in 1..=5 {
        net = net.push(&format!("res{i}"), residual(128, r)?);
    }
    let up = || Upsample {
        scale: 2,
        mode: Interp::Nearest,
    };
    Ok(net
        .push("upsample1", up())
        .push("up1", unit(128, 64, 3, 1, r)?)
        .push("upsample2", up())
        .push("up2", unit(64, 32, 3, 1, r)?)
        .push("out_pad", pad(9))
        .push("out", conv(32, 3, 9, 1, r)?)
        .push("to_unit", PixelScale))
}

/// Reflected margin added around a photo before the network runs on it (and cropped after).
pub const MARGIN: usize = 16;

/// Stylise a batch of photos (N, 3, H, W), H, W ≥ 8, RGB in [0, 1], with a trained network. The input is
/// padded by reflection (up to [`MARGIN`] pixels, and on the bottom and right to a multiple of
/// 4, so that the two ×2 downsamplings and upsamplings line up) and the output cropped back, so
/// that the network's border artifacts fall outside the picture.
pub fn stylize(net: &dyn Module, x: &Tensor) -> Result<Tensor> {
    let (h, w) = match *x.shape() {
        [_, 3, h, w] if h >= 8 && w >= 8 => (h, w),
        ref s => {
            return Err(aics_nn::NnError::Config {
                layer: "fast style".into(),
                msg: format!("expected photos (N, 3, H, W) with H, W ≥ 8, got {s:?}"),
            })
        }
    };
    let (mt, ml) = (MARGIN.min(h - 1), MARGIN.min(w - 1));
    let fill = |n: usize, m: usize| m + (4 - (n + 2 * m) % 4) % 4;
    let (mb, mr) = (fill(h, mt).min(h - 1), fill(w, ml).min(w - 1));
    let y = net.forward(&x.reflection_pad2d([ml, mr, mt, mb])?)?;
    Ok(y.narrow(2, mt, h)?.narrow(3, ml, w)?)
}

/// Johnson et al.'s perceptual losses: style from Gram matrices at relu1_2, relu2_2, relu3_3,
/// relu4_3; content at relu2_2; total variation.
pub struct Perceptual {
    pub style_layers: Vec<usize>,
    pub content_layer: usize,
    /// Gram matrices of the painting at the style layers.
    grams: Vec<Tensor>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
}

impl Perceptual {
    /// Targets from the painting (RGB in [0, 1], (1, 3, H, W)).
    pub fn new(
        vgg: &Vgg19,
        painting: &Tensor,
        content_weight: f64,
        style_weight: f64,
        tv_weight: f64,
    ) -> Result<Self> {
        let style_layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
            .iter()
            .map(|n| Vgg19::layer_index(n))
            .collect::<Result<Vec<_>>>()?;
        let _g = aics_tensor::no_grad();
        let feats = vgg.features(&vgg.space.encode(painting)?, &style_layers)?;
        let grams = feats
            .iter()
            .map(|f| gram(f, LossForm::Mean))
            .collect::<Result<_>>()?;
        Ok(Perceptual {
            style_layers,
            content_layer: Vgg19::layer_index("relu2_2")?,
            grams,
            content_weight,
            style_weight,
            tv_weight,
        })
    }

    /// Loss of stylised images `y` for photos `x` (both (N, 3, H, W) RGB in [0, 1]).
    pub fn loss(&self, vgg: &Vgg19, x: &Tensor, y: &Tensor) -> Result<(Tensor, Losses)> {
        let target = {
            let _g = aics_tensor::no_grad();
            vgg.features(&vgg.space.encode(x)?, &[self.content_layer])?
                .remove(0)
        };
        let mut wanted = self.style_layers.clone();
        wanted.push(self.content_layer);
        let feats = vgg.features(&vgg.space.encode(y)?, &wanted)?;
        let n = y.shape()[0];
        let content = content_loss(&feats[self.style_layers.len()], &target, LossForm::Mean)?
            .mul_scalar(self.content_weight);
        let mut style = Tensor::scalar(0.0f32);
        for (f, a) in feats.iter().zip(&self.grams) {
            // on the whole batch: each image's Gram matrix (N, C, C) against the painting's
            style = style.add(&style_loss(f, a, LossForm::Mean)?)?;
        }
        let style = style.mul_scalar(self.style_weight / (n * self.grams.len()) as f64);
        let tv = tv_loss(y)?.mul_scalar(self.tv_weight);
        let total = content.add(&style)?.add(&tv)?;
        let l = Losses {
            content: content.item()? as f64,
            style: style.item()? as f64,
            tv: tv.item()? as f64,
            total: total.item()? as f64,
        };
        Ok((total, l))
    }
}
