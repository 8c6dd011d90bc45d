//! GoogLeNet / Inception v1 (Szegedy et al., 2014) as torchvision defines it: convolutions with
//! batch norm (`BasicConv2d`: conv without bias, BN with eps 1e-3, ReLU), nine Inception modules
//! with 1×1 reductions, and two auxiliary classifiers on inception4a and inception4d that only
//! run in training (the paper weights their losses by 0.3). Like torchvision, the "5×5" branch
//! uses a 3×3 kernel. Keys `inception3a.branch2.1.conv.weight`, `aux1.fc2.bias`, …

use aics_nn::layers::{BatchNorm, Conv2d, Dropout, Linear, MaxPool2d, ReLU};
use aics_nn::module::key;
use aics_nn::{Kind, Module, Result, Sequential, SummaryRow};
use aics_tensor::{ConvParams, PoolParams, Rng, Tensor};

use super::ModelConfig;

/// Conv (no bias) → BatchNorm (eps 1e-3) → ReLU, keys `conv.*`, `bn.*`.
fn basic_conv(
    c: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Sequential> {
    let mut bn = BatchNorm::new(o);
    bn.eps = 1e-3;
    Ok(Sequential::new()
        .push(
            "conv",
            Conv2d::new(
                c,
                o,
                k,
                ConvParams::default().stride(stride).padding(pad),
                false,
                rng,
            )?,
        )
        .push("bn", bn)
        .push("relu", ReLU))
}

fn max_pool(k: usize, s: usize, p: usize) -> MaxPool2d {
    MaxPool2d(PoolParams::new(k).stride(s).padding(p).ceil_mode(true))
}

/// Four parallel branches concatenated along channels: 1×1; 1×1 → 3×3; 1×1 → 3×3 ("5×5");
/// 3×3 max pool → 1×1.
pub struct Inception {
    branches: [Sequential; 4],
}

impl Inception {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c: usize,
        b1: usize,
        r3: usize,
        b3: usize,
        r5: usize,
        b5: usize,
        pool: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(Inception {
            branches: [
                basic_conv(c, b1, 1, 1, 0, rng)?,
                Sequential::new()
                    .add(basic_conv(c, r3, 1, 1, 0, rng)?)
                    .add(basic_conv(r3, b3, 3, 1, 1, rng)?),
                Sequential::new()
                    .add(basic_conv(c, r5, 1, 1, 0, rng)?)
                    .add(basic_conv(r5, b5, 3, 1, 1, rng)?),
                Sequential::new()
                    .add(max_pool(3, 1, 1))
                    .add(basic_conv(c, pool, 1, 1, 0, rng)?),
            ],
        })
    }
}

impl Module for Inception {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let outs: Vec<Tensor> = self
            .branches
            .iter()
            .map(|b| b.forward(x))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok(Tensor::concat(&refs, 1)?)
    }
    fn type_name(&self) -> String {
        "Inception".into()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        for (i, b) in self.branches.iter().enumerate() {
            b.visit(&key(prefix, &format!("branch{}", i + 1)), f);
        }
    }
    fn set_training(&self, on: bool) {
        self.branches.iter().for_each(|b| b.set_training(on));
    }
    fn macs(&self, input: &[usize], _output: &[usize]) -> usize {
        let _g = aics_tensor::no_grad();
        let x = Tensor::zeros(input);
        let mut rows = Vec::new();
        self.branches.iter().for_each(|b| {
            let _ = b.summarize("", &x, &mut rows);
        });
        rows.iter().map(|r| r.macs).sum()
    }
}

/// Auxiliary classifier: adaptive 4×4 average pool → 1×1 conv (128) → fc1 (2048→1024) → ReLU →
/// dropout 0.7 → fc2.
pub fn inception_aux(c: usize, classes: usize, seed: u64, rng: &mut Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push("pool", aics_nn::layers::AdaptiveAvgPool2d(4, 4))
        .push("conv", basic_conv(c, 128, 1, 1, 0, rng)?)
        .push("flatten", aics_nn::layers::Flatten(1))
        .push("fc1", Linear::new(2048, 1024, true, rng)?)
        .push("relu", ReLU)
        .push("dropout", Dropout::new(0.7, seed)?)
        .push("fc2", Linear::new(1024, classes, true, rng)?))
}

pub struct GoogLeNet {
    /// The main path up to inception4a, to inception4d, and to the logits.
    stem: Sequential,
    mid: Sequential,
    head: Sequential,
    pub aux1: Option<Sequential>,
    pub aux2: Option<Sequential>,
    training: std::sync::atomic::AtomicBool,
}

impl GoogLeNet {
    /// Logits, and in training the two auxiliary logits.
    pub fn forward_aux(&self, x: &Tensor) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let a = self.stem.forward(x)?;
        let b = self.mid.forward(&a)?;
        let y = self.head.forward(&b)?;
        let aux = match (
            &self.aux1,
            &self.aux2,
            self.training.load(std::sync::atomic::Ordering::Relaxed),
        ) {
            (Some(a1), Some(a2), true) => Some((a1.forward(&a)?, a2.forward(&b)?)),
            _ => None,
        };
        Ok((y, aux))
    }
}

impl Module for GoogLeNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head
            .forward(&self.mid.forward(&self.stem.forward(x)?)?)
    }
    fn type_name(&self) -> String {
        "GoogLeNet".into()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Kind)) {
        self.stem.visit(prefix, f);
        self.mid.visit(prefix, f);
        if let Some(a) = &self.aux1 {
            a.visit(&key(prefix, "aux1"), f);
        }
        if let Some(a) = &self.aux2 {
            a.visit(&key(prefix, "aux2"), f);
        }
        self.head.visit(prefix, f);
    }
    fn set_training(&self, on: bool) {
        self.training
            .store(on, std::sync::atomic::Ordering::Relaxed);
        for s in [&self.stem, &self.mid, &self.head] {
            s.set_training(on);
        }
        self.aux1
            .iter()
            .chain(self.aux2.iter())
            .for_each(|a| a.set_training(on));
    }
    fn forward_capture(&self, x: &Tensor, path: &str) -> Result<(Tensor, Option<Tensor>)> {
        let (a, c1) = self.stem.forward_capture(x, path)?;
        let (b, c2) = self.mid.forward_capture(&a, path)?;
        let (y, c3) = self.head.forward_capture(&b, path)?;
        Ok((y, c1.or(c2).or(c3)))
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let a = self.stem.summarize(name, x, rows)?;
        let b = self.mid.summarize(name, &a, rows)?;
        if let Some(a1) = &self.aux1 {
            a1.summarize(&key(name, "aux1"), &a, rows)?;
        }
        if let Some(a2) = &self.aux2 {
            a2.summarize(&key(name, "aux2"), &b, rows)?;
        }
        self.head.summarize(name, &b, rows)
    }
}

/// torchvision's `googlenet(aux_logits=True)`; `aux = false` drops the auxiliary classifiers
/// (as the published ImageNet weights do).
pub fn googlenet(cfg: &ModelConfig, aux: bool) -> Result<GoogLeNet> {
    let mut rng = Rng::new(cfg.seed);
    let r = &mut rng;
    let stem = Sequential::new()
        .push("conv1", basic_conv(cfg.in_shape[0], 64, 7, 2, 3, r)?)
        .push("maxpool1", max_pool(3, 2, 0))
        .push("conv2", basic_conv(64, 64, 1, 1, 0, r)?)
        .push("conv3", basic_conv(64, 192, 3, 1, 1, r)?)
        .push("maxpool2", max_pool(3, 2, 0))
        .push(
            "inception3a",
            Inception::new(192, 64, 96, 128, 16, 32, 32, r)?,
        )
        .push(
            "inception3b",
            Inception::new(256, 128, 128, 192, 32, 96, 64, r)?,
        )
        .push("maxpool3", max_pool(3, 2, 0))
        .push(
            "inception4a",
            Inception::new(480, 192, 96, 208, 16, 48, 64, r)?,
        );
    let mid = Sequential::new()
        .push(
            "inception4b",
            Inception::new(512, 160, 112, 224, 24, 64, 64, r)?,
        )
        .push(
            "inception4c",
            Inception::new(512, 128, 128, 256, 24, 64, 64, r)?,
        )
        .push(
            "inception4d",
            Inception::new(512, 112, 144, 288, 32, 64, 64, r)?,
        );
    let (aux1, aux2) = if aux {
        (
            Some(inception_aux(512, cfg.num_classes, cfg.seed ^ 3, r)?),
            Some(inception_aux(528, cfg.num_classes, cfg.seed ^ 4, r)?),
        )
    } else {
        (None, None)
    };
    let head = Sequential::new()
        .push(
            "inception4e",
            Inception::new(528, 256, 160, 320, 32, 128, 128, r)?,
        )
        .push("maxpool4", max_pool(2, 2, 0))
        .push(
            "inception5a",
            Inception::new(832, 256, 160, 320, 32, 128, 128, r)?,
        )
        .push(
            "inception5b",
            Inception::new(832, 384, 192, 384, 48, 128, 128, r)?,
        )
        .push("avgpool", aics_nn::layers::AdaptiveAvgPool2d(1, 1))
        .push("flatten", aics_nn::layers::Flatten(1))
        .push("dropout", Dropout::new(0.2, cfg.seed ^ 5)?)
        .push("fc", Linear::new(1024, cfg.num_classes, true, r)?);
    Ok(GoogLeNet {
        stem,
        mid,
        head,
        aux1,
        aux2,
        training: std::sync::atomic::AtomicBool::new(true),
    })
}
