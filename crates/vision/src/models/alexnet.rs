//! AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in two variants. Both have five convolutions
//! (11×11 stride 4, then 5×5 and three 3×3) with overlapping 3×3/2 max pooling and a three-layer
//! classifier with dropout; keys `features.N.*`, `classifier.N.*`.
//!
//! * `alexnet`: torchvision's single-tower version (64/192/384/256/256 filters, no LRN, adaptive
//!   6×6 average pool, dropout before the first two fully connected layers).
//! * `alexnet_paper`: the paper's network for 227×227 inputs (96/256/384/384/256 filters), local
//!   response normalisation (size 5, α 1e-4, β 0.75, k 2) after the first two ReLUs, and the
//!   two-GPU split kept as grouped convolutions (conv2, conv4, conv5 see only their own half of
//!   the channels), dropout after fc6 and fc7: 60,965,224 parameters, like Caffe's BVLC AlexNet.

use aics_nn::layers::{
    AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, ReLU,
};
use aics_nn::{Result, Sequential};
use aics_tensor::{ConvParams, Rng};

use super::ModelConfig;

pub fn alexnet(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let c = cfg.in_shape[0];
    let p = ConvParams::default();
    let features = Sequential::new()
        .add(Conv2d::new(
            c,
            64,
            11,
            p.stride(4).padding(2),
            true,
            &mut rng,
        )?)
        .add(ReLU)
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(64, 192, 5, p.padding(2), true, &mut rng)?)
        .add(ReLU)
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(192, 384, 3, p.padding(1), true, &mut rng)?)
        .add(ReLU)
        .add(Conv2d::new(384, 256, 3, p.padding(1), true, &mut rng)?)
        .add(ReLU)
        .add(Conv2d::new(256, 256, 3, p.padding(1), true, &mut rng)?)
        .add(ReLU)
        .add(MaxPool2d::new(3, 2));
    let classifier = Sequential::new()
        .add(Dropout::new(0.5, cfg.seed ^ 1)?)
        .add(Linear::new(256 * 6 * 6, 4096, true, &mut rng)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 2)?)
        .add(Linear::new(4096, 4096, true, &mut rng)?)
        .add(ReLU)
        .add(Linear::new(4096, cfg.num_classes, true, &mut rng)?);
    Ok(Sequential::new()
        .push("features", features)
        .push("avgpool", AdaptiveAvgPool2d(6, 6))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}

pub fn alexnet_paper(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let c = cfg.in_shape[0];
    let p = ConvParams::default();
    let features = Sequential::new()
        .add(Conv2d::new(c, 96, 11, p.stride(4), true, r)?)
        .add(ReLU)
        .add(LocalResponseNorm::alexnet())
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(96, 256, 5, p.padding(2).groups(2), true, r)?)
        .add(ReLU)
        .add(LocalResponseNorm::alexnet())
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(256, 384, 3, p.padding(1), true, r)?)
        .add(ReLU)
        .add(Conv2d::new(384, 384, 3, p.padding(1).groups(2), true, r)?)
        .add(ReLU)
        .add(Conv2d::new(384, 256, 3, p.padding(1).groups(2), true, r)?)
        .add(ReLU)
        .add(MaxPool2d::new(3, 2));
    let classifier = Sequential::new()
        .add(Linear::new(256 * 6 * 6, 4096, true, r)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 1)?)
        .add(Linear::new(4096, 4096, true, r)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 2)?)
        .add(Linear::new(4096, cfg.num_classes, true, r)?);
    Ok(Sequential::new()
        .push("features", features)
        .push("avgpool", AdaptiveAvgPool2d(6, 6))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}

/// AlexNet's design for 28×28 to 32×32 images, to train on a CPU: the paper's layer pattern (5×5,
/// LRN, overlapping pools, three 3×3s, dropout in the classifier) with a stride-1 first
/// convolution and narrower layers (48/128/192/192/128 filters, 1024-wide classifier).
pub fn alexnet_small(cfg: &ModelConfig) -> Result<Sequential> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let p = ConvParams::default();
    let features = Sequential::new()
        .add(Conv2d::new(cfg.in_shape[0], 48, 5, p.padding(2), true, r)?)
        .add(ReLU)
        .add(LocalResponseNorm::alexnet())
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(48, 128, 5, p.padding(2), true, r)?)
        .add(ReLU)
        .add(LocalResponseNorm::alexnet())
        .add(MaxPool2d::new(3, 2))
        .add(Conv2d::new(128, 192, 3, p.padding(1), true, r)?)
        .add(ReLU)
        .add(Conv2d::new(192, 192, 3, p.padding(1), true, r)?)
        .add(ReLU)
        .add(Conv2d::new(192, 128, 3, p.padding(1), true, r)?)
        .add(ReLU)
        .add(MaxPool2d::new(3, 2));
    let classifier = Sequential::new()
        .add(Dropout::new(0.5, cfg.seed ^ 1)?)
        .add(Linear::new(128 * 3 * 3, 1024, true, r)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 2)?)
        .add(Linear::new(1024, 1024, true, r)?)
        .add(ReLU)
        .add(Linear::new(1024, cfg.num_classes, true, r)?);
    Ok(Sequential::new()
        .push("features", features)
        .push("avgpool", AdaptiveAvgPool2d(3, 3))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}
