//! MediaPipe's BlazeFace short-range face detector, after its network: the 896 anchors of its
//! two heads decoded into face boxes with six key points each, and overlapping detections
//! blended by score (MediaPipe's weighted non-maximum suppression).
//!
//! The network (128×128 RGB in [-1, 1], N×H×W×3) ends in two heads: 16×16 cells with 2 anchors
//! each (512) and 8×8 cells with 6 anchors each (384). Each anchor gives a score logit and 16
//! numbers: the box centre offset (x, y) and size (w, h), then six key points (x, y), all in
//! input pixels relative to the anchor, the centre of its cell.

use crate::error::{DetectError, Result};

/// The network's input size.
pub const INPUT: usize = 128;

/// A face in the network's input, coordinates in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct BlazeFace {
    /// (x_min, y_min, x_max, y_max).
    pub bbox: [f32; 4],
    pub score: f32,
    /// Right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion.
    pub keypoints: [(f32, f32); 6],
}

/// One head's raw outputs: `scores` (cells² · anchors logits) and `boxes` (16 numbers each).
pub struct Head<'a> {
    pub scores: &'a [f32],
    pub boxes: &'a [f32],
    pub cells: usize,
    pub anchors: usize,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-100.0, 100.0)).exp())
}

/// The faces of both heads whose score exceeds `threshold`, in anchor order.
pub fn decode(heads: &[Head], threshold: f32) -> Result<Vec<BlazeFace>> {
    let mut out = Vec::new();
    let scale = 1.0 / INPUT as f32;
    for h in heads {
        let n = h.cells * h.cells * h.anchors;
        if h.scores.len() != n || h.boxes.len() != 16 * n {
            return Err(DetectError::Arg {
                op: "blazeface::decode",
                msg: format!(
                "BlazeFace head of {}×{} cells × {} anchors: {} scores and {} box values, expected {n} and {}",
                h.cells,
                h.cells,
                h.anchors,
                h.scores.len(),
                h.boxes.len(),
                16 * n
                ),
            });
        }
        for cy in 0..h.cells {
            for cx in 0..h.cells {
                let ax = (cx as f32 + 0.5) / h.cells as f32;
                let ay = (cy as f32 + 0.5) / h.cells as f32;
                for k in 0..h.anchors {
                    let i = (cy * h.cells + cx) * h.anchors + k;
                    let score = sigmoid(h.scores[i]);
                    if score <= threshold {
                        continue;
                    }
                    let b = &h.boxes[16 * i..16 * i + 16];
                    let (x, y) = (ax + b[0] * scale, ay + b[1] * scale);
                    let (w, hh) = (b[2] * scale, b[3] * scale);
                    let mut keypoints = [(0.0, 0.0); 6];
                    for (j, kp) in keypoints.iter_mut().enumerate() {
                        *kp = (ax + b[4 + 2 * j] * scale, ay + b[5 + 2 * j] * scale);
                    }
                    out.push(BlazeFace {
                        bbox: [x - w / 2.0, y - hh / 2.0, x + w / 2.0, y + hh / 2.0],
                        score,
                        keypoints,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Weighted non-maximum suppression: in descending score, each face takes in the remaining
/// ones that overlap it by at least `iou_threshold` (MediaPipe: 0.3), and the group becomes one
/// face whose box and key points are the score-weighted means and whose score is the best.
pub fn blend(mut faces: Vec<BlazeFace>, iou_threshold: f32) -> Vec<BlazeFace> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut used = vec![false; faces.len()];
    let mut out = Vec::new();
    for i in 0..faces.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let mut group = vec![i];
        for j in i + 1..faces.len() {
            if !used[j] && iou(&faces[i].bbox, &faces[j].bbox) >= iou_threshold {
                used[j] = true;
                group.push(j);
            }
        }
        let total: f32 = group.iter().map(|&g| faces[g].score).sum();
        let mut bbox = [0f32; 4];
        let mut keypoints = [(0f32, 0f32); 6];
        for &g in &group {
            let w = faces[g].score / total;
            for (o, v) in bbox.iter_mut().zip(faces[g].bbox) {
                *o += w * v;
            }
            for (o, v) in keypoints.iter_mut().zip(faces[g].keypoints) {
                o.0 += w * v.0;
                o.1 += w * v.1;
            }
        }
        out.push(BlazeFace {
            bbox,
            score: faces[i].score,
            keypoints,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_cell_centres_and_offsets_are_input_pixels() {
        // one confident anchor: cell (3, 5) of the 16×16 head, its second anchor, moved by
        // (+6.4, −12.8) px with a 32×16 px box
        let mut s16 = vec![-10.0f32; 512];
        let mut b16 = vec![0.0f32; 512 * 16];
        let i = (5 * 16 + 3) * 2 + 1;
        s16[i] = 3.0;
        b16[16 * i..16 * i + 4].copy_from_slice(&[6.4, -12.8, 32.0, 16.0]);
        b16[16 * i + 4] = 1.28; // first key point: 1 % of the input right of the anchor
        let (s8, b8) = (vec![-10.0f32; 384], vec![0.0f32; 384 * 16]);
        let heads = [
            Head {
                scores: &s16,
                boxes: &b16,
                cells: 16,
                anchors: 2,
            },
            Head {
                scores: &s8,
                boxes: &b8,
                cells: 8,
                anchors: 6,
            },
        ];
        let faces = decode(&heads, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        let (cx, cy) = (3.5 / 16.0 + 0.05, 5.5 / 16.0 - 0.1);
        let want = [cx - 0.125, cy - 0.0625, cx + 0.125, cy + 0.0625];
        for (g, w) in f.bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?} against {want:?}", f.bbox);
        }
        assert!((f.score - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
        assert!((f.keypoints[0].0 - (3.5 / 16.0 + 0.01)).abs() < 1e-6);
        assert!((f.keypoints[1].1 - 5.5 / 16.0).abs() < 1e-6);
        // a head of the wrong size is an error, not a panic
        let short = [Head {
            scores: &s16[..10],
            boxes: &b16,
            cells: 16,
            anchors: 2,
        }];
        assert!(decode(&short, 0.5).is_err());
    }

    #[test]
    fn overlapping_faces_blend_by_score_and_apart_ones_stay() {
        let face = |x: f32, score: f32| BlazeFace {
            bbox: [x, 0.0, x + 0.2, 0.2],
            score,
            keypoints: [(x, 0.0); 6],
        };
        let out = blend(vec![face(0.0, 0.6), face(0.02, 0.9), face(0.6, 0.7)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let x = (0.9 * 0.02 + 0.6 * 0.0) / 1.5;
        assert!((out[0].bbox[0] - x).abs() < 1e-6, "{:?}", out[0].bbox);
        assert!((out[0].keypoints[3].0 - x).abs() < 1e-6);
        assert_eq!(out[1].bbox[0], 0.6);
    }
}
