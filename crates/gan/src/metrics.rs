//! Measures of what a generator produces, from a classifier's view of its samples.
//!
//! * [`class_histogram`], [`kl_to_uniform`], [`classes_covered`]: which classes a classifier
//!   assigns to generated images. A collapsed generator piles its samples into few classes.
//! * [`frechet_distance`]: the Fréchet distance between Gaussians fitted to two sets of
//!   feature vectors, `|μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½)`. Computed on a small
//!   classifier's penultimate features it is *not* the FID (which uses Inception-v3's pool
//!   features); it is the same formula on features aics has.

use crate::error::{config, Result};

/// How many of `labels` fall in each of `k` classes.
pub fn class_histogram(labels: &[usize], k: usize) -> Result<Vec<usize>> {
    let mut h = vec![0usize; k];
    for &l in labels {
        *h.get_mut(l)
            .ok_or_else(|| config(format!("label {l} is not one of {k} classes")))? += 1;
    }
    Ok(h)
}

/// KL(p ‖ uniform) = Σ p·ln(p·k) in nats for the histogram's distribution p: 0 when every class
/// is equally frequent, ln k when all samples fall in one class.
pub fn kl_to_uniform(hist: &[usize]) -> f64 {
    let n: usize = hist.iter().sum();
    let k = hist.len() as f64;
    if n == 0 {
        return 0.0;
    }
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            p * (p * k).ln()
        })
        .sum()
}

/// Classes that receive at least 1% of the samples.
pub fn classes_covered(hist: &[usize]) -> usize {
    let n: usize = hist.iter().sum();
    hist.iter()
        .filter(|&&c| c > 0 && c as f64 >= 0.01 * n as f64)
        .count()
}

/// Mean and covariance (divided by n − 1, as numpy's `cov`) of `n` rows of `d` values.
pub fn mean_cov(x: &[f64], d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if d == 0 || !x.len().is_multiple_of(d) || x.len() / d < 2 {
        return Err(config(format!(
            "mean and covariance need at least 2 rows of {d} values, got {} values",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(config(format!(
            "feature value {i} is not finite ({})",
            x[i]
        )));
    }
    let n = x.len() / d;
    let mut mu = vec![0f64; d];
    for r in x.chunks_exact(d) {
        mu.iter_mut().zip(r).for_each(|(m, v)| *m += v);
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0f64; d * d];
    let mut c = vec![0f64; d];
    for r in x.chunks_exact(d) {
        c.iter_mut()
            .zip(r.iter().zip(&mu))
            .for_each(|(c, (v, m))| *c = v - m);
        for i in 0..d {
            let ci = c[i];
            for j in i..d {
                cov[i * d + j] += ci * c[j];
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (n - 1) as f64;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    Ok((mu, cov))
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of the symmetric
/// `d`×`d` matrix `a`, by cyclic Jacobi rotations.
pub fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        if off <= 1e-30 * total.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix (eigenvalues below 0, from
/// rounding, taken as 0).
pub fn sqrtm_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (w, v) = sym_eigen(a, d);
    let s: Vec<f64> = w.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = (0..d).map(|k| v[i * d + k] * s[k] * v[j * d + k]).sum();
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    c
}

/// The Fréchet distance between Gaussians fitted to `a` and `b`, each rows of `d` features.
/// The trace of `(Σ₁ Σ₂)^½` is computed as that of `(Σ₁^½ Σ₂ Σ₁^½)^½`, which is symmetric.
pub fn frechet_distance(a: &[f64], b: &[f64], d: usize) -> Result<f64> {
    let (m1, s1) = mean_cov(a, d)?;
    let (m2, s2) = mean_cov(b, d)?;
    let r1 = sqrtm_psd(&s1, d);
    let mut inner = matmul(&matmul(&r1, &s2, d), &r1, d);
    // symmetrise away rounding before the eigen-decomposition
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (inner[i * d + j] + inner[j * d + i]);
            inner[i * d + j] = v;
            inner[j * d + i] = v;
        }
    }
    let (w, _) = sym_eigen(&inner, d);
    let tr_sqrt: f64 = w.iter().map(|&l| l.max(0.0).sqrt()).sum();
    let dm: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y) * (x - y)).sum();
    let tr = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    Ok(dm + tr(&s1) + tr(&s2) - 2.0 * tr_sqrt)
}
