//! Arithmetic operators, as in PyTorch: `&a + &b`, `&a * &b`, `&a - &b`, `&a / &b` with
//! broadcasting, `-&a`, and scalars on the right (`&a * 2.0`, `&a + 1.0`). Owned tensors work
//! too (`a + b`); a `Tensor` is a cheap handle, so `&` only saves a reference count.
//!
//! Like ndarray's operators, these **panic** when the shapes cannot be broadcast, with both
//! shapes in the message; the methods (`a.add(&b)`, `a.mul(&b)`, …) return the same error as a
//! `Result` instead.
//!
//! ```
//! use aics_tensor::Tensor;
//! let a = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let b = Tensor::<f32>::from_vec(vec![10.0, 20.0], &[2]).unwrap();
//! let y = (&a + &b) * 2.0 - &a; // (a + b)·2 − a, b broadcast over the rows
//! assert_eq!(y.to_vec(), vec![21.0, 42.0, 23.0, 44.0]);
//! assert_eq!((-&a / 2.0).to_vec(), vec![-0.5, -1.0, -1.5, -2.0]);
//! assert!(a.add(&Tensor::zeros(&[3])).is_err()); // the method form returns the error
//! ```

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::dtype::Float;
use crate::tensor::Tensor;

macro_rules! tensor_op {
    ($Trait:ident, $method:ident) => {
        impl<T: Float> $Trait<&Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            /// Panics, naming both shapes, when they cannot be broadcast.
            #[track_caller]
            fn $method(self, rhs: &Tensor<T>) -> Tensor<T> {
                Tensor::$method(self, rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
        impl<T: Float> $Trait<Tensor<T>> for Tensor<T> {
            type Output = Tensor<T>;
            #[track_caller]
            fn $method(self, rhs: Tensor<T>) -> Tensor<T> {
                $Trait::$method(&self, &rhs)
            }
        }
        impl<T: Float> $Trait<&Tensor<T>> for Tensor<T> {
            type Output = Tensor<T>;
            #[track_caller]
            fn $method(self, rhs: &Tensor<T>) -> Tensor<T> {
                $Trait::$method(&self, rhs)
            }
        }
        impl<T: Float> $Trait<Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            #[track_caller]
            fn $method(self, rhs: Tensor<T>) -> Tensor<T> {
                $Trait::$method(self, &rhs)
            }
        }
    };
}

tensor_op!(Add, add);
tensor_op!(Sub, sub);
tensor_op!(Mul, mul);
tensor_op!(Div, div);

macro_rules! scalar_op {
    ($Trait:ident, $method:ident, |$t:ident, $s:ident| $body:expr) => {
        impl<T: Float> $Trait<f64> for &Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, $s: f64) -> Tensor<T> {
                let $t = self;
                $body
            }
        }
        impl<T: Float> $Trait<f64> for Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, s: f64) -> Tensor<T> {
                $Trait::$method(&self, s)
            }
        }
    };
}

scalar_op!(Add, add, |t, s| t.add_scalar(s));
scalar_op!(Sub, sub, |t, s| t.add_scalar(-s));
scalar_op!(Mul, mul, |t, s| t.mul_scalar(s));
scalar_op!(Div, div, |t, s| t.mul_scalar(1.0 / s));

impl<T: Float> Neg for &Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(self)
    }
}

impl<T: Float> Neg for Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(&self)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn operators_are_the_methods_and_differentiate() {
        let a = Tensor::<f64>::from_vec(vec![1.0, -2.0, 3.0, 0.5, 2.0, -1.0], &[2, 3])
            .unwrap()
            .requires_grad_(true);
        let b = Tensor::<f64>::from_vec(vec![2.0, 4.0, -0.5], &[3])
            .unwrap()
            .requires_grad_(true);
        let y = (&a * &b + &a / &b - -&b) * 3.0 - 1.0;
        let want = a
            .mul(&b)
            .unwrap()
            .add(&a.div(&b).unwrap())
            .unwrap()
            .sub(&b.neg())
            .unwrap()
            .mul_scalar(3.0)
            .add_scalar(-1.0);
        assert_eq!(y.to_vec(), want.to_vec());
        y.sum().backward().unwrap();
        // d/da Σ 3(ab + a/b + b) = 3(b + 1/b), summed over nothing; d/db = Σ_rows 3(a − a/b² + 1)
        let ga = a.grad().unwrap().to_vec();
        let gb = b.grad().unwrap().to_vec();
        let (av, bv) = (a.to_vec(), b.to_vec());
        for i in 0..6 {
            let bj = bv[i % 3];
            assert!((ga[i] - 3.0 * (bj + 1.0 / bj)).abs() < 1e-12);
        }
        for j in 0..3 {
            let w: f64 = (0..2)
                .map(|r| 3.0 * (av[r * 3 + j] - av[r * 3 + j] / (bv[j] * bv[j]) + 1.0))
                .sum();
            assert!((gb[j] - w).abs() < 1e-12);
        }
    }

    #[test]
    #[should_panic(expected = "[2, 3]")]
    fn a_shape_error_panics_with_both_shapes() {
        let _ = Tensor::<f32>::zeros(&[2, 3]) + Tensor::<f32>::zeros(&[4]);
    }
}
