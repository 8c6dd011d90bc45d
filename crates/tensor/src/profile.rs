//! Counting the multiply-adds of the ops a computation runs, op by op: convolutions, transposed
//! convolutions, `linear`, `matmul` and `gram` report theirs while a count is open on the calling
//! thread. Elementwise ops, pooling and normalisation count none.
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
