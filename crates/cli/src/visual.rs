//! Shared pieces of the picture commands (`features`, `filters`): building a zoo model with
//! optional published weights, and writing tiles as a PNG grid.

use std::path::Path;

use aics_nn::Module;
use aics_vision::{build, default_shape, ModelConfig};
use anyhow::{Context, Result};

/// A zoo model at its usual input size, with weights loaded when given.
pub fn zoo_model(name: &str, weights: Option<&Path>) -> Result<(Box<dyn Module>, [usize; 3])> {
    let (in_shape, classes) = default_shape(name);
    let model = build(
        name,
        &ModelConfig {
            in_shape,
            num_classes: classes,
            hidden: vec![],
            seed: 0,
        },
    )?;
    if let Some(w) = weights {
        aics_vision::weights::load_weights(&model, w)?;
    }
    Ok((model, in_shape))
}

/// Write `tiles` (each `c`×`h`×`w`, `c` = 1 for gray or 3 for RGB) as a near-square grid, every
/// tile stretched to its own value range, `scale` pixels per value and a 1-pixel white border.
pub fn write_grid(
    path: &Path,
    tiles: &[&[f32]],
    c: usize,
    h: usize,
    w: usize,
    scale: usize,
) -> Result<()> {
    let n = tiles.len().max(1);
    let sc = scale.max(1);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (tw, th) = (w * sc + 2, h * sc + 2);
    let mut img = image::RgbImage::from_pixel(
        (cols * tw) as u32,
        (rows * th) as u32,
        image::Rgb([255, 255, 255]),
    );
    for (k, t) in tiles.iter().enumerate() {
        let (lo, hi) = t
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = (hi - lo).max(1e-12);
        let (x0, y0) = ((k % cols) * tw + 1, (k / cols) * th + 1);
        for y in 0..h * sc {
            for x in 0..w * sc {
                let at =
                    |ch: usize| (((t[(ch * h + y / sc) * w + x / sc] - lo) / span) * 255.0) as u8;
                let px = if c == 3 {
                    [at(0), at(1), at(2)]
                } else {
                    [at(0); 3]
                };
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(px));
            }
        }
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}
