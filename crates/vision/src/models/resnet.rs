//! ResNet (He et al., 2015) as torchvision defines it: a 7×7/2 stem with max pooling, four stages
//! of residual blocks (`BasicBlock` for 18/34, `Bottleneck` with expansion 4 for 50/101/152;
//! stride on the 3×3 conv, "v1.5"), global average pooling and `fc`. A block adds its input back:
//! `y = relu(F(x) + shortcut(x))`, with a 1×1 conv + BN shortcut (`downsample`) when the shape changes.

use aics_nn::fuse::{conv_bn_act, fold_batch_norm};
use aics_nn::layers::{AdaptiveAvgPool2d, BatchNorm, Conv2d, Flatten, Linear, MaxPool2d, ReLU};
use aics_nn::{Fields, Module, NnError, Result, Sequential};
use aics_tensor::{Activation, ConvParams, PoolParams, Rng, Tensor};

use super::ModelConfig;
pub use super::Norm;

fn conv(c: usize, o: usize, k: usize, stride: usize, rng: &mut Rng) -> Result<Conv2d> {
    Conv2d::new(
        c,
        o,
        k,
        ConvParams::default().stride(stride).padding(k / 2),
        false,
        rng,
    )
}

/// Two 3×3 convolutions.
#[derive(Module)]
pub struct BasicBlock {
    #[module]
    conv1: Conv2d,
    #[module]
    bn1: Box<dyn Module>,
    #[module]
    conv2: Conv2d,
    #[module]
    bn2: Box<dyn Module>,
    #[module]
    downsample: Option<Sequential>,
    /// The inference path: batch norms folded, ReLUs and the shortcut's add in the convolutions.
    fused: bool,
}

/// 1×1 reduce, 3×3, 1×1 expand (×4).
#[derive(Module)]
pub struct Bottleneck {
    #[module]
    conv1: Conv2d,
    #[module]
    bn1: Box<dyn Module>,
    #[module]
    conv2: Conv2d,
    #[module]
    bn2: Box<dyn Module>,
    #[module]
    conv3: Conv2d,
    #[module]
    bn3: Box<dyn Module>,
    #[module]
    downsample: Option<Sequential>,
    /// The inference path, as for [`BasicBlock`].
    fused: bool,
}

fn shortcut(ds: &Option<Sequential>, x: &Tensor) -> Result<Tensor> {
    match ds {
        Some(d) => d.forward(x),
        None => Ok(x.clone()),
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused {
            let h = self.conv1.forward(x)?;
            let s = shortcut(&self.downsample, x)?;
            return self.conv2.forward_residual(&h, &s, Activation::Relu);
        }
        let h = self.bn1.forward(&self.conv1.forward(x)?)?.relu();
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?;
        Ok(h.add(&shortcut(&self.downsample, x)?)?.relu())
    }
    fn prepare_inference(&mut self) -> Result<()> {
        self.prepare_inference_fields()?;
        if !self.fused
            && conv_bn_act(&mut self.conv1, self.bn1.as_mut(), Activation::Relu)?
            && fold_batch_norm(&mut self.conv2, self.bn2.as_mut())?
        {
            self.fused = true;
        }
        Ok(())
    }
    fn type_name(&self) -> String {
        format!(
            "BasicBlock({}→{})",
            self.conv1.weight.shape()[1],
            self.conv2.weight.shape()[0]
        )
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fused {
            let h = self.conv2.forward(&self.conv1.forward(x)?)?;
            let s = shortcut(&self.downsample, x)?;
            return self.conv3.forward_residual(&h, &s, Activation::Relu);
        }
        let h = self.bn1.forward(&self.conv1.forward(x)?)?.relu();
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?.relu();
        let h = self.bn3.forward(&self.conv3.forward(&h)?)?;
        Ok(h.add(&shortcut(&self.downsample, x)?)?.relu())
    }
    fn prepare_inference(&mut self) -> Result<()> {
        self.prepare_inference_fields()?;
        if !self.fused
            && conv_bn_act(&mut self.conv1, self.bn1.as_mut(), Activation::Relu)?
            && conv_bn_act(&mut self.conv2, self.bn2.as_mut(), Activation::Relu)?
            && fold_batch_norm(&mut self.conv3, self.bn3.as_mut())?
        {
            self.fused = true;
        }
        Ok(())
    }
    fn type_name(&self) -> String {
        format!(
            "Bottleneck({}→{})",
            self.conv1.weight.shape()[1],
            self.conv3.weight.shape()[0]
        )
    }
}

/// The CIFAR ResNets' parameter-free shortcut ("option A"): take every other pixel and pad the
/// new channels with zeros.
#[derive(Module)]
pub struct ZeroPadShortcut {
    stride: usize,
    extra: usize,
}

impl Module for ZeroPadShortcut {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.avg_pool2d(PoolParams::new(1).stride(self.stride), true)?;
        let s = y.shape();
        let half = self.extra / 2;
        let zeros = |c: usize| Tensor::zeros(&[s[0], c, s[2], s[3]]);
        let (lo, hi) = (zeros(half), zeros(self.extra - half));
        Ok(Tensor::concat(&[&lo, &y, &hi], 1)?)
    }
    fn type_name(&self) -> String {
        format!("ZeroPadShortcut(+{} channels)", self.extra)
    }
}

/// ResNet-20/32/44/56/110 for 32×32 images (He et al., 2015, section 4.2): a 3×3 convolution
/// with 16 filters, then three stages of n basic blocks with 16, 32 and 64 filters (6n + 2
/// layers), zero-padding shortcuts, global average pooling and `fc`.
pub fn resnet_cifar(name: &str, cfg: &ModelConfig) -> Result<Sequential> {
    let n = match name {
        "resnet20" => 3,
        "resnet32" => 5,
        "resnet44" => 7,
        "resnet56" => 9,
        "resnet110" => 18,
        other => {
            return Err(NnError::Config {
                layer: "resnet".into(),
                msg: format!("unknown CIFAR ResNet variant `{other}`"),
            })
        }
    };
    let mut rng = Rng::new(cfg.seed);
    let mut net = Sequential::new()
        .push("conv1", conv(cfg.in_shape[0], 16, 3, 1, &mut rng)?)
        .push("bn1", BatchNorm::new(16))
        .push("relu", ReLU);
    let mut c = 16;
    for stage in 0..3 {
        let width = 16 << stage;
        let mut seq = Sequential::new();
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let downsample = (stride != 1 || c != width).then(|| {
                Sequential::new().add(ZeroPadShortcut {
                    stride,
                    extra: width - c,
                })
            });
            seq = seq.add(BasicBlock {
                conv1: conv(c, width, 3, stride, &mut rng)?,
                bn1: Norm::BATCH.layer(width),
                conv2: conv(width, width, 3, 1, &mut rng)?,
                bn2: Norm::BATCH.layer(width),
                downsample,
                fused: false,
            });
            c = width;
        }
        net = net.push(&format!("layer{}", stage + 1), seq);
    }
    Ok(net
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("fc", Linear::new(c, cfg.num_classes, true, &mut rng)?))
}

fn downsample(
    c: usize,
    o: usize,
    stride: usize,
    norm: Norm,
    rng: &mut Rng,
) -> Result<Option<Sequential>> {
    if stride == 1 && c == o {
        return Ok(None);
    }
    let mut seq = Sequential::new().add(conv(c, o, 1, stride, rng)?);
    seq.push_boxed("1", norm.layer(o));
    Ok(Some(seq))
}

/// ResNet-18/34/50/101/152.
pub fn resnet(name: &str, cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let (net, c) = resnet_stages(name, cfg.in_shape[0], Norm::BATCH, &mut rng)?;
    Ok(net
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("fc", Linear::new(c, cfg.num_classes, true, &mut rng)?))
}

/// The ResNet without its pooling and `fc`, with the given normalization: the stem (`conv1`,
/// `bn1`, `relu`, `maxpool`) and stages `layer1`…`layer4`, keys as torchvision's, so a detector
/// reads each stage's output (`IntermediateLayerGetter`). Returns it with its output channels.
pub fn resnet_body(
    name: &str,
    in_channels: usize,
    norm: Norm,
    seed: u64,
) -> Result<(Sequential, usize)> {
    resnet_stages(name, in_channels, norm, &mut Rng::new(seed))
}

fn resnet_stages(
    name: &str,
    in_channels: usize,
    norm: Norm,
    rng: &mut Rng,
) -> Result<(Sequential, usize)> {
    let (bottleneck, layers): (bool, [usize; 4]) = match name {
        "resnet18" => (false, [2, 2, 2, 2]),
        "resnet34" => (false, [3, 4, 6, 3]),
        "resnet50" => (true, [3, 4, 6, 3]),
        "resnet101" => (true, [3, 4, 23, 3]),
        "resnet152" => (true, [3, 8, 36, 3]),
        other => {
            return Err(NnError::Config {
                layer: "resnet".into(),
                msg: format!("unknown ResNet variant `{other}`"),
            })
        }
    };
    let expansion = if bottleneck { 4 } else { 1 };
    let mut net = Sequential::new().push(
        "conv1",
        Conv2d::new(
            in_channels,
            64,
            7,
            ConvParams::default().stride(2).padding(3),
            false,
            rng,
        )?,
    );
    net.push_boxed("bn1", norm.layer(64));
    let mut net = net.push("relu", ReLU).push(
        "maxpool",
        MaxPool2d(PoolParams::new(3).stride(2).padding(1)),
    );
    let mut c = 64;
    for (stage, &blocks) in layers.iter().enumerate() {
        let width = 64 << stage;
        let mut seq = Sequential::new();
        for b in 0..blocks {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let o = width * expansion;
            if bottleneck {
                seq = seq.add(Bottleneck {
                    conv1: conv(c, width, 1, 1, rng)?,
                    bn1: norm.layer(width),
                    conv2: conv(width, width, 3, stride, rng)?,
                    bn2: norm.layer(width),
                    conv3: conv(width, o, 1, 1, rng)?,
                    bn3: norm.layer(o),
                    downsample: downsample(c, o, stride, norm, rng)?,
                    fused: false,
                });
            } else {
                seq = seq.add(BasicBlock {
                    conv1: conv(c, width, 3, stride, rng)?,
                    bn1: norm.layer(width),
                    conv2: conv(width, width, 3, 1, rng)?,
                    bn2: norm.layer(width),
                    downsample: downsample(c, o, stride, norm, rng)?,
                    fused: false,
                });
            }
            c = o;
        }
        net = net.push(&format!("layer{}", stage + 1), seq);
    }
    Ok((net, c))
}
