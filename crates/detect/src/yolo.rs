//! YOLO inference as the darknet program does it, number for number: the image read as
//! `byte/255`, darknet's two-pass bilinear `resize_image`, `letterbox_image` (fill 0.5, the
//! resized image at the integer half of the margin), the three detection heads decoded
//! (`[yolo]` of YOLOv3, `[region]` of YOLOv2, `[detection]` of YOLOv1), boxes mapped back to
//! the photo (`correct_yolo_boxes`, which subtracts the *exact* half margin, so boxes shift by
//! half a network pixel when the margin is odd, as darknet's do), and `do_nms_sort`: per class,
//! by score, suppressing a box whose IoU with a better one is above the threshold by zeroing
//! that class's score only.
//!
//! The heads' outputs come activated from [`Darknet::forward_heads`] (logistic and softmax, as
//! darknet's forward passes leave them); arithmetic is darknet's: `f32` storage, `exp` in `f64`.

use std::path::Path;

use aics_tensor::Tensor;

use crate::darknet::{Darknet, DetectionHead, HeadOutput, RegionHead, YoloHead};
use crate::error::{DetectError, Result};

/// An image as darknet holds it: `f32` in [0, 1], channel-first.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Planar {
    fn at(&self, k: usize, y: usize, x: usize) -> f32 {
        self.data[(k * self.h + y) * self.w + x]
    }

    /// From interleaved RGB bytes, as darknet's `load_image_color` stores them (`v/255`).
    pub fn from_rgb8(w: usize, h: usize, rgb: &[u8]) -> Result<Planar> {
        Planar::from_rgb8_with(w, h, rgb, |v| (v as f64 / 255.0) as f32)
    }

    /// From interleaved RGB bytes, keeping the values 0–255 (MTCNN's input).
    pub fn from_rgb8_255(w: usize, h: usize, rgb: &[u8]) -> Result<Planar> {
        Planar::from_rgb8_with(w, h, rgb, |v| v as f32)
    }

    fn from_rgb8_with(w: usize, h: usize, rgb: &[u8], value: impl Fn(u8) -> f32) -> Result<Planar> {
        if rgb.len() != w * h * 3 || w == 0 || h == 0 {
            return Err(crate::error::arg(
                "Planar::from_rgb8",
                format!(
                    "{} bytes for a {w}x{h} RGB image (expected {})",
                    rgb.len(),
                    w * h * 3
                ),
            ));
        }
        let mut data = vec![0f32; 3 * w * h];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for k in 0..3 {
                data[k * w * h + i] = value(px[k]);
            }
        }
        Ok(Planar { c: 3, h, w, data })
    }

    /// Decode a PNG or JPEG file into RGB.
    pub fn open(path: &Path) -> Result<Planar> {
        let img = image::ImageReader::open(path)
            .map_err(|e| file_err(path, e))?
            .with_guessed_format()
            .map_err(|e| file_err(path, e))?
            .decode()
            .map_err(|e| file_err(path, format!("cannot decode the image: {e}")))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        Planar::from_rgb8(w as usize, h as usize, img.as_raw())
    }

    /// darknet's `resize_image`: bilinear in two passes (columns, then rows), scale
    /// `(in − 1)/(out − 1)`, the last column and row taken from the source's last.
    pub fn resize(&self, w: usize, h: usize) -> Planar {
        let (iw, ih, c) = (self.w, self.h, self.c);
        let w_scale = (iw as f32 - 1.0) / (w as f32 - 1.0);
        let h_scale = (ih as f32 - 1.0) / (h as f32 - 1.0);
        let mut part = vec![0f32; c * ih * w];
        for k in 0..c {
            for r in 0..ih {
                for col in 0..w {
                    let val = if col == w - 1 || iw == 1 {
                        self.at(k, r, iw - 1)
                    } else {
                        let sx = col as f32 * w_scale;
                        let ix = sx as usize;
                        let dx = sx - ix as f32;
                        (1.0 - dx) * self.at(k, r, ix) + dx * self.at(k, r, ix + 1)
                    };
                    part[(k * ih + r) * w + col] = val;
                }
            }
        }
        let mut out = vec![0f32; c * h * w];
        for k in 0..c {
            for r in 0..h {
                let sy = r as f32 * h_scale;
                let iy = sy as usize;
                let dy = sy - iy as f32;
                for col in 0..w {
                    out[(k * h + r) * w + col] = (1.0 - dy) * part[(k * ih + iy) * w + col];
                }
                if r == h - 1 || ih == 1 {
                    continue;
                }
                for col in 0..w {
                    out[(k * h + r) * w + col] += dy * part[(k * ih + iy + 1) * w + col];
                }
            }
        }
        Planar { c, h, w, data: out }
    }

    /// darknet's `letterbox_image`: resize keeping the aspect ratio to fit `w × h`, on a 0.5
    /// grey canvas at offset `((w − new_w)/2, (h − new_h)/2)` (integer division).
    pub fn letterbox(&self, w: usize, h: usize) -> (Planar, LetterboxGeom) {
        let g = LetterboxGeom::new(self.w, self.h, w, h);
        let resized = self.resize(g.new_w, g.new_h);
        let mut data = vec![0.5f32; self.c * h * w];
        let (dx, dy) = ((w - g.new_w) / 2, (h - g.new_h) / 2);
        for k in 0..self.c {
            for r in 0..g.new_h {
                let src = &resized.data[(k * g.new_h + r) * g.new_w..][..g.new_w];
                data[(k * h + r + dy) * w + dx..][..g.new_w].copy_from_slice(src);
            }
        }
        (
            Planar {
                c: self.c,
                h,
                w,
                data,
            },
            g,
        )
    }

    /// The image as a `(1, C, H, W)` tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.data.clone(),
            &[1, self.c, self.h, self.w],
        )?)
    }
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> DetectError {
    DetectError::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Where a letterboxed image sits in the network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LetterboxGeom {
    pub image_w: usize,
    pub image_h: usize,
    pub net_w: usize,
    pub net_h: usize,
    pub new_w: usize,
    pub new_h: usize,
}

impl LetterboxGeom {
    pub fn new(image_w: usize, image_h: usize, net_w: usize, net_h: usize) -> Self {
        let (new_w, new_h) = if (net_w as f32 / image_w as f32) < (net_h as f32 / image_h as f32) {
            (net_w, image_h * net_w / image_w)
        } else {
            ((image_w * net_h) / image_h, net_h)
        };
        LetterboxGeom {
            image_w,
            image_h,
            net_w,
            net_h,
            new_w: new_w.max(1),
            new_h: new_h.max(1),
        }
    }

    /// darknet's `correct_yolo_boxes` for one centre box in network-relative units → photo
    /// pixels.
    fn correct(&self, b: [f32; 4]) -> [f32; 4] {
        let (nw, nh) = (self.net_w as f64, self.net_h as f64);
        let (new_w, new_h) = (self.new_w as f32, self.new_h as f32);
        let x = ((b[0] as f64 - (nw - self.new_w as f64) / 2.0 / nw)
            / (new_w / self.net_w as f32) as f64) as f32;
        let y = ((b[1] as f64 - (nh - self.new_h as f64) / 2.0 / nh)
            / (new_h / self.net_h as f32) as f64) as f32;
        let w = b[2] * (self.net_w as f32 / new_w);
        let h = b[3] * (self.net_h as f32 / new_h);
        [
            x * self.image_w as f32,
            y * self.image_h as f32,
            w * self.image_w as f32,
            h * self.image_h as f32,
        ]
    }
}

/// A box with one score per class, before and during NMS (darknet's `detection`).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Centre x, y, width, height in photo pixels.
    pub bbox: [f32; 4],
    pub objectness: f32,
    /// Per class: `objectness · P(class)` when above the threshold, else 0.
    pub probs: Vec<f32>,
}

/// One detection: a class, its score and its box.
#[derive(Clone, Debug, PartialEq)]
pub struct YoloDetection {
    pub class: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in photo pixels (not clamped: a box may reach past the border).
    pub bbox: [f32; 4],
}

/// The head output as `(C, H, W)` values of image 0.
fn chw(t: &Tensor) -> Result<(Vec<f32>, usize, usize, usize)> {
    let s = t.shape();
    if s.len() != 4 || s[0] < 1 {
        return Err(crate::error::arg(
            "yolo",
            format!("head output must be (N, C, H, W), got {s:?}"),
        ));
    }
    let v = t.narrow(0, 0, 1)?.to_vec();
    Ok((v, s[1], s[2], s[3]))
}

/// The anchored heads' shared decoding: per cell and anchor, a box `(col + x)/W, (row + y)/H`
/// with `exp(tw)·anchor_w/scale_w` (YOLOv3's anchors are in network pixels, YOLOv2's in cells),
/// kept when its objectness is above `thresh`, with `objectness · P(class)` per class above it.
#[allow(clippy::too_many_arguments)]
fn decode_anchored(
    op: &'static str,
    out: &Tensor,
    anchors: &[(f64, f64)],
    coords: usize,
    classes: usize,
    g: &LetterboxGeom,
    anchor_scale: impl Fn(usize, usize) -> (f64, f64),
    thresh: f32,
) -> Result<Vec<Candidate>> {
    let (p, c, lh, lw) = chw(out)?;
    let per = coords + 1 + classes;
    if c != anchors.len() * per {
        return Err(crate::error::arg(
            op,
            format!(
                "head output has {c} channels, expected {}",
                anchors.len() * per
            ),
        ));
    }
    let (sw, sh) = anchor_scale(lw, lh);
    let hw = lh * lw;
    let at = |n: usize, e: usize, i: usize| p[(n * per + e) * hw + i];
    let mut dets = Vec::new();
    for i in 0..hw {
        let (row, col) = (i / lw, i % lw);
        for (n, &(aw, ah)) in anchors.iter().enumerate() {
            let obj = at(n, coords, i);
            if obj <= thresh {
                continue;
            }
            let bx = (col as f32 + at(n, 0, i)) / lw as f32;
            let by = (row as f32 + at(n, 1, i)) / lh as f32;
            let bw = ((at(n, 2, i) as f64).exp() * aw / sw) as f32;
            let bh = ((at(n, 3, i) as f64).exp() * ah / sh) as f32;
            let probs = (0..classes)
                .map(|j| {
                    let pr = obj * at(n, coords + 1 + j, i);
                    if pr > thresh {
                        pr
                    } else {
                        0.0
                    }
                })
                .collect();
            dets.push(Candidate {
                bbox: g.correct([bx, by, bw, bh]),
                objectness: obj,
                probs,
            });
        }
    }
    Ok(dets)
}

/// Decode a `[yolo]` head (`get_yolo_detections` + `correct_yolo_boxes`).
pub fn decode_yolo(
    head: &YoloHead,
    out: &Tensor,
    g: &LetterboxGeom,
    thresh: f32,
) -> Result<Vec<Candidate>> {
    let net = (g.net_w as f64, g.net_h as f64);
    decode_anchored(
        "yolo",
        out,
        &head.anchors,
        4,
        head.classes,
        g,
        |_, _| net,
        thresh,
    )
}

/// Decode a `[region]` head (YOLOv2: `get_region_detections` + `correct_region_boxes`).
pub fn decode_region(
    head: &RegionHead,
    out: &Tensor,
    g: &LetterboxGeom,
    thresh: f32,
) -> Result<Vec<Candidate>> {
    decode_anchored(
        "region",
        out,
        &head.anchors,
        head.coords,
        head.classes,
        g,
        |w, h| (w as f64, h as f64),
        thresh,
    )
}

/// Decode a `[detection]` head (YOLOv1, `get_detection_detections`): the output
/// `[S²·C class probabilities][S²·B confidences][S²·B·4 boxes]`, boxes relative to their cell
/// (x, y) and to the image (w, h; squared when the head has `sqrt=1`), scaled to the photo
/// (YOLOv1 takes a plain resize, no letterbox).
pub fn decode_detection(
    head: &DetectionHead,
    out: &Tensor,
    image_w: usize,
    image_h: usize,
    thresh: f32,
) -> Result<Vec<Candidate>> {
    let p = out.narrow(0, 0, 1)?.to_vec();
    let (s, b, cl) = (head.side, head.num, head.classes);
    if p.len() != s * s * (cl + b * 5) {
        return Err(crate::error::arg(
            "detection",
            format!(
                "head output has {} values, expected {}",
                p.len(),
                s * s * (cl + b * 5)
            ),
        ));
    }
    let mut dets = Vec::with_capacity(s * s * b);
    for i in 0..s * s {
        let (row, col) = (i / s, i % s);
        for n in 0..b {
            let scale = p[s * s * cl + i * b + n];
            let bi = s * s * (cl + b) + (i * b + n) * 4;
            let pw = |v: f32| {
                if head.sqrt {
                    ((v as f64).powi(2)) as f32
                } else {
                    v
                }
            };
            let bbox = [
                (p[bi] + col as f32) / s as f32 * image_w as f32,
                (p[bi + 1] + row as f32) / s as f32 * image_h as f32,
                pw(p[bi + 2]) * image_w as f32,
                pw(p[bi + 3]) * image_h as f32,
            ];
            let probs = (0..cl)
                .map(|j| {
                    let pr = scale * p[i * cl + j];
                    if pr > thresh {
                        pr
                    } else {
                        0.0
                    }
                })
                .collect();
            dets.push(Candidate {
                bbox,
                objectness: scale,
                probs,
            });
        }
    }
    Ok(dets)
}

/// darknet's `box_iou` on centre boxes, in `f32`.
pub fn center_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let overlap = |x1: f32, w1: f32, x2: f32, w2: f32| {
        let l = (x1 - w1 / 2.0).max(x2 - w2 / 2.0);
        let r = (x1 + w1 / 2.0).min(x2 + w2 / 2.0);
        r - l
    };
    let w = overlap(a[0], a[2], b[0], b[2]);
    let h = overlap(a[1], a[3], b[1], b[3]);
    let i = if w < 0.0 || h < 0.0 { 0.0 } else { w * h };
    let u = a[2] * a[3] + b[2] * b[3] - i;
    i / u
}

/// darknet's `do_nms_sort`: for every class, the candidates by that class's score (best first,
/// ties in candidate order), each zeroing that class's score of every later candidate whose IoU
/// with it is above `thresh`.
pub fn nms_sort(dets: &mut [Candidate], thresh: f32) {
    let classes = dets.first().map_or(0, |d| d.probs.len());
    let mut order: Vec<usize> = (0..dets.len())
        .filter(|&i| dets[i].objectness != 0.0)
        .collect();
    for k in 0..classes {
        order.sort_by(|&a, &b| dets[b].probs[k].total_cmp(&dets[a].probs[k]));
        for (oi, &i) in order.iter().enumerate() {
            if dets[i].probs[k] == 0.0 {
                continue;
            }
            let bi = dets[i].bbox;
            for &j in &order[oi + 1..] {
                if center_iou(&bi, &dets[j].bbox) > thresh {
                    dets[j].probs[k] = 0.0;
                }
            }
        }
    }
}

/// Every (candidate, class) with a score above `thresh`, best first (as darknet's
/// `draw_detections` lists them: one box may carry several classes).
pub fn detections(dets: &[Candidate], thresh: f32) -> Vec<YoloDetection> {
    let mut out = Vec::new();
    for d in dets {
        for (k, &p) in d.probs.iter().enumerate() {
            if p > thresh {
                let [x, y, w, h] = d.bbox;
                out.push(YoloDetection {
                    class: k,
                    score: p,
                    bbox: [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0],
                });
            }
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Settings of a YOLO run: darknet's `detector test` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YoloSettings {
    /// Score threshold (`-thresh`).
    pub thresh: f32,
    /// NMS IoU threshold.
    pub nms: f32,
}

impl Default for YoloSettings {
    fn default() -> Self {
        YoloSettings {
            thresh: 0.25,
            nms: 0.45,
        }
    }
}

/// A darknet YOLO model ready to detect: the network with batch norm folded in.
pub struct Yolo {
    pub net: Darknet,
}

impl Yolo {
    /// Build from a cfg file and load a weights file; batch norm is folded for inference.
    pub fn load(cfg: &Path, weights: &Path) -> Result<Yolo> {
        let net = Darknet::read_cfg(cfg)?;
        net.load_weights(weights)?;
        Ok(Yolo { net: net.fused()? })
    }

    /// The heads of a cfg file alone, for a network that runs elsewhere (an ONNX export of it:
    /// [`Yolo::detect_with`]).
    pub fn heads_of(cfg: &Path) -> Result<Yolo> {
        Ok(Yolo {
            net: Darknet::read_cfg(cfg)?,
        })
    }

    /// Number of classes the model's detection heads predict.
    pub fn classes(&self) -> usize {
        self.net
            .layers
            .iter()
            .find_map(|l| match l {
                crate::darknet::Layer::Yolo(h) => Some(h.classes),
                crate::darknet::Layer::Region(h) => Some(h.classes),
                crate::darknet::Layer::Detection(h) => Some(h.classes),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Detect on one image: letterbox (or plain resize for a YOLOv1 `[detection]` head), run,
    /// decode every head, NMS, and list the boxes above the threshold.
    pub fn detect(&self, img: &Planar, s: YoloSettings) -> Result<Vec<YoloDetection>> {
        self.detect_with(img, s, &mut |x| {
            Ok(self
                .net
                .forward_heads(x)
                .map_err(|e| crate::error::arg("yolo", e.to_string()))?
                .into_iter()
                .map(HeadOutput::into_tensor)
                .collect())
        })
    }

    /// [`Yolo::detect`] with the network's heads' outputs, in layer order and activated as
    /// darknet leaves them, made by `run` from the (1, C, H, W) input: another engine running
    /// the same network (its ONNX export). Each output must have its head's input shape.
    pub fn detect_with(
        &self,
        img: &Planar,
        s: YoloSettings,
        run: &mut dyn FnMut(&aics_tensor::Tensor) -> Result<Vec<aics_tensor::Tensor>>,
    ) -> Result<Vec<YoloDetection>> {
        let (nw, nh) = (self.net.width, self.net.height);
        if img.c != self.net.channels {
            return Err(crate::error::arg(
                "yolo",
                format!(
                    "the network takes {} channels, the image has {}",
                    self.net.channels, img.c
                ),
            ));
        }
        let v1 = self
            .net
            .layers
            .iter()
            .any(|l| matches!(l, crate::darknet::Layer::Detection(_)));
        let (input, g) = if v1 {
            (
                img.resize(nw, nh),
                LetterboxGeom {
                    image_w: img.w,
                    image_h: img.h,
                    net_w: nw,
                    net_h: nh,
                    new_w: nw,
                    new_h: nh,
                },
            )
        } else {
            img.letterbox(nw, nh)
        };
        let _guard = aics_tensor::no_grad();
        let outs = run(&input.to_tensor()?)?;
        let layers: Vec<(usize, &crate::darknet::Layer)> = self
            .net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_head())
            .collect();
        if outs.len() != layers.len() {
            return Err(crate::error::arg(
                "yolo",
                format!(
                    "the network gave {} outputs for {} detection heads",
                    outs.len(),
                    layers.len()
                ),
            ));
        }
        let mut heads = Vec::new();
        for ((i, l), t) in layers.into_iter().zip(outs) {
            // a head's output has its input's shape, the layer before it
            let (c, h, w) = self.net.shapes[i.saturating_sub(1)];
            if i == 0 || t.numel() != c * h * w || t.shape().first() != Some(&1) {
                return Err(crate::error::arg(
                    "yolo",
                    format!(
                        "output {} of shape {:?} does not fit head {i}, which reads {c}x{h}x{w}",
                        heads.len(),
                        t.shape()
                    ),
                ));
            }
            heads.extend(HeadOutput::of(l, t));
        }
        let mut cands = Vec::new();
        for h in &heads {
            cands.extend(match h {
                HeadOutput::Yolo(head, t) => decode_yolo(head, t, &g, s.thresh)?,
                HeadOutput::Region(head, t) => decode_region(head, t, &g, s.thresh)?,
                HeadOutput::Detection(head, t) => {
                    decode_detection(head, t, img.w, img.h, s.thresh)?
                }
            });
        }
        if cands.is_empty() && heads.is_empty() {
            return Err(crate::error::arg(
                "yolo",
                "the network has no [yolo], [region] or [detection] layer",
            ));
        }
        nms_sort(&mut cands, s.nms);
        Ok(detections(&cands, s.thresh))
    }
}
