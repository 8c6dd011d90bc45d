//! Synchronized batch norm: while a [`SyncBatchNorm`] guard is alive on a thread, every
//! [`crate::BatchNorm`] in training mode whose forward runs on that thread takes its
//! statistics over the batches of all the ranks ([`aics_tensor::Tensor::batch_norm_synced`]).
//! A guard instead of a converted model: the zoo's models stay as they are, and the same model
//! trains synchronized or not. Layers run their forward on the thread that calls the model's.

use std::cell::RefCell;
use std::sync::Arc;

use aics_tensor::{GroupStats, Tensor};

use crate::Result;

thread_local! {
    static GROUP: RefCell<Option<Arc<dyn GroupStats>>> = const { RefCell::new(None) };
}

/// Keeps batch norm synchronized over a group on this thread until dropped.
pub struct SyncBatchNorm {
    prev: Option<Arc<dyn GroupStats>>,
}

impl SyncBatchNorm {
    /// Synchronizes the batch norm of forwards on this thread over `group`.
    pub fn enable(group: Arc<dyn GroupStats>) -> Self {
        let prev = GROUP.with(|g| g.borrow_mut().replace(group));
        SyncBatchNorm { prev }
    }
}

impl Drop for SyncBatchNorm {
    fn drop(&mut self) {
        let prev = self.prev.take();
        GROUP.with(|g| *g.borrow_mut() = prev);
    }
}

/// The group batch norm is synchronized over on this thread, if any.
pub(crate) fn current() -> Option<Arc<dyn GroupStats>> {
    GROUP.with(|g| g.borrow().clone())
}

/// Batch norm as a layer runs it: in training, over the batches of all ranks while a
/// [`SyncBatchNorm`] guard is alive on this thread, else the tensor's own over this batch (or
/// with the running statistics, in evaluation). [`crate::BatchNorm`] runs it, and so do layers
/// outside this crate with a batch norm of their own (darknet's convolutions).
#[allow(clippy::too_many_arguments)]
pub fn layer_batch_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    if let Some(group) = current().filter(|_| training) {
        return Ok(x.batch_norm_synced(
            weight,
            bias,
            running_mean,
            running_var,
            momentum,
            eps,
            &group,
        )?);
    }
    Ok(x.batch_norm(
        weight,
        bias,
        running_mean,
        running_var,
        training,
        momentum,
        eps,
    )?)
}
