//! `aics features`: the feature maps of one layer for one image, as a grid of grayscale tiles
//! (each channel stretched to its own range).

use std::path::PathBuf;

use aics_data::ColorMode;
use aics_nn::Module;
use aics_tensor::{no_grad, Tensor};
use aics_vision::imagenet;
use anyhow::{bail, Context, Result};

use crate::visual::{write_grid, zoo_model};

#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {
    #[arg(long, default_value = "mobilenet_v2")]
    pub model: String,
    /// Weights file (.pth or .safetensors); default: the model's random initialisation.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Layer path as in the state-dict keys (e.g. features.3, layer1.0, conv1).
    #[arg(long)]
    pub layer: String,
    pub image: PathBuf,
    #[arg(long, default_value = "features.png")]
    pub out: PathBuf,
    /// At most this many channels.
    #[arg(long, default_value_t = 64)]
    pub max: usize,
}

pub fn run(a: FeaturesArgs) -> Result<()> {
    let (model, in_shape) = zoo_model(&a.model, a.weights.as_deref())?;
    model.set_training(false);
    let _g = no_grad();
    let [c, h, w] = in_shape;
    let x = if c == 3 && h == 224 && w == 224 {
        imagenet::preprocess(&a.image, 256, 224)?
    } else {
        let mode = if c == 1 {
            ColorMode::Gray
        } else {
            ColorMode::Rgb
        };
        let img = aics_data::load_image(&a.image, h, w, mode)
            .with_context(|| format!("cannot read image {}", a.image.display()))?;
        Tensor::from_vec(img, &[1, c, h, w])?
    };
    let (_, captured) = aics_nn::inspect::capture(&model, &x, &a.layer)?;
    let Some(f) = captured else {
        bail!("{}: no layer `{}` (use a path from the state-dict keys, e.g. `aics summary --model {}`)", a.model, a.layer, a.model);
    };
    let s = f.shape().to_vec();
    if s.len() != 4 {
        bail!(
            "{}: layer `{}` gives shape {:?}, not feature maps (N, C, H, W)",
            a.model,
            a.layer,
            s
        );
    }
    let (ch, fh, fw) = (s[1].min(a.max.max(1)), s[2], s[3]);
    let data = f.to_vec();
    let tiles: Vec<&[f32]> = (0..ch)
        .map(|k| &data[k * fh * fw..(k + 1) * fh * fw])
        .collect();
    write_grid(&a.out, &tiles, 1, fh, fw, (64 / fw.max(1)).max(1))?;
    println!(
        "{} {}: {} of {} channels, {}x{} → {}",
        a.model,
        a.layer,
        ch,
        s[1],
        fh,
        fw,
        a.out.display()
    );
    Ok(())
}
