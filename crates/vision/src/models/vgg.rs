//! VGG (Simonyan & Zisserman, 2014), table-driven as in torchvision: stacks of 3×3 convolutions
//! (numbers are output channels, `M` a 2×2 max pool), optionally with batch norm, then an
//! adaptive 7×7 average pool and a three-layer classifier. Keys `features.N.*`, `classifier.N.*`.

use aics_nn::layers::{
    AdaptiveAvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
};
use aics_nn::{NnError, Result, Sequential};
use aics_tensor::{ConvParams, Rng};

use super::ModelConfig;

/// A 2×2 max pool in a configuration table; every other entry is a 3×3 conv's output channels.
const M: usize = 0;
const A: &[usize] = &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
const B: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M,
];
const D: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
];
const E: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M,
];

/// `vgg11`, `vgg13`, `vgg16`, `vgg19`, each optionally with `_bn`.
pub fn vgg(name: &str, cfg: &ModelConfig) -> Result<Sequential> {
    let (depth, bn) = match name.strip_suffix("_bn") {
        Some(d) => (d, true),
        None => (name, false),
    };
    let table = match depth {
        "vgg11" => A,
        "vgg13" => B,
        "vgg16" => D,
        "vgg19" => E,
        other => {
            return Err(NnError::Config {
                layer: "vgg".into(),
                msg: format!("unknown VGG variant `{other}`"),
            })
        }
    };
    let mut rng = Rng::new(cfg.seed);
    let mut features = Sequential::new();
    let mut c = cfg.in_shape[0];
    for &o in table {
        if o == M {
            features = features.add(MaxPool2d::new(2, 2));
            continue;
        }
        features = features.add(Conv2d::new(
            c,
            o,
            3,
            ConvParams::default().padding(1),
            true,
            &mut rng,
        )?);
        if bn {
            features = features.add(BatchNorm::new(o));
        }
        features = features.add(ReLU);
        c = o;
    }
    let classifier = Sequential::new()
        .add(Linear::new(512 * 7 * 7, 4096, true, &mut rng)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 1)?)
        .add(Linear::new(4096, 4096, true, &mut rng)?)
        .add(ReLU)
        .add(Dropout::new(0.5, cfg.seed ^ 2)?)
        .add(Linear::new(4096, cfg.num_classes, true, &mut rng)?);
    Ok(Sequential::new()
        .push("features", features)
        .push("avgpool", AdaptiveAvgPool2d(7, 7))
        .push("flatten", Flatten(1))
        .push("classifier", classifier))
}
