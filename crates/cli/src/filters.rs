//! `aics filters`: draw a convolution layer's filters as an image grid (first-layer filters of
//! a trained network show the oriented edges and colour blobs the chapter talks about).

use std::path::PathBuf;

use aics_nn::state_dict;
use anyhow::{bail, Result};

use crate::visual::{write_grid, zoo_model};

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
    let (model, _) = zoo_model(&a.model, a.weights.as_deref())?;
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
    // RGB filters as colour tiles, others by their first input channel
    let shown = if c == 3 { 3 } else { 1 };
    let tiles: Vec<&[f32]> = (0..o)
        .map(|f| &data[f * c * kh * kw..f * c * kh * kw + shown * kh * kw])
        .collect();
    write_grid(&a.out, &tiles, shown, kh, kw, a.scale as usize)?;
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
