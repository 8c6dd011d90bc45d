//! LeNet-5 (LeCun et al., 1998) in its common modern form: 5×5 convolutions with ReLU and 2×2
//! max pooling. conv1 pads by 2 so that 28×28 inputs give the paper's 32×32 geometry.
//!
//! ```text
//! conv1 (C→6, 5×5, pad 2) → ReLU → maxpool 2 → conv2 (6→16, 5×5) → ReLU → maxpool 2
//! → flatten (16·5·5 on 28×28) → fc1 (→120) → ReLU → fc2 (→84) → ReLU → fc3 (→classes)
//! ```

use aics_nn::layers::{Conv2d, Flatten, Linear, MaxPool2d, ReLU};
use aics_nn::{NnError, Result, Sequential};
use aics_tensor::{ConvParams, Rng};

use super::ModelConfig;

pub fn lenet5(cfg: &ModelConfig) -> Result<Sequential> {
    let [c, h, w] = cfg.in_shape;
    // spatial size after conv1 (same), pool, conv2 (-4), pool
    let side = |s: usize| (s / 2).checked_sub(4).map(|v| v / 2).filter(|&v| v > 0);
    let (Some(fh), Some(fw)) = (side(h), side(w)) else {
        return Err(NnError::Config {
            layer: "lenet5".into(),
            msg: format!(
                "input {:?} is too small (need at least 10×10)",
                cfg.in_shape
            ),
        });
    };
    let mut rng = Rng::new(cfg.seed);
    let p = ConvParams::default();
    Ok(Sequential::new()
        .push("conv1", Conv2d::new(c, 6, 5, p.padding(2), true, &mut rng)?)
        .push("relu1", ReLU)
        .push("pool1", MaxPool2d::new(2, 2))
        .push("conv2", Conv2d::new(6, 16, 5, p, true, &mut rng)?)
        .push("relu2", ReLU)
        .push("pool2", MaxPool2d::new(2, 2))
        .push("flatten", Flatten(1))
        .push("fc1", Linear::new(16 * fh * fw, 120, true, &mut rng)?)
        .push("relu3", ReLU)
        .push("fc2", Linear::new(120, 84, true, &mut rng)?)
        .push("relu4", ReLU)
        .push("fc3", Linear::new(84, cfg.num_classes, true, &mut rng)?))
}
