//! Normalisation: batch norm (train: batch statistics and an update of the running ones; eval:
//! running statistics, one per-channel affine pass) and instance norm. Both train through one
//! kernel with its backward beside it, which normalises groups of planes (a channel across the
//! batch, or one plane); the composition of differentiable ops is kept as its reference.

use std::sync::Arc;

use rayon::prelude::*;

use crate::cpu;
use crate::dtype::Float;
use crate::error::{shape_err, Result, TensorError};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

/// Shape `[1, C, 1, 1, ...]` to broadcast a per-channel vector against `x`.
fn channel_shape(x: &[usize]) -> Vec<usize> {
    let mut s = vec![1; x.len()];
    s[1] = x[1];
    s
}

/// Each given per-channel vector must have shape [C] for an input of shape `sh` (C = sh[1]).
fn check_per_channel<T: Float>(
    op: &'static str,
    sh: &[usize],
    vecs: &[(&str, Option<&Tensor<T>>)],
) -> Result<()> {
    let c = sh[1];
    for &(name, t) in vecs {
        if let Some(t) = t {
            if t.shape() != [c] {
                return Err(shape_err(
                    op,
                    format!(
                        "{name} {:?} does not fit {c} channels of input {sh:?}",
                        t.shape()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `x·a + b` plane by plane, with `(a, b) = coef(plane)` for the planes of `inner` elements,
/// into an output that is not zero-filled first.
/// Planes of `inner` elements a parallel task takes at least, so that small planes (ResNet's
/// 2×2 and 1×1 maps) are not one task each.
fn planes_per_task(inner: usize) -> usize {
    (4096 / inner.max(1)).max(1)
}

/// `(Σx, Σx²)` of `xs` in f64, in eight interleaved partial sums (added in a fixed order), so
/// that the additions do not wait on each other and vectorise.
#[inline(always)]
fn sum_and_squares<T: Float>(xs: &[T]) -> (f64, f64) {
    const L: usize = 8;
    if xs.len() < L {
        return xs.iter().fold((0.0, 0.0), |(s, q), v| {
            let v = v.as_f64();
            (s + v, q + v * v)
        });
    }
    let (mut s, mut q) = ([0.0f64; L], [0.0f64; L]);
    let chunks = xs.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..L {
            let v = c[i].as_f64();
            s[i] += v;
            q[i] += v * v;
        }
    }
    for (i, v) in rest.iter().enumerate() {
        let v = v.as_f64();
        s[i] += v;
        q[i] += v * v;
    }
    (s.iter().sum(), q.iter().sum())
}

/// `(Σa, Σa·b)` of two equally long slices in f64, as [`sum_and_squares`] sums.
#[inline(always)]
fn sum_and_dot<T: Float>(a: &[T], b: &[T]) -> (f64, f64) {
    const L: usize = 8;
    if a.len() < L {
        return a.iter().zip(b).fold((0.0, 0.0), |(s, d), (va, vb)| {
            let va = va.as_f64();
            (s + va, d + va * vb.as_f64())
        });
    }
    let (mut s, mut d) = ([0.0f64; L], [0.0f64; L]);
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    for (ca, cb) in a.chunks_exact(L).zip(b.chunks_exact(L)) {
        for i in 0..L {
            let va = ca[i].as_f64();
            s[i] += va;
            d[i] += va * cb[i].as_f64();
        }
    }
    let tail = n - n % L;
    for (i, (va, vb)) in a[tail..].iter().zip(&b[tail..]).enumerate() {
        let va = va.as_f64();
        s[i] += va;
        d[i] += va * vb.as_f64();
    }
    (s.iter().sum(), d.iter().sum())
}

/// Per channel of (N, C, inner) data, `(Σa, Σa·b)` in f64, or `(Σa, Σa²)` without `b`. Each
/// (channel, position) column is summed down the samples with vector adds along contiguous
/// rows, then each channel's columns are added: no per-plane set-up, which dominates on small
/// maps (a 4×4 plane is one vector). Tasks take fixed blocks of rows and columns, and their
/// sums are added in block order, so the result does not depend on the thread count.
fn channel_sums<T: Float>(
    a: &[T],
    b: Option<&[T]>,
    n: usize,
    c: usize,
    inner: usize,
) -> Vec<(f64, f64)> {
    let row = c * inner;
    let mut out = vec![(0.0f64, 0.0f64); c];
    if row == 0 || n == 0 {
        return out;
    }
    let cols = row.min(2048);
    let col_blocks = row.div_ceil(cols);
    let rows = (65536 / cols).clamp(1, n);
    let row_blocks = n.div_ceil(rows);
    let parts: Vec<(usize, Vec<f64>, Vec<f64>)> = (0..row_blocks * col_blocks)
        .into_par_iter()
        .map(|task| {
            let (rb, cb) = (task / col_blocks, task % col_blocks);
            let (lo, hi) = (cb * cols, (cb * cols + cols).min(row));
            let (mut s, mut q) = (vec![0.0f64; hi - lo], vec![0.0f64; hi - lo]);
            cpu::simd::with_best(
                #[inline(always)]
                || {
                    for k in rb * rows..(rb * rows + rows).min(n) {
                        let ar = &a[k * row + lo..k * row + hi];
                        let pairs = s.iter_mut().zip(q.iter_mut()).zip(ar);
                        match b {
                            Some(b) => {
                                let br = &b[k * row + lo..k * row + hi];
                                for (((s, q), &x), &y) in pairs.zip(br) {
                                    let x = x.as_f64();
                                    *s += x;
                                    *q += x * y.as_f64();
                                }
                            }
                            None => {
                                for ((s, q), &x) in pairs {
                                    let x = x.as_f64();
                                    *s += x;
                                    *q += x * x;
                                }
                            }
                        }
                    }
                },
            );
            (lo, s, q)
        })
        .collect();
    for (lo, s, q) in parts {
        for (j, (s, q)) in s.into_iter().zip(q).enumerate() {
            let o = &mut out[(lo + j) / inner];
            o.0 += s;
            o.1 += q;
        }
    }
    out
}

/// The coefficients of each group spread over its planes' elements for one period of
/// `coefs.len()` planes, where planes are small (under 64 elements) and a period is not too
/// long; empty otherwise (the per-plane loops then run).
fn flat_coefs<C: Copy>(coefs: &[C], inner: usize) -> Vec<C> {
    if inner < 64 && coefs.len() * inner <= 1 << 16 {
        coefs
            .iter()
            .flat_map(|&c| std::iter::repeat_n(c, inner))
            .collect()
    } else {
        Vec::new()
    }
}

/// `y = x·a[p] + b[p]` over planes of `inner` elements, with plane p's coefficients
/// `coefs[p mod coefs.len()]` (one pair a channel, repeating each sample, or one a plane).
/// Blocks of whole periods go to the tasks; tiny planes (a 1×1 map) as one flat loop.
fn affine_planes<T: Float>(x: &[T], inner: usize, coefs: &[(T, T)]) -> Vec<T> {
    let period = coefs.len().max(1);
    // the coefficients spread over one period of elements, for planes too small to loop over
    let flat = flat_coefs(coefs, inner);
    // planes a block; whole periods where the flat loop runs
    let ppb = if flat.is_empty() {
        planes_per_task(inner)
    } else {
        planes_per_task(inner).div_ceil(period) * period
    };
    let block = (ppb * inner).max(1);
    // SAFETY: x holds whole planes of `inner` elements (none when inner is 0: then x, and so y,
    // is empty), and each element of y is written.
    unsafe {
        cpu::filled(x.len(), |y| {
            if inner == 0 || coefs.is_empty() {
                return;
            }
            y.par_chunks_mut(block)
                .zip(x.par_chunks(block))
                .enumerate()
                .for_each(|(blk, (yb, xb))| {
                    crate::cpu::simd::with_best(|| {
                        if !flat.is_empty() {
                            for (yr, xr) in yb.chunks_mut(flat.len()).zip(xb.chunks(flat.len())) {
                                for ((yv, &xv), &(a, b)) in yr.iter_mut().zip(xr).zip(&flat) {
                                    yv.write(xv * a + b);
                                }
                            }
                            return;
                        }
                        for (k, (yp, xp)) in yb.chunks_mut(inner).zip(xb.chunks(inner)).enumerate()
                        {
                            let (a, b) = coefs[(blk * ppb + k) % period];
                            for (yv, &xv) in yp.iter_mut().zip(xp) {
                                yv.write(xv * a + b);
                            }
                        }
                    })
                });
        })
    }
}

impl<T: Float> Tensor<T> {
    /// Batch normalisation over all dims but the channel dim 1 (BatchNorm1d on (N, C) or (N, C, L),
    /// BatchNorm2d on (N, C, H, W)). In training, `running_mean`/`running_var` are updated in place
    /// with `momentum` (the variance stored is unbiased, as in PyTorch).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        running_mean: Option<&Tensor<T>>,
        running_var: Option<&Tensor<T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::BatchNorm {
                eps,
                training: training || running_mean.is_none() || running_var.is_none(),
                weight: weight.is_some(),
                bias: bias.is_some(),
            },
            &trace::bn_inputs(self, weight, bias, running_mean, running_var, training),
            trace::inner(|| -> Result<Tensor<T>> {
                let sh =
                    self.bn_checked("batch_norm", [weight, bias, running_mean, running_var])?;
                let c = sh[1];
                if !training {
                    if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                        // y = x·s + (b − μ·s) with s = w / √(σ² + ε)
                        let mut scale = rv.detach().add_scalar(eps).powf(-0.5);
                        if let Some(w) = weight {
                            scale = scale.mul(w)?;
                        }
                        let mut shift = rm.detach().mul(&scale)?.neg();
                        if let Some(b) = bias {
                            shift = shift.add(b)?;
                        }
                        return self.channel_affine(&scale, &shift);
                    }
                }
                let count = self.numel() / c.max(1);
                if count <= 1 {
                    return Err(shape_err(
                "batch_norm",
                format!("expected more than 1 value per channel when training, got input {sh:?}"),
            ));
                }
                let (y, mean, var, _) =
                    self.normalize_planes(weight, bias, eps, false, "batch_norm", None)?;
                if training {
                    if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                        update_running(rm, rv, &mean, &var, momentum, count);
                    }
                }
                Ok(y)
            }),
        )
    }

    /// Batch norm in training mode over the batches of all the ranks of `group` (PyTorch's
    /// `SyncBatchNorm`): each channel's mean and variance are those of every rank's values
    /// together (the ranks' counts, means and variances are gathered and combined in f64), and
    /// the running statistics move with them. Backward takes the means of `dy` and `dy·x̂`
    /// over all ranks too, and leaves in `dγ` and `dβ` this rank's own sums (the gradient
    /// averaging of data-parallel training then makes them the whole batch's). With one rank
    /// it equals [`Tensor::batch_norm`] in training mode.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_synced(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        running_mean: Option<&Tensor<T>>,
        running_var: Option<&Tensor<T>>,
        momentum: f64,
        eps: f64,
        group: &Arc<dyn GroupStats>,
    ) -> Result<Tensor<T>> {
        self.bn_checked("sync_batch_norm", [weight, bias, running_mean, running_var])?;
        let (y, mean, var, count) = self.normalize_planes(
            weight,
            bias,
            eps,
            false,
            "sync_batch_norm",
            Some(group.clone()),
        )?;
        if count <= 1.0 {
            return Err(shape_err(
                "sync_batch_norm",
                format!("expected more than 1 value per channel over all ranks, got {count}"),
            ));
        }
        if let (Some(rm), Some(rv)) = (running_mean, running_var) {
            update_running(rm, rv, &mean, &var, momentum, count as usize);
        }
        Ok(y)
    }

    /// The shape of a batch norm's input, checked to be (N, C, ...) with the weight, bias,
    /// running mean and running variance (where given) of C values each.
    fn bn_checked(
        &self,
        op: &'static str,
        per_channel: [Option<&Tensor<T>>; 4],
    ) -> Result<Vec<usize>> {
        let sh = self.shape().to_vec();
        if sh.len() < 2 {
            return Err(shape_err(
                op,
                format!("expected input (N, C, ...), got {sh:?}"),
            ));
        }
        let names = ["weight", "bias", "running_mean", "running_var"];
        let named: Vec<(&str, Option<&Tensor<T>>)> = names.into_iter().zip(per_channel).collect();
        check_per_channel(op, &sh, &named)?;
        Ok(sh)
    }

    /// Normalisation over groups of (sample, channel) planes, as one op: batch norm's group is
    /// a channel across the batch (`per_sample` false), instance norm's one plane (true); γ and
    /// β are per channel. Forward: each group's mean and biased variance from Σx and Σx² in
    /// f64 (one pass: per channel down the batch, or per plane), then `y = x·s + (b − μ·s)` in
    /// one write. Backward: per group Σdy and Σdy·x̂ (taken the same way), then one write of
    /// `dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂))` (means over the group, r = 1/√(σ² + ε)), with
    /// `dγ = Σ dy·x̂` and `dβ = Σ dy` per channel. Returns the output and each group's mean and
    /// biased variance, and the number of values each group's statistics cover. With `group`
    /// (channels only), the statistics and backward's means are taken over all its ranks.
    fn normalize_planes(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        eps: f64,
        per_sample: bool,
        op: &'static str,
        group_stats: Option<Arc<dyn GroupStats>>,
    ) -> Result<Normalized<T>> {
        let sh = self.shape().to_vec();
        let c = sh[1];
        let inner: usize = sh[2..].iter().product();
        let (n, planes) = (sh[0], sh[0] * c);
        let groups = if per_sample { planes } else { c };
        let group = move |p: usize| if per_sample { p } else { p % c };
        let local_count = (inner * planes / groups.max(1)) as f64;
        let x = self.data();
        let gammas: Vec<f64> = (0..c)
            .map(|ch| weight.map_or(1.0, |w| w.data()[ch].as_f64()))
            .collect();
        let betas: Vec<f64> = (0..c)
            .map(|ch| bias.map_or(0.0, |b| b.data()[ch].as_f64()))
            .collect();
        // one pass over the data: Σx and Σx² in f64 per channel (down the batch) or per plane
        let mut sums = vec![(0.0f64, 0.0f64); groups];
        if !per_sample {
            // a group is a channel: its columns summed down the batch
            sums = channel_sums(&x, None, n, c, inner);
        } else if inner > 0 {
            let ppt = planes_per_task(inner);
            let per_block: Vec<Vec<(f64, f64)>> = x
                .par_chunks(ppt * inner)
                .map(|xb| cpu::simd::with_best(|| xb.chunks(inner).map(sum_and_squares).collect()))
                .collect();
            for (p, &(s, q)) in per_block.iter().flatten().enumerate() {
                sums[group(p)].0 += s;
                sums[group(p)].1 += q;
            }
        }
        let mean: Vec<f64> = sums.iter().map(|s| s.0 / local_count).collect();
        // E[x²] − μ² in f64: exact enough for f32 data unless |μ|/σ passes about 10⁴
        let var: Vec<f64> = sums
            .iter()
            .zip(&mean)
            .map(|(s, m)| (s.1 / local_count - m * m).max(0.0))
            .collect();
        let (mean, var, count) = match &group_stats {
            Some(g) => combine_ranks(g.as_ref(), local_count, &mean, &var)
                .map_err(|msg| TensorError::Arg { op, msg })?,
            None => (mean, var, local_count),
        };
        let rstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let coefs: Vec<(T, T)> = (0..groups)
            .map(|gi| {
                let ch = gi % c;
                let k = gammas[ch] * rstd[gi];
                (T::from_f64(k), T::from_f64(betas[ch] - mean[gi] * k))
            })
            .collect();
        let y = affine_planes(&x, inner, &coefs);
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let (has_w, has_b) = (weight.is_some(), bias.is_some());
        let (mean_out, var_out) = (mean.clone(), var);
        let out = Tensor::from_op(y, sh, op, &inputs, move |gy, needs| {
            // Σdy and Σdy·x̂ = r·(Σdy·x − μ·Σdy) per group, in one pass
            let (mut per_group, mut per_channel) =
                (vec![(0.0f64, 0.0f64); groups], vec![(0.0f64, 0.0f64); c]);
            if !per_sample {
                // a group is a channel: (Σdy, Σdy·x) down the batch, then Σdy·x̂
                for (ch, (s, sx)) in channel_sums(gy, Some(&x), n, c, inner)
                    .into_iter()
                    .enumerate()
                {
                    let v = (s, rstd[ch] * (sx - mean[ch] * s));
                    per_group[ch] = v;
                    per_channel[ch] = v;
                }
                if let Some(g) = &group_stats {
                    // the means below are over every rank's values; dγ and dβ stay this rank's
                    per_group = sum_ranks(g.as_ref(), &per_group);
                }
            } else {
                let sums: Vec<(f64, f64)> = if inner == 0 {
                    vec![(0.0, 0.0); planes]
                } else {
                    let ppt = planes_per_task(inner);
                    let per_block: Vec<Vec<(f64, f64)>> = gy
                        .par_chunks(ppt * inner)
                        .zip(x.par_chunks(ppt * inner))
                        .enumerate()
                        .map(|(blk, (gb, xb))| {
                            cpu::simd::with_best(|| {
                                gb.chunks(inner)
                                    .zip(xb.chunks(inner))
                                    .enumerate()
                                    .map(|(k, (gp, xp))| {
                                        let gi = group(blk * ppt + k);
                                        let (m, r) = (mean[gi], rstd[gi]);
                                        let (s, sx) = sum_and_dot(gp, xp);
                                        (s, r * (sx - m * s))
                                    })
                                    .collect()
                            })
                        })
                        .collect();
                    per_block.into_iter().flatten().collect()
                };
                for (p, &(s, sx)) in sums.iter().enumerate() {
                    per_group[group(p)].0 += s;
                    per_group[group(p)].1 += sx;
                    per_channel[p % c].0 += s;
                    per_channel[p % c].1 += sx;
                }
            }
            // SAFETY: the planes cover all of dx, and each is written in full.
            let dx = needs[0].then(|| unsafe {
                cpu::filled(x.len(), |dx| {
                    if inner > 0 {
                        let ppt = planes_per_task(inner);
                        let block = ppt * inner;
                        // dx = k·(dy − mg − (x − μ)·r·mgx) = k·dy + a·x + b0, per group
                        let coefs: Vec<(T, T, T)> = (0..groups)
                            .map(|gi| {
                                let (m, r) = (mean[gi], rstd[gi]);
                                let k = gammas[gi % c] * r;
                                let (mg, mgx) = (per_group[gi].0 / count, per_group[gi].1 / count);
                                let a = -k * r * mgx;
                                let b0 = -k * mg + k * r * mgx * m;
                                (T::from_f64(k), T::from_f64(a), T::from_f64(b0))
                            })
                            .collect();
                        // small planes: the coefficients spread over a period of elements
                        let flat = flat_coefs(&coefs, inner);
                        if !flat.is_empty() {
                            let period = flat.len();
                            let block = (block.div_ceil(period) * period).max(1);
                            dx.par_chunks_mut(block)
                                .zip(gy.par_chunks(block).zip(x.par_chunks(block)))
                                .for_each(|(db, (gb, xb))| {
                                    cpu::simd::with_best(|| {
                                        let rows = db.chunks_mut(period).zip(gb.chunks(period));
                                        for ((dr, gr), xr) in rows.zip(xb.chunks(period)) {
                                            let elems = dr.iter_mut().zip(gr).zip(xr);
                                            for (((d, &gv), &xv), &(k, a, b0)) in elems.zip(&flat) {
                                                d.write(k * gv + a * xv + b0);
                                            }
                                        }
                                    })
                                });
                            return;
                        }
                        dx.par_chunks_mut(block)
                            .zip(gy.par_chunks(block).zip(x.par_chunks(block)))
                            .enumerate()
                            .for_each(|(blk, (db, (gb, xb)))| {
                                cpu::simd::with_best(|| {
                                    let planes = db.chunks_mut(inner).zip(gb.chunks(inner));
                                    for (k, ((dp, gp), xp)) in
                                        planes.zip(xb.chunks(inner)).enumerate()
                                    {
                                        let (k, a, b0) = coefs[group(blk * ppt + k)];
                                        for ((d, &gv), &xv) in dp.iter_mut().zip(gp).zip(xp) {
                                            d.write(k * gv + a * xv + b0);
                                        }
                                    }
                                })
                            });
                    }
                })
            });
            let mut r = vec![dx];
            let mut k = 1;
            if has_w {
                r.push(needs[k].then(|| per_channel.iter().map(|s| T::from_f64(s.1)).collect()));
                k += 1;
            }
            if has_b {
                r.push(needs[k].then(|| per_channel.iter().map(|s| T::from_f64(s.0)).collect()));
            }
            r
        });
        Ok((out, mean_out, var_out, count))
    }

    /// Batch norm built from differentiable ops (mean, subtract, square, mean, power, multiply,
    /// add): the reference the fused training op is held to. Batch statistics, no running ones.
    pub fn batch_norm_reference(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        eps: f64,
    ) -> Result<Tensor<T>> {
        let sh = self.shape().to_vec();
        if sh.len() < 2 {
            return Err(shape_err(
                "batch_norm",
                format!("expected input (N, C, ...), got {sh:?}"),
            ));
        }
        check_per_channel("batch_norm", &sh, &[("weight", weight), ("bias", bias)])?;
        let cs = channel_shape(&sh);
        let dims: Vec<isize> = (0..sh.len() as isize).filter(|&d| d != 1).collect();
        let mean = self.mean_dims(&dims, true)?;
        let centered = self.sub(&mean)?;
        let var = centered.square().mean_dims(&dims, true)?;
        let mut scale = var.add_scalar(eps).powf(-0.5);
        if let Some(w) = weight {
            scale = scale.mul(&w.reshape(&cs)?)?;
        }
        let mut y = centered.mul(&scale)?;
        if let Some(b) = bias {
            y = y.add(&b.reshape(&cs)?)?;
        }
        Ok(y)
    }

    /// `y = x·scale[c] + shift[c]` over dim 1 of an (N, C, ...) input, in one pass: batch norm
    /// in evaluation mode (and frozen batch norm). Gradients: `dx = dy·scale[c]`,
    /// `dscale[c] = Σ dy·x`, `dshift[c] = Σ dy` (sums in f64).
    pub fn channel_affine(&self, scale: &Tensor<T>, shift: &Tensor<T>) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::ChannelAffine,
            &[self, scale, shift],
            trace::inner(|| -> Result<Tensor<T>> {
                let sh = self.shape().to_vec();
                if sh.len() < 2 || scale.shape() != [sh[1]] || shift.shape() != [sh[1]] {
                    return Err(shape_err(
                        "channel_affine",
                        format!(
                    "expected input (N, C, ...) with scale and shift (C); got {sh:?}, {:?}, {:?}",
                    scale.shape(),
                    shift.shape()
                ),
                    ));
                }
                let c = sh[1];
                let inner: usize = sh[2..].iter().product();
                let x = self.data();
                let (sd, bd) = (scale.data(), shift.data());
                let coefs: Vec<(T, T)> = sd.iter().copied().zip(bd.iter().copied()).collect();
                let y = affine_planes(&x, inner, &coefs);
                Ok(Tensor::from_op(
                    y,
                    sh,
                    "channel_affine",
                    &[self, scale, shift],
                    move |gy, needs| {
                        let dx = needs[0].then(|| {
                            let coefs: Vec<(T, T)> = sd.iter().map(|&a| (a, T::zero())).collect();
                            affine_planes(gy, inner, &coefs)
                        });
                        let sums: Vec<(f64, f64)> = if (needs[1] || needs[2]) && inner > 0 {
                            gy.par_chunks(inner)
                                .zip(x.par_chunks(inner))
                                .map(|(gp, xp)| {
                                    gp.iter().zip(xp).fold((0.0, 0.0), |(s, sx), (&g, &xv)| {
                                        let g = g.as_f64();
                                        (s + g, sx + g * xv.as_f64())
                                    })
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        let per_channel = |f: fn(&(f64, f64)) -> f64| -> Vec<T> {
                            let mut v = vec![0.0f64; c];
                            for (p, s) in sums.iter().enumerate() {
                                v[p % c] += f(s);
                            }
                            v.into_iter().map(T::from_f64).collect()
                        };
                        vec![
                            dx,
                            needs[1].then(|| per_channel(|s| s.1)),
                            needs[2].then(|| per_channel(|s| s.0)),
                        ]
                    },
                ))
            }),
        )
    }

    /// Instance normalisation: statistics per sample and channel over the spatial dims,
    /// `y = γ·(x − μ)/√(σ² + ε) + β` with the biased variance, as one op with the textbook
    /// gradient `dx = γ/√(σ² + ε) · (dy − mean(dy) − x̂·mean(dy·x̂))`: batch norm's kernel with
    /// one plane a group (statistics summed in f64).
    pub fn instance_norm(
        &self,
        weight: Option<&Tensor<T>>,
        bias: Option<&Tensor<T>>,
        eps: f64,
    ) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::InstanceNorm {
                eps,
                weight: weight.is_some(),
                bias: bias.is_some(),
            },
            &trace::present(&[Some(self), weight, bias]),
            trace::inner(|| -> Result<Tensor<T>> {
                let sh = self.shape().to_vec();
                if sh.len() < 3 {
                    return Err(shape_err(
                        "instance_norm",
                        format!("expected input (N, C, H, W) or (N, C, L), got {sh:?}"),
                    ));
                }
                check_per_channel("instance_norm", &sh, &[("weight", weight), ("bias", bias)])?;
                Ok(self
                    .normalize_planes(weight, bias, eps, true, "instance_norm", None)?
                    .0)
            }),
        )
    }

    /// Inverted dropout: zero each element with probability `p` and scale the rest by `1/(1-p)`.
    pub fn dropout(&self, p: f64, rng: &mut crate::rng::Rng) -> Result<Tensor<T>> {
        if !(0.0..1.0).contains(&p) {
            return Err(crate::error::arg_err(
                "dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let keep = T::from_f64(1.0 / (1.0 - p));
        let mask: Vec<T> = (0..self.numel())
            .map(|_| if rng.uniform() < p { T::zero() } else { keep })
            .collect();
        let y = trace::inner(|| self.mul(&Tensor::raw(mask, self.shape().to_vec())));
        trace::recorded(|| Op::Dropout(p), &[self], y)
    }
}

/// `r ← (1 − m)·r + m·v` for the running mean, and the same with the unbiased batch variance.
/// What [`Tensor::normalize_planes`] gives: the output, each group's mean and biased
/// variance, and how many values each group's statistics cover.
type Normalized<T> = (Tensor<T>, Vec<f64>, Vec<f64>, f64);

/// The ranks of a data-parallel group, for batch statistics taken over all their batches
/// (synchronized batch norm). `aics-nn`'s distributed training provides it.
pub trait GroupStats: Send + Sync {
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;
    /// An all-gather: `buf` holds `ranks` slots of equal length, this rank's filled and the
    /// others zero; on return every slot holds its rank's values, the same on every rank.
    fn all_gather(&self, buf: &mut [f32]) -> std::result::Result<(), String>;
}

/// Every rank's values of `local` (one slot each), gathered. Each f64 travels as two f32s (the
/// value rounded, and what the rounding left), so the statistics keep about 48 bits: as close
/// to one process's f64 sums as the ranks' own sums are.
fn gather_ranks(g: &dyn GroupStats, local: &[f64]) -> std::result::Result<Vec<f64>, String> {
    let (r, n, len) = (g.rank(), g.ranks().max(1), 2 * local.len());
    let mut buf = vec![0.0f32; n * len];
    for (pair, &v) in buf[r * len..(r + 1) * len].chunks_mut(2).zip(local) {
        let hi = v as f32;
        pair[0] = hi;
        pair[1] = (v - hi as f64) as f32;
    }
    g.all_gather(&mut buf)?;
    Ok(buf.chunks(2).map(|p| p[0] as f64 + p[1] as f64).collect())
}

/// Per-channel mean and biased variance over all ranks, from each rank's count, means and
/// variances: `μ = Σ nᵣμᵣ / N`, `σ² = Σ nᵣ(σᵣ² + (μᵣ − μ)²) / N`, in f64 and in rank order, so
/// every rank gets the same values.
fn combine_ranks(
    g: &dyn GroupStats,
    count: f64,
    mean: &[f64],
    var: &[f64],
) -> std::result::Result<(Vec<f64>, Vec<f64>, f64), String> {
    let c = mean.len();
    let mut local = vec![count];
    local.extend(mean);
    local.extend(var);
    let all = gather_ranks(g, &local)?;
    let slots: Vec<&[f64]> = all.chunks(1 + 2 * c).collect();
    let total: f64 = slots.iter().map(|s| s[0]).sum();
    if total <= 0.0 {
        return Err("no values in any rank's batch".into());
    }
    let mu: Vec<f64> = (0..c)
        .map(|ch| slots.iter().map(|s| s[0] * s[1 + ch]).sum::<f64>() / total)
        .collect();
    let var: Vec<f64> = (0..c)
        .map(|ch| {
            slots
                .iter()
                .map(|s| {
                    let d = s[1 + ch] - mu[ch];
                    s[0] * (s[1 + c + ch] + d * d)
                })
                .sum::<f64>()
                / total
        })
        .collect();
    Ok((mu, var, total))
}

/// Per-channel `(Σdy, Σdy·x̂)` summed over the ranks in rank order. If the group cannot be
/// reached, this rank's own sums are kept: the data-parallel step reports the failure when the
/// backward pass returns.
fn sum_ranks(g: &dyn GroupStats, local: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let flat: Vec<f64> = local.iter().flat_map(|&(a, b)| [a, b]).collect();
    match gather_ranks(g, &flat) {
        Ok(all) => (0..local.len())
            .map(|ch| {
                all.chunks(flat.len())
                    .fold((0.0, 0.0), |(a, b), s| (a + s[2 * ch], b + s[2 * ch + 1]))
            })
            .collect(),
        Err(_) => local.to_vec(),
    }
}

fn update_running<T: Float>(
    rm: &Tensor<T>,
    rv: &Tensor<T>,
    mean: &[f64],
    var: &[f64],
    momentum: f64,
    count: usize,
) {
    let unbias = count as f64 / (count as f64 - 1.0);
    rm.update_data(|r| {
        r.iter_mut()
            .zip(mean)
            .for_each(|(r, &m)| *r = T::from_f64((1.0 - momentum) * r.as_f64() + momentum * m))
    });
    rv.update_data(|r| {
        r.iter_mut().zip(var).for_each(|(r, &v)| {
            *r = T::from_f64((1.0 - momentum) * r.as_f64() + momentum * v * unbias)
        })
    });
}
