//! Detection evaluation: COCO's `COCOeval` (bbox) and the Pascal VOC devkit's average precision.
//!
//! Both take a ground-truth [`Dataset`] and [`Detection`]s (COCO results boxes `[x, y, w, h]`)
//! and reproduce their reference program number for number:
//!
//! * [`coco_eval`] follows pycocotools 2.0.11: ten IoU thresholds `linspace(.5, .95, 10)`, 101
//!   recall thresholds `linspace(0, 1, 101)` (built as NumPy builds them, so that recalls equal
//!   to a threshold compare as there), maxDets 1/10/100, area ranges all/small/medium/large on
//!   the annotation's `area` (the box's when the file has none) and the detection's `w·h`.
//!   Crowd regions (`iscrowd`) are ignored ground truth whose IoU is the intersection over the
//!   detection's area and which can absorb any number of detections. Detections of an
//!   (image, class) are ranked by score with ties in results-file order, and only the best 100
//!   are matched. Ground-truth and detection ids are not read: pycocotools treats an id of 0 as
//!   "unmatched", which here cannot happen.
//! * [`voc_eval`] follows `VOCevaldet.m` and `VOCap.m`: per class, detections ranked by score
//!   (ties in file order, as MATLAB's stable sort), each matched to the ground truth of its image
//!   and class it overlaps most, a match when that IoU `≥` the threshold, boxes in the devkit's
//!   1-based inclusive pixel coordinates (widths `x2 − x1 + 1`), a detection matched to a
//!   `difficult` object neither true nor false, `difficult` objects not counted. AP is the
//!   11-point interpolated AP of VOC2007 (recall levels as MATLAB's `0:0.1:1` makes them) or
//!   the all-point AP of VOC2010 and later.
//!
//!   A box `[x, y, w, h]` is the devkit's `(x + 1, y + 1, x + w, y + h)`: the inverse of how
//!   [`crate::data::read_voc_dir`] reads `xmin, ymin, xmax, ymax`, so ground truth read from VOC XML is
//!   evaluated on exactly the numbers in its files, and a results box is written as COCO
//!   writes it.

use std::collections::{BTreeMap, HashMap};

use crate::data::{Dataset, Detection};

/// IoU thresholds of COCOeval, as `np.linspace(.5, .95, 10)` computes them.
pub fn coco_iou_thresholds() -> [f64; 10] {
    linspace::<10>(0.5, 0.95)
}

/// Recall thresholds of COCOeval, as `np.linspace(.0, 1.00, 101)` computes them.
pub fn coco_recall_thresholds() -> [f64; 101] {
    linspace::<101>(0.0, 1.0)
}

/// `np.linspace(start, stop, N)`: `i·step + start` with `step = (stop − start)/(N − 1)`, the
/// last value set to `stop`.
fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut v = [0.0; N];
    for (i, x) in v.iter_mut().enumerate() {
        *x = i as f64 * step + start;
    }
    v[N - 1] = stop;
    v
}

/// COCOeval's area ranges: all, small, medium, large (bounds inclusive).
pub const COCO_AREAS: [(&str, f64, f64); 4] = [
    ("all", 0.0, 1e10),
    ("small", 0.0, 1024.0),
    ("medium", 1024.0, 9216.0),
    ("large", 9216.0, 1e10),
];

/// COCOeval's detections per image for recall: 1, 10, 100.
pub const COCO_MAX_DETS: [usize; 3] = [1, 10, 100];

/// The twelve numbers of `COCOeval.summarize()`; −1 where pycocotools has no data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CocoStats {
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub ap_small: f64,
    pub ap_medium: f64,
    pub ap_large: f64,
    pub ar1: f64,
    pub ar10: f64,
    pub ar100: f64,
    pub ar_small: f64,
    pub ar_medium: f64,
    pub ar_large: f64,
}

impl CocoStats {
    /// In `COCOeval.stats` order.
    pub fn to_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }

    /// The names `aics map --json` gives the twelve numbers, in the same order.
    pub const NAMES: [&'static str; 12] = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];
}

/// What [`coco_eval`] computes: COCOeval's `precision` and `recall` arrays (−1 where there is
/// no data), with the category ids their class axis follows.
#[derive(Clone, Debug)]
pub struct CocoEval {
    /// Category ids in increasing order: the class axis.
    pub category_ids: Vec<u64>,
    pub iou_thresholds: [f64; 10],
    pub recall_thresholds: [f64; 101],
    /// `[T=10][R=101][K][A=4][M=3]`, flattened row-major.
    pub precision: Vec<f64>,
    /// `[T=10][K][A=4][M=3]`, flattened row-major.
    pub recall: Vec<f64>,
}

impl CocoEval {
    fn k(&self) -> usize {
        self.category_ids.len()
    }

    /// Precision at IoU threshold `t`, recall threshold `r`, class `k`, area `a`, maxDets `m`.
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[(((t * 101 + r) * self.k() + k) * 4 + a) * 3 + m]
    }

    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[((t * self.k() + k) * 4 + a) * 3 + m]
    }

    /// `COCOeval._summarize`: the mean of the entries that are not −1, or −1.
    fn summarize(&self, ap: bool, iou: Option<f64>, a: usize, max_dets: usize) -> f64 {
        let Some(m) = COCO_MAX_DETS.iter().position(|&d| d == max_dets) else {
            return -1.0;
        };
        let ts: Vec<usize> = match iou {
            // pycocotools selects the threshold with `==`: 0.5 and 0.75 are exactly in its list.
            Some(v) => (0..10).filter(|&t| self.iou_thresholds[t] == v).collect(),
            None => (0..10).collect(),
        };
        let mut sum = 0.0;
        let mut n = 0usize;
        for &t in &ts {
            if ap {
                for r in 0..101 {
                    for k in 0..self.k() {
                        let v = self.precision_at(t, r, k, a, m);
                        if v > -1.0 {
                            sum += v;
                            n += 1;
                        }
                    }
                }
            } else {
                for k in 0..self.k() {
                    let v = self.recall_at(t, k, a, m);
                    if v > -1.0 {
                        sum += v;
                        n += 1;
                    }
                }
            }
        }
        if n == 0 {
            -1.0
        } else {
            sum / n as f64
        }
    }

    /// The twelve numbers of `COCOeval.summarize()`.
    pub fn stats(&self) -> CocoStats {
        CocoStats {
            ap: self.summarize(true, None, 0, 100),
            ap50: self.summarize(true, Some(0.5), 0, 100),
            ap75: self.summarize(true, Some(0.75), 0, 100),
            ap_small: self.summarize(true, None, 1, 100),
            ap_medium: self.summarize(true, None, 2, 100),
            ap_large: self.summarize(true, None, 3, 100),
            ar1: self.summarize(false, None, 0, 1),
            ar10: self.summarize(false, None, 0, 10),
            ar100: self.summarize(false, None, 0, 100),
            ar_small: self.summarize(false, None, 1, 100),
            ar_medium: self.summarize(false, None, 2, 100),
            ar_large: self.summarize(false, None, 3, 100),
        }
    }

    /// Per class: AP@[.5:.95] (area all, 100 detections), the mean of its precision entries
    /// that are not −1, or −1 when it has none (a class with no ground truth).
    pub fn per_class_ap(&self) -> BTreeMap<u64, f64> {
        self.category_ids
            .iter()
            .enumerate()
            .map(|(k, &id)| {
                let mut sum = 0.0;
                let mut n = 0usize;
                for t in 0..10 {
                    for r in 0..101 {
                        let v = self.precision_at(t, r, k, 0, 2);
                        if v > -1.0 {
                            sum += v;
                            n += 1;
                        }
                    }
                }
                (id, if n == 0 { -1.0 } else { sum / n as f64 })
            })
            .collect()
    }

    /// The precision–recall curve of class `k` at IoU threshold index `t` (area all, 100
    /// detections) on the 101 recall thresholds; `None` when the class has no data.
    pub fn pr_curve(&self, t: usize, k: usize) -> Option<Vec<(f64, f64)>> {
        if self.precision_at(t, 0, k, 0, 2) <= -1.0 {
            return None;
        }
        Some(
            (0..101)
                .map(|r| (self.recall_thresholds[r], self.precision_at(t, r, k, 0, 2)))
                .collect(),
        )
    }
}

/// COCO's bbox IoU: no +1; against a crowd region, intersection over the detection's area.
fn coco_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// One image and class as `computeIoU` leaves it: ranked detections, ground truth, and their
/// IoUs (detection-major).
type Prepared = (Vec<usize>, Vec<usize>, Vec<f64>);

/// One image and class, as `COCOeval.evaluateImg` leaves it for `accumulate`.
struct ImgEval {
    /// Scores of the (at most 100) detections, best first.
    scores: Vec<f64>,
    /// `[T][D]`: matched to a ground-truth object.
    matched: Vec<bool>,
    /// `[T][D]`: ignored.
    ignored: Vec<bool>,
    /// Per ground-truth object: ignored in this area range.
    gt_ignored: Vec<bool>,
}

/// Evaluate detections as pycocotools' `COCOeval` (bbox) does.
///
/// The detections must name images and categories of `gt` (as [`crate::data::parse_results`]
/// checks); others are left out, as pycocotools leaves out what its parameter lists do not name.
pub fn coco_eval(gt: &Dataset, dets: &[Detection]) -> CocoEval {
    let mut img_ids: Vec<u64> = gt.images.iter().map(|i| i.id).collect();
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    cat_ids.dedup();
    let iou_thr = coco_iou_thresholds();
    let rec_thr = coco_recall_thresholds();
    let nt = iou_thr.len();
    let nk = cat_ids.len();
    let img_index: HashMap<u64, usize> =
        img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cat_index: HashMap<u64, usize> =
        cat_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let ni = img_ids.len();

    // Ground truth and detections per (class, image), in file order.
    let mut gts: Vec<Vec<usize>> = vec![Vec::new(); nk * ni];
    for (j, a) in gt.annotations.iter().enumerate() {
        if let (Some(&k), Some(&i)) = (cat_index.get(&a.category_id), img_index.get(&a.image_id)) {
            gts[k * ni + i].push(j);
        }
    }
    let mut dts: Vec<Vec<usize>> = vec![Vec::new(); nk * ni];
    for (j, d) in dets.iter().enumerate() {
        if let (Some(&k), Some(&i)) = (cat_index.get(&d.category_id), img_index.get(&d.image_id)) {
            dts[k * ni + i].push(j);
        }
    }
    let max_det = *COCO_MAX_DETS.last().unwrap_or(&100);

    let mut precision = vec![-1.0; nt * 101 * nk * 4 * 3];
    let mut recall = vec![-1.0; nt * nk * 4 * 3];
    for k in 0..nk {
        // `computeIoU` once per image: detections by score (stable), cut at 100.
        let prepared: Vec<Option<Prepared>> = (0..ni)
            .map(|i| {
                let g = &gts[k * ni + i];
                let d = &dts[k * ni + i];
                if g.is_empty() && d.is_empty() {
                    return None;
                }
                let mut d = d.clone();
                d.sort_by(|&x, &y| dets[y].score.total_cmp(&dets[x].score));
                d.truncate(max_det);
                let mut ious = vec![0.0; d.len() * g.len()];
                for (di, &dj) in d.iter().enumerate() {
                    for (gi, &gj) in g.iter().enumerate() {
                        let a = &gt.annotations[gj];
                        ious[di * g.len() + gi] = coco_iou(&dets[dj].bbox, &a.bbox, a.iscrowd);
                    }
                }
                Some((d, g.clone(), ious))
            })
            .collect();
        for (ai, &(_, lo, hi)) in COCO_AREAS.iter().enumerate() {
            let evals: Vec<ImgEval> = prepared
                .iter()
                .flatten()
                .map(|(d, g, ious)| evaluate_img(gt, dets, d, g, ious, (lo, hi), &iou_thr))
                .collect();
            if evals.is_empty() {
                continue;
            }
            for (mi, &md) in COCO_MAX_DETS.iter().enumerate() {
                accumulate(
                    &evals,
                    nt,
                    md,
                    &rec_thr,
                    |t, r, v| precision[(((t * 101 + r) * nk + k) * 4 + ai) * 3 + mi] = v,
                    |t, v| recall[((t * nk + k) * 4 + ai) * 3 + mi] = v,
                );
            }
        }
    }
    CocoEval {
        category_ids: cat_ids,
        iou_thresholds: iou_thr,
        recall_thresholds: rec_thr,
        precision,
        recall,
    }
}

/// `COCOeval.evaluateImg` for one image, class and area range; `d` is already ranked and cut.
fn evaluate_img(
    gt: &Dataset,
    dets: &[Detection],
    d: &[usize],
    g: &[usize],
    ious: &[f64],
    (lo, hi): (f64, f64),
    iou_thr: &[f64],
) -> ImgEval {
    let ng = g.len();
    let nd = d.len();
    let nt = iou_thr.len();
    let area = |j: usize| {
        let a = &gt.annotations[j];
        a.area.unwrap_or(a.bbox[2] * a.bbox[3])
    };
    let ign: Vec<bool> = g
        .iter()
        .map(|&j| gt.annotations[j].iscrowd || area(j) < lo || area(j) > hi)
        .collect();
    // Ground truth with ignored objects last (stable).
    let mut order: Vec<usize> = (0..ng).collect();
    order.sort_by_key(|&x| ign[x]);
    let crowd: Vec<bool> = order
        .iter()
        .map(|&x| gt.annotations[g[x]].iscrowd)
        .collect();
    let gt_ignored: Vec<bool> = order.iter().map(|&x| ign[x]).collect();

    let mut gt_taken = vec![false; nt * ng];
    let mut matched = vec![false; nt * nd];
    let mut ignored = vec![false; nt * nd];
    if nd > 0 && ng > 0 {
        for (t, &thr) in iou_thr.iter().enumerate() {
            for di in 0..nd {
                let mut best = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for gi in 0..ng {
                    if gt_taken[t * ng + gi] && !crowd[gi] {
                        continue;
                    }
                    if let Some(mm) = m {
                        if !gt_ignored[mm] && gt_ignored[gi] {
                            break;
                        }
                    }
                    let v = ious[di * ng + order[gi]];
                    if v < best {
                        continue;
                    }
                    best = v;
                    m = Some(gi);
                }
                if let Some(mm) = m {
                    ignored[t * nd + di] = gt_ignored[mm];
                    matched[t * nd + di] = true;
                    gt_taken[t * ng + mm] = true;
                }
            }
        }
    }
    // Unmatched detections outside the area range are ignored.
    for (di, &dj) in d.iter().enumerate() {
        let b = &dets[dj].bbox;
        let a = b[2] * b[3];
        if a < lo || a > hi {
            for t in 0..nt {
                if !matched[t * nd + di] {
                    ignored[t * nd + di] = true;
                }
            }
        }
    }
    ImgEval {
        scores: d.iter().map(|&j| dets[j].score).collect(),
        matched,
        ignored,
        gt_ignored,
    }
}

/// `COCOeval.accumulate` for one class, area range and maxDets.
fn accumulate(
    evals: &[ImgEval],
    nt: usize,
    max_det: usize,
    rec_thr: &[f64; 101],
    mut set_precision: impl FnMut(usize, usize, f64),
    mut set_recall: impl FnMut(usize, f64),
) {
    // (image, detection) pairs, every image's first `max_det`, ranked by score; ties keep the
    // image order and the order within the image (NumPy's mergesort is stable).
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (e, ev) in evals.iter().enumerate() {
        for di in 0..ev.scores.len().min(max_det) {
            pairs.push((e, di));
        }
    }
    pairs.sort_by(|&(e1, d1), &(e2, d2)| evals[e2].scores[d2].total_cmp(&evals[e1].scores[d1]));
    let npig = evals
        .iter()
        .map(|ev| ev.gt_ignored.iter().filter(|&&x| !x).count())
        .sum::<usize>();
    if npig == 0 {
        return;
    }
    let eps = f64::EPSILON; // np.spacing(1)
    for t in 0..nt {
        let mut tp = 0.0f64;
        let mut fp = 0.0f64;
        let mut rc = Vec::with_capacity(pairs.len());
        let mut pr = Vec::with_capacity(pairs.len());
        for &(e, di) in &pairs {
            let ev = &evals[e];
            let nd = ev.scores.len();
            let m = ev.matched[t * nd + di];
            let ig = ev.ignored[t * nd + di];
            if m && !ig {
                tp += 1.0;
            }
            if !m && !ig {
                fp += 1.0;
            }
            rc.push(tp / npig as f64);
            pr.push(tp / (fp + tp + eps));
        }
        set_recall(t, rc.last().copied().unwrap_or(0.0));
        for i in (1..pr.len()).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        // np.searchsorted(rc, recThrs, side='left'); thresholds past the last recall keep 0.
        let mut r = 0;
        for (ri, &thr) in rec_thr.iter().enumerate() {
            while r < rc.len() && rc[r] < thr {
                r += 1;
            }
            if r >= pr.len() {
                // pycocotools stops at the first index error: this and later stay 0.
                for rj in ri..rec_thr.len() {
                    set_precision(t, rj, 0.0);
                }
                break;
            }
            set_precision(t, ri, pr[r]);
        }
    }
}

/// Which VOC average precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocAp {
    /// VOC2007: the mean of the best precision at recall ≥ 0, 0.1, …, 1.
    ElevenPoint,
    /// VOC2010 and later: the area under the precision envelope.
    AllPoint,
}

/// One class's VOC result.
#[derive(Clone, Debug, PartialEq)]
pub struct VocClass {
    pub ap: f64,
    /// Objects that count (not `difficult`).
    pub npos: usize,
    /// Recall and precision after each ranked detection (ignored ones included, as the
    /// devkit's cumulative sums are).
    pub recall: Vec<f64>,
    pub precision: Vec<f64>,
}

/// What [`voc_eval`] computes.
#[derive(Clone, Debug, PartialEq)]
pub struct VocEval {
    /// Per category id; `None` for a class with no object that counts (left out of the mean).
    pub per_class: BTreeMap<u64, Option<VocClass>>,
    /// Mean AP over the classes that have objects; NaN when none has.
    pub map: f64,
}

/// MATLAB's `0:0.1:1`: the first half `k·0.1`, the second `1 − (10 − k)·0.1`, the middle 0.5.
fn matlab_tenths() -> [f64; 11] {
    let mut v = [0.0; 11];
    for k in 0..=5 {
        v[k] = k as f64 * 0.1;
        v[10 - k] = 1.0 - k as f64 * 0.1;
    }
    v[5] = 0.5;
    v
}

/// Evaluate detections as the Pascal VOC devkit does, at the IoU threshold `iou` (0.5 in VOC).
pub fn voc_eval(gt: &Dataset, dets: &[Detection], iou: f64, kind: VocAp) -> VocEval {
    let mut per_class = BTreeMap::new();
    let mut cat_ids: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    cat_ids.dedup();
    let xyxy = |b: &[f64; 4]| [b[0] + 1.0, b[1] + 1.0, b[0] + b[2], b[1] + b[3]];
    for &c in &cat_ids {
        // Ground truth of this class by image: box, difficult, taken.
        let mut by_img: HashMap<u64, Vec<([f64; 4], bool)>> = HashMap::new();
        let mut npos = 0usize;
        for a in gt.annotations.iter().filter(|a| a.category_id == c) {
            by_img
                .entry(a.image_id)
                .or_default()
                .push((xyxy(&a.bbox), a.difficult));
            if !a.difficult {
                npos += 1;
            }
        }
        let mut taken: HashMap<u64, Vec<bool>> = by_img
            .iter()
            .map(|(&k, v)| (k, vec![false; v.len()]))
            .collect();
        let mut ds: Vec<&Detection> = dets.iter().filter(|d| d.category_id == c).collect();
        ds.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut tp = 0.0f64;
        let mut fp = 0.0f64;
        let mut recall = Vec::with_capacity(ds.len());
        let mut precision = Vec::with_capacity(ds.len());
        for d in &ds {
            let bb = xyxy(&d.bbox);
            let mut ovmax = f64::NEG_INFINITY;
            let mut jmax = 0;
            if let Some(g) = by_img.get(&d.image_id) {
                for (j, (gb, _)) in g.iter().enumerate() {
                    let iw = bb[2].min(gb[2]) - bb[0].max(gb[0]) + 1.0;
                    let ih = bb[3].min(gb[3]) - bb[1].max(gb[1]) + 1.0;
                    if iw > 0.0 && ih > 0.0 {
                        let ua = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                            + (gb[2] - gb[0] + 1.0) * (gb[3] - gb[1] + 1.0)
                            - iw * ih;
                        let ov = iw * ih / ua;
                        if ov > ovmax {
                            ovmax = ov;
                            jmax = j;
                        }
                    }
                }
            }
            if ovmax >= iou {
                let g = &by_img[&d.image_id];
                if !g[jmax].1 {
                    let t = taken.get_mut(&d.image_id).map(|t| &mut t[jmax]);
                    match t {
                        Some(t) if !*t => {
                            *t = true;
                            tp += 1.0;
                        }
                        _ => fp += 1.0,
                    }
                }
            } else {
                fp += 1.0;
            }
            recall.push(tp / npos as f64);
            precision.push(tp / (fp + tp));
        }
        if npos == 0 {
            per_class.insert(c, None);
            continue;
        }
        let ap = match kind {
            VocAp::ElevenPoint => matlab_tenths()
                .iter()
                .map(|&t| {
                    recall
                        .iter()
                        .zip(&precision)
                        .filter(|(r, _)| **r >= t)
                        .map(|(_, &p)| p)
                        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
                        .unwrap_or(0.0)
                        / 11.0
                })
                .sum(),
            VocAp::AllPoint => {
                let mut mrec = Vec::with_capacity(recall.len() + 2);
                mrec.push(0.0);
                mrec.extend_from_slice(&recall);
                mrec.push(1.0);
                let mut mpre = Vec::with_capacity(precision.len() + 2);
                mpre.push(0.0);
                mpre.extend_from_slice(&precision);
                mpre.push(0.0);
                for i in (0..mpre.len() - 1).rev() {
                    mpre[i] = mpre[i].max(mpre[i + 1]);
                }
                (1..mrec.len())
                    .filter(|&i| mrec[i] != mrec[i - 1])
                    .map(|i| (mrec[i] - mrec[i - 1]) * mpre[i])
                    .sum()
            }
        };
        per_class.insert(
            c,
            Some(VocClass {
                ap,
                npos,
                recall,
                precision,
            }),
        );
    }
    let aps: Vec<f64> = per_class.values().flatten().map(|c| c.ap).collect();
    let map = if aps.is_empty() {
        f64::NAN
    } else {
        aps.iter().sum::<f64>() / aps.len() as f64
    };
    VocEval { per_class, map }
}
