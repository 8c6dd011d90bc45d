//! Synthetic detection scenes with exact boxes: drawn shapes (circle, square, triangle, ring,
//! cross) and Fashion-MNIST items, at several scales and aspect ratios, partly overlapping, on
//! textured backgrounds. The training set of the chapter's detectors, and a check of every box
//! tool: each box is the tight box of the pixels its object was drawn on.

use std::path::Path;

use aics_tensor::Rng;

use crate::data::{Annotation, Category, Dataset, Image};
use crate::error::{arg, DetectError, Result};

/// The shape classes, in class order; Fashion-MNIST's ten follow them.
pub const SHAPES: [&str; 5] = ["circle", "square", "triangle", "ring", "cross"];
/// Fashion-MNIST's classes, in its label order.
pub const FASHION: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Fashion-MNIST images (`n × 28 × 28` bytes) and their labels.
pub struct FashionItems {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct SynthConfig {
    pub images: usize,
    /// Classes 1..=K: the five shapes, then Fashion-MNIST's items (up to 15).
    pub classes: usize,
    pub width: usize,
    pub height: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Smallest object side in pixels; the largest is 45% of the shorter image side.
    pub min_size: f64,
    /// Largest IoU a new object may have with one already placed.
    pub max_overlap: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            images: 100,
            classes: 5,
            width: 256,
            height: 256,
            min_objects: 2,
            max_objects: 6,
            min_size: 16.0,
            max_overlap: 0.4,
            seed: 0,
        }
    }
}

/// The names of classes 1..=K.
pub fn class_names(k: usize) -> Vec<String> {
    SHAPES
        .iter()
        .chain(FASHION.iter())
        .take(k)
        .map(|s| s.to_string())
        .collect()
}

/// One generated scene: RGB bytes and its objects.
pub struct Scene {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// `(class id 1..=K, [x, y, w, h])`, boxes on pixel edges.
    pub objects: Vec<(u64, [f64; 4])>,
    /// Per pixel, `1 +` the index of the object drawn on top there, or 0 for background.
    pub owner: Vec<u16>,
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    w * h / (a[2] * a[3] + b[2] * b[3] - w * h)
}

/// The coverage (0–1) of shape `k` at pixel `(i, j)` of a `w × h` box.
fn shape_alpha(k: usize, i: usize, j: usize, w: usize, h: usize) -> f32 {
    let u = (j as f64 + 0.5) / w as f64 * 2.0 - 1.0;
    let v = (i as f64 + 0.5) / h as f64 * 2.0 - 1.0;
    let r2 = u * u + v * v;
    let inside = match k {
        0 => r2 <= 1.0,
        1 => true,
        2 => u.abs() <= (v + 1.0) / 2.0,
        3 => (0.36..=1.0).contains(&r2),
        _ => u.abs() <= 0.3 || v.abs() <= 0.3,
    };
    if inside {
        1.0
    } else {
        0.0
    }
}

/// Generate scene `index` of a data set (each scene has its own random stream).
pub fn scene(cfg: &SynthConfig, index: usize, fashion: Option<&FashionItems>) -> Result<Scene> {
    let (w, h) = (cfg.width, cfg.height);
    if cfg.classes == 0 || cfg.classes > SHAPES.len() + FASHION.len() {
        return Err(arg(
            "synth-detect",
            format!(
                "classes must be 1 to 15 (5 shapes, then 10 Fashion-MNIST items), got {}",
                cfg.classes
            ),
        ));
    }
    if cfg.classes > SHAPES.len() && fashion.is_none() {
        return Err(arg(
            "synth-detect",
            "more than 5 classes need the Fashion-MNIST items",
        ));
    }
    let max_side = 0.45 * w.min(h) as f64;
    if w < 32 || h < 32 || cfg.min_size < 4.0 || cfg.min_size > max_side {
        return Err(arg("synth-detect", format!("a {w}x{h} image with objects from {} px up to 45% of the shorter side: need at least 32x32 and 4 ≤ min size ≤ {max_side:.0}", cfg.min_size)));
    }
    if cfg.min_objects > cfg.max_objects || cfg.max_objects == 0 {
        return Err(arg(
            "synth-detect",
            format!(
                "objects per image {}..{} is empty",
                cfg.min_objects, cfg.max_objects
            ),
        ));
    }
    let mut rng = Rng::derive(cfg.seed, index as u64);
    // background: a base colour, a slanted wave and per-pixel noise
    let base: [f64; 3] = [
        rng.uniform() * 200.0 + 20.0,
        rng.uniform() * 200.0 + 20.0,
        rng.uniform() * 200.0 + 20.0,
    ];
    let (fx, fy, ph) = (
        (rng.uniform() - 0.5) * 0.3,
        (rng.uniform() - 0.5) * 0.3,
        rng.uniform() * 6.3,
    );
    let amp = rng.uniform() * 40.0;
    let mut img = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let wave = amp * (fx * x as f64 + fy * y as f64 + ph).sin();
            for c in 0..3 {
                let n = (rng.uniform() - 0.5) * 30.0;
                img[(y * w + x) * 3 + c] = (base[c] + wave + n).clamp(0.0, 255.0) as f32;
            }
        }
    }
    let count = cfg.min_objects + rng.below(cfg.max_objects - cfg.min_objects + 1);
    let mut placed: Vec<[f64; 4]> = Vec::new();
    let mut owner = vec![0u16; w * h];
    let mut objects = Vec::new();
    for _ in 0..count {
        let class = rng.below(cfg.classes);
        let s = (cfg.min_size.ln() + rng.uniform() * (max_side.ln() - cfg.min_size.ln())).exp();
        let r = (rng.uniform() * 2.0 - 1.0) * 2f64.ln(); // aspect 1/2 … 2
        let ow = ((s * (r / 2.0).exp()).round() as usize).clamp(4, w - 1);
        let oh = ((s * (-r / 2.0).exp()).round() as usize).clamp(4, h - 1);
        let mut spot = None;
        for _ in 0..50 {
            let x0 = rng.below(w - ow + 1);
            let y0 = rng.below(h - oh + 1);
            let b = [x0 as f64, y0 as f64, ow as f64, oh as f64];
            if placed.iter().all(|p| iou(p, &b) <= cfg.max_overlap) {
                spot = Some((x0, y0));
                break;
            }
        }
        let Some((x0, y0)) = spot else { continue };
        // colour far from the background's
        let mut col = [0f64; 3];
        for (c, v) in col.iter_mut().enumerate() {
            *v = if base[c] > 128.0 {
                rng.uniform() * 90.0
            } else {
                165.0 + rng.uniform() * 90.0
            };
        }
        // the object's coverage in its box
        let alpha: Vec<f32> = if class < SHAPES.len() {
            (0..oh * ow)
                .map(|p| shape_alpha(class, p / ow, p % ow, ow, oh))
                .collect()
        } else {
            let f = fashion.ok_or_else(|| arg("synth-detect", "no Fashion-MNIST items"))?;
            let label = (class - SHAPES.len()) as u8;
            let idx: Vec<usize> = f
                .labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == label)
                .map(|(i, _)| i)
                .collect();
            if idx.is_empty() {
                return Err(arg(
                    "synth-detect",
                    format!("no Fashion-MNIST item of label {label}"),
                ));
            }
            let item = &f.pixels[idx[rng.below(idx.len())] * 784..][..784];
            (0..oh * ow)
                .map(|p| {
                    let (i, j) = (p / ow, p % ow);
                    let v = item[(i * 28 / oh) * 28 + j * 28 / ow] as f32 / 255.0;
                    if v > 0.15 {
                        v
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let (mut bx0, mut by0, mut bx1, mut by1) = (usize::MAX, usize::MAX, 0, 0);
        let me = objects.len() as u16 + 1;
        let mut mine = Vec::new();
        for i in 0..oh {
            for j in 0..ow {
                let a = alpha[i * ow + j];
                if a <= 0.0 {
                    continue;
                }
                let (x, y) = (x0 + j, y0 + i);
                for c in 0..3 {
                    let p = &mut img[(y * w + x) * 3 + c];
                    *p = (1.0 - a) * *p + a * col[c] as f32;
                }
                mine.push(y * w + x);
                bx0 = bx0.min(x);
                by0 = by0.min(y);
                bx1 = bx1.max(x);
                by1 = by1.max(y);
            }
        }
        if bx0 == usize::MAX {
            continue;
        }
        for p in mine {
            owner[p] = me;
        }
        let b = [
            bx0 as f64,
            by0 as f64,
            (bx1 - bx0 + 1) as f64,
            (by1 - by0 + 1) as f64,
        ];
        placed.push(b);
        objects.push((class as u64 + 1, b));
    }
    let rgb = img
        .iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    Ok(Scene {
        rgb,
        width: w,
        height: h,
        objects,
        owner,
    })
}

/// Generate a data set: scenes as `images/NNNNN.png`, annotations as `annotations.json` (COCO)
/// and `voc/NNNNN.xml` (Pascal VOC), classes 1..=K. Returns the data set.
pub fn write_synth(
    dir: &Path,
    cfg: &SynthConfig,
    fashion: Option<&FashionItems>,
    mut progress: impl FnMut(usize),
) -> Result<Dataset> {
    let file_err = |p: &Path, e: String| DetectError::File {
        path: p.to_path_buf(),
        msg: e,
    };
    let img_dir = dir.join("images");
    std::fs::create_dir_all(&img_dir).map_err(|e| file_err(&img_dir, e.to_string()))?;
    let mut d = Dataset {
        categories: class_names(cfg.classes)
            .into_iter()
            .enumerate()
            .map(|(i, name)| Category {
                id: i as u64 + 1,
                name,
            })
            .collect(),
        ..Dataset::default()
    };
    for i in 0..cfg.images {
        let s = scene(cfg, i, fashion)?;
        let name = format!("{:05}.png", i + 1);
        let path = img_dir.join(&name);
        image::save_buffer(
            &path,
            &s.rgb,
            s.width as u32,
            s.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| file_err(&path, e.to_string()))?;
        let id = i as u64 + 1;
        d.images.push(Image {
            id,
            file_name: name,
            width: s.width as u32,
            height: s.height as u32,
        });
        for (c, b) in s.objects {
            d.annotations.push(Annotation {
                id: d.annotations.len() as u64 + 1,
                image_id: id,
                category_id: c,
                bbox: b,
                area: Some(b[2] * b[3]),
                iscrowd: false,
                difficult: false,
            });
        }
        progress(i + 1);
    }
    d.validate().map_err(|e| file_err(dir, e))?;
    crate::data::write_coco(&d, &dir.join("annotations.json"))?;
    crate::data::write_voc_dir(&d, &dir.join("voc"))?;
    Ok(d)
}
