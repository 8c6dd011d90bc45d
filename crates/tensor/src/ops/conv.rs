//! `conv2d` and `conv_transpose2d` with PyTorch's semantics (stride, padding, dilation, groups,
//! output_padding). Shapes are validated here once; the kernels in `crate::cpu::conv` assume
//! valid geometry.

use crate::cpu::conv::{self as k, conv_out_size, Conv2dGeom};
use crate::cpu::packed::PackedWeights;
use crate::cpu::{depthwise, direct, rowconv, winograd};
use crate::dtype::Float;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;
use crate::trace::{self, Op};

/// Hyper-parameters of a 2-D convolution, as `(height, width)` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    /// Transposed convolution only: extra rows/columns on the bottom/right of the output.
    pub output_padding: (usize, usize),
}

impl Default for ConvParams {
    fn default() -> Self {
        ConvParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            output_padding: (0, 0),
        }
    }
}

impl ConvParams {
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn output_padding(mut self, p: usize) -> Self {
        self.output_padding = (p, p);
        self
    }
}

/// Validate a conv2d call and build its geometry. `x`: (N, C, H, W); `w`: (O, C/G, KH, KW).
pub fn conv2d_geom(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    p: &ConvParams,
) -> Result<Conv2dGeom> {
    if x.len() != 4 || w.len() != 4 {
        return Err(shape_err(
            op,
            format!(
                "expected input (N, C, H, W) and weight (O, C/groups, KH, KW), got {x:?} and {w:?}"
            ),
        ));
    }
    let g = p.groups;
    if g == 0 || p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0 {
        return Err(arg_err(
            op,
            format!("groups, stride and dilation must be positive, got {p:?}"),
        ));
    }
    if !x[1].is_multiple_of(g) || !w[0].is_multiple_of(g) {
        return Err(shape_err(
            op,
            format!(
                "{} input channels and {} output channels must both divide by groups={g}",
                x[1], w[0]
            ),
        ));
    }
    if w[1] * g != x[1] {
        return Err(shape_err(
            op,
            format!(
                "weight {w:?} expects {} input channels (groups={g}), input {x:?} has {}",
                w[1] * g,
                x[1]
            ),
        ));
    }
    let oh = conv_out_size(x[2], w[2], p.stride.0, p.padding.0, p.dilation.0);
    let ow = conv_out_size(x[3], w[3], p.stride.1, p.padding.1, p.dilation.1);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(shape_err(
            op,
            format!(
                "kernel {}x{} (dilation {:?}) is larger than the padded input {x:?} (padding {:?})",
                w[2], w[3], p.dilation, p.padding
            ),
        ));
    };
    Ok(Conv2dGeom {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        o: w[0],
        kh: w[2],
        kw: w[3],
        sh: p.stride.0,
        sw: p.stride.1,
        ph: p.padding.0,
        pw: p.padding.1,
        dh: p.dilation.0,
        dw: p.dilation.1,
        groups: g,
        oh,
        ow,
    })
}

fn check_bias<T: Float>(op: &'static str, bias: Option<&Tensor<T>>, o: usize) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [o] => Err(shape_err(
            op,
            format!("bias {:?} does not fit {o} output channels", b.shape()),
        )),
        _ => Ok(()),
    }
}

fn bias_grad<T: Float>(g: &[T], o: usize, per_channel: usize) -> Vec<T> {
    use rayon::prelude::*;
    // each plane's sum in vector lanes, planes in parallel, then added per channel in order
    let per_plane = (crate::cpu::PAR_THRESHOLD / per_channel.max(1)).max(1);
    let sums: Vec<T> = g
        .par_chunks(per_channel.max(1))
        .with_min_len(per_plane)
        .map(crate::cpu::sum)
        .collect();
    let mut gb = vec![T::zero(); o];
    for (ch, s) in sums.into_iter().enumerate() {
        gb[ch % o] += s;
    }
    gb
}

/// The activation a convolution applies in the pass that adds its bias (and a residual), so
/// that the pre-activation is never stored: `act(conv(x) + b + r)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet's).
    Relu6,
    /// `x` above 0, `slope·x` below (`slope` > 0).
    LeakyRelu(f64),
}

impl Activation {
    fn name(self) -> &'static str {
        match self {
            Activation::Identity => "conv2d",
            Activation::Relu => "conv2d_relu",
            Activation::Relu6 => "conv2d_relu6",
            Activation::LeakyRelu(_) => "conv2d_leaky_relu",
        }
    }
}

/// One plane of the epilogue: `v ← act(v + b + r)`.
#[inline(always)]
pub(crate) fn epilogue_plane<T: Float>(v: &mut [T], b: T, r: Option<&[T]>, act: Activation) {
    let (zero, six) = (T::zero(), T::from_f64(6.0));
    macro_rules! each {
        ($f:expr) => {
            match r {
                Some(r) => v
                    .iter_mut()
                    .zip(r)
                    .for_each(|(e, &rv)| *e = $f(*e + b + rv)),
                None => v.iter_mut().for_each(|e| *e = $f(*e + b)),
            }
        };
    }
    match act {
        Activation::Identity => each!(|t: T| t),
        Activation::Relu => each!(|t: T| if t > zero { t } else { zero }),
        Activation::Relu6 => each!(|t: T| if t > six {
            six
        } else if t > zero {
            t
        } else {
            zero
        }),
        Activation::LeakyRelu(s) => {
            let s = T::from_f64(s);
            each!(|t: T| if t > zero { t } else { t * s })
        }
    }
}

/// `y ← act(y + b[c] + r)` over the output's channel planes of `per_channel` elements.
fn epilogue<T: Float>(
    y: &mut [T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    per_channel: usize,
    act: Activation,
) {
    if per_channel == 0 {
        return;
    }
    let f = |(p, v): (usize, &mut [T])| {
        let b = bias.map_or(T::zero(), |b| b[p % b.len()]);
        let r = residual.map(|r| &r[p * per_channel..(p + 1) * per_channel]);
        crate::cpu::simd::with_best(
            #[inline(always)]
            || epilogue_plane(v, b, r, act),
        )
    };
    crate::cpu::for_each_chunk(y, per_channel, f);
}

impl PackedWeights {
    /// A convolution's weights packed for [`Tensor::conv2d_fused_packed`], where the packed
    /// kernel runs it (1×1, stride 1, no padding, one group); None for other convolutions, or on
    /// a CPU without AVX2.
    pub fn for_conv(weight: &Tensor<f32>, p: &ConvParams) -> Option<PackedWeights> {
        let s = weight.shape();
        let pointwise = s.len() == 4
            && s[2] == 1
            && s[3] == 1
            && p.groups == 1
            && p.stride == (1, 1)
            && p.padding == (0, 0);
        if !pointwise {
            return None;
        }
        PackedWeights::pack(&weight.data(), s[0], s[1])
    }

    /// The weights in the layout of the kernel that runs the convolution on inputs of
    /// `input_shape`: Winograd-transformed filters where [`Tensor::conv2d_fused_packed`] runs
    /// it by Winograd with 2×2 tiles (3×3 convolutions with many channels; the tile depends on
    /// the input's size), as [`PackedWeights::for_conv`] otherwise. None where neither applies,
    /// or on a shape the convolution refuses.
    ///
    /// Filters for 4×4 tiles are not kept: they take four times the weights' memory (2×2
    /// tiles' take 16/9), and measured on ResNet-50 at batch 8 the 113 MB they came to saved
    /// about 3% of those layers' time. Those for 2×2 tiles saved 2 to 4 ms on each of VGG19's
    /// 512-channel layers at 28×28.
    pub fn for_conv_input(
        weight: &Tensor<f32>,
        p: &ConvParams,
        input_shape: &[usize],
    ) -> Option<PackedWeights> {
        let g = conv2d_geom("conv2d", input_shape, weight.shape(), p).ok()?;
        match winograd::plan(&g) {
            Some(winograd::Tile::F2) if rows_over_f2(&g) => {
                PackedWeights::pack_rows(&weight.data(), g.o, g.ckk())
            }
            Some(tile) if KEPT_TILES.contains(&tile) => {
                Some(PackedWeights::winograd(&weight.data(), g.o, g.c, tile))
            }
            Some(_) => None,
            None if by_rows(&g) => PackedWeights::pack_rows(&weight.data(), g.o, g.ckk()),
            None => PackedWeights::for_conv(weight, p),
        }
    }

    /// Whether this packing is the one [`PackedWeights::for_conv_input`] makes for these
    /// weights' shape on inputs of `input_shape` (the Winograd tile depends on the input).
    pub fn fits_input(
        &self,
        weight_shape: &[usize],
        p: &ConvParams,
        input_shape: &[usize],
    ) -> bool {
        let Ok(g) = conv2d_geom("conv2d", input_shape, weight_shape, p) else {
            return false;
        };
        match winograd::plan(&g) {
            Some(winograd::Tile::F2) if rows_over_f2(&g) => fits_rows(self, &g),
            Some(tile) => KEPT_TILES.contains(&tile) && fits_winograd(self, &g, tile),
            None if by_rows(&g) => fits_rows(self, &g),
            None => fits_packed(self, &g),
        }
    }
}

/// The Winograd tiles whose transformed filters the inference path keeps (see
/// [`PackedWeights::for_conv_input`]).
const KEPT_TILES: [winograd::Tile; 1] = [winograd::Tile::F2];

/// Whether `pw` holds the transformed filters of `g`'s weights for tile `tile`.
fn fits_winograd(
    pw: &PackedWeights,
    g: &crate::cpu::conv::Conv2dGeom,
    tile: winograd::Tile,
) -> bool {
    pw.winograd_tile() == Some(tile) && pw.rows() == g.o && pw.depth() == g.c
}

/// Whether the packed kernel runs this convolution with `pw`: the packing fits the weights,
/// and the convolution is one the packed kernel is faster at (measured: 1×1 with stride 1; for
/// 3×3 its tile-by-tile unfolding of the input costs more than im2col + GEMM).
fn fits_packed(pw: &PackedWeights, g: &crate::cpu::conv::Conv2dGeom) -> bool {
    g.groups == 1 && g.is_pointwise() && pw.rows() == g.o && pw.depth() == g.ckk() && pw.usable()
}

/// Whether the inference path runs `g` by the row kernel ([`rowconv`]), where Winograd does
/// not: every convolution of one group it applies to, except depthwise and direct ones, and 1×1
/// convolutions with stride 1 on maps over 28×28, on over 2048 positions in the whole batch, or
/// with fewer than 96 input channels, where the packed GEMM is as fast or faster (ResNet-50's
/// 512→128 at 28×28: even at batch 1, 4.2 ms packed against 6.4 by rows at batch 8). Measured
/// on ResNet-50's and MobileNetV2's layers at batch 1 with their weights out of cache (as in a
/// pass through the model): 1.3 to 1.7 times the speed of im2col + GEMM, and up to 2.2 times
/// that of the packed GEMM on 1×1 layers up to 28×28.
fn by_rows(g: &crate::cpu::conv::Conv2dGeom) -> bool {
    rowconv::applies(g)
        && !depthwise::eligible(g)
        && !direct::eligible(g)
        && !(g.is_pointwise() && (g.ohw() > 28 * 28 || g.n * g.ohw() > 2048 || g.c < 96))
}

/// Whether the inference path runs `g`, which Winograd would run with 2×2 tiles, by the row
/// kernel instead: few channels, where Winograd's transforms weigh most (measured: ResNet-50's
/// 64→64 layers at 56×56, 1.2 ms by Winograd, 0.8–0.9 ms by rows; on 128→256 they are even,
/// and on 256→512 and 512→512 at 28×28 Winograd is ahead, at 370–440 GFLOP/s equivalent
/// against 330).
fn rows_over_f2(g: &crate::cpu::conv::Conv2dGeom) -> bool {
    g.c * g.o <= 128 * 64 && rowconv::applies(g)
}

/// Whether `pw` holds `g`'s weights packed for the row kernel on this CPU.
fn fits_rows(pw: &PackedWeights, g: &crate::cpu::conv::Conv2dGeom) -> bool {
    pw.rows_lanes().is_some() && pw.rows() == g.o && pw.depth() == g.ckk() && rowconv::applies(g)
}

/// The f32 view of a slice of `T` when `T` is f32.
fn as_f32<T: Float>(v: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (same type, so same size and alignment).
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) })
}

/// The slice of f32 `v` as `T` when `T` is f32.
fn from_f32<T: Float>(v: &[f32]) -> Option<&[T]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (same type, so same size and alignment).
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const T, v.len()) })
}

/// The convolution through the packed weights `pw` with its epilogue; None unless T is f32.
fn packed_fwd<T: Float>(
    x: &[T],
    pw: &PackedWeights,
    g: &crate::cpu::conv::Conv2dGeom,
    bias: Option<&Tensor<T>>,
    residual: Option<&Tensor<T>>,
    act: Activation,
) -> Option<Vec<T>> {
    let x = as_f32(x)?;
    let bd = bias.map(|b| b.data());
    let rd = residual.map(|r| r.data());
    let epi = crate::cpu::packed::Epilogue {
        bias: match &bd {
            Some(b) => Some(as_f32(b)?),
            None => None,
        },
        residual: match &rd {
            Some(r) => Some(as_f32(r)?),
            None => None,
        },
        act,
    };
    let y = std::mem::ManuallyDrop::new(if pw.rows_lanes().is_some() {
        rowconv::conv2d_fwd_new(x, pw, g, epi)
    } else {
        crate::cpu::packed::conv2d_fwd_new(x, pw, g, epi)
    });
    let (ptr, len, cap) = (y.as_ptr() as *mut T, y.len(), y.capacity());
    // SAFETY: T is f32 (`as_f32` on the input succeeded), so this is the same vector retyped:
    // same allocation, size, alignment, length and capacity; `y` is not dropped.
    Some(unsafe { Vec::from_raw_parts(ptr, len, cap) })
}

/// The kernel rows and columns (first, count) that reach into the input at some output
/// position, and the padding that keeps every output where it was once the others are cut off;
/// None when every tap is live, or when the cut would need uneven padding.
fn live_taps(g: &crate::cpu::conv::Conv2dGeom) -> Option<LiveTaps> {
    // (first, count, new padding) along one axis
    let axis = |i: usize, o: usize, k: usize, s: usize, p: usize, d: usize| {
        let live = |ki: usize| {
            (0..o).any(|oy| {
                let at = (oy * s + ki * d) as isize - p as isize;
                at >= 0 && (at as usize) < i
            })
        };
        let first = (0..k).find(|&ki| live(ki))?;
        let last = (0..k).rev().find(|&ki| live(ki))?;
        let pad = p.checked_sub(first * d)?;
        let kn = last - first + 1;
        // the same outputs with the same (even) padding on both sides
        let same = crate::cpu::conv::conv_out_size(i, kn, s, pad, d) == Some(o);
        same.then_some((first, kn, pad))
    };
    let (r0, rn, ph) = axis(g.h, g.oh, g.kh, g.sh, g.ph, g.dh)?;
    let (c0, cn, pw) = axis(g.w, g.ow, g.kw, g.sw, g.pw, g.dw)?;
    (rn < g.kh || cn < g.kw).then_some(LiveTaps {
        rows: (r0, rn),
        cols: (c0, cn),
        padding: (ph, pw),
    })
}

/// The part of a kernel that [`live_taps`] keeps: (first, count) of its rows and of its
/// columns, and the padding that goes with them.
struct LiveTaps {
    rows: (usize, usize),
    cols: (usize, usize),
    padding: (usize, usize),
}

/// Taps `rows` and `cols` ((first, count) each) of every filter of `w` (O, C, KH, KW), in one
/// pass; the gradient goes back to those taps, zero elsewhere. Both passes write each output
/// element once, over blocks of filters in parallel (layer4 of ResNet-18 at 32² has 262,144
/// filters of which one tap lives).
fn kernel_window<T: Float>(w: &Tensor<T>, rows: (usize, usize), cols: (usize, usize)) -> Tensor<T> {
    use rayon::prelude::*;
    let s = w.shape();
    let (filters, kh, kw) = (s[0] * s[1], s[2], s[3]);
    let (r0, rn, c0, cn) = (rows.0, rows.1, cols.0, cols.1);
    let (kk, win) = (kh * kw, rn * cn);
    // filters per parallel task
    const BLOCK: usize = 4096;
    let wd = w.data();
    // SAFETY: each filter's chunk of `win` elements is written whole below.
    let out = unsafe {
        crate::cpu::filled(filters * win, |o| {
            o.par_chunks_mut(BLOCK * win)
                .zip(wd.par_chunks(BLOCK * kk))
                .for_each(|(o, src)| {
                    for (of, sf) in o.chunks_exact_mut(win).zip(src.chunks_exact(kk)) {
                        for i in 0..rn {
                            let at = (r0 + i) * kw + c0;
                            for (d, &v) in of[i * cn..(i + 1) * cn].iter_mut().zip(&sf[at..at + cn])
                            {
                                d.write(v);
                            }
                        }
                    }
                })
        })
    };
    Tensor::from_op(
        out,
        vec![s[0], s[1], rn, cn],
        "kernel_window",
        &[w],
        move |g, _| {
            // SAFETY: each filter's chunk of `kk` elements is written whole below.
            let gw = unsafe {
                crate::cpu::filled(filters * kk, |gw| {
                    gw.par_chunks_mut(BLOCK * kk)
                        .zip(g.par_chunks(BLOCK * win))
                        .for_each(|(gw, gs)| {
                            for (df, sf) in gw.chunks_exact_mut(kk).zip(gs.chunks_exact(win)) {
                                for (i, dr) in df.chunks_exact_mut(kw).enumerate() {
                                    let row = (r0..r0 + rn).contains(&i);
                                    for (j, d) in dr.iter_mut().enumerate() {
                                        let live = row && (c0..c0 + cn).contains(&j);
                                        d.write(if live {
                                            sf[(i - r0) * cn + j - c0]
                                        } else {
                                            T::zero()
                                        });
                                    }
                                }
                            }
                        })
                })
            };
            vec![Some(gw)]
        },
    )
}

/// The gradient through the epilogue's activation, read from its output: it passes where the
/// output is inside the activation's linear part (the output's sign is the pre-activation's).
fn through_activation<T: Float>(gy: &[T], y: &[T], act: Activation) -> Vec<T> {
    let (zero, six) = (T::zero(), T::from_f64(6.0));
    match act {
        Activation::Identity => gy.to_vec(),
        Activation::Relu => {
            crate::cpu::elementwise::zip_map(gy, y, |g, y| if y > zero { g } else { zero })
        }
        Activation::Relu6 => {
            crate::cpu::elementwise::zip_map(
                gy,
                y,
                |g, y| {
                    if y > zero && y < six {
                        g
                    } else {
                        zero
                    }
                },
            )
        }
        Activation::LeakyRelu(s) => {
            let s = T::from_f64(s);
            crate::cpu::elementwise::zip_map(gy, y, |g, y| if y > zero { g } else { g * s })
        }
    }
}

impl<T: Float> Tensor<T> {
    /// 2-D convolution (cross-correlation): input (N, C, H, W), weight (O, C/groups, KH, KW),
    /// optional bias (O) → (N, O, OH, OW).
    pub fn conv2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
    ) -> Result<Tensor<T>> {
        self.conv2d_impl(weight, bias, p, Activation::Identity, None, None)
    }

    /// `relu(conv2d(x, w, b))` as one op: the same values and gradients as the two ops, but the
    /// pre-activation is never stored (half the activation memory of a conv–ReLU stack), and
    /// the bias and the ReLU take one pass over the output.
    pub fn conv2d_relu(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
    ) -> Result<Tensor<T>> {
        self.conv2d_impl(weight, bias, p, Activation::Relu, None, None)
    }

    /// `leaky_relu(conv2d(x, w, b), slope)` as one op (`slope` > 0), as [`Tensor::conv2d_relu`]
    /// is for the ReLU: darknet's convolution–leaky pairs without a pass over the output between
    /// them.
    pub fn conv2d_leaky_relu(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
        slope: f64,
    ) -> Result<Tensor<T>> {
        self.conv2d_impl(weight, bias, p, Activation::LeakyRelu(slope), None, None)
    }

    /// `act(conv2d(x, w, b) + residual)` as one op: the bias, the residual (an (N, O, OH, OW)
    /// tensor, a ResNet block's shortcut) and the activation are applied in one pass over the
    /// output, and only the output is kept for the backward pass. The same values and
    /// gradients as the separate ops.
    pub fn conv2d_fused(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
        act: Activation,
        residual: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
        self.conv2d_impl(weight, bias, p, act, residual, None)
    }

    /// [`Tensor::conv2d_fused`] with `packed`, the weights as [`PackedWeights::for_conv`] or
    /// [`PackedWeights::for_conv_input`] made them, for the forward pass: panels where the
    /// packed kernel is the faster one (1×1 convolutions, stride 1, one group, when the input's
    /// columns need not be kept for a weight gradient), Winograd filters transformed once where
    /// the convolution runs by Winograd with their tile. The packing must hold `weight`'s
    /// current values: the caller keeps the two together (as `Conv2d` does on the inference
    /// path). A packing that does not fit the convolution is ignored. The backward pass uses
    /// `weight`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_fused_packed(
        &self,
        weight: &Tensor<T>,
        packed: &PackedWeights,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
        act: Activation,
        residual: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
        self.conv2d_impl(weight, bias, p, act, residual, Some(packed))
    }

    fn conv2d_impl(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
        act: Activation,
        residual: Option<&Tensor<T>>,
        packed: Option<&PackedWeights>,
    ) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::Conv {
                p,
                act,
                bias: bias.is_some(),
                residual: residual.is_some(),
            },
            &trace::present(&[Some(self), Some(weight), bias, residual]),
            trace::inner(|| -> Result<Tensor<T>> {
                let op = act.name();
                if let Activation::LeakyRelu(s) = act {
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(arg_err(op, format!("slope must be positive, got {s}")));
                    }
                }
                let g = conv2d_geom(op, self.shape(), weight.shape(), &p)?;
                check_bias(op, bias, g.o)?;
                if let Some(r) = residual {
                    if r.shape() != [g.n, g.o, g.oh, g.ow] {
                        return Err(shape_err(
                            op,
                            format!(
                                "residual {:?} does not fit the output {:?}",
                                r.shape(),
                                [g.n, g.o, g.oh, g.ow]
                            ),
                        ));
                    }
                }
                // Taps that see only padding at every output position (a 3×3 convolution on a
                // 1×1 map sees through its centre alone) are cut off the kernel: the same sums
                // without their multiplications by zero, and their weight gradient stays zero.
                if let Some(live) = live_taps(&g) {
                    let w = kernel_window(weight, live.rows, live.cols);
                    let p = ConvParams {
                        padding: live.padding,
                        ..p
                    };
                    return self.conv2d_impl(&w, bias, p, act, residual, None);
                }
                crate::profile::add_macs(g.macs());
                let started = crate::profile::recording().then(std::time::Instant::now);
                let (xd, wd) = (self.data(), weight.data());
                // The input is kept for the weight gradient only when that gradient will be asked for.
                let want_dw = crate::autograd::grad_enabled() && weight.requires_grad();
                let wino = winograd::plan(&g);
                let dw = depthwise::eligible(&g);
                let direct = wino.is_none() && !dw && direct::eligible(&g);
                // the bias, residual and activation already applied by the kernel
                let mut fused = false;
                let mut packed_ran = false;
                let mut pre_ran = false;
                let rows_pw = packed.filter(|pw| fits_rows(pw, &g));
                let mut y = if let Some(y) =
                    rows_pw.and_then(|pw| packed_fwd(&xd, pw, &g, bias, residual, act))
                {
                    (fused, packed_ran) = (true, true);
                    y
                } else if let Some(tile) = wino {
                    // the filters transformed once, when the caller keeps them so (`Conv2d` on the
                    // inference path)
                    let pre = packed
                        .filter(|pw| fits_winograd(pw, &g, tile))
                        .and_then(|pw| from_f32::<T>(pw.winograd_filters()?));
                    pre_ran = pre.is_some();
                    match pre {
                        Some(u) => winograd::conv3x3_transformed(
                            &xd, g.n, g.c, g.h, g.w, u, g.o, g.ph, tile,
                        ),
                        None => winograd::conv3x3(&xd, g.n, g.c, g.h, g.w, &wd, g.o, g.ph, tile),
                    }
                } else if dw {
                    // the bias and activation in the depthwise kernel's own pass, unless a residual
                    // comes before the activation (then the output pass below does all three)
                    fused = residual.is_none();
                    let bd = bias.filter(|_| fused).map(|b| b.data());
                    let a = if fused { act } else { Activation::Identity };
                    let b = bd.as_ref().map(|b| b.as_slice());
                    depthwise::fwd_fused(&xd, &wd, &g, b, a)
                } else if direct {
                    direct::fwd(&xd, &wd, &g)
                } else if let Some(y) = packed
                    .filter(|pw| fits_packed(pw, &g))
                    .and_then(|pw| packed_fwd(&xd, pw, &g, bias, residual, act))
                {
                    (fused, packed_ran) = (true, true);
                    y
                } else {
                    k::conv2d_fwd(&xd, &wd, &g)
                };
                if !fused && (bias.is_some() || residual.is_some() || act != Activation::Identity) {
                    let bd = bias.map(|b| b.data());
                    let rd = residual.map(|r| r.data());
                    epilogue(
                        &mut y,
                        bd.as_ref().map(|b| b.as_slice()),
                        rd.as_ref().map(|r| r.as_slice()),
                        g.ohw(),
                        act,
                    );
                }
                if let Some(t) = started {
                    let kernel = if packed_ran && rows_pw.is_some() {
                        "rows (channels in lanes)".into()
                    } else if let Some(tile) = wino {
                        format!(
                            "winograd {tile:?}{}",
                            if pre_ran {
                                " (filters transformed once)"
                            } else {
                                ""
                            }
                        )
                    } else if dw {
                        "depthwise".into()
                    } else if direct {
                        "direct".into()
                    } else if packed_ran {
                        "packed gemm (1×1)".into()
                    } else if g.is_pointwise() {
                        "gemm (1×1)".into()
                    } else {
                        "im2col + gemm".into()
                    };
                    crate::profile::push_op(
                        op,
                        || {
                            format!(
                                "{kernel}: {}→{} {}×{} stride {} groups {} on {}×{}×{}",
                                g.c, g.o, g.kh, g.kw, g.sh, g.groups, g.n, g.h, g.w
                            )
                        },
                        g.macs() as u64,
                        t.elapsed().as_secs_f64(),
                    );
                }
                let y = std::sync::Arc::new(y);
                let yk = (act != Activation::Identity).then(|| y.clone());
                let xk = want_dw.then_some(xd);
                let mut inputs = vec![self, weight];
                inputs.extend(bias);
                inputs.extend(residual);
                let has_bias = bias.is_some();
                Ok(Tensor::from_op_arc(
                    y,
                    vec![g.n, g.o, g.oh, g.ow],
                    op,
                    &inputs,
                    move |gy, needs| {
                        // through the activation first
                        let masked;
                        let gy = match &yk {
                            Some(y) => {
                                masked = through_activation(gy, y, act);
                                &masked[..]
                            }
                            None => gy,
                        };
                        let mut r = vec![
                            needs[0].then(|| {
                                if dw {
                                    depthwise::bwd_data(gy, &wd, &g)
                                } else if let Some(tile) = wino {
                                    // the full convolution of dY with the flipped, transposed filters
                                    let (n, o, c) = (g.n, g.o, g.c);
                                    winograd::conv3x3_bwd_data(
                                        gy, n, o, g.oh, g.ow, &wd, c, g.ph, tile,
                                    )
                                } else {
                                    k::conv2d_bwd_data(gy, &wd, &g)
                                }
                            }),
                            // (no input kept: the weight did not require grad when the op ran)
                            needs[1]
                                .then(|| {
                                    let xd = xk.as_ref()?;
                                    Some(if dw {
                                        depthwise::bwd_weight(xd, gy, &g)
                                    } else {
                                        k::conv2d_bwd_weight(xd, gy, &g)
                                    })
                                })
                                .flatten(),
                        ];
                        if has_bias {
                            r.push(needs[2].then(|| bias_grad(gy, g.o, g.ohw())));
                        }
                        // the residual's gradient is the one through the activation
                        if needs.len() > r.len() {
                            r.push(needs[r.len()].then(|| gy.to_vec()));
                        }
                        r
                    },
                ))
            }),
        )
    }

    /// Transposed 2-D convolution (the adjoint of conv2d): input (N, C_in, H, W), weight
    /// (C_in, C_out/groups, KH, KW), optional bias (C_out) → (N, C_out, H_out, W_out) with
    /// `H_out = (H-1)·s - 2p + d(KH-1) + output_padding + 1`.
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        p: ConvParams,
    ) -> Result<Tensor<T>> {
        trace::recorded(
            || Op::ConvTranspose {
                p,
                bias: bias.is_some(),
            },
            &trace::present(&[Some(self), Some(weight), bias]),
            trace::inner(|| -> Result<Tensor<T>> {
                let op = "conv_transpose2d";
                let (x, w) = (self.shape(), weight.shape());
                if x.len() != 4 || w.len() != 4 {
                    return Err(shape_err(op, format!("expected input (N, C, H, W) and weight (C_in, C_out/groups, KH, KW), got {x:?} and {w:?}")));
                }
                if w[0] != x[1] {
                    return Err(shape_err(
                        op,
                        format!(
                            "weight {w:?} expects {} input channels, input {x:?} has {}",
                            w[0], x[1]
                        ),
                    ));
                }
                if p.output_padding.0 >= p.stride.0.max(p.dilation.0)
                    || p.output_padding.1 >= p.stride.1.max(p.dilation.1)
                {
                    return Err(arg_err(
                        op,
                        format!(
                            "output_padding {:?} must be smaller than stride or dilation",
                            p.output_padding
                        ),
                    ));
                }
                let out_len = |i: usize,
                               k: usize,
                               s: usize,
                               pad: usize,
                               d: usize,
                               op_: usize|
                 -> Option<usize> {
                    ((i.max(1) - 1) * s + d * (k.max(1) - 1) + op_ + 1).checked_sub(2 * pad)
                };
                let (Some(ho), Some(wo)) = (
                    out_len(
                        x[2],
                        w[2],
                        p.stride.0,
                        p.padding.0,
                        p.dilation.0,
                        p.output_padding.0,
                    ),
                    out_len(
                        x[3],
                        w[3],
                        p.stride.1,
                        p.padding.1,
                        p.dilation.1,
                        p.output_padding.1,
                    ),
                ) else {
                    return Err(shape_err(
                        op,
                        format!("padding {:?} leaves no output for input {x:?}", p.padding),
                    ));
                };
                let c_out = w[1] * p.groups;
                // The conv whose backward-data this is: input (N, C_out, Ho, Wo), weight (C_in, C_out/G, ..).
                let g = conv2d_geom(op, &[x[0], c_out, ho, wo], w, &p)?;
                if g.oh != x[2] || g.ow != x[3] {
                    return Err(shape_err(
                        op,
                        format!("inconsistent geometry for input {x:?}"),
                    ));
                }
                check_bias(op, bias, c_out)?;
                crate::profile::add_macs(g.macs());
                let (xd, wd) = (self.data(), weight.data());
                let mut y = k::conv2d_bwd_data(&xd, &wd, &g);
                if let Some(b) = bias {
                    epilogue(&mut y, Some(&b.data()), None, g.hw(), Activation::Identity);
                }
                let mut inputs = vec![self, weight];
                inputs.extend(bias);
                Ok(Tensor::from_op(
                    y,
                    vec![g.n, c_out, ho, wo],
                    op,
                    &inputs,
                    move |gy, needs| {
                        let mut r = vec![
                            needs[0].then(|| k::conv2d_fwd(gy, &wd, &g)),
                            needs[1].then(|| k::conv2d_bwd_weight(gy, &xd, &g)),
                        ];
                        if needs.len() > 2 {
                            r.push(needs[2].then(|| bias_grad(gy, c_out, g.hw())));
                        }
                        r
                    },
                ))
            }),
        )
    }
}
