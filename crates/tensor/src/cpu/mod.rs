//! CPU kernels. Plain functions on contiguous slices with sizes passed in; no autograd, no
//! shape validation (callers in `crate::ops` validate once). Fast kernels sit beside the naive
//! loop nests they are tested against.

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod pool;
pub mod winograd;

/// Work below this many elements runs on one thread: rayon's fork/join costs more than it saves.
pub const PAR_THRESHOLD: usize = 1 << 15;
