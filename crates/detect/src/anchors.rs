//! Anchors, as torchvision's `AnchorGenerator`: for each feature-map level, one base anchor per
//! (aspect ratio, size) pair centred on the origin, then shifted to every location of that
//! level's grid. Faster R-CNN's single-level RPN uses 3 sizes × 3 ratios = 9 anchors a location;
//! a feature pyramid gives each level its own sizes.

use crate::error::{arg, Result};

/// Sizes and aspect ratios (h/w) per feature-map level.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorGenerator {
    pub sizes: Vec<Vec<f64>>,
    pub aspect_ratios: Vec<Vec<f64>>,
}

/// Round half to even, as `torch.round`.
pub(crate) fn round_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

impl AnchorGenerator {
    pub fn new(sizes: Vec<Vec<f64>>, aspect_ratios: Vec<Vec<f64>>) -> Result<Self> {
        if sizes.is_empty() || sizes.len() != aspect_ratios.len() {
            return Err(arg(
                "AnchorGenerator",
                format!(
                    "one list of sizes and one of aspect ratios per level; got {} and {}",
                    sizes.len(),
                    aspect_ratios.len()
                ),
            ));
        }
        let bad = sizes
            .iter()
            .chain(&aspect_ratios)
            .flatten()
            .find(|v| !(v.is_finite() && **v > 0.0));
        if let Some(v) = bad {
            return Err(arg(
                "AnchorGenerator",
                format!("sizes and aspect ratios must be positive, got {v}"),
            ));
        }
        Ok(AnchorGenerator {
            sizes,
            aspect_ratios,
        })
    }

    /// The chapter's single-level generator: sizes (128, 256, 512) × ratios (0.5, 1, 2).
    pub fn faster_rcnn() -> Self {
        AnchorGenerator {
            sizes: vec![vec![128.0, 256.0, 512.0]],
            aspect_ratios: vec![vec![0.5, 1.0, 2.0]],
        }
    }

    /// Anchors per location of each level.
    pub fn num_anchors_per_location(&self) -> Vec<usize> {
        self.sizes
            .iter()
            .zip(&self.aspect_ratios)
            .map(|(s, a)| s.len() * a.len())
            .collect()
    }

    /// The base anchors of `level`, xyxy around the origin: for each ratio r (outer) and size s
    /// (inner), w = s/√r, h = s·√r, rounded half to even as torchvision does.
    pub fn cell_anchors(&self, level: usize) -> Vec<[f64; 4]> {
        let mut out = Vec::new();
        for &r in &self.aspect_ratios[level] {
            let hr = r.sqrt();
            let wr = 1.0 / hr;
            for &s in &self.sizes[level] {
                let (w, h) = (wr * s, hr * s);
                out.push([-w, -h, w, h].map(|v| round_even(v / 2.0)));
            }
        }
        out
    }

    /// All anchors for an image of `image_size` (h, w) and feature maps of `grid_sizes` (h, w)
    /// per level: xyxy, level by level, then row-major over locations, then base anchors. Each
    /// level's stride is the image size divided (integer division) by its grid size.
    pub fn anchors(
        &self,
        image_size: (usize, usize),
        grid_sizes: &[(usize, usize)],
    ) -> Result<Vec<[f64; 4]>> {
        if grid_sizes.len() != self.sizes.len() {
            return Err(arg(
                "AnchorGenerator",
                format!(
                    "{} feature maps for {} levels of anchors",
                    grid_sizes.len(),
                    self.sizes.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for (level, &(gh, gw)) in grid_sizes.iter().enumerate() {
            if gh == 0 || gw == 0 || gh > image_size.0 || gw > image_size.1 {
                return Err(arg(
                    "AnchorGenerator",
                    format!("feature map {gh}×{gw} for an image of {image_size:?}"),
                ));
            }
            let (sh, sw) = ((image_size.0 / gh) as f64, (image_size.1 / gw) as f64);
            let base = self.cell_anchors(level);
            for y in 0..gh {
                for x in 0..gw {
                    let (dx, dy) = (x as f64 * sw, y as f64 * sh);
                    out.extend(
                        base.iter()
                            .map(|a| [a[0] + dx, a[1] + dy, a[2] + dx, a[3] + dy]),
                    );
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::round_even;

    #[test]
    fn rounds_half_to_even_as_torch() {
        for (v, r) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, 0.0),
            (-1.5, -2.0),
            (2.4, 2.0),
            (-2.6, -3.0),
        ] {
            assert_eq!(round_even(v), r, "{v}");
        }
    }
}
