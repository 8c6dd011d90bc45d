//! Region-of-interest pooling: `roi_pool` (Fast R-CNN's max over a grid of bins) and
//! `roi_align` (Mask R-CNN's bilinear samples averaged per bin), forward and backward, with
//! torchvision's semantics. Regions are (K, 5) rows `(batch index, x1, y1, x2, y2)` in image
//! coordinates; `spatial_scale` maps them onto the feature map (1/16 for a stride-16 backbone).
//! The gradient flows to the feature map; the regions get none (as in torchvision).

use rayon::prelude::*;

use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;

/// Checked sizes: features (N, C, H, W), K regions, and the output bins.
#[derive(Clone, Copy, Debug)]
struct RoiGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    ph: usize,
    pw: usize,
}

fn roi_geom<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    rois: &Tensor<T>,
    (ph, pw): (usize, usize),
    spatial_scale: f64,
) -> Result<RoiGeom> {
    let [n, c, h, w] = *x.shape() else {
        return Err(shape_err(
            op,
            format!("features must be (N, C, H, W), got {:?}", x.shape()),
        ));
    };
    let [k, 5] = *rois.shape() else {
        return Err(shape_err(
            op,
            format!(
                "regions must be (K, 5) rows (batch index, x1, y1, x2, y2), got {:?}",
                rois.shape()
            ),
        ));
    };
    if h == 0 || w == 0 {
        return Err(shape_err(op, format!("empty feature map {:?}", x.shape())));
    }
    if ph == 0 || pw == 0 || !(spatial_scale.is_finite() && spatial_scale > 0.0) {
        return Err(arg_err(
            op,
            format!("output size {ph}×{pw} and spatial scale {spatial_scale} must be positive"),
        ));
    }
    for (i, r) in rois.data().chunks_exact(5).enumerate() {
        let b = r[0].as_f64();
        if !(b >= 0.0 && b < n as f64 && b.fract() == 0.0) || r.iter().any(|v| !v.is_finite()) {
            return Err(arg_err(
                op,
                format!("region {i}: batch index {b} is not one of the {n} images, or a coordinate is not finite"),
            ));
        }
    }
    Ok(RoiGeom {
        n,
        c,
        h,
        w,
        k,
        ph,
        pw,
    })
}

/// One region's bin grid for roi_align: start, bin size and samples per bin in y and x.
struct AlignRoi {
    batch: usize,
    y0: f64,
    x0: f64,
    bin_h: f64,
    bin_w: f64,
    grid_h: usize,
    grid_w: usize,
}

fn align_roi<T: Float>(r: &[T], g: &RoiGeom, scale: f64, sampling: i32, aligned: bool) -> AlignRoi {
    let off = if aligned { 0.5 } else { 0.0 };
    let f = |i: usize| r[i].as_f64() * scale - off;
    let (x0, y0, x1, y1) = (f(1), f(2), f(3), f(4));
    let (mut rw, mut rh) = (x1 - x0, y1 - y0);
    if !aligned {
        // old behaviour: force malformed regions to be 1×1
        rw = rw.max(1.0);
        rh = rh.max(1.0);
    }
    let (bin_h, bin_w) = (rh / g.ph as f64, rw / g.pw as f64);
    let grid = |extent: f64, bins: usize| {
        if sampling > 0 {
            sampling as usize
        } else {
            (extent / bins as f64).ceil().max(0.0) as usize
        }
    };
    AlignRoi {
        batch: r[0].as_f64() as usize,
        y0,
        x0,
        bin_h,
        bin_w,
        grid_h: grid(rh, g.ph),
        grid_w: grid(rw, g.pw),
    }
}

/// The four taps and weights of a bilinear sample at (y, x) of an h×w plane, as torchvision's
/// `bilinear_interpolate`: None outside [−1, h] × [−1, w]; coordinates below 0 are clamped to 0
/// and the last row/column is repeated.
fn bilinear(h: usize, w: usize, mut y: f64, mut x: f64) -> Option<[(usize, f64); 4]> {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return None;
    }
    y = y.max(0.0);
    x = x.max(0.0);
    let (mut yl, mut xl) = (y as usize, x as usize);
    let (yh, xh);
    if yl >= h - 1 {
        yl = h - 1;
        yh = yl;
        y = yl as f64;
    } else {
        yh = yl + 1;
    }
    if xl >= w - 1 {
        xl = w - 1;
        xh = xl;
        x = xl as f64;
    } else {
        xh = xl + 1;
    }
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Some([
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ])
}

/// Visit every sample of bin (py, px) of region `a`: `f(tap index in the plane, weight)`, with
/// weights already divided by the bin's sample count.
fn for_each_tap(a: &AlignRoi, g: &RoiGeom, py: usize, px: usize, mut f: impl FnMut(usize, f64)) {
    let count = (a.grid_h * a.grid_w).max(1) as f64;
    for iy in 0..a.grid_h {
        let y = a.y0 + py as f64 * a.bin_h + (iy as f64 + 0.5) * a.bin_h / a.grid_h as f64;
        for ix in 0..a.grid_w {
            let x = a.x0 + px as f64 * a.bin_w + (ix as f64 + 0.5) * a.bin_w / a.grid_w as f64;
            if let Some(taps) = bilinear(g.h, g.w, y, x) {
                for (i, wt) in taps {
                    f(i, wt / count);
                }
            }
        }
    }
}

impl<T: Float> Tensor<T> {
    /// ROI max pooling (torchvision's `roi_pool`): each region, scaled and rounded to feature
    /// cells (half away from zero, at least 1×1), is cut into `output` bins whose maxima form
    /// the (K, C, PH, PW) result; an empty bin is 0. The gradient goes to each bin's maximum.
    pub fn roi_pool(
        &self,
        rois: &Tensor<T>,
        output: (usize, usize),
        spatial_scale: f64,
    ) -> Result<Tensor<T>> {
        let g = roi_geom("roi_pool", self, rois, output, spatial_scale)?;
        let (x, r) = (self.data(), rois.data());
        let (hw, bins) = (g.h * g.w, g.ph * g.pw);
        // per output: its value and the argmax (flat index into x), or none for an empty bin
        let mut y = vec![T::zero(); g.k * g.c * bins];
        let mut arg = vec![usize::MAX; g.k * g.c * bins];
        y.par_chunks_mut(bins)
            .zip(arg.par_chunks_mut(bins))
            .enumerate()
            .for_each(|(kc, (yo, ao))| {
                let (ki, ci) = (kc / g.c, kc % g.c);
                let roi = &r[ki * 5..ki * 5 + 5];
                let s = |i: usize| (roi[i].as_f64() * spatial_scale).round() as i64;
                let (x0, y0, x1, y1) = (s(1), s(2), s(3), s(4));
                let rw = (x1 - x0 + 1).max(1) as f64;
                let rh = (y1 - y0 + 1).max(1) as f64;
                let (bh, bw) = (rh / g.ph as f64, rw / g.pw as f64);
                let plane = (roi[0].as_f64() as usize * g.c + ci) * hw;
                let clampi = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
                for py in 0..g.ph {
                    let hs = clampi((py as f64 * bh).floor() as i64 + y0, g.h);
                    let he = clampi(((py + 1) as f64 * bh).ceil() as i64 + y0, g.h);
                    for px in 0..g.pw {
                        let ws = clampi((px as f64 * bw).floor() as i64 + x0, g.w);
                        let we = clampi(((px + 1) as f64 * bw).ceil() as i64 + x0, g.w);
                        let o = py * g.pw + px;
                        if he <= hs || we <= ws {
                            continue; // empty bin: 0, no gradient
                        }
                        let (mut best, mut at) = (T::neg_infinity(), usize::MAX);
                        for yy in hs..he {
                            for xx in ws..we {
                                let v = x[plane + yy * g.w + xx];
                                if v > best || at == usize::MAX {
                                    best = v;
                                    at = plane + yy * g.w + xx;
                                }
                            }
                        }
                        yo[o] = best;
                        ao[o] = at;
                    }
                }
            });
        let xlen = g.n * g.c * hw;
        Ok(Tensor::from_op(
            y,
            vec![g.k, g.c, g.ph, g.pw],
            "roi_pool",
            &[self, rois],
            move |gy, needs| {
                let gx = needs[0].then(|| {
                    let mut gx = vec![T::zero(); xlen];
                    for (&a, &v) in arg.iter().zip(gy) {
                        if a != usize::MAX {
                            gx[a] += v;
                        }
                    }
                    gx
                });
                vec![gx, None]
            },
        ))
    }

    /// ROI align (torchvision's `roi_align`): each of the `output` bins of a region averages
    /// `sampling_ratio`² bilinear samples (or ⌈bin size⌉ per side when `sampling_ratio` ≤ 0,
    /// torchvision's adaptive −1); `aligned` shifts the region by half a cell, as Detectron2's
    /// ROIAlignV2. Result (K, C, PH, PW).
    pub fn roi_align(
        &self,
        rois: &Tensor<T>,
        output: (usize, usize),
        spatial_scale: f64,
        sampling_ratio: i32,
        aligned: bool,
    ) -> Result<Tensor<T>> {
        let g = roi_geom("roi_align", self, rois, output, spatial_scale)?;
        let (x, r) = (self.data(), rois.data());
        let (hw, bins) = (g.h * g.w, g.ph * g.pw);
        let regions: Vec<AlignRoi> = r
            .chunks_exact(5)
            .map(|roi| align_roi(roi, &g, spatial_scale, sampling_ratio, aligned))
            .collect();
        let mut y = vec![T::zero(); g.k * g.c * bins];
        y.par_chunks_mut(bins).enumerate().for_each(|(kc, yo)| {
            let (ki, ci) = (kc / g.c, kc % g.c);
            let a = &regions[ki];
            let plane = &x[(a.batch * g.c + ci) * hw..(a.batch * g.c + ci + 1) * hw];
            for py in 0..g.ph {
                for px in 0..g.pw {
                    let mut acc = 0.0f64;
                    for_each_tap(a, &g, py, px, |i, wt| acc += wt * plane[i].as_f64());
                    yo[py * g.pw + px] = T::from_f64(acc);
                }
            }
        });
        let xlen = g.n * g.c * hw;
        Ok(Tensor::from_op(
            y,
            vec![g.k, g.c, g.ph, g.pw],
            "roi_align",
            &[self, rois],
            move |gy, needs| {
                let gx = needs[0].then(|| {
                    let mut gx = vec![0.0f64; xlen];
                    for (ki, a) in regions.iter().enumerate() {
                        for ci in 0..g.c {
                            let plane = (a.batch * g.c + ci) * hw;
                            let go = &gy[(ki * g.c + ci) * bins..(ki * g.c + ci + 1) * bins];
                            for py in 0..g.ph {
                                for px in 0..g.pw {
                                    let v = go[py * g.pw + px].as_f64();
                                    for_each_tap(a, &g, py, px, |i, wt| gx[plane + i] += wt * v);
                                }
                            }
                        }
                    }
                    gx.into_iter().map(T::from_f64).collect()
                });
                vec![gx, None]
            },
        ))
    }
}
