//! Pixel parity of the ImageNet preprocessing with Pillow 9.4 / torchvision 0.14
//! (`fixtures/resize/`, written by `fixtures/resize/gen_resize.py`):
//!
//! 1. `resize_bilinear_antialias` against `Image.resize((w, h), Image.BILINEAR)`, byte for byte:
//!    downscales by integer and non-integer factors, an upscale, one-axis-only and mixed
//!    resizes, identity, 1x1;
//! 2. `preprocess(path, 256, 224)` against torchvision's `Resize(256), CenterCrop(224),
//!    ToTensor(), Normalize(MEAN, STD)` (the uint8 crop, the per-channel mean/std and sampled
//!    values of the tensor), plus crop offsets that tie at x.5;
//! 3. gray, gray+alpha, RGBA, palette, 16-bit RGB and 16-bit gray PNGs through `preprocess`
//!    against Pillow's `convert('RGB')` path, and JPEGs within a decoder tolerance.

use aics_tensor::testing::{assert_close, assert_close_one, Tol};
use std::path::PathBuf;

use aics_tensor::Tensor;
use aics_vision::imagenet::{
    center_crop_offset, preprocess, resized_size, to_rgb8_like_pil, MEAN, STD,
};
use aics_vision::resize::resize_bilinear_antialias;
use image::RgbImage;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/resize")
        .join(name)
}

fn load_rgb(name: &str) -> RgbImage {
    let img = image::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        matches!(img, image::DynamicImage::ImageRgb8(_)),
        "{name} is not 8-bit RGB"
    );
    img.to_rgb8()
}

/// Largest per-channel difference and the number of differing channel values.
fn diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0, 0), |(m, n), (&x, &y)| {
        let d = x.abs_diff(y);
        (m.max(d), n + usize::from(d != 0))
    })
}

/// What torchvision's `ToTensor(), Normalize(MEAN, STD)` gives for a uint8 crop, in float32 and
/// the same order of operations (checked bit-exact against torchvision by the generator).
fn normalise(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

/// The uint8 crop behind a preprocessed tensor (exact: `p / 255` in float32 is injective and
/// the inverse below rounds back to `p`).
fn unnormalise(t: &Tensor, crop: u32) -> RgbImage {
    assert_eq!(t.shape(), &[1, 3, crop as usize, crop as usize]);
    let v = t.to_vec();
    let n = (crop * crop) as usize;
    RgbImage::from_fn(crop, crop, |x, y| {
        let i = (y * crop + x) as usize;
        image::Rgb(std::array::from_fn(|c| {
            let p = ((v[c * n + i] * STD[c] + MEAN[c]) * 255.0).round();
            assert!((0.0..=255.0).contains(&p));
            p as u8
        }))
    })
}

/// `preprocess` against torchvision's uint8 crop: the tensor must be exactly the normalised
/// crop. Returns the max pixel difference (0 when the tensor is bit-identical).
fn check_preprocess(src: &std::path::Path, expected: &str, resize: u32, crop: u32) -> u8 {
    let t = preprocess(src, resize, crop).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let want = load_rgb(expected);
    let got = unnormalise(&t, crop);
    let (max, count) = diff(got.as_raw(), want.as_raw());
    eprintln!(
        "{} -> {expected}: max |diff| {max}, {count} values differ",
        src.display()
    );
    if max == 0 {
        assert_eq!(t.to_vec(), normalise(&want), "{expected}: tensor values");
    }
    max
}

#[test]
fn resize_matches_pillow_byte_for_byte() {
    let src = load_rgb("src97x61.png");
    for (w, h) in [
        (40, 25),   // downscale ~2.4x
        (13, 9),    // downscale ~7x
        (71, 44),   // non-integer factors 1.37 / 1.39
        (150, 100), // upscale
        (97, 30),   // height only
        (50, 61),   // width only
        (120, 40),  // width up, height down
        (1, 1),
        (7, 200),
    ] {
        let want = load_rgb(&format!("pil_{w}x{h}.png"));
        let got = resize_bilinear_antialias(&src, w, h);
        assert_eq!(got.dimensions(), (w, h));
        let (max, count) = diff(got.as_raw(), want.as_raw());
        eprintln!("97x61 -> {w}x{h}: max |diff| {max}, {count} values differ");
        assert_eq!(max, 0, "{w}x{h}: {count} channel values differ");
    }
    // same size: Pillow copies
    assert_eq!(resize_bilinear_antialias(&src, 97, 61), src);
}

#[test]
fn resize_edge_cases() {
    let src = load_rgb("src97x61.png");
    assert_eq!(resize_bilinear_antialias(&src, 0, 5).dimensions(), (0, 5));
    let empty = RgbImage::new(0, 0);
    let black = resize_bilinear_antialias(&empty, 3, 2);
    assert_eq!(black.dimensions(), (3, 2));
    assert!(black.as_raw().iter().all(|&v| v == 0));
    // a constant image stays constant at every scale (the weights are normalised)
    let flat = RgbImage::from_pixel(37, 23, image::Rgb([255, 0, 77]));
    for (w, h) in [(5, 3), (100, 90), (37, 1), (1, 23), (300, 2)] {
        let out = resize_bilinear_antialias(&flat, w, h);
        assert!(out.pixels().all(|p| p.0 == [255, 0, 77]), "{w}x{h}");
    }
}

#[test]
fn torchvision_sizes_and_offsets() {
    assert_eq!(resized_size(320, 240, 256), (341, 256));
    assert_eq!(resized_size(400, 300, 256), (341, 256));
    assert_eq!(resized_size(240, 320, 256), (256, 341));
    assert_eq!(resized_size(500, 375, 256), (341, 256));
    assert_eq!(resized_size(97, 61, 64), (101, 64));
    assert_eq!(resized_size(256, 256, 256), (256, 256));
    // Python's round: halves go to the even neighbour
    assert_eq!(center_crop_offset(341, 224), 58); // 58.5
    assert_eq!(center_crop_offset(343, 224), 60); // 59.5
    assert_eq!(center_crop_offset(101, 56), 22); // 22.5
    assert_eq!(center_crop_offset(256, 224), 16);
    assert_eq!(center_crop_offset(224, 224), 0);
}

#[test]
fn preprocess_matches_torchvision() {
    for name in ["320x240", "400x300"] {
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("tv{name}.json"))).unwrap(),
        )
        .unwrap();
        let src = fixture(summary["source"].as_str().unwrap());
        let (resize, crop) = (
            summary["resize"].as_u64().unwrap() as u32,
            summary["crop"].as_u64().unwrap() as u32,
        );
        let max = check_preprocess(&src, &format!("tv{name}_crop224.png"), resize, crop);
        assert_eq!(max, 0, "{name}");

        let t = preprocess(&src, resize, crop).unwrap().to_vec();
        let n = (crop * crop) as usize;
        let tol = Tol::new(1e-6, 0.0);
        for c in 0..3 {
            let ch = &t[c * n..(c + 1) * n];
            let mean = ch.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = ch.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let (want_mean, want_std) = (
                summary["mean"][c].as_f64().unwrap(),
                summary["std"][c].as_f64().unwrap(),
            );
            assert_close_one(
                &format!("{name}: mean of channel {c}"),
                mean,
                want_mean,
                tol,
            );
            assert_close_one(
                &format!("{name}: std of channel {c}"),
                var.sqrt(),
                want_std,
                tol,
            );
        }
        let idx = summary["sample_index"].as_array().unwrap();
        let val = summary["sample_value"].as_array().unwrap();
        assert_eq!(idx.len(), val.len(), "{name}: samples");
        let got: Vec<f32> = idx
            .iter()
            .map(|i| t[i.as_u64().unwrap() as usize])
            .collect();
        let want: Vec<f64> = val.iter().map(|v| v.as_f64().unwrap()).collect();
        let r = assert_close(&format!("{name}: samples"), &got, &want, tol);
        eprintln!(
            "{name}: max |diff| of samples vs torchvision {:e}",
            r.max_abs
        );
    }
}

#[test]
fn crop_offsets_round_half_to_even() {
    // 97x61 -> Resize(64) -> 101x64, CenterCrop(56) at left = round(22.5) = 22
    assert_eq!(
        check_preprocess(&fixture("src97x61.png"), "tv97x61_r64c56.png", 64, 56),
        0
    );
    // and the portrait transpose: 64x101, top = 22
    let src = load_rgb("src97x61.png");
    let t = RgbImage::from_fn(61, 97, |x, y| *src.get_pixel(y, x));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resize_src61x97.png");
    t.save(&path).unwrap();
    assert_eq!(check_preprocess(&path, "tv61x97_r64c56.png", 64, 56), 0);
}

#[test]
fn preprocess_converts_modes_like_pillow() {
    for name in ["gray", "la", "rgba", "palette", "rgb16", "gray16"] {
        let max = check_preprocess(
            &fixture(&format!("{name}.png")),
            &format!("tv_{name}_r40c32.png"),
            40,
            32,
        );
        assert_eq!(max, 0, "{name}");
    }
    // the `image` crate's own 16 -> 8 bit conversion rounds v / 257; Pillow keeps the high byte
    let img = image::open(fixture("rgb16.png")).unwrap();
    assert!(matches!(img, image::DynamicImage::ImageRgb16(_)));
    let (max, count) = diff(img.to_rgb8().as_raw(), to_rgb8_like_pil(&img).as_raw());
    eprintln!("rgb16: to_rgb8 vs Pillow's high byte: max |diff| {max}, {count} values differ");
    assert_eq!(max, 1);
}

#[test]
fn preprocess_jpeg_close_to_pillow() {
    // different JPEG decoders (libjpeg vs the `image` crate): a small bounded difference
    for name in ["rgb", "cmyk"] {
        let max = check_preprocess(
            &fixture(&format!("{name}.jpg")),
            &format!("tv_{name}jpg_r40c32.png"),
            40,
            32,
        );
        assert!(max <= 8, "{name}.jpg: {max}");
    }
}

#[test]
fn preprocess_errors() {
    let small = fixture("src97x61.png");
    assert!(preprocess(&small, 64, 65).is_err());
    assert!(preprocess(&fixture("missing.png"), 256, 224).is_err());
    assert!(preprocess(&fixture("gen_resize.py"), 256, 224).is_err());
}
