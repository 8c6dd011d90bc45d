//! The `Tensor`: a contiguous row-major array of `f32` or `f64` on a device, with an optional
//! autograd node. Tensors are cheap to clone (two `Arc`s); ops never mutate their inputs.
//! The graph links tensors through their identity (`Inner`: id, shape, grad, node) only, not
//! their data: an intermediate result whose values no backward closure saved is freed as soon
//! as the last handle to it goes, though the graph still runs through it.
//! Parameters are updated in place by optimizers through `update_data`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::autograd::{grad_enabled, BackwardFn, Node};
use crate::dtype::Float;
use crate::error::{Result, TensorError};
use crate::rng::Rng;
use crate::shape::numel;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// Where a tensor's data lives. Only the CPU exists today; kernels sit behind this boundary
/// (`crate::cpu`) so another backend can be added without touching layers or models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
}

/// A tensor's identity in the graph: what autograd nodes hold of their inputs.
pub(crate) struct Inner<T: Float> {
    pub(crate) id: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad: Mutex<Option<Vec<T>>>,
    pub(crate) node: Option<Node<T>>,
}

impl<T: Float> Inner<T> {
    pub(crate) fn requires_grad(&self) -> bool {
        self.node.is_some() || self.requires_grad.load(Ordering::Relaxed)
    }
    pub(crate) fn is_leaf(&self) -> bool {
        self.node.is_none()
    }
    pub(crate) fn accumulate_grad(&self, g: Vec<T>) {
        let mut slot = self.grad.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += *b),
            None => *slot = Some(g),
        }
    }
}

/// An n-dimensional array with reverse-mode autograd: its graph identity and its data (shared
/// by all clones, so that in-place updates of a parameter are seen through every handle).
///
/// **`clone()` is not PyTorch's `clone()`.** A `Tensor` is a handle, as in candle: `clone()`
/// is cheap and gives another handle to the same data and the same graph node (what Python's
/// `b = a` does). PyTorch's `a.clone()`, a new tensor with its own copy of the data, is
/// [`Tensor::copy`] here (cut from the graph, like `a.detach().clone()`), and [`Tensor::detach`]
/// shares the data without the graph, as `a.detach()` does.
///
/// ```
/// use aics_tensor::Tensor;
/// let w = Tensor::<f32>::from_vec(vec![1.0, 2.0], &[2]).unwrap();
/// let handle = w.clone(); // the same tensor
/// let copy = w.copy(); // PyTorch's w.clone(): its own data
/// w.set_data(vec![5.0, 6.0]).unwrap();
/// assert_eq!(handle.to_vec(), vec![5.0, 6.0]);
/// assert_eq!(copy.to_vec(), vec![1.0, 2.0]);
/// ```
pub struct Tensor<T: Float = f32>(
    pub(crate) Arc<Inner<T>>,
    pub(crate) Arc<RwLock<Arc<Vec<T>>>>,
);

impl<T: Float> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor(self.0.clone(), self.1.clone())
    }
}

impl<T: Float> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.data();
        let shown: Vec<T> = data.iter().take(8).copied().collect();
        write!(
            f,
            "Tensor<{}>{:?} {:?}{}",
            T::DTYPE.as_str(),
            self.shape(),
            shown,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}

impl<T: Float> Tensor<T> {
    fn build(data: Arc<Vec<T>>, shape: Vec<usize>, node: Option<Node<T>>) -> Self {
        debug_assert_eq!(data.len(), numel(&shape));
        Tensor(
            Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                shape,
                requires_grad: AtomicBool::new(false),
                grad: Mutex::new(None),
                node,
            }),
            Arc::new(RwLock::new(data)),
        )
    }

    /// A tensor owning `data` laid out row-major in `shape`.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let want = numel(shape);
        if data.len() != want {
            return Err(TensorError::DataLen {
                op: "from_vec",
                shape: shape.to_vec(),
                got: data.len(),
                want,
            });
        }
        Ok(Self::build(Arc::new(data), shape.to_vec(), None))
    }

    /// Internal constructor for results whose length is known to match.
    pub(crate) fn raw(data: Vec<T>, shape: Vec<usize>) -> Self {
        Self::build(Arc::new(data), shape, None)
    }

    pub(crate) fn raw_arc(data: Arc<Vec<T>>, shape: Vec<usize>) -> Self {
        Self::build(data, shape, None)
    }

    /// The result of an op. Records a graph node when grad mode is on and an input needs a gradient.
    pub(crate) fn from_op(
        data: Vec<T>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor<T>],
        backward: impl Fn(&[T], &[bool]) -> Vec<Option<Vec<T>>> + Send + Sync + 'static,
    ) -> Self {
        Self::from_op_arc(Arc::new(data), shape, op, inputs, backward)
    }

    pub(crate) fn from_op_arc(
        data: Arc<Vec<T>>,
        shape: Vec<usize>,
        op: &'static str,
        inputs: &[&Tensor<T>],
        backward: impl Fn(&[T], &[bool]) -> Vec<Option<Vec<T>>> + Send + Sync + 'static,
    ) -> Self {
        let track = grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = if track {
            let f: BackwardFn<T> = Box::new(backward);
            Some(Node::new(
                op,
                inputs.iter().map(|t| t.0.clone()).collect(),
                f,
            ))
        } else {
            None
        };
        Self::build(data, shape, node)
    }

    pub fn scalar(v: T) -> Self {
        Self::raw(vec![v], vec![])
    }
    pub fn zeros(shape: &[usize]) -> Self {
        Self::raw(vec![T::zero(); numel(shape)], shape.to_vec())
    }
    pub fn ones(shape: &[usize]) -> Self {
        Self::raw(vec![T::one(); numel(shape)], shape.to_vec())
    }
    pub fn full(shape: &[usize], v: T) -> Self {
        Self::raw(vec![v; numel(shape)], shape.to_vec())
    }
    /// 0, 1, …, n-1.
    pub fn arange(n: usize) -> Self {
        Self::raw((0..n).map(T::from_usize).collect(), vec![n])
    }
    /// Samples of N(mean, std²).
    pub fn randn(shape: &[usize], mean: f64, std: f64, rng: &mut Rng) -> Self {
        Self::raw(
            (0..numel(shape))
                .map(|_| T::from_f64(mean + std * rng.normal()))
                .collect(),
            shape.to_vec(),
        )
    }
    /// Samples of U[lo, hi).
    pub fn rand(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Self {
        Self::raw(
            (0..numel(shape))
                .map(|_| T::from_f64(lo + (hi - lo) * rng.uniform()))
                .collect(),
            shape.to_vec(),
        )
    }

    /// A unique id, stable for the tensor's life (used by the autograd tape).
    pub fn id(&self) -> usize {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn dims(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }
    pub fn device(&self) -> Device {
        Device::Cpu
    }
    /// Size of dimension `d` (negative counts from the end).
    pub fn size(&self, d: isize) -> Result<usize> {
        let d = crate::shape::norm_dim(d, self.rank(), "size")?;
        Ok(self.0.shape[d])
    }

    /// The data, shared (cheap).
    pub fn data(&self) -> Arc<Vec<T>> {
        match self.1.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    pub fn to_vec(&self) -> Vec<T> {
        self.data().as_ref().clone()
    }
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.data().iter().map(|v| v.as_f64()).collect()
    }
    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<T> {
        let d = self.data();
        if d.len() != 1 {
            return Err(TensorError::Shape {
                op: "item",
                msg: format!("expected one element, got shape {:?}", self.shape()),
            });
        }
        Ok(d[0])
    }

    /// Replace the data (same number of elements). Used by optimizers and checkpoint loading.
    pub fn set_data(&self, data: Vec<T>) -> Result<()> {
        if data.len() != self.numel() {
            return Err(TensorError::DataLen {
                op: "set_data",
                shape: self.shape().to_vec(),
                got: data.len(),
                want: self.numel(),
            });
        }
        let mut g = match self.1.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(data);
        Ok(())
    }

    /// Update the data in place (copy-on-write if an autograd node still holds it).
    pub fn update_data(&self, f: impl FnOnce(&mut [T])) {
        let mut g = match self.1.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(Arc::make_mut(&mut g).as_mut_slice());
    }

    /// Whether a gradient flows to this tensor (a leaf marked `requires_grad`, or an op result).
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad()
    }
    /// Mark a leaf tensor as wanting a gradient; returns the same tensor for chaining.
    pub fn requires_grad_(self, on: bool) -> Self {
        self.0.requires_grad.store(on, Ordering::Relaxed);
        self
    }
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.store(on, Ordering::Relaxed);
    }
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf()
    }
    /// The op that produced this tensor, if it is tracked.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.node.as_ref().map(|n| n.op)
    }

    /// A tensor sharing the data but cut from the graph.
    pub fn detach(&self) -> Self {
        Self::raw_arc(self.data(), self.shape().to_vec())
    }
    /// A deep copy, cut from the graph: PyTorch's `a.detach().clone()` (`clone()` here is a
    /// cheap handle to the same tensor; see [`Tensor`]).
    pub fn copy(&self) -> Self {
        Self::raw(self.to_vec(), self.shape().to_vec())
    }

    /// The accumulated gradient of a leaf, if any.
    pub fn grad(&self) -> Option<Tensor<T>> {
        let g = self.0.grad.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .map(|v| Tensor::raw(v.clone(), self.shape().to_vec()))
    }
    /// Run `f` on the gradient buffer, if there is one.
    pub fn with_grad<R>(&self, f: impl FnOnce(Option<&mut Vec<T>>) -> R) -> R {
        let mut g = self.0.grad.lock().unwrap_or_else(|p| p.into_inner());
        f(g.as_mut())
    }
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    pub fn set_grad(&self, g: Option<Vec<T>>) {
        *self.0.grad.lock().unwrap_or_else(|p| p.into_inner()) = g;
    }
    pub(crate) fn accumulate_grad(&self, g: Vec<T>) {
        self.0.accumulate_grad(g)
    }

    /// Whether a gradient has been accumulated (cheaper than `grad().is_some()`).
    pub fn has_grad(&self) -> bool {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Convert to another element type (cut from the graph).
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor::raw(
            self.data()
                .iter()
                .map(|v| U::from_f64(v.as_f64()))
                .collect(),
            self.shape().to_vec(),
        )
    }

    /// Largest absolute elementwise difference to `other` (shapes must match).
    pub fn max_abs_diff(&self, other: &Tensor<T>) -> Result<f64> {
        if self.shape() != other.shape() {
            return Err(TensorError::Shape {
                op: "max_abs_diff",
                msg: format!("{:?} vs {:?}", self.shape(), other.shape()),
            });
        }
        Ok(self
            .data()
            .iter()
            .zip(other.data().iter())
            .map(|(a, b)| (a.as_f64() - b.as_f64()).abs())
            .fold(0.0, f64::max))
    }
}

impl<T: Float> Drop for Inner<T> {
    /// Unlink the graph iteratively: the default recursive drop of a long chain (an unrolled
    /// RNN, 100k ops) would overflow the stack.
    fn drop(&mut self) {
        let inputs = |n: Node<T>| {
            let saved = n.saved.into_inner().unwrap_or_else(|e| e.into_inner());
            saved.map(|s| s.inputs).unwrap_or_default()
        };
        let Some(node) = self.node.take() else { return };
        let mut stack = inputs(node);
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t) {
                if let Some(n) = inner.node.take() {
                    stack.extend(inputs(n));
                }
            }
        }
    }
}
