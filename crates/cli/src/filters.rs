//! `aics filters`: draw a convolution layer's filters as an image grid (first-layer filters of
//! a trained network show the oriented edges and colour blobs the chapter talks about).

use std::path::PathBuf;

use aics_nn::state_dict;
use aics_vision::{build, default_shape, ModelConfig};
use anyhow::{bail, Context, Result};

#[derive(clap::Args, Debug)]
pub struct FiltersArgs {
    #[arg(long, default_value = "mobilenet_v2")]
    pub model: String,
    /// Weights file (.pth or .safetensors); default: the model's random initialisation.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Layer name as in the state dict, without `.weight` (e.g. conv1, features.0.0).
    #[arg(long)]
    pub layer: String,
    #[arg(long, default_value = "filters.png")]
    pub out: PathBuf,
    /// Pixels per filter tap.
    #[arg(long, default_value_t = 8)]
    pub scale: u32,
}

pub fn run(a: FiltersArgs) -> Result<()> {
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
    let key = format!("{}.weight", a.layer);
    let sd = state_dict(&model);
    let Some((_, w)) = sd.iter().find(|(k, _)| *k == key) else {
        let convs: Vec<&str> = sd
            .iter()
            .filter(|(_, t)| t.rank() == 4)
            .map(|(k, _)| k.trim_end_matches(".weight"))
            .take(8)
            .collect();
        bail!(
            "{}: no conv layer `{}` (conv layers include: {})",
            a.model,
            a.layer,
            convs.join(", ")
        );
    };
    let s = w.shape();
    if s.len() != 4 {
        bail!(
            "{}: layer `{}` has weight shape {:?}, not a convolution (O, C, KH, KW)",
            a.model,
            a.layer,
            s
        );
    }
    let (o, c, kh, kw) = (s[0], s[1], s[2], s[3]);
    let data = w.to_vec();
    let cols = (o as f64).sqrt().ceil() as usize;
    let rows = o.div_ceil(cols);
    let sc = a.scale.max(1) as usize;
    let (tw, th) = (kw * sc + 2, kh * sc + 2);
    let mut img = image::RgbImage::from_pixel(
        (cols * tw) as u32,
        (rows * th) as u32,
        image::Rgb([255, 255, 255]),
    );
    for f in 0..o {
        let taps = &data[f * c * kh * kw..(f + 1) * c * kh * kw];
        // each filter stretched to its own range, so its pattern is visible
        let (lo, hi) = taps
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = (hi - lo).max(1e-12);
        let (x0, y0) = ((f % cols) * tw + 1, (f / cols) * th + 1);
        for y in 0..kh * sc {
            for x in 0..kw * sc {
                let (ky, kx) = (y / sc, x / sc);
                let ch = |ci: usize| (((taps[(ci * kh + ky) * kw + kx] - lo) / span) * 255.0) as u8;
                let px = if c == 3 {
                    [ch(0), ch(1), ch(2)]
                } else {
                    [ch(0); 3]
                };
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(px));
            }
        }
    }
    img.save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "{}: {} filters of {}x{}x{} from {}.{} → {}",
        a.model,
        o,
        c,
        kh,
        kw,
        a.model,
        a.layer,
        a.out.display()
    );
    Ok(())
}
