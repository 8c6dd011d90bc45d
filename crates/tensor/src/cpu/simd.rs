//! Runtime choice of vector instructions for the kernels written here (the GEMM crate makes its
//! own). The binary is built for the baseline x86-64 (SSE2), so a hot loop gets AVX2 + FMA or
//! AVX-512 only when it runs inside [`with_best`], which calls it through a function compiled for
//! the best instruction set this CPU has. The closure passed and the loop's own functions must
//! be `#[inline(always)]` so that they are compiled into that function (else they stay SSE2 and
//! `mul_add` becomes a library call): `with_best(#[inline(always)] || kernel(..))`.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Base,
    Avx2,
    Avx512,
}

fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Base
    })
}

/// Whether fused multiply-add is an instruction here (else `mul_add` is a slow library call,
/// and kernels multiply and add instead).
pub(crate) fn has_fma() -> bool {
    level() != Level::Base
}

/// Run `f` compiled for the best vector instructions available.
#[inline(always)]
pub(crate) fn with_best<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: the CPU has these features (checked by `level`).
        Level::Avx512 => return unsafe { avx512(f) },
        // SAFETY: as above, for AVX2 and FMA.
        Level::Avx2 => return unsafe { avx2(f) },
        Level::Base => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
