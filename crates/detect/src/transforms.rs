//! Box-aware image transforms for detection: whatever moves the pixels moves the boxes with
//! them. Images are (C, H, W) tensors with values in [0, 1]; boxes are xyxy in pixels, a row
//! of 4 values each, with one label each.

use aics_tensor::{Interp, Rng, Tensor};

use crate::error::{arg, Result};

/// An image with its objects.
#[derive(Clone, Debug)]
pub struct Sample {
    /// (C, H, W)
    pub image: Tensor,
    /// xyxy, 4 values a box
    pub boxes: Vec<[f32; 4]>,
    pub labels: Vec<usize>,
}

impl Sample {
    pub fn new(image: Tensor, boxes: Vec<[f32; 4]>, labels: Vec<usize>) -> Result<Sample> {
        if image.rank() != 3 {
            return Err(arg(
                "Sample",
                format!("image must be (C, H, W), got {:?}", image.shape()),
            ));
        }
        if boxes.len() != labels.len() {
            return Err(arg(
                "Sample",
                format!("{} boxes with {} labels", boxes.len(), labels.len()),
            ));
        }
        Ok(Sample {
            image,
            boxes,
            labels,
        })
    }
    /// (height, width)
    pub fn size(&self) -> (usize, usize) {
        (self.image.shape()[1], self.image.shape()[2])
    }
}

fn resize_image(img: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let s = img.shape();
    let x = img.reshape(&[1, s[0], s[1], s[2]])?;
    let y = x.upsample(
        h,
        w,
        Interp::Bilinear {
            align_corners: false,
        },
    )?;
    Ok(y.reshape(&[s[0], h, w])?)
}

/// Resize to (h, w), scaling the boxes by the same factors.
pub fn resize(s: &Sample, h: usize, w: usize) -> Result<Sample> {
    let (ih, iw) = s.size();
    if h == 0 || w == 0 {
        return Err(arg("resize", format!("size {h}×{w}")));
    }
    let (fy, fx) = (h as f32 / ih as f32, w as f32 / iw as f32);
    Ok(Sample {
        image: resize_image(&s.image, h, w)?,
        boxes: s
            .boxes
            .iter()
            .map(|b| [b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy])
            .collect(),
        labels: s.labels.clone(),
    })
}

/// Resize so that the shorter side is `min_size` and the longer at most `max_size`, keeping
/// the aspect ratio (Faster R-CNN's `GeneralizedRCNNTransform`).
pub fn resize_keep_ratio(s: &Sample, min_size: usize, max_size: usize) -> Result<Sample> {
    let (ih, iw) = s.size();
    let (short, long) = (ih.min(iw) as f64, ih.max(iw) as f64);
    let scale = (min_size as f64 / short).min(max_size as f64 / long);
    let h = ((ih as f64 * scale).round() as usize).max(1);
    let w = ((iw as f64 * scale).round() as usize).max(1);
    resize(s, h, w)
}

/// Where a letterbox put the image: `x' = x · sx + dx`, `y' = y · sy + dy` (sx and sy differ only
/// by the rounding of the resized sides).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub sx: f32,
    pub sy: f32,
    pub dx: f32,
    pub dy: f32,
}

impl Letterbox {
    /// A box of the letterboxed image in the original image's pixels.
    pub fn unmap(&self, b: [f32; 4]) -> [f32; 4] {
        [
            (b[0] - self.dx) / self.sx,
            (b[1] - self.dy) / self.sy,
            (b[2] - self.dx) / self.sx,
            (b[3] - self.dy) / self.sy,
        ]
    }
}

/// Fit the image into a `size`×`size` square keeping its aspect ratio, centred on a `fill`
/// background (YOLO's letterbox; darknet fills with 0.5).
pub fn letterbox(s: &Sample, size: usize, fill: f32) -> Result<(Sample, Letterbox)> {
    let (ih, iw) = s.size();
    if size == 0 {
        return Err(arg("letterbox", "size 0"));
    }
    let scale = (size as f32 / iw as f32).min(size as f32 / ih as f32);
    let (nw, nh) = (
        ((iw as f32 * scale).round() as usize).clamp(1, size),
        ((ih as f32 * scale).round() as usize).clamp(1, size),
    );
    let (ox, oy) = ((size - nw) / 2, (size - nh) / 2);
    let small = resize_image(&s.image, nh, nw)?;
    let c = s.image.shape()[0];
    let sd = small.to_vec();
    let mut out = vec![fill; c * size * size];
    for ch in 0..c {
        for y in 0..nh {
            let src = &sd[(ch * nh + y) * nw..(ch * nh + y + 1) * nw];
            let at = (ch * size + oy + y) * size + ox;
            out[at..at + nw].copy_from_slice(src);
        }
    }
    let (sx, sy) = (nw as f32 / iw as f32, nh as f32 / ih as f32);
    let map = Letterbox {
        sx,
        sy,
        dx: ox as f32,
        dy: oy as f32,
    };
    let boxes = s
        .boxes
        .iter()
        .map(|b| {
            [
                b[0] * sx + map.dx,
                b[1] * sy + map.dy,
                b[2] * sx + map.dx,
                b[3] * sy + map.dy,
            ]
        })
        .collect();
    Ok((
        Sample {
            image: Tensor::from_vec(out, &[c, size, size])?,
            boxes,
            labels: s.labels.clone(),
        },
        map,
    ))
}

/// Mirror left to right: x → W − x.
pub fn hflip(s: &Sample) -> Result<Sample> {
    let (h, w) = s.size();
    let c = s.image.shape()[0];
    let d = s.image.to_vec();
    let mut out = Vec::with_capacity(d.len());
    for row in d.chunks_exact(w) {
        out.extend(row.iter().rev());
    }
    let wf = w as f32;
    Ok(Sample {
        image: Tensor::from_vec(out, &[c, h, w])?,
        boxes: s
            .boxes
            .iter()
            .map(|b| [wf - b[2], b[1], wf - b[0], b[3]])
            .collect(),
        labels: s.labels.clone(),
    })
}

/// Cut the window (top, left, height, width) out of the image; boxes are clipped to it, and a
/// box keeps its place only if at least `min_visible` of its area remains (SSD's random crop
/// keeps boxes whose centre is inside; this keeps by area, which also drops slivers).
pub fn crop(
    s: &Sample,
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
    min_visible: f32,
) -> Result<Sample> {
    let (h, w) = s.size();
    if ch == 0 || cw == 0 || top + ch > h || left + cw > w {
        return Err(arg(
            "crop",
            format!("window {ch}×{cw} at ({top}, {left}) does not fit a {h}×{w} image"),
        ));
    }
    let c = s.image.shape()[0];
    let d = s.image.to_vec();
    let mut out = Vec::with_capacity(c * ch * cw);
    for k in 0..c {
        for y in top..top + ch {
            let at = (k * h + y) * w + left;
            out.extend_from_slice(&d[at..at + cw]);
        }
    }
    let (l, t, r, b) = (
        left as f32,
        top as f32,
        (left + cw) as f32,
        (top + ch) as f32,
    );
    let (mut boxes, mut labels) = (Vec::new(), Vec::new());
    for (bx, &lab) in s.boxes.iter().zip(&s.labels) {
        let area = (bx[2] - bx[0]) * (bx[3] - bx[1]);
        let c = [bx[0].max(l), bx[1].max(t), bx[2].min(r), bx[3].min(b)];
        let kept = (c[2] - c[0]).max(0.0) * (c[3] - c[1]).max(0.0);
        if area > 0.0 && kept >= min_visible * area && kept > 0.0 {
            boxes.push([c[0] - l, c[1] - t, c[2] - l, c[3] - t]);
            labels.push(lab);
        }
    }
    Ok(Sample {
        image: Tensor::from_vec(out, &[c, ch, cw])?,
        boxes,
        labels,
    })
}

/// A random window covering `min_scale`..1 of each side, cropped as [`crop`] does.
pub fn random_crop(s: &Sample, min_scale: f32, min_visible: f32, rng: &mut Rng) -> Result<Sample> {
    let (h, w) = s.size();
    let side = |n: usize, rng: &mut Rng| {
        let f = min_scale + (1.0 - min_scale) * rng.uniform() as f32;
        ((n as f32 * f).round() as usize).clamp(1, n)
    };
    let (ch, cw) = (side(h, rng), side(w, rng));
    let top = rng.below(h - ch + 1);
    let left = rng.below(w - cw + 1);
    crop(s, top, left, ch, cw, min_visible)
}

/// Colour jitter: brightness, contrast and saturation each scaled by a factor drawn from
/// [1 − amount, 1 + amount], values clamped to [0, 1]; boxes unchanged.
pub fn color_jitter(s: &Sample, amount: f32, rng: &mut Rng) -> Result<Sample> {
    let mut f = || 1.0 + amount * (2.0 * rng.uniform() as f32 - 1.0);
    let (bright, contrast, sat) = (f(), f(), f());
    let (c, h, w) = (s.image.shape()[0], s.size().0, s.size().1);
    let mut d = s.image.to_vec();
    let n = h * w;
    d.iter_mut().for_each(|v| *v *= bright);
    let mean = d.iter().sum::<f32>() / d.len().max(1) as f32;
    d.iter_mut()
        .for_each(|v| *v = mean + (*v - mean) * contrast);
    if c == 3 {
        for p in 0..n {
            let gray = 0.299 * d[p] + 0.587 * d[n + p] + 0.114 * d[2 * n + p];
            for k in 0..3 {
                d[k * n + p] = gray + (d[k * n + p] - gray) * sat;
            }
        }
    }
    d.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Ok(Sample {
        image: Tensor::from_vec(d, &[c, h, w])?,
        boxes: s.boxes.clone(),
        labels: s.labels.clone(),
    })
}
