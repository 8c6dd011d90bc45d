//! MTCNN, the cascade face detector (Zhang et al. 2016), with the trained networks and the
//! pipeline of facenet-pytorch 2.6.0: P-Net over an image pyramid (minimum face 20, factor
//! 0.709), R-Net on 24×24 crops, O-Net on 48×48 crops, thresholds 0.6/0.7/0.7, box regression,
//! NMS after every stage, five landmarks.
//!
//! Arithmetic follows the reference step by step (its `+1` conventions differ by step: P-Net's
//! regression, `rerec` and the NMS of the first two stages take widths `x2 − x1`; `bbreg`, the
//! landmarks and the last stage's "Min" NMS take `x2 − x1 + 1`); resampling is area averaging
//! (`interpolate(mode="area")`), with the sum divided by the window height, then its width.

use std::path::Path;

use aics_nn::{Conv2d, Linear, Module, PReLU};
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};

use crate::error::{arg, DetectError, Result};
use crate::yolo::Planar;

fn conv(i: usize, o: usize, k: usize, rng: &mut Rng) -> Result<Conv2d> {
    Conv2d::new(i, o, k, ConvParams::default(), true, rng).map_err(|e| arg("mtcnn", e.to_string()))
}
fn lin(i: usize, o: usize, rng: &mut Rng) -> Result<Linear> {
    Linear::new(i, o, true, rng).map_err(|e| arg("mtcnn", e.to_string()))
}
fn pool(k: usize, s: usize) -> PoolParams {
    PoolParams::new(k).stride(s).ceil_mode(true)
}

/// P-Net: the fully convolutional proposal network (12×12 receptive field, stride 2).
#[derive(aics_nn::Module)]
pub struct PNet {
    #[module]
    conv1: Conv2d,
    #[module]
    prelu1: PReLU,
    #[module]
    conv2: Conv2d,
    #[module]
    prelu2: PReLU,
    #[module]
    conv3: Conv2d,
    #[module]
    prelu3: PReLU,
    #[module]
    conv4_1: Conv2d,
    #[module]
    conv4_2: Conv2d,
}

impl PNet {
    pub fn new(rng: &mut Rng) -> Result<Self> {
        Ok(PNet {
            conv1: conv(3, 10, 3, rng)?,
            prelu1: PReLU::new(10),
            conv2: conv(10, 16, 3, rng)?,
            prelu2: PReLU::new(16),
            conv3: conv(16, 32, 3, rng)?,
            prelu3: PReLU::new(32),
            conv4_1: conv(32, 2, 1, rng)?,
            conv4_2: conv(32, 4, 1, rng)?,
        })
    }

    /// `(regression (N, 4, H, W), face probability (N, 2, H, W))`.
    pub fn forward2(&self, x: &Tensor) -> aics_nn::Result<(Tensor, Tensor)> {
        let x = self
            .prelu1
            .forward(&self.conv1.forward(x)?)?
            .max_pool2d(pool(2, 2))?;
        let x = self.prelu2.forward(&self.conv2.forward(&x)?)?;
        let x = self.prelu3.forward(&self.conv3.forward(&x)?)?;
        Ok((
            self.conv4_2.forward(&x)?,
            self.conv4_1.forward(&x)?.softmax(1)?,
        ))
    }
}

impl Module for PNet {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.forward2(x)?.1)
    }
}

/// Flatten as the reference does: `permute(0, 3, 2, 1)` (width outermost, channel innermost).
fn flatten_whc(x: &Tensor) -> aics_nn::Result<Tensor> {
    Ok(x.permute(&[0, 3, 2, 1])?.flatten(1)?)
}

/// R-Net: refines P-Net's candidates on 24×24 crops.
#[derive(aics_nn::Module)]
pub struct RNet {
    #[module]
    conv1: Conv2d,
    #[module]
    prelu1: PReLU,
    #[module]
    conv2: Conv2d,
    #[module]
    prelu2: PReLU,
    #[module]
    conv3: Conv2d,
    #[module]
    prelu3: PReLU,
    #[module]
    dense4: Linear,
    #[module]
    prelu4: PReLU,
    #[module]
    dense5_1: Linear,
    #[module]
    dense5_2: Linear,
}

impl RNet {
    pub fn new(rng: &mut Rng) -> Result<Self> {
        Ok(RNet {
            conv1: conv(3, 28, 3, rng)?,
            prelu1: PReLU::new(28),
            conv2: conv(28, 48, 3, rng)?,
            prelu2: PReLU::new(48),
            conv3: conv(48, 64, 2, rng)?,
            prelu3: PReLU::new(64),
            dense4: lin(576, 128, rng)?,
            prelu4: PReLU::new(128),
            dense5_1: lin(128, 2, rng)?,
            dense5_2: lin(128, 4, rng)?,
        })
    }

    /// `(regression (N, 4), face probability (N, 2))`.
    pub fn forward2(&self, x: &Tensor) -> aics_nn::Result<(Tensor, Tensor)> {
        let x = self
            .prelu1
            .forward(&self.conv1.forward(x)?)?
            .max_pool2d(pool(3, 2))?;
        let x = self
            .prelu2
            .forward(&self.conv2.forward(&x)?)?
            .max_pool2d(pool(3, 2))?;
        let x = self.prelu3.forward(&self.conv3.forward(&x)?)?;
        let x = self
            .prelu4
            .forward(&self.dense4.forward(&flatten_whc(&x)?)?)?;
        Ok((
            self.dense5_2.forward(&x)?,
            self.dense5_1.forward(&x)?.softmax(1)?,
        ))
    }
}

impl Module for RNet {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.forward2(x)?.1)
    }
}

/// O-Net: the last stage on 48×48 crops, with five landmarks.
#[derive(aics_nn::Module)]
pub struct ONet {
    #[module]
    conv1: Conv2d,
    #[module]
    prelu1: PReLU,
    #[module]
    conv2: Conv2d,
    #[module]
    prelu2: PReLU,
    #[module]
    conv3: Conv2d,
    #[module]
    prelu3: PReLU,
    #[module]
    conv4: Conv2d,
    #[module]
    prelu4: PReLU,
    #[module]
    dense5: Linear,
    #[module]
    prelu5: PReLU,
    #[module]
    dense6_1: Linear,
    #[module]
    dense6_2: Linear,
    #[module]
    dense6_3: Linear,
}

impl ONet {
    pub fn new(rng: &mut Rng) -> Result<Self> {
        Ok(ONet {
            conv1: conv(3, 32, 3, rng)?,
            prelu1: PReLU::new(32),
            conv2: conv(32, 64, 3, rng)?,
            prelu2: PReLU::new(64),
            conv3: conv(64, 64, 3, rng)?,
            prelu3: PReLU::new(64),
            conv4: conv(64, 128, 2, rng)?,
            prelu4: PReLU::new(128),
            dense5: lin(1152, 256, rng)?,
            prelu5: PReLU::new(256),
            dense6_1: lin(256, 2, rng)?,
            dense6_2: lin(256, 4, rng)?,
            dense6_3: lin(256, 10, rng)?,
        })
    }

    /// `(regression (N, 4), landmarks (N, 10: five x then five y), face probability (N, 2))`.
    pub fn forward3(&self, x: &Tensor) -> aics_nn::Result<(Tensor, Tensor, Tensor)> {
        let x = self
            .prelu1
            .forward(&self.conv1.forward(x)?)?
            .max_pool2d(pool(3, 2))?;
        let x = self
            .prelu2
            .forward(&self.conv2.forward(&x)?)?
            .max_pool2d(pool(3, 2))?;
        let x = self
            .prelu3
            .forward(&self.conv3.forward(&x)?)?
            .max_pool2d(pool(2, 2))?;
        let x = self.prelu4.forward(&self.conv4.forward(&x)?)?;
        let x = self
            .prelu5
            .forward(&self.dense5.forward(&flatten_whc(&x)?)?)?;
        Ok((
            self.dense6_2.forward(&x)?,
            self.dense6_3.forward(&x)?,
            self.dense6_1.forward(&x)?.softmax(1)?,
        ))
    }
}

impl Module for ONet {
    fn forward(&self, x: &Tensor) -> aics_nn::Result<Tensor> {
        Ok(self.forward3(x)?.2)
    }
}

/// A face: box `[x1, y1, x2, y2]` (pixels, not clipped), probability, and five landmarks (left
/// eye, right eye, nose, left and right mouth corner) as `(x, y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [(f32, f32); 5],
}

/// Settings of the cascade: facenet-pytorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MtcnnSettings {
    pub min_face: usize,
    pub factor: f64,
    pub thresholds: [f32; 3],
}

impl Default for MtcnnSettings {
    fn default() -> Self {
        MtcnnSettings {
            min_face: 20,
            factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
        }
    }
}

/// How many candidates each stage kept (for the curious and for tests).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MtcnnTrace {
    pub scales: Vec<f64>,
    pub pnet: usize,
    pub pnet_nms: usize,
    pub rnet: usize,
    pub onet: usize,
}

/// The three networks.
pub struct Mtcnn {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
}

fn load_into(m: &dyn Module, path: &Path) -> Result<()> {
    let file = |e: String| DetectError::File {
        path: path.to_path_buf(),
        msg: e,
    };
    let raw = aics_io::load_pth(path).map_err(|e| file(e.to_string()))?;
    let tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = raw
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.data)))
        .collect();
    aics_nn::load_state_dict(m, &tensors, true).map_err(|e| file(e.to_string()))
}

/// `interpolate(x, size, mode="area")` on a `(C, H, W)` float image: each output cell the mean
/// of input rows `[⌊i·h/oh⌋, ⌈(i+1)·h/oh⌉)` and the same columns, summed in `f32` rows outer,
/// divided by the window height, then its width.
fn area_resample(x: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let span = |i: usize, n: usize, o: usize| (i * n / o, ((i + 1) * n).div_ceil(o));
    let mut out = vec![0f32; c * oh * ow];
    for k in 0..c {
        for i in 0..oh {
            let (y0, y1) = span(i, h, oh);
            for j in 0..ow {
                let (x0, x1) = span(j, w, ow);
                let mut s = 0f32;
                for y in y0..y1 {
                    for xx in x0..x1 {
                        s += x[(k * h + y) * w + xx];
                    }
                }
                out[(k * oh + i) * ow + j] = s / (y1 - y0) as f32 / (x1 - x0) as f32;
            }
        }
    }
    out
}

fn normalize(v: &mut [f32]) {
    for x in v {
        *x = (*x - 127.5) * 0.0078125;
    }
}

/// A candidate: `[x1, y1, x2, y2]`, score, and the regression of the stage that made it.
#[derive(Clone, Copy, Debug)]
struct Cand {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// torchvision's NMS (no +1), keeping the order of decreasing score.
fn nms_tv(c: &[Cand], thr: f32) -> Vec<Cand> {
    if c.is_empty() {
        return Vec::new();
    }
    let boxes: Vec<f32> = c.iter().flat_map(|x| x.b).collect();
    let scores: Vec<f32> = c.iter().map(|x| x.score).collect();
    let Ok(t) = Tensor::from_vec(boxes, &[c.len(), 4]) else {
        return Vec::new();
    };
    match crate::boxes::nms(&t, &scores, thr as f64) {
        Ok(keep) => keep.into_iter().map(|i| c[i]).collect(),
        Err(_) => Vec::new(),
    }
}

/// `rerec`: squares around each box's centre, side `max(w, h)` (no +1).
fn rerec(b: &mut [f32; 4]) {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    b[0] = b[0] + w * 0.5 - l * 0.5;
    b[1] = b[1] + h * 0.5 - l * 0.5;
    b[2] = b[0] + l;
    b[3] = b[1] + l;
}

/// `bbreg`: the box moved by the regression, widths with +1.
fn bbreg(b: &mut [f32; 4], r: &[f32; 4]) {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    b[0] += r[0] * w;
    b[1] += r[1] * h;
    b[2] += r[2] * w;
    b[3] += r[3] * h;
}

/// The crop of `b` (truncated to integers, clipped to 1-based `[1, w] × [1, h]`) resized to
/// `size²` and normalised; `None` when the clipped crop is empty.
fn crop(img: &Planar, b: &[f32; 4], size: usize) -> Option<Vec<f32>> {
    let t = |v: f32| v.trunc() as i64;
    let x = t(b[0]).max(1);
    let y = t(b[1]).max(1);
    let ex = t(b[2]).min(img.w as i64);
    let ey = t(b[3]).min(img.h as i64);
    if ey < y || ex < x {
        return None;
    }
    let (cw, ch) = ((ex - x + 1) as usize, (ey - y + 1) as usize);
    let (x0, y0) = ((x - 1) as usize, (y - 1) as usize);
    let mut part = vec![0f32; 3 * ch * cw];
    for k in 0..3 {
        for r in 0..ch {
            let src = &img.data[(k * img.h + y0 + r) * img.w + x0..][..cw];
            part[(k * ch + r) * cw..][..cw].copy_from_slice(src);
        }
    }
    let mut v = area_resample(&part, 3, ch, cw, size, size);
    normalize(&mut v);
    Some(v)
}

impl Mtcnn {
    /// Networks with random weights (load trained ones with [`Mtcnn::load`]).
    pub fn new(rng: &mut Rng) -> Result<Self> {
        Ok(Mtcnn {
            pnet: PNet::new(rng)?,
            rnet: RNet::new(rng)?,
            onet: ONet::new(rng)?,
        })
    }

    /// Load facenet-pytorch's `pnet.pt`, `rnet.pt` and `onet.pt` from a folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let m = Mtcnn::new(&mut Rng::new(0))?;
        load_into(&m.pnet, &dir.join("pnet.pt"))?;
        load_into(&m.rnet, &dir.join("rnet.pt"))?;
        load_into(&m.onet, &dir.join("onet.pt"))?;
        Ok(m)
    }

    /// Find faces in an RGB image whose values are 0–255 (a [`Planar`] of bytes, not /255),
    /// largest box first.
    pub fn detect(&self, img255: &Planar, s: MtcnnSettings) -> Result<(Vec<Face>, MtcnnTrace)> {
        if img255.c != 3 {
            return Err(arg(
                "mtcnn",
                format!("needs an RGB image, got {} channels", img255.c),
            ));
        }
        let _g = aics_tensor::no_grad();
        let (h, w) = (img255.h, img255.w);
        let mut trace = MtcnnTrace::default();
        let m = 12.0 / s.min_face as f64;
        let mut minl = h.min(w) as f64 * m;
        let mut scale = m;
        while minl >= 12.0 {
            trace.scales.push(scale);
            scale *= s.factor;
            minl *= s.factor;
        }
        let err = |e: aics_nn::NnError| arg("mtcnn", e.to_string());
        // stage 1: P-Net on every scale
        let mut cands: Vec<Cand> = Vec::new();
        for &sc in &trace.scales {
            let hs = (h as f64 * sc + 1.0) as usize;
            let ws = (w as f64 * sc + 1.0) as usize;
            let mut v = area_resample(&img255.data, 3, h, w, hs, ws);
            normalize(&mut v);
            let x = Tensor::from_vec(v, &[1, 3, hs, ws])?;
            let (reg, prob) = self.pnet.forward2(&x).map_err(err)?;
            let (rh, rw) = (reg.shape()[2], reg.shape()[3]);
            let (reg, prob) = (reg.to_vec(), prob.to_vec());
            let scf = sc as f32;
            let mut here = Vec::new();
            for y in 0..rh {
                for xx in 0..rw {
                    let i = y * rw + xx;
                    let p = prob[rh * rw + i];
                    if p >= s.thresholds[0] {
                        let q = |v: usize, off: f32| ((2.0 * v as f32 + off) / scf).floor();
                        here.push(Cand {
                            b: [q(xx, 1.0), q(y, 1.0), q(xx, 12.0), q(y, 12.0)],
                            score: p,
                            reg: [
                                reg[i],
                                reg[rh * rw + i],
                                reg[2 * rh * rw + i],
                                reg[3 * rh * rw + i],
                            ],
                        });
                    }
                }
            }
            trace.pnet += here.len();
            cands.extend(nms_tv(&here, 0.5));
        }
        let mut cands = nms_tv(&cands, 0.7);
        trace.pnet_nms = cands.len();
        for c in &mut cands {
            let regw = c.b[2] - c.b[0];
            let regh = c.b[3] - c.b[1];
            c.b = [
                c.b[0] + c.reg[0] * regw,
                c.b[1] + c.reg[1] * regh,
                c.b[2] + c.reg[2] * regw,
                c.b[3] + c.reg[3] * regh,
            ];
            rerec(&mut c.b);
        }
        // stage 2: R-Net on 24×24 crops
        let cands = self.refine(img255, cands, 24, s.thresholds[1], |x| {
            let (r, p) = self.rnet.forward2(x).map_err(err)?;
            Ok((r, None, p))
        })?;
        let mut cands: Vec<Cand> =
            nms_tv(&cands.into_iter().map(|(c, _)| c).collect::<Vec<_>>(), 0.7);
        trace.rnet = cands.len();
        for c in &mut cands {
            let r = c.reg;
            bbreg(&mut c.b, &r);
            rerec(&mut c.b);
        }
        // stage 3: O-Net on 48×48 crops, landmarks
        let out = self.refine(img255, cands, 48, s.thresholds[2], |x| {
            let (r, l, p) = self.onet.forward3(x).map_err(err)?;
            Ok((r, Some(l), p))
        })?;
        let mut faces: Vec<Face> = out
            .into_iter()
            .map(|(mut c, lm)| {
                let lm = lm.unwrap_or([0.0; 10]);
                let wi = c.b[2] - c.b[0] + 1.0;
                let hi = c.b[3] - c.b[1] + 1.0;
                let mut landmarks = [(0f32, 0f32); 5];
                for (k, p) in landmarks.iter_mut().enumerate() {
                    *p = (wi * lm[k] + c.b[0] - 1.0, hi * lm[5 + k] + c.b[1] - 1.0);
                }
                let r = c.reg;
                bbreg(&mut c.b, &r);
                Face {
                    bbox: c.b,
                    score: c.score,
                    landmarks,
                }
            })
            .collect();
        faces = nms_min(faces, 0.7);
        trace.onet = faces.len();
        let area = |f: &Face| (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
        faces.sort_by(|a, b| area(b).total_cmp(&area(a)));
        Ok((faces, trace))
    }

    /// Crop every candidate, run a network on the batch, and keep those scoring above `thr`,
    /// with the network's regression (and landmarks).
    #[allow(clippy::type_complexity)]
    fn refine(
        &self,
        img: &Planar,
        cands: Vec<Cand>,
        size: usize,
        thr: f32,
        net: impl Fn(&Tensor) -> Result<(Tensor, Option<Tensor>, Tensor)>,
    ) -> Result<Vec<(Cand, Option<[f32; 10]>)>> {
        let mut kept = Vec::new();
        let mut data = Vec::new();
        for c in cands {
            if let Some(v) = crop(img, &c.b, size) {
                data.extend(v);
                kept.push(c);
            }
        }
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let x = Tensor::from_vec(data, &[kept.len(), 3, size, size])?;
        let (reg, lm, prob) = net(&x)?;
        let (reg, prob) = (reg.to_vec(), prob.to_vec());
        let lm = lm.map(|t| t.to_vec());
        let mut out = Vec::new();
        for (i, mut c) in kept.into_iter().enumerate() {
            let p = prob[2 * i + 1];
            if p > thr {
                c.score = p;
                c.reg = [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]];
                let l = lm.as_ref().map(|l| {
                    let mut a = [0f32; 10];
                    a.copy_from_slice(&l[10 * i..10 * i + 10]);
                    a
                });
                out.push((c, l));
            }
        }
        Ok(out)
    }
}

/// The last stage's NMS ("Min"): overlap over the smaller area, +1 widths; keeps a box unless
/// its overlap with a better one is above `thr`; ties of score keep the later box first, as
/// NumPy's `argsort` taken from the end does for distinct values.
fn nms_min(faces: Vec<Face>, thr: f32) -> Vec<Face> {
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut order: Vec<usize> = (0..faces.len()).collect();
    order.sort_by(|&a, &b| faces[b].score.total_cmp(&faces[a].score));
    let mut keep = Vec::new();
    let mut alive = vec![true; faces.len()];
    for (oi, &i) in order.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        keep.push(i);
        let bi = faces[i].bbox;
        for &j in &order[oi + 1..] {
            if !alive[j] {
                continue;
            }
            let bj = faces[j].bbox;
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + 1.0).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + 1.0).max(0.0);
            let o = w * h / area(&bi).min(area(&bj));
            if o > thr {
                alive[j] = false;
            }
        }
    }
    keep.into_iter().map(|i| faces[i].clone()).collect()
}
