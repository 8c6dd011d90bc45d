//! CPU kernels. Plain functions on contiguous slices with sizes passed in; no autograd, no
//! shape validation (callers in `crate::ops` validate once). Fast kernels sit beside the naive
//! loop nests they are tested against.

pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod gemm;
pub mod pool;
pub mod winograd;

/// Work below this many elements runs on one thread: rayon's fork/join costs more than it saves.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// A raw output pointer shared by parallel tasks that write disjoint elements (each use
/// states why its writes are disjoint).
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}
