//! Runtime choice of vector instructions for the kernels written here (the GEMM crate makes its
//! own). The binary is built for the baseline x86-64 (SSE2), so a hot loop gets AVX2 + FMA or
//! AVX-512 only when it runs inside [`with_best`], which calls it through a function compiled for
//! the best instruction set this CPU has. The closure passed and the loop's own functions must
//! be `#[inline(always)]` so that they are compiled into that function (else they stay SSE2 and
//! `mul_add` becomes a library call): `with_best(#[inline(always)] || kernel(..))`.
//! The environment variable `AICS_SIMD=avx2` (or `base`) caps the choice, so that tests on an
//! AVX-512 machine also run the AVX2 code.

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
        let best = detected();
        // AICS_SIMD=avx2 or base caps the level (to test the narrower paths on a wider CPU)
        match std::env::var("AICS_SIMD").as_deref() {
            Ok("base") => Level::Base,
            Ok("avx2") if best == Level::Avx512 => Level::Avx2,
            _ => best,
        }
    })
}

/// The vector instructions this kernel code uses (`"avx512"`, `"avx2"` or `"base"`), after the
/// `AICS_SIMD` cap.
pub fn level_name() -> &'static str {
    match level() {
        Level::Avx512 => "avx512",
        Level::Avx2 => "avx2",
        Level::Base => "base",
    }
}

/// The best level this CPU has.
fn detected() -> Level {
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

/// The measured peak of fused multiply-adds on every thread of the pool at once, in GFLOP/s
/// (2 FLOPs an FMA), for each vector width this CPU has: `("avx2", …)` with 256-bit registers and
/// `("avx512", …)` with 512-bit ones. Each thread runs 12 independent chains of FMAs, enough to
/// cover the instruction's latency on both of its pipes, for about `seconds`.
pub fn fma_peak(seconds: f64) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        // the hardware's peak, whatever AICS_SIMD says
        let lvl = detected();
        if lvl != Level::Base {
            // SAFETY: AVX2 and FMA are present (checked by `level`).
            out.push((
                "avx2",
                measure(seconds, 12 * 8, |n| unsafe { fma_chains_256(n) }),
            ));
        }
        if lvl == Level::Avx512 {
            // SAFETY: AVX-512F is present (checked by `level`).
            out.push((
                "avx512",
                measure(seconds, 12 * 16, |n| unsafe { fma_chains_512(n) }),
            ));
        }
    }
    let _ = seconds;
    out
}

/// GFLOP/s of `f(iters)` run on every pool thread at once, `fmas` FMAs an iteration.
#[cfg(target_arch = "x86_64")]
fn measure(seconds: f64, fmas: usize, f: impl Fn(u64) -> f32 + Sync) -> f64 {
    use std::time::Instant;
    let threads = rayon::current_num_threads();
    let run = |iters: u64| {
        let t = Instant::now();
        let sink: f32 = rayon::broadcast(|_| f(iters)).iter().sum();
        std::hint::black_box(sink);
        t.elapsed().as_secs_f64()
    };
    // calibrate to about a tenth of the time, then take the best of a few runs
    let mut iters = 1u64 << 16;
    while run(iters) < seconds / 10.0 && iters < 1 << 34 {
        iters *= 2;
    }
    let best = (0..10).map(|_| run(iters)).fold(f64::INFINITY, f64::min);
    (threads as f64 * iters as f64 * fmas as f64 * 2.0) / best / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_256(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let b = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut a = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in a.iter_mut() {
            *v = _mm256_fmadd_ps(*v, b, c);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in a {
        s = _mm256_add_ps(s, v);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let b = _mm512_set1_ps(0.999_999);
    let c = _mm512_set1_ps(1e-7);
    let mut a = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in a.iter_mut() {
            *v = _mm512_fmadd_ps(*v, b, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in a {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}
