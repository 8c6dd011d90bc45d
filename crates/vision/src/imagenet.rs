//! ImageNet inference helpers: the 1000 class names and torchvision's evaluation preprocessing
//! (resize the shorter side to 256 with an antialiasing bilinear filter, center-crop 224, scale
//! to [0, 1], normalise with the ImageNet mean and std).

use std::path::Path;

use aics_nn::{NnError, Result};
use aics_tensor::Tensor;

/// ImageNet-1k class names in class-index order.
pub fn class_names() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Read an image file and preprocess it like torchvision's `Resize(resize)`,
/// `CenterCrop(crop)`, `ToTensor()`, `Normalize(MEAN, STD)`: a (1, 3, crop, crop) tensor.
pub fn preprocess(path: &Path, resize: u32, crop: u32) -> Result<Tensor> {
    let bad = |msg: String| NnError::Config {
        layer: path.display().to_string(),
        msg,
    };
    let img = image::open(path)
        .map_err(|e| bad(format!("cannot read image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(bad("empty image".into()));
    }
    // shorter side → resize, the other scaled and truncated, as torchvision does
    let (nw, nh) = if w <= h {
        (resize, (resize as u64 * h as u64 / w as u64) as u32)
    } else {
        ((resize as u64 * w as u64 / h as u64) as u32, resize)
    };
    let img = image::imageops::resize(
        &img,
        nw.max(1),
        nh.max(1),
        image::imageops::FilterType::Triangle,
    );
    if nw < crop || nh < crop {
        return Err(bad(format!(
            "resized to {nw}x{nh}, smaller than the {crop}x{crop} crop"
        )));
    }
    let top = ((nh - crop) as f64 / 2.0).round() as u32;
    let left = ((nw - crop) as f64 / 2.0).round() as u32;
    let n = (crop * crop) as usize;
    let mut data = vec![0f32; 3 * n];
    for y in 0..crop {
        for x in 0..crop {
            let p = img.get_pixel(left + x, top + y);
            for c in 0..3 {
                data[c * n + (y * crop + x) as usize] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        &[1, 3, crop as usize, crop as usize],
    )?)
}

/// Map an ImageNet-normalised (N, 3, H, W) batch to `x·0.5 + 0.5`-normalised pixels, i.e. the
/// [-1, 1] range torchvision's GoogLeNet and Inception-v3 weights expect (its
/// `transform_input`): per channel `x·std/0.5 + (mean − 0.5)/0.5`.
pub fn to_unit_range(x: &Tensor) -> Result<Tensor> {
    let scale: Vec<f32> = STD.iter().map(|s| s / 0.5).collect();
    let shift: Vec<f32> = MEAN.iter().map(|m| (m - 0.5) / 0.5).collect();
    let s = Tensor::from_vec(scale, &[1, 3, 1, 1])?;
    let t = Tensor::from_vec(shift, &[1, 3, 1, 1])?;
    Ok(x.mul(&s)?.add(&t)?)
}
