//! `aics features`: the feature maps of one layer for one image, as a grid of grayscale tiles
//! (each channel stretched to its own range).

use std::path::PathBuf;

use aics_data::ColorMode;
use aics_nn::Module;
use aics_tensor::{no_grad, Tensor};
use aics_vision::{build, default_shape, imagenet, ModelConfig};
use anyhow::{bail, Context, Result};

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
    let (in_shape, classes) = default_shape(&a.model);
    let model = build(
        &a.model,
        &ModelConfig {
            in_shape,
            num_classes: classes,
            hidden: vec![],
            seed: 0,
        },
    )?;
    if let Some(w) = &a.weights {
        aics_vision::weights::load_weights(&model, w)?;
    }
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
    let (_, captured) = model.forward_capture(&x, &a.layer)?;
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
    let sc = (64 / fw.max(1)).max(1);
    let cols = (ch as f64).sqrt().ceil() as usize;
    let rows = ch.div_ceil(cols);
    let (tw, th) = (fw * sc + 2, fh * sc + 2);
    let mut img =
        image::GrayImage::from_pixel((cols * tw) as u32, (rows * th) as u32, image::Luma([255]));
    for k in 0..ch {
        let plane = &data[k * fh * fw..(k + 1) * fh * fw];
        let (lo, hi) = plane
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = (hi - lo).max(1e-12);
        let (x0, y0) = ((k % cols) * tw + 1, (k / cols) * th + 1);
        for y in 0..fh * sc {
            for x in 0..fw * sc {
                let v = ((plane[(y / sc) * fw + x / sc] - lo) / span * 255.0) as u8;
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Luma([v]));
            }
        }
    }
    img.save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
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
