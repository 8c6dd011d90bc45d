//! Element types. Tensors hold `f32` for training and inference, `f64` for gradient checks
//! (finite differences in f32 are too noisy to catch a wrong backward).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// The name of an element type, as it appears in checkpoints and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }
}

/// A floating-point element type: `f32` or `f64`.
pub trait Float:
    num_traits::Float
    + Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Display
    + Default
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
    /// `exp`, as a branch-free polynomial for `f32` (within 2 ulp; vectorizes in a loop), exact
    /// (the library's) for `f64`.
    #[inline(always)]
    fn fast_exp(self) -> Self {
        self.exp()
    }
    /// `tanh` from [`Float::fast_exp`] for `f32` (absolute error below 1e-7), the library's
    /// for `f64`.
    #[inline(always)]
    fn fast_tanh(self) -> Self {
        self.tanh()
    }
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn fast_exp(self) -> Self {
        // e^x = 2^n · e^r, n = round(x / ln 2), |r| ≤ ln 2 / 2; e^r by its Taylor series to r^6
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
        let x = self.clamp(-80.0, 80.0);
        let n = (x * LOG2E + ROUND) - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        p * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn fast_tanh(self) -> Self {
        // tanh |x| = (1 − e^{−2|x|}) / (1 + e^{−2|x|}), sign restored
        let t = (-2.0 * self.abs()).fast_exp();
        ((1.0 - t) / (1.0 + t)).copysign(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
}
