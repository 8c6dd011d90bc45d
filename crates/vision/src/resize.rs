//! Pillow-exact antialiased bilinear resizing, the resampling behind torchvision's
//! `transforms.Resize` on PIL images.
//!
//! See [`resize_bilinear_antialias`] for the algorithm.

use image::RgbImage;

/// Fractional bits of Pillow's fixed-point filter weights: 32 bits minus 8 for the pixel value
/// minus 2 of headroom (`PRECISION_BITS` in Pillow's `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Support (half-width, in source pixels at scale 1) of the bilinear (triangle) filter.
const BILINEAR_SUPPORT: f64 = 1.0;

/// The triangle filter `max(0, 1 - |x|)`.
fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Filter taps of one pass (one axis): output index `i` reads the `len` source samples from
/// `start`, weighted by `weights[i * ksize..][..len]` (fixed point, `PRECISION_BITS` bits).
struct Taps {
    ksize: usize,
    /// `(start, len)` per output index.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the bilinear filter and
/// the whole source range (box `[0, in_size]`).
fn precompute_taps(in_size: usize, out_size: usize) -> Taps {
    // Pillow takes the box edges as C floats; `in1 - in0` is exact below 2^24.
    let (in0, in1) = (0f32, in_size as f32);
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BILINEAR_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let one = f64::from(1u32 << PRECISION_BITS);

    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for (xx, kk) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates towards zero, as does `as`
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let len = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, w) in k[..len].iter_mut().enumerate() {
            // same association as Pillow's `(x + xmin - center + 0.5) * ss`
            *w = bilinear_filter(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            ww += *w;
        }
        if ww != 0.0 {
            for w in &mut k[..len] {
                *w /= ww;
            }
        }
        for (q, &w) in kk.iter_mut().zip(&k[..len]) {
            *q = if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            };
        }
        bounds.push((xmin as usize, len));
    }
    Taps {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fractional bits (arithmetic shift) and saturate to `0..=255`.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding bias added to every accumulator: one half in fixed point.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One filtered sample: `clip8(HALF + Σ src[start + i * stride] * w[i])`.
#[inline]
fn tap(src: &[u8], start: usize, stride: usize, w: &[i32]) -> u8 {
    let mut acc = HALF;
    for (i, &wi) in w.iter().enumerate() {
        acc = acc.wrapping_add(i32::from(src[start + i * stride]).wrapping_mul(wi));
    }
    clip8(acc)
}

/// Horizontal pass over rows `rows` of an interleaved `w × _` image with `ch` channels.
fn horizontal(src: &[u8], w: usize, ch: usize, rows: std::ops::Range<usize>, t: &Taps) -> Vec<u8> {
    let out_w = t.bounds.len();
    let mut out = vec![0u8; out_w * rows.len() * ch];
    for (y, row_out) in rows.zip(out.chunks_exact_mut(out_w * ch)) {
        let row_in = &src[y * w * ch..(y + 1) * w * ch];
        for (xx, px) in row_out.chunks_exact_mut(ch).enumerate() {
            let (start, len) = t.bounds[xx];
            let k = &t.weights[xx * t.ksize..][..len];
            for (c, v) in px.iter_mut().enumerate() {
                *v = tap(row_in, start * ch + c, ch, k);
            }
        }
    }
    out
}

/// Vertical pass of an interleaved `w × _` image with `ch` channels; `row0` is the source row
/// that the image's first row stands for (the taps' bounds are in source coordinates).
fn vertical(src: &[u8], w: usize, ch: usize, row0: usize, t: &Taps) -> Vec<u8> {
    let stride = w * ch;
    let mut out = vec![0u8; t.bounds.len() * stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (start, len) = t.bounds[yy];
        let k = &t.weights[yy * t.ksize..][..len];
        let base = (start - row0) * stride;
        for (i, v) in row_out.iter_mut().enumerate() {
            *v = tap(src, base + i, stride, k);
        }
    }
    out
}

/// Resize an interleaved 8-bit image (`ch` channels per pixel) exactly like Pillow's
/// `ImagingResample` with the bilinear filter. See [`resize_bilinear_antialias`].
///
/// # Panics
/// If `src.len() != w * h * ch`.
pub fn resize_bilinear_antialias_u8(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    assert_eq!(src.len(), w * h * ch, "buffer size is not {w}x{h}x{ch}");
    if out_w == 0 || out_h == 0 || ch == 0 {
        return Vec::new();
    }
    if w == 0 || h == 0 {
        return vec![0; out_w * out_h * ch];
    }
    let need_horizontal = out_w != w;
    let need_vertical = out_h != h;
    let vert = precompute_taps(h, out_h);
    // the source rows that the vertical pass reads
    let first = vert.bounds[0].0;
    let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
    match (need_horizontal, need_vertical) {
        (false, false) => src.to_vec(),
        (true, false) => horizontal(src, w, ch, 0..h, &precompute_taps(w, out_w)),
        (false, true) => vertical(src, w, ch, 0, &vert),
        (true, true) => {
            let tmp = horizontal(src, w, ch, first..last, &precompute_taps(w, out_w));
            vertical(&tmp, out_w, ch, first, &vert)
        }
    }
}

/// Resize to `w × h` exactly as Pillow's `Image.resize((w, h), Image.BILINEAR)` does (Pillow
/// ≥ 4, checked against 9.4), which is what torchvision's `transforms.Resize` runs on PIL images
/// (the ImageNet evaluation preprocessing): identical bytes, not just "close".
///
/// The algorithm (Pillow's `src/libImaging/Resample.c`):
///
/// * **Separable, horizontal pass first.** Each axis is filtered independently; the horizontal
///   pass writes an intermediate **8-bit** image (rounded and clipped), which the vertical pass
///   then filters. An axis whose size does not change is skipped entirely (so a same-size
///   resize is a copy, and a width-only resize never touches the rows).
/// * **Antialiasing.** With `scale = in_size / out_size`, the triangle filter `max(0, 1 - |x|)`
///   is stretched by `filterscale = max(scale, 1)`: its support is `1.0 * filterscale` source
///   pixels, so downscaling averages over the whole footprint of an output pixel (an area
///   filter), while upscaling is plain linear interpolation.
/// * **Taps.** Output pixel `i` is centred at `center = (i + 0.5) * scale` in source coordinates
///   and reads source pixels `xmin .. xmax`, with `xmin = max(trunc(center - support + 0.5), 0)`
///   and `xmax = min(trunc(center + support + 0.5), in_size)`; source pixel `x` gets weight
///   `filter((x - center + 0.5) / filterscale)`. The weights are divided by their sum (which
///   renormalises at the borders instead of padding) and then converted to fixed point with
///   `PRECISION_BITS = 22` fractional bits, rounding half away from zero.
/// * **Integer accumulation.** Each output sample is `(2^21 + Σ pixel * weight) >> 22`
///   (an arithmetic shift, i.e. round half up of the exact fixed-point sum), clipped to 0..=255.
///
/// The coefficients are computed in `f64` with the same operations in the same order as
/// Pillow's C code, so the rounding of every weight, and thus every output byte, agrees.
/// An empty target gives an empty image; an empty source gives a black one.
pub fn resize_bilinear_antialias(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let data = resize_bilinear_antialias_u8(
        img.as_raw(),
        iw as usize,
        ih as usize,
        3,
        w as usize,
        h as usize,
    );
    RgbImage::from_raw(w, h, data).expect("resize produced a buffer of the wrong size")
}
