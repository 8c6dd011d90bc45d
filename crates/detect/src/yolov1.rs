//! The YOLOv1 training loss (Redmon et al. 2016), as darknet's `[detection]` layer computes it
//! in training: a sum of squares over the output `[S²·C class probabilities][S²·B confidences]
//! [S²·B·4 boxes]` with
//!
//! * every confidence pulled to 0 with weight λnoobj (0.5);
//! * in a cell that holds an object: the class probabilities pulled to the one-hot class
//!   (weight 1); of its B predictors the *responsible* one (the highest IoU with the object; when
//!   none overlaps it, the smallest RMSE of the box coordinates) has its confidence pulled to 1
//!   (or to its IoU, `rescore`) with weight λobj (1) and its box pulled to the object's with
//!   weight λcoord (5): x and y as offsets in the cell, √w and √h (`sqrt=1`).
//!
//! The loss is `½ Σ λ·(target − output)²`, whose gradient is exactly the negative of darknet's
//! `delta`; [`Yolov1Loss::darknet_cost`] is darknet's reported cost `Σ (λ·(target − output))²`.
//! Targets are made as darknet's `fill_truth_region` makes them: an object belongs to the cell
//! holding its centre, the first object listed in a cell is the only one that cell learns (darknet
//! shuffles the list first), and boxes under 0.5% of the image in width or height are skipped.

use aics_tensor::Tensor;

use crate::darknet::DetectionHead;
use crate::error::{arg, Result};

/// One ground-truth object: class, and centre x, y, width, height relative to the image (0–1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V1Object {
    pub class: usize,
    pub bbox: [f32; 4],
}

/// The weights of the loss terms (darknet's `object_scale`, `noobject_scale`, `class_scale`,
/// `coord_scale`) and whether the confidence target is the IoU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yolov1Scales {
    pub object: f32,
    pub noobject: f32,
    pub class: f32,
    pub coord: f32,
    pub rescore: bool,
}

impl Default for Yolov1Scales {
    /// The paper's λcoord = 5, λnoobj = 0.5; darknet's `rescore=1`.
    fn default() -> Self {
        Yolov1Scales {
            object: 1.0,
            noobject: 0.5,
            class: 1.0,
            coord: 5.0,
            rescore: true,
        }
    }
}

/// The loss of a batch and what it was made of.
pub struct Yolov1Loss {
    /// `½ Σ λ·(target − output)²` (a scalar tensor in the output's graph).
    pub loss: Tensor,
    /// darknet's `delta`: `λ·(target − output)` per output value (the negative gradient).
    pub delta: Vec<f32>,
    /// Mean IoU of the responsible predictors with their objects.
    pub avg_iou: f32,
    /// Objects learned (one per occupied cell).
    pub count: usize,
}

impl Yolov1Loss {
    /// darknet's reported cost, `Σ delta²`.
    pub fn darknet_cost(&self) -> f32 {
        self.delta.iter().map(|d| d * d).sum()
    }
}

/// darknet's `box_iou` on centre boxes, in `f32`.
fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    crate::yolo::center_iou(&a, &b)
}

fn rmse(a: [f32; 4], b: [f32; 4]) -> f32 {
    let s: f64 = (0..4).map(|k| ((a[k] - b[k]) as f64).powi(2)).sum();
    s.sqrt() as f32
}

/// A cell's object: class and darknet's truth box `(x − col, y − row, w, h)`.
pub type CellTarget = (usize, [f32; 4]);

/// Per cell of one image: the object it learns, as darknet's truth
/// `(class, x − col, y − row (in cells), w, h)`.
pub fn cell_targets(head: &DetectionHead, objects: &[V1Object]) -> Result<Vec<Option<CellTarget>>> {
    let s = head.side;
    let mut cells: Vec<Option<CellTarget>> = vec![None; s * s];
    for o in objects {
        let [x, y, w, h] = o.bbox;
        if o.class >= head.classes {
            return Err(arg(
                "yolov1_loss",
                format!("class {} of {} classes", o.class, head.classes),
            ));
        }
        if !(x.is_finite() && y.is_finite() && w.is_finite() && h.is_finite())
            || w <= 0.0
            || h <= 0.0
        {
            return Err(arg(
                "yolov1_loss",
                format!("object box {:?} must be finite with positive size", o.bbox),
            ));
        }
        if w < 0.005 || h < 0.005 {
            continue; // darknet skips boxes under half a percent of the image
        }
        let col = ((x * s as f32) as isize).clamp(0, s as isize - 1) as usize;
        let row = ((y * s as f32) as isize).clamp(0, s as isize - 1) as usize;
        let cell = &mut cells[row * s + col];
        if cell.is_none() {
            *cell = Some((
                o.class,
                [x * s as f32 - col as f32, y * s as f32 - row as f32, w, h],
            ));
        }
    }
    Ok(cells)
}

/// The YOLOv1 loss of `out` (N, S²·(C + 5B)), the raw `[detection]` output, for the objects of
/// each image.
pub fn yolov1_loss(
    out: &Tensor,
    head: &DetectionHead,
    objects: &[Vec<V1Object>],
    sc: Yolov1Scales,
) -> Result<Yolov1Loss> {
    let (s, b, c) = (head.side, head.num, head.classes);
    let cells = s * s;
    let per = cells * (c + 5 * b);
    let shape = out.shape();
    let n = shape.first().copied().unwrap_or(0);
    if shape.len() < 2 || shape[1..].iter().product::<usize>() != per || objects.len() != n {
        return Err(arg(
            "yolov1_loss",
            format!(
                "output {shape:?} for {} images, expected (N, {per})",
                objects.len()
            ),
        ));
    }
    if head.coords != 4 {
        return Err(arg(
            "yolov1_loss",
            format!("coords={} (4 expected)", head.coords),
        ));
    }
    let o = out.detach().to_vec();
    let mut target = o.clone();
    let mut weight = vec![0f32; o.len()];
    let mut delta = vec![0f32; o.len()];
    let (mut iou_sum, mut count) = (0f32, 0usize);
    for (im, objs) in objects.iter().enumerate() {
        let base = im * per;
        let truth = cell_targets(head, objs)?;
        for (i, t) in truth.iter().enumerate() {
            for j in 0..b {
                let p = base + cells * c + i * b + j;
                target[p] = 0.0;
                weight[p] = sc.noobject;
            }
            let Some((cls, tb)) = *t else { continue };
            for j in 0..c {
                let q = base + i * c + j;
                target[q] = if j == cls { 1.0 } else { 0.0 };
                weight[q] = sc.class;
            }
            let tbox = [tb[0] / s as f32, tb[1] / s as f32, tb[2], tb[3]];
            let pred = |j: usize| {
                let bi = base + cells * (c + b) + (i * b + j) * 4;
                let mut v = [o[bi] / s as f32, o[bi + 1] / s as f32, o[bi + 2], o[bi + 3]];
                if head.sqrt {
                    v[2] *= v[2];
                    v[3] *= v[3];
                }
                v
            };
            let (mut best, mut best_iou, mut best_rmse) = (None, 0f32, 20f32);
            for j in 0..b {
                let (u, r) = (iou(pred(j), tbox), rmse(pred(j), tbox));
                if best_iou > 0.0 || u > 0.0 {
                    if u > best_iou {
                        best_iou = u;
                        best = Some(j);
                    }
                } else if r < best_rmse {
                    best_rmse = r;
                    best = Some(j);
                }
            }
            // darknet indexes with -1 when nothing qualifies; that cannot happen with finite
            // outputs (an RMSE below 20), and such a cell is skipped here
            let Some(j) = best else { continue };
            let u = iou(pred(j), tbox);
            let p = base + cells * c + i * b + j;
            target[p] = if sc.rescore { u } else { 1.0 };
            weight[p] = sc.object;
            let bi = base + cells * (c + b) + (i * b + j) * 4;
            let (tw, th) = if head.sqrt {
                (tb[2].sqrt(), tb[3].sqrt())
            } else {
                (tb[2], tb[3])
            };
            for (k, v) in [tb[0], tb[1], tw, th].into_iter().enumerate() {
                target[bi + k] = v;
                weight[bi + k] = sc.coord;
            }
            iou_sum += u;
            count += 1;
        }
    }
    for k in 0..o.len() {
        delta[k] = weight[k] * (target[k] - o[k]);
    }
    let t = Tensor::from_vec(target, shape)?;
    let w = Tensor::from_vec(weight, shape)?;
    let loss = out.sub(&t)?.square().mul(&w)?.sum().mul_scalar(0.5);
    Ok(Yolov1Loss {
        loss,
        delta,
        avg_iou: if count > 0 {
            iou_sum / count as f32
        } else {
            0.0
        },
        count,
    })
}
