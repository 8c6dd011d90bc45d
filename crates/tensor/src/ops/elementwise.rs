//! Elementwise ops with broadcasting (add, sub, mul, div, maximum), scalar ops, and unary maps
//! with their derivatives (relu, leaky relu, tanh, sigmoid, exp, log, sqrt, pow, abs, clamp).

use std::sync::Arc;

use crate::cpu::elementwise as k;
use crate::dtype::Float;
use crate::error::Result;
use crate::shape::{broadcast_shape, broadcast_strides, strides};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl Bin {
    fn name(self) -> &'static str {
        match self {
            Bin::Add => "add",
            Bin::Sub => "sub",
            Bin::Mul => "mul",
            Bin::Div => "div",
            Bin::Max => "maximum",
            Bin::Min => "minimum",
        }
    }
    #[inline(always)]
    fn apply<T: Float>(self, x: T, y: T) -> T {
        match self {
            Bin::Add => x + y,
            Bin::Sub => x - y,
            Bin::Mul => x * y,
            Bin::Div => x / y,
            // PyTorch's maximum/minimum: a NaN on either side is the result
            Bin::Max => {
                if x.is_nan() || y.is_nan() {
                    T::nan()
                } else if x >= y {
                    x
                } else {
                    y
                }
            }
            Bin::Min => {
                if x.is_nan() || y.is_nan() {
                    T::nan()
                } else if x <= y {
                    x
                } else {
                    y
                }
            }
        }
    }
}

/// The share of the upstream gradient that `maximum(x, y)` (or `minimum`) passes to `x`:
/// all of it where x wins, none where it loses, half at a tie (PyTorch's rule), and all of it
/// where either is NaN (neither wins nor ties). `y`'s share is `share(y, x)`.
fn share<T: Float>(op: Bin, x: T, y: T) -> T {
    let loses = match op {
        Bin::Max => x < y,
        _ => x > y,
    };
    if x == y {
        T::from_f64(0.5)
    } else if loses {
        T::zero()
    } else {
        T::one()
    }
}

fn binary<T: Float>(a: &Tensor<T>, b: &Tensor<T>, op: Bin) -> Result<Tensor<T>> {
    let top = match op {
        Bin::Add => Op::Add,
        Bin::Sub => Op::Sub,
        Bin::Mul => Op::Mul,
        Bin::Div => Op::Div,
        Bin::Max => Op::Maximum,
        Bin::Min => Op::Minimum,
    };
    trace::recorded(|| top, &[a, b], binary_impl(a, b, op))
}

fn binary_impl<T: Float>(a: &Tensor<T>, b: &Tensor<T>, op: Bin) -> Result<Tensor<T>> {
    let out_shape = broadcast_shape(a.shape(), b.shape(), op.name())?;
    let (ad, bd) = (a.data(), b.data());
    // one monomorphic kernel per op, so the inner loops vectorise
    macro_rules! run {
        ($f:expr) => {
            if a.shape() == b.shape() {
                k::zip_map(&ad, &bd, $f)
            } else {
                let sa = broadcast_strides(a.shape(), &out_shape);
                let sb = broadcast_strides(b.shape(), &out_shape);
                k::broadcast_map(&ad, &sa, &bd, &sb, &out_shape, $f)
            }
        };
    }
    let data = match op {
        Bin::Add => run!(|x: T, y: T| x + y),
        Bin::Sub => run!(|x: T, y: T| x - y),
        Bin::Mul => run!(|x: T, y: T| x * y),
        Bin::Div => run!(|x: T, y: T| x / y),
        Bin::Max | Bin::Min => run!(|x: T, y: T| op.apply(x, y)),
    };
    let (ash, bsh, osh) = (a.shape().to_vec(), b.shape().to_vec(), out_shape.clone());
    // The node keeps only the operands its backward reads: none for add and sub; for mul and
    // div, the other factor of each input that needs a gradient (and a for div's ∂/∂b).
    let (ra, rb) = (a.requires_grad(), b.requires_grad());
    let (keep_a, keep_b) = match op {
        Bin::Add | Bin::Sub => (false, false),
        Bin::Mul => (rb, ra),
        Bin::Div => (rb, ra || rb),
        Bin::Max | Bin::Min => (true, true),
    };
    let ad = keep_a.then_some(ad);
    let bd = keep_b.then_some(bd);
    Ok(Tensor::from_op(
        data,
        out_shape,
        op.name(),
        &[a, b],
        move |g, needs| {
            // Each input's gradient: g * d(out)/d(input), computed in the output shape, then summed
            // back over the dimensions that were broadcast.
            let os = strides(&osh);
            let sa = broadcast_strides(&ash, &osh);
            let sb = broadcast_strides(&bsh, &osh);
            let with = |other: &[T], so: &[usize], f: &(dyn Fn(T, T) -> T + Sync + Send)| {
                k::broadcast_map(g, &os, other, so, &osh, f)
            };
            // kept operands (present whenever the gradient that reads them is needed)
            let (av, bv): (&[T], &[T]) = (
                ad.as_deref().map_or(&[], |v| v),
                bd.as_deref().map_or(&[], |v| v),
            );
            // (an input that did not require grad when the op ran has nothing kept for it)
            let ga = (needs[0] && ra).then(|| {
                let full = match op {
                    Bin::Add | Bin::Sub => g.to_vec(),
                    Bin::Mul => with(bv, &sb, &|g, y| g * y),
                    Bin::Div => with(bv, &sb, &|g, y| g / y),
                    Bin::Max | Bin::Min => {
                        let s = k::broadcast_map(av, &sa, bv, &sb, &osh, |x, y| share(op, x, y));
                        k::zip_map(g, &s, |g, s| g * s)
                    }
                };
                k::reduce_to_shape(&full, &osh, &ash)
            });
            let gb = (needs[1] && rb).then(|| {
                let full = match op {
                    Bin::Add => g.to_vec(),
                    Bin::Sub => g.iter().map(|&v| -v).collect(),
                    Bin::Mul => with(av, &sa, &|g, x| g * x),
                    Bin::Div => {
                        let q = k::broadcast_map(av, &sa, bv, &sb, &osh, |x, y| -x / (y * y));
                        k::zip_map(g, &q, |g, q| g * q)
                    }
                    Bin::Max | Bin::Min => {
                        let s = k::broadcast_map(av, &sa, bv, &sb, &osh, |x, y| share(op, y, x));
                        k::zip_map(g, &s, |g, s| g * s)
                    }
                };
                k::reduce_to_shape(&full, &osh, &bsh)
            });
            vec![ga, gb]
        },
    ))
}

/// What a unary op's backward reads: only what is named here is kept for it.
#[derive(Clone, Copy)]
enum Saves {
    Nothing,
    Input,
    Output,
}

/// `y = f(x)` elementwise, with `dy/dx = df(x, y)`; `df` is given zero for whichever of `x`, `y`
/// is not in `saves`.
fn unary<T: Float>(
    x: &Tensor<T>,
    op: &'static str,
    top: Op,
    saves: Saves,
    f: impl Fn(T) -> T + Sync + Send,
    df: impl Fn(T, T) -> T + Sync + Send + 'static,
) -> Tensor<T> {
    let xd = x.data();
    let y = Arc::new(k::map(&xd, f));
    let (sx, sy) = match saves {
        Saves::Nothing => (None, None),
        Saves::Input => (Some(xd), None),
        Saves::Output => (None, Some(y.clone())),
    };
    let out = Tensor::from_op_arc(y, x.shape().to_vec(), op, &[x], move |g, _| {
        let z = T::zero();
        vec![Some(match (&sx, &sy) {
            (Some(x), _) => k::zip_map(g, x, |g, x| g * df(x, z)),
            (None, Some(y)) => k::zip_map(g, y, |g, y| g * df(z, y)),
            (None, None) => k::map(g, |g| g * df(z, z)),
        })]
    });
    trace::record(top, &[x], &[&out]);
    out
}

impl<T: Float> Tensor<T> {
    pub fn add(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Add)
    }
    pub fn sub(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Sub)
    }
    pub fn mul(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Mul)
    }
    pub fn div(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Div)
    }
    /// Elementwise maximum, as `torch.maximum`: NaN if either is NaN; at a tie the gradient is
    /// split half and half between the two.
    pub fn maximum(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Max)
    }
    /// Elementwise minimum, as `torch.minimum` (NaN and ties as in [`Tensor::maximum`]).
    pub fn minimum(&self, o: &Tensor<T>) -> Result<Tensor<T>> {
        binary(self, o, Bin::Min)
    }

    pub fn add_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::from_f64(s);
        unary(
            self,
            "add_scalar",
            Op::AddScalar(s.as_f64()),
            Saves::Nothing,
            move |x| x + s,
            |_, _| T::one(),
        )
    }
    pub fn mul_scalar(&self, s: f64) -> Tensor<T> {
        let s = T::from_f64(s);
        unary(
            self,
            "mul_scalar",
            Op::MulScalar(s.as_f64()),
            Saves::Nothing,
            move |x| x * s,
            move |_, _| s,
        )
    }
    pub fn neg(&self) -> Tensor<T> {
        unary(
            self,
            "neg",
            Op::Neg,
            Saves::Nothing,
            |x| -x,
            |_, _| -T::one(),
        )
    }
    pub fn exp(&self) -> Tensor<T> {
        unary(self, "exp", Op::Exp, Saves::Output, |x| x.exp(), |_, y| y)
    }
    pub fn log(&self) -> Tensor<T> {
        unary(
            self,
            "log",
            Op::Log,
            Saves::Input,
            |x| x.ln(),
            |x, _| T::one() / x,
        )
    }
    pub fn sqrt(&self) -> Tensor<T> {
        unary(
            self,
            "sqrt",
            Op::Sqrt,
            Saves::Output,
            |x| x.sqrt(),
            |_, y| T::from_f64(0.5) / y,
        )
    }
    pub fn square(&self) -> Tensor<T> {
        unary(
            self,
            "square",
            Op::Square,
            Saves::Input,
            |x| x * x,
            |x, _| x + x,
        )
    }
    /// `x^p` for a constant exponent.
    pub fn powf(&self, p: f64) -> Tensor<T> {
        let pt = T::from_f64(p);
        let pm1 = T::from_f64(p - 1.0);
        unary(
            self,
            "powf",
            Op::Pow(p),
            Saves::Input,
            move |x| x.powf(pt),
            move |x, _| pt * x.powf(pm1),
        )
    }
    pub fn abs(&self) -> Tensor<T> {
        unary(
            self,
            "abs",
            Op::Abs,
            Saves::Input,
            |x| x.abs(),
            |x, _| {
                if x > T::zero() {
                    T::one()
                } else if x < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                }
            },
        )
    }
    pub fn clamp(&self, lo: f64, hi: f64) -> Tensor<T> {
        let (l, h) = (T::from_f64(lo), T::from_f64(hi));
        unary(
            self,
            "clamp",
            Op::Clamp(lo, hi),
            Saves::Input,
            move |x| x.max(l).min(h),
            move |x, _| {
                if x >= l && x <= h {
                    T::one()
                } else {
                    T::zero()
                }
            },
        )
    }
    pub fn relu(&self) -> Tensor<T> {
        unary(
            self,
            "relu",
            Op::Relu,
            Saves::Output, // y > 0 exactly where x > 0
            |x| if x > T::zero() { x } else { T::zero() },
            |_, y| if y > T::zero() { T::one() } else { T::zero() },
        )
    }
    /// `relu6(x + 3) / 6`, PyTorch's `hardsigmoid`: gradient 1/6 strictly between −3 and 3.
    pub fn hardsigmoid(&self) -> Tensor<T> {
        let (three, six) = (T::from_f64(3.0), T::from_f64(6.0));
        unary(
            self,
            "hardsigmoid",
            Op::HardSigmoid,
            Saves::Input,
            move |x| (x + three).max(T::zero()).min(six) / six,
            move |x, _| {
                if x > -three && x < three {
                    // PyTorch's kernel uses the float 1/6 for every dtype
                    T::from_f64((1.0f32 / 6.0) as f64)
                } else {
                    T::zero()
                }
            },
        )
    }
    /// `x · relu6(x + 3) / 6`, PyTorch's `hardswish` (MobileNetV3): gradient 0 below −3,
    /// `x/3 + 1/2` up to 3 (both ends included, as PyTorch), 1 above.
    pub fn hardswish(&self) -> Tensor<T> {
        let (three, six) = (T::from_f64(3.0), T::from_f64(6.0));
        unary(
            self,
            "hardswish",
            Op::HardSwish,
            Saves::Input,
            move |x| x * (x + three).max(T::zero()).min(six) / six,
            move |x, _| {
                if x < -three {
                    T::zero()
                } else if x <= three {
                    x / three + T::from_f64(0.5)
                } else {
                    T::one()
                }
            },
        )
    }
    /// `x` for `x > 0`, `slope·x` otherwise (PyTorch `leaky_relu`, default slope 0.01).
    pub fn leaky_relu(&self, slope: f64) -> Tensor<T> {
        let s = T::from_f64(slope);
        unary(
            self,
            "leaky_relu",
            Op::LeakyRelu(slope),
            Saves::Input,
            move |x| if x > T::zero() { x } else { s * x },
            move |x, _| if x > T::zero() { T::one() } else { s },
        )
    }
    pub fn tanh(&self) -> Tensor<T> {
        unary(
            self,
            "tanh",
            Op::Tanh,
            Saves::Output,
            |x| x.tanh(),
            |_, y| T::one() - y * y,
        )
    }
    pub fn sigmoid(&self) -> Tensor<T> {
        unary(
            self,
            "sigmoid",
            Op::Sigmoid,
            Saves::Output,
            |x| T::one() / (T::one() + (-x).exp()),
            |_, y| y * (T::one() - y),
        )
    }
    /// `log(1 + exp(x))`, computed stably.
    pub fn softplus(&self) -> Tensor<T> {
        unary(
            self,
            "softplus",
            Op::Softplus,
            Saves::Input,
            |x| {
                if x > T::zero() {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            },
            |x, _| T::one() / (T::one() + (-x).exp()),
        )
    }

    /// Elementwise smooth-L1 (Huber with threshold `beta`): `0.5·x²/β` for `|x| < β`, else `|x| - 0.5β`.
    pub fn smooth_l1(&self, beta: f64) -> Tensor<T> {
        let b = T::from_f64(beta);
        let half = T::from_f64(0.5);
        unary(
            self,
            "smooth_l1",
            Op::SmoothL1(beta),
            Saves::Input,
            move |x| {
                if x.abs() < b {
                    half * x * x / b
                } else {
                    x.abs() - half * b
                }
            },
            move |x, _| {
                if x.abs() < b {
                    x / b
                } else if x > T::zero() {
                    T::one()
                } else {
                    -T::one()
                }
            },
        )
    }
}
