//! The inference path's layer fusion ([`Module::prepare_inference`]): a batch norm in
//! evaluation mode is a per-channel affine map `y = x·s + t`, so after a convolution it folds
//! into the convolution's weights and bias (`w' = w·s` per output channel, `b' = b·s + t`);
//! and an activation after a convolution moves into the convolution's output pass.

use aics_tensor::{Activation, Tensor};

use crate::error::{config, Result};
use crate::layers::{BatchNorm, Conv2d, FrozenBatchNorm2d, Identity, LeakyReLU, ReLU, ReLU6};
use crate::module::Module;

/// A batch norm's per-channel scale and shift (in f64), and its `folded` flag.
type Affine<'a> = (Vec<f64>, Vec<f64>, &'a mut bool);

/// The per-channel scale and shift of a batch norm in evaluation mode, in f64.
fn affine_of(layer: &mut dyn Module) -> Result<Option<Affine<'_>>> {
    let Some(any) = layer.as_any_mut() else {
        return Ok(None);
    };
    let f = |v: &Tensor| -> Vec<f64> { v.to_vec().iter().map(|&x| x as f64).collect() };
    if any.is::<BatchNorm>() {
        let Some(bn) = any.downcast_mut::<BatchNorm>() else {
            return Ok(None);
        };
        if bn.folded {
            return Ok(None);
        }
        if bn.is_training() {
            return Err(config(
                "BatchNorm",
                "prepare_inference folds batch norm with its running statistics: call set_training(false) first",
            ));
        }
        let (m, v) = (f(&bn.running_mean), f(&bn.running_var));
        let c = m.len();
        let w = bn.weight.as_ref().map_or(vec![1.0; c], f);
        let b = bn.bias.as_ref().map_or(vec![0.0; c], f);
        let (s, t) = scale_shift(&w, &b, &m, &v, bn.eps);
        return Ok(Some((s, t, &mut bn.folded)));
    }
    if let Some(bn) = any.downcast_mut::<FrozenBatchNorm2d>() {
        if bn.folded {
            return Ok(None);
        }
        let (w, b) = (f(&bn.weight), f(&bn.bias));
        let (m, v) = (f(&bn.running_mean), f(&bn.running_var));
        let (s, t) = scale_shift(&w, &b, &m, &v, bn.eps);
        return Ok(Some((s, t, &mut bn.folded)));
    }
    Ok(None)
}

/// Batch norm's evaluation-mode map `y = x·s + t`: `s = w / √(v + ε)`, `t = b − m·s`.
fn scale_shift(w: &[f64], b: &[f64], m: &[f64], v: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let s: Vec<f64> = w.iter().zip(v).map(|(w, v)| w / (v + eps).sqrt()).collect();
    let t = b
        .iter()
        .zip(m)
        .zip(&s)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (s, t)
}

/// Fold `norm` into `conv` if it is a batch norm (in evaluation mode) over the convolution's
/// output channels; returns whether it was folded. The batch norm then passes its input on.
pub fn fold_batch_norm(conv: &mut Conv2d, norm: &mut dyn Module) -> Result<bool> {
    let Some((s, t, folded)) = affine_of(norm)? else {
        return Ok(false);
    };
    let ws = conv.weight.shape().to_vec();
    let o = ws[0];
    if s.len() != o || conv.act != Activation::Identity {
        return Ok(false);
    }
    let per = conv.weight.numel() / o.max(1);
    // read through the shared data: a copy first would be one more weight-sized buffer
    let w = conv.weight.data();
    let folded_w: Vec<f32> = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * s[i / per]) as f32)
        .collect();
    let b: Vec<f64> = conv.bias.as_ref().map_or(vec![0.0; o], |b| {
        b.to_vec().iter().map(|&x| x as f64).collect()
    });
    let folded_b: Vec<f32> = (0..o).map(|i| (b[i] * s[i] + t[i]) as f32).collect();
    conv.weight = Tensor::from_vec(folded_w, &ws)?;
    conv.bias = Some(Tensor::from_vec(folded_b, &[o])?);
    *folded = true;
    Ok(true)
}

/// The activation a layer applies, if it is one a convolution can take into its output pass.
fn activation_of(layer: &mut dyn Module) -> Option<Activation> {
    let any = layer.as_any_mut()?;
    if any.is::<ReLU>() {
        Some(Activation::Relu)
    } else if any.is::<ReLU6>() {
        Some(Activation::Relu6)
    } else {
        any.downcast_ref::<LeakyReLU>()
            .filter(|l| l.0 > 0.0 && l.0.is_finite())
            .map(|l| Activation::LeakyRelu(l.0))
    }
}

/// Fuse runs of `Conv2d → batch norm → activation` (either of the last two may be missing)
/// among a container's layers: the batch norm folds into the convolution and the activation
/// layer is replaced by an [`Identity`].
pub(crate) fn fuse_sequence(layers: &mut [(String, Box<dyn Module>)]) -> Result<()> {
    let mut i = 0;
    while i < layers.len() {
        let (head, rest) = layers.split_at_mut(i + 1);
        let Some(conv) = head[i]
            .1
            .as_any_mut()
            .and_then(|a| a.downcast_mut::<Conv2d>())
        else {
            i += 1;
            continue;
        };
        let mut next = 0;
        if let Some((_, norm)) = rest.first_mut() {
            if fold_batch_norm(conv, norm.as_mut())? {
                next = 1;
            }
        }
        if let Some((_, act_layer)) = rest.get_mut(next) {
            if conv.act == Activation::Identity {
                if let Some(act) = activation_of(act_layer.as_mut()) {
                    conv.act = act;
                    rest[next].1 = Box::new(Identity);
                    next += 1;
                }
            }
        }
        i += 1 + next;
    }
    Ok(())
}

/// Fold `norm` into `conv` and give the convolution `act`, for blocks that run their layers
/// from their own forward; returns whether the batch norm was folded (else nothing changed).
pub fn conv_bn_act(conv: &mut Conv2d, norm: &mut dyn Module, act: Activation) -> Result<bool> {
    if !fold_batch_norm(conv, norm)? {
        return Ok(false);
    }
    conv.act = act;
    Ok(true)
}

/// Whether a layer now passes its input on unchanged: an [`Identity`], or a batch norm folded
/// into the convolution before it.
pub fn passes_input_on(layer: &dyn Module) -> bool {
    let Some(any) = layer.as_any() else {
        return false;
    };
    any.is::<Identity>()
        || any.downcast_ref::<BatchNorm>().is_some_and(|b| b.folded)
        || any
            .downcast_ref::<FrozenBatchNorm2d>()
            .is_some_and(|b| b.folded)
}
