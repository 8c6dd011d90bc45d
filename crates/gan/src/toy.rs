//! Two-dimensional mixtures of Gaussians on which mode collapse can be counted.
//!
//! * `ring8`: 8 Gaussians of σ = 0.02 evenly on a circle of radius 2;
//! * `grid25`: 25 Gaussians of σ = 0.05 on the 5×5 grid {−4, −2, 0, 2, 4}².
//!
//! A generated point is *high quality* when it lies within 3σ of its nearest mode; a mode is
//! *covered* when at least 20 of every 2,500 generated points (0.8%) are high-quality points of
//! that mode. A generator that collapses puts all its points on one or a few modes; one that
//! does not learn puts them between the modes.

use std::f64::consts::PI;

use aics_tensor::{Rng, Tensor};

use crate::error::{config, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toy {
    Ring8,
    Grid25,
}

/// How a set of generated points covers a toy's modes.
#[derive(Clone, Debug, PartialEq)]
pub struct Coverage {
    /// Modes with at least 0.8% of the points as their high-quality points.
    pub covered: usize,
    /// All modes.
    pub modes: usize,
    /// The share of points within 3σ of their nearest mode.
    pub high_quality: f64,
    /// High-quality points per mode.
    pub per_mode: Vec<usize>,
}

impl Toy {
    pub fn parse(name: &str) -> Option<Toy> {
        match name {
            "ring8" => Some(Toy::Ring8),
            "grid25" => Some(Toy::Grid25),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Toy::Ring8 => "ring8",
            Toy::Grid25 => "grid25",
        }
    }
    /// The modes' centres.
    pub fn modes(self) -> Vec<[f64; 2]> {
        match self {
            Toy::Ring8 => (0..8)
                .map(|k| {
                    let a = 2.0 * PI * k as f64 / 8.0;
                    [2.0 * a.cos(), 2.0 * a.sin()]
                })
                .collect(),
            Toy::Grid25 => (0..25)
                .map(|k| [(k % 5) as f64 * 2.0 - 4.0, (k / 5) as f64 * 2.0 - 4.0])
                .collect(),
        }
    }
    /// Each Gaussian's standard deviation.
    pub fn sigma(self) -> f64 {
        match self {
            Toy::Ring8 => 0.02,
            Toy::Grid25 => 0.05,
        }
    }
    /// `n` points, shape (n, 2): a mode chosen uniformly, plus N(0, σ²) on each axis.
    pub fn sample(self, n: usize, rng: &mut Rng) -> Tensor {
        let modes = self.modes();
        let s = self.sigma();
        let mut v = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let m = modes[rng.below(modes.len())];
            v.push((m[0] + s * rng.normal()) as f32);
            v.push((m[1] + s * rng.normal()) as f32);
        }
        Tensor::from_vec(v, &[n, 2]).expect("n·2 values for shape (n, 2)")
    }
    /// The coverage of `points` (x0, y0, x1, y1, …). Non-finite points count as low quality.
    pub fn coverage(self, points: &[f32]) -> Result<Coverage> {
        if points.is_empty() || !points.len().is_multiple_of(2) {
            return Err(config(format!(
                "coverage: {} values are not a non-empty list of 2-D points",
                points.len()
            )));
        }
        let modes = self.modes();
        let r = 3.0 * self.sigma();
        let n = points.len() / 2;
        let mut per_mode = vec![0usize; modes.len()];
        let mut hq = 0usize;
        for p in points.chunks_exact(2) {
            let (x, y) = (p[0] as f64, p[1] as f64);
            let best = modes
                .iter()
                .enumerate()
                .map(|(i, m)| (i, (x - m[0]).hypot(y - m[1])))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            if best.1 <= r {
                per_mode[best.0] += 1;
                hq += 1;
            }
        }
        let need = (n as f64 * 20.0 / 2500.0).ceil().max(1.0) as usize;
        Ok(Coverage {
            covered: per_mode.iter().filter(|&&c| c >= need).count(),
            modes: modes.len(),
            high_quality: hq as f64 / n as f64,
            per_mode,
        })
    }
}
