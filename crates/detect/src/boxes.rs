//! Box operators with torchvision's semantics (`torchvision.ops.boxes`). Boxes are (N, 4)
//! tensors; the differentiable ones (conversions, areas, IoU, GIoU, clipping) are written with
//! tensor ops, so their gradients come from autograd. Areas have no +1: a box from x1 to x2 is
//! x2 − x1 wide.

use aics_tensor::{Float, Tensor};

use crate::error::{arg, Result};

/// How a box's four numbers are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxFormat {
    /// corners: x1, y1, x2, y2
    Xyxy,
    /// corner and size: x1, y1, w, h (COCO's)
    Xywh,
    /// centre and size: cx, cy, w, h
    Cxcywh,
}

/// Check `b` is (N, 4) and return N.
fn rows<T: Float>(op: &'static str, b: &Tensor<T>) -> Result<usize> {
    match b.shape() {
        [n, 4] => Ok(*n),
        s => Err(arg(op, format!("boxes must be (N, 4), got {s:?}"))),
    }
}

/// Column `i` of (N, 4) boxes as (N, 1).
fn col<T: Float>(b: &Tensor<T>, i: usize) -> Result<Tensor<T>> {
    Ok(b.narrow(1, i, 1)?)
}

/// Boxes from `from` to `to` (torchvision's `box_convert`).
pub fn box_convert<T: Float>(b: &Tensor<T>, from: BoxFormat, to: BoxFormat) -> Result<Tensor<T>> {
    rows("box_convert", b)?;
    if from == to {
        return Ok(b.clone());
    }
    let (a, c, d, e) = (col(b, 0)?, col(b, 1)?, col(b, 2)?, col(b, 3)?);
    // to corners first
    let (x1, y1, x2, y2) = match from {
        BoxFormat::Xyxy => (a, c, d, e),
        BoxFormat::Xywh => {
            let (x2, y2) = (a.add(&d)?, c.add(&e)?);
            (a, c, x2, y2)
        }
        BoxFormat::Cxcywh => {
            let (hw, hh) = (d.mul_scalar(0.5), e.mul_scalar(0.5));
            (a.sub(&hw)?, c.sub(&hh)?, a.add(&hw)?, c.add(&hh)?)
        }
    };
    let out = match to {
        BoxFormat::Xyxy => [x1, y1, x2, y2],
        BoxFormat::Xywh => {
            let (w, h) = (x2.sub(&x1)?, y2.sub(&y1)?);
            [x1, y1, w, h]
        }
        BoxFormat::Cxcywh => {
            let (w, h) = (x2.sub(&x1)?, y2.sub(&y1)?);
            let cx = x1.add(&x2)?.mul_scalar(0.5);
            let cy = y1.add(&y2)?.mul_scalar(0.5);
            [cx, cy, w, h]
        }
    };
    Ok(Tensor::concat(&[&out[0], &out[1], &out[2], &out[3]], 1)?)
}

/// Areas of (N, 4) xyxy boxes → (N).
pub fn box_area<T: Float>(b: &Tensor<T>) -> Result<Tensor<T>> {
    let n = rows("box_area", b)?;
    let w = col(b, 2)?.sub(&col(b, 0)?)?;
    let h = col(b, 3)?.sub(&col(b, 1)?)?;
    Ok(w.mul(&h)?.reshape(&[n])?)
}

/// Intersections and unions of every pair of `a` (N, 4) and `b` (M, 4) xyxy boxes, both
/// (N, M), and the boxes' corners laid out for pairing: `a` as (N, 1, 2), `b` as (1, M, 2).
struct Pairs<T: Float> {
    inter: Tensor<T>,
    union: Tensor<T>,
    a_lo: Tensor<T>,
    a_hi: Tensor<T>,
    b_lo: Tensor<T>,
    b_hi: Tensor<T>,
}

/// The areas (N, M) of the (N, M, 2) corner differences `lo`..`hi`, empty ones 0.
fn pair_areas<T: Float>(lo: &Tensor<T>, hi: &Tensor<T>, n: usize, m: usize) -> Result<Tensor<T>> {
    let wh = hi.sub(lo)?.clamp(0.0, f64::INFINITY); // [N,M,2]
    Ok(wh
        .narrow(2, 0, 1)?
        .mul(&wh.narrow(2, 1, 1)?)?
        .reshape(&[n, m])?)
}

fn pairs<T: Float>(op: &'static str, a: &Tensor<T>, b: &Tensor<T>) -> Result<Pairs<T>> {
    let (n, m) = (rows(op, a)?, rows(op, b)?);
    let (area_a, area_b) = (box_area(a)?, box_area(b)?);
    let a_lo = a.narrow(1, 0, 2)?.reshape(&[n, 1, 2])?; // [N,1,2]
    let a_hi = a.narrow(1, 2, 2)?.reshape(&[n, 1, 2])?;
    let b_lo = b.narrow(1, 0, 2)?.reshape(&[1, m, 2])?; // [1,M,2]
    let b_hi = b.narrow(1, 2, 2)?.reshape(&[1, m, 2])?;
    // the overlaps: [N,M,2] corners
    let inter = pair_areas(&a_lo.maximum(&b_lo)?, &a_hi.minimum(&b_hi)?, n, m)?; // [N,M]
    let union = area_a
        .reshape(&[n, 1])?
        .add(&area_b.reshape(&[1, m])?)?
        .sub(&inter)?; // [N,M]
    Ok(Pairs {
        inter,
        union,
        a_lo,
        a_hi,
        b_lo,
        b_hi,
    })
}

/// Pairwise IoU of `a` (N, 4) and `b` (M, 4) xyxy boxes → (N, M) (torchvision's `box_iou`).
pub fn box_iou<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let p = pairs("box_iou", a, b)?;
    Ok(p.inter.div(&p.union)?)
}

/// Pairwise generalized IoU, `IoU − (C − U) / C` with C the area of the smallest box enclosing
/// both (Rezatofighi et al.) → (N, M).
pub fn generalized_box_iou<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let p = pairs("generalized_box_iou", a, b)?;
    let (n, m) = (a.shape()[0], b.shape()[0]);
    let iou = p.inter.div(&p.union)?;
    // the enclosing boxes
    let area = pair_areas(&p.a_lo.minimum(&p.b_lo)?, &p.a_hi.maximum(&p.b_hi)?, n, m)?;
    Ok(iou.sub(&area.sub(&p.union)?.div(&area)?)?)
}

/// Clip xyxy boxes to an image of `(height, width)`: x into [0, width], y into [0, height].
pub fn clip_boxes_to_image<T: Float>(b: &Tensor<T>, (h, w): (usize, usize)) -> Result<Tensor<T>> {
    rows("clip_boxes_to_image", b)?;
    let (w, h) = (w as f64, h as f64);
    let x1 = col(b, 0)?.clamp(0.0, w);
    let y1 = col(b, 1)?.clamp(0.0, h);
    let x2 = col(b, 2)?.clamp(0.0, w);
    let y2 = col(b, 3)?.clamp(0.0, h);
    Ok(Tensor::concat(&[&x1, &y1, &x2, &y2], 1)?)
}

/// Indices of the xyxy boxes whose width and height are both at least `min_size`.
pub fn remove_small_boxes<T: Float>(b: &Tensor<T>, min_size: f64) -> Result<Vec<usize>> {
    rows("remove_small_boxes", b)?;
    let d = b.data();
    Ok(d.chunks_exact(4)
        .enumerate()
        .filter(|(_, r)| (r[2] - r[0]).as_f64() >= min_size && (r[3] - r[1]).as_f64() >= min_size)
        .map(|(i, _)| i)
        .collect())
}

/// Check boxes (N, 4) and scores (N) of NMS, and return N.
fn nms_args<T: Float>(op: &'static str, b: &Tensor<T>, scores: &[T]) -> Result<usize> {
    let n = rows(op, b)?;
    if scores.len() != n {
        return Err(arg(op, format!("{} scores for {n} boxes", scores.len())));
    }
    Ok(n)
}

/// Non-maximum suppression, as `torchvision.ops.nms`: visit boxes in decreasing score and keep
/// each one whose IoU with every box kept before it is at most `iou_threshold` (a box is
/// suppressed by IoU strictly above it). Equal scores are visited in index order (a stable
/// sort), as torchvision's CPU kernel does. Areas have no +1. Returns the kept indices in
/// decreasing score.
pub fn nms<T: Float>(boxes: &Tensor<T>, scores: &[T], iou_threshold: f64) -> Result<Vec<usize>> {
    nms_args("nms", boxes, scores)?;
    Ok(nms_kernel(&boxes.data(), scores, iou_threshold))
}

/// Decreasing score, NaN scores last (a stable sort keeps equal scores in index order).
fn by_score<T: Float>(scores: &[T], i: usize, j: usize) -> std::cmp::Ordering {
    scores[j]
        .partial_cmp(&scores[i])
        .unwrap_or_else(|| scores[i].is_nan().cmp(&scores[j].is_nan()))
}

/// IoU of two xyxy boxes in f32, computed as `box_iou` computes each entry (no +1).
pub fn pair_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// The NMS loop over xyxy boxes `b` (4 values each) and their scores. The boxes are gathered
/// in visiting order into one array per coordinate, so that the inner loop, which marks every
/// later box overlapping a kept one, runs without branches over contiguous data.
fn nms_kernel<T: Float>(b: &[T], scores: &[T], iou_threshold: f64) -> Vec<usize> {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    // decreasing score, stable: ties keep index order (NaN scores go last)
    order.sort_by(|&i, &j| by_score(scores, i, j));
    let coord = |k: usize| order.iter().map(|&i| b[4 * i + k]).collect::<Vec<T>>();
    let (x1, y1, x2, y2) = (coord(0), coord(1), coord(2), coord(3));
    let area: Vec<T> = (0..n).map(|p| (x2[p] - x1[p]) * (y2[p] - y1[p])).collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for p in 0..n {
        if suppressed[p] {
            continue;
        }
        keep.push(order[p]);
        let (ix1, iy1, ix2, iy2, ia) = (x1[p], y1[p], x2[p], y2[p], area[p]);
        let rest = p + 1..n;
        for (((((s, &jx1), &jy1), &jx2), &jy2), &ja) in suppressed[rest.clone()]
            .iter_mut()
            .zip(&x1[rest.clone()])
            .zip(&y1[rest.clone()])
            .zip(&x2[rest.clone()])
            .zip(&y2[rest.clone()])
            .zip(&area[rest])
        {
            let w = (ix2.min(jx2) - ix1.max(jx1)).max(T::zero());
            let h = (iy2.min(jy2) - iy1.max(jy1)).max(T::zero());
            let inter = w * h;
            let ovr = inter / (ia + ja - inter);
            // compared in f64, as torchvision compares its float IoU with a double threshold;
            // a box already suppressed stays so
            *s |= ovr.as_f64() > iou_threshold;
        }
    }
    keep
}

/// NMS within each class (`idxs[i]` is box i's class), as `torchvision.ops.batched_nms` on the
/// CPU: up to 1000 boxes, the boxes of each class are moved apart by the class index times one
/// more than the largest coordinate, so that boxes of different classes never overlap, then
/// one NMS runs; above that, NMS runs class by class. Returns kept indices in decreasing score.
pub fn batched_nms<T: Float>(
    boxes: &Tensor<T>,
    scores: &[T],
    idxs: &[usize],
    iou_threshold: f64,
) -> Result<Vec<usize>> {
    let n = nms_args("batched_nms", boxes, scores)?;
    if idxs.len() != n {
        return Err(arg(
            "batched_nms",
            format!("{} class indices for {n} boxes", idxs.len()),
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let b = boxes.data();
    if 4 * n > 4000 {
        // torchvision's CPU path for many boxes: NMS class by class on the boxes as they are,
        // the kept ones merged in decreasing score
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &c) in idxs.iter().enumerate() {
            groups.entry(c).or_default().push(i);
        }
        let mut keep = Vec::new();
        for members in groups.into_values() {
            let sub: Vec<T> = members
                .iter()
                .flat_map(|&i| b[4 * i..4 * i + 4].to_vec())
                .collect();
            let s: Vec<T> = members.iter().map(|&i| scores[i]).collect();
            keep.extend(
                nms_kernel(&sub, &s, iou_threshold)
                    .into_iter()
                    .map(|k| members[k]),
            );
        }
        keep.sort_by(|&i, &j| by_score(scores, i, j).then(i.cmp(&j)));
        return Ok(keep);
    }
    let max = b.iter().copied().fold(T::neg_infinity(), |m, v| m.max(v));
    let moved: Vec<T> = b
        .chunks_exact(4)
        .zip(idxs)
        .flat_map(|(r, &c)| {
            let off = T::from_usize(c) * (max + T::one());
            r.iter().map(move |&v| v + off)
        })
        .collect();
    Ok(nms_kernel(&moved, scores, iou_threshold))
}

/// ONNX's `NonMaxSuppression` over a batch: `boxes` (B, N, 4) and `scores` (B, C, N), each class
/// of each image on its own. Boxes are two opposite corners in either order, `[y1, x1, y2, x2]`
/// (IoU does not care which axis is which), or `[cx, cy, w, h]` with `center_point_box`. Boxes
/// scoring at most `score_threshold` are dropped, NMS suppresses IoU strictly above
/// `iou_threshold`, and at most `max_per_class` boxes are kept a class (none when 0). Returns
/// `(batch, class, box)` triples, image by image, class by class, in decreasing score.
pub fn non_max_suppression<T: Float>(
    boxes: &Tensor<T>,
    scores: &Tensor<T>,
    max_per_class: usize,
    iou_threshold: f64,
    score_threshold: Option<f64>,
    center_point_box: bool,
) -> Result<Vec<[usize; 3]>> {
    let op = "non_max_suppression";
    let (&[nb, n, 4], &[sb, c, sn]) = (boxes.shape(), scores.shape()) else {
        return Err(arg(
            op,
            format!(
                "boxes must be (B, N, 4) and scores (B, C, N); got {:?} and {:?}",
                boxes.shape(),
                scores.shape()
            ),
        ));
    };
    if sb != nb || sn != n {
        return Err(arg(
            op,
            format!(
                "scores {:?} do not fit boxes {:?}",
                scores.shape(),
                boxes.shape()
            ),
        ));
    }
    let (bd, sd) = (boxes.data(), scores.data());
    let half = T::from_f64(0.5);
    let mut out = Vec::new();
    for bi in 0..nb {
        // corners, lower first
        let corners: Vec<T> = bd[bi * n * 4..(bi + 1) * n * 4]
            .chunks_exact(4)
            .flat_map(|r| {
                if center_point_box {
                    let (hw, hh) = (r[2] * half, r[3] * half);
                    [r[0] - hw, r[1] - hh, r[0] + hw, r[1] + hh]
                } else {
                    [
                        r[0].min(r[2]),
                        r[1].min(r[3]),
                        r[0].max(r[2]),
                        r[1].max(r[3]),
                    ]
                }
            })
            .collect();
        for ci in 0..c {
            let s = &sd[(bi * c + ci) * n..(bi * c + ci + 1) * n];
            let cand: Vec<usize> = (0..n)
                .filter(|&i| score_threshold.is_none_or(|t| s[i].as_f64() > t))
                .collect();
            let cb: Vec<T> = cand
                .iter()
                .flat_map(|&i| corners[4 * i..4 * i + 4].iter().copied())
                .collect();
            let cs: Vec<T> = cand.iter().map(|&i| s[i]).collect();
            let kept = nms_kernel(&cb, &cs, iou_threshold);
            out.extend(
                kept.into_iter()
                    .take(max_per_class)
                    .map(|k| [bi, ci, cand[k]]),
            );
        }
    }
    Ok(out)
}

/// Matches detections `a` (boxes, scores, labels) to `b` one to one: each of `a`'s in turn to
/// the closest unmatched of `b` with its label. The largest box difference relative to the
/// largest coordinate, or score difference relative to the largest score; an error when the
/// counts differ, a value is not finite or a detection has no partner of its label.
pub fn match_detections(a: (&[f32], &[f32], &[f32]), b: (&[f32], &[f32], &[f32])) -> Result<f64> {
    let n = a.1.len();
    let op = "match_detections";
    if b.1.len() != n
        || a.0.len() != 4 * n
        || b.0.len() != 4 * n
        || a.2.len() != n
        || b.2.len() != n
    {
        return Err(arg(
            op,
            format!(
                "{n} detections against {} (or boxes and labels of other counts)",
                b.1.len()
            ),
        ));
    }
    // checked here: the maxima below would pass over a NaN
    for (side, (bx, sc, lb)) in [("first", a), ("second", b)] {
        if let Some(i) = (0..n).find(|&i| {
            !(sc[i].is_finite()
                && lb[i].is_finite()
                && bx[4 * i..4 * i + 4].iter().all(|v| v.is_finite()))
        }) {
            return Err(arg(
                op,
                format!("detection {i} of the {side} list: a value is not finite"),
            ));
        }
    }
    let big = |v: &[f32]| v.iter().fold(1e-6f64, |m, &x| m.max((x as f64).abs()));
    let (bs, ss) = (big(a.0), big(a.1));
    let mut used = vec![false; n];
    let mut worst = 0.0f64;
    for i in 0..n {
        let diff = |j: usize| {
            let db = (0..4)
                .map(|k| (a.0[4 * i + k] as f64 - b.0[4 * j + k] as f64).abs())
                .fold(0.0, f64::max)
                / bs;
            db.max((a.1[i] as f64 - b.1[j] as f64).abs() / ss)
        };
        let best = (0..n)
            .filter(|&j| !used[j] && a.2[i] == b.2[j])
            .map(|j| (j, diff(j)))
            .min_by(|x, y| x.1.total_cmp(&y.1));
        let Some((j, d)) = best else {
            return Err(arg(
                op,
                format!("detection {i} (label {}) has no partner", a.2[i]),
            ));
        };
        used[j] = true;
        worst = worst.max(d);
    }
    Ok(worst)
}
