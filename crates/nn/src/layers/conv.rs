//! `Conv2d` and `ConvTranspose2d` (PyTorch keys `weight`, `bias`; weight (O, C/groups, KH, KW)
//! and (C_in, C_out/groups, KH, KW) respectively).

use std::sync::{Arc, Mutex};

use aics_tensor::{Activation, ConvParams, PackedWeights, Rng, Tensor};

use crate::error::{config, Result};
use crate::init::default_uniform;
use crate::module::Module;

#[derive(Module)]
pub struct Conv2d {
    #[param]
    pub weight: Tensor,
    #[param]
    pub bias: Option<Tensor>,
    pub params: ConvParams,
    /// Applied in the output pass (the inference path fuses the following activation here).
    pub act: Activation,
    /// The weights in the packed kernel's layout, on the inference path.
    pack: PackCache,
}

/// A convolution's packed weights ([`PackedWeights::for_conv_input`]: panels for a 1×1
/// convolution, transformed filters for a 3×3 one that runs by Winograd), made at the first forward pass
/// after [`Module::prepare_inference`] and made again whenever the weights change. It holds the
/// weight data it was packed from: the tensor's data is then shared, so a change to the weights
/// (in place or replaced) gives them new data, which no longer matches.
#[derive(Default)]
struct PackCache {
    on: bool,
    slot: Mutex<Option<Packed>>,
}

/// The weight data packed, and its packing.
type Packed = (Arc<Vec<f32>>, Arc<PackedWeights>);

impl PackCache {
    /// The packing of `weight`'s current values, when this path is on and the convolution is
    /// one the packed kernel runs (the others keep nothing, so their weights are not held).
    /// The packing is for inputs of `input`'s shape (a Winograd tile depends on it), and made
    /// again for an input that needs another.
    fn get(&self, weight: &Tensor, p: &ConvParams, input: &[usize]) -> Option<Arc<PackedWeights>> {
        if !self.on {
            return None;
        }
        let data = weight.data();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, pack)) = &*slot {
            if Arc::ptr_eq(from, &data) && pack.fits_input(weight.shape(), p, input) {
                return Some(pack.clone());
            }
        }
        let Some(pack) = PackedWeights::for_conv_input(weight, p, input) else {
            *slot = None;
            return None;
        };
        let pack = Arc::new(pack);
        *slot = Some((data, pack.clone()));
        Some(pack)
    }
}

impl Conv2d {
    /// A square-kernel convolution; adjust `params` for stride, padding, dilation, groups.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: ConvParams,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::new_hw(in_ch, out_ch, (kernel, kernel), params, bias, rng)
    }
    pub fn new_hw(
        in_ch: usize,
        out_ch: usize,
        kernel: (usize, usize),
        params: ConvParams,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let g = params.groups;
        if in_ch == 0
            || out_ch == 0
            || kernel.0 == 0
            || kernel.1 == 0
            || g == 0
            || !in_ch.is_multiple_of(g)
            || !out_ch.is_multiple_of(g)
        {
            return Err(config("Conv2d", format!("invalid configuration: {in_ch}→{out_ch} channels, kernel {kernel:?}, groups {g}")));
        }
        let fan_in = in_ch / g * kernel.0 * kernel.1;
        let weight = default_uniform(&[out_ch, in_ch / g, kernel.0, kernel.1], fan_in, rng);
        let bias = bias.then(|| default_uniform(&[out_ch], fan_in, rng));
        Ok(Conv2d {
            weight,
            bias,
            params,
            act: Activation::Identity,
            pack: PackCache::default(),
        })
    }

    /// `act(conv(x) + residual)` with this layer's weights, in one op: a residual block's last
    /// convolution with its shortcut added (`act` replaces the layer's own).
    pub fn forward_residual(
        &self,
        x: &Tensor,
        residual: &Tensor,
        act: Activation,
    ) -> Result<Tensor> {
        self.fused(x, act, Some(residual))
    }

    fn fused(&self, x: &Tensor, act: Activation, residual: Option<&Tensor>) -> Result<Tensor> {
        let (w, b, p) = (&self.weight, self.bias.as_ref(), self.params);
        Ok(match self.pack.get(w, &p, x.shape()) {
            Some(pack) => x.conv2d_fused_packed(w, &pack, b, p, act, residual)?,
            None => x.conv2d_fused(w, b, p, act, residual)?,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fused(x, self.act, None)
    }
    /// Marks the layer for the packed kernel: its weights are packed at the next forward pass
    /// (after the containers have folded any batch norm into them) and kept with it.
    fn prepare_inference(&mut self) -> Result<()> {
        self.pack.on = true;
        Ok(())
    }
    fn type_name(&self) -> String {
        let s = self.weight.shape();
        let act = match self.act {
            Activation::Identity => String::new(),
            Activation::Relu => " + ReLU".into(),
            Activation::Relu6 => " + ReLU6".into(),
            Activation::LeakyRelu(a) => format!(" + LeakyReLU({a})"),
        };
        format!(
            "Conv2d({}→{}, {}x{}, s{}, p{}){act}",
            s[1] * self.params.groups,
            s[0],
            s[2],
            s[3],
            self.params.stride.0,
            self.params.padding.0
        )
    }
}

#[derive(Module)]
pub struct ConvTranspose2d {
    #[param]
    pub weight: Tensor,
    #[param]
    pub bias: Option<Tensor>,
    pub params: ConvParams,
}

impl ConvTranspose2d {
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: ConvParams,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let g = params.groups;
        if in_ch == 0
            || out_ch == 0
            || kernel == 0
            || g == 0
            || !in_ch.is_multiple_of(g)
            || !out_ch.is_multiple_of(g)
        {
            return Err(config(
                "ConvTranspose2d",
                format!(
                    "invalid configuration: {in_ch}→{out_ch} channels, kernel {kernel}, groups {g}"
                ),
            ));
        }
        // PyTorch computes fan_in from weight.size(1) · KH · KW for transposed convs.
        let fan_in = out_ch / g * kernel * kernel;
        let weight = default_uniform(&[in_ch, out_ch / g, kernel, kernel], fan_in, rng);
        let bias = bias.then(|| default_uniform(&[out_ch], fan_in, rng));
        Ok(ConvTranspose2d {
            weight,
            bias,
            params,
        })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.conv_transpose2d(&self.weight, self.bias.as_ref(), self.params)?)
    }
    fn type_name(&self) -> String {
        let s = self.weight.shape();
        format!(
            "ConvTranspose2d({}→{}, {}x{}, s{})",
            s[0],
            s[1] * self.params.groups,
            s[2],
            s[3],
            self.params.stride.0
        )
    }
}
