//! The networks: the original GAN's multilayer perceptrons and DCGAN's convolutional pair.
//!
//! DCGAN follows Radford et al. (2016) and PyTorch's DCGAN example, whose state-dict keys it
//! keeps (`main.0.weight`, `main.1.running_mean`, …), so that example's `netG_epoch_N.pth`
//! loads as it is. For `size`² images (`size` = 32 or 64) with `k = log2(size) − 2`:
//!
//! * generator: z (N, nz) seen as (N, nz, 1, 1) → 4×4 transposed conv to `ngf·2^(k−1)` channels
//!   → (batch norm, ReLU, 4×4 stride-2 transposed conv halving the channels) … → `nc` channels
//!   → tanh; no biases;
//! * discriminator: 4×4 stride-2 conv to `ndf` channels, leaky ReLU 0.2, then (4×4 stride-2
//!   conv doubling the channels, batch norm, leaky ReLU 0.2) … down to 4×4, then a 4×4 conv to
//!   one value. The forward returns that logit: the example's final sigmoid (no parameters, so
//!   no key) is folded into the loss ([`crate::loss`]), and WGAN's critic has none.
//!
//! Weights are drawn from N(0, 0.02), batch-norm scales from N(1, 0.02), shifts 0.

use aics_nn::{
    BatchNorm, Conv2d, ConvTranspose2d, LeakyReLU, Linear, Module, ReLU, Sequential, Tanh,
};
use aics_tensor::{ConvParams, Rng, Tensor};

use crate::error::{config, Result};

/// Which family of networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Fully connected generator and discriminator (Goodfellow et al., 2014).
    Mlp,
    /// Radford et al.'s all-convolutional networks.
    Dcgan,
}

/// What a generator/discriminator pair is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct GanConfig {
    pub arch: Arch,
    /// The latent dimension (DCGAN's `nz`).
    pub z_dim: usize,
    /// One sample's shape: `[C, H, W]` for images (square, 32 or 64 for DCGAN), `[D]` for points.
    pub shape: Vec<usize>,
    /// DCGAN: `ngf` and `ndf` (64 in the paper); MLP: the hidden width.
    pub width: usize,
}

impl GanConfig {
    /// DCGAN for `size`² images of `channels` channels, nz 100, ngf = ndf = 64.
    pub fn dcgan(channels: usize, size: usize) -> Self {
        GanConfig {
            arch: Arch::Dcgan,
            z_dim: 100,
            shape: vec![channels, size, size],
            width: 64,
        }
    }
    /// The original GAN's perceptrons for samples of `shape`: images get nz 100 and layers of
    /// 256, 512, 1024 (generator) and 512, 256 (discriminator); points (a 1-D shape) nz 16 and
    /// three hidden layers of 128.
    pub fn mlp(shape: &[usize]) -> Self {
        let points = shape.len() == 1;
        GanConfig {
            arch: Arch::Mlp,
            z_dim: if points { 16 } else { 100 },
            shape: shape.to_vec(),
            width: if points { 128 } else { 256 },
        }
    }
    /// Elements of one sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }
    fn check(&self) -> Result<usize> {
        if self.z_dim == 0 || self.width == 0 || self.shape.contains(&0) {
            return Err(config(format!(
                "GAN config: z_dim {}, width {} and shape {:?} must be positive",
                self.z_dim, self.width, self.shape
            )));
        }
        match self.arch {
            Arch::Mlp => Ok(0),
            Arch::Dcgan => match self.shape[..] {
                [_, h, w] if h == w && (h == 32 || h == 64) => Ok(h.trailing_zeros() as usize - 2),
                _ => Err(config(format!(
                    "DCGAN takes square 32×32 or 64×64 images, not shape {:?}",
                    self.shape
                ))),
            },
        }
    }
}

/// N(0, 0.02) weights, N(1, 0.02) batch-norm scales: DCGAN's `weights_init`.
fn normal(shape: &[usize], mean: f64, rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, mean, 0.02, rng).requires_grad_(true)
}

fn bn(channels: usize, rng: &mut Rng) -> BatchNorm {
    let mut b = BatchNorm::new(channels);
    b.weight = Some(normal(&[channels], 1.0, rng));
    b
}

fn convt(
    cin: usize,
    cout: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<ConvTranspose2d> {
    let mut c = ConvTranspose2d::new(
        cin,
        cout,
        4,
        ConvParams::default().stride(stride).padding(pad),
        false,
        rng,
    )?;
    c.weight = normal(&[cin, cout, 4, 4], 0.0, rng);
    Ok(c)
}

fn conv(cin: usize, cout: usize, stride: usize, pad: usize, rng: &mut Rng) -> Result<Conv2d> {
    let mut c = Conv2d::new(
        cin,
        cout,
        4,
        ConvParams::default().stride(stride).padding(pad),
        false,
        rng,
    )?;
    c.weight = normal(&[cout, cin, 4, 4], 0.0, rng);
    Ok(c)
}

/// Linear layers through `dims`, each but the last followed by ReLU (or leaky ReLU 0.2), and a
/// final tanh if asked: keys `0.weight`, `2.weight`, ….
fn mlp(dims: &[usize], leaky: bool, tanh: bool, rng: &mut Rng) -> Result<Sequential> {
    let mut m = Sequential::new();
    for (i, d) in dims.windows(2).enumerate() {
        m = m.add(Linear::new(d[0], d[1], true, rng)?);
        if i + 2 < dims.len() {
            m = if leaky {
                m.add(LeakyReLU(0.2))
            } else {
                m.add(ReLU)
            };
        }
    }
    Ok(if tanh { m.add(Tanh) } else { m })
}

/// The generator: `forward` maps latent codes (N, z_dim) to samples (N, shape…).
#[derive(Module)]
pub struct Generator {
    #[module]
    pub main: Sequential,
    pub cfg: GanConfig,
}

impl Generator {
    pub fn new(cfg: &GanConfig, rng: &mut Rng) -> Result<Self> {
        let k = cfg.check()?;
        let mut main = Sequential::new();
        match cfg.arch {
            Arch::Dcgan => {
                let (nc, ngf) = (cfg.shape[0], cfg.width);
                let mut ch = ngf << (k - 1);
                main = main.add(convt(cfg.z_dim, ch, 1, 0, rng)?);
                for _ in 1..k {
                    main = main
                        .add(bn(ch, rng))
                        .add(ReLU)
                        .add(convt(ch, ch / 2, 2, 1, rng)?);
                    ch /= 2;
                }
                main = main
                    .add(bn(ch, rng))
                    .add(ReLU)
                    .add(convt(ch, nc, 2, 1, rng)?)
                    .add(Tanh);
            }
            Arch::Mlp => {
                let (w, out) = (cfg.width, cfg.sample_len());
                main = if cfg.shape.len() == 1 {
                    mlp(&[cfg.z_dim, w, w, w, out], false, false, rng)?
                } else {
                    mlp(&[cfg.z_dim, w, 2 * w, 4 * w, out], true, true, rng)?
                };
            }
        }
        Ok(Generator {
            main,
            cfg: cfg.clone(),
        })
    }

    /// Latent codes for `n` samples: N(0, 1), as all three papers draw them.
    pub fn noise(&self, n: usize, rng: &mut Rng) -> Tensor {
        Tensor::randn(&[n, self.cfg.z_dim], 0.0, 1.0, rng)
    }
}

impl Module for Generator {
    fn forward(&self, z: &Tensor) -> aics_nn::Result<Tensor> {
        let n = z.shape()[0];
        if z.shape() != [n, self.cfg.z_dim] {
            return Err(aics_nn::NnError::Config {
                layer: "Generator".into(),
                msg: format!(
                    "expects latent codes (N, {}), got {:?}",
                    self.cfg.z_dim,
                    z.shape()
                ),
            });
        }
        let mut out = vec![n];
        out.extend_from_slice(&self.cfg.shape);
        match self.cfg.arch {
            Arch::Dcgan => self.main.forward(&z.reshape(&[n, self.cfg.z_dim, 1, 1])?),
            Arch::Mlp => Ok(self.main.forward(z)?.reshape(&out)?),
        }
    }
}

/// The discriminator (or WGAN's critic): `forward` maps samples (N, shape…) to one logit each,
/// shape (N).
#[derive(Module)]
pub struct Discriminator {
    #[module]
    pub main: Sequential,
    pub cfg: GanConfig,
}

impl Discriminator {
    pub fn new(cfg: &GanConfig, rng: &mut Rng) -> Result<Self> {
        let k = cfg.check()?;
        let mut main = Sequential::new();
        match cfg.arch {
            Arch::Dcgan => {
                let (nc, ndf) = (cfg.shape[0], cfg.width);
                main = main.add(conv(nc, ndf, 2, 1, rng)?).add(LeakyReLU(0.2));
                let mut ch = ndf;
                for _ in 1..k {
                    main = main
                        .add(conv(ch, ch * 2, 2, 1, rng)?)
                        .add(bn(ch * 2, rng))
                        .add(LeakyReLU(0.2));
                    ch *= 2;
                }
                main = main.add(conv(ch, 1, 1, 0, rng)?);
            }
            Arch::Mlp => {
                let (w, inp) = (cfg.width, cfg.sample_len());
                main = if cfg.shape.len() == 1 {
                    mlp(&[inp, w, w, 1], true, false, rng)?
                } else {
                    mlp(&[inp, 2 * w, w, 1], true, false, rng)?
                };
            }
        }
        Ok(Discriminator {
            main,
            cfg: cfg.clone(),
        })
    }
}

impl Module for Discriminator {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        let n = x.shape().first().copied().unwrap_or(0);
        if x.shape().get(1..) != Some(&self.cfg.shape[..]) {
            return Err(aics_nn::NnError::Config {
                layer: "Discriminator".into(),
                msg: format!(
                    "expects samples (N, {:?}), got {:?}",
                    self.cfg.shape,
                    x.shape()
                ),
            });
        }
        let y = match self.cfg.arch {
            Arch::Dcgan => self.main.forward(x)?,
            Arch::Mlp => self
                .main
                .forward(&x.reshape(&[n, self.cfg.sample_len()])?)?,
        };
        Ok(y.reshape(&[n])?)
    }
}

/// Both networks under one state dict (`generator.main.0.weight`, `discriminator.main.0.weight`,
/// …), as a checkpoint stores them.
#[derive(Module)]
pub struct Gan {
    #[module]
    pub generator: Generator,
    #[module]
    pub discriminator: Discriminator,
}

impl Gan {
    pub fn new(cfg: &GanConfig, rng: &mut Rng) -> Result<Self> {
        Ok(Gan {
            generator: Generator::new(cfg, rng)?,
            discriminator: Discriminator::new(cfg, rng)?,
        })
    }
}

impl Module for Gan {
    /// The generator's output: the pair, as a module, maps noise to samples.
    fn forward(&self, z: &Tensor) -> aics_nn::Result<Tensor> {
        self.generator.forward(z)
    }
}

/// A DCGAN generator's configuration read from its weights (`main.0.weight` is (nz, ngf·2^(k−1),
/// 4, 4); the last transposed conv's (ngf, nc, 4, 4)): how a PyTorch `netG_epoch_N.pth` is
/// rebuilt. `get` returns a tensor's shape by key.
pub fn dcgan_config_from_shapes(get: &dyn Fn(&str) -> Option<Vec<usize>>) -> Result<GanConfig> {
    let first = get("main.0.weight")
        .ok_or_else(|| config("not a DCGAN generator: no tensor `main.0.weight`"))?;
    let [nz, c0, 4, 4] = first[..] else {
        return Err(config(format!(
            "not a DCGAN generator: `main.0.weight` has shape {first:?}, expected (nz, C, 4, 4)"
        )));
    };
    // the transposed convs sit at 0, 3, 6, …; the last one maps ngf to nc
    let mut k = 1;
    let mut last = first.clone();
    while let Some(s) = get(&format!("main.{}.weight", 3 * k)) {
        last = s;
        k += 1;
    }
    if k < 4 || !matches!(last[..], [_, _, 4, 4]) {
        return Err(config(format!(
            "not a DCGAN generator for 32² or 64² images: {k} transposed convolutions, the last of shape {last:?}"
        )));
    }
    let size = 4 << (k - 1);
    if size != 32 && size != 64 {
        return Err(config(format!(
            "a DCGAN generator for {size}² images: aics builds 32² and 64²"
        )));
    }
    let ngf = c0 >> (k - 2);
    Ok(GanConfig {
        arch: Arch::Dcgan,
        z_dim: nz,
        shape: vec![last[1], size, size],
        width: ngf,
    })
}
