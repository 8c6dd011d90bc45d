//! The ONNX ops beyond the network layers: elementwise math, comparisons and logic, casts,
//! reductions, losses, normalizations and the shape and indexing ops. They compute on the
//! values' data directly (f32 for the real types, i64 for the integer and boolean ones) with
//! numpy's broadcasting, as ONNX's reference defines them.

use aics_tensor::testing::nan_max;
use aics_tensor::Tensor;

use crate::error::Result;
use crate::proto::{dtype, AttrValue, Node};
use crate::run::{
    attr, attr_float, attr_int, attr_ints, attr_str, axis, input, ints, node_err, t, Value,
};

/// A value's data apart from its shape.
#[derive(Clone, Debug)]
pub(crate) enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

impl Data {
    pub(crate) fn of(v: &Value) -> (Data, Vec<usize>) {
        match v {
            Value::F(x) => (Data::F(x.to_vec()), x.shape().to_vec()),
            Value::I(d, s) => (Data::I(d.clone()), s.clone()),
        }
    }

    fn value(self, n: &Node, shape: &[usize]) -> Result<Value> {
        Ok(match self {
            Data::F(v) => Value::F(t(n, Tensor::from_vec(v, shape))?),
            Data::I(v) => {
                if v.len() != shape.iter().product::<usize>() {
                    return Err(node_err(
                        n,
                        format!("{} values for shape {shape:?}", v.len()),
                    ));
                }
                Value::I(v, shape.to_vec())
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    /// The elements at `idx`, in order.
    fn pick(&self, idx: &[usize]) -> Data {
        match self {
            Data::F(v) => Data::F(idx.iter().map(|&i| v[i]).collect()),
            Data::I(v) => Data::I(idx.iter().map(|&i| v[i]).collect()),
        }
    }

    /// The elements at `idx`, `fill` where there is none.
    fn pick_or(&self, idx: &[Option<usize>], fill: f64) -> Data {
        match self {
            Data::F(v) => Data::F(
                idx.iter()
                    .map(|i| i.map_or(fill as f32, |i| v[i]))
                    .collect(),
            ),
            Data::I(v) => Data::I(
                idx.iter()
                    .map(|i| i.map_or(fill as i64, |i| v[i]))
                    .collect(),
            ),
        }
    }

    fn f64s(&self) -> Vec<f64> {
        match self {
            Data::F(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

fn f32s(v: &Value) -> Vec<f32> {
    match v {
        Value::F(x) => x.to_vec(),
        Value::I(d, _) => d.iter().map(|&x| x as f32).collect(),
    }
}

fn i64s(v: &Value) -> Vec<i64> {
    match v {
        Value::F(x) => x.to_vec().iter().map(|&f| f as i64).collect(),
        Value::I(d, _) => d.clone(),
    }
}

fn fval(n: &Node, v: Vec<f32>, shape: &[usize]) -> Result<Vec<Value>> {
    Ok(vec![Value::F(t(n, Tensor::from_vec(v, shape))?)])
}

fn ival(v: Vec<i64>, shape: &[usize]) -> Result<Vec<Value>> {
    Ok(vec![Value::I(v, shape.to_vec())])
}

/// A scalar input (or a one-element tensor) as i64.
fn scalar_int(n: &Node, a: &[Option<Value>], i: usize) -> Result<i64> {
    let v = input(n, a, i)?;
    i64s(v)
        .first()
        .copied()
        .ok_or_else(|| node_err(n, format!("input {i} is empty; a scalar is needed")))
}

fn given(a: &[Option<Value>], i: usize) -> Option<&Value> {
    a.get(i).and_then(|v| v.as_ref())
}

// ---- indexing helpers -----------------------------------------------------------------------

fn strides(s: &[usize]) -> Vec<usize> {
    let mut st = vec![1; s.len()];
    for d in (0..s.len().saturating_sub(1)).rev() {
        st[d] = st[d + 1] * s[d + 1];
    }
    st
}

/// numpy's broadcast of several shapes.
fn broadcast(n: &Node, shapes: &[Vec<usize>]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (d, &x) in s.iter().enumerate() {
            let o = &mut out[off + d];
            if *o == 1 {
                *o = x;
            } else if x != 1 && x != *o {
                return Err(node_err(n, format!("shapes {shapes:?} do not broadcast")));
            }
        }
    }
    Ok(out)
}

/// For each element of `out` (row-major), the index of the element of a tensor of shape `s`
/// broadcast to it.
fn bindex(out: &[usize], s: &[usize]) -> Vec<usize> {
    let r = out.len();
    let off = r - s.len();
    let st = strides(s);
    let bst: Vec<usize> = (0..r)
        .map(|d| {
            if d < off || s[d - off] == 1 {
                0
            } else {
                st[d - off]
            }
        })
        .collect();
    bindex_with(out, &bst)
}

/// The flat indices of the cartesian product of per-dimension index lists into a tensor of
/// shape `s` (None in a list: no element there).
fn take(s: &[usize], lists: &[Vec<Option<usize>>]) -> Vec<Option<usize>> {
    let mut idx: Vec<Option<usize>> = vec![Some(0)];
    for (d, list) in lists.iter().enumerate() {
        let mut next = Vec::with_capacity(idx.len() * list.len());
        for &i in &idx {
            for &j in list {
                next.push(match (i, j) {
                    (Some(i), Some(j)) => Some(i * s[d] + j),
                    _ => None,
                });
            }
        }
        idx = next;
    }
    idx
}

fn some(v: Vec<usize>) -> Vec<Option<usize>> {
    v.into_iter().map(Some).collect()
}

fn unwrap_all(v: Vec<Option<usize>>) -> Vec<usize> {
    v.into_iter().map(|i| i.unwrap_or(0)).collect()
}

/// A possibly negative index into a dimension of size `d`.
fn index(n: &Node, i: i64, d: usize) -> Result<usize> {
    let j = if i < 0 { i + d as i64 } else { i };
    if j < 0 || j >= d as i64 {
        return Err(node_err(
            n,
            format!("index {i} out of range for a dimension of {d}"),
        ));
    }
    Ok(j as usize)
}

// ---- scalar math ----------------------------------------------------------------------------

/// The error function, to about 1e-7 relative (Numerical Recipes' erfc by Chebyshev fit).
pub(crate) fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

/// The smaller of two numbers, NaN if either is (as [`nan_max`] for the larger).
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A float op on each element, in f64.
fn unary_float(n: &Node, x: &Value, f: impl Fn(f64) -> f64) -> Result<Vec<Value>> {
    let s = x.shape();
    let v: Vec<f32> = f32s(x).iter().map(|&e| f(e as f64) as f32).collect();
    fval(n, v, &s)
}

/// The elementwise ops of one input.
fn unary(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let op = n.op_type.as_str();
    if let Value::I(d, s) = x {
        let y: Vec<i64> = match op {
            "Abs" => d.iter().map(|v| v.wrapping_abs()).collect(),
            "Neg" => d.iter().map(|v| v.wrapping_neg()).collect(),
            "Sign" => d.iter().map(|v| v.signum()).collect(),
            "Not" => d.iter().map(|&v| (v == 0) as i64).collect(),
            "BitwiseNot" => d.iter().map(|v| !v).collect(),
            "Ceil" | "Floor" | "Round" => d.clone(),
            _ => return unary_float(n, x, float_fn(n)?),
        };
        return ival(y, s);
    }
    match op {
        "IsNaN" => {
            let s = x.shape();
            ival(f32s(x).iter().map(|v| v.is_nan() as i64).collect(), &s)
        }
        "IsInf" => {
            let (neg, pos) = (
                attr_int(n, "detect_negative", 1)? != 0,
                attr_int(n, "detect_positive", 1)? != 0,
            );
            let s = x.shape();
            let y = f32s(x)
                .iter()
                .map(|v| (v.is_infinite() && ((*v > 0.0 && pos) || (*v < 0.0 && neg))) as i64)
                .collect();
            ival(y, &s)
        }
        "Not" | "BitwiseNot" => Err(node_err(n, "a float input where booleans are needed")),
        _ => unary_float(n, x, float_fn(n)?),
    }
}

fn float_fn(n: &Node) -> Result<Box<dyn Fn(f64) -> f64>> {
    let al = |d: f32| attr_float(n, "alpha", d).map(f64::from);
    Ok(match n.op_type.as_str() {
        "Abs" => Box::new(f64::abs),
        "Neg" => Box::new(|x: f64| -x),
        "Sin" => Box::new(f64::sin),
        "Cos" => Box::new(f64::cos),
        "Tan" => Box::new(f64::tan),
        "Asin" => Box::new(f64::asin),
        "Acos" => Box::new(f64::acos),
        "Atan" => Box::new(f64::atan),
        "Sinh" => Box::new(f64::sinh),
        "Cosh" => Box::new(f64::cosh),
        "Asinh" => Box::new(f64::asinh),
        "Acosh" => Box::new(f64::acosh),
        "Atanh" => Box::new(f64::atanh),
        "Ceil" => Box::new(f64::ceil),
        "Floor" => Box::new(f64::floor),
        "Round" => Box::new(f64::round_ties_even),
        "Sign" => Box::new(|x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }),
        "Erf" => Box::new(erf),
        "Reciprocal" => Box::new(|x: f64| 1.0 / x),
        "Softsign" => Box::new(|x: f64| x / (1.0 + x.abs())),
        "Softplus" => Box::new(softplus),
        "Mish" => Box::new(|x: f64| x * softplus(x).tanh()),
        "Elu" => {
            let a = al(1.0)?;
            Box::new(move |x: f64| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        "Selu" => {
            let a = al(1.673_263_2)?;
            let g = attr_float(n, "gamma", 1.050_701)? as f64;
            Box::new(move |x: f64| if x > 0.0 { g * x } else { g * a * x.exp_m1() })
        }
        "Celu" => {
            let a = al(1.0)?;
            Box::new(move |x: f64| x.max(0.0) + (a * (x / a).exp_m1()).min(0.0))
        }
        "ThresholdedRelu" => {
            let a = al(1.0)?;
            Box::new(move |x: f64| if x > a { x } else { 0.0 })
        }
        "HardSwish" => Box::new(|x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        "Gelu" => {
            if attr_str(n, "approximate", "none")? == "tanh" {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                Box::new(move |x: f64| 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()))
            } else {
                Box::new(|x: f64| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)))
            }
        }
        "Shrink" => {
            let b = attr_float(n, "bias", 0.0)? as f64;
            let l = attr_float(n, "lambd", 0.5)? as f64;
            Box::new(move |x: f64| {
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            })
        }
        other => return Err(node_err(n, format!("'{other}' is not an elementwise op"))),
    })
}

// ---- binary and n-ary elementwise -----------------------------------------------------------

/// The elementwise ops of two or more inputs, broadcast; integer tensors stay integers.
fn nary(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let op = n.op_type.as_str();
    let vals: Vec<&Value> = (0..a.len())
        .map(|i| input(n, a, i))
        .collect::<Result<_>>()?;
    let shapes: Vec<Vec<usize>> = vals.iter().map(|v| v.shape()).collect();
    let out = broadcast(n, &shapes)?;
    let idx: Vec<Vec<usize>> = shapes.iter().map(|s| bindex(&out, s)).collect();
    let all_int = vals.iter().all(|v| matches!(v, Value::I(..)));
    let cmp = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
    );
    if all_int || matches!(op, "And" | "Or" | "Xor" | "BitShift") || op.starts_with("Bitwise") {
        let d: Vec<Vec<i64>> = vals.iter().map(|v| i64s(v)).collect();
        let numel = out.iter().product::<usize>();
        let mut y = Vec::with_capacity(numel);
        let left = attr_str(n, "direction", "LEFT")? == "LEFT";
        let fmod = attr_int(n, "fmod", 0)? != 0;
        for e in 0..numel {
            let mut acc = d[0][idx[0][e]];
            for k in 1..d.len() {
                let q = d[k][idx[k][e]];
                let p = acc;
                acc = match op {
                    "Add" | "Sum" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    "Div" => {
                        if q == 0 {
                            return Err(node_err(n, "integer division by zero"));
                        }
                        p.wrapping_div(q)
                    }
                    "Mod" => {
                        if q == 0 {
                            return Err(node_err(n, "integer modulo by zero"));
                        }
                        let r = p.wrapping_rem(q);
                        if !fmod && r != 0 && ((r < 0) != (q < 0)) {
                            r + q
                        } else {
                            r
                        }
                    }
                    "Pow" => {
                        if q < 0 {
                            0
                        } else {
                            p.wrapping_pow(q.min(u32::MAX as i64) as u32)
                        }
                    }
                    "Max" => p.max(q),
                    "Min" => p.min(q),
                    "Mean" => p.wrapping_add(q),
                    "Equal" => (p == q) as i64,
                    "Less" => (p < q) as i64,
                    "Greater" => (p > q) as i64,
                    "LessOrEqual" => (p <= q) as i64,
                    "GreaterOrEqual" => (p >= q) as i64,
                    "And" => (p != 0 && q != 0) as i64,
                    "Or" => (p != 0 || q != 0) as i64,
                    "Xor" => ((p != 0) != (q != 0)) as i64,
                    "BitwiseAnd" => p & q,
                    "BitwiseOr" => p | q,
                    "BitwiseXor" => p ^ q,
                    "BitShift" => {
                        let s = q.clamp(0, 64) as u32;
                        if s >= 64 {
                            0
                        } else if left {
                            ((p as u64) << s) as i64
                        } else {
                            ((p as u64) >> s) as i64
                        }
                    }
                    other => return Err(node_err(n, format!("'{other}' on integers"))),
                };
            }
            if op == "Mean" {
                acc /= d.len() as i64;
            }
            y.push(acc);
        }
        return ival(y, &out);
    }
    // real numbers, in f64; comparisons give booleans
    let d: Vec<Vec<f32>> = vals.iter().map(|v| f32s(v)).collect();
    let numel = out.iter().product::<usize>();
    let fmod = attr_int(n, "fmod", 0)? != 0;
    let mut y = Vec::with_capacity(numel);
    let mut b = Vec::new();
    for e in 0..numel {
        let mut acc = d[0][idx[0][e]] as f64;
        for k in 1..d.len() {
            let q = d[k][idx[k][e]] as f64;
            let p = acc;
            if cmp {
                b.push(match op {
                    "Equal" => p == q,
                    "Less" => p < q,
                    "Greater" => p > q,
                    "LessOrEqual" => p <= q,
                    _ => p >= q,
                } as i64);
                break;
            }
            acc = match op {
                "Add" | "Sum" | "Mean" => p + q,
                "Sub" => p - q,
                "Mul" => p * q,
                "Div" => p / q,
                "Pow" => p.powf(q),
                "Max" => nan_max(p, q),
                "Min" => nan_min(p, q),
                "Mod" => {
                    let r = p % q;
                    if !fmod && r != 0.0 && ((r < 0.0) != (q < 0.0)) {
                        r + q
                    } else {
                        r
                    }
                }
                "PRelu" => {
                    if p < 0.0 {
                        p * q
                    } else {
                        p
                    }
                }
                other => return Err(node_err(n, format!("'{other}' on real numbers"))),
            };
        }
        if op == "Mean" {
            acc /= d.len() as f64;
        }
        y.push(acc as f32);
    }
    if cmp {
        return ival(b, &out);
    }
    // Pow of an integer base keeps the base's type
    if op == "Pow" && matches!(vals[0], Value::I(..)) {
        return ival(y.iter().map(|&v| v as i64).collect(), &out);
    }
    fval(n, y, &out)
}

fn where_op(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let c = input(n, a, 0)?;
    let (x, y) = (input(n, a, 1)?, input(n, a, 2)?);
    let shapes = vec![c.shape(), x.shape(), y.shape()];
    let out = broadcast(n, &shapes)?;
    let (ic, ix, iy) = (
        bindex(&out, &shapes[0]),
        bindex(&out, &shapes[1]),
        bindex(&out, &shapes[2]),
    );
    let cond = i64s(c);
    let (dx, _) = Data::of(x);
    let (dy, _) = Data::of(y);
    let d = match (dx, dy) {
        (Data::I(p), Data::I(q)) => Data::I(
            (0..ic.len())
                .map(|e| if cond[ic[e]] != 0 { p[ix[e]] } else { q[iy[e]] })
                .collect(),
        ),
        (p, q) => {
            let (p, q) = (p.f64s(), q.f64s());
            Data::F(
                (0..ic.len())
                    .map(|e| (if cond[ic[e]] != 0 { p[ix[e]] } else { q[iy[e]] }) as f32)
                    .collect(),
            )
        }
    };
    Ok(vec![d.value(n, &out)?])
}

// ---- types ----------------------------------------------------------------------------------

/// The nearest float16 value (round to nearest, ties to even).
pub(crate) fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// The nearest bfloat16 value (round to nearest, ties to even).
pub(crate) fn round_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// An integer wrapped to the width of type `ty`, as a C cast does.
fn wrap(x: i64, ty: i32) -> i64 {
    match ty {
        dtype::INT8 => x as i8 as i64,
        dtype::UINT8 => x as u8 as i64,
        dtype::INT16 => x as i16 as i64,
        dtype::UINT16 => x as u16 as i64,
        dtype::INT32 => x as i32 as i64,
        dtype::UINT32 => x as u32 as i64,
        dtype::BOOL => (x != 0) as i64,
        _ => x,
    }
}

fn is_float_type(ty: i32) -> bool {
    matches!(
        ty,
        dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16
    )
}

/// `v` as a value of type `ty`: floats rounded to float16 or bfloat16, integers wrapped to
/// their width, booleans 0 or 1, and real numbers truncated to integers or integers widened
/// to reals where the type changes kind.
pub(crate) fn conform(n: &Node, v: Value, ty: i32) -> Result<Value> {
    let shape = v.shape();
    Ok(match (v, is_float_type(ty)) {
        (Value::F(x), true) => match ty {
            dtype::FLOAT16 => Value::F(x.map_values(round_f16)),
            dtype::BFLOAT16 => Value::F(x.map_values(round_bf16)),
            _ => Value::F(x),
        },
        (Value::I(d, s), true) => {
            let f: Vec<f32> = d
                .iter()
                .map(|&i| {
                    let f = if ty == dtype::DOUBLE {
                        i as f64 as f32
                    } else {
                        i as f32
                    };
                    match ty {
                        dtype::FLOAT16 => round_f16(f),
                        dtype::BFLOAT16 => round_bf16(f),
                        _ => f,
                    }
                })
                .collect();
            Value::F(t(n, Tensor::from_vec(f, &s))?)
        }
        (Value::I(d, s), false) => Value::I(d.into_iter().map(|x| wrap(x, ty)).collect(), s),
        (Value::F(x), false) => {
            let d = x
                .to_vec()
                .iter()
                .map(|&f| {
                    if ty == dtype::BOOL {
                        (f != 0.0) as i64
                    } else if ty == dtype::UINT64 {
                        f as u64 as i64
                    } else {
                        wrap(f as i64, ty)
                    }
                })
                .collect();
            Value::I(d, shape)
        }
    })
}

trait MapValues {
    fn map_values(&self, f: fn(f32) -> f32) -> Tensor<f32>;
}

impl MapValues for Tensor<f32> {
    fn map_values(&self, f: fn(f32) -> f32) -> Tensor<f32> {
        let v: Vec<f32> = self.to_vec().into_iter().map(f).collect();
        Tensor::from_vec(v, self.shape()).expect("same shape")
    }
}

fn cast(n: &Node, a: &[Option<Value>], types: &dyn Fn(&str) -> Option<i32>) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?.clone();
    let ty = if n.op_type == "Cast" {
        attr_int(n, "to", 0)? as i32
    } else {
        // CastLike: the second input's type, as the graph declares it, else its kind
        let name = n.inputs.get(1).map(String::as_str).unwrap_or("");
        match (types(name), input(n, a, 1)?) {
            (Some(ty), _) => ty,
            (None, Value::F(_)) => dtype::FLOAT,
            (None, Value::I(..)) => dtype::INT64,
        }
    };
    Ok(vec![conform(n, x, ty)?])
}

// ---- reductions -----------------------------------------------------------------------------

/// The reduced axes of a Reduce op: from the `axes` attribute or, from the opset where they
/// moved there, the second input; None means all of them, Some(empty) none.
fn reduce_axes(n: &Node, a: &[Option<Value>], opset: i64, rank: usize) -> Result<Vec<usize>> {
    let from_input = if n.op_type == "ReduceSum" {
        opset >= 13
    } else {
        opset >= 18
    };
    let axes = if from_input {
        given(a, 1).map(i64s)
    } else {
        attr_ints(n, "axes")?
    };
    let axes = axes.filter(|v| !v.is_empty());
    match axes {
        Some(v) => {
            let mut ax: Vec<usize> = v.iter().map(|&x| axis(n, x, rank)).collect::<Result<_>>()?;
            ax.sort_unstable();
            ax.dedup();
            Ok(ax)
        }
        None if attr_int(n, "noop_with_empty_axes", 0)? != 0 => Ok(Vec::new()),
        None => Ok((0..rank).collect()),
    }
}

/// For each element of a tensor of shape `s`, the index of its group when `axes` are reduced,
/// and the kept shape (reduced axes as 1).
fn groups(s: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let kept: Vec<usize> = s
        .iter()
        .enumerate()
        .map(|(d, &x)| if axes.contains(&d) { 1 } else { x })
        .collect();
    let st = strides(&kept);
    let bst: Vec<usize> = (0..s.len())
        .map(|d| if axes.contains(&d) { 0 } else { st[d] })
        .collect();
    (bindex_with(s, &bst), kept)
}

/// `bindex` with explicit strides per dimension of `shape`.
fn bindex_with(shape: &[usize], bst: &[usize]) -> Vec<usize> {
    let r = shape.len();
    let total: usize = shape.iter().product();
    let mut res = Vec::with_capacity(total);
    let mut idx = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..total {
        res.push(cur);
        for d in (0..r).rev() {
            idx[d] += 1;
            cur += bst[d];
            if idx[d] < shape[d] {
                break;
            }
            cur -= bst[d] * shape[d];
            idx[d] = 0;
        }
    }
    res
}

fn reduce(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let axes = reduce_axes(n, a, opset, s.len())?;
    let keep = attr_int(n, "keepdims", 1)? != 0;
    let (g, kept) = groups(&s, &axes);
    let m: usize = kept.iter().product();
    let out_shape: Vec<usize> = if keep {
        kept.clone()
    } else {
        s.iter()
            .enumerate()
            .filter(|(d, _)| !axes.contains(d))
            .map(|(_, &v)| v)
            .collect()
    };
    let op = n.op_type.as_str();
    let (data, _) = Data::of(x);
    let int = matches!(data, Data::I(_));
    if int && matches!(op, "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceProd") {
        let Data::I(d) = data else { unreachable!() };
        let init = match op {
            "ReduceMax" => i64::MIN,
            "ReduceMin" => i64::MAX,
            "ReduceProd" => 1,
            _ => 0,
        };
        let mut acc = vec![init; m];
        for (e, &v) in d.iter().enumerate() {
            let o = &mut acc[g[e]];
            *o = match op {
                "ReduceMax" => (*o).max(v),
                "ReduceMin" => (*o).min(v),
                "ReduceProd" => o.wrapping_mul(v),
                _ => o.wrapping_add(v),
            };
        }
        return ival(acc, &out_shape);
    }
    let d = data.f64s();
    let init = match op {
        "ReduceMax" => f64::NEG_INFINITY,
        "ReduceMin" => f64::INFINITY,
        "ReduceProd" => 1.0,
        _ => 0.0,
    };
    // log-sum-exp subtracts each group's maximum first
    let mut top = vec![f64::NEG_INFINITY; m];
    if op == "ReduceLogSumExp" {
        for (e, &v) in d.iter().enumerate() {
            top[g[e]] = top[g[e]].max(v);
        }
    }
    let mut acc = vec![init; m];
    let mut count = vec![0usize; m];
    for (e, &v) in d.iter().enumerate() {
        let k = g[e];
        count[k] += 1;
        let o = &mut acc[k];
        *o = match op {
            "ReduceMax" => nan_max(*o, v),
            "ReduceMin" => nan_min(*o, v),
            "ReduceProd" => *o * v,
            "ReduceL1" => *o + v.abs(),
            "ReduceL2" | "ReduceSumSquare" => *o + v * v,
            "ReduceLogSumExp" => {
                if top[k].is_finite() {
                    *o + (v - top[k]).exp()
                } else {
                    *o + v.exp()
                }
            }
            _ => *o + v,
        };
    }
    for k in 0..m {
        let o = &mut acc[k];
        *o = match op {
            "ReduceMean" => *o / count[k] as f64,
            "ReduceL2" => o.sqrt(),
            "ReduceLogSum" => o.ln(),
            "ReduceLogSumExp" if top[k].is_finite() => o.ln() + top[k],
            "ReduceLogSumExp" => o.ln(),
            _ => *o,
        };
    }
    if int {
        return ival(acc.iter().map(|&v| v as i64).collect(), &out_shape);
    }
    fval(n, acc.iter().map(|&v| v as f32).collect(), &out_shape)
}

fn arg_reduce(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
    let keep = attr_int(n, "keepdims", 1)? != 0;
    let last = attr_int(n, "select_last_index", 0)? != 0;
    let max = n.op_type == "ArgMax";
    let d = Data::of(x).0.f64s();
    let (outer, len, inner) = split3(&s, ax);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0usize;
            for k in 1..len {
                let (v, b) = (
                    d[(o * len + k) * inner + i],
                    d[(o * len + best) * inner + i],
                );
                let better = if max { v > b } else { v < b };
                if better || (last && v == b) {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    let mut shape = s.clone();
    if keep {
        shape[ax] = 1;
    } else {
        shape.remove(ax);
    }
    ival(out, &shape)
}

/// The sizes before, at and after axis `ax`.
fn split3(s: &[usize], ax: usize) -> (usize, usize, usize) {
    (
        s[..ax].iter().product(),
        s[ax],
        s[ax + 1..].iter().product(),
    )
}

fn cumulative(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let ax = axis(n, scalar_int(n, a, 1)?, s.len())?;
    let excl = attr_int(n, "exclusive", 0)? != 0;
    let rev = attr_int(n, "reverse", 0)? != 0;
    let prod = n.op_type == "CumProd";
    let (outer, len, inner) = split3(&s, ax);
    let (data, _) = Data::of(x);
    let d = data.f64s();
    let mut y = vec![0f64; d.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = if prod { 1.0 } else { 0.0 };
            for step in 0..len {
                let k = if rev { len - 1 - step } else { step };
                let at = (o * len + k) * inner + i;
                if excl {
                    y[at] = acc;
                }
                acc = if prod { acc * d[at] } else { acc + d[at] };
                if !excl {
                    y[at] = acc;
                }
            }
        }
    }
    match data {
        Data::I(_) => ival(y.iter().map(|&v| v as i64).collect(), &s),
        Data::F(_) => fval(n, y.iter().map(|&v| v as f32).collect(), &s),
    }
}

/// Softmax, LogSoftmax or Hardmax over `axis` (before opset 13: of the input as a matrix of
/// the dimensions before `axis` by those from it).
fn softmax_family(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let d = f32s(x);
    let (outer, len, inner) = if opset < 13 {
        let ax = if attr_int(n, "axis", 1)? == s.len() as i64 {
            s.len()
        } else {
            axis(n, attr_int(n, "axis", 1)?, s.len())?
        };
        (s[..ax].iter().product(), s[ax..].iter().product(), 1)
    } else {
        split3(&s, axis(n, attr_int(n, "axis", -1)?, s.len())?)
    };
    let mut y = vec![0f32; d.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let m = (0..len)
                .map(|k| d[at(k)] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            match n.op_type.as_str() {
                "Hardmax" => {
                    if let Some(k) = (0..len).find(|&k| d[at(k)] as f64 == m) {
                        y[at(k)] = 1.0;
                    }
                }
                _ => {
                    let sum: f64 = (0..len).map(|k| (d[at(k)] as f64 - m).exp()).sum();
                    for k in 0..len {
                        y[at(k)] = ((d[at(k)] as f64 - m) - sum.ln()) as f32;
                    }
                }
            }
        }
    }
    fval(n, y, &s)
}

/// NegativeLogLikelihoodLoss on log-probabilities `lp` (N, C, d…) and targets (N, d…).
fn nll(
    n: &Node,
    lp: &[f32],
    s: &[usize],
    target: &[i64],
    weight: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<usize>)> {
    if s.len() < 2 {
        return Err(node_err(n, format!("input {s:?}: (N, C, …) is needed")));
    }
    let (nb, c) = (s[0], s[1]);
    let inner: usize = s[2..].iter().product();
    if target.len() != nb * inner {
        return Err(node_err(
            n,
            format!("{} targets for input {s:?}", target.len()),
        ));
    }
    let ignore = match attr(n, "ignore_index") {
        Some(AttrValue::Int(i)) => Some(*i),
        _ => None,
    };
    let reduction = attr_str(n, "reduction", "mean")?;
    let mut loss = vec![0f64; nb * inner];
    let mut wsum = 0f64;
    for b in 0..nb {
        for i in 0..inner {
            let tg = target[b * inner + i];
            if Some(tg) == ignore {
                continue;
            }
            let k = index(n, tg, c)?;
            let w = weight.map_or(1.0, |w| w[k] as f64);
            loss[b * inner + i] = -(lp[(b * c + k) * inner + i] as f64) * w;
            wsum += w;
        }
    }
    let total: f64 = loss.iter().sum();
    Ok(match reduction.as_str() {
        "none" => {
            let mut shape = vec![nb];
            shape.extend_from_slice(&s[2..]);
            (loss.iter().map(|&v| v as f32).collect(), shape)
        }
        "sum" => (vec![total as f32], vec![]),
        "mean" => (vec![(total / wsum) as f32], vec![]),
        other => return Err(node_err(n, format!("reduction '{other}'"))),
    })
}

fn losses(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let target = i64s(input(n, a, 1)?);
    let weight = given(a, 2).map(f32s);
    if n.op_type == "NegativeLogLikelihoodLoss" {
        let (l, ls) = nll(n, &f32s(x), &s, &target, weight.as_deref())?;
        return fval(n, l, &ls);
    }
    // SoftmaxCrossEntropyLoss: log-softmax over the classes, then the NLL
    if s.len() < 2 {
        return Err(node_err(n, format!("scores {s:?}: (N, C, …) is needed")));
    }
    let d = f32s(x);
    let (nb, c) = (s[0], s[1]);
    let inner: usize = s[2..].iter().product();
    let mut lp = vec![0f32; d.len()];
    for b in 0..nb {
        for i in 0..inner {
            let at = |k: usize| (b * c + k) * inner + i;
            let m = (0..c)
                .map(|k| d[at(k)] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..c).map(|k| (d[at(k)] as f64 - m).exp()).sum();
            for k in 0..c {
                lp[at(k)] = (d[at(k)] as f64 - m - sum.ln()) as f32;
            }
        }
    }
    let (l, ls) = nll(n, &lp, &s, &target, weight.as_deref())?;
    let mut out = fval(n, l, &ls)?;
    if n.outputs.len() > 1 {
        out.extend(fval(n, lp, &s)?);
    }
    Ok(out)
}

// ---- normalizations -------------------------------------------------------------------------

/// Normalizes groups of `x` (each group: the elements sharing an index outside `axes`) to
/// zero mean and unit variance, or by their root mean square alone.
fn normalize_groups(d: &[f32], s: &[usize], axes: &[usize], eps: f64, rms: bool) -> NormOut {
    let (g, kept) = groups(s, axes);
    let m: usize = kept.iter().product();
    let mut sum = vec![0f64; m];
    let mut cnt = vec![0f64; m];
    for (e, &v) in d.iter().enumerate() {
        sum[g[e]] += v as f64;
        cnt[g[e]] += 1.0;
    }
    let mean: Vec<f64> = if rms {
        vec![0.0; m]
    } else {
        sum.iter().zip(&cnt).map(|(s, c)| s / c).collect()
    };
    let mut var = vec![0f64; m];
    for (e, &v) in d.iter().enumerate() {
        let c = v as f64 - mean[g[e]];
        var[g[e]] += c * c;
    }
    let inv: Vec<f64> = var
        .iter()
        .zip(&cnt)
        .map(|(v, c)| 1.0 / (v / c + eps).sqrt())
        .collect();
    let y = d
        .iter()
        .enumerate()
        .map(|(e, &v)| ((v as f64 - mean[g[e]]) * inv[g[e]]) as f32)
        .collect();
    NormOut { y, mean, inv, kept }
}

struct NormOut {
    y: Vec<f32>,
    mean: Vec<f64>,
    inv: Vec<f64>,
    kept: Vec<usize>,
}

/// `y * scale + bias`, scale and bias broadcast to `y`'s shape.
fn affine(
    n: &Node,
    y: &mut [f32],
    s: &[usize],
    scale: Option<&Value>,
    bias: Option<&Value>,
) -> Result<()> {
    for (v, mul) in [(scale, true), (bias, false)] {
        let Some(v) = v else { continue };
        let vs = v.shape();
        if broadcast(n, &[s.to_vec(), vs.clone()])? != s {
            return Err(node_err(n, format!("{vs:?} does not broadcast to {s:?}")));
        }
        let idx = bindex(s, &vs);
        let p = f32s(v);
        for (e, o) in y.iter_mut().enumerate() {
            if mul {
                *o *= p[idx[e]];
            } else {
                *o += p[idx[e]];
            }
        }
    }
    Ok(())
}

fn norms(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let d = f32s(x);
    let eps = attr_float(n, "epsilon", 1e-5)? as f64;
    match n.op_type.as_str() {
        "LayerNormalization" | "RMSNormalization" => {
            let rms = n.op_type == "RMSNormalization";
            let at = axis(n, attr_int(n, "axis", -1)?, s.len())?;
            let axes: Vec<usize> = (at..s.len()).collect();
            let mut o = normalize_groups(&d, &s, &axes, eps, rms);
            affine(n, &mut o.y, &s, Some(input(n, a, 1)?), given(a, 2))?;
            let mut out = fval(n, o.y, &s)?;
            if !rms {
                let mean: Vec<f32> = o.mean.iter().map(|&v| v as f32).collect();
                let inv: Vec<f32> = o.inv.iter().map(|&v| v as f32).collect();
                out.extend(fval(n, mean, &o.kept)?);
                out.extend(fval(n, inv, &o.kept)?);
            }
            Ok(out)
        }
        "InstanceNormalization" => {
            if s.len() < 3 {
                return Err(node_err(n, format!("input {s:?}: (N, C, …) is needed")));
            }
            let axes: Vec<usize> = (2..s.len()).collect();
            let mut o = normalize_groups(&d, &s, &axes, eps, false);
            let c = s[1];
            let mut cs = vec![c];
            cs.extend(std::iter::repeat_n(1, s.len() - 2));
            let sc = reshape(n, input(n, a, 1)?, &cs)?;
            let b = reshape(n, input(n, a, 2)?, &cs)?;
            affine(n, &mut o.y, &s, Some(&sc), Some(&b))?;
            fval(n, o.y, &s)
        }
        "MeanVarianceNormalization" => {
            let axes: Vec<usize> = attr_ints(n, "axes")?
                .unwrap_or_else(|| vec![0, 2, 3])
                .iter()
                .map(|&v| axis(n, v, s.len()))
                .collect::<Result<_>>()?;
            let o = normalize_groups(&d, &s, &axes, 1e-9, false);
            fval(n, o.y, &s)
        }
        "LpNormalization" => {
            let ax = axis(n, attr_int(n, "axis", -1)?, s.len())?;
            let p = attr_int(n, "p", 2)?;
            let (outer, len, inner) = split3(&s, ax);
            let mut y = d.clone();
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| (o * len + k) * inner + i;
                    let norm: f64 = if p == 1 {
                        (0..len).map(|k| (d[at(k)] as f64).abs()).sum()
                    } else {
                        (0..len)
                            .map(|k| (d[at(k)] as f64).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    };
                    for k in 0..len {
                        y[at(k)] = if norm == 0.0 {
                            0.0
                        } else {
                            (d[at(k)] as f64 / norm) as f32
                        };
                    }
                }
            }
            fval(n, y, &s)
        }
        other => Err(node_err(n, format!("'{other}' is not a normalization"))),
    }
}

fn reshape(n: &Node, v: &Value, shape: &[usize]) -> Result<Value> {
    let (d, s) = Data::of(v);
    if s.iter().product::<usize>() != shape.iter().product::<usize>() {
        return Err(node_err(n, format!("{s:?} does not fit {shape:?}")));
    }
    d.value(n, shape)
}

// ---- shape and indexing ---------------------------------------------------------------------

fn slice(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let r = s.len();
    let (starts, ends, axes, steps) = if opset < 10 {
        (
            attr_ints(n, "starts")?.unwrap_or_default(),
            attr_ints(n, "ends")?.unwrap_or_default(),
            attr_ints(n, "axes")?,
            None,
        )
    } else {
        (
            ints(n, a, 1)?.to_vec(),
            ints(n, a, 2)?.to_vec(),
            given(a, 3).map(i64s),
            given(a, 4).map(i64s),
        )
    };
    let axes: Vec<usize> = match axes {
        Some(v) => v.iter().map(|&d| axis(n, d, r)).collect::<Result<_>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(node_err(n, "starts, ends, axes and steps differ in length"));
    }
    let mut lists: Vec<Vec<Option<usize>>> = s.iter().map(|&d| some((0..d).collect())).collect();
    for (k, &ax) in axes.iter().enumerate() {
        let d = s[ax] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(node_err(n, "a step of 0"));
        }
        let fix = |v: i64| if v < 0 { v + d } else { v };
        let (mut i, end) = if step > 0 {
            (fix(starts[k]).clamp(0, d), fix(ends[k]).clamp(0, d))
        } else {
            (
                fix(starts[k]).clamp(-1, d - 1),
                fix(ends[k]).clamp(-1, d - 1),
            )
        };
        let mut l = Vec::new();
        while (step > 0 && i < end) || (step < 0 && i > end) {
            l.push(Some(i as usize));
            i += step;
        }
        lists[ax] = l;
    }
    let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
    let (d, _) = Data::of(x);
    Ok(vec![d
        .pick(&unwrap_all(take(&s, &lists)))
        .value(n, &shape)?])
}

fn split(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
    let outs = n.outputs.len();
    let parts: Vec<usize> = match if opset >= 13 {
        given(a, 1).map(i64s)
    } else {
        attr_ints(n, "split")?
    } {
        Some(p) => p.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let k = match attr(n, "num_outputs") {
                Some(AttrValue::Int(k)) => *k as usize,
                _ => outs,
            };
            if k == 0 {
                return Err(node_err(n, "no outputs to split into"));
            }
            let each = s[ax].div_ceil(k);
            (0..k)
                .map(|i| each.min(s[ax].saturating_sub(i * each)))
                .collect()
        }
    };
    if parts.iter().sum::<usize>() != s[ax] {
        return Err(node_err(
            n,
            format!("parts {parts:?} do not add up to {}", s[ax]),
        ));
    }
    let (d, _) = Data::of(x);
    let mut out = Vec::new();
    let mut at = 0;
    for p in parts {
        let mut lists: Vec<Vec<Option<usize>>> =
            s.iter().map(|&d| some((0..d).collect())).collect();
        lists[ax] = some((at..at + p).collect());
        at += p;
        let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
        out.push(d.pick(&unwrap_all(take(&s, &lists))).value(n, &shape)?);
    }
    Ok(out)
}

fn gather(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let iv = input(n, a, 1)?;
    let (ind, is) = (i64s(iv), iv.shape());
    let (d, _) = Data::of(x);
    match n.op_type.as_str() {
        "Gather" => {
            let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
            let (outer, len, inner) = split3(&s, ax);
            let ind: Vec<usize> = ind
                .iter()
                .map(|&i| index(n, i, len))
                .collect::<Result<_>>()?;
            let mut idx = Vec::with_capacity(outer * ind.len() * inner);
            for o in 0..outer {
                for &k in &ind {
                    for i in 0..inner {
                        idx.push((o * len + k) * inner + i);
                    }
                }
            }
            let mut shape = s[..ax].to_vec();
            shape.extend(&is);
            shape.extend(&s[ax + 1..]);
            Ok(vec![d.pick(&idx).value(n, &shape)?])
        }
        "GatherElements" => {
            let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
            if is.len() != s.len() {
                return Err(node_err(n, format!("indices {is:?} for data {s:?}")));
            }
            let st = strides(&s);
            let ist = strides(&is);
            let mut idx = Vec::with_capacity(ind.len());
            for (e, &i) in ind.iter().enumerate() {
                let mut off = 0;
                for dd in 0..s.len() {
                    let c = if dd == ax {
                        index(n, i, s[ax])?
                    } else {
                        let c = (e / ist[dd]) % is[dd];
                        if c >= s[dd] {
                            return Err(node_err(n, format!("indices {is:?} for data {s:?}")));
                        }
                        c
                    };
                    off += c * st[dd];
                }
                idx.push(off);
            }
            Ok(vec![d.pick(&idx).value(n, &is)?])
        }
        _ => {
            // GatherND
            let b = attr_int(n, "batch_dims", 0)?.max(0) as usize;
            let k = *is.last().ok_or_else(|| node_err(n, "indices of rank 0"))?;
            if b + k > s.len() || b >= is.len() {
                return Err(node_err(n, format!("indices {is:?} for data {s:?}")));
            }
            let st = strides(&s);
            let inner: usize = s[b + k..].iter().product();
            let batch: usize = s[..b].iter().product();
            let per_batch: usize = is[b..is.len() - 1].iter().product();
            let bstride: usize = s[b..].iter().product();
            let mut idx = Vec::new();
            for bi in 0..batch {
                for p in 0..per_batch {
                    let row = &ind[(bi * per_batch + p) * k..(bi * per_batch + p + 1) * k];
                    let mut off = bi * bstride;
                    for (j, &v) in row.iter().enumerate() {
                        off += index(n, v, s[b + j])? * st[b + j];
                    }
                    idx.extend(off..off + inner);
                }
            }
            let mut shape = is[..is.len() - 1].to_vec();
            shape.extend(&s[b + k..]);
            Ok(vec![d.pick(&idx).value(n, &shape)?])
        }
    }
}

fn scatter(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let iv = input(n, a, 1)?;
    let (ind, is) = (i64s(iv), iv.shape());
    let upd = input(n, a, 2)?;
    let red = attr_str(n, "reduction", "none")?;
    let (d, _) = Data::of(x);
    let mut y = d.f64s();
    let u = Data::of(upd).0.f64s();
    let st = strides(&s);
    let mut put = |off: usize, v: f64| {
        let o = &mut y[off];
        *o = match red.as_str() {
            "add" => *o + v,
            "mul" => *o * v,
            "max" => o.max(v),
            "min" => o.min(v),
            _ => v,
        };
    };
    if n.op_type == "ScatterND" {
        let k = *is.last().ok_or_else(|| node_err(n, "indices of rank 0"))?;
        if k > s.len() {
            return Err(node_err(n, format!("indices {is:?} for data {s:?}")));
        }
        let inner: usize = s[k..].iter().product();
        let rows = ind.len() / k.max(1);
        if u.len() != rows * inner {
            return Err(node_err(n, "updates do not match the indices"));
        }
        for r in 0..rows {
            let mut off = 0;
            for j in 0..k {
                off += index(n, ind[r * k + j], s[j])? * st[j];
            }
            for i in 0..inner {
                put(off + i, u[r * inner + i]);
            }
        }
    } else {
        let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
        if is.len() != s.len() || u.len() != ind.len() {
            return Err(node_err(n, format!("indices {is:?} for data {s:?}")));
        }
        let ist = strides(&is);
        for (e, &i) in ind.iter().enumerate() {
            let mut off = 0;
            for dd in 0..s.len() {
                let c = if dd == ax {
                    index(n, i, s[ax])?
                } else {
                    (e / ist[dd]) % is[dd]
                };
                off += c * st[dd];
            }
            put(off, u[e]);
        }
    }
    Ok(vec![match d {
        Data::F(_) => Data::F(y.iter().map(|&v| v as f32).collect()),
        Data::I(_) => Data::I(y.iter().map(|&v| v as i64).collect()),
    }
    .value(n, &s)?])
}

fn expand_tile(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let (d, _) = Data::of(x);
    let arg = ints(n, a, 1)?;
    if n.op_type == "Expand" {
        let want: Vec<usize> = arg.iter().map(|&v| v.max(0) as usize).collect();
        let out = broadcast(n, &[s.clone(), want])?;
        return Ok(vec![d.pick(&bindex(&out, &s)).value(n, &out)?]);
    }
    if arg.len() != s.len() {
        return Err(node_err(n, format!("repeats {arg:?} for shape {s:?}")));
    }
    let lists: Vec<Vec<Option<usize>>> = s
        .iter()
        .zip(arg)
        .map(|(&dim, &r)| some((0..dim * r.max(0) as usize).map(|j| j % dim).collect()))
        .collect();
    let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
    Ok(vec![d
        .pick(&unwrap_all(take(&s, &lists)))
        .value(n, &shape)?])
}

fn pad(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let r = s.len();
    let mode = attr_str(n, "mode", "constant")?;
    let (pads, value) = if opset < 11 {
        (
            attr_ints(n, "pads")?.unwrap_or_default(),
            attr_float(n, "value", 0.0)? as f64,
        )
    } else {
        (
            ints(n, a, 1)?.to_vec(),
            given(a, 2).map_or(0.0, |v| {
                Data::of(v).0.f64s().first().copied().unwrap_or(0.0)
            }),
        )
    };
    let axes: Vec<usize> = match given(a, 3) {
        Some(v) => i64s(v)
            .iter()
            .map(|&d| axis(n, d, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(node_err(
            n,
            format!("{} pads for {} axes", pads.len(), axes.len()),
        ));
    }
    let mut lists: Vec<Vec<Option<usize>>> = s.iter().map(|&d| some((0..d).collect())).collect();
    for (k, &ax) in axes.iter().enumerate() {
        let (b, e) = (pads[k], pads[k + axes.len()]);
        let dim = s[ax] as i64;
        let len = dim + b + e;
        if len < 0 {
            return Err(node_err(n, format!("pads {pads:?} remove more than {s:?}")));
        }
        if dim == 0 && mode != "constant" && len > 0 {
            return Err(node_err(n, format!("'{mode}' padding of an empty axis")));
        }
        lists[ax] = (0..len)
            .map(|j| {
                let src = j - b;
                if (0..dim).contains(&src) {
                    return Some(src as usize);
                }
                match mode.as_str() {
                    "edge" => Some(src.clamp(0, dim - 1) as usize),
                    "wrap" => Some(src.rem_euclid(dim) as usize),
                    "reflect" => {
                        if dim == 1 {
                            return Some(0);
                        }
                        let p = 2 * (dim - 1);
                        let m = src.rem_euclid(p);
                        Some((if m < dim { m } else { p - m }) as usize)
                    }
                    _ => None,
                }
            })
            .collect();
    }
    if !matches!(mode.as_str(), "constant" | "edge" | "wrap" | "reflect") {
        return Err(node_err(n, format!("mode '{mode}'")));
    }
    let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
    let (d, _) = Data::of(x);
    Ok(vec![d
        .pick_or(&take(&s, &lists), value)
        .value(n, &shape)?])
}

fn range(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let (st, li, de) = (input(n, a, 0)?, input(n, a, 1)?, input(n, a, 2)?);
    let f = |v: &Value| Data::of(v).0.f64s().first().copied().unwrap_or(0.0);
    let (s0, l, d) = (f(st), f(li), f(de));
    if d == 0.0 {
        return Err(node_err(n, "a delta of 0"));
    }
    let count = ((l - s0) / d).ceil().max(0.0);
    if count > (1u64 << 31) as f64 {
        return Err(node_err(n, format!("{count} elements")));
    }
    let count = count as usize;
    match st {
        Value::I(..) => {
            let (s0, d) = (i64s(st)[0], i64s(de)[0]);
            ival((0..count as i64).map(|i| s0 + i * d).collect(), &[count])
        }
        Value::F(_) => {
            // accumulated as the reference does: start, start + delta, …
            let (s0, d) = (f32s(st)[0], f32s(de)[0]);
            let mut v = Vec::with_capacity(count);
            let mut x = s0;
            for _ in 0..count {
                v.push(x);
                x += d;
            }
            fval(n, v, &[count])
        }
    }
}

fn trilu(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err(node_err(
            n,
            format!("input {s:?}: rank 2 or more is needed"),
        ));
    }
    let k = match given(a, 1) {
        Some(v) => i64s(v).first().copied().unwrap_or(0),
        None => 0,
    };
    let upper = attr_int(n, "upper", 1)? != 0;
    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
    let (d, _) = Data::of(x);
    let idx: Vec<Option<usize>> = (0..d.len())
        .map(|e| {
            let (i, j) = (((e / cols) % rows) as i64, (e % cols) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            keep.then_some(e)
        })
        .collect();
    Ok(vec![d.pick_or(&idx, 0.0).value(n, &s)?])
}

fn depth_space(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    if s.len() != 4 {
        return Err(node_err(n, format!("input {s:?}: (N, C, H, W) is needed")));
    }
    let b = attr_int(n, "blocksize", 0)?;
    if b < 1 {
        return Err(node_err(n, "attribute 'blocksize' must be positive"));
    }
    let b = b as usize;
    let (nb, c, h, w) = (s[0], s[1], s[2], s[3]);
    let (d, _) = Data::of(x);
    let mut idx = Vec::with_capacity(d.len());
    let shape;
    if n.op_type == "DepthToSpace" {
        if c % (b * b) != 0 {
            return Err(node_err(n, format!("{c} channels for block {b}")));
        }
        let oc = c / (b * b);
        let crd = attr_str(n, "mode", "DCR")? == "CRD";
        shape = vec![nb, oc, h * b, w * b];
        for ni in 0..nb {
            for co in 0..oc {
                for y in 0..h * b {
                    for xx in 0..w * b {
                        let (by, bx) = (y % b, xx % b);
                        let ci = if crd {
                            co * b * b + by * b + bx
                        } else {
                            (by * b + bx) * oc + co
                        };
                        idx.push(((ni * c + ci) * h + y / b) * w + xx / b);
                    }
                }
            }
        }
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(node_err(n, format!("{h}×{w} for block {b}")));
        }
        let (oh, ow) = (h / b, w / b);
        shape = vec![nb, c * b * b, oh, ow];
        for ni in 0..nb {
            for co in 0..c * b * b {
                let (blk, ci) = (co / c, co % c);
                let (by, bx) = (blk / b, blk % b);
                for y in 0..oh {
                    for xx in 0..ow {
                        idx.push(((ni * c + ci) * h + y * b + by) * w + xx * b + bx);
                    }
                }
            }
        }
    }
    Ok(vec![d.pick(&idx).value(n, &shape)?])
}

fn one_hot(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let iv = input(n, a, 0)?;
    let (ind, is) = (Data::of(iv).0.f64s(), iv.shape());
    let depth = Data::of(input(n, a, 1)?)
        .0
        .f64s()
        .first()
        .copied()
        .unwrap_or(0.0) as i64;
    if depth < 1 {
        return Err(node_err(n, format!("depth {depth}")));
    }
    let vals = input(n, a, 2)?;
    let (vd, _) = Data::of(vals);
    if vd.len() != 2 {
        return Err(node_err(n, "values must be [off, on]"));
    }
    let r = is.len() + 1;
    let ax = axis(n, attr_int(n, "axis", -1)?, r)?;
    let mut shape = is.clone();
    shape.insert(ax, depth as usize);
    let (outer, inner) = (
        is[..ax].iter().product::<usize>(),
        is[ax..].iter().product::<usize>(),
    );
    let mut idx = Vec::with_capacity(outer * inner * depth as usize);
    for o in 0..outer {
        for k in 0..depth {
            for i in 0..inner {
                let mut v = ind[o * inner + i] as i64;
                if v < 0 {
                    v += depth;
                }
                idx.push((v == k) as usize);
            }
        }
    }
    Ok(vec![vd.pick(&idx).value(n, &shape)?])
}

fn eye_like(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    if s.len() != 2 {
        return Err(node_err(n, format!("input {s:?}: a matrix is needed")));
    }
    let k = attr_int(n, "k", 0)?;
    let v: Vec<f32> = (0..s[0] * s[1])
        .map(|e| ((e % s[1]) as i64 - (e / s[1]) as i64 == k) as u8 as f32)
        .collect();
    let ty = match attr(n, "dtype") {
        Some(AttrValue::Int(t)) => *t as i32,
        _ => match x {
            Value::F(_) => dtype::FLOAT,
            Value::I(..) => dtype::INT64,
        },
    };
    Ok(vec![conform(
        n,
        Value::F(t(n, Tensor::from_vec(v, &s))?),
        ty,
    )?])
}

fn non_zero(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let d = Data::of(x).0.f64s();
    let nz: Vec<usize> = (0..d.len()).filter(|&e| d[e] != 0.0).collect();
    let st = strides(&s);
    let mut out = Vec::with_capacity(s.len() * nz.len());
    for dd in 0..s.len() {
        out.extend(nz.iter().map(|&e| ((e / st[dd]) % s[dd]) as i64));
    }
    ival(out, &[s.len(), nz.len()])
}

fn top_k(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let ax = axis(n, attr_int(n, "axis", -1)?, s.len())?;
    let k = if opset < 10 {
        attr_int(n, "k", 0)?
    } else {
        scalar_int(n, a, 1)?
    };
    let (outer, len, inner) = split3(&s, ax);
    if k < 0 || k as usize > len {
        return Err(node_err(n, format!("k = {k} for an axis of {len}")));
    }
    let k = k as usize;
    let largest = attr_int(n, "largest", 1)? != 0;
    let (d, _) = Data::of(x);
    let v = d.f64s();
    let mut idx = Vec::with_capacity(outer * k * inner);
    let mut pos = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut order: Vec<usize> = (0..len).collect();
            order.sort_by(|&p, &q| {
                let (vp, vq) = (v[at(p)], v[at(q)]);
                let c = if largest {
                    vq.partial_cmp(&vp)
                } else {
                    vp.partial_cmp(&vq)
                };
                c.unwrap_or(std::cmp::Ordering::Equal).then(p.cmp(&q))
            });
            for (j, &p) in order[..k].iter().enumerate() {
                pos[(o * k + j) * inner + i] = p as i64;
            }
        }
    }
    for o in 0..outer {
        for j in 0..k {
            for i in 0..inner {
                idx.push((o * len + pos[(o * k + j) * inner + i] as usize) * inner + i);
            }
        }
    }
    let mut shape = s.clone();
    shape[ax] = k;
    Ok(vec![d.pick(&idx).value(n, &shape)?, Value::I(pos, shape)])
}

fn compress(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let cond = i64s(input(n, a, 1)?);
    let (d, _) = Data::of(x);
    match attr(n, "axis") {
        None => {
            let idx: Vec<usize> = (0..d.len().min(cond.len()))
                .filter(|&e| cond[e] != 0)
                .collect();
            let len = idx.len();
            Ok(vec![d.pick(&idx).value(n, &[len])?])
        }
        Some(_) => {
            let ax = axis(n, attr_int(n, "axis", 0)?, s.len())?;
            let mut lists: Vec<Vec<Option<usize>>> =
                s.iter().map(|&d| some((0..d).collect())).collect();
            lists[ax] = some(
                (0..s[ax].min(cond.len()))
                    .filter(|&e| cond[e] != 0)
                    .collect(),
            );
            let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
            Ok(vec![d
                .pick(&unwrap_all(take(&s, &lists)))
                .value(n, &shape)?])
        }
    }
}

fn reverse_sequence(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err(node_err(
            n,
            format!("input {s:?}: rank 2 or more is needed"),
        ));
    }
    let lens = i64s(input(n, a, 1)?);
    let ta = axis(n, attr_int(n, "time_axis", 0)?, s.len())?;
    let ba = axis(n, attr_int(n, "batch_axis", 1)?, s.len())?;
    let st = strides(&s);
    let (d, _) = Data::of(x);
    let idx: Vec<usize> = (0..d.len())
        .map(|e| {
            let (tt, b) = ((e / st[ta]) % s[ta], (e / st[ba]) % s[ba]);
            let l = lens.get(b).copied().unwrap_or(0).clamp(0, s[ta] as i64) as usize;
            if tt < l {
                e - tt * st[ta] + (l - 1 - tt) * st[ta]
            } else {
                e
            }
        })
        .collect();
    Ok(vec![d.pick(&idx).value(n, &s)?])
}

// ---- Resize ---------------------------------------------------------------------------------

/// One output coordinate of a 1-D resampling: the extrapolation value, or source indices
/// (clamped into the input) with their weights.
enum Tap {
    Fill,
    Mix(Vec<(usize, f64)>),
}

struct ResizeMode {
    mode: String,
    coord: String,
    nearest: String,
    cubic_a: f64,
    exclude_outside: bool,
    antialias: bool,
}

/// The interpolation weights for a point `ratio` past the sample on its left, as ONNX's
/// reference defines them for each mode.
fn resize_coeffs(m: &ResizeMode, ratio: f64, scale: f64) -> Vec<f64> {
    match m.mode.as_str() {
        "nearest" => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let up = match m.nearest.as_str() {
                "round_prefer_ceil" => ratio >= 0.5,
                "floor" => false,
                "ceil" => true,
                _ => ratio > 0.5,
            };
            vec![(!up) as u8 as f64, up as u8 as f64]
        }
        "linear" if m.antialias && scale < 1.0 => {
            let start = (-1.0 / scale).floor() as i64 + 1;
            let foot = 2 - 2 * start;
            let c: Vec<f64> = (start..start + foot)
                .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                .collect();
            let sum: f64 = c.iter().sum();
            c.iter().map(|v| v / sum).collect()
        }
        "linear" => vec![1.0 - ratio, ratio],
        _ => {
            let a = m.cubic_a;
            if m.antialias && scale < 1.0 {
                let k = |x: f64| {
                    let x = x.abs();
                    if x <= 1.0 {
                        (a + 2.0) * x * x * x - (a + 3.0) * x * x + 1.0
                    } else if x < 2.0 {
                        a * x * x * x - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / scale).floor() as i64 + 1;
                let c: Vec<f64> = (start..2 - start)
                    .map(|i| k(scale * (i as f64 - ratio)))
                    .collect();
                let sum: f64 = c.iter().sum();
                return c.iter().map(|v| v / sum).collect();
            }
            let r = ratio;
            let s = 1.0 - r;
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
            ]
        }
    }
}

/// The taps of each of `out` output coordinates resampling `len` inputs.
fn resize_taps(m: &ResizeMode, len: usize, out: usize, scale: f64, roi: (f64, f64)) -> Vec<Tap> {
    let (lf, of) = (len as f64, scale * len as f64);
    (0..out)
        .map(|x| {
            let xf = x as f64;
            let ori = match m.coord.as_str() {
                "align_corners" if of == 1.0 => 0.0,
                "align_corners" => xf * (lf - 1.0) / (of - 1.0),
                "asymmetric" => xf / scale,
                // opset 11's mode for nearest sampling in TensorFlow's manner
                "tf_half_pixel_for_nn" => (xf + 0.5) / scale,
                "tf_crop_and_resize" => {
                    let o = if of == 1.0 {
                        (roi.1 - roi.0) * (lf - 1.0) / 2.0
                    } else {
                        xf * (roi.1 - roi.0) * (lf - 1.0) / (of - 1.0)
                    } + roi.0 * (lf - 1.0);
                    if o < 0.0 || o > lf - 1.0 {
                        return Tap::Fill;
                    }
                    o
                }
                "pytorch_half_pixel" if of == 1.0 => -0.5,
                "half_pixel_symmetric" => {
                    let adj = out as f64 / of;
                    let offset = lf / 2.0 * (1.0 - adj);
                    offset + (xf + 0.5) / scale - 0.5
                }
                _ => (xf + 0.5) / scale - 0.5,
            };
            let ratio = if ori.fract() == 0.0 {
                1.0
            } else {
                ori - ori.floor()
            };
            let mut c = resize_coeffs(m, ratio, scale);
            let k = c.len();
            // the k samples nearest to `ori` in the input padded by ⌈k/2⌉ at each end (edge
            // values), ties to the lower index
            let pw = k.div_ceil(2) as i64;
            let padded = len as i64 + 2 * pw;
            let xp = ori + pw as f64;
            let mut lo = (xp.floor() as i64 - k as i64).max(0);
            let mut hi = (lo + k as i64).min(padded);
            lo = (hi - k as i64).max(0);
            // slide the window of k while its far end is nearer than its near end
            while hi < padded && ((hi as f64 - xp).abs() < (xp - lo as f64).abs()) {
                lo += 1;
                hi += 1;
            }
            let idx: Vec<i64> = (lo..hi).map(|i| i - pw).collect();
            if m.exclude_outside {
                for (j, &i) in idx.iter().enumerate() {
                    if i < 0 || i >= len as i64 {
                        c[j] = 0.0;
                    }
                }
                let sum: f64 = c.iter().sum();
                c.iter_mut().for_each(|v| *v /= sum);
            }
            Tap::Mix(
                idx.iter()
                    .zip(&c)
                    .map(|(&i, &w)| (i.clamp(0, len as i64 - 1) as usize, w))
                    .collect(),
            )
        })
        .collect()
}

fn resize(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let s = x.shape();
    let r = s.len();
    let nonempty = |i: usize| given(a, i).filter(|v| v.shape().iter().product::<usize>() > 0);
    let (roi, scales, sizes) = if opset < 11 {
        (None, nonempty(1).map(|v| Data::of(v).0.f64s()), None)
    } else {
        (
            nonempty(1).map(|v| Data::of(v).0.f64s()),
            nonempty(2).map(|v| Data::of(v).0.f64s()),
            nonempty(3).map(i64s),
        )
    };
    let axes: Vec<usize> = match attr_ints(n, "axes")? {
        Some(v) => v.iter().map(|&d| axis(n, d, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let na = axes.len();
    let mut scale = vec![1.0f64; r];
    let mut out = s.clone();
    let mut roi_full: Vec<(f64, f64)> = vec![(0.0, 1.0); r];
    if let Some(roi) = &roi {
        if roi.len() != 2 * na {
            return Err(node_err(
                n,
                format!("roi of {} values for {na} axes", roi.len()),
            ));
        }
        for (i, &d) in axes.iter().enumerate() {
            roi_full[d] = (roi[i], roi[na + i]);
        }
    }
    match (scales, sizes) {
        (Some(sc), _) => {
            if sc.len() != na {
                return Err(node_err(n, format!("{} scales for {na} axes", sc.len())));
            }
            for (i, &d) in axes.iter().enumerate() {
                if sc[i] <= 0.0 {
                    return Err(node_err(n, format!("scale {}", sc[i])));
                }
                scale[d] = sc[i];
                out[d] = (sc[i] * s[d] as f64) as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != na {
                return Err(node_err(n, format!("{} sizes for {na} axes", sz.len())));
            }
            for (i, &d) in axes.iter().enumerate() {
                out[d] = sz[i].max(0) as usize;
                scale[d] = out[d] as f64 / s[d] as f64;
            }
            let policy = attr_str(n, "keep_aspect_ratio_policy", "stretch")?;
            if policy != "stretch" {
                let sel = axes.iter().map(|&d| scale[d]);
                let k = if policy == "not_larger" {
                    sel.fold(f64::INFINITY, f64::min)
                } else {
                    sel.fold(0.0, f64::max)
                };
                for &d in &axes {
                    scale[d] = k;
                    out[d] = (k * s[d] as f64 + 0.5) as usize;
                }
            }
        }
        (None, None) => return Err(node_err(n, "neither scales nor sizes is given")),
    }
    let m = ResizeMode {
        mode: attr_str(n, "mode", "nearest")?,
        coord: attr_str(n, "coordinate_transformation_mode", "half_pixel")?,
        nearest: attr_str(n, "nearest_mode", "round_prefer_floor")?,
        cubic_a: attr_float(n, "cubic_coeff_a", -0.75)? as f64,
        exclude_outside: attr_int(n, "exclude_outside", 0)? != 0,
        antialias: attr_int(n, "antialias", 0)? != 0,
    };
    if !matches!(m.mode.as_str(), "nearest" | "linear" | "cubic") {
        return Err(node_err(n, format!("mode '{}'", m.mode)));
    }
    if !matches!(
        m.coord.as_str(),
        "half_pixel"
            | "half_pixel_symmetric"
            | "pytorch_half_pixel"
            | "align_corners"
            | "asymmetric"
            | "tf_crop_and_resize"
            | "tf_half_pixel_for_nn"
    ) {
        return Err(node_err(
            n,
            format!("coordinate_transformation_mode '{}'", m.coord),
        ));
    }
    let fill = attr_float(n, "extrapolation_value", 0.0)? as f64;
    let (data, _) = Data::of(x);
    let mut d = data.f64s();
    let mut cur = s.clone();
    for ax in 0..r {
        let identity = (scale[ax] - 1.0).abs() < 1e-9
            && out[ax] == cur[ax]
            && (roi_full[ax].0.abs() < 1e-9 && (roi_full[ax].1 - 1.0).abs() < 1e-9
                || m.coord != "tf_crop_and_resize");
        if identity {
            continue;
        }
        if cur[ax] == 0 {
            return Err(node_err(n, format!("resizing an empty axis of {s:?}")));
        }
        let taps = resize_taps(&m, cur[ax], out[ax], scale[ax], roi_full[ax]);
        let (outer, len, inner) = split3(&cur, ax);
        let mut y = vec![0f64; outer * out[ax] * inner];
        for o in 0..outer {
            for (j, tap) in taps.iter().enumerate() {
                for i in 0..inner {
                    y[(o * out[ax] + j) * inner + i] = match tap {
                        Tap::Fill => fill,
                        Tap::Mix(w) => w
                            .iter()
                            .map(|&(k, c)| c * d[(o * len + k) * inner + i])
                            .sum(),
                    };
                }
            }
        }
        d = y;
        cur[ax] = out[ax];
    }
    match data {
        Data::F(_) => fval(n, d.iter().map(|&v| v as f32).collect(), &out),
        Data::I(_) => ival(d.iter().map(|&v| v.round() as i64).collect(), &out),
    }
}

// ---- recurrent layers -----------------------------------------------------------------------

/// An activation of the recurrent ops, by its ONNX name, with its alpha and beta.
fn rnn_activation(
    n: &Node,
    name: &str,
    alpha: Option<f32>,
    beta: Option<f32>,
) -> Result<Box<dyn Fn(f64) -> f64>> {
    let al = |d: f64| alpha.map_or(d, f64::from);
    let be = |d: f64| beta.map_or(d, f64::from);
    Ok(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => Box::new(|x: f64| 1.0 / (1.0 + (-x).exp())),
        "tanh" => Box::new(f64::tanh),
        "relu" => Box::new(|x: f64| x.max(0.0)),
        "affine" => {
            let (a, b) = (al(1.0), be(0.0));
            Box::new(move |x: f64| a * x + b)
        }
        "leakyrelu" => {
            let a = al(0.01);
            Box::new(move |x: f64| if x < 0.0 { a * x } else { x })
        }
        "thresholdedrelu" => {
            let a = al(1.0);
            Box::new(move |x: f64| if x > a { x } else { 0.0 })
        }
        "scaledtanh" => {
            let (a, b) = (al(1.0), be(1.0));
            Box::new(move |x: f64| a * (b * x).tanh())
        }
        "hardsigmoid" => {
            let (a, b) = (al(0.2), be(0.5));
            Box::new(move |x: f64| (a * x + b).clamp(0.0, 1.0))
        }
        "elu" => {
            let a = al(1.0);
            Box::new(move |x: f64| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        "softsign" => Box::new(|x: f64| x / (1.0 + x.abs())),
        "softplus" => Box::new(softplus),
        other => return Err(node_err(n, format!("activation '{other}'"))),
    })
}

/// RNN, GRU and LSTM as ONNX defines them: gates in the order i (RNN), z r h (GRU), i o f c
/// (LSTM), both directions, per-sequence lengths, clipping and the activations given.
fn recurrent(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let op = n.op_type.as_str();
    let gates = match op {
        "RNN" => 1,
        "GRU" => 3,
        _ => 4,
    };
    let x = input(n, a, 0)?;
    let (w, r) = (input(n, a, 1)?, input(n, a, 2)?);
    let (xs, ws, rs) = (x.shape(), w.shape(), r.shape());
    let layout = attr_int(n, "layout", 0)?;
    if xs.len() != 3 || ws.len() != 3 || rs.len() != 3 {
        return Err(node_err(
            n,
            format!("X {xs:?}, W {ws:?}, R {rs:?}: three 3-D tensors are needed"),
        ));
    }
    let (seq, batch, inp) = if layout == 0 {
        (xs[0], xs[1], xs[2])
    } else {
        (xs[1], xs[0], xs[2])
    };
    let dirs = ws[0];
    let hid = rs[2];
    let direction = attr_str(n, "direction", "forward")?;
    let want_dirs = if direction == "bidirectional" { 2 } else { 1 };
    if dirs != want_dirs
        || ws[1] != gates * hid
        || ws[2] != inp
        || rs[0] != dirs
        || rs[1] != gates * hid
    {
        return Err(node_err(
            n,
            format!("X {xs:?}, W {ws:?}, R {rs:?} do not fit {gates} gates of {hid}, direction '{direction}'"),
        ));
    }
    let xd = f32s(x);
    let at_x = |t: usize, b: usize, i: usize| {
        if layout == 0 {
            xd[(t * batch + b) * inp + i]
        } else {
            xd[(b * seq + t) * inp + i]
        }
    };
    let (wd, rd) = (f32s(w), f32s(r));
    let bd = given(a, 3).map(f32s);
    if bd
        .as_ref()
        .is_some_and(|b| b.len() != dirs * 2 * gates * hid)
    {
        return Err(node_err(n, "B is not (directions, 2 × gates × hidden)"));
    }
    let lens: Vec<usize> = match given(a, 4) {
        Some(v) => i64s(v)
            .iter()
            .map(|&l| (l.max(0) as usize).min(seq))
            .collect(),
        None => vec![seq; batch],
    };
    if lens.len() != batch {
        return Err(node_err(
            n,
            format!("{} sequence lengths for batch {batch}", lens.len()),
        ));
    }
    // initial states (directions, batch, hidden), or (batch, directions, hidden) in layout 1
    let state = |i: usize| -> Result<Vec<f64>> {
        let Some(v) = given(a, i) else {
            return Ok(vec![0.0; dirs * batch * hid]);
        };
        let d = f32s(v);
        if d.len() != dirs * batch * hid {
            return Err(node_err(n, format!("initial state {:?}", v.shape())));
        }
        let mut out = vec![0.0; d.len()];
        for dd in 0..dirs {
            for b in 0..batch {
                for h in 0..hid {
                    let src = if layout == 0 {
                        (dd * batch + b) * hid + h
                    } else {
                        (b * dirs + dd) * hid + h
                    };
                    out[(dd * batch + b) * hid + h] = d[src] as f64;
                }
            }
        }
        Ok(out)
    };
    let h0 = state(5)?;
    let c0 = if op == "LSTM" { state(6)? } else { Vec::new() };
    let peep = if op == "LSTM" {
        given(a, 7).map(f32s)
    } else {
        None
    };
    let clip = match attr(n, "clip") {
        Some(AttrValue::Float(c)) => Some(*c as f64),
        _ => None,
    };
    let names: Vec<String> = match attr(n, "activations") {
        Some(AttrValue::Strings(v)) => v
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        _ => {
            let one: &[&str] = match op {
                "RNN" => &["Tanh"],
                "GRU" => &["Sigmoid", "Tanh"],
                _ => &["Sigmoid", "Tanh", "Tanh"],
            };
            one.iter()
                .cycle()
                .take(one.len() * dirs)
                .map(|s| s.to_string())
                .collect()
        }
    };
    let per_dir = match op {
        "RNN" => 1,
        "GRU" => 2,
        _ => 3,
    };
    if names.len() != per_dir * dirs {
        return Err(node_err(
            n,
            format!("{} activations for {dirs} direction(s)", names.len()),
        ));
    }
    let alphas = attr_floats(n, "activation_alpha")?;
    let betas = attr_floats(n, "activation_beta")?;
    let acts: Vec<Box<dyn Fn(f64) -> f64>> = names
        .iter()
        .enumerate()
        .map(|(i, nm)| rnn_activation(n, nm, alphas.get(i).copied(), betas.get(i).copied()))
        .collect::<Result<_>>()?;
    let lbr = attr_int(n, "linear_before_reset", 0)? != 0;
    let couple = attr_int(n, "input_forget", 0)? != 0;
    let mut y = vec![0f64; seq * dirs * batch * hid];
    let mut yh = vec![0f64; dirs * batch * hid];
    let mut yc = vec![0f64; dirs * batch * hid];
    let gh = gates * hid;
    for d in 0..dirs {
        let reverse = direction == "reverse" || d == 1;
        let f = &acts[d * per_dir..(d + 1) * per_dir];
        let wrow = |g: usize, i: usize| &wd[(d * gh + g) * inp + i];
        let rrow = |g: usize, i: usize| rd[(d * gh + g) * hid + i] as f64;
        let bias = |g: usize| bd.as_ref().map_or(0.0, |b| b[d * 2 * gh + g] as f64);
        let rbias = |g: usize| bd.as_ref().map_or(0.0, |b| b[d * 2 * gh + gh + g] as f64);
        let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c, c));
        for b in 0..batch {
            let mut h: Vec<f64> = h0[(d * batch + b) * hid..(d * batch + b + 1) * hid].to_vec();
            let mut c: Vec<f64> = if op == "LSTM" {
                c0[(d * batch + b) * hid..(d * batch + b + 1) * hid].to_vec()
            } else {
                Vec::new()
            };
            for step in 0..lens[b] {
                let tt = if reverse { lens[b] - 1 - step } else { step };
                // xw[g] = x·W[g] + Wb[g]; hr[g] = h·R[g] + Rb[g]
                let xw: Vec<f64> = (0..gh)
                    .map(|g| {
                        (0..inp)
                            .map(|i| at_x(tt, b, i) as f64 * *wrow(g, i) as f64)
                            .sum::<f64>()
                            + bias(g)
                    })
                    .collect();
                let hr: Vec<f64> = (0..gh)
                    .map(|g| (0..hid).map(|i| h[i] * rrow(g, i)).sum::<f64>() + rbias(g))
                    .collect();
                let new_h: Vec<f64> = match op {
                    "RNN" => (0..hid).map(|k| f[0](cl(xw[k] + hr[k]))).collect(),
                    "GRU" => {
                        let z: Vec<f64> = (0..hid).map(|k| f[0](cl(xw[k] + hr[k]))).collect();
                        let rr: Vec<f64> = (0..hid)
                            .map(|k| f[0](cl(xw[hid + k] + hr[hid + k])))
                            .collect();
                        (0..hid)
                            .map(|k| {
                                let g = 2 * hid + k;
                                let pre = if lbr {
                                    xw[g] + rr[k] * hr[g]
                                } else {
                                    let rh: f64 = (0..hid).map(|i| rr[i] * h[i] * rrow(g, i)).sum();
                                    xw[g] + rh + rbias(g)
                                };
                                let hh = f[1](cl(pre));
                                (1.0 - z[k]) * hh + z[k] * h[k]
                            })
                            .collect()
                    }
                    _ => {
                        let p = |j: usize, k: usize| {
                            peep.as_ref()
                                .map_or(0.0, |p| p[d * 3 * hid + j * hid + k] as f64)
                        };
                        let mut out = vec![0.0; hid];
                        for k in 0..hid {
                            let i = f[0](cl(xw[k] + hr[k] + p(0, k) * c[k]));
                            let fg = if couple {
                                1.0 - i
                            } else {
                                f[0](cl(xw[2 * hid + k] + hr[2 * hid + k] + p(2, k) * c[k]))
                            };
                            let cc = f[1](cl(xw[3 * hid + k] + hr[3 * hid + k]));
                            c[k] = fg * c[k] + i * cc;
                            let o = f[0](cl(xw[hid + k] + hr[hid + k] + p(1, k) * c[k]));
                            out[k] = o * f[2](c[k]);
                        }
                        out
                    }
                };
                h = new_h;
                let at = ((tt * dirs + d) * batch + b) * hid;
                y[at..at + hid].copy_from_slice(&h);
            }
            yh[(d * batch + b) * hid..(d * batch + b + 1) * hid].copy_from_slice(&h);
            if op == "LSTM" {
                yc[(d * batch + b) * hid..(d * batch + b + 1) * hid].copy_from_slice(&c);
            }
        }
    }
    let f32v = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (y, yh, yc, ys, hs) = if layout == 0 {
        (
            f32v(&y),
            f32v(&yh),
            f32v(&yc),
            vec![seq, dirs, batch, hid],
            vec![dirs, batch, hid],
        )
    } else {
        // Y (batch, seq, directions, hidden); states (batch, directions, hidden)
        let mut y1 = vec![0f32; y.len()];
        for t in 0..seq {
            for d in 0..dirs {
                for b in 0..batch {
                    for k in 0..hid {
                        y1[((b * seq + t) * dirs + d) * hid + k] =
                            y[((t * dirs + d) * batch + b) * hid + k] as f32;
                    }
                }
            }
        }
        let swap = |v: &[f64]| {
            let mut o = vec![0f32; v.len()];
            for d in 0..dirs {
                for b in 0..batch {
                    for k in 0..hid {
                        o[(b * dirs + d) * hid + k] = v[(d * batch + b) * hid + k] as f32;
                    }
                }
            }
            o
        };
        (
            y1,
            swap(&yh),
            swap(&yc),
            vec![batch, seq, dirs, hid],
            vec![batch, dirs, hid],
        )
    };
    let mut out = fval(n, y, &ys)?;
    out.extend(fval(n, yh, &hs)?);
    if op == "LSTM" {
        out.extend(fval(n, yc, &hs)?);
    }
    Ok(out)
}

fn attr_floats(n: &Node, name: &str) -> Result<Vec<f32>> {
    match attr(n, name) {
        None => Ok(Vec::new()),
        Some(AttrValue::Floats(v)) => Ok(v.clone()),
        Some(other) => Err(node_err(
            n,
            format!("attribute '{name}' should be floats, is {other:?}"),
        )),
    }
}

// ---- detection ------------------------------------------------------------------------------

/// NonMaxSuppression: per batch and class, boxes in descending score (ties: the lower index
/// first) kept unless their IoU with a kept one exceeds the threshold.
fn nms(n: &Node, a: &[Option<Value>]) -> Result<Vec<Value>> {
    let (bv, sv) = (input(n, a, 0)?, input(n, a, 1)?);
    let (bs, ss) = (bv.shape(), sv.shape());
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        return Err(node_err(
            n,
            format!("boxes {bs:?} and scores {ss:?}: (B, N, 4) and (B, C, N) are needed"),
        ));
    }
    let scalar_f = |i: usize| given(a, i).and_then(|v| Data::of(v).0.f64s().first().copied());
    let max_out = scalar_f(2).map_or(0, |v| v.max(0.0) as usize);
    let iou_t = scalar_f(3).unwrap_or(0.0);
    let score_t = scalar_f(4);
    let center = attr_int(n, "center_point_box", 0)? != 0;
    let (boxes, scores) = (Data::of(bv).0.f64s(), Data::of(sv).0.f64s());
    let (nb, nc, nbox) = (ss[0], ss[1], ss[2]);
    // (x_min, y_min, x_max, y_max)
    let corners = |bi: usize, k: usize| {
        let p = &boxes[(bi * nbox + k) * 4..(bi * nbox + k) * 4 + 4];
        if center {
            (
                p[0] - p[2] / 2.0,
                p[1] - p[3] / 2.0,
                p[0] + p[2] / 2.0,
                p[1] + p[3] / 2.0,
            )
        } else {
            (
                p[1].min(p[3]),
                p[0].min(p[2]),
                p[1].max(p[3]),
                p[0].max(p[2]),
            )
        }
    };
    let over = |p: (f64, f64, f64, f64), q: (f64, f64, f64, f64)| {
        let (ix0, ix1) = (p.0.max(q.0), p.2.min(q.2));
        let (iy0, iy1) = (p.1.max(q.1), p.3.min(q.3));
        if ix1 <= ix0 || iy1 <= iy0 {
            return false;
        }
        let inter = (ix1 - ix0) * (iy1 - iy0);
        let (a1, a2) = ((p.2 - p.0) * (p.3 - p.1), (q.2 - q.0) * (q.3 - q.1));
        let union = a1 + a2 - inter;
        a1 > 0.0 && a2 > 0.0 && union > 0.0 && inter / union > iou_t
    };
    let mut out = Vec::new();
    for bi in 0..nb {
        for c in 0..nc {
            let sc = &scores[(bi * nc + c) * nbox..(bi * nc + c + 1) * nbox];
            let mut cand: Vec<usize> = (0..nbox)
                .filter(|&k| score_t.is_none_or(|t| sc[k] > t))
                .collect();
            cand.sort_by(|&p, &q| {
                sc[q]
                    .partial_cmp(&sc[p])
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(p.cmp(&q))
            });
            let mut kept: Vec<usize> = Vec::new();
            for k in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&j| !over(corners(bi, k), corners(bi, j))) {
                    kept.push(k);
                    out.extend([bi as i64, c as i64, k as i64]);
                }
            }
        }
    }
    let rows = out.len() / 3;
    ival(out, &[rows, 3])
}

// ---- helpers of the control-flow ops --------------------------------------------------------

/// The first element of a value as an integer.
pub(crate) fn first_int(n: &Node, v: &Value) -> Result<i64> {
    i64s(v)
        .first()
        .copied()
        .ok_or_else(|| node_err(n, "an empty tensor where a scalar is needed"))
}

/// Values of one shape stacked along a new axis `ax`.
pub(crate) fn stack(n: &Node, parts: &[Value], ax: usize) -> Result<Value> {
    let Some(first) = parts.first() else {
        return Err(node_err(n, "nothing to stack (no iterations)"));
    };
    let s = first.shape();
    if parts.iter().any(|p| p.shape() != s) {
        return Err(node_err(n, "the iterations' outputs differ in shape"));
    }
    let mut d = match first {
        Value::F(_) => Data::F(Vec::new()),
        Value::I(..) => Data::I(Vec::new()),
    };
    for p in parts {
        match (&mut d, Data::of(p).0) {
            (Data::F(acc), Data::F(v)) => acc.extend(v),
            (Data::I(acc), Data::I(v)) => acc.extend(v),
            _ => return Err(node_err(n, "the iterations' outputs differ in type")),
        }
    }
    let mut shape = vec![parts.len()];
    shape.extend(&s);
    let v = d.value(n, &shape)?;
    if ax == 0 {
        Ok(v)
    } else {
        move_first_to(n, &v, ax)
    }
}

/// `v` with axis `ax` moved to the front.
pub(crate) fn move_axis_first(n: &Node, v: &Value, ax: usize) -> Result<Value> {
    let s = v.shape();
    let mut perm: Vec<usize> = vec![ax];
    perm.extend((0..s.len()).filter(|&d| d != ax));
    permute(n, v, &perm)
}

/// `v` with its first axis moved to position `ax`.
pub(crate) fn move_first_to(n: &Node, v: &Value, ax: usize) -> Result<Value> {
    let r = v.shape().len();
    let mut perm: Vec<usize> = (1..r).collect();
    perm.insert(ax, 0);
    permute(n, v, &perm)
}

pub(crate) fn permute(n: &Node, v: &Value, perm: &[usize]) -> Result<Value> {
    let s = v.shape();
    let st = strides(&s);
    let out: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let lists: Vec<Vec<Option<usize>>> = perm.iter().map(|&p| some((0..s[p]).collect())).collect();
    // the flat index of each output element: Σ index·stride of the source axis
    let mut idx = vec![0usize];
    for (d, list) in lists.iter().enumerate() {
        let stride = st[perm[d]];
        let mut next = Vec::with_capacity(idx.len() * list.len());
        for &i in &idx {
            for j in list.iter().flatten() {
                next.push(i + j * stride);
            }
        }
        idx = next;
    }
    Data::of(v).0.pick(&idx).value(n, &out)
}

/// Element `i` of `v`'s first axis.
pub(crate) fn index_first(n: &Node, v: &Value, i: usize) -> Result<Value> {
    let s = v.shape();
    let inner: usize = s[1..].iter().product();
    let idx: Vec<usize> = (i * inner..(i + 1) * inner).collect();
    Data::of(v).0.pick(&idx).value(n, &s[1..])
}

// ---- quantization ---------------------------------------------------------------------------

/// For each element of `x` (shape `xs`), the index of its scale or zero point in `p` (shape
/// `ps`): one for the whole tensor, one per slice along `axis`, or one per block of
/// `block` elements along `axis`.
fn quant_index(
    n: &Node,
    xs: &[usize],
    ps: &[usize],
    ax: usize,
    block: usize,
) -> Result<Vec<usize>> {
    let numel: usize = xs.iter().product();
    let pn: usize = ps.iter().product();
    if pn == 1 {
        return Ok(vec![0; numel]);
    }
    let st = strides(xs);
    if block == 0 {
        if ps.len() != 1 || ps[0] != xs[ax] {
            return Err(node_err(
                n,
                format!("scale {ps:?} for input {xs:?} along axis {ax}"),
            ));
        }
        return Ok((0..numel).map(|e| (e / st[ax]) % xs[ax]).collect());
    }
    if ps.len() != xs.len() || ps[ax] != xs[ax].div_ceil(block) {
        return Err(node_err(
            n,
            format!("scale {ps:?} for input {xs:?} in blocks of {block}"),
        ));
    }
    let pst = strides(ps);
    Ok((0..numel)
        .map(|e| {
            (0..xs.len())
                .map(|d| {
                    let c = (e / st[d]) % xs[d];
                    (if d == ax { c / block } else { c }) * pst[d]
                })
                .sum()
        })
        .collect())
}

/// QuantizeLinear (x / scale rounded half to even, plus the zero point, saturated to the
/// integer type) and DequantizeLinear ((x − zero point) · scale).
fn quantize(
    n: &Node,
    a: &[Option<Value>],
    types: &dyn Fn(&str) -> Option<i32>,
) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let xs = x.shape();
    let block = attr_int(n, "block_size", 0)?.max(0) as usize;
    let sv = input(n, a, 1)?;
    // the axis matters only for a scale per slice or block
    let per_tensor = sv.shape().iter().product::<usize>() == 1;
    let ax = match axis(n, attr_int(n, "axis", 1)?, xs.len()) {
        Ok(ax) => ax,
        Err(_) if per_tensor => 0,
        Err(e) => return Err(e),
    };
    let scale = f32s(sv);
    let si = quant_index(n, &xs, &sv.shape(), ax, block)?;
    let zp = given(a, 2);
    let (zd, zi) = match zp {
        Some(z) => (i64s(z), quant_index(n, &xs, &z.shape(), ax, block)?),
        None => (vec![0], vec![0; si.len()]),
    };
    let d = f32s(x);
    if n.op_type == "DequantizeLinear" {
        let y: Vec<f32> = (0..d.len())
            .map(|e| ((d[e] as f64 - zd[zi[e]] as f64) * scale[si[e]] as f64) as f32)
            .collect();
        return fval(n, y, &xs);
    }
    let ty = match (zp, attr(n, "output_dtype")) {
        (Some(_), _) => n
            .inputs
            .get(2)
            .and_then(|z| types(z))
            .unwrap_or(dtype::UINT8),
        (None, Some(AttrValue::Int(t))) if *t != 0 => *t as i32,
        _ => dtype::UINT8,
    };
    let (lo, hi) = match ty {
        dtype::UINT8 => (0, 255),
        dtype::INT8 => (-128, 127),
        dtype::UINT16 => (0, 65535),
        dtype::INT16 => (-32768, 32767),
        dtype::INT32 => (i32::MIN as i64, i32::MAX as i64),
        other => {
            return Err(node_err(n, format!("quantizing to {}", dtype::name(other))));
        }
    };
    let y: Vec<i64> = (0..d.len())
        .map(|e| {
            let q = (d[e] / scale[si[e]]).round_ties_even() as i64 + zd[zi[e]];
            q.clamp(lo, hi)
        })
        .collect();
    ival(y, &xs)
}

/// RoiAlign: each region (x1, y1, x2, y2, scaled by `spatial_scale`) of its batch element's
/// feature map pooled to output_height × output_width bins, each bin the average (or, as ONNX
/// defines `max`, the largest weighted corner) of bilinear samples on a regular grid
/// (`sampling_ratio` per side, or ⌈bin size⌉ when 0).
fn roi_align(n: &Node, a: &[Option<Value>], opset: i64) -> Result<Vec<Value>> {
    let x = input(n, a, 0)?;
    let xs = x.shape();
    if xs.len() != 4 {
        return Err(node_err(n, format!("input {xs:?}: (N, C, H, W) is needed")));
    }
    let rois = f32s(input(n, a, 1)?);
    let batch = i64s(input(n, a, 2)?);
    let k = batch.len();
    if rois.len() != 4 * k {
        return Err(node_err(
            n,
            format!("{} roi values for {k} batch indices", rois.len()),
        ));
    }
    let (c, h, w) = (xs[1], xs[2], xs[3]);
    let ph = attr_int(n, "output_height", 1)?.max(1) as usize;
    let pw = attr_int(n, "output_width", 1)?.max(1) as usize;
    let ratio = attr_int(n, "sampling_ratio", 0)?.max(0) as usize;
    let scale = attr_float(n, "spatial_scale", 1.0)? as f64;
    let max = attr_str(n, "mode", "avg")? == "max";
    let default_mode = if opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half = attr_str(n, "coordinate_transformation_mode", default_mode)? == "half_pixel";
    let d = f32s(x);
    let mut out = vec![0f32; k * c * ph * pw];
    for r in 0..k {
        let b = index(n, batch[r], xs[0])?;
        let off = if half { 0.5 } else { 0.0 };
        let (x0, y0) = (
            rois[4 * r] as f64 * scale - off,
            rois[4 * r + 1] as f64 * scale - off,
        );
        let (x1, y1) = (
            rois[4 * r + 2] as f64 * scale - off,
            rois[4 * r + 3] as f64 * scale - off,
        );
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !half {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let gh = if ratio > 0 {
            ratio
        } else {
            (rh / ph as f64).ceil().max(0.0) as usize
        };
        let gw = if ratio > 0 {
            ratio
        } else {
            (rw / pw as f64).ceil().max(0.0) as usize
        };
        let count = (gh * gw).max(1) as f64;
        // the four corners and weights of each sample of each bin
        let sample = |yy: f64, xx: f64| -> Option<[(usize, f64); 4]> {
            if yy < -1.0 || yy > h as f64 || xx < -1.0 || xx > w as f64 {
                return None;
            }
            let (mut y, mut x) = (yy.max(0.0), xx.max(0.0));
            let (mut yl, mut xl) = (y as usize, x as usize);
            let yh = if yl >= h - 1 {
                yl = h - 1;
                y = yl as f64;
                yl
            } else {
                yl + 1
            };
            let xh = if xl >= w - 1 {
                xl = w - 1;
                x = xl as f64;
                xl
            } else {
                xl + 1
            };
            let (ly, lx) = (y - yl as f64, x - xl as f64);
            let (hy, hx) = (1.0 - ly, 1.0 - lx);
            Some([
                (yl * w + xl, hy * hx),
                (yl * w + xh, hy * lx),
                (yh * w + xl, ly * hx),
                (yh * w + xh, ly * lx),
            ])
        };
        for ch in 0..c {
            let plane = &d[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            for py in 0..ph {
                for px in 0..pw {
                    let mut acc = 0f64;
                    let mut best: Option<f64> = None;
                    for iy in 0..gh {
                        let yy = y0 + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = x0 + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            let corners = sample(yy, xx).unwrap_or([(0, 0.0); 4]);
                            if max {
                                let v = corners
                                    .iter()
                                    .map(|&(i, wt)| wt * plane[i] as f64)
                                    .fold(f64::NEG_INFINITY, f64::max);
                                best = Some(best.map_or(v, |b| b.max(v)));
                            } else {
                                acc += corners
                                    .iter()
                                    .map(|&(i, wt)| wt * plane[i] as f64)
                                    .sum::<f64>();
                            }
                        }
                    }
                    let v = if max {
                        best.unwrap_or(0.0)
                    } else {
                        acc / count
                    };
                    out[((r * c + ch) * ph + py) * pw + px] = v as f32;
                }
            }
        }
    }
    fval(n, out, &[k, c, ph, pw])
}

/// The ops of this module, all in the default domain.
pub const OPS: &[&str] = &[
    "Acos",
    "Acosh",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Compress",
    "Cos",
    "Cosh",
    "CumProd",
    "CumSum",
    "DepthToSpace",
    "DequantizeLinear",
    "Elu",
    "Equal",
    "Erf",
    "Expand",
    "EyeLike",
    "Floor",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Greater",
    "GreaterOrEqual",
    "GRU",
    "Hardmax",
    "HardSwish",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "LogSoftmax",
    "LSTM",
    "LpNormalization",
    "Mean",
    "MeanVarianceNormalization",
    "Mish",
    "Mod",
    "NegativeLogLikelihoodLoss",
    "NonMaxSuppression",
    "NonZero",
    "Not",
    "OneHot",
    "Or",
    "Pad",
    "Pow",
    "PRelu",
    "QuantizeLinear",
    "Range",
    "Reciprocal",
    "Resize",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "ReverseSequence",
    "RNN",
    "RMSNormalization",
    "RoiAlign",
    "Round",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shrink",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "SoftmaxCrossEntropyLoss",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Tan",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Trilu",
    "Where",
    "Xor",
];

/// Runs the ops of [`OPS`] (and the integer forms of Abs and Neg).
pub(crate) fn exec(
    n: &Node,
    a: &[Option<Value>],
    opset: i64,
    types: &dyn Fn(&str) -> Option<i32>,
) -> Result<Vec<Value>> {
    match n.op_type.as_str() {
        // before opset 7, a slope of C values is per channel (axis 1), not broadcast from the
        // right
        "PRelu" if opset < 7 => match (a.first(), a.get(1)) {
            (Some(Some(x)), Some(Some(Value::F(w))))
                if w.rank() == 1 && x.shape().len() > 2 && x.shape()[1] == w.numel() =>
            {
                let mut shape = vec![w.numel()];
                shape.resize(x.shape().len() - 1, 1);
                let w = w.reshape(&shape).map_err(|e| node_err(n, e.to_string()))?;
                nary(n, &[a[0].clone(), Some(Value::F(w))])
            }
            _ => nary(n, a),
        },
        "Abs" | "Neg" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh"
        | "Asinh" | "Acosh" | "Atanh" | "Ceil" | "Floor" | "Round" | "Sign" | "Erf"
        | "Reciprocal" | "Softsign" | "Softplus" | "Mish" | "Elu" | "Selu" | "Celu"
        | "ThresholdedRelu" | "HardSwish" | "Gelu" | "Shrink" | "IsNaN" | "IsInf" | "Not"
        | "BitwiseNot" => unary(n, a),
        "Pow" | "Mod" | "Mean" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "And" | "Or" | "Xor" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor"
        | "BitShift" | "PRelu" => nary(n, a),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" => nary(n, a),
        "Where" => where_op(n, a),
        "Cast" | "CastLike" => cast(n, a, types),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            reduce(n, a, opset)
        }
        "ArgMax" | "ArgMin" => arg_reduce(n, a),
        "CumSum" | "CumProd" => cumulative(n, a),
        "LogSoftmax" | "Hardmax" => softmax_family(n, a, opset),
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => losses(n, a),
        "LayerNormalization"
        | "RMSNormalization"
        | "InstanceNormalization"
        | "MeanVarianceNormalization"
        | "LpNormalization" => norms(n, a),
        "Slice" => slice(n, a, opset),
        "Split" => split(n, a, opset),
        "Gather" | "GatherElements" | "GatherND" => gather(n, a),
        "ScatterElements" | "ScatterND" => scatter(n, a),
        "Expand" | "Tile" => expand_tile(n, a),
        "Pad" => pad(n, a, opset),
        "Resize" => resize(n, a, opset),
        "QuantizeLinear" | "DequantizeLinear" => quantize(n, a, types),
        "RNN" | "GRU" | "LSTM" => recurrent(n, a),
        "NonMaxSuppression" => nms(n, a),
        "RoiAlign" => roi_align(n, a, opset),
        "Range" => range(n, a),
        "Size" => {
            let s = input(n, a, 0)?.shape();
            ival(vec![s.iter().product::<usize>() as i64], &[])
        }
        "Trilu" => trilu(n, a),
        "DepthToSpace" | "SpaceToDepth" => depth_space(n, a),
        "OneHot" => one_hot(n, a),
        "EyeLike" => eye_like(n, a),
        "NonZero" => non_zero(n, a),
        "TopK" => top_k(n, a, opset),
        "Compress" => compress(n, a),
        "ReverseSequence" => reverse_sequence(n, a),
        other => Err(node_err(n, format!("op '{other}' is not supported"))),
    }
}
