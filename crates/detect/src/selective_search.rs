//! Selective search (Uijlings et al., 2013), R-CNN's region proposals:
//!
//! 1. **Segmentation** by Felzenszwalb and Huttenlocher's graph method (2004): pixels are the
//!    nodes of an 8-connected grid graph whose edges weigh the colour distance of their ends
//!    (after a Gaussian blur, σ = 0.8); edges are visited by increasing weight and two
//!    components merge when the edge is no heavier than either component's internal difference
//!    (its heaviest minimum-spanning-tree edge) plus `k / size`; components smaller than
//!    `min_size` are then merged into a neighbour.
//! 2. **Hierarchical grouping**: starting from those regions, the two neighbouring regions most
//!    alike are merged, again and again, until one is left; every region ever formed is a
//!    proposal. Likeness adds up any of: colour (histogram intersection of 25 bins a channel),
//!    texture (intersection of histograms of Gaussian derivatives, σ = 1, in 8 orientations, 10
//!    bins each, a channel), size (small regions merge first) and fill (regions whose union's
//!    box they fill merge first); histograms of a merged region are the size-weighted mean.
//! 3. **Diversification**, the paper's "fast" mode: HSV and Lab colour spaces × k = 50 and 100
//!    × the similarity sets colour+texture+size+fill and texture+size+fill. Each strategy's
//!    regions are ranked by their order of forming (the last, largest first) times a random
//!    number in [0, 1], the strategies pooled, duplicate boxes dropped, and the lowest values
//!    kept first.

use aics_tensor::Rng;

use crate::error::{arg, Result};

/// An RGB image, 8 bits a channel, row-major.
pub struct RgbView<'a> {
    pub width: usize,
    pub height: usize,
    pub pixels: &'a [u8],
}

/// A colour space for segmentation and the colour histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorSpace {
    Rgb,
    Hsv,
    Lab,
}

/// Which similarities the grouping adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Similarity {
    pub color: bool,
    pub texture: bool,
    pub size: bool,
    pub fill: bool,
}

impl Similarity {
    pub const ALL: Similarity = Similarity {
        color: true,
        texture: true,
        size: true,
        fill: true,
    };
    pub const TEXTURE_SIZE_FILL: Similarity = Similarity {
        color: false,
        texture: true,
        size: true,
        fill: true,
    };
}

/// One strategy: a colour space, the segmentation's `k`, and the similarities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Strategy {
    pub space: ColorSpace,
    pub k: f64,
    pub similarity: Similarity,
}

/// The paper's "fast" diversification: {HSV, Lab} × k ∈ {50, 100} × {C+T+S+F, T+S+F}.
pub fn fast_strategies() -> Vec<Strategy> {
    let mut v = Vec::new();
    for space in [ColorSpace::Hsv, ColorSpace::Lab] {
        for k in [50.0, 100.0] {
            for similarity in [Similarity::ALL, Similarity::TEXTURE_SIZE_FILL] {
                v.push(Strategy {
                    space,
                    k,
                    similarity,
                });
            }
        }
    }
    v
}

/// The image in a colour space, three channels of f32 in [0, 1] each, planar.
pub fn convert(img: &RgbView, space: ColorSpace) -> Vec<[f32; 3]> {
    img.pixels
        .chunks_exact(3)
        .map(|p| {
            let (r, g, b) = (
                p[0] as f32 / 255.0,
                p[1] as f32 / 255.0,
                p[2] as f32 / 255.0,
            );
            match space {
                ColorSpace::Rgb => [r, g, b],
                ColorSpace::Hsv => {
                    let max = r.max(g).max(b);
                    let min = r.min(g).min(b);
                    let d = max - min;
                    let h = if d == 0.0 {
                        0.0
                    } else if max == r {
                        ((g - b) / d).rem_euclid(6.0)
                    } else if max == g {
                        (b - r) / d + 2.0
                    } else {
                        (r - g) / d + 4.0
                    } / 6.0;
                    let s = if max == 0.0 { 0.0 } else { d / max };
                    [h, s, max]
                }
                ColorSpace::Lab => {
                    let lin = |c: f32| {
                        if c <= 0.04045 {
                            c / 12.92
                        } else {
                            ((c + 0.055) / 1.055).powf(2.4)
                        }
                    };
                    let (r, g, b) = (lin(r), lin(g), lin(b));
                    // sRGB → XYZ (D65), normalized by the white point
                    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
                    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
                    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
                    let f = |t: f32| {
                        if t > 0.008856 {
                            t.cbrt()
                        } else {
                            7.787 * t + 16.0 / 116.0
                        }
                    };
                    let (fx, fy, fz) = (f(x), f(y), f(z));
                    // L in [0, 100], a and b about [−128, 127]: scaled to [0, 1]
                    [
                        (116.0 * fy - 16.0) / 100.0,
                        (500.0 * (fx - fy) + 128.0) / 255.0,
                        (200.0 * (fy - fz) + 128.0) / 255.0,
                    ]
                }
            }
        })
        .collect()
}

/// A separable Gaussian blur of one channel (σ, kernel radius ⌈4σ⌉, edges clamped).
fn blur(v: &[f32], w: usize, h: usize, sigma: f64) -> Vec<f32> {
    let r = (4.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|x| x / sum).collect();
    // one pass along rows (dx) or columns (dy), edges clamped
    let pass = |src: &[f32], (dx, dy): (isize, isize)| -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                k.iter().enumerate().fold(0.0, |s, (j, &kv)| {
                    let o = j as isize - r;
                    let xx = (x + o * dx).clamp(0, w as isize - 1) as usize;
                    let yy = (y + o * dy).clamp(0, h as isize - 1) as usize;
                    s + kv * src[yy * w + xx]
                })
            })
            .collect()
    };
    pass(&pass(v, (1, 0)), (0, 1))
}

struct Dsu {
    parent: Vec<usize>,
    size: Vec<usize>,
    /// Internal difference: the heaviest edge of the component's spanning tree.
    internal: Vec<f32>,
}

impl Dsu {
    fn new(n: usize) -> Self {
        Dsu {
            parent: (0..n).collect(),
            size: vec![1; n],
            internal: vec![0.0; n],
        }
    }
    fn find(&mut self, mut a: usize) -> usize {
        while self.parent[a] != a {
            self.parent[a] = self.parent[self.parent[a]];
            a = self.parent[a];
        }
        a
    }
    fn union(&mut self, a: usize, b: usize, w: f32) -> usize {
        let (a, b) = if self.size[a] < self.size[b] {
            (b, a)
        } else {
            (a, b)
        };
        self.parent[b] = a;
        self.size[a] += self.size[b];
        self.internal[a] = w;
        a
    }
}

/// Felzenszwalb–Huttenlocher segmentation of planar colour channels (values in [0, 1], scaled
/// by 255 for the edge weights as the original works on 0–255 pixels). Returns a region index
/// per pixel (0 … regions − 1) and the count.
pub fn felzenszwalb(
    colors: &[[f32; 3]],
    w: usize,
    h: usize,
    k: f64,
    sigma: f64,
    min_size: usize,
) -> (Vec<usize>, usize) {
    let n = w * h;
    let chans: Vec<Vec<f32>> = (0..3)
        .map(|c| {
            let v: Vec<f32> = colors.iter().map(|p| p[c] * 255.0).collect();
            if sigma > 0.0 {
                blur(&v, w, h, sigma)
            } else {
                v
            }
        })
        .collect();
    let diff = |a: usize, b: usize| -> f32 {
        (0..3)
            .map(|c| (chans[c][a] - chans[c][b]).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let mut edges: Vec<(f32, usize, usize)> = Vec::with_capacity(4 * n);
    for y in 0..h {
        for x in 0..w {
            let a = y * w + x;
            if x + 1 < w {
                edges.push((diff(a, a + 1), a, a + 1));
            }
            if y + 1 < h {
                edges.push((diff(a, a + w), a, a + w));
                if x + 1 < w {
                    edges.push((diff(a, a + w + 1), a, a + w + 1));
                }
                if x > 0 {
                    edges.push((diff(a, a + w - 1), a, a + w - 1));
                }
            }
        }
    }
    edges.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut d = Dsu::new(n);
    let k = k as f32;
    for &(wt, a, b) in &edges {
        let (ra, rb) = (d.find(a), d.find(b));
        if ra == rb {
            continue;
        }
        let ta = d.internal[ra] + k / d.size[ra] as f32;
        let tb = d.internal[rb] + k / d.size[rb] as f32;
        if wt <= ta.min(tb) {
            d.union(ra, rb, wt);
        }
    }
    for &(_, a, b) in &edges {
        let (ra, rb) = (d.find(a), d.find(b));
        if ra != rb && (d.size[ra] < min_size || d.size[rb] < min_size) {
            let keep = d.internal[ra].max(d.internal[rb]);
            d.union(ra, rb, keep);
        }
    }
    let mut label = vec![usize::MAX; n];
    let mut count = 0;
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let r = d.find(i);
        if label[r] == usize::MAX {
            label[r] = count;
            count += 1;
        }
        *o = label[r];
    }
    (out, count)
}

const COLOR_BINS: usize = 25;
const TEXTURE_BINS: usize = 10;

/// Per pixel, the 8 oriented Gaussian-derivative responses (σ = 1) of each channel, as bin
/// indices 0–9 of their magnitude over the image's largest response of that channel.
fn texture_bins(colors: &[[f32; 3]], w: usize, h: usize) -> Vec<[[u8; 8]; 3]> {
    let mut out = vec![[[0u8; 8]; 3]; w * h];
    for c in 0..3 {
        let v: Vec<f32> = colors.iter().map(|p| p[c]).collect();
        let s = blur(&v, w, h, 1.0);
        let at = |x: isize, y: isize| {
            s[(y.clamp(0, h as isize - 1) as usize) * w + x.clamp(0, w as isize - 1) as usize]
        };
        let mut resp = vec![[0f32; 8]; w * h];
        let mut max = 0f32;
        for y in 0..h as isize {
            for x in 0..w as isize {
                let gx = (at(x + 1, y) - at(x - 1, y)) / 2.0;
                let gy = (at(x, y + 1) - at(x, y - 1)) / 2.0;
                let r = &mut resp[y as usize * w + x as usize];
                for (o, rv) in r.iter_mut().enumerate() {
                    let t = o as f32 * std::f32::consts::PI / 4.0;
                    *rv = (gx * t.cos() + gy * t.sin()).max(0.0);
                    max = max.max(*rv);
                }
            }
        }
        for (i, r) in resp.iter().enumerate() {
            for o in 0..8 {
                let b = if max > 0.0 {
                    ((r[o] / max) * TEXTURE_BINS as f32) as usize
                } else {
                    0
                };
                out[i][c][o] = b.min(TEXTURE_BINS - 1) as u8;
            }
        }
    }
    out
}

struct Region {
    size: usize,
    bbox: [usize; 4], // x1, y1, x2, y2 inclusive
    color: Vec<f32>,
    texture: Vec<f32>,
}

fn normalize(v: &mut [f32]) {
    let s: f32 = v.iter().sum();
    if s > 0.0 {
        v.iter_mut().for_each(|x| *x /= s);
    }
}

fn intersection(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.min(*y)).sum()
}

/// One strategy's hierarchy: the boxes (xyxy pixels, exclusive ends) of every region formed,
/// the initial segments first and the final, whole-image region last.
pub fn hierarchical_grouping(
    img: &RgbView,
    s: &Strategy,
    min_size: usize,
) -> Result<Vec<[f32; 4]>> {
    let (w, h) = (img.width, img.height);
    if w < 2 || h < 2 || img.pixels.len() != w * h * 3 {
        return Err(arg(
            "selective_search",
            format!(
                "a {w}×{h} RGB image needs {} bytes, got {}",
                w * h * 3,
                img.pixels.len()
            ),
        ));
    }
    let colors = convert(img, s.space);
    let (seg, count) = felzenszwalb(&colors, w, h, s.k, 0.8, min_size);
    let tex = texture_bins(&colors, w, h);
    let mut regions: Vec<Region> = (0..count)
        .map(|_| Region {
            size: 0,
            bbox: [usize::MAX, usize::MAX, 0, 0],
            color: vec![0.0; 3 * COLOR_BINS],
            texture: vec![0.0; 3 * 8 * TEXTURE_BINS],
        })
        .collect();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let r = &mut regions[seg[i]];
            r.size += 1;
            r.bbox = [
                r.bbox[0].min(x),
                r.bbox[1].min(y),
                r.bbox[2].max(x),
                r.bbox[3].max(y),
            ];
            for c in 0..3 {
                let b = ((colors[i][c].clamp(0.0, 1.0) * COLOR_BINS as f32) as usize)
                    .min(COLOR_BINS - 1);
                r.color[c * COLOR_BINS + b] += 1.0;
                for (o, &t) in tex[i][c].iter().enumerate() {
                    r.texture[(c * 8 + o) * TEXTURE_BINS + t as usize] += 1.0;
                }
            }
        }
    }
    for r in &mut regions {
        normalize(&mut r.color);
        normalize(&mut r.texture);
    }
    // neighbours: regions that touch (4-connected)
    let mut nb: std::collections::BTreeSet<(usize, usize)> = Default::default();
    for y in 0..h {
        for x in 0..w {
            let a = seg[y * w + x];
            for (dx, dy) in [(1, 0), (0, 1)] {
                if x + dx < w && y + dy < h {
                    let b = seg[(y + dy) * w + x + dx];
                    if a != b {
                        nb.insert((a.min(b), a.max(b)));
                    }
                }
            }
        }
    }
    let image_size = (w * h) as f32;
    let sim = |a: &Region, b: &Region| -> f32 {
        let mut v = 0.0;
        if s.similarity.color {
            v += intersection(&a.color, &b.color);
        }
        if s.similarity.texture {
            v += intersection(&a.texture, &b.texture);
        }
        if s.similarity.size {
            v += 1.0 - (a.size + b.size) as f32 / image_size;
        }
        if s.similarity.fill {
            let bw = a.bbox[2].max(b.bbox[2]) - a.bbox[0].min(b.bbox[0]) + 1;
            let bh = a.bbox[3].max(b.bbox[3]) - a.bbox[1].min(b.bbox[1]) + 1;
            v += 1.0 - ((bw * bh) as f32 - a.size as f32 - b.size as f32) / image_size;
        }
        v
    };
    let mut pairs: std::collections::HashMap<(usize, usize), f32> = nb
        .iter()
        .map(|&(a, b)| ((a, b), sim(&regions[a], &regions[b])))
        .collect();
    let mut out: Vec<[f32; 4]> = regions
        .iter()
        .map(|r| {
            [
                r.bbox[0] as f32,
                r.bbox[1] as f32,
                (r.bbox[2] + 1) as f32,
                (r.bbox[3] + 1) as f32,
            ]
        })
        .collect();
    while let Some((&(a, b), _)) = pairs
        .iter()
        .max_by(|p, q| p.1.total_cmp(q.1).then(q.0.cmp(p.0)))
    {
        let (ra, rb) = (&regions[a], &regions[b]);
        let size = ra.size + rb.size;
        let mix = |x: &[f32], y: &[f32]| -> Vec<f32> {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p * ra.size as f32 + q * rb.size as f32) / size as f32)
                .collect()
        };
        let merged = Region {
            size,
            bbox: [
                ra.bbox[0].min(rb.bbox[0]),
                ra.bbox[1].min(rb.bbox[1]),
                ra.bbox[2].max(rb.bbox[2]),
                ra.bbox[3].max(rb.bbox[3]),
            ],
            color: mix(&ra.color, &rb.color),
            texture: mix(&ra.texture, &rb.texture),
        };
        let t = regions.len();
        out.push([
            merged.bbox[0] as f32,
            merged.bbox[1] as f32,
            (merged.bbox[2] + 1) as f32,
            (merged.bbox[3] + 1) as f32,
        ]);
        regions.push(merged);
        let touching: Vec<(usize, usize)> = pairs
            .keys()
            .filter(|&&(p, q)| p == a || p == b || q == a || q == b)
            .copied()
            .collect();
        let mut others = std::collections::BTreeSet::new();
        for key in touching {
            pairs.remove(&key);
            let o = if key.0 == a || key.0 == b {
                key.1
            } else {
                key.0
            };
            if o != a && o != b {
                others.insert(o);
            }
        }
        for o in others {
            let v = sim(&regions[o], &regions[t]);
            pairs.insert((o, t), v);
        }
    }
    Ok(out)
}

/// Selective search with `strategies`: the pooled proposals (xyxy pixels), best first,
/// duplicates dropped. `seed` drives the random part of the ranking.
pub fn selective_search(
    img: &RgbView,
    strategies: &[Strategy],
    seed: u64,
) -> Result<Vec<[f32; 4]>> {
    let mut rng = Rng::new(seed);
    let mut ranked: Vec<(f64, [f32; 4])> = Vec::new();
    for s in strategies {
        // small segments are merged into larger ones, as the paper's k-dependent minimum
        let boxes = hierarchical_grouping(img, s, s.k as usize)?;
        let n = boxes.len();
        for (i, b) in boxes.into_iter().enumerate() {
            // the last region formed has position 1
            let pos = (n - i) as f64;
            ranked.push((pos * rng.uniform(), b));
        }
    }
    ranked.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut seen = std::collections::HashSet::new();
    Ok(ranked
        .into_iter()
        .filter(|(_, b)| seen.insert(b.map(|v| v as u32)))
        .map(|(_, b)| b)
        .collect())
}

/// Recall: the fraction of ground-truth boxes that some proposal among the first `n` overlaps
/// with IoU at least `iou`.
pub fn recall(proposals: &[[f32; 4]], gt: &[[f32; 4]], n: usize, iou: f32) -> (usize, usize) {
    let props = &proposals[..n.min(proposals.len())];
    let found = gt
        .iter()
        .filter(|g| props.iter().any(|p| crate::boxes::pair_iou(g, p) >= iou))
        .count();
    (found, gt.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two flat rectangles on a flat background: the segmentation finds three regions and the
    /// proposals include each rectangle's exact box.
    #[test]
    fn finds_flat_rectangles() {
        let (w, h) = (64, 48);
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let c = if (8..24).contains(&x) && (6..30).contains(&y) {
                    [220, 30, 30]
                } else if (36..60).contains(&x) && (20..44).contains(&y) {
                    [30, 30, 220]
                } else {
                    [40, 160, 40]
                };
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
            }
        }
        let img = RgbView {
            width: w,
            height: h,
            pixels: &px,
        };
        let colors = convert(&img, ColorSpace::Rgb);
        let (_, count) = felzenszwalb(&colors, w, h, 100.0, 0.0, 10);
        assert_eq!(count, 3);
        let p = selective_search(&img, &fast_strategies(), 0).unwrap();
        for want in [
            [8.0, 6.0, 24.0, 30.0],
            [36.0, 20.0, 60.0, 44.0],
            [0.0, 0.0, 64.0, 48.0],
        ] {
            assert!(p.contains(&want), "{want:?} not in {p:?}");
        }
        assert_eq!(recall(&p, &[[8.0, 6.0, 24.0, 30.0]], p.len(), 0.99), (1, 1));
    }
}
