//! A two-stage detector (Faster R-CNN) as one ONNX graph: the traced networks of its two stages
//! joined by the steps between and after them, whose sizes depend on the data, written as ONNX
//! ops (TopK, NonZero, NonMaxSuppression, RoiAlign …) with torchvision's semantics:
//!
//! 1. the first network (traced): the image to the region proposal network's objectness and
//!    box deltas at each level, and the feature maps the second stage pools from;
//! 2. the proposal layer: per level the `pre_nms_top_n` best anchors, decoded and clipped to
//!    the image, then those too small or scoring too low dropped, NMS within each level (the
//!    boxes moved apart by level, as torchvision's `batched_nms`), the `post_nms_top_n` best kept;
//! 3. each proposal pooled from the pyramid level its size picks (torchvision's
//!    `MultiScaleRoIAlign`; ROI max pooling for Fast R-CNN's head);
//! 4. the second network (traced, the count of proposals symbolic): class logits and per-class
//!    box deltas;
//! 5. the post-processing: softmax, per-class boxes decoded and clipped, those scoring at most
//!    `score_thresh` or smaller than 0.01 pixel dropped, NMS within each class, the best
//!    `detections` kept.
//!
//! The graph takes one image already resized, (1, 3, H, W) (the first network may normalize
//! it; `aics export` puts the model's normalization there), and gives `boxes`
//! (D, 4) in its pixels (x1, y1, x2, y2), `scores` (D) and `labels` (D, int64; 0 is the
//! background). Inside it, `proposals` (K, 4) are the proposal layer's boxes and
//! `roi_heads/pooled` (K, C, S, S) their pooled features.

use std::collections::HashSet;

use crate::error::{OnnxError, Result};
use crate::export::{f32_tensor, float, i64_tensor, int, ints, string};
use crate::proto::{dtype, AttrValue, Attribute, Dim, Graph, Model, Node, Tensor, ValueInfo};

/// What joins the two networks: the anchors, the proposal layer's and the post-processing's
/// settings, and how proposals are pooled.
#[derive(Clone, Debug)]
pub struct TwoStage {
    /// The input image's (H, W).
    pub image: (usize, usize),
    /// The RPN's levels, finest first.
    pub levels: Vec<RpnLevel>,
    pub pre_nms_top_n: usize,
    pub post_nms_top_n: usize,
    pub rpn_nms_thresh: f64,
    pub rpn_score_thresh: f64,
    pub min_size: f64,
    /// The RPN's box coder: weights (x, y, w, h) and the clamp of the log-size deltas.
    pub rpn_weights: [f64; 4],
    pub rpn_clip: f64,
    /// The pooled levels' scales (feature side / image side), finest first; −log2 of each is
    /// its level in the canonical mapping.
    pub pool_scales: Vec<f64>,
    pub pool_output: usize,
    pub sampling_ratio: i64,
    /// ROI max pooling instead of ROI align.
    pub max_pool: bool,
    pub box_weights: [f64; 4],
    pub box_clip: f64,
    /// Classes, the background included.
    pub classes: usize,
    pub score_thresh: f64,
    pub nms_thresh: f64,
    pub detections: usize,
}

/// One RPN level: its grid, and its anchors (x1, y1, x2, y2) in (y, x, anchor) order.
#[derive(Clone, Debug)]
pub struct RpnLevel {
    pub anchors_per_location: usize,
    pub height: usize,
    pub width: usize,
    pub anchors: Vec<[f32; 4]>,
}

fn err(msg: impl Into<String>) -> OnnxError {
    OnnxError::Export(msg.into())
}

/// Nodes and initializers added to a graph, with fresh names under a prefix.
struct Build<'a> {
    g: &'a mut Graph,
    count: usize,
}

impl Build<'_> {
    fn fresh(&mut self, base: &str) -> String {
        self.count += 1;
        format!("two_stage/{base}_{}", self.count)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attribute>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, attrs, &[&out]);
        out
    }

    fn node_to(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attribute>, outs: &[&str]) {
        let name = self.fresh(op);
        self.g.nodes.push(Node {
            name,
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outs.iter().map(|s| s.to_string()).collect(),
            attributes: attrs,
        });
    }

    fn f32s(&mut self, shape: &[usize], v: &[f32]) -> String {
        let name = self.fresh("const");
        self.g.initializers.push(f32_tensor(&name, shape, v));
        name
    }

    fn scalar(&mut self, v: f32) -> String {
        self.f32s(&[], &[v])
    }

    fn i64s(&mut self, v: &[i64]) -> String {
        let name = self.fresh("const");
        self.g.initializers.push(i64_tensor(&name, v));
        name
    }

    fn i64_scalar(&mut self, v: i64) -> String {
        let name = self.fresh("const");
        let mut t = i64_tensor(&name, &[v]);
        t.dims.clear();
        self.g.initializers.push(t);
        name
    }

    /// Column `i` of the last axis of `x` (that axis dropped).
    fn col(&mut self, x: &str, i: i64) -> String {
        let k = self.i64_scalar(i);
        self.node("Gather", &[x, &k], vec![int("axis", -1)])
    }

    /// The indices where `mask` (1-D bool) holds, 1-D.
    fn select(&mut self, mask: &str) -> String {
        let nz = self.node("NonZero", &[mask], vec![]);
        let flat = self.i64s(&[-1]);
        self.node("Reshape", &[&nz, &flat], vec![])
    }

    fn gather(&mut self, x: &str, idx: &str) -> String {
        self.node("Gather", &[x, idx], vec![int("axis", 0)])
    }

    /// [`Build::gather`] into the value named `out`.
    fn gather_to(&mut self, x: &str, idx: &str, out: &str) {
        self.node_to("Gather", &[x, idx], vec![int("axis", 0)], &[out]);
    }

    /// The four columns of boxes (…, 4) (the last axis dropped), their widths and heights.
    fn sides(&mut self, boxes: &str) -> (Vec<String>, String, String) {
        let c: Vec<String> = (0..4).map(|i| self.col(boxes, i)).collect();
        let w = self.node("Sub", &[&c[2], &c[0]], vec![]);
        let h = self.node("Sub", &[&c[3], &c[1]], vec![]);
        (c, w, h)
    }

    /// Zeros of type `zero` (a one-value tensor), one for each row of `rows` (K, …): (K).
    fn row_zeros(&mut self, rows: &str, zero: Tensor) -> String {
        let first = self.col(rows, 0);
        let shape = self.node("Shape", &[&first], vec![]);
        self.node(
            "ConstantOfShape",
            &[&shape],
            vec![Attribute {
                name: "value".into(),
                value: AttrValue::Tensor(zero),
            }],
        )
    }

    /// torchvision's `BoxCoder.decode_single`: `deltas` (…, 4) applied to `boxes` (…, 4, or
    /// broadcasting to it).
    fn decode(&mut self, deltas: &str, boxes: &str, w: [f64; 4], clip: f64) -> String {
        let (b, width, height) = self.sides(boxes);
        let d: Vec<String> = (0..4).map(|i| self.col(deltas, i)).collect();
        let half = self.scalar(0.5);
        let hw = self.node("Mul", &[&half, &width], vec![]);
        let hh = self.node("Mul", &[&half, &height], vec![]);
        let cx = self.node("Add", &[&b[0], &hw], vec![]);
        let cy = self.node("Add", &[&b[1], &hh], vec![]);
        let scaled: Vec<String> = (0..4)
            .map(|i| {
                let s = self.scalar(w[i] as f32);
                self.node("Div", &[&d[i], &s], vec![])
            })
            .collect();
        let c = self.scalar(clip as f32);
        let dw = self.node("Min", &[&scaled[2], &c], vec![]);
        let dh = self.node("Min", &[&scaled[3], &c], vec![]);
        let px = self.node("Mul", &[&scaled[0], &width], vec![]);
        let px = self.node("Add", &[&px, &cx], vec![]);
        let py = self.node("Mul", &[&scaled[1], &height], vec![]);
        let py = self.node("Add", &[&py, &cy], vec![]);
        let ew = self.node("Exp", &[&dw], vec![]);
        let pw = self.node("Mul", &[&ew, &width], vec![]);
        let eh = self.node("Exp", &[&dh], vec![]);
        let ph = self.node("Mul", &[&eh, &height], vec![]);
        let hpw = self.node("Mul", &[&half, &pw], vec![]);
        let hph = self.node("Mul", &[&half, &ph], vec![]);
        let x1 = self.node("Sub", &[&px, &hpw], vec![]);
        let y1 = self.node("Sub", &[&py, &hph], vec![]);
        let x2 = self.node("Add", &[&px, &hpw], vec![]);
        let y2 = self.node("Add", &[&py, &hph], vec![]);
        let last = self.i64s(&[-1]);
        let parts: Vec<String> = [x1, y1, x2, y2]
            .iter()
            .map(|v| self.node("Unsqueeze", &[v, &last], vec![]))
            .collect();
        let refs: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        self.node("Concat", &refs, vec![int("axis", -1)])
    }

    /// Boxes (…, 4) clamped to the image.
    fn clip(&mut self, boxes: &str, (h, w): (usize, usize)) -> String {
        let zero = self.scalar(0.0);
        let (h, w) = (h as f32, w as f32);
        let hi = self.f32s(&[4], &[w, h, w, h]);
        let lo = self.node("Max", &[boxes, &zero], vec![]);
        self.node("Min", &[&lo, &hi], vec![])
    }

    /// Whether each box (…, 4) is at least `min` wide and high (`>=`).
    fn big_enough(&mut self, boxes: &str, min: f64) -> String {
        let (_, w, h) = self.sides(boxes);
        let m = self.scalar(min as f32);
        let wok = self.node("GreaterOrEqual", &[&w, &m], vec![]);
        let hok = self.node("GreaterOrEqual", &[&h, &m], vec![]);
        self.node("And", &[&wok, &hok], vec![])
    }

    /// NMS of `boxes` (M, 4, clipped to the image) with `scores` (M) within each group
    /// (`groups`, float (M)): the boxes moved apart by group × (1 + their largest coordinate),
    /// then one NMS keeping at most `keep`; the kept rows' indices in decreasing score.
    fn batched_nms(
        &mut self,
        boxes: &str,
        scores: &str,
        groups: &str,
        keep: usize,
        iou: f64,
    ) -> String {
        // the largest coordinate, 0 for no boxes (a reduction needs one value)
        let flat = self.i64s(&[-1]);
        let all = self.node("Reshape", &[boxes, &flat], vec![]);
        let zero = self.f32s(&[1], &[0.0]);
        let all = self.node("Concat", &[&all, &zero], vec![int("axis", 0)]);
        let largest = self.node("ReduceMax", &[&all], vec![int("keepdims", 0)]);
        let one = self.scalar(1.0);
        let span = self.node("Add", &[&largest, &one], vec![]);
        let off = self.node("Mul", &[groups, &span], vec![]);
        let last = self.i64s(&[-1]);
        let off = self.node("Unsqueeze", &[&off, &last], vec![]);
        let moved = self.node("Add", &[boxes, &off], vec![]);
        let zero = self.i64s(&[0]);
        let b3 = self.node("Unsqueeze", &[&moved, &zero], vec![]);
        let s3 = self.i64s(&[1, 1, -1]);
        let s3 = self.node("Reshape", &[scores, &s3], vec![]);
        let k = self.i64_scalar(keep as i64);
        let t = self.scalar(iou as f32);
        let sel = self.node("NonMaxSuppression", &[&b3, &s3, &k, &t], vec![]);
        self.col(&sel, 2)
    }
}

/// Renames every value of `g` that `keep` does not hold with `prefix`, and every node.
fn prefixed(g: &mut Graph, prefix: &str, keep: &HashSet<String>) {
    let re = |s: &mut String| {
        if !s.is_empty() && !keep.contains(s.as_str()) {
            *s = format!("{prefix}{s}");
        }
    };
    for n in &mut g.nodes {
        n.name = format!("{prefix}{}", n.name);
        n.inputs.iter_mut().for_each(re);
        n.outputs.iter_mut().for_each(re);
    }
    for t in &mut g.initializers {
        re(&mut t.name);
    }
    for v in g
        .inputs
        .iter_mut()
        .chain(&mut g.outputs)
        .chain(&mut g.value_info)
    {
        re(&mut v.name);
    }
}

fn output(name: &str, elem: i32, dims: Vec<Dim>) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        elem_type: Some(elem),
        shape: Some(dims),
        other_type: false,
    }
}

/// Joins `first` (input `input` (1, 3, H, W); outputs the RPN's objectness and deltas of each
/// level, `rpn_objectness_{l}` (1, A, H_l, W_l) and `rpn_deltas_{l}` (1, 4A, H_l, W_l), then
/// the pooled feature maps `features_{p}`) and `second` (input `pooled` (K, C, S, S) with K
/// symbolic; outputs `class_logits` (K, classes) and `box_deltas` (K, 4·classes)) into one
/// detector graph. `second`'s values are renamed apart, except its weights (`params`).
pub fn two_stage(
    first: Model,
    second: Model,
    params: &HashSet<String>,
    s: &TwoStage,
) -> Result<Model> {
    let levels = s.levels.len();
    let pooled = s.pool_scales.len();
    if levels == 0 || pooled == 0 {
        return Err(err(
            "a two-stage detector needs RPN levels and pooled levels",
        ));
    }
    let outs: Vec<&str> = first
        .graph
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    if outs.len() != 2 * levels + pooled {
        return Err(err(format!(
            "the first network gives {} outputs; {levels} RPN levels and {pooled} pooled levels need {}",
            outs.len(),
            2 * levels + pooled
        )));
    }
    let (obj, rest) = outs.split_at(levels);
    let (del, feats) = rest.split_at(levels);
    let (obj, del, feats): (Vec<String>, Vec<String>, Vec<String>) = (
        obj.iter().map(|s| s.to_string()).collect(),
        del.iter().map(|s| s.to_string()).collect(),
        feats.iter().map(|s| s.to_string()).collect(),
    );
    let mut g = first.graph;
    g.outputs.clear();
    let mut b = Build {
        g: &mut g,
        count: 0,
    };

    // 2. the proposal layer
    let (mut boxes, mut scores, mut lvls) = (Vec::new(), Vec::new(), Vec::new());
    for (l, lv) in s.levels.iter().enumerate() {
        let (a, h, w, anchors) = (&lv.anchors_per_location, &lv.height, &lv.width, &lv.anchors);
        let n = a * h * w;
        if anchors.len() != n {
            return Err(err(format!(
                "RPN level {l}: {} anchors for {a} a location on {h}×{w}",
                anchors.len()
            )));
        }
        let o = b.node("Transpose", &[&obj[l]], vec![ints("perm", &[0, 2, 3, 1])]);
        let flat = b.i64s(&[-1]);
        let o = b.node("Reshape", &[&o, &flat], vec![]);
        let shape5 = b.i64s(&[1, *a as i64, 4, *h as i64, *w as i64]);
        let d = b.node("Reshape", &[&del[l], &shape5], vec![]);
        let d = b.node("Transpose", &[&d], vec![ints("perm", &[0, 3, 4, 1, 2])]);
        let rows = b.i64s(&[-1, 4]);
        let d = b.node("Reshape", &[&d, &rows], vec![]);
        let k = s.pre_nms_top_n.min(n);
        let kk = b.i64s(&[k as i64]);
        let (top, idx) = (b.fresh("top"), b.fresh("top_index"));
        b.node_to(
            "TopK",
            &[&o, &kk],
            vec![int("axis", 0), int("largest", 1), int("sorted", 1)],
            &[&top, &idx],
        );
        let flat_anchors: Vec<f32> = anchors.iter().flatten().copied().collect();
        let an = b.f32s(&[n, 4], &flat_anchors);
        let an = b.gather(&an, &idx);
        let d = b.gather(&d, &idx);
        let dec = b.decode(&d, &an, s.rpn_weights, s.rpn_clip);
        boxes.push(b.clip(&dec, s.image));
        scores.push(b.node("Sigmoid", &[&top], vec![]));
        lvls.push(b.f32s(&[k], &vec![l as f32; k]));
    }
    let cat = |b: &mut Build, v: &[String]| {
        let refs: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
        b.node("Concat", &refs, vec![int("axis", 0)])
    };
    let boxes = cat(&mut b, &boxes);
    let scores = cat(&mut b, &scores);
    let lvls = cat(&mut b, &lvls);
    let big = b.big_enough(&boxes, s.min_size);
    let st = b.scalar(s.rpn_score_thresh as f32);
    let scored = b.node("GreaterOrEqual", &[&scores, &st], vec![]);
    let ok = b.node("And", &[&big, &scored], vec![]);
    let keep = b.select(&ok);
    let boxes = b.gather(&boxes, &keep);
    let scores = b.gather(&scores, &keep);
    let lvls = b.gather(&lvls, &keep);
    let kept = b.batched_nms(&boxes, &scores, &lvls, s.post_nms_top_n, s.rpn_nms_thresh);
    // named, as the pooled regions are (`roi_heads/pooled`), for a reader that looks inside
    let proposals = "proposals".to_string();
    b.gather_to(&boxes, &kept, &proposals);

    // 3. each proposal pooled from its level
    let pool = |b: &mut Build, feat: &str, rois: &str, scale: f64| -> String {
        let o = s.pool_output;
        if s.max_pool {
            // rows (image 0, x1, y1, x2, y2)
            let zero = b.row_zeros(rois, f32_tensor("", &[1], &[0.0]));
            let last = b.i64s(&[-1]);
            let zero = b.node("Unsqueeze", &[&zero, &last], vec![]);
            let r5 = b.node("Concat", &[&zero, rois], vec![int("axis", 1)]);
            b.node(
                "MaxRoiPool",
                &[feat, &r5],
                vec![ints("pooled_shape", &[o, o]), float("spatial_scale", scale)],
            )
        } else {
            // every region on image 0
            let idx = b.row_zeros(rois, i64_tensor("", &[0]));
            b.node(
                "RoiAlign",
                &[feat, rois, &idx],
                vec![
                    int("output_height", o as i64),
                    int("output_width", o as i64),
                    int("sampling_ratio", s.sampling_ratio.max(0)),
                    float("spatial_scale", scale),
                    string("coordinate_transformation_mode", "output_half_pixel"),
                ],
            )
        }
    };
    let pooled_all = if pooled == 1 {
        pool(&mut b, &feats[0], &proposals, s.pool_scales[0])
    } else {
        // the canonical level ⌊4 + log2(√area / 224) + 1e-6⌋, clamped to those present
        let k_min = -s.pool_scales[0].log2().round();
        let k_max = -s.pool_scales[pooled - 1].log2().round();
        let (_, w, h) = b.sides(&proposals);
        let area = b.node("Mul", &[&w, &h], vec![]);
        let side = b.node("Sqrt", &[&area], vec![]);
        let by = b.scalar(224.0);
        let r = b.node("Div", &[&side, &by], vec![]);
        let ln = b.node("Log", &[&r], vec![]);
        let ln2 = b.scalar(std::f32::consts::LN_2);
        let l2 = b.node("Div", &[&ln, &ln2], vec![]);
        let four = b.scalar(4.0 + 1e-6);
        let t = b.node("Add", &[&l2, &four], vec![]);
        let t = b.node("Floor", &[&t], vec![]);
        let (lo, hi) = (b.scalar(k_min as f32), b.scalar(k_max as f32));
        let t = b.node("Max", &[&t, &lo], vec![]);
        let t = b.node("Min", &[&t, &hi], vec![]);
        let level = b.node("Sub", &[&t, &lo], vec![]);
        let (mut parts, mut order) = (Vec::new(), Vec::new());
        for (p, (f, &scale)) in feats.iter().zip(&s.pool_scales).enumerate() {
            let pv = b.scalar(p as f32);
            let m = b.node("Equal", &[&level, &pv], vec![]);
            let idx = b.select(&m);
            let r = b.gather(&proposals, &idx);
            parts.push(pool(&mut b, f, &r, scale));
            order.push(idx);
        }
        let cat_pooled = cat(&mut b, &parts);
        let order = cat(&mut b, &order);
        // row order[j] of the result is row j of the concatenation: sort `order` ascending
        // (as floats, exact below 2^24)
        let count = b.node("Shape", &[&order], vec![]);
        let order = b.node("Cast", &[&order], vec![int("to", dtype::FLOAT as i64)]);
        let (sorted, inverse) = (b.fresh("sorted"), b.fresh("inverse"));
        b.node_to(
            "TopK",
            &[&order, &count],
            vec![int("axis", 0), int("largest", 0), int("sorted", 1)],
            &[&sorted, &inverse],
        );
        b.gather(&cat_pooled, &inverse)
    };

    // 4. the second network, its values renamed apart
    let mut h = second.graph;
    if h.inputs.len() != 1 || h.outputs.len() != 2 {
        return Err(err(format!(
            "the second network takes {} inputs and gives {} outputs; one and two are needed",
            h.inputs.len(),
            h.outputs.len()
        )));
    }
    prefixed(&mut h, "roi_heads/", params);
    let head_in = h.inputs[0].name.clone();
    let (logits, deltas) = (h.outputs[0].name.clone(), h.outputs[1].name.clone());
    b.node_to("Identity", &[&pooled_all], vec![], &[&head_in]);
    b.g.nodes.extend(h.nodes);
    b.g.initializers.extend(h.initializers);

    // 5. the post-processing
    let probs = b.node("Softmax", &[&logits], vec![int("axis", -1)]);
    let c = s.classes as i64;
    let per_class = b.i64s(&[-1, c, 4]);
    let d = b.node("Reshape", &[&deltas, &per_class], vec![]);
    let one = b.i64s(&[1]);
    let props = b.node("Unsqueeze", &[&proposals, &one], vec![]);
    let dec = b.decode(&d, &props, s.box_weights, s.box_clip);
    let dec = b.clip(&dec, s.image);
    // the background's column dropped
    let (from, to, axis) = (b.i64s(&[1]), b.i64s(&[c]), b.i64s(&[1]));
    let dec = b.node("Slice", &[&dec, &from, &to, &axis], vec![]);
    let probs = b.node("Slice", &[&probs, &from, &to, &axis], vec![]);
    let labels: Vec<i64> = (1..c).collect();
    let labels = b.i64s(&labels);
    let shape = b.node("Shape", &[&probs], vec![]);
    let labels = b.node("Expand", &[&labels, &shape], vec![]);
    let rows = b.i64s(&[-1, 4]);
    let flat = b.i64s(&[-1]);
    let dec = b.node("Reshape", &[&dec, &rows], vec![]);
    let probs = b.node("Reshape", &[&probs, &flat], vec![]);
    let labels = b.node("Reshape", &[&labels, &flat], vec![]);
    let st = b.scalar(s.score_thresh as f32);
    let scored = b.node("Greater", &[&probs, &st], vec![]);
    let big = b.big_enough(&dec, 1e-2);
    let ok = b.node("And", &[&scored, &big], vec![]);
    let keep = b.select(&ok);
    let dec = b.gather(&dec, &keep);
    let probs = b.gather(&probs, &keep);
    let labels = b.gather(&labels, &keep);
    let groups = b.node("Cast", &[&labels], vec![int("to", dtype::FLOAT as i64)]);
    let kept = b.batched_nms(&dec, &probs, &groups, s.detections, s.nms_thresh);
    b.gather_to(&dec, &kept, "boxes");
    b.gather_to(&probs, &kept, "scores");
    b.gather_to(&labels, &kept, "labels");
    let d = || Dim::Param("detections".into());
    g.outputs = vec![
        output("boxes", dtype::FLOAT, vec![d(), Dim::Value(4)]),
        output("scores", dtype::FLOAT, vec![d()]),
        output("labels", dtype::INT64, vec![d()]),
    ];
    g.value_info.clear();
    Ok(Model {
        ir_version: first.ir_version,
        opsets: first.opsets,
        producer_name: first.producer_name,
        producer_version: first.producer_version,
        graph: g,
    })
}
