//! Recurrent layers: [`Recurrent`] (PyTorch `nn.RNN`, `nn.LSTM`, `nn.GRU`: multi-layer,
//! bidirectional, `batch_first`, dropout between layers, initial states, `proj_size`, packed
//! variable-length batches) and [`RecurrentCell`] (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`)
//! for one step at a time. Besides PyTorch's cells, the LSTM with peephole connections
//! (Gers & Schmidhuber 2000) and with the coupled input-forget gate (f = 1 − i), and the GRU in
//! Cho et al.'s original form (reset before the recurrent matmul).
//!
//! Keys are PyTorch's: `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`,
//! `weight_hr_l{k}` (projection), with `_reverse` for the backward direction; the peepholes are
//! `weight_peephole_l{k}` ((i, f, o) rows, or (i, o) for the coupled cell). Gate blocks are in
//! PyTorch's order: (i, f, g, o) for the LSTM, (i, g, o) for the coupled LSTM, (r, z, n) for the
//! GRU. The computation is [`Tensor::recurrent`]: the input projection of every step as one GEMM,
//! then the fused recurrence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aics_tensor::{Cell, RecurrentOpts, Rng, Tensor};

use crate::error::{config, Result};
use crate::init::default_uniform;
use crate::module::{key, Fields, Kind, Module};

/// A recurrent layer's hyper-parameters (PyTorch's constructor arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentConfig {
    pub cell: Cell,
    pub input_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub bias: bool,
    /// Input and output (N, T, F) instead of (T, N, F).
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, in training.
    pub dropout: f64,
    pub bidirectional: bool,
    /// LSTM only: project h to this size (0: none).
    pub proj_size: usize,
}

impl RecurrentConfig {
    pub fn new(cell: Cell, input_size: usize, hidden_size: usize) -> Self {
        RecurrentConfig {
            cell,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        }
    }
    /// `nn.RNN` (tanh).
    pub fn rnn(input_size: usize, hidden_size: usize) -> Self {
        Self::new(Cell::RnnTanh, input_size, hidden_size)
    }
    /// `nn.LSTM`.
    pub fn lstm(input_size: usize, hidden_size: usize) -> Self {
        Self::new(
            Cell::Lstm {
                peephole: false,
                coupled: false,
            },
            input_size,
            hidden_size,
        )
    }
    /// `nn.GRU`.
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        Self::new(Cell::Gru { reset_after: true }, input_size, hidden_size)
    }
    pub fn layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    pub fn bias(mut self, on: bool) -> Self {
        self.bias = on;
        self
    }
    pub fn batch_first(mut self, on: bool) -> Self {
        self.batch_first = on;
        self
    }
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    pub fn bidirectional(mut self, on: bool) -> Self {
        self.bidirectional = on;
        self
    }
    pub fn proj_size(mut self, p: usize) -> Self {
        self.proj_size = p;
        self
    }
    /// Directions: 2 when bidirectional.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// The size of h: `proj_size` when set, else `hidden_size`.
    pub fn state_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
    fn check(&self) -> Result<()> {
        let name = cell_name(self.cell);
        if self.input_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return Err(config(
                name,
                format!(
                    "input_size, hidden_size and num_layers must be positive, got {}, {}, {}",
                    self.input_size, self.hidden_size, self.num_layers
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(config(
                name,
                format!("dropout must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.proj_size > 0 && (!self.cell.has_c() || self.proj_size >= self.hidden_size) {
            return Err(config(
                name,
                format!(
                    "proj_size {} needs an LSTM with hidden_size above it ({})",
                    self.proj_size, self.hidden_size
                ),
            ));
        }
        Ok(())
    }
}

/// The name a cell goes by in summaries and errors.
pub fn cell_name(cell: Cell) -> &'static str {
    match cell {
        Cell::RnnTanh | Cell::RnnRelu => "RNN",
        Cell::Lstm {
            peephole: false,
            coupled: false,
        } => "LSTM",
        Cell::Lstm {
            peephole: true,
            coupled: false,
        } => "LSTM(peephole)",
        Cell::Lstm {
            peephole: false,
            coupled: true,
        } => "LSTM(coupled)",
        Cell::Lstm {
            peephole: true,
            coupled: true,
        } => "LSTM(coupled, peephole)",
        Cell::Gru { reset_after: true } => "GRU",
        Cell::Gru { reset_after: false } => "GRU(reset before)",
    }
}

/// The state of a recurrent layer: `h` (layers·directions, N, P) and, for the LSTM, `c`
/// (layers·directions, N, H), as PyTorch's `h_n` and `c_n`.
#[derive(Clone)]
pub struct RecurrentState {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl RecurrentState {
    /// The same state cut from the graph (truncated BPTT carries it across chunks).
    pub fn detach(&self) -> Self {
        RecurrentState {
            h: self.h.detach(),
            c: self.c.as_ref().map(|c| c.detach()),
        }
    }
}

/// One direction of one layer.
struct DirWeights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
    w_hr: Option<Tensor>,
    peephole: Option<Tensor>,
}

/// A multi-layer recurrent network (`nn.RNN`, `nn.LSTM`, `nn.GRU`, and the LSTM/GRU variants).
pub struct Recurrent {
    pub cfg: RecurrentConfig,
    /// index `layer · directions + direction`
    weights: Vec<DirWeights>,
    rng: Mutex<Rng>,
    training: AtomicBool,
}

impl Recurrent {
    /// Weights drawn as PyTorch draws them: U(−1/√H, 1/√H) for every tensor (peepholes too).
    pub fn new(cfg: RecurrentConfig, rng: &mut Rng) -> Result<Self> {
        cfg.check()?;
        let (h, p, d) = (cfg.hidden_size, cfg.state_size(), cfg.directions());
        let gh = cfg.cell.gates() * h;
        let mut weights = Vec::new();
        for layer in 0..cfg.num_layers {
            let inp = if layer == 0 { cfg.input_size } else { p * d };
            for _ in 0..d {
                weights.push(DirWeights {
                    w_ih: default_uniform(&[gh, inp], h, rng),
                    w_hh: default_uniform(&[gh, p], h, rng),
                    b_ih: cfg.bias.then(|| default_uniform(&[gh], h, rng)),
                    b_hh: cfg.bias.then(|| default_uniform(&[gh], h, rng)),
                    w_hr: (cfg.proj_size > 0).then(|| default_uniform(&[p, h], h, rng)),
                    peephole: (cfg.cell.peepholes() > 0)
                        .then(|| default_uniform(&[cfg.cell.peepholes(), h], h, rng)),
                });
            }
        }
        let seed = rng.next_u64();
        Ok(Recurrent {
            cfg,
            weights,
            rng: Mutex::new(Rng::new(seed)),
            training: AtomicBool::new(true),
        })
    }

    /// Run over `x` ((T, N, I), or (N, T, I) with `batch_first`) from `state` (zeros when
    /// absent). `lengths` gives each sequence's valid steps (PyTorch's packed sequences: outputs
    /// past a length are zero, the final state is the one at the sequence's own end).
    /// Returns the output ((T, N, D·P) or batch-first) and the final state.
    pub fn forward_state(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, RecurrentState)> {
        let cfg = &self.cfg;
        let name = cell_name(cfg.cell);
        let xs = x.shape();
        if xs.len() != 3 || xs[2] != cfg.input_size {
            return Err(config(
                name,
                format!(
                    "input {xs:?}, expected ({}, {}, {})",
                    if cfg.batch_first { "N" } else { "T" },
                    if cfg.batch_first { "T" } else { "N" },
                    cfg.input_size
                ),
            ));
        }
        let mut inp = if cfg.batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        let (t, n) = (inp.shape()[0], inp.shape()[1]);
        let (h, p, d) = (cfg.hidden_size, cfg.state_size(), cfg.directions());
        let ld = cfg.num_layers * d;
        if let Some(s) = state {
            if s.h.shape() != [ld, n, p] {
                return Err(config(
                    name,
                    format!("initial h {:?}, expected [{ld}, {n}, {p}]", s.h.shape()),
                ));
            }
            match (&s.c, cfg.cell.has_c()) {
                (Some(c), true) if c.shape() != [ld, n, h] => {
                    return Err(config(
                        name,
                        format!("initial c {:?}, expected [{ld}, {n}, {h}]", c.shape()),
                    ))
                }
                (Some(_), false) => {
                    return Err(config(name, "an initial cell state is for the LSTM only"))
                }
                _ => {}
            }
        }
        let training = self.training.load(Ordering::Relaxed);
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for layer in 0..cfg.num_layers {
            let fan = inp.shape()[2];
            let flat = inp.reshape(&[t * n, fan])?;
            let mut outs = Vec::new();
            for dir in 0..d {
                let k = layer * d + dir;
                let w = &self.weights[k];
                let xp = flat.linear(&w.w_ih, w.b_ih.as_ref())?.reshape(&[
                    t,
                    n,
                    cfg.cell.gates() * h,
                ])?;
                let h0 = match state {
                    Some(s) => s.h.narrow(0, k, 1)?.reshape(&[n, p])?,
                    None => Tensor::zeros(&[n, p]),
                };
                let c0 = match state.and_then(|s| s.c.as_ref()) {
                    Some(c) => Some(c.narrow(0, k, 1)?.reshape(&[n, h])?),
                    None => None,
                };
                let out = xp.recurrent(
                    cfg.cell,
                    &h0,
                    &w.w_hh,
                    RecurrentOpts {
                        b_hh: w.b_hh.as_ref(),
                        c0: c0.as_ref(),
                        peephole: w.peephole.as_ref(),
                        w_hr: w.w_hr.as_ref(),
                        lengths,
                        reverse: dir == 1,
                    },
                )?;
                hs.push(out.h_n.unsqueeze(0)?);
                if let Some(c) = out.c_n {
                    cs.push(c.unsqueeze(0)?);
                }
                outs.push(out.output);
            }
            inp = if d == 1 {
                outs.pop().unwrap_or(inp)
            } else {
                Tensor::concat(&[&outs[0], &outs[1]], 2)?
            };
            if training && cfg.dropout > 0.0 && layer + 1 < cfg.num_layers {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                inp = inp.dropout(cfg.dropout, &mut rng)?;
            }
        }
        let out = if cfg.batch_first {
            inp.transpose(0, 1)?
        } else {
            inp
        };
        let hr: Vec<&Tensor> = hs.iter().collect();
        let cr: Vec<&Tensor> = cs.iter().collect();
        let st = RecurrentState {
            h: Tensor::concat(&hr, 0)?,
            c: if cs.is_empty() {
                None
            } else {
                Some(Tensor::concat(&cr, 0)?)
            },
        };
        Ok((out, st))
    }

    fn dir_key(layer: usize, dir: usize) -> String {
        if dir == 1 {
            format!("l{layer}_reverse")
        } else {
            format!("l{layer}")
        }
    }
}

impl Fields for Recurrent {}

impl Module for Recurrent {
    /// The output sequence, from zero states.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_state(x, None, None)?.0)
    }
    fn type_name(&self) -> String {
        let c = &self.cfg;
        format!(
            "{}({}, {}{}{})",
            cell_name(c.cell),
            c.input_size,
            c.hidden_size,
            if c.num_layers > 1 {
                format!(", num_layers={}", c.num_layers)
            } else {
                String::new()
            },
            if c.bidirectional {
                ", bidirectional"
            } else {
                ""
            }
        )
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        let d = self.cfg.directions();
        for (k, w) in self.weights.iter().enumerate() {
            let s = Self::dir_key(k / d, k % d);
            f(key(prefix, &format!("weight_ih_{s}")), &w.w_ih, Kind::Param);
            f(key(prefix, &format!("weight_hh_{s}")), &w.w_hh, Kind::Param);
            if let Some(b) = &w.b_ih {
                f(key(prefix, &format!("bias_ih_{s}")), b, Kind::Param);
            }
            if let Some(b) = &w.b_hh {
                f(key(prefix, &format!("bias_hh_{s}")), b, Kind::Param);
            }
            if let Some(r) = &w.w_hr {
                f(key(prefix, &format!("weight_hr_{s}")), r, Kind::Param);
            }
            if let Some(pp) = &w.peephole {
                f(
                    key(prefix, &format!("weight_peephole_{s}")),
                    pp,
                    Kind::Param,
                );
            }
        }
    }
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(String, &Mutex<Rng>)) {
        if self.cfg.dropout > 0.0 && self.cfg.num_layers > 1 {
            f(key(prefix, "dropout"), &self.rng);
        }
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}

/// One recurrent step (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`, and the variants): keys
/// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, `weight_peephole`.
#[derive(crate::module::Module)]
pub struct RecurrentCell {
    pub cell: Cell,
    #[param]
    pub weight_ih: Tensor,
    #[param]
    pub weight_hh: Tensor,
    #[param]
    pub bias_ih: Option<Tensor>,
    #[param]
    pub bias_hh: Option<Tensor>,
    #[param]
    pub weight_peephole: Option<Tensor>,
}

impl RecurrentCell {
    pub fn new(
        cell: Cell,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        if input_size == 0 || hidden_size == 0 {
            return Err(config(
                cell_name(cell),
                format!("sizes must be positive, got {input_size} -> {hidden_size}"),
            ));
        }
        let (h, gh) = (hidden_size, cell.gates() * hidden_size);
        Ok(RecurrentCell {
            cell,
            weight_ih: default_uniform(&[gh, input_size], h, rng),
            weight_hh: default_uniform(&[gh, h], h, rng),
            bias_ih: bias.then(|| default_uniform(&[gh], h, rng)),
            bias_hh: bias.then(|| default_uniform(&[gh], h, rng)),
            weight_peephole: (cell.peepholes() > 0)
                .then(|| default_uniform(&[cell.peepholes(), h], h, rng)),
        })
    }

    /// One step from `x` (N, I) and the state `(h, c)` (zeros when absent): the new `(h, c)`
    /// (`c` for the LSTM only).
    pub fn step(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, Option<&Tensor>)>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (gh, i) = (self.weight_ih.shape()[0], self.weight_ih.shape()[1]);
        let h = gh / self.cell.gates();
        let xs = x.shape();
        if xs.len() != 2 || xs[1] != i {
            return Err(config(
                cell_name(self.cell),
                format!("input {xs:?}, expected (N, {i})"),
            ));
        }
        let n = xs[0];
        let xp = x
            .linear(&self.weight_ih, self.bias_ih.as_ref())?
            .reshape(&[1, n, gh])?;
        let zeros = Tensor::zeros(&[n, h]);
        let (h0, c0) = match state {
            Some((h0, c0)) => (h0.clone(), c0),
            None => (zeros.clone(), None),
        };
        let out = xp.recurrent(
            self.cell,
            &h0,
            &self.weight_hh,
            RecurrentOpts {
                b_hh: self.bias_hh.as_ref(),
                c0,
                peephole: self.weight_peephole.as_ref(),
                ..Default::default()
            },
        )?;
        Ok((out.h_n, out.c_n))
    }
}

impl Module for RecurrentCell {
    /// The new h from zero states.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.step(x, None)?.0)
    }
    fn type_name(&self) -> String {
        format!(
            "{}Cell({}, {})",
            cell_name(self.cell),
            self.weight_ih.shape()[1],
            self.weight_hh.shape()[1]
        )
    }
}

/// The order of ONNX's gate blocks in aics's (PyTorch's): `ours[k] = onnx[perm[k]]`. ONNX's LSTM
/// has (i, o, f, c), its GRU (z, r, h), its peepholes (i, o, f); aics has (i, f, g, o),
/// (r, z, n) and (i, f, o).
pub fn onnx_gate_perm(cell: Cell) -> &'static [usize] {
    match cell {
        Cell::RnnTanh | Cell::RnnRelu => &[0],
        Cell::Lstm { coupled: false, .. } => &[0, 2, 3, 1],
        // ONNX has no coupled LSTM; its blocks would be (i, o, c)
        Cell::Lstm { coupled: true, .. } => &[0, 2, 1],
        Cell::Gru { .. } => &[1, 0, 2],
    }
}

/// ONNX's peephole rows (i, o, f) in aics's order (i, f, o).
pub const ONNX_PEEPHOLE_PERM: [usize; 3] = [0, 2, 1];

/// `data` made of `perm.len()` blocks of `block` values each, re-ordered so that block k is
/// `data`'s block `perm[k]`. None when the sizes do not fit.
pub fn reorder_blocks<T: Copy>(data: &[T], perm: &[usize], block: usize) -> Option<Vec<T>> {
    if data.len() != perm.len() * block || perm.iter().any(|&p| p >= perm.len()) {
        return None;
    }
    Some(
        perm.iter()
            .flat_map(|&p| data[p * block..(p + 1) * block].iter().copied())
            .collect(),
    )
}
