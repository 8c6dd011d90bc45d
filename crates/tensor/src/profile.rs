//! Counting the multiply-adds of the ops a computation runs, op by op: convolutions, transposed
//! convolutions, `linear`, `matmul` and `gram` report theirs while a count is open on the calling
//! thread. Elementwise ops, pooling and normalisation count none. [`record_ops`] times the
//! convolutions one by one, with the kernel each ran on.
//!
//! ```
//! use aics_tensor::{profile::count_macs, Tensor};
//! let x = Tensor::<f32>::ones(&[4, 3]);
//! let w = Tensor::<f32>::ones(&[5, 3]);
//! let (y, macs) = count_macs(|| x.linear(&w, None));
//! assert_eq!((y.unwrap().shape(), macs), (&[4, 5][..], 4 * 5 * 3));
//! ```

use std::cell::Cell;

thread_local! {
    static MACS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Run `f` and count the multiply-adds of the ops it runs on this thread. Counts nest: an
/// outer count includes what inner counts saw.
pub fn count_macs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let outer = MACS.with(|m| m.replace(Some(0)));
    // restores the outer count even if `f` unwinds
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let inner = MACS.with(|m| m.get()).unwrap_or(0);
            MACS.with(|m| m.set(self.0.map(|o| o + inner)));
        }
    }
    let restore = Restore(outer);
    let r = f();
    let n = MACS.with(|m| m.get()).unwrap_or(0);
    drop(restore);
    (r, n)
}

/// Report `n` multiply-adds of the op running now (a no-op when no count is open).
pub(crate) fn add_macs(n: usize) {
    MACS.with(|m| {
        if let Some(v) = m.get() {
            m.set(Some(v + n as u64));
        }
    });
}

/// One op timed while a [`record_ops`] is open: its name, what it ran on and by which kernel,
/// its multiply-adds and its wall time.
#[derive(Clone, Debug)]
pub struct OpRecord {
    pub op: &'static str,
    pub detail: String,
    pub macs: u64,
    pub seconds: f64,
}

thread_local! {
    static OPS: std::cell::RefCell<Option<Vec<OpRecord>>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` and return the timed ops it ran on this thread (the convolutions), in order.
pub fn record_ops<R>(f: impl FnOnce() -> R) -> (R, Vec<OpRecord>) {
    let outer = OPS.with(|o| o.replace(Some(Vec::new())));
    struct Restore(Option<Option<Vec<OpRecord>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                OPS.with(|o| *o.borrow_mut() = outer);
            }
        }
    }
    let restore = Restore(Some(outer));
    let r = f();
    let ops = OPS.with(|o| o.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (r, ops)
}

/// Whether ops are being recorded on this thread (ops time themselves only then).
pub(crate) fn recording() -> bool {
    OPS.with(|o| o.borrow().is_some())
}

/// Record an op that ran (a no-op when nothing is recording).
pub(crate) fn push_op(op: &'static str, detail: impl FnOnce() -> String, macs: u64, seconds: f64) {
    OPS.with(|o| {
        if let Some(v) = o.borrow_mut().as_mut() {
            v.push(OpRecord {
                op,
                detail: detail(),
                macs,
                seconds,
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::count_macs;
    use crate::{ConvParams, Tensor};

    #[test]
    fn counts_nest_and_cover_the_macs_ops() {
        let x = Tensor::<f32>::ones(&[2, 3, 8, 8]);
        let w = Tensor::<f32>::ones(&[4, 3, 3, 3]);
        let ((), outer) = count_macs(|| {
            let (_, inner) = count_macs(|| x.conv2d(&w, None, ConvParams::default().padding(1)));
            assert_eq!(inner, 2 * 4 * 64 * 27);
            let a = Tensor::<f32>::ones(&[2, 5, 6]);
            let b = Tensor::<f32>::ones(&[2, 6, 7]);
            let (_, mm) = count_macs(|| a.matmul(&b));
            assert_eq!(mm, 2 * 5 * 7 * 6);
            let _ = x.relu(); // counts nothing
        });
        assert_eq!(outer, 2 * 4 * 64 * 27 + 2 * 5 * 7 * 6);
        // nothing is counted outside a count
        let (_, none) = count_macs(|| ());
        assert_eq!(none, 0);
    }
}
