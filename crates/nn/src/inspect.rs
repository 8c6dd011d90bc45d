//! Looking into a model from outside it: a per-layer summary (output shape, parameters,
//! multiply-adds, time) and the output of one sub-layer, for feature maps. Neither is part of the
//! [`Module`] trait: the containers ([`Sequential`](crate::Sequential), [`Concat`](crate::Concat))
//! run each child through [`call`], which reports it to the inspection running on this thread
//! (none, almost always: then it is a plain `forward`), and the multiply-adds come from the ops
//! themselves ([`aics_tensor::profile`]).
//!
//! A layer that a container runs is seen under its state-dict path (`features.3`,
//! `layer1.0`); the layers inside a struct's own forward (a ResNet block's convolutions) are
//! seen as that struct, with the sum of their multiply-adds, unless the struct is
//! `#[module(transparent)]`: then the containers among its fields are looked into, under their
//! keys (GoogLeNet's and Inception-v3's stages).

use std::cell::RefCell;

use aics_tensor::profile::count_macs;
use aics_tensor::Tensor;

use crate::error::Result;
use crate::module::{key, Kind, Module};

/// One row of a summary: a layer that no container inside it reported children for.
#[derive(Clone, Debug)]
pub struct SummaryRow {
    pub name: String,
    pub layer: String,
    pub output: Vec<usize>,
    pub params: usize,
    /// Parameters named `*weight` (the chapter counts weights and biases apart).
    pub weights: usize,
    pub macs: usize,
    /// Wall time of the layer's forward pass (of this one run: profile over several).
    pub seconds: f64,
}

enum Mode {
    Summary(Vec<SummaryRow>),
    Capture(String, Option<Tensor>),
}

struct Frame {
    path: String,
    /// The module's identity: a container recognises the frame it runs in by it.
    module: Identity,
    /// Whether a container is running its children in this frame.
    open: bool,
    had_child: bool,
    /// The container fields of a transparent module: (identity, key).
    transparent: Vec<(Identity, String)>,
}

impl Frame {
    fn new(path: String, m: &dyn Module) -> Frame {
        let mut transparent = Vec::new();
        m.transparent_children(&mut |k, c| transparent.push((addr(c), k.to_string())));
        Frame {
            path,
            module: addr(m),
            open: false,
            had_child: false,
            transparent,
        }
    }
}

/// A module's data address with its type name: a struct and its first field can share an
/// address, never a type as well.
type Identity = (usize, String);

fn addr(m: &dyn Module) -> Identity {
    (m as *const dyn Module as *const () as usize, m.type_name())
}

struct Inspection {
    mode: Mode,
    stack: Vec<Frame>,
}

thread_local! {
    static INSPECTION: RefCell<Option<Inspection>> = const { RefCell::new(None) };
}

/// Marks the children that `container` runs as seen by the inspection running on this thread:
/// when the container runs in the innermost frame (it was run through [`call`], or is the
/// model), or is a container field of that frame's transparent module. Otherwise (a container
/// inside a struct's own forward) its children run unseen. Containers hold the returned guard
/// while they run their children.
pub fn open(container: &dyn Module) -> OpenGuard {
    // (no inspection, the usual case: nothing to do, nothing computed)
    if INSPECTION.with(|i| i.borrow().is_none()) {
        return OpenGuard { state: None };
    }
    let a = addr(container);
    let pushed = INSPECTION.with(|i| {
        let mut i = i.borrow_mut();
        let ins = i.as_mut()?;
        let top = ins.stack.last_mut()?;
        if top.module == a && !top.open {
            top.open = true;
            return Some(false);
        }
        let field = top.transparent.iter().find(|(c, _)| *c == a)?.1.clone();
        top.had_child = true;
        let mut f = Frame::new(key(&top.path, &field), container);
        f.open = true;
        ins.stack.push(f);
        Some(true)
    });
    OpenGuard {
        state: pushed.map(|p| (p, a)),
    }
}

impl OpenGuard {
    /// Close with the container's output `y`: a capture at the path of a transparent module's
    /// field sees it.
    pub fn close(mut self, y: &Tensor) {
        if let Some((true, module)) = self.state.take() {
            let path = INSPECTION.with(|i| {
                let mut i = i.borrow_mut();
                let ins = i.as_mut()?;
                let f = ins.stack.pop_if(|f| f.module == module)?;
                Some(f.path)
            });
            if let Some(path) = path {
                found(&path, y);
            }
        }
    }
}

/// Closes what [`open`] opened (on error paths; [`OpenGuard::close`] otherwise).
pub struct OpenGuard {
    /// None: nothing opened; Some(false, ..): an existing frame was opened; Some(true, ..): a
    /// frame for a transparent module's field was pushed.
    state: Option<(bool, Identity)>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let Some((pushed, module)) = self.state.take() else {
            return;
        };
        INSPECTION.with(|i| {
            if let Some(ins) = i.borrow_mut().as_mut() {
                if pushed {
                    if ins.stack.last().is_some_and(|f| f.module == module) {
                        ins.stack.pop();
                    }
                } else if let Some(f) = ins.stack.last_mut().filter(|f| f.module == module) {
                    f.open = false;
                }
            }
        });
    }
}

/// Run child `name` of a container on `x`: `m.forward(x)`, reported to the inspection running
/// on this thread if the container's children are seen (see [`open`]). Containers call this
/// for each child instead of `forward`.
pub fn call(name: &str, m: &dyn Module, x: &Tensor) -> Result<Tensor> {
    let path = INSPECTION.with(|i| {
        let mut i = i.borrow_mut();
        let ins = i.as_mut()?;
        let parent = ins.stack.last_mut().filter(|f| f.open)?;
        parent.had_child = true;
        let path = key(&parent.path, name);
        ins.stack.push(Frame::new(path.clone(), m));
        Some(path)
    });
    let Some(path) = path else {
        return m.forward(x);
    };
    let t = std::time::Instant::now();
    let (y, macs) = count_macs(|| m.forward(x));
    let seconds = t.elapsed().as_secs_f64();
    let leaf = INSPECTION.with(|i| {
        let mut i = i.borrow_mut();
        i.as_mut()
            .and_then(|ins| ins.stack.pop())
            .is_some_and(|f| !f.had_child)
    });
    let y = y?;
    report(&path, m, &y, macs, seconds, leaf);
    Ok(y)
}

/// A module's trained parameters, and how many of them are in tensors named `*weight`.
pub fn param_counts(m: &dyn Module) -> (usize, usize) {
    let (mut params, mut weights) = (0, 0);
    m.visit("", &mut |k, t, kind| {
        if kind == Kind::Param {
            params += t.numel();
            if k.ends_with("weight") {
                weights += t.numel();
            }
        }
    });
    (params, weights)
}

fn row(path: &str, m: &dyn Module, y: &Tensor, macs: u64, seconds: f64) -> SummaryRow {
    let (params, weights) = param_counts(m);
    SummaryRow {
        name: path.to_string(),
        layer: m.type_name(),
        output: y.shape().to_vec(),
        params,
        weights,
        macs: macs as usize,
        seconds,
    }
}

fn report(path: &str, m: &dyn Module, y: &Tensor, macs: u64, seconds: f64, leaf: bool) {
    let summary = INSPECTION.with(|i| {
        matches!(
            i.borrow().as_ref().map(|ins| &ins.mode),
            Some(Mode::Summary(_))
        )
    });
    let r = (summary && leaf).then(|| row(path, m, y, macs, seconds));
    INSPECTION.with(|i| {
        if let Some(Mode::Summary(rows)) = i.borrow_mut().as_mut().map(|ins| &mut ins.mode) {
            rows.extend(r)
        }
    });
    found(path, y);
}

/// A capture of `path` sees `y`: the last layer to finish at a path is the outermost one it
/// names, and its output is the one kept.
fn found(path: &str, y: &Tensor) {
    INSPECTION.with(|i| {
        if let Some(Mode::Capture(want, found)) = i.borrow_mut().as_mut().map(|ins| &mut ins.mode) {
            if want == path {
                *found = Some(y.clone());
            }
        }
    });
}

/// Run `model` on `x` under `mode`. The inspection ends with the run, also on error or unwind,
/// and one already running on this thread (an inspection inside a layer) is put back.
fn inspect(model: &dyn Module, x: &Tensor, mode: Mode) -> (Result<Tensor>, Inspection, u64) {
    struct Restore(Option<Option<Inspection>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                INSPECTION.with(|i| *i.borrow_mut() = outer);
            }
        }
    }
    let fresh = Inspection {
        mode,
        stack: vec![Frame::new(String::new(), model)],
    };
    let _restore = Restore(Some(INSPECTION.with(|i| i.borrow_mut().replace(fresh))));
    let t = std::time::Instant::now();
    let (y, macs) = count_macs(|| model.forward(x));
    let seconds = t.elapsed().as_secs_f64();
    let mut ins = INSPECTION
        .with(|i| i.borrow_mut().take())
        .unwrap_or(Inspection {
            mode: Mode::Capture(String::new(), None),
            stack: Vec::new(),
        });
    // a model that no container reported children for is one row itself
    let root_leaf = ins.stack.first().is_some_and(|f| !f.had_child);
    if let (Ok(y), Mode::Summary(rows), true) = (&y, &mut ins.mode, root_leaf) {
        rows.push(row("", model, y, macs, seconds));
    }
    (y, ins, macs)
}

/// A model's summary: its layers, and totals.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The layers run, in the order they finish.
    pub rows: Vec<SummaryRow>,
    /// Multiply-adds of the whole forward pass.
    pub macs: u64,
    /// Every trained parameter, also of parts that did not run (GoogLeNet's auxiliary heads
    /// in eval mode), and those in `*weight` tensors.
    pub params: usize,
    pub weights: usize,
}

/// The layers of `model` run on `x` (name (state-dict path), type, output shape, parameters,
/// weights and multiply-adds) and the model's totals, from one forward pass. Run it under
/// `no_grad` and in eval mode for an inference summary.
pub fn summary(model: &dyn Module, x: &Tensor) -> Result<Summary> {
    let (y, ins, macs) = inspect(model, x, Mode::Summary(Vec::new()));
    y?;
    let (params, weights) = param_counts(model);
    Ok(Summary {
        rows: match ins.mode {
            Mode::Summary(rows) => rows,
            Mode::Capture(..) => Vec::new(),
        },
        macs,
        params,
        weights,
    })
}

/// The model's output on `x`, and the output of the layer at `path` (its state-dict path, as
/// `features.3` or `layer2`), if a container runs one there.
pub fn capture(model: &dyn Module, x: &Tensor, path: &str) -> Result<(Tensor, Option<Tensor>)> {
    let (y, ins, _) = inspect(model, x, Mode::Capture(path.to_string(), None));
    let found = match ins.mode {
        Mode::Capture(_, found) => found,
        Mode::Summary(_) => None,
    };
    Ok((y?, found))
}
