//! ImageNet inference helpers: the 1000 class names and torchvision's evaluation preprocessing
//! (resize the shorter side to 256 with an antialiasing bilinear filter, center-crop 224, scale
//! to [0, 1], normalise with the ImageNet mean and std), pixel-exact with torchvision's PIL path
//! for PNG input.

use std::path::Path;

use aics_nn::{NnError, Result};
use aics_tensor::Tensor;
use image::{DynamicImage, ImageBuffer, Pixel, RgbImage};

use crate::resize::resize_bilinear_antialias;

/// ImageNet-1k class names in class-index order.
pub fn class_names() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Convert a decoded image to 8-bit RGB like Pillow's `Image.open(p).convert('RGB')`
/// (torchvision's default loader): gray is replicated, alpha is dropped (not composited), and
/// 16-bit samples keep their high byte, as Pillow's 16-bit RGB(A) and gray+alpha PNG paths do
/// (`image`'s own `to_rgb8` rounds `v / 257` instead, which is one level higher for some values).
///
/// One deliberate difference: Pillow 9.4 opens a 16-bit grayscale PNG as mode `I` and
/// `convert('RGB')` then clips the raw 16-bit values to 0..=255 (a nearly white image); here it
/// keeps the high byte like every other 16-bit input.
pub fn to_rgb8_like_pil(img: &DynamicImage) -> RgbImage {
    fn high_bytes<P: Pixel<Subpixel = u16>>(b: &ImageBuffer<P, Vec<u16>>) -> RgbImage {
        let (w, h) = b.dimensions();
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for p in b.pixels() {
            let c = p.channels();
            let rgb = if c.len() < 3 {
                [c[0]; 3]
            } else {
                [c[0], c[1], c[2]]
            };
            out.extend(rgb.map(|v| (v >> 8) as u8));
        }
        RgbImage::from_raw(w, h, out).expect("w * h * 3 samples")
    }
    match img {
        DynamicImage::ImageLuma16(b) => high_bytes(b),
        DynamicImage::ImageLumaA16(b) => high_bytes(b),
        DynamicImage::ImageRgb16(b) => high_bytes(b),
        DynamicImage::ImageRgba16(b) => high_bytes(b),
        other => other.to_rgb8(),
    }
}

/// torchvision's `Resize(size)` output size `(width, height)` for an int `size`: the shorter side
/// becomes `size`, the longer one `int(size * long / short)` (truncated).
pub fn resized_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    let scaled = |long: u32, short: u32| (size as u64 * long as u64 / short.max(1) as u64) as u32;
    if w <= h {
        (size, scaled(h, w))
    } else {
        (scaled(w, h), size)
    }
}

/// torchvision's `CenterCrop` offset along one axis: `int(round((len - crop) / 2.0))` with
/// Python's `round`, which sends halves to the even neighbour (`round(58.5) == 58`). 0 when
/// `crop >= len` (torchvision pads there instead; [`preprocess`] reports an error).
pub fn center_crop_offset(len: u32, crop: u32) -> u32 {
    (len.saturating_sub(crop) as f64 / 2.0).round_ties_even() as u32
}

/// Read an image file and preprocess it like torchvision's `Resize(resize)`,
/// `CenterCrop(crop)`, `ToTensor()`, `Normalize(MEAN, STD)` on an image loaded with
/// `Image.open(path).convert('RGB')`: a (1, 3, crop, crop) tensor.
///
/// The format is sniffed from the file's contents (as Pillow does), falling back to the
/// extension. Conversion to RGB is [`to_rgb8_like_pil`], the resize is Pillow's antialiased
/// bilinear filter ([`resize_bilinear_antialias`], byte-exact), and the crop offsets round like
/// Python. PNG input therefore gives torchvision's tensor exactly; JPEG input can differ by a
/// few levels per pixel because the `image` crate's decoder is not libjpeg's (IDCT and chroma
/// upsampling).
pub fn preprocess(path: &Path, resize: u32, crop: u32) -> Result<Tensor> {
    let bad = |msg: String| NnError::Config {
        layer: path.display().to_string(),
        msg,
    };
    let decoded = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| bad(format!("cannot read image: {e}")))?
        .decode()
        .map_err(|e| bad(format!("cannot read image: {e}")))?;
    let img = to_rgb8_like_pil(&decoded);
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(bad("empty image".into()));
    }
    // shorter side → resize, the other scaled and truncated, as torchvision does
    let (nw, nh) = resized_size(w, h, resize);
    if nw < crop || nh < crop {
        return Err(bad(format!(
            "resized to {nw}x{nh}, smaller than the {crop}x{crop} crop"
        )));
    }
    let img = resize_bilinear_antialias(&img, nw, nh);
    let top = center_crop_offset(nh, crop);
    let left = center_crop_offset(nw, crop);
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
