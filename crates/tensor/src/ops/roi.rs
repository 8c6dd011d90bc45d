//! Region-of-interest pooling: `roi_pool` (Fast R-CNN's max over a grid of bins) and
//! `roi_align` (Mask R-CNN's bilinear samples averaged per bin), forward and backward, with
//! torchvision's semantics. Regions are (K, 5) rows `(batch index, x1, y1, x2, y2)` in image
//! coordinates; `spatial_scale` maps them onto the feature map (1/16 for a stride-16 backbone).
//! The gradient flows to the feature map; the regions get none (as in torchvision).

use rayon::prelude::*;

use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

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
    // both ops keep cell indices within a plane as u32
    if h * w > u32::MAX as usize {
        return Err(shape_err(
            op,
            format!("feature planes of {h}×{w} cells exceed 2³²"),
        ));
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

/// The bilinear taps of every bin of region `a`, computed once and used for all channels
/// (torchvision's `pre_calc`), with the taps of a bin's samples that fall on the same cell
/// merged: bin b reads `taps[ends[b-1]..ends[b]]`, each (index in the plane, weight already
/// divided by the bin's sample count). Samples outside the map add nothing.
struct AlignTaps<T> {
    ends: Vec<usize>,
    taps: Vec<(u32, T)>,
}

fn align_taps<T: Float>(a: &AlignRoi, g: &RoiGeom) -> AlignTaps<T> {
    let mut taps: Vec<(u32, T)> = Vec::new();
    let mut ends = Vec::with_capacity(g.ph * g.pw);
    let mut bin: Vec<(usize, f64)> = Vec::new();
    for py in 0..g.ph {
        for px in 0..g.pw {
            bin.clear();
            for_each_tap(a, g, py, px, |i, wt| bin.push((i, wt)));
            bin.sort_by_key(|&(i, _)| i);
            let mut k = 0;
            while k < bin.len() {
                let (i, mut wt) = bin[k];
                k += 1;
                while k < bin.len() && bin[k].0 == i {
                    wt += bin[k].1;
                    k += 1;
                }
                if wt != 0.0 {
                    taps.push((i as u32, T::from_f64(wt)));
                }
            }
            ends.push(taps.len());
        }
    }
    AlignTaps { ends, taps }
}

impl<T> AlignTaps<T> {
    /// The taps of each bin in turn.
    fn bins(&self) -> impl Iterator<Item = &[(u32, T)]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter()).map(|(s, &e)| &self.taps[s..e])
    }
}

/// One region's bins for roi_pool: (row start, row end, column start, column end) in cells,
/// empty when end ≤ start.
fn pool_bins<T: Float>(roi: &[T], g: &RoiGeom, spatial_scale: f64) -> Vec<[usize; 4]> {
    let s = |i: usize| (roi[i].as_f64() * spatial_scale).round() as i64;
    let (x0, y0, x1, y1) = (s(1), s(2), s(3), s(4));
    let rw = (x1 - x0 + 1).max(1) as f64;
    let rh = (y1 - y0 + 1).max(1) as f64;
    let (bh, bw) = (rh / g.ph as f64, rw / g.pw as f64);
    let clampi = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    let mut bins = Vec::with_capacity(g.ph * g.pw);
    for py in 0..g.ph {
        let hs = clampi((py as f64 * bh).floor() as i64 + y0, g.h);
        let he = clampi(((py + 1) as f64 * bh).ceil() as i64 + y0, g.h);
        for px in 0..g.pw {
            let ws = clampi((px as f64 * bw).floor() as i64 + x0, g.w);
            let we = clampi(((px + 1) as f64 * bw).ceil() as i64 + x0, g.w);
            bins.push([hs, he, ws, we]);
        }
    }
    bins
}

impl<T: Float> Tensor<T> {
    /// ONNX `RoiAlign` with `mode="max"` (inference only: no gradient): the regions, sampling
    /// grid and bilinear taps of [`Tensor::roi_align`], but each output the largest *weighted
    /// corner term* `wᵢ·vᵢ` over its sampling points (ONNX's reference and onnxruntime compute
    /// exactly that, not the largest interpolated value); a sampling point outside the map
    /// counts as 0, and a bin without sampling points is 0.
    pub fn roi_align_max(
        &self,
        rois: &Tensor<T>,
        output: (usize, usize),
        spatial_scale: f64,
        sampling_ratio: i32,
        aligned: bool,
    ) -> Result<Tensor<T>> {
        let g = roi_geom("roi_align_max", self, rois, output, spatial_scale)?;
        let (x, r) = (self.data(), rois.data());
        let (hw, bins) = (g.h * g.w, g.ph * g.pw);
        let regions: Vec<AlignRoi> = r
            .chunks_exact(5)
            .map(|roi| align_roi(roi, &g, spatial_scale, sampling_ratio, aligned))
            .collect();
        let mut y = vec![T::zero(); g.k * g.c * bins];
        y.par_chunks_mut(g.c * bins)
            .enumerate()
            .for_each(|(ki, yk)| {
                let a = &regions[ki];
                for (ci, yo) in yk.chunks_exact_mut(bins).enumerate() {
                    let plane = &x[(a.batch * g.c + ci) * hw..(a.batch * g.c + ci + 1) * hw];
                    for ph in 0..g.ph {
                        for pw in 0..g.pw {
                            let mut out: Option<f64> = None;
                            for iy in 0..a.grid_h {
                                let yy = a.y0
                                    + ph as f64 * a.bin_h
                                    + (iy as f64 + 0.5) * a.bin_h / a.grid_h as f64;
                                for ix in 0..a.grid_w {
                                    let xx = a.x0
                                        + pw as f64 * a.bin_w
                                        + (ix as f64 + 0.5) * a.bin_w / a.grid_w as f64;
                                    let v = match bilinear(g.h, g.w, yy, xx) {
                                        None => 0.0,
                                        Some(t) => t
                                            .iter()
                                            .map(|&(i, wt)| (T::from_f64(wt) * plane[i]).as_f64())
                                            .fold(f64::NEG_INFINITY, f64::max),
                                    };
                                    out = Some(out.map_or(v, |o| o.max(v)));
                                }
                            }
                            yo[ph * g.pw + pw] = T::from_f64(out.unwrap_or(0.0));
                        }
                    }
                }
            });
        Tensor::from_vec(y, &[g.k, g.c, g.ph, g.pw])
    }

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
        let regions: Vec<Vec<[usize; 4]>> = r
            .chunks_exact(5)
            .map(|roi| pool_bins(roi, &g, spatial_scale))
            .collect();
        let batch: Vec<usize> = r
            .chunks_exact(5)
            .map(|roi| roi[0].as_f64() as usize)
            .collect();
        // the max of each bin, and where it is in its plane (u32::MAX for an empty bin), kept
        // only when a gradient will be asked for
        let want_grad = crate::autograd::grad_enabled() && self.requires_grad();
        let pool = |kc: usize, yo: &mut [T], mut ao: Option<&mut [u32]>| {
            let (ki, ci) = (kc / g.c, kc % g.c);
            let base = (batch[ki] * g.c + ci) * hw;
            let plane = &x[base..base + hw];
            for (o, &[hs, he, ws, we]) in regions[ki].iter().enumerate() {
                if he <= hs || we <= ws {
                    continue; // empty bin: 0, no gradient
                }
                let rows = (hs..he).map(|yy| (yy * g.w + ws, &plane[yy * g.w + ws..yy * g.w + we]));
                match ao.as_deref_mut() {
                    // the first maximum and where it is (torchvision's strict `>`)
                    Some(a) => {
                        let (mut best, mut at) = (plane[hs * g.w + ws], hs * g.w + ws);
                        for (start, row) in rows {
                            for (dx, &v) in row.iter().enumerate() {
                                if v > best {
                                    best = v;
                                    at = start + dx;
                                }
                            }
                        }
                        yo[o] = best;
                        a[o] = at as u32;
                    }
                    // the maximum alone: a branch-free select
                    None => {
                        yo[o] = rows.fold(plane[hs * g.w + ws], |m, (_, row)| {
                            row.iter().fold(m, |m, &v| if v > m { v } else { m })
                        });
                    }
                }
            }
        };
        let mut y = vec![T::zero(); g.k * g.c * bins];
        let arg = if want_grad {
            let mut arg = vec![u32::MAX; g.k * g.c * bins];
            y.par_chunks_mut(bins)
                .zip(arg.par_chunks_mut(bins))
                .enumerate()
                .for_each(|(kc, (yo, ao))| pool(kc, yo, Some(ao)));
            arg
        } else {
            y.par_chunks_mut(bins)
                .enumerate()
                .for_each(|(kc, yo)| pool(kc, yo, None));
            Vec::new()
        };
        let xlen = g.n * g.c * hw;
        let c = g.c;
        let out = Tensor::from_op(
            y,
            vec![g.k, g.c, g.ph, g.pw],
            "roi_pool",
            &[self, rois],
            move |gy, needs| {
                let gx = needs[0].then(|| {
                    let mut gx = vec![T::zero(); xlen];
                    for (kc, (a, v)) in arg.chunks(bins).zip(gy.chunks(bins)).enumerate() {
                        let base = (batch[kc / c] * c + kc % c) * hw;
                        for (&i, &v) in a.iter().zip(v) {
                            if i != u32::MAX {
                                gx[base + i as usize] += v;
                            }
                        }
                    }
                    gx
                });
                vec![gx, None]
            },
        );
        trace::record(
            Op::RoiPool {
                output,
                spatial_scale,
            },
            &[self, rois],
            &[&out],
        );
        Ok(out)
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
        let taps: Vec<AlignTaps<T>> = regions.par_iter().map(|a| align_taps(a, &g)).collect();
        let mut y = vec![T::zero(); g.k * g.c * bins];
        // a task is a region's channels: (K·C) tasks of 49 outputs cost more to schedule than to run
        y.par_chunks_mut(g.c * bins)
            .enumerate()
            .for_each(|(ki, yk)| {
                let (a, t) = (&regions[ki], &taps[ki]);
                for (ci, yo) in yk.chunks_exact_mut(bins).enumerate() {
                    let plane = &x[(a.batch * g.c + ci) * hw..(a.batch * g.c + ci + 1) * hw];
                    for (yv, bin) in yo.iter_mut().zip(t.bins()) {
                        let mut acc = T::zero();
                        for &(i, wt) in bin {
                            acc += wt * plane[i as usize];
                        }
                        *yv = acc;
                    }
                }
            });
        let xlen = g.n * g.c * hw;
        let out = Tensor::from_op(
            y,
            vec![g.k, g.c, g.ph, g.pw],
            "roi_align",
            &[self, rois],
            move |gy, needs| {
                let gx = needs[0].then(|| {
                    let mut gx = vec![T::zero(); xlen];
                    for (ki, (a, t)) in regions.iter().zip(&taps).enumerate() {
                        for ci in 0..g.c {
                            let plane = &mut gx[(a.batch * g.c + ci) * hw..][..hw];
                            let go = &gy[(ki * g.c + ci) * bins..(ki * g.c + ci + 1) * bins];
                            for (&v, bin) in go.iter().zip(t.bins()) {
                                for &(i, wt) in bin {
                                    plane[i as usize] += wt * v;
                                }
                            }
                        }
                    }
                    gx
                });
                vec![gx, None]
            },
        );
        trace::record(
            Op::RoiAlign {
                output,
                spatial_scale,
                sampling_ratio,
                aligned,
            },
            &[self, rois],
            &[&out],
        );
        Ok(out)
    }
}
