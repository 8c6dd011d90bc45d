//! Images in and out of style transfer: read any PNG/JPEG as RGB, scale so the longest side has
//! a given length (aspect ratio kept; Pillow's antialiased bilinear filter), convert to and from
//! (1, 3, H, W) tensors in [0, 1], write PNG atomically, and keep the photo's colours by
//! transferring only luminance.

use std::path::Path;

use aics_nn::{NnError, Result};
use aics_tensor::Tensor;
use image::RgbImage;

fn bad(path: &Path, msg: String) -> NnError {
    NnError::Config {
        layer: path.display().to_string(),
        msg,
    }
}

/// Read an image file as RGB.
pub fn read(path: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(path)
        .map_err(|e| bad(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| bad(path, format!("cannot read image: {e}")))?;
    let rgb = aics_vision::imagenet::to_rgb8_like_pil(&img);
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(bad(path, "empty image".into()));
    }
    Ok(rgb)
}

/// The size with the longest side `longest` and the same aspect ratio (each side ≥ 1).
pub fn fit(w: u32, h: u32, longest: u32) -> (u32, u32) {
    if w >= h {
        let nh = ((h as f64 * longest as f64 / w as f64).round() as u32).max(1);
        (longest, nh)
    } else {
        let nw = ((w as f64 * longest as f64 / h as f64).round() as u32).max(1);
        (nw, longest)
    }
}

/// Resize to exactly `w × h`.
pub fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    aics_vision::resize::resize_bilinear_antialias(img, w, h)
}

/// (1, 3, H, W) in [0, 1].
pub fn to_tensor(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut data = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    Tensor::from_vec(data, &[1, 3, h as usize, w as usize]).expect("3·H·W values")
}

/// A (1, 3, H, W) tensor → RGB image, clamped to [0, 1] and rounded.
pub fn to_image(t: &Tensor) -> Result<RgbImage> {
    let s = t.shape().to_vec();
    if s.len() != 4 || s[0] != 1 || s[1] != 3 {
        return Err(NnError::Config {
            layer: "image".into(),
            msg: format!("expected (1, 3, H, W), got {s:?}"),
        });
    }
    let (h, w) = (s[2], s[3]);
    let d = t.to_vec();
    let n = h * w;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb([0, 1, 2].map(|c| (d[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8))
    }))
}

/// Write a PNG through a temporary file and a rename, so a reader never sees half an image.
pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let tmp = path.with_extension("png.part");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| bad(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| NnError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Keep the colours of `photo`: the result's luminance (Y of YIQ) with the photo's chroma (I,
/// Q), both RGB images of the same size (Gatys et al., "Preserving color in neural artistic
/// style transfer", 2016).
pub fn transfer_luminance(styled: &RgbImage, photo: &RgbImage) -> RgbImage {
    let y = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(|v| v as f32);
        0.299 * r + 0.587 * g + 0.114 * b
    };
    let iq = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(|v| v as f32);
        (
            0.596 * r - 0.274 * g - 0.322 * b,
            0.211 * r - 0.523 * g + 0.312 * b,
        )
    };
    RgbImage::from_fn(styled.width(), styled.height(), |x, yy| {
        let luma = y(styled.get_pixel(x, yy));
        let (i, q) = iq(photo.get_pixel(x, yy));
        let r = luma + 0.956 * i + 0.621 * q;
        let g = luma - 0.272 * i - 0.647 * q;
        let b = luma - 1.106 * i + 1.703 * q;
        image::Rgb([r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}
