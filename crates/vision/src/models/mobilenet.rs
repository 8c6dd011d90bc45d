//! MobileNetV2 (Sandler et al., 2018) as torchvision defines it: a 3×3/2 stem, seventeen
//! inverted-residual blocks (1×1 expand → 3×3 depthwise → 1×1 linear projection, with a
//! residual connection when the shape is kept), a 1×1 conv to 1280 channels, global average
//! pooling and `classifier` (dropout 0.2, linear). Keys `features.N.conv.M.*`, `classifier.1.*`.

use aics_nn::fuse::passes_input_on;
use aics_nn::layers::{AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, ReLU6};
use aics_nn::{Fields, Module, Result, Sequential};
use aics_tensor::{Activation, ConvParams, Rng, Tensor};

use super::{ModelConfig, Norm};

/// Conv (no bias) → BatchNorm → ReLU6, torchvision's `Conv2dNormActivation`.
fn conv_bn_relu6(
    c: usize,
    o: usize,
    k: usize,
    stride: usize,
    groups: usize,
    norm: Norm,
    rng: &mut Rng,
) -> Result<Sequential> {
    let p = ConvParams::default()
        .stride(stride)
        .padding((k - 1) / 2)
        .groups(groups);
    let mut s = Sequential::new().add(Conv2d::new(c, o, k, p, false, rng)?);
    s.push_boxed("1", norm.layer(o));
    Ok(s.add(ReLU6))
}

#[derive(Module)]
pub struct InvertedResidual {
    #[module]
    conv: Sequential,
    residual: bool,
    /// The inference path: the layer index of the projection convolution that adds the
    /// block's input in its output pass (every layer after it passes its input on).
    fused_residual: Option<usize>,
}

impl InvertedResidual {
    fn new(
        c: usize,
        o: usize,
        stride: usize,
        expand: usize,
        norm: Norm,
        rng: &mut Rng,
    ) -> Result<Self> {
        let hidden = c * expand;
        let mut conv = Sequential::new();
        if expand != 1 {
            conv = conv.add(conv_bn_relu6(c, hidden, 1, 1, 1, norm, rng)?);
        }
        conv = conv
            .add(conv_bn_relu6(hidden, hidden, 3, stride, hidden, norm, rng)?)
            .add(Conv2d::new(
                hidden,
                o,
                1,
                ConvParams::default(),
                false,
                rng,
            )?);
        let n = conv.len().to_string();
        conv.push_boxed(&n, norm.layer(o));
        Ok(InvertedResidual {
            conv,
            residual: stride == 1 && c == o,
            fused_residual: None,
        })
    }
}

impl Module for InvertedResidual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(last) = self.fused_residual {
            let mut h = x.clone();
            for (i, (_, l)) in self.conv.layers().enumerate().take(last + 1) {
                h = match l.as_any().and_then(|a| a.downcast_ref::<Conv2d>()) {
                    Some(c) if i == last => c.forward_residual(&h, x, Activation::Identity)?,
                    _ => l.forward(&h)?,
                };
            }
            return Ok(h);
        }
        let y = self.conv.forward(x)?;
        if self.residual {
            Ok(x.add(&y)?)
        } else {
            Ok(y)
        }
    }
    fn prepare_inference(&mut self) -> Result<()> {
        self.prepare_inference_fields()?;
        if self.residual && self.fused_residual.is_none() {
            // the last convolution, if only layers that pass their input on follow it
            let layers: Vec<&dyn Module> = self.conv.layers().map(|(_, l)| l).collect();
            let last = layers
                .iter()
                .rposition(|l| l.as_any().is_some_and(|a| a.is::<Conv2d>()));
            if let Some(i) = last {
                let conv = layers[i].as_any().and_then(|a| a.downcast_ref::<Conv2d>());
                if conv.is_some_and(|c| c.act == Activation::Identity)
                    && layers[i + 1..].iter().all(|l| passes_input_on(*l))
                {
                    self.fused_residual = Some(i);
                }
            }
        }
        Ok(())
    }
    fn type_name(&self) -> String {
        format!(
            "InvertedResidual{}",
            if self.residual { " (+x)" } else { "" }
        )
    }
}

/// (expansion t, channels c, repeats n, first stride s), from the paper's Table 2.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// MobileNetV2's `features` (keys `N.*`), its first `layers` of 19: the stem, the seventeen
/// blocks and the 1×1 conv to 1280 channels. The first 14 end at stride 16 with 96 channels,
/// the first 7 at stride 8 with 32. Returns them with the channels of the last.
pub fn mobilenet_v2_features(
    in_channels: usize,
    layers: usize,
    norm: Norm,
    rng: &mut Rng,
) -> Result<(Sequential, usize)> {
    let mut features = Sequential::new().add(conv_bn_relu6(in_channels, 32, 3, 2, 1, norm, rng)?);
    let mut c = 32;
    for (t, o, n, s) in SETTING {
        for i in 0..n {
            if features.len() == layers {
                return Ok((features, c));
            }
            features = features.add(InvertedResidual::new(
                c,
                o,
                if i == 0 { s } else { 1 },
                t,
                norm,
                rng,
            )?);
            c = o;
        }
    }
    if features.len() == layers {
        return Ok((features, c));
    }
    Ok((
        features.add(conv_bn_relu6(c, 1280, 1, 1, 1, norm, rng)?),
        1280,
    ))
}

pub fn mobilenet_v2(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let (features, _) = mobilenet_v2_features(cfg.in_shape[0], 19, Norm::BATCH, &mut rng)?;
    let classifier = Sequential::new()
        .add(Dropout::new(0.2, cfg.seed ^ 1)?)
        .add(Linear::new(1280, cfg.num_classes, true, &mut rng)?);
    Ok(Sequential::new()
        .push("features", features)
        .push("avgpool", AdaptiveAvgPool2d(1, 1))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}
