//! AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as torchvision defines it: five convolutions
//! (11×11 stride 4, then 5×5 and three 3×3) with overlapping 3×3/2 max pooling, an adaptive 6×6
//! average pool, and a three-layer classifier with dropout. Keys `features.N.*`, `classifier.N.*`.

use aics_nn::layers::{AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};
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
