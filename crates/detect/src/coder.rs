//! The box coder of R-CNN (Girshick et al.), as torchvision's `det_utils.BoxCoder`: a target box
//! relative to a proposal P is `tx = wx·(x − Px)/Pw`, `ty = wy·(y − Py)/Ph`,
//! `tw = ww·log(w/Pw)`, `th = wh·log(h/Ph)` (centres and sizes), and decoding inverts it with
//! `tw`, `th` clamped at `log(1000/16)` so that `exp` cannot overflow.

use aics_tensor::Float;

use crate::error::{arg, Result};

/// Encodes boxes relative to proposals and decodes them back (xyxy, 4 numbers a box).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCoder {
    /// (wx, wy, ww, wh): Faster R-CNN's box head uses (10, 10, 5, 5), its RPN (1, 1, 1, 1).
    pub weights: [f64; 4],
    /// The largest `tw`, `th` decoded: log(1000/16) by default.
    pub bbox_xform_clip: f64,
}

impl BoxCoder {
    pub fn new(weights: [f64; 4]) -> Self {
        BoxCoder {
            weights,
            bbox_xform_clip: (1000.0f64 / 16.0).ln(),
        }
    }

    /// The deltas (tx, ty, tw, th) of each target box relative to its proposal; both xyxy,
    /// 4 values a box, same count.
    pub fn encode<T: Float>(&self, targets: &[T], proposals: &[T]) -> Result<Vec<T>> {
        check("BoxCoder::encode", targets, proposals)?;
        let [wx, wy, ww, wh] = self.weights.map(T::from_f64);
        let half = T::from_f64(0.5);
        let mut out = Vec::with_capacity(targets.len());
        for (g, p) in targets.chunks_exact(4).zip(proposals.chunks_exact(4)) {
            let (pw, ph) = (p[2] - p[0], p[3] - p[1]);
            let (px, py) = (p[0] + half * pw, p[1] + half * ph);
            let (gw, gh) = (g[2] - g[0], g[3] - g[1]);
            let (gx, gy) = (g[0] + half * gw, g[1] + half * gh);
            out.extend([
                wx * (gx - px) / pw,
                wy * (gy - py) / ph,
                ww * (gw / pw).ln(),
                wh * (gh / ph).ln(),
            ]);
        }
        Ok(out)
    }

    /// The boxes that `deltas` (tx, ty, tw, th) make of `boxes` (xyxy), 4 values each.
    pub fn decode<T: Float>(&self, deltas: &[T], boxes: &[T]) -> Result<Vec<T>> {
        check("BoxCoder::decode", deltas, boxes)?;
        let [wx, wy, ww, wh] = self.weights.map(T::from_f64);
        let (half, clip) = (T::from_f64(0.5), T::from_f64(self.bbox_xform_clip));
        let mut out = Vec::with_capacity(deltas.len());
        for (d, b) in deltas.chunks_exact(4).zip(boxes.chunks_exact(4)) {
            let (w, h) = (b[2] - b[0], b[3] - b[1]);
            let (cx, cy) = (b[0] + half * w, b[1] + half * h);
            let (dx, dy) = (d[0] / wx, d[1] / wy);
            let (dw, dh) = ((d[2] / ww).min(clip), (d[3] / wh).min(clip));
            let (px, py) = (dx * w + cx, dy * h + cy);
            let (pw, ph) = (dw.exp() * w, dh.exp() * h);
            let (hw, hh) = (half * pw, half * ph);
            out.extend([px - hw, py - hh, px + hw, py + hh]);
        }
        Ok(out)
    }
}

fn check<T>(op: &'static str, a: &[T], b: &[T]) -> Result<()> {
    if !a.len().is_multiple_of(4) || a.len() != b.len() {
        return Err(arg(
            op,
            format!(
                "expected two lists of boxes of 4 values each, of equal length; got {} and {} values",
                a.len(),
                b.len()
            ),
        ));
    }
    Ok(())
}
