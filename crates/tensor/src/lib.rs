//! aics-tensor: n-dimensional `f32`/`f64` tensors on the CPU, reverse-mode autograd, and the
//! operators of classic CNNs with their backward passes (PyTorch semantics throughout).
//!
//! ```
//! use aics_tensor::Tensor;
//! let x = Tensor::<f32>::from_vec(vec![1.0, -2.0, 3.0], &[3]).unwrap().requires_grad_(true);
//! let y = x.relu().sum();
//! y.backward().unwrap();
//! assert_eq!(x.grad().unwrap().to_vec(), vec![1.0, 0.0, 1.0]);
//! ```

pub mod autograd;
pub mod cpu;
pub mod dtype;
pub mod error;
pub mod gradcheck;
pub mod ops;
pub mod profile;
pub mod rng;
pub mod shape;
pub mod tensor;
pub mod testing;
pub mod trace;

pub use autograd::{grad_enabled, no_grad, NoGradGuard};
pub use cpu::packed::PackedWeights;
pub use dtype::{DType, Float};
pub use error::{Result, TensorError};
pub use ops::conv::{Activation, ConvParams};
pub use ops::norm::GroupStats;
pub use ops::pool::PoolParams;
pub use ops::recurrent::{Cell, RecurrentOpts, RecurrentOut};
pub use ops::upsample::Interp;
pub use rng::{hash_fill, hash_uniform, Rng};
pub use tensor::{Device, Tensor};

/// Set the number of worker threads for all kernels (call once, before any work). The workers
/// flush subnormal numbers to zero ([`flush_denormals`]), and have a main thread's stack
/// (8 MiB), so that a program may run its work on one of them.
pub fn set_num_threads(n: usize) -> std::result::Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .stack_size(8 << 20)
        .start_handler(|_| flush_denormals())
        .build_global()
        .map_err(|e| e.to_string())
}

/// Treat subnormal floats as zero on this thread, as inputs and as results (x86's FTZ and DAZ
/// flags; elsewhere nothing). A saturated gate multiplies gradients down into the subnormal
/// range, where every arithmetic instruction that meets them takes a slow microcode path; an
/// LSTM with peepholes trained ten times slower after 50 steps without this. Values below
/// 1.2e-38 become 0.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes this thread's MXCSR through a local; only the FTZ (bit 15) and
    // DAZ (bit 6) flags change, which affect rounding of subnormal values and nothing else.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
}

/// The number of worker threads kernels use.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
