//! Recording the ops a forward pass runs, with their hyper-parameters, for export.
//!
//! [`trace`] runs a closure with recording on for this thread and returns what it ran: one
//! [`Record`] per op, its [`Op`] (kind and attributes), the tensors it read and the tensor it
//! made. An exporter turns the records into another framework's graph (aics-onnx writes ONNX):
//! a record's inputs are earlier records' outputs, the traced inputs, or tensors made outside
//! the trace (the weights, constants), told apart by [`TracedTensor::id`].
//!
//! Ops built out of other ops record themselves once: the inner ops run inside [`inner`], which
//! records nothing. An op not recorded at all shows up as a constant in the graph; exporters
//! check their graph against the model on another input to catch that.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use crate::dtype::Float;
use crate::ops::conv::{Activation, ConvParams};
use crate::ops::pool::PoolParams;
use crate::ops::recurrent::Cell as RnnCell;
use crate::ops::upsample::Interp;
use crate::tensor::Tensor;

/// An op and its attributes. Inputs are listed in the order the record keeps them.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Elementwise with broadcasting: (a, b).
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    AddScalar(f64),
    MulScalar(f64),
    Neg,
    Exp,
    Log,
    Sqrt,
    Square,
    Pow(f64),
    Abs,
    Clamp(f64, f64),
    Relu,
    HardSigmoid,
    HardSwish,
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    Softplus,
    SmoothL1(f64),
    /// (x, slopes): one slope, or one per channel (dim 1).
    Prelu,
    /// (x, weight[, bias][, residual]): `act(conv(x) + bias + residual)`.
    Conv {
        p: ConvParams,
        act: Activation,
        bias: bool,
        residual: bool,
    },
    /// (x, weight[, bias]); the weight is (C_in, C_out/groups, KH, KW).
    ConvTranspose {
        p: ConvParams,
        bias: bool,
    },
    /// (a, b): batched matrix product with broadcasting, as `torch.matmul`.
    MatMul,
    /// (x, weight (out, in)[, bias]): `x·Wᵀ + b` over the last dimension.
    Linear {
        bias: bool,
    },
    /// (x (C, K) or (N, C, K)) → `X·Xᵀ` of each matrix.
    Gram,
    Lrn {
        size: usize,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// (x[, weight][, bias], running_mean, running_var) in evaluation mode; in training mode
    /// (batch statistics) the running tensors are left out.
    BatchNorm {
        eps: f64,
        training: bool,
        weight: bool,
        bias: bool,
    },
    /// (x, scale, shift): `x·scale[c] + shift[c]`.
    ChannelAffine,
    /// (x[, weight][, bias]).
    InstanceNorm {
        eps: f64,
        weight: bool,
        bias: bool,
    },
    /// Dropout that dropped something (training mode): not a function of its input alone.
    Dropout(f64),
    MaxPool(PoolParams),
    AvgPool {
        p: PoolParams,
        count_include_pad: bool,
    },
    LpPool {
        norm: f64,
        p: PoolParams,
    },
    AdaptiveAvgPool {
        oh: usize,
        ow: usize,
    },
    Sum,
    Mean,
    /// Sum over the dimensions (sorted, distinct).
    SumDims {
        dims: Vec<usize>,
        keepdim: bool,
    },
    MeanDims {
        dims: Vec<usize>,
        keepdim: bool,
    },
    MaxDim {
        dim: usize,
        keepdim: bool,
    },
    Max,
    Min,
    /// To the record's output shape.
    Reshape,
    Permute(Vec<usize>),
    /// `len` elements from `start` along `dim`.
    Slice {
        dim: usize,
        start: usize,
        len: usize,
    },
    IndexSelect {
        dim: usize,
        indices: Vec<usize>,
    },
    /// (table (V, D), ids of integral values): rows of the table.
    Embedding,
    Gather {
        dim: usize,
        index: Vec<usize>,
        index_shape: Vec<usize>,
    },
    /// (t0, t1, …).
    Concat(usize),
    /// `(before, after)` per dimension.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f64,
    },
    /// (left, right, top, bottom).
    ReflectionPad([usize; 4]),
    Softmax(usize),
    LogSoftmax(usize),
    Upsample {
        oh: usize,
        ow: usize,
        mode: Interp,
    },
    /// Region pooling of (features, regions (K, 5)): Fast R-CNN's max over bins (`roi_pool`).
    RoiPool {
        output: (usize, usize),
        spatial_scale: f64,
    },
    /// Region pooling of (features, regions (K, 5)): bilinear samples averaged per bin
    /// (`roi_align`).
    RoiAlign {
        output: (usize, usize),
        spatial_scale: f64,
        sampling_ratio: i32,
        aligned: bool,
    },
    /// (xp (T, N, G·H), h0, w_hh[, b_hh][, c0][, peephole][, w_hr]) with the record's outputs
    /// (output, h_n[, c_n]).
    Recurrent {
        cell: RnnCell,
        lengths: Option<Vec<usize>>,
        reverse: bool,
        b_hh: bool,
        c0: bool,
        peephole: bool,
        w_hr: bool,
    },
}

/// The values of a tensor made outside the trace, read when an exporter asks for them.
type Values = Box<dyn Fn() -> Vec<f32> + Send + Sync>;

/// A tensor an op read or made: its identity, shape and, for one made outside the trace (a
/// weight, a constant, an input), its values. The trace keeps no other tensor's data alive.
pub struct TracedTensor {
    id: usize,
    shape: Vec<usize>,
    values: Option<Values>,
}

impl TracedTensor {
    fn of<T: Float>(t: &Tensor<T>, keep_values: bool) -> Self {
        let values: Option<Values> = keep_values.then(|| {
            let data = t.data();
            Box::new(move || data.iter().map(|v| v.as_f64() as f32).collect()) as Values
        });
        TracedTensor {
            id: t.id(),
            shape: t.shape().to_vec(),
            values,
        }
    }

    /// The tensor's identity ([`Tensor::id`]).
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, as f32, of a tensor made outside the trace; None for one an earlier
    /// recorded op made.
    pub fn values(&self) -> Option<Vec<f32>> {
        self.values.as_ref().map(|v| v())
    }
}

impl std::fmt::Debug for TracedTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}{:?}", self.id, self.shape)
    }
}

/// One op run while tracing.
#[derive(Debug)]
pub struct Record {
    pub op: Op,
    pub inputs: Vec<TracedTensor>,
    pub outputs: Vec<TracedTensor>,
}

/// A trace under way: the records so far, and the tensors they made.
#[derive(Default)]
struct Recording {
    records: Vec<Record>,
    made: HashSet<usize>,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// What a [`trace`] replaced on this thread, put back when it ends (or unwinds).
struct Restore {
    recording: Option<Recording>,
    depth: usize,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let outer = self.recording.take();
        RECORDING.with(|r| *r.borrow_mut() = outer);
        DEPTH.with(|d| d.set(self.depth));
    }
}

/// Run `f` with recording on for this thread; its result and the ops it ran, in order. A trace
/// inside a trace records into the inner one only; the outer one goes on after it.
pub fn trace<R>(f: impl FnOnce() -> R) -> (R, Vec<Record>) {
    let _restore = Restore {
        recording: RECORDING.with(|r| r.borrow_mut().replace(Recording::default())),
        depth: DEPTH.with(|d| d.replace(0)),
    };
    let out = f();
    let records = RECORDING
        .with(|r| r.borrow_mut().take())
        .map(|r| r.records)
        .unwrap_or_default();
    (out, records)
}

/// Whether ops on this thread are being recorded (and not inside another recorded op).
pub fn tracing() -> bool {
    DEPTH.with(|d| d.get()) == 0 && RECORDING.with(|r| r.borrow().is_some())
}

struct Inner;

impl Drop for Inner {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Run `f`, an op's implementation out of other ops, recording none of them: the caller records
/// itself.
pub(crate) fn inner<R>(f: impl FnOnce() -> R) -> R {
    DEPTH.with(|d| d.set(d.get() + 1));
    let _g = Inner;
    f()
}

/// Record `op` reading `inputs` and making `outputs`, when tracing. An op that handed back an
/// input as it is (a no-op) is not recorded.
pub(crate) fn record<T: Float>(op: Op, inputs: &[&Tensor<T>], outputs: &[&Tensor<T>]) {
    if !tracing()
        || outputs
            .iter()
            .any(|o| inputs.iter().any(|i| i.id() == o.id()))
    {
        return;
    }
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            let inputs = inputs
                .iter()
                .map(|t| TracedTensor::of(t, !rec.made.contains(&t.id())))
                .collect();
            let outputs = outputs
                .iter()
                .map(|t| {
                    rec.made.insert(t.id());
                    TracedTensor::of(t, false)
                })
                .collect();
            rec.records.push(Record {
                op,
                inputs,
                outputs,
            });
        }
    });
}

/// [`record`] for an op's result, passing it on; `op` is made only for a result that is
/// recorded.
pub(crate) fn recorded<T: Float>(
    op: impl FnOnce() -> Op,
    inputs: &[&Tensor<T>],
    out: crate::error::Result<Tensor<T>>,
) -> crate::error::Result<Tensor<T>> {
    if let Ok(y) = &out {
        if tracing() {
            record(op(), inputs, &[y]);
        }
    }
    out
}

/// The operands that are given, in order: an op's optional inputs left out.
pub(crate) fn present<'a, T: Float>(operands: &[Option<&'a Tensor<T>>]) -> Vec<&'a Tensor<T>> {
    operands.iter().flatten().copied().collect()
}

/// A dimension given from the end (negative) as one from the start; for dimensions already
/// checked to be in range.
pub(crate) fn axis(dim: isize, rank: usize) -> usize {
    if dim < 0 {
        (dim + rank as isize) as usize
    } else {
        dim as usize
    }
}

/// [`axis`] of each, sorted, without repeats.
pub(crate) fn axes(dims: &[isize], rank: usize) -> Vec<usize> {
    let mut v: Vec<usize> = dims.iter().map(|&d| axis(d, rank)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Batch norm's inputs as [`Op::BatchNorm`] lists them.
pub(crate) fn bn_inputs<'a, T: Float>(
    x: &'a Tensor<T>,
    weight: Option<&'a Tensor<T>>,
    bias: Option<&'a Tensor<T>>,
    running_mean: Option<&'a Tensor<T>>,
    running_var: Option<&'a Tensor<T>>,
    training: bool,
) -> Vec<&'a Tensor<T>> {
    let running = !training && running_mean.is_some() && running_var.is_some();
    present(&[
        Some(x),
        weight,
        bias,
        running_mean.filter(|_| running),
        running_var.filter(|_| running),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_ops_with_their_operands_once() {
        let x = Tensor::<f32>::from_vec(vec![1.0, -2.0, 3.0, -4.0], &[2, 2]).unwrap();
        let w = Tensor::<f32>::from_vec(vec![0.5, 0.25], &[2]).unwrap();
        let (y, recs) = trace(|| {
            let a = x.add(&w).unwrap().relu();
            a.flatten(0).unwrap()
        });
        let ops: Vec<&Op> = recs.iter().map(|r| &r.op).collect();
        assert_eq!(ops, [&Op::Add, &Op::Relu, &Op::Reshape]);
        assert_eq!(recs[0].inputs[0].id(), x.id());
        assert_eq!(recs[0].inputs[1].values(), Some(vec![0.5, 0.25]));
        // what a recorded op made is not kept
        assert!(recs[1].inputs[0].values().is_none());
        assert_eq!(recs[1].inputs[0].id(), recs[0].outputs[0].id());
        assert_eq!(recs[2].outputs[0].id(), y.id());
        assert_eq!(recs[2].outputs[0].shape(), [4]);
        // off again after the trace
        let _ = x.relu();
        assert!(!tracing());
    }

    #[test]
    fn a_trace_inside_a_trace_leaves_the_outer_one_recording() {
        let x = Tensor::<f32>::from_vec(vec![1.0, -2.0], &[2]).unwrap();
        let ((inner, _), outer) = trace(|| {
            let a = x.relu();
            let (_, inner) = trace(|| a.exp());
            (inner, a.neg())
        });
        let ops = |rs: &[Record]| rs.iter().map(|r| r.op.clone()).collect::<Vec<_>>();
        assert_eq!(ops(&inner), [Op::Exp]);
        assert_eq!(ops(&outer), [Op::Relu, Op::Neg]);
        assert!(!tracing());
    }

    #[test]
    fn an_op_made_of_ops_records_itself_only() {
        let x = Tensor::<f32>::from_vec(vec![1.0, -2.0], &[1, 2]).unwrap();
        let w = Tensor::<f32>::from_vec(vec![0.1, 0.2], &[2]).unwrap();
        let (_, recs) = trace(|| x.mean_dims(&[1], false).unwrap());
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(
            recs[0].op,
            Op::MeanDims {
                dims: vec![1],
                keepdim: false
            }
        );
        let (_, recs) = trace(|| x.prelu(&w).unwrap());
        assert!(recs
            .iter()
            .all(|r| r.op != Op::Reshape || r.inputs[0].id() == w.id()));
    }
}
