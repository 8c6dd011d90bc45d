//! The model zoo. Each builder returns a `Sequential` whose keys are the PyTorch model's
//! state-dict keys, so torchvision-style checkpoints load as they are.

pub mod alexnet;
pub mod bn_inception;
pub mod googlenet;
pub mod inception_v3;
pub mod lenet;
pub mod lstm_seq;
pub mod mlp;
pub mod mobilenet;
pub mod mobilenet_v3;
pub mod resnet;
pub mod vgg;

use aics_nn::layers::{BatchNorm, Conv2d, FrozenBatchNorm2d, ReLU};
use aics_nn::{Module, Result, Sequential};
use aics_tensor::{ConvParams, Rng};

use googlenet::Variant;
pub use lenet::lenet5;
pub use mlp::mlp;

/// Conv (kernel `k`, no bias) → BatchNorm (`eps`) → ReLU, keys `conv.*`, `bn.*`: torchvision's
/// `BasicConv2d` (eps 1e-3) and BN-Inception's unit.
pub(crate) fn conv_bn_relu(
    c: usize,
    o: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
    eps: f64,
    rng: &mut Rng,
) -> Result<Sequential> {
    let p = ConvParams {
        padding: pad,
        ..ConvParams::default().stride(stride)
    };
    let mut bn = BatchNorm::new(o);
    bn.eps = eps;
    Ok(Sequential::new()
        .push("conv", Conv2d::new_hw(c, o, k, p, false, rng)?)
        .push("bn", bn)
        .push("relu", ReLU))
}

/// The normalization layer a builder puts after its convolutions: trainable batch norm with
/// its eps and momentum (the classifiers), or frozen batch norm with its eps (torchvision's
/// detection backbones).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    Batch { eps: f64, momentum: f64 },
    Frozen(f64),
}

impl Norm {
    /// `nn.BatchNorm2d`'s defaults: eps 1e-5, momentum 0.1.
    pub const BATCH: Norm = Norm::Batch {
        eps: 1e-5,
        momentum: 0.1,
    };

    pub fn layer(self, channels: usize) -> Box<dyn Module> {
        match self {
            Norm::Batch { eps, momentum } => {
                let mut bn = BatchNorm::new(channels);
                bn.eps = eps;
                bn.momentum = momentum;
                Box::new(bn)
            }
            Norm::Frozen(eps) => Box::new(FrozenBatchNorm2d::new(channels, eps)),
        }
    }
}

/// What a model is built for.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Input image shape (C, H, W).
    pub in_shape: [usize; 3],
    pub num_classes: usize,
    /// Hidden widths, for models that have them (the MLP).
    pub hidden: Vec<usize>,
    pub seed: u64,
}

/// One model of the zoo: its name, the input (C, H, W) and class count it is usually built for,
/// and its builder. Adding a model to the zoo is one entry in [`ZOO`].
pub struct ZooEntry {
    pub name: &'static str,
    pub input: [usize; 3],
    pub classes: usize,
    build: fn(&str, &ModelConfig) -> Result<Box<dyn Module>>,
}

const MNIST: ([usize; 3], usize) = ([1, 28, 28], 10);
const CIFAR: ([usize; 3], usize) = ([3, 32, 32], 10);
const IMAGENET: ([usize; 3], usize) = ([3, 224, 224], 1000);

const fn entry(
    name: &'static str,
    (input, classes): ([usize; 3], usize),
    build: fn(&str, &ModelConfig) -> Result<Box<dyn Module>>,
) -> ZooEntry {
    ZooEntry {
        name,
        input,
        classes,
        build,
    }
}

fn boxed<M: Module + 'static>(m: Result<M>) -> Result<Box<dyn Module>> {
    Ok(Box::new(m?))
}

/// Every model [`build`] knows.
pub static ZOO: &[ZooEntry] = &[
    entry("mlp", MNIST, |_, c| boxed(mlp(c))),
    entry("lenet5", MNIST, |_, c| boxed(lenet5(c))),
    entry("lstm_seq", MNIST, |_, c| boxed(lstm_seq::lstm_seq(c))),
    entry("alexnet", IMAGENET, |_, c| boxed(alexnet::alexnet(c))),
    entry("alexnet_paper", ([3, 227, 227], 1000), |_, c| {
        boxed(alexnet::alexnet_paper(c))
    }),
    entry("alexnet_small", CIFAR, |_, c| {
        boxed(alexnet::alexnet_small(c))
    }),
    entry("vgg11", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg11_bn", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg13", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg13_bn", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg16", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg16_bn", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg19", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("vgg19_bn", IMAGENET, |n, c| boxed(vgg::vgg(n, c))),
    entry("resnet18", IMAGENET, |n, c| boxed(resnet::resnet(n, c))),
    entry("resnet34", IMAGENET, |n, c| boxed(resnet::resnet(n, c))),
    entry("resnet50", IMAGENET, |n, c| boxed(resnet::resnet(n, c))),
    entry("resnet101", IMAGENET, |n, c| boxed(resnet::resnet(n, c))),
    entry("resnet152", IMAGENET, |n, c| boxed(resnet::resnet(n, c))),
    entry("resnet20", CIFAR, |n, c| boxed(resnet::resnet_cifar(n, c))),
    entry("resnet32", CIFAR, |n, c| boxed(resnet::resnet_cifar(n, c))),
    entry("resnet44", CIFAR, |n, c| boxed(resnet::resnet_cifar(n, c))),
    entry("resnet56", CIFAR, |n, c| boxed(resnet::resnet_cifar(n, c))),
    entry("resnet110", CIFAR, |n, c| boxed(resnet::resnet_cifar(n, c))),
    entry("mobilenet_v2", IMAGENET, |_, c| {
        boxed(mobilenet::mobilenet_v2(c))
    }),
    entry("mobilenet_v3_large", IMAGENET, |n, c| {
        boxed(mobilenet_v3::mobilenet_v3(n, c))
    }),
    entry("mobilenet_v3_small", IMAGENET, |n, c| {
        boxed(mobilenet_v3::mobilenet_v3(n, c))
    }),
    entry("googlenet", IMAGENET, |_, c| {
        boxed(googlenet::googlenet(c, Variant::Torchvision, true))
    }),
    entry("googlenet_noaux", IMAGENET, |_, c| {
        boxed(googlenet::googlenet(c, Variant::Torchvision, false))
    }),
    entry("googlenet_paper", IMAGENET, |_, c| {
        boxed(googlenet::googlenet(
            c,
            Variant::Paper { naive: false },
            true,
        ))
    }),
    entry("googlenet_naive", IMAGENET, |_, c| {
        boxed(googlenet::googlenet(
            c,
            Variant::Paper { naive: true },
            true,
        ))
    }),
    entry("googlenet_small", CIFAR, |_, c| {
        boxed(googlenet::googlenet_small(c))
    }),
    entry("bn_inception", IMAGENET, |_, c| {
        boxed(bn_inception::bn_inception(c))
    }),
    entry("inception_v3", ([3, 299, 299], 1000), |_, c| {
        boxed(inception_v3::inception_v3(c, true))
    }),
    entry("inception_v3_noaux", ([3, 299, 299], 1000), |_, c| {
        boxed(inception_v3::inception_v3(c, false))
    }),
];

/// Other names for zoo models.
const ALIASES: &[(&str, &str)] = &[("lenet", "lenet5")];

/// The zoo entry of `name` (or of the model it is an alias of).
pub fn zoo_entry(name: &str) -> Option<&'static ZooEntry> {
    let name = ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, n)| n);
    ZOO.iter().find(|e| e.name == name)
}

/// The names of the zoo's models, in [`ZOO`] order.
pub fn model_names() -> Vec<&'static str> {
    ZOO.iter().map(|e| e.name).collect()
}

/// The input (C, H, W) and class count a model is usually built for (ImageNet's for a name
/// the zoo does not know).
pub fn default_shape(name: &str) -> ([usize; 3], usize) {
    zoo_entry(name).map_or(IMAGENET, |e| (e.input, e.classes))
}

/// Build a model by name.
pub fn build(name: &str, cfg: &ModelConfig) -> Result<Box<dyn Module>> {
    match zoo_entry(name) {
        Some(e) => (e.build)(e.name, cfg),
        None => Err(aics_nn::NnError::Config {
            layer: "model".into(),
            msg: format!(
                "unknown model `{name}` (available: {})",
                model_names().join(", ")
            ),
        }),
    }
}
