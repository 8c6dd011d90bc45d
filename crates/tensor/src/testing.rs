//! Comparing computed values with reference values, as `torch.testing.assert_close` does:
//! `|got − want| ≤ atol + rtol·|want|`, element by element. Every parity and gradient check in
//! the workspace goes through here, so that one rule holds everywhere: **a non-finite value on
//! either side is a failure**, never a pass. (A check written `if err > tol { fail }` passes on
//! NaN, since every comparison with NaN is false; a `max` over errors drops NaN the same way.)
//!
//! ```
//! use aics_tensor::testing::{assert_close, compare, Tol};
//! assert_close("y", &[1.0f32, 2.0], &[1.0f64, 2.0 + 1e-7], Tol::new(1e-6, 1e-6));
//! assert!(compare(&[f32::NAN], &[0.0f64], Tol::new(1.0, 1.0)).is_err());
//! ```

use std::fmt;

use crate::dtype::Float;

/// Absolute and relative tolerance: an element passes when `|got − want| ≤ atol + rtol·|want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl Tol {
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Tol { atol, rtol }
    }
    /// `|got − want| ≤ tol·(1 + |want|)`: absolute near zero, relative for large values.
    pub const fn mixed(tol: f64) -> Self {
        Tol {
            atol: tol,
            rtol: tol,
        }
    }
    /// `|got − want| ≤ rel·max|want|`: errors measured against the largest reference value, for
    /// outputs (logits, losses, images) whose small entries carry no meaning of their own.
    pub fn scaled<B: Float>(rel: f64, want: &[B]) -> Self {
        let scale = want.iter().map(|w| w.as_f64().abs()).fold(0.0f64, nan_max);
        Tol {
            atol: rel * scale,
            rtol: 0.0,
        }
    }
}

/// Whether one value is within tolerance; false when either is NaN or infinite.
pub fn within(got: f64, want: f64, tol: Tol) -> bool {
    got.is_finite() && want.is_finite() && (got - want).abs() <= tol.atol + tol.rtol * want.abs()
}

/// `max(a, b)`, but NaN when either is NaN (`f64::max` drops NaN): for worst-error summaries.
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The largest errors of a comparison that passed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    /// max |got − want|
    pub max_abs: f64,
    /// max |got − want| / max(|want|, 1)
    pub max_rel: f64,
    /// elements compared
    pub count: usize,
}

/// Why a comparison failed: the first offending element, or a length mismatch.
#[derive(Clone, Debug, PartialEq)]
pub enum Mismatch {
    Len {
        got: usize,
        want: usize,
    },
    Value {
        index: usize,
        got: f64,
        want: f64,
        tol: Tol,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Len { got, want } => write!(f, "{got} values, expected {want}"),
            Mismatch::Value {
                index,
                got,
                want,
                tol,
            } if !got.is_finite() || !want.is_finite() => write!(
                f,
                "[{index}]: got {got}, expected {want} (a non-finite value always fails; atol {}, rtol {})",
                tol.atol, tol.rtol
            ),
            Mismatch::Value {
                index,
                got,
                want,
                tol,
            } => write!(
                f,
                "[{index}]: got {got}, expected {want}: error {:e} > {:e} (atol {}, rtol {})",
                (got - want).abs(),
                tol.atol + tol.rtol * want.abs(),
                tol.atol,
                tol.rtol
            ),
        }
    }
}

impl std::error::Error for Mismatch {}

/// Compare `got` with `want` element by element (same length). The first element that is
/// non-finite on either side or out of tolerance fails the comparison.
pub fn compare<A: Float, B: Float>(got: &[A], want: &[B], tol: Tol) -> Result<Report, Mismatch> {
    if got.len() != want.len() {
        return Err(Mismatch::Len {
            got: got.len(),
            want: want.len(),
        });
    }
    if !(tol.atol >= 0.0 && tol.rtol >= 0.0) {
        // a NaN tolerance (e.g. from a NaN in `Tol::scaled`) fails too
        return Err(Mismatch::Value {
            index: 0,
            got: got.first().map_or(f64::NAN, |g| g.as_f64()),
            want: f64::NAN,
            tol,
        });
    }
    let mut r = Report {
        count: got.len(),
        ..Report::default()
    };
    for (index, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_f64(), w.as_f64());
        if !within(g, w, tol) {
            return Err(Mismatch::Value {
                index,
                got: g,
                want: w,
                tol,
            });
        }
        let err = (g - w).abs();
        r.max_abs = r.max_abs.max(err);
        r.max_rel = r.max_rel.max(err / w.abs().max(1.0));
    }
    Ok(r)
}

/// [`compare`], panicking with `what` and the first mismatch.
#[track_caller]
pub fn assert_close<A: Float, B: Float>(what: &str, got: &[A], want: &[B], tol: Tol) -> Report {
    match compare(got, want, tol) {
        Ok(r) => r,
        Err(m) => panic!("{what}: {m}"),
    }
}

/// [`assert_close`] for one value.
#[track_caller]
pub fn assert_close_one(what: &str, got: f64, want: f64, tol: Tol) -> Report {
    assert_close(what, &[got], &[want], tol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_fail_on_either_side() {
        let tol = Tol::new(1e9, 1e9);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(compare(&[1.0, bad], &[1.0, 1.0], tol).is_err(), "got {bad}");
            assert!(
                compare(&[1.0, 1.0], &[1.0, bad], tol).is_err(),
                "want {bad}"
            );
            assert!(compare(&[bad], &[bad], tol).is_err(), "both {bad}");
            assert!(!within(bad, 0.0, tol));
        }
        // and a NaN in the reference poisons a scaled tolerance instead of being dropped
        assert!(compare(
            &[1.0, 2.0],
            &[1.0, f64::NAN],
            Tol::scaled(0.1, &[1.0, f64::NAN])
        )
        .is_err());
    }

    #[test]
    fn tolerance_is_atol_plus_rtol_times_want() {
        let tol = Tol::new(0.1, 0.01);
        assert!(compare(&[10.19f64], &[10.0f64], tol).is_ok());
        assert!(compare(&[10.21f64], &[10.0f64], tol).is_err());
        assert!(compare(&[1.0f32, 2.0], &[1.0f64], tol).is_err(), "lengths");
        let r = compare(&[1.5f64, -2.0], &[1.0f64, -2.0], Tol::mixed(1.0)).unwrap();
        assert_eq!((r.max_abs, r.max_rel, r.count), (0.5, 0.5, 2));
    }

    /// An op whose output and gradient are NaN fails the gradient check (before, `err > tol`
    /// was false for NaN, so it passed).
    #[test]
    fn gradcheck_fails_an_op_that_returns_nan() {
        use crate::gradcheck::gradcheck;
        use crate::Tensor;
        let x = Tensor::<f64>::from_vec(vec![-1.0, -2.0, 0.5], &[3]).unwrap();
        let r = gradcheck(&|t| Ok(t[0].sqrt()), &[x.copy()], &[true], 1).unwrap();
        assert!(!r.passed && r.max_abs_err.is_nan(), "{r:?}");
        // an op that is fine passes, so the check is not failing everything
        let r = gradcheck(&|t| Ok(t[0].square()), &[x], &[true], 1).unwrap();
        assert!(r.passed, "{r:?}");
    }

    #[test]
    #[should_panic(expected = "logits: [2]: got NaN")]
    fn assert_close_names_the_first_mismatch() {
        assert_close(
            "logits",
            &[0.0f32, 1.0, f32::NAN],
            &[0.0f64, 1.0, 2.0],
            Tol::mixed(1e-3),
        );
    }
}
