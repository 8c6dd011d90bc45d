//! One direction of one recurrent layer run over a whole sequence, forward and back-propagation
//! through time side by side: the Elman RNN, the LSTM (with the peephole and coupled-gate
//! variants and PyTorch's `proj_size`) and the GRU (PyTorch's form and Cho et al.'s original).
//!
//! The input projection of every time step `xp = x·W_ihᵀ + b_ih` is one GEMM made by the caller
//! (`linear` over `(T·N, I)`); this op adds the recurrence. Per step it does one GEMM of the state
//! by `W_hhᵀ` for all gates (two for Cho's GRU, whose candidate reads `r ⊙ h`), then one fused
//! elementwise pass. The backward runs the steps in reverse with one GEMM per step for `∂h`, and
//! makes `∂W_hh` (and `∂W_hr`) with one GEMM over all steps at the end. Buffers are allocated once
//! per call, none per step.
//!
//! Equations (PyTorch's gate order; σ the logistic function):
//!
//! * RNN: `h' = act(xp + W_hh h + b_hh)`, act = tanh or ReLU.
//! * LSTM, gates (i, f, g, o): `i = σ(xp_i + W_hi h + b_hi [+ p_i ⊙ c])`, `f` likewise,
//!   `g = tanh(…)`, `c' = f ⊙ c + i ⊙ g`, `o = σ(… [+ p_o ⊙ c'])`, `m = o ⊙ tanh(c')`,
//!   `h' = m` or, with a projection, `h' = W_hr m`. Peepholes (Gers & Schmidhuber 2000) add the
//!   `p ⊙ c` terms. The coupled variant has gates (i, g, o) and `f = 1 − i`.
//! * GRU, gates (r, z, n): `r = σ(xp_r + W_hr h + b_hr)`, `z` likewise,
//!   `n = tanh(xp_n + r ⊙ (W_hn h + b_hn))` (PyTorch; ONNX `linear_before_reset = 1`) or
//!   `n = tanh(xp_n + W_hn (r ⊙ h) + b_hn)` (Cho et al. 2014; ONNX's default),
//!   `h' = (1 − z) ⊙ n + z ⊙ h`.
//!
//! Variable lengths follow PyTorch's packed sequences: sequence `b` runs its first `len_b` steps
//! (backwards from `len_b − 1` in the reverse direction), its outputs past them are zero and its
//! final state is the one after its last step.
//!
//! [`Tensor::recurrent_reference`] builds the same computation from the differentiable primitives
//! one step at a time: the oracle that the fused op is tested against.

use crate::cpu::gemm::{gemm, Mat};
use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

/// The recurrent cell an op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with ReLU.
    RnnRelu,
    /// LSTM; `peephole` adds `p ⊙ c` to the input, forget and output gates (the coupled variant
    /// has no forget gate, so its peepholes are on i and o); `coupled` ties `f = 1 − i`.
    Lstm { peephole: bool, coupled: bool },
    /// GRU; `reset_after`: PyTorch's form (the reset gate multiplies `W_hn h + b_hn`), else Cho's
    /// (it multiplies `h` before the matmul).
    Gru { reset_after: bool },
}

impl Cell {
    /// Gate blocks in `W_ih`/`W_hh` (each `hidden` rows).
    pub fn gates(self) -> usize {
        match self {
            Cell::RnnTanh | Cell::RnnRelu => 1,
            Cell::Lstm { coupled: true, .. } => 3,
            Cell::Lstm { .. } => 4,
            Cell::Gru { .. } => 3,
        }
    }
    /// Whether the cell has a cell state `c` besides `h`.
    pub fn has_c(self) -> bool {
        matches!(self, Cell::Lstm { .. })
    }
    /// Rows of the peephole weight (0 without peepholes): (i, f, o), or (i, o) when coupled.
    pub fn peepholes(self) -> usize {
        match self {
            Cell::Lstm {
                peephole: true,
                coupled,
            } => {
                if coupled {
                    2
                } else {
                    3
                }
            }
            _ => 0,
        }
    }
}

/// The optional parts of a recurrent op's input.
#[derive(Clone, Copy)]
pub struct RecurrentOpts<'a, T: Float> {
    /// `b_hh` (G·H): kept apart from `b_ih` because the GRU's reset gate multiplies its n-block.
    pub b_hh: Option<&'a Tensor<T>>,
    /// Initial cell state (N, H) for the LSTM (zeros when absent).
    pub c0: Option<&'a Tensor<T>>,
    /// Peephole weights (rows as [`Cell::peepholes`], H).
    pub peephole: Option<&'a Tensor<T>>,
    /// LSTM projection `W_hr` (P, H), P < H.
    pub w_hr: Option<&'a Tensor<T>>,
    /// Valid steps of each sequence (1..=T each); all T when absent.
    pub lengths: Option<&'a [usize]>,
    /// Run from the last valid step to the first.
    pub reverse: bool,
}

impl<T: Float> Default for RecurrentOpts<'_, T> {
    fn default() -> Self {
        RecurrentOpts {
            b_hh: None,
            c0: None,
            peephole: None,
            w_hr: None,
            lengths: None,
            reverse: false,
        }
    }
}

/// What a recurrent op returns.
pub struct RecurrentOut<T: Float> {
    /// (T, N, P): the state after each step at its time position; zero past a sequence's length.
    pub output: Tensor<T>,
    /// (N, P): each sequence's final state.
    pub h_n: Tensor<T>,
    /// (N, H): the LSTM's final cell state.
    pub c_n: Option<Tensor<T>>,
}

/// The op's sizes, checked once.
#[derive(Clone, Copy, Debug)]
struct Geom {
    cell: Cell,
    /// time steps, batch, hidden, state size (P = proj or H), gates
    t: usize,
    n: usize,
    h: usize,
    p: usize,
    g: usize,
}

impl Geom {
    fn gh(&self) -> usize {
        self.g * self.h
    }
}

/// Which time position each sequence is at in each step: sequence b runs its first `len_b`
/// steps, backwards from `len_b − 1` in the reverse direction.
#[derive(Clone)]
struct Steps {
    lengths: Vec<usize>,
    reverse: bool,
}

impl Steps {
    fn new<T: Float>(o: &RecurrentOpts<'_, T>, t: usize, n: usize) -> Steps {
        Steps {
            lengths: o.lengths.map_or_else(|| vec![t; n], |l| l.to_vec()),
            reverse: o.reverse,
        }
    }
    /// The time index of sequence `b` at step `s`, or None once it has ended.
    #[inline]
    fn time(&self, s: usize, b: usize) -> Option<usize> {
        let l = self.lengths[b];
        (s < l).then(|| if self.reverse { l - 1 - s } else { s })
    }
}

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).fast_exp())
}

// Slice passes of the fused gate kernels: branch-free loops the compiler vectorizes (they run
// inside `with_best`, so with AVX2 or AVX-512 where the CPU has them).

#[inline(always)]
fn sigmoid_inplace<T: Float>(v: &mut [T]) {
    v.iter_mut().for_each(|x| *x = sigmoid(*x));
}

#[inline(always)]
fn tanh_inplace<T: Float>(v: &mut [T]) {
    v.iter_mut().for_each(|x| *x = x.fast_tanh());
}

/// `out = a + b + c`, element by element.
#[inline(always)]
fn add3<T: Float>(out: &mut [T], a: &[T], b: &[T], c: &[T]) {
    for (((o, &x), &y), &z) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = x + y + z;
    }
}

/// `out += a ⊙ b`.
#[inline(always)]
fn mul_add_into<T: Float>(out: &mut [T], a: &[T], b: &[T]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o += x * y;
    }
}

fn check<T: Float>(
    cell: Cell,
    xp: &Tensor<T>,
    h0: &Tensor<T>,
    w_hh: &Tensor<T>,
    o: &RecurrentOpts<'_, T>,
) -> Result<Geom> {
    const OP: &str = "recurrent";
    let xs = xp.shape();
    if xs.len() != 3 || !xs[2].is_multiple_of(cell.gates()) || xs[2] == 0 {
        return Err(shape_err(
            OP,
            format!("input projection {xs:?} must be (T, N, {}·H)", cell.gates()),
        ));
    }
    let (t, n, g) = (xs[0], xs[1], cell.gates());
    let h = xs[2] / g;
    let p = match o.w_hr {
        Some(w) => {
            if !cell.has_c() {
                return Err(arg_err(OP, "a projection (proj_size) is for the LSTM only"));
            }
            let ws = w.shape();
            if ws.len() != 2 || ws[1] != h || ws[0] == 0 || ws[0] >= h {
                return Err(shape_err(
                    OP,
                    format!("projection weight {ws:?} must be (P, {h}) with 0 < P < {h}"),
                ));
            }
            ws[0]
        }
        None => h,
    };
    if t == 0 || n == 0 {
        return Err(shape_err(OP, format!("empty input projection {xs:?}")));
    }
    if w_hh.shape() != [g * h, p] {
        return Err(shape_err(
            OP,
            format!("W_hh {:?}, expected [{}, {p}]", w_hh.shape(), g * h),
        ));
    }
    if h0.shape() != [n, p] {
        return Err(shape_err(
            OP,
            format!("initial state {:?}, expected [{n}, {p}]", h0.shape()),
        ));
    }
    if let Some(b) = o.b_hh {
        if b.shape() != [g * h] {
            return Err(shape_err(
                OP,
                format!("b_hh {:?}, expected [{}]", b.shape(), g * h),
            ));
        }
    }
    match (o.c0, cell.has_c()) {
        (Some(c), true) if c.shape() != [n, h] => {
            return Err(shape_err(
                OP,
                format!("initial cell state {:?}, expected [{n}, {h}]", c.shape()),
            ))
        }
        (Some(_), false) => return Err(arg_err(OP, "a cell state is for the LSTM only")),
        _ => {}
    }
    match (o.peephole, cell.peepholes()) {
        (Some(pw), k) if k > 0 && pw.shape() != [k, h] => {
            return Err(shape_err(
                OP,
                format!("peephole weight {:?}, expected [{k}, {h}]", pw.shape()),
            ))
        }
        (Some(_), 0) => return Err(arg_err(OP, "peephole weights need an LSTM with peepholes")),
        (None, k) if k > 0 => {
            return Err(arg_err(
                OP,
                "an LSTM with peepholes needs its peephole weights",
            ))
        }
        _ => {}
    }
    if let Some(l) = o.lengths {
        if l.len() != n {
            return Err(shape_err(
                OP,
                format!("{} lengths for a batch of {n}", l.len()),
            ));
        }
        if let Some(&bad) = l.iter().find(|&&v| v == 0 || v > t) {
            return Err(arg_err(
                OP,
                format!("sequence length {bad} outside 1..={t}"),
            ));
        }
    }
    Ok(Geom {
        cell,
        t,
        n,
        h,
        p,
        g,
    })
}

/// `out[m×n] (+)= a[m×k] · b` where `b` is given as a row-major `n×k` matrix (so `b ᵀ` is used).
/// (A hand-written matrix–vector path for batches of one was slower than the GEMM crate's.)
fn mm_bt<T: Float>(m: usize, n: usize, k: usize, a: &[T], b: &[T], out: &mut [T], acc: bool) {
    gemm(m, n, k, Mat::rm(a, k), Mat::rm_t(b, k), out, acc, true);
}

impl<T: Float> Tensor<T> {
    /// Run one direction of a recurrent layer over `self`, the input projection
    /// `x·W_ihᵀ + b_ih` of shape (T, N, G·H), from the initial state `h0` (N, P) with the
    /// recurrent weight `w_hh` (G·H, P). See the module documentation for the equations.
    pub fn recurrent(
        &self,
        cell: Cell,
        h0: &Tensor<T>,
        w_hh: &Tensor<T>,
        opts: RecurrentOpts<'_, T>,
    ) -> Result<RecurrentOut<T>> {
        let geo = check(cell, self, h0, w_hh, &opts)?;
        let Geom { t, n, h, p, .. } = geo;
        let gh = geo.gh();
        let steps = Steps::new(&opts, t, n);
        let tix = |s: usize, b: usize| steps.time(s, b);

        let xp = self.data();
        let whh = w_hh.data();
        let bhh = opts.b_hh.map(|b| b.data());
        let peep = opts.peephole.map(|p| p.data());
        let whr = opts.w_hr.map(|w| w.data());
        let (np_i, np_f, np_o) = match cell {
            Cell::Lstm {
                peephole: true,
                coupled: false,
            } => (Some(0), Some(1), Some(2)),
            Cell::Lstm {
                peephole: true,
                coupled: true,
            } => (Some(0), None, Some(1)),
            _ => (None, None, None),
        };

        // hs: (T+1, N, P) state before each step; cs: (T+1, N, H); acts: (T, N, G·H) gate values;
        // ghn: (T, N, H) W_hn h + b_hn (PyTorch's GRU); ms: (T, N, H) o ⊙ tanh(c) (projection)
        let mut hs = vec![T::zero(); (t + 1) * n * p];
        hs[..n * p].copy_from_slice(&h0.data());
        let mut cs = if cell.has_c() {
            let mut c = vec![T::zero(); (t + 1) * n * h];
            if let Some(c0) = opts.c0 {
                c[..n * h].copy_from_slice(&c0.data());
            }
            c
        } else {
            Vec::new()
        };
        let mut acts = vec![T::zero(); t * n * gh];
        let gru_after = matches!(cell, Cell::Gru { reset_after: true });
        let mut ghn = if gru_after {
            vec![T::zero(); t * n * h]
        } else {
            Vec::new()
        };
        let mut ms = if whr.is_some() {
            vec![T::zero(); t * n * h]
        } else {
            Vec::new()
        };
        let mut out = vec![T::zero(); t * n * p];
        // per-step scratch: recurrent pre-activations, and Cho's r ⊙ h and its product
        let mut pre = vec![T::zero(); n * gh];
        let mut q = vec![
            T::zero();
            if matches!(cell, Cell::Gru { reset_after: false }) {
                n * h
            } else {
                0
            }
        ];
        let mut qn = vec![T::zero(); q.len()];
        let mut m = vec![T::zero(); if whr.is_some() { n * h } else { 0 }];
        let mut proj = vec![T::zero(); if whr.is_some() { n * p } else { 0 }];
        // b_hh, zeros when absent, so that the gate passes need no branch
        let bias_v: Vec<T> = bhh
            .as_ref()
            .map_or_else(|| vec![T::zero(); gh], |v| v.to_vec());

        for s in 0..t {
            let (hprev_all, hnext_all) = hs.split_at_mut((s + 1) * n * p);
            let hprev = &hprev_all[s * n * p..];
            let hnext = &mut hnext_all[..n * p];
            let a = &mut acts[s * n * gh..(s + 1) * n * gh];
            match cell {
                Cell::Gru { reset_after: false } => {
                    // r and z first: their recurrent part reads h
                    mm_bt(n, 2 * h, p, hprev, &whh[..2 * h * p], &mut pre[..], false);
                    // pre holds (N, 2H) packed rows here
                }
                _ => mm_bt(n, gh, p, hprev, &whh, &mut pre, false),
            }
            // the gates of every running sequence, compiled for the best vector instructions
            crate::cpu::simd::with_best(
                #[inline(always)]
                || {
                    for b in 0..n {
                        let hp = &hprev[b * p..(b + 1) * p];
                        let Some(ti) = tix(s, b) else {
                            hnext[b * p..(b + 1) * p].copy_from_slice(hp);
                            if cell.has_c() {
                                let (cp, cn) = cs.split_at_mut((s + 1) * n * h);
                                cn[b * h..(b + 1) * h]
                                    .copy_from_slice(&cp[(s * n + b) * h..(s * n + b + 1) * h]);
                            }
                            continue;
                        };
                        let x = &xp[(ti * n + b) * gh..(ti * n + b + 1) * gh];
                        let ab = &mut a[b * gh..(b + 1) * gh];
                        let bias = |j: usize| bhh.as_ref().map_or(T::zero(), |v| v[j]);
                        match cell {
                            Cell::RnnTanh | Cell::RnnRelu => {
                                let r = &pre[b * gh..(b + 1) * gh];
                                add3(ab, x, r, &bias_v);
                                if cell == Cell::RnnTanh {
                                    tanh_inplace(ab);
                                } else {
                                    ab.iter_mut().for_each(|v| *v = v.max(T::zero()));
                                }
                                hnext[b * p..(b + 1) * p].copy_from_slice(ab);
                                out[(ti * n + b) * p..(ti * n + b + 1) * p].copy_from_slice(ab);
                            }
                            Cell::Lstm { coupled, .. } => {
                                // gate blocks: (i, f, g, o), or (i, g, o) when coupled; each pass
                                // below is one branch-free loop over a block
                                let r = &pre[b * gh..(b + 1) * gh];
                                let (cp, cn) = cs.split_at_mut((s + 1) * n * h);
                                let cprev = &cp[(s * n + b) * h..(s * n + b + 1) * h];
                                let cnext = &mut cn[b * h..(b + 1) * h];
                                let (bi, bg, bo) = if coupled {
                                    (0, h, 2 * h)
                                } else {
                                    (0, 2 * h, 3 * h)
                                };
                                add3(ab, x, r, &bias_v);
                                if let Some(pv) = peep.as_ref() {
                                    let k = np_i.unwrap_or(0);
                                    mul_add_into(
                                        &mut ab[bi..bi + h],
                                        &pv[k * h..(k + 1) * h],
                                        cprev,
                                    );
                                    if let Some(k) = np_f {
                                        mul_add_into(
                                            &mut ab[h..2 * h],
                                            &pv[k * h..(k + 1) * h],
                                            cprev,
                                        );
                                    }
                                }
                                if coupled {
                                    sigmoid_inplace(&mut ab[bi..bi + h]);
                                } else {
                                    sigmoid_inplace(&mut ab[..2 * h]);
                                }
                                tanh_inplace(&mut ab[bg..bg + h]);
                                {
                                    let (ifg, o) = ab.split_at_mut(bo);
                                    if coupled {
                                        for j in 0..h {
                                            let (iv, gv) = (ifg[j], ifg[bg + j]);
                                            cnext[j] = (T::one() - iv) * cprev[j] + iv * gv;
                                        }
                                    } else {
                                        for j in 0..h {
                                            let (iv, fv, gv) = (ifg[j], ifg[h + j], ifg[bg + j]);
                                            cnext[j] = fv * cprev[j] + iv * gv;
                                        }
                                    }
                                    if let (Some(pv), Some(k)) = (peep.as_ref(), np_o) {
                                        mul_add_into(o, &pv[k * h..(k + 1) * h], cnext);
                                    }
                                    sigmoid_inplace(o);
                                    // m = o ⊙ tanh(c'): the new h, or what the projection reads
                                    let dst = if whr.is_some() {
                                        &mut m[b * h..(b + 1) * h]
                                    } else {
                                        &mut hnext[b * p..(b + 1) * p]
                                    };
                                    dst.copy_from_slice(cnext);
                                    tanh_inplace(dst);
                                    dst.iter_mut().zip(o.iter()).for_each(|(d, &ov)| *d *= ov);
                                }
                                if whr.is_none() {
                                    out[(ti * n + b) * p..(ti * n + b + 1) * p]
                                        .copy_from_slice(&hnext[b * p..(b + 1) * p]);
                                }
                            }
                            Cell::Gru { reset_after: true } => {
                                let r = &pre[b * gh..(b + 1) * gh];
                                let g = &mut ghn[(s * n + b) * h..(s * n + b + 1) * h];
                                // r and z: σ(x + W_h h + b_h); the candidate's W_hn h + b_hn kept
                                add3(&mut ab[..2 * h], &x[..2 * h], &r[..2 * h], &bias_v[..2 * h]);
                                sigmoid_inplace(&mut ab[..2 * h]);
                                for j in 0..h {
                                    g[j] = r[2 * h + j] + bias_v[2 * h + j];
                                }
                                let (rz, nb) = ab.split_at_mut(2 * h);
                                for j in 0..h {
                                    nb[j] = x[2 * h + j] + rz[j] * g[j];
                                }
                                tanh_inplace(nb);
                                let hn = &mut hnext[b * p..(b + 1) * p];
                                for j in 0..h {
                                    let zv = rz[h + j];
                                    hn[j] = (T::one() - zv) * nb[j] + zv * hp[j];
                                }
                                out[(ti * n + b) * p..(ti * n + b + 1) * p].copy_from_slice(hn);
                            }
                            Cell::Gru { reset_after: false } => {
                                let r = &pre[b * 2 * h..(b + 1) * 2 * h];
                                for j in 0..h {
                                    let rv = sigmoid(x[j] + r[j] + bias(j));
                                    let zv = sigmoid(x[h + j] + r[h + j] + bias(h + j));
                                    ab[j] = rv;
                                    ab[h + j] = zv;
                                    q[b * h + j] = rv * hp[j];
                                }
                            }
                        }
                    }
                },
            );
            if matches!(cell, Cell::Gru { reset_after: false }) {
                // the candidate reads r ⊙ h through W_hn
                mm_bt(n, h, h, &q, &whh[2 * h * p..], &mut qn, false);
                for b in 0..n {
                    let Some(ti) = tix(s, b) else { continue };
                    let x = &xp[(ti * n + b) * gh..(ti * n + b + 1) * gh];
                    let ab = &mut a[b * gh..(b + 1) * gh];
                    let hp = &hprev[b * p..(b + 1) * p];
                    for j in 0..h {
                        let bn = bhh.as_ref().map_or(T::zero(), |v| v[2 * h + j]);
                        let nv = (x[2 * h + j] + qn[b * h + j] + bn).fast_tanh();
                        let zv = ab[h + j];
                        let y = (T::one() - zv) * nv + zv * hp[j];
                        ab[2 * h + j] = nv;
                        hnext[b * p + j] = y;
                        out[(ti * n + b) * p + j] = y;
                    }
                }
            }
            if let Some(wr) = whr.as_ref() {
                // h' = W_hr m for the sequences still running
                mm_bt(n, p, h, &m, wr, &mut proj, false);
                for b in 0..n {
                    let Some(ti) = tix(s, b) else { continue };
                    hnext[b * p..(b + 1) * p].copy_from_slice(&proj[b * p..(b + 1) * p]);
                    out[(ti * n + b) * p..(ti * n + b + 1) * p]
                        .copy_from_slice(&proj[b * p..(b + 1) * p]);
                    ms[(s * n + b) * h..(s * n + b + 1) * h]
                        .copy_from_slice(&m[b * h..(b + 1) * h]);
                }
            }
        }

        // the result: [output (T·N·P) | h_n (N·P) | c_n (N·H)], split below by `narrow`
        let mut flat = out;
        flat.extend_from_slice(&hs[t * n * p..]);
        if cell.has_c() {
            flat.extend_from_slice(&cs[t * n * h..]);
        }
        let total = flat.len();

        let mut inputs: Vec<&Tensor<T>> = vec![self, h0, w_hh];
        let at_b = opts.b_hh.map(|b| {
            inputs.push(b);
            inputs.len() - 1
        });
        let at_c = opts.c0.map(|c| {
            inputs.push(c);
            inputs.len() - 1
        });
        let at_p = opts.peephole.map(|c| {
            inputs.push(c);
            inputs.len() - 1
        });
        let at_r = opts.w_hr.map(|c| {
            inputs.push(c);
            inputs.len() - 1
        });
        let n_inputs = inputs.len();
        let traced_inputs = inputs.clone();
        let saved = Saved {
            geo,
            steps: steps.clone(),
            whh,
            peep,
            whr,
            hs,
            cs,
            acts,
            ghn,
            ms,
        };
        let all = Tensor::from_op(
            flat,
            vec![total],
            "recurrent",
            &inputs,
            move |gout, needs| {
                let gr = saved.backward(gout);
                let mut res: Vec<Option<Vec<T>>> = vec![None; n_inputs];
                let Grads {
                    dxp,
                    dh0,
                    dwhh,
                    dbhh,
                    dc0,
                    dpeep,
                    dwhr,
                } = gr;
                res[0] = needs[0].then_some(dxp);
                res[1] = needs[1].then_some(dh0);
                res[2] = needs[2].then_some(dwhh);
                if let Some(i) = at_b {
                    res[i] = needs[i].then_some(dbhh);
                }
                if let Some(i) = at_c {
                    res[i] = needs[i].then_some(dc0);
                }
                if let Some(i) = at_p {
                    res[i] = needs[i].then_some(dpeep);
                }
                if let Some(i) = at_r {
                    res[i] = needs[i].then_some(dwhr);
                }
                res
            },
        );
        let (output, h_n, c_n) = trace::inner(|| -> Result<_> {
            let output = all.narrow(0, 0, t * n * p)?.reshape(&[t, n, p])?;
            let h_n = all.narrow(0, t * n * p, n * p)?.reshape(&[n, p])?;
            let c_n = if cell.has_c() {
                Some(all.narrow(0, (t + 1) * n * p, n * h)?.reshape(&[n, h])?)
            } else {
                None
            };
            Ok((output, h_n, c_n))
        })?;
        if trace::tracing() {
            let mut outs = vec![&output, &h_n];
            outs.extend(c_n.as_ref());
            trace::record(
                Op::Recurrent {
                    cell,
                    lengths: opts.lengths.map(|l| l.to_vec()),
                    reverse: opts.reverse,
                    b_hh: opts.b_hh.is_some(),
                    c0: opts.c0.is_some(),
                    peephole: opts.peephole.is_some(),
                    w_hr: opts.w_hr.is_some(),
                },
                &traced_inputs,
                &outs,
            );
        }
        Ok(RecurrentOut { output, h_n, c_n })
    }
}

/// What the backward needs from the forward.
struct Saved<T: Float> {
    geo: Geom,
    steps: Steps,
    whh: std::sync::Arc<Vec<T>>,
    peep: Option<std::sync::Arc<Vec<T>>>,
    whr: Option<std::sync::Arc<Vec<T>>>,
    hs: Vec<T>,
    cs: Vec<T>,
    acts: Vec<T>,
    ghn: Vec<T>,
    ms: Vec<T>,
}

struct Grads<T> {
    dxp: Vec<T>,
    dh0: Vec<T>,
    dwhh: Vec<T>,
    dbhh: Vec<T>,
    dc0: Vec<T>,
    dpeep: Vec<T>,
    dwhr: Vec<T>,
}

impl<T: Float> Saved<T> {
    fn tix(&self, s: usize, b: usize) -> Option<usize> {
        self.steps.time(s, b)
    }

    /// Back-propagation through time. `gout` is the gradient of
    /// `[output (T·N·P) | h_n (N·P) | c_n (N·H)]`.
    fn backward(&self, gout: &[T]) -> Grads<T> {
        let Geom {
            cell, t, n, h, p, ..
        } = self.geo;
        let gh = self.geo.gh();
        let one = T::one();
        let whh = &self.whh[..];
        let gru_cho = matches!(cell, Cell::Gru { reset_after: false });
        let coupled = matches!(cell, Cell::Lstm { coupled: true, .. });
        let (np_i, np_f, np_o) = match cell {
            Cell::Lstm {
                peephole: true,
                coupled: false,
            } => (Some(0), Some(1), Some(2)),
            Cell::Lstm {
                peephole: true,
                coupled: true,
            } => (Some(0), None, Some(1)),
            _ => (None, None, None),
        };
        // dh: (N, P), dc: (N, H) running gradients of the state entering the step being undone
        let mut dh = gout[t * n * p..(t + 1) * n * p].to_vec();
        let mut dc = if cell.has_c() {
            gout[(t + 1) * n * p..(t + 1) * n * p + n * h].to_vec()
        } else {
            Vec::new()
        };
        // dgx: (T steps, N, G·H) gradient of the pre-activations from the input projection side;
        // dgh: the same from the recurrent side (they differ in the n-block of PyTorch's GRU)
        let mut dgx = vec![T::zero(); t * n * gh];
        let mut dgh = if matches!(cell, Cell::Gru { reset_after: true }) {
            vec![T::zero(); t * n * gh]
        } else {
            Vec::new()
        };
        let mut dpeep = vec![T::zero(); cell.peepholes() * h];
        // projection: dh per step (T, N, P) for ∂W_hr; dm (N, H) scratch
        let mut dhs = if self.whr.is_some() {
            vec![T::zero(); t * n * p]
        } else {
            Vec::new()
        };
        let mut dm = vec![T::zero(); n * h];
        let mut dprev = vec![T::zero(); n * p];
        let mut dq = vec![T::zero(); if gru_cho { n * h } else { 0 }];
        // Cho's GRU keeps r ⊙ h of each step for ∂W_hn: (T, N, H)
        let mut qs = vec![T::zero(); if gru_cho { t * n * h } else { 0 }];

        // LSTM scratch: tanh(c) of a row, a zero row and gradient rows for absent peepholes
        let mut tc = vec![T::zero(); h];
        let zeros_h = vec![T::zero(); h];
        let mut scratch3 = vec![T::zero(); 3 * h];
        for s in (0..t).rev() {
            let hprev = &self.hs[s * n * p..(s + 1) * n * p];
            let a = &self.acts[s * n * gh..(s + 1) * n * gh];
            // the outputs' gradients join the running one
            for b in 0..n {
                if let Some(ti) = self.tix(s, b) {
                    for j in 0..p {
                        dh[b * p + j] += gout[(ti * n + b) * p + j];
                    }
                }
            }
            // with a projection, h = W_hr m: dm = dh · W_hr
            if let Some(wr) = self.whr.as_ref() {
                for b in 0..n {
                    if self.tix(s, b).is_some() {
                        dhs[(s * n + b) * p..(s * n + b + 1) * p]
                            .copy_from_slice(&dh[b * p..(b + 1) * p]);
                    }
                }
                gemm(
                    n,
                    h,
                    p,
                    Mat::rm(&dh, p),
                    Mat::rm(wr, h),
                    &mut dm,
                    false,
                    true,
                );
            } else if cell.has_c() {
                dm.copy_from_slice(&dh);
            }
            let dg = &mut dgx[s * n * gh..(s + 1) * n * gh];
            if gru_cho {
                // dn_pre first: ∂(r ⊙ h) = dn_pre · W_hn needs it before dr
                for b in 0..n {
                    if self.tix(s, b).is_none() {
                        continue;
                    }
                    for j in 0..h {
                        let (zv, nv) = (a[b * gh + h + j], a[b * gh + 2 * h + j]);
                        dg[b * gh + 2 * h + j] = dh[b * p + j] * (one - zv) * (one - nv * nv);
                    }
                }
                // dq = dn_pre (N, H, row stride G·H) · W_hn (H, H)
                gemm(
                    n,
                    h,
                    h,
                    Mat {
                        data: &dg[2 * h..],
                        rs: gh,
                        cs: 1,
                    },
                    Mat::rm(&whh[2 * h * p..], p),
                    &mut dq,
                    false,
                    true,
                );
            }
            crate::cpu::simd::with_best(
                #[inline(always)]
                || {
                    for b in 0..n {
                        if self.tix(s, b).is_none() {
                            continue;
                        }
                        let ab = &a[b * gh..(b + 1) * gh];
                        let dgb = &mut dg[b * gh..(b + 1) * gh];
                        let hp = &hprev[b * p..(b + 1) * p];
                        match cell {
                            Cell::RnnTanh => {
                                for j in 0..h {
                                    let y = ab[j];
                                    dgb[j] = dh[b * p + j] * (one - y * y);
                                }
                            }
                            Cell::RnnRelu => {
                                for j in 0..h {
                                    dgb[j] = if ab[j] > T::zero() {
                                        dh[b * p + j]
                                    } else {
                                        T::zero()
                                    };
                                }
                            }
                            Cell::Lstm { .. } => {
                                let cprev = &self.cs[(s * n + b) * h..(s * n + b + 1) * h];
                                let cnow =
                                    &self.cs[((s + 1) * n + b) * h..((s + 1) * n + b + 1) * h];
                                tc.copy_from_slice(cnow);
                                tanh_inplace(&mut tc);
                                // the peepholes' weights and gradients (zeros and a scratch row
                                // without peepholes: the loops stay branch-free)
                                let row = |k: Option<usize>| k.map_or(0..0, |k| k * h..(k + 1) * h);
                                let pv = self.peep.as_deref().map(|v| &v[..]);
                                let (p_i, p_f, p_o) = match pv {
                                    Some(v) => (
                                        &v[row(np_i)],
                                        if np_f.is_some() {
                                            &v[row(np_f)]
                                        } else {
                                            &zeros_h[..]
                                        },
                                        &v[row(np_o)],
                                    ),
                                    None => (&zeros_h[..], &zeros_h[..], &zeros_h[..]),
                                };
                                let (dpi, rest) = if pv.is_some() {
                                    dpeep.split_at_mut(h)
                                } else {
                                    scratch3.split_at_mut(h)
                                };
                                let (dp_second, dp_third) = rest.split_at_mut(h);
                                // rows (i, f, o), or (i, o) when coupled
                                let (dpf, dpo): (&mut [T], &mut [T]) = if coupled {
                                    (dp_third, dp_second)
                                } else {
                                    (dp_second, dp_third)
                                };
                                let dmb = &dm[b * h..(b + 1) * h];
                                let dcb = &mut dc[b * h..(b + 1) * h];
                                let (bi, bg, bo) = if coupled {
                                    (0, h, 2 * h)
                                } else {
                                    (0, 2 * h, 3 * h)
                                };
                                for j in 0..h {
                                    let (iv, gv, ov) = (ab[bi + j], ab[bg + j], ab[bo + j]);
                                    let fv = if coupled { one - iv } else { ab[h + j] };
                                    let (c, t) = (cnow[j], tc[j]);
                                    let do_pre = dmb[j] * t * ov * (one - ov);
                                    let dcj =
                                        dcb[j] + dmb[j] * ov * (one - t * t) + do_pre * p_o[j];
                                    dpo[j] += do_pre * c;
                                    let df = dcj * cprev[j];
                                    // f = 1 − i when coupled: i's gradient loses f's
                                    let di = if coupled { dcj * gv - df } else { dcj * gv };
                                    let df_pre = df * fv * (one - fv);
                                    let di_pre = di * iv * (one - iv);
                                    let dg_pre = dcj * iv * (one - gv * gv);
                                    let mut dcp = dcj * fv + di_pre * p_i[j];
                                    dpi[j] += di_pre * cprev[j];
                                    if !coupled {
                                        dcp += df_pre * p_f[j];
                                        dpf[j] += df_pre * cprev[j];
                                        dgb[h + j] = df_pre;
                                    }
                                    dgb[bi + j] = di_pre;
                                    dgb[bg + j] = dg_pre;
                                    dgb[bo + j] = do_pre;
                                    dcb[j] = dcp;
                                }
                            }
                            Cell::Gru { reset_after: true } => {
                                let dghb = &mut dgh[(s * n + b) * gh..(s * n + b + 1) * gh];
                                for j in 0..h {
                                    let (rv, zv, nv) = (ab[j], ab[h + j], ab[2 * h + j]);
                                    let d = dh[b * p + j];
                                    let dn_pre = d * (one - zv) * (one - nv * nv);
                                    let hn = self.ghn[(s * n + b) * h + j];
                                    let dr_pre = dn_pre * hn * rv * (one - rv);
                                    let dz_pre = d * (hp[j] - nv) * zv * (one - zv);
                                    dgb[j] = dr_pre;
                                    dgb[h + j] = dz_pre;
                                    dgb[2 * h + j] = dn_pre;
                                    dghb[j] = dr_pre;
                                    dghb[h + j] = dz_pre;
                                    dghb[2 * h + j] = dn_pre * rv;
                                }
                            }
                            Cell::Gru { reset_after: false } => {
                                for j in 0..h {
                                    let (rv, zv, nv) = (ab[j], ab[h + j], ab[2 * h + j]);
                                    let d = dh[b * p + j];
                                    let dr_pre = dq[b * h + j] * hp[j] * rv * (one - rv);
                                    let dz_pre = d * (hp[j] - nv) * zv * (one - zv);
                                    dgb[j] = dr_pre;
                                    dgb[h + j] = dz_pre;
                                    qs[(s * n + b) * h + j] = rv * hp[j];
                                }
                            }
                        }
                    }
                },
            );
            // ∂h_prev: the recurrent matmul's share, plus the direct paths
            let dgr: &[T] = if dgh.is_empty() {
                &dgx[s * n * gh..(s + 1) * n * gh]
            } else {
                &dgh[s * n * gh..(s + 1) * n * gh]
            };
            if gru_cho {
                gemm(
                    n,
                    p,
                    2 * h,
                    Mat {
                        data: dgr,
                        rs: gh,
                        cs: 1,
                    },
                    Mat::rm(whh, p),
                    &mut dprev,
                    false,
                    true,
                );
            } else {
                gemm(
                    n,
                    p,
                    gh,
                    Mat::rm(dgr, gh),
                    Mat::rm(whh, p),
                    &mut dprev,
                    false,
                    true,
                );
            }
            for b in 0..n {
                let row = b * p..(b + 1) * p;
                if self.tix(s, b).is_none() {
                    // an ended sequence carries its state through this step unchanged
                    dprev[row.clone()].copy_from_slice(&dh[row]);
                    continue;
                }
                if let Cell::Gru { reset_after } = cell {
                    // h' = (1 − z) ⊙ n + z ⊙ h, and Cho's candidate reads r ⊙ h
                    for j in 0..h {
                        let zv = a[b * gh + h + j];
                        let mut v = dprev[b * p + j] + dh[b * p + j] * zv;
                        if !reset_after {
                            v += dq[b * h + j] * a[b * gh + j];
                        }
                        dprev[b * p + j] = v;
                    }
                }
            }
            std::mem::swap(&mut dh, &mut dprev);
        }

        // ∂W_hh = Σ_steps dgᵀ · h_prev in one GEMM: (G·H, T·N) · (T·N, P)
        let dgr: &[T] = if dgh.is_empty() { &dgx } else { &dgh };
        let tn = t * n;
        let mut dwhh = vec![T::zero(); gh * p];
        if gru_cho {
            // the r and z blocks read h, the n block reads r ⊙ h
            gemm(
                2 * h,
                p,
                tn,
                Mat {
                    data: dgr,
                    rs: 1,
                    cs: gh,
                },
                Mat::rm(&self.hs[..tn * p], p),
                &mut dwhh[..2 * h * p],
                false,
                true,
            );
            gemm(
                h,
                h,
                tn,
                Mat {
                    data: &dgr[2 * h..],
                    rs: 1,
                    cs: gh,
                },
                Mat::rm(&qs, h),
                &mut dwhh[2 * h * p..],
                false,
                true,
            );
        } else {
            gemm(
                gh,
                p,
                tn,
                Mat::rm_t(dgr, gh),
                Mat::rm(&self.hs[..tn * p], p),
                &mut dwhh,
                false,
                true,
            );
        }
        let mut dbhh = vec![T::zero(); gh];
        for row in dgr.chunks_exact(gh) {
            for (d, &v) in dbhh.iter_mut().zip(row) {
                *d += v;
            }
        }
        let mut dwhr = Vec::new();
        if self.whr.is_some() {
            // ∂W_hr = Σ dhᵀ · m: (P, T·N) · (T·N, H)
            dwhr = vec![T::zero(); p * h];
            gemm(
                p,
                h,
                tn,
                Mat::rm_t(&dhs, p),
                Mat::rm(&self.ms, h),
                &mut dwhr,
                false,
                true,
            );
        }
        // ∂xp: each step's gradient back at its time position
        let mut dxp = vec![T::zero(); t * n * gh];
        for s in 0..t {
            for b in 0..n {
                if let Some(ti) = self.tix(s, b) {
                    dxp[(ti * n + b) * gh..(ti * n + b + 1) * gh]
                        .copy_from_slice(&dgx[(s * n + b) * gh..(s * n + b + 1) * gh]);
                }
            }
        }
        Grads {
            dxp,
            dh0: dh,
            dwhh,
            dbhh,
            dc0: dc,
            dpeep,
            dwhr,
        }
    }
}

impl<T: Float> Tensor<T> {
    /// [`Tensor::recurrent`] built from the differentiable primitives (matmul, sigmoid, tanh, …)
    /// one step at a time, with masks for ended sequences: slow, and the oracle the fused op is
    /// held to.
    pub fn recurrent_reference(
        &self,
        cell: Cell,
        h0: &Tensor<T>,
        w_hh: &Tensor<T>,
        opts: RecurrentOpts<'_, T>,
    ) -> Result<RecurrentOut<T>> {
        let geo = check(cell, self, h0, w_hh, &opts)?;
        let Geom { t, n, h, p, .. } = geo;
        let gh = geo.gh();
        let steps = Steps::new(&opts, t, n);
        let tix = |s: usize, b: usize| steps.time(s, b);
        let xp = self.reshape(&[t * n, gh])?;
        let wt = w_hh.transpose(0, 1)?; // (P, G·H)
        let block = |x: &Tensor<T>, k: usize| x.narrow(1, k * h, h);
        let bias = |k: usize| -> Result<Option<Tensor<T>>> {
            opts.b_hh
                .map(|b| b.narrow(0, k * h, h)?.reshape(&[1, h]))
                .transpose()
        };
        let add_bias = |x: Tensor<T>, k: usize| -> Result<Tensor<T>> {
            match bias(k)? {
                Some(b) => x.add(&b),
                None => Ok(x),
            }
        };
        let peep_row = |k: usize| -> Result<Tensor<T>> {
            opts.peephole
                .ok_or_else(|| arg_err("recurrent", "peephole weights missing"))?
                .narrow(0, k, 1)
        };
        let mut hcur = h0.clone();
        let mut ccur = if cell.has_c() {
            Some(match opts.c0 {
                Some(c) => c.clone(),
                None => Tensor::zeros(&[n, h]),
            })
        } else {
            None
        };
        let mut ys = Vec::new();
        for s in 0..t {
            let rows: Vec<usize> = (0..n).map(|b| tix(s, b).unwrap_or(0) * n + b).collect();
            let mask: Vec<T> = (0..n)
                .map(|b| {
                    if tix(s, b).is_some() {
                        T::one()
                    } else {
                        T::zero()
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, &[n, 1])?;
            let keep = mask.neg().add_scalar(1.0);
            let x = xp.index_select(0, &rows)?; // (N, G·H)
            let (hnew, cnew) = match cell {
                Cell::RnnTanh | Cell::RnnRelu => {
                    let v = add_bias(x.add(&hcur.matmul(&wt)?)?, 0)?;
                    let y = if cell == Cell::RnnTanh {
                        v.tanh()
                    } else {
                        v.relu()
                    };
                    (y, None)
                }
                Cell::Lstm { peephole, coupled } => {
                    let r = hcur.matmul(&wt)?;
                    let z = |k: usize| add_bias(block(&x, k)?.add(&block(&r, k)?)?, k);
                    let c = ccur.clone().unwrap_or_else(|| Tensor::zeros(&[n, h]));
                    let (ki, kf, kg, ko) = if coupled { (0, 0, 1, 2) } else { (0, 1, 2, 3) };
                    let (pi, pf, po) = if coupled { (0, 0, 1) } else { (0, 1, 2) };
                    let mut ipre = z(ki)?;
                    if peephole {
                        ipre = ipre.add(&c.mul(&peep_row(pi)?)?)?;
                    }
                    let i = ipre.sigmoid();
                    let f = if coupled {
                        i.neg().add_scalar(1.0)
                    } else {
                        let mut fpre = z(kf)?;
                        if peephole {
                            fpre = fpre.add(&c.mul(&peep_row(pf)?)?)?;
                        }
                        fpre.sigmoid()
                    };
                    let g = z(kg)?.tanh();
                    let c2 = f.mul(&c)?.add(&i.mul(&g)?)?;
                    let mut opre = z(ko)?;
                    if peephole {
                        opre = opre.add(&c2.mul(&peep_row(po)?)?)?;
                    }
                    let m = opre.sigmoid().mul(&c2.tanh())?;
                    let y = match opts.w_hr {
                        Some(w) => m.matmul(&w.transpose(0, 1)?)?,
                        None => m,
                    };
                    (y, Some(c2))
                }
                Cell::Gru { reset_after } => {
                    let w_rz = wt.narrow(1, 0, 2 * h)?;
                    let r_rz = hcur.matmul(&w_rz)?;
                    let r = add_bias(block(&x, 0)?.add(&block(&r_rz, 0)?)?, 0)?.sigmoid();
                    let zg = add_bias(block(&x, 1)?.add(&block(&r_rz, 1)?)?, 1)?.sigmoid();
                    let w_n = wt.narrow(1, 2 * h, h)?;
                    let cand = if reset_after {
                        r.mul(&add_bias(hcur.matmul(&w_n)?, 2)?)?
                    } else {
                        add_bias(r.mul(&hcur)?.matmul(&w_n)?, 2)?
                    };
                    let nv = block(&x, 2)?.add(&cand)?.tanh();
                    let y = zg.neg().add_scalar(1.0).mul(&nv)?.add(&zg.mul(&hcur)?)?;
                    (y, None)
                }
            };
            ys.push(hnew.mul(&mask)?);
            hcur = hnew.mul(&mask)?.add(&hcur.mul(&keep)?)?;
            if let (Some(c2), Some(c)) = (cnew, ccur.as_ref()) {
                ccur = Some(c2.mul(&mask)?.add(&c.mul(&keep)?)?);
            }
        }
        // outputs at their time positions: row s·N + b of the stacked steps, or the zero row
        ys.push(Tensor::zeros(&[1, p]));
        let refs: Vec<&Tensor<T>> = ys.iter().collect();
        let all = Tensor::concat(&refs, 0)?;
        let mut rows = vec![t * n; t * n];
        for s in 0..t {
            for b in 0..n {
                if let Some(ti) = tix(s, b) {
                    rows[ti * n + b] = s * n + b;
                }
            }
        }
        let output = all.index_select(0, &rows)?.reshape(&[t, n, p])?;
        Ok(RecurrentOut {
            output,
            h_n: hcur,
            c_n: ccur,
        })
    }
}
