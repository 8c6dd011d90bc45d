//! Image transforms (augmentation and preprocessing) on CHW `f32` images.
//!
//! Every transform takes the image by value with its `[C, H, W]` shape and a
//! random number generator, and returns the new image and shape. Random
//! transforms draw only from the generator they are given, so the data loader
//! can make them reproducible by seeding one generator per sample.

use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::rng::Rng;

/// A transformation of one CHW image.
pub trait Transform: Send + Sync {
    /// Transforms `img`, whose shape is `shape` (`img.len()` must equal
    /// `C * H * W`), and returns the result with its shape.
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]);

    /// The shape [`Transform::apply`] produces for inputs of `shape`, or an
    /// error when the transform cannot be applied to such inputs. The data
    /// loader calls it once up front to validate its configuration.
    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        Ok(shape)
    }
}

impl<T: Transform + ?Sized> Transform for Box<T> {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        (**self).apply(img, shape, rng)
    }
    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        (**self).output_shape(shape)
    }
}

impl<T: Transform + ?Sized> Transform for Arc<T> {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        (**self).apply(img, shape, rng)
    }
    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        (**self).output_shape(shape)
    }
}

/// Applies transforms one after the other.
#[derive(Default)]
pub struct Compose {
    pub transforms: Vec<Box<dyn Transform>>,
}

impl Compose {
    pub fn new(transforms: Vec<Box<dyn Transform>>) -> Self {
        Compose { transforms }
    }

    /// Appends a transform.
    pub fn then(mut self, t: impl Transform + 'static) -> Self {
        self.transforms.push(Box::new(t));
        self
    }
}

impl Transform for Compose {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        self.transforms
            .iter()
            .fold((img, shape), |(img, shape), t| t.apply(img, shape, rng))
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        self.transforms
            .iter()
            .try_fold(shape, |shape, t| t.output_shape(shape))
    }
}

/// `(x - mean[c]) / std[c]` for each channel `c`. A single value applies to
/// every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// Checks that there are as many means as standard deviations, at least
    /// one, and that every standard deviation is finite and non-zero.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        let n = Normalize { mean, std };
        n.validate()?;
        Ok(n)
    }

    fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(DataError::invalid(format!(
                "Normalize needs as many means as standard deviations (at least one), got {} and {}",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some(s) = self.std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(DataError::invalid(format!(
                "Normalize standard deviation {s} is not finite and non-zero"
            )));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::invalid(format!(
                "Normalize mean {m} is not finite"
            )));
        }
        Ok(())
    }

    fn channel_param(values: &[f32], c: usize) -> Option<f32> {
        match values.len() {
            1 => Some(values[0]),
            _ => values.get(c).copied(),
        }
    }
}

impl Transform for Normalize {
    fn apply(
        &self,
        mut img: Vec<f32>,
        shape: [usize; 3],
        _rng: &mut Rng,
    ) -> (Vec<f32>, [usize; 3]) {
        let plane = shape[1] * shape[2];
        if plane == 0 {
            return (img, shape);
        }
        for (c, channel) in img.chunks_mut(plane).enumerate() {
            // Channels without parameters are left alone; `output_shape`
            // reports that configuration as an error beforehand.
            let (Some(m), Some(s)) = (
                Self::channel_param(&self.mean, c),
                Self::channel_param(&self.std, c),
            ) else {
                continue;
            };
            let inv = 1.0 / s;
            for v in channel {
                *v = (*v - m) * inv;
            }
        }
        (img, shape)
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        self.validate()?;
        if self.mean.len() != 1 && self.mean.len() != shape[0] {
            return Err(DataError::invalid(format!(
                "Normalize has {} values per parameter but images have {} channels",
                self.mean.len(),
                shape[0]
            )));
        }
        Ok(shape)
    }
}

/// Pads the image with `padding` zeros on every side, then crops a random
/// `size = [height, width]` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomCrop {
    pub size: [usize; 2],
    pub padding: usize,
}

impl RandomCrop {
    /// A square `size x size` crop after padding by `padding`.
    pub fn new(size: usize, padding: usize) -> Self {
        RandomCrop {
            size: [size, size],
            padding,
        }
    }
}

impl Transform for RandomCrop {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        let [h, w] = self.size;
        let p = self.padding;
        let top = rng.below((shape[1] + 2 * p).saturating_sub(h) + 1) as isize - p as isize;
        let left = rng.below((shape[2] + 2 * p).saturating_sub(w) + 1) as isize - p as isize;
        crop(&img, shape, top, left, h, w)
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        let [h, w] = self.size;
        let (ph, pw) = (shape[1] + 2 * self.padding, shape[2] + 2 * self.padding);
        if h == 0 || w == 0 || h > ph || w > pw {
            return Err(DataError::invalid(format!(
                "RandomCrop of {h}x{w} does not fit images of {}x{} padded by {}",
                shape[1], shape[2], self.padding
            )));
        }
        Ok([shape[0], h, w])
    }
}

/// Mirrors the image left to right with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomHorizontalFlip {
    pub p: f32,
}

impl RandomHorizontalFlip {
    pub fn new(p: f32) -> Self {
        RandomHorizontalFlip { p }
    }
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, mut img: Vec<f32>, shape: [usize; 3], rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        if rng.bernoulli(self.p) {
            hflip(&mut img, shape);
        }
        (img, shape)
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        if !(0.0..=1.0).contains(&self.p) {
            return Err(DataError::invalid(format!(
                "RandomHorizontalFlip probability {} is not in [0, 1]",
                self.p
            )));
        }
        Ok(shape)
    }
}

/// Mirrors a CHW image left to right in place.
pub fn hflip(img: &mut [f32], shape: [usize; 3]) {
    let w = shape[2];
    if w == 0 {
        return;
    }
    for row in img.chunks_mut(w) {
        row.reverse();
    }
}

/// Bilinear resize to `h x w` (pixel centres aligned, as `align_corners =
/// false` in common frameworks; no antialiasing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    pub h: usize,
    pub w: usize,
}

impl Resize {
    pub fn new(h: usize, w: usize) -> Self {
        Resize { h, w }
    }
}

impl Transform for Resize {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], _rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        let [c, ih, iw] = shape;
        let (oh, ow) = (self.h, self.w);
        if (ih, iw) == (oh, ow) {
            return (img, shape);
        }
        let out_shape = [c, oh, ow];
        if ih == 0 || iw == 0 {
            return (vec![0.0; c * oh * ow], out_shape);
        }
        let ys = interp_table(ih, oh);
        let xs = interp_table(iw, ow);
        let mut out = Vec::with_capacity(c * oh * ow);
        for plane in img.chunks(ih * iw) {
            for &(y0, y1, fy) in &ys {
                let (r0, r1) = (
                    &plane[y0 * iw..(y0 + 1) * iw],
                    &plane[y1 * iw..(y1 + 1) * iw],
                );
                for &(x0, x1, fx) in &xs {
                    let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                    let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                    out.push(top + (bottom - top) * fy);
                }
            }
        }
        (out, out_shape)
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        if self.h == 0 || self.w == 0 {
            return Err(DataError::invalid(format!(
                "Resize to {}x{} has a zero dimension",
                self.h, self.w
            )));
        }
        Ok([shape[0], self.h, self.w])
    }
}

/// For each output coordinate: the two neighbouring input coordinates and the
/// weight of the second.
fn interp_table(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Crops the central `h x w` window; zero-pads when the image is smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CenterCrop {
    pub h: usize,
    pub w: usize,
}

impl CenterCrop {
    pub fn new(h: usize, w: usize) -> Self {
        CenterCrop { h, w }
    }
}

impl Transform for CenterCrop {
    fn apply(&self, img: Vec<f32>, shape: [usize; 3], _rng: &mut Rng) -> (Vec<f32>, [usize; 3]) {
        if (shape[1], shape[2]) == (self.h, self.w) {
            return (img, shape);
        }
        let top = (shape[1] as isize - self.h as isize).div_euclid(2);
        let left = (shape[2] as isize - self.w as isize).div_euclid(2);
        crop(&img, shape, top, left, self.h, self.w)
    }

    fn output_shape(&self, shape: [usize; 3]) -> Result<[usize; 3]> {
        if self.h == 0 || self.w == 0 {
            return Err(DataError::invalid(format!(
                "CenterCrop to {}x{} has a zero dimension",
                self.h, self.w
            )));
        }
        Ok([shape[0], self.h, self.w])
    }
}

/// Copies the `h x w` window whose top-left corner is at (`top`, `left`) in
/// image coordinates; parts outside the image are zero.
fn crop(
    img: &[f32],
    shape: [usize; 3],
    top: isize,
    left: isize,
    h: usize,
    w: usize,
) -> (Vec<f32>, [usize; 3]) {
    let [c, ih, iw] = shape;
    let mut out = vec![0.0; c * h * w];
    // Range of output columns that fall inside the image.
    let x_start = (-left).clamp(0, w as isize) as usize;
    let x_end = (iw as isize - left).clamp(0, w as isize) as usize;
    if x_start < x_end {
        for ch in 0..c {
            for y in 0..h {
                let sy = top + y as isize;
                if sy < 0 || sy >= ih as isize {
                    continue;
                }
                let src_row = ch * ih * iw + sy as usize * iw;
                let sx = (left + x_start as isize) as usize;
                let dst_row = ch * h * w + y * w;
                out[dst_row + x_start..dst_row + x_end]
                    .copy_from_slice(&img[src_row + sx..src_row + sx + (x_end - x_start)]);
            }
        }
    }
    (out, [c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3]) -> Vec<f32> {
        (0..shape.iter().product::<usize>())
            .map(|i| i as f32)
            .collect()
    }

    #[test]
    fn flip_twice_is_identity() {
        let shape = [3, 4, 5];
        let img = ramp(shape);
        let flip = RandomHorizontalFlip::new(1.0);
        let mut rng = Rng::new(0);
        let (once, s) = flip.apply(img.clone(), shape, &mut rng);
        assert_eq!(s, shape);
        assert_ne!(once, img);
        assert_eq!(&once[..5], &[4.0, 3.0, 2.0, 1.0, 0.0]);
        let (twice, _) = flip.apply(once, shape, &mut rng);
        assert_eq!(twice, img);

        let never = RandomHorizontalFlip::new(0.0);
        assert_eq!(never.apply(img.clone(), shape, &mut rng).0, img);
        assert!(RandomHorizontalFlip::new(1.5).output_shape(shape).is_err());
    }

    #[test]
    fn normalize_math() {
        let shape = [2, 1, 2];
        let n = Normalize::new(vec![0.5, 1.0], vec![0.25, 2.0]).expect("valid");
        let (out, s) = n.apply(vec![0.0, 1.0, 1.0, 3.0], shape, &mut Rng::new(0));
        assert_eq!(s, shape);
        assert_eq!(out, vec![-2.0, 2.0, 0.0, 1.0]);

        // One value broadcasts over channels.
        let n1 = Normalize::new(vec![0.5], vec![0.5]).expect("valid");
        let (out, _) = n1.apply(vec![0.0, 1.0, 0.5, 1.0], shape, &mut Rng::new(0));
        assert_eq!(out, vec![-1.0, 1.0, 0.0, 1.0]);

        assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
        assert!(Normalize::new(vec![0.5, 0.5], vec![1.0]).is_err());
        assert!(Normalize::new(vec![], vec![]).is_err());
        let three = Normalize::new(vec![0.0; 3], vec![1.0; 3]).expect("valid");
        assert!(three.output_shape([1, 28, 28]).is_err());
        assert!(three.output_shape([3, 28, 28]).is_ok());
    }

    #[test]
    fn random_crop_full_size_without_padding_is_identity() {
        let shape = [3, 6, 7];
        let img = ramp(shape);
        let crop = RandomCrop {
            size: [6, 7],
            padding: 0,
        };
        let mut rng = Rng::new(9);
        for _ in 0..10 {
            let (out, s) = crop.apply(img.clone(), shape, &mut rng);
            assert_eq!(s, shape);
            assert_eq!(out, img);
        }
    }

    #[test]
    fn random_crop_with_padding_shifts_content() {
        let shape = [1, 4, 4];
        let img: Vec<f32> = vec![1.0; 16];
        let crop = RandomCrop::new(4, 2);
        assert_eq!(crop.output_shape(shape).expect("fits"), shape);
        let mut rng = Rng::new(1);
        let mut saw_shift = false;
        for _ in 0..50 {
            let (out, s) = crop.apply(img.clone(), shape, &mut rng);
            assert_eq!(s, shape);
            let ones = out.iter().filter(|&&v| v == 1.0).count();
            let zeros = out.iter().filter(|&&v| v == 0.0).count();
            assert_eq!(ones + zeros, 16);
            // At most 2 rows and 2 columns can be padding.
            assert!(ones >= 4);
            saw_shift |= zeros > 0;
        }
        assert!(saw_shift);
        assert!(RandomCrop::new(9, 2).output_shape(shape).is_err());
    }

    #[test]
    fn center_crop_shape_and_content() {
        let shape = [2, 5, 6];
        let img = ramp(shape);
        let cc = CenterCrop::new(3, 2);
        assert_eq!(cc.output_shape(shape).expect("valid"), [2, 3, 2]);
        let (out, s) = cc.apply(img, shape, &mut Rng::new(0));
        assert_eq!(s, [2, 3, 2]);
        // Rows 1..4, columns 2..4 of each plane.
        assert_eq!(
            out,
            vec![8.0, 9.0, 14.0, 15.0, 20.0, 21.0, 38.0, 39.0, 44.0, 45.0, 50.0, 51.0]
        );

        // A larger crop pads with zeros around the image.
        let (out, s) = CenterCrop::new(3, 3).apply(vec![1.0], [1, 1, 1], &mut Rng::new(0));
        assert_eq!(s, [1, 3, 3]);
        assert_eq!(out, vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn resize_bilinear() {
        let mut rng = Rng::new(0);
        // Constant images stay constant.
        let (out, s) = Resize::new(7, 3).apply(vec![0.25; 2 * 4 * 4], [2, 4, 4], &mut rng);
        assert_eq!(s, [2, 7, 3]);
        assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-6));

        // Upsampling 1x2 -> 1x4 with half-pixel centres: 0, 0.25, 0.75, 1.
        let (out, _) = Resize::new(1, 4).apply(vec![0.0, 1.0], [1, 1, 2], &mut rng);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);

        // Downsampling 1x4 -> 1x2 averages neighbouring pairs.
        let (out, _) = Resize::new(1, 2).apply(vec![0.0, 1.0, 2.0, 3.0], [1, 1, 4], &mut rng);
        assert_eq!(out, vec![0.5, 2.5]);

        // Same size is the identity.
        let img = ramp([1, 3, 3]);
        assert_eq!(
            Resize::new(3, 3).apply(img.clone(), [1, 3, 3], &mut rng).0,
            img
        );
        assert!(Resize::new(0, 3).output_shape([1, 3, 3]).is_err());
    }

    #[test]
    fn compose_chains_shapes_and_values() {
        let t = Compose::default()
            .then(CenterCrop::new(2, 2))
            .then(Normalize::new(vec![1.0], vec![2.0]).expect("valid"));
        assert_eq!(t.output_shape([1, 4, 4]).expect("valid"), [1, 2, 2]);
        let (out, s) = t.apply(ramp([1, 4, 4]), [1, 4, 4], &mut Rng::new(0));
        assert_eq!(s, [1, 2, 2]);
        assert_eq!(out, vec![2.0, 2.5, 4.0, 4.5]);
        assert!(Compose::default()
            .then(Resize::new(0, 1))
            .output_shape([1, 4, 4])
            .is_err());
    }
}
