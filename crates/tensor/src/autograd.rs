//! Reverse-mode, define-by-run autograd. Each op result holds a `Node`: its inputs and a closure
//! that maps the gradient of the output to the gradients of the inputs. `backward` walks the
//! graph once in reverse topological order; leaves accumulate (`+=`) into their `.grad`.
//! The graph lives at most as long as the tensors that reference it: dropping the loss frees a
//! step. A backward pass frees each node's inputs and saved tensors as soon as it has used them
//! (as PyTorch does without `retain_graph`), so activations are released while the pass runs;
//! back-propagating through the same graph a second time is an error.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::dtype::Float;
use crate::error::{Result, TensorError};
use crate::tensor::{Inner, Tensor};

/// `(grad_output, needs_grad_per_input) -> grad per input` (None where not needed).
pub(crate) type BackwardFn<T> = Box<dyn Fn(&[T], &[bool]) -> Vec<Option<Vec<T>>> + Send + Sync>;

pub(crate) struct Node<T: Float> {
    pub(crate) op: &'static str,
    /// The inputs and the backward closure (with what it saved), until a backward pass has used
    /// them.
    pub(crate) saved: Mutex<Option<Saved<T>>>,
}

pub(crate) struct Saved<T: Float> {
    /// The inputs' graph identities (not their data: what the closure needs, it saved).
    pub(crate) inputs: Vec<Arc<Inner<T>>>,
    pub(crate) backward: BackwardFn<T>,
}

impl<T: Float> Node<T> {
    pub(crate) fn new(
        op: &'static str,
        inputs: Vec<Arc<Inner<T>>>,
        backward: BackwardFn<T>,
    ) -> Self {
        Node {
            op,
            saved: Mutex::new(Some(Saved { inputs, backward })),
        }
    }

    pub(crate) fn saved(&self) -> MutexGuard<'_, Option<Saved<T>>> {
        // a panic inside a backward closure leaves nothing half-written here
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn freed(op: &str) -> TensorError {
    TensorError::Backward(format!(
        "the graph through `{op}` was freed by an earlier backward pass; run the forward again to back-propagate a second time"
    ))
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops on this thread record nothing (inference, optimizer updates).
pub struct NoGradGuard {
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        let prev = self.prev;
        GRAD_ENABLED.with(|g| g.set(prev));
    }
}

/// `let _g = no_grad();` turns graph recording off until `_g` is dropped.
pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

impl<T: Float> Tensor<T> {
    /// Back-propagate from a one-element tensor (usually the loss).
    pub fn backward(&self) -> Result<()> {
        self.backward_inner(self.unit_seed()?, None)
    }

    /// The gradient a backward pass from a one-element tensor starts with: 1.
    fn unit_seed(&self) -> Result<Vec<T>> {
        if self.numel() != 1 {
            return Err(TensorError::Backward(format!(
                "backward() needs a one-element tensor, got shape {:?}; use backward_with(grad)",
                self.shape()
            )));
        }
        Ok(vec![T::one()])
    }

    /// Back-propagate with an explicit gradient of this tensor (same number of elements).
    pub fn backward_with(&self, grad: Vec<T>) -> Result<()> {
        self.backward_inner(grad, None)
    }

    /// [`Tensor::backward`], calling `on_ready(id)` for each leaf that needs a gradient as soon
    /// as its gradient is final (every op that reads it has run its backward), with the leaf's
    /// [`Tensor::id`]. A leaf the loss does not depend on is not reported. Data-parallel
    /// training starts reducing a group of gradients while the rest of the pass is still
    /// running.
    pub fn backward_with_ready_hook(&self, on_ready: &mut dyn FnMut(usize)) -> Result<()> {
        self.backward_inner(self.unit_seed()?, Some(on_ready))
    }

    fn backward_inner(
        &self,
        grad: Vec<T>,
        mut on_ready: Option<&mut dyn FnMut(usize)>,
    ) -> Result<()> {
        if grad.len() != self.numel() {
            return Err(TensorError::Backward(format!(
                "gradient has {} elements, tensor has shape {:?}",
                grad.len(),
                self.shape()
            )));
        }
        if !self.requires_grad() {
            return Err(TensorError::Backward(
                "tensor does not require grad (no input needs a gradient, or built under no_grad)"
                    .into(),
            ));
        }
        let _g = no_grad();
        if self.is_leaf() {
            self.accumulate_grad(grad);
            if let Some(f) = on_ready.as_mut() {
                f(self.id());
            }
            return Ok(());
        }
        let mut order = topo_order(&self.0)?;
        // with a hook: how many ops still have to hand each leaf its part of the gradient
        let mut pending: HashMap<usize, usize> = HashMap::new();
        if on_ready.is_some() {
            for t in &order {
                if let Some(n) = t.node.as_ref() {
                    if let Some(s) = n.saved().as_ref() {
                        for inp in grad_leaves(&s.inputs) {
                            *pending.entry(inp.id).or_insert(0) += 1;
                        }
                    }
                }
            }
        }
        let mut settle = |inputs: &[Arc<Inner<T>>], pending: &mut HashMap<usize, usize>| {
            if let Some(f) = on_ready.as_mut() {
                for inp in grad_leaves(inputs) {
                    if let Some(n) = pending.get_mut(&inp.id) {
                        *n -= 1;
                        if *n == 0 {
                            pending.remove(&inp.id);
                            f(inp.id);
                        }
                    }
                }
            }
        };
        let mut grads: HashMap<usize, Vec<T>> = HashMap::new();
        grads.insert(self.id(), grad);
        // reverse topological order; each tensor is let go of once its node has run
        while let Some(t) = order.pop() {
            let Some(node) = t.node.as_ref() else {
                continue;
            };
            let Some(saved) = node.saved().take() else {
                return Err(freed(node.op));
            };
            let Some(g) = grads.remove(&t.id) else {
                settle(&saved.inputs, &mut pending);
                continue;
            };
            let needs: Vec<bool> = saved.inputs.iter().map(|i| i.requires_grad()).collect();
            let gin = (saved.backward)(&g, &needs);
            drop(g);
            for (inp, gi) in saved.inputs.iter().zip(gin) {
                let Some(gi) = gi else { continue };
                if !inp.requires_grad() {
                    continue;
                }
                let want = crate::shape::numel(&inp.shape);
                if gi.len() != want {
                    return Err(TensorError::Backward(format!(
                        "backward of `{}` gave a gradient of {} elements for an input of shape {:?}",
                        node.op,
                        gi.len(),
                        inp.shape
                    )));
                }
                if inp.is_leaf() {
                    inp.accumulate_grad(gi);
                } else {
                    match grads.get_mut(&inp.id) {
                        Some(acc) => acc.iter_mut().zip(&gi).for_each(|(a, b)| *a += *b),
                        None => {
                            grads.insert(inp.id, gi);
                        }
                    }
                }
            }
            settle(&saved.inputs, &mut pending);
        }
        Ok(())
    }
}

/// The leaves among a node's inputs that take a gradient, once per edge.
fn grad_leaves<T: Float>(inputs: &[Arc<Inner<T>>]) -> impl Iterator<Item = &Arc<Inner<T>>> {
    inputs.iter().filter(|i| i.is_leaf() && i.requires_grad())
}

/// Op nodes reachable from `root`, in post-order (inputs before the ops that use them).
/// Iterative, so deep graphs (long unrolled RNNs) cannot overflow the stack.
fn topo_order<T: Float>(root: &Arc<Inner<T>>) -> Result<Vec<Arc<Inner<T>>>> {
    let mut order = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<(Arc<Inner<T>>, usize)> = vec![(root.clone(), 0)];
    seen.insert(root.id);
    while let Some((t, child)) = stack.pop() {
        let node = match t.node.as_ref() {
            Some(n) => n,
            None => continue,
        };
        let next = match node.saved().as_ref() {
            Some(s) => s.inputs.get(child).cloned(),
            None => return Err(freed(node.op)),
        };
        if let Some(next) = next {
            stack.push((t, child + 1));
            if next.node.is_some() && seen.insert(next.id) {
                stack.push((next, 0));
            }
        } else {
            order.push(t);
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    /// An op whose backward returns a gradient of the wrong size is an error in every build,
    /// not a debug assertion (in release it would have been added to a wrong-sized buffer).
    #[test]
    fn a_wrong_sized_gradient_is_an_error() {
        let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3])
            .unwrap()
            .requires_grad_(true);
        let y = Tensor::from_op(vec![6.0], vec![1], "bad_sum", &[&x], |_, _| {
            vec![Some(vec![1.0, 1.0])]
        });
        let err = y.backward().unwrap_err().to_string();
        assert!(
            err.contains("bad_sum") && err.contains("2 elements") && err.contains("[3]"),
            "{err}"
        );
        assert!(x.grad().is_none(), "no gradient is accumulated");

        // through an intermediate node too
        let h = x.mul_scalar(2.0);
        let y = Tensor::from_op(vec![12.0], vec![1], "bad_sum", &[&h], |_, _| {
            vec![Some(vec![1.0; 4])]
        });
        assert!(y.backward().is_err());
    }

    /// The ready hook reports each leaf once, when its gradient is whole: a weight read by two
    /// ops is reported after both have added their parts, the last layer's weight before the
    /// first's.
    #[test]
    fn ready_hook_reports_each_leaf_once_its_gradient_is_final() {
        let t = |v: Vec<f64>| {
            let n = v.len();
            Tensor::<f64>::from_vec(v, &[n])
                .unwrap()
                .requires_grad_(true)
        };
        let (w1, w2) = (t(vec![2.0, 3.0]), t(vec![5.0, 7.0]));
        let x = Tensor::<f64>::from_vec(vec![1.0, -1.0], &[2]).unwrap();
        // h = x * w1 * w1 (w1 read twice), y = sum(h * w2)
        let h = x.mul(&w1).unwrap().mul(&w1).unwrap();
        let y = h.mul(&w2).unwrap().sum();
        let mut seen = Vec::new();
        y.backward_with_ready_hook(&mut |id| {
            let g = [&w1, &w2]
                .iter()
                .find(|p| p.id() == id)
                .map(|p| p.grad().unwrap().to_vec());
            seen.push((id, g));
        })
        .unwrap();
        let ids: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            ids,
            vec![w2.id(), w1.id()],
            "each leaf once, the last layer's first"
        );
        // dy/dw1 = 2 x w1 w2, whole when reported
        assert_eq!(seen[1].1.as_deref(), Some(&[20.0, -42.0][..]));
        assert_eq!(seen[0].1.as_deref(), Some(&[4.0, -9.0][..]));
        assert_eq!(w1.grad().unwrap().to_vec(), vec![20.0, -42.0]);
    }
}
