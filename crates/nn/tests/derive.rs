//! `#[derive(Module)]`: the walk it writes from a struct's fields gives PyTorch's state-dict
//! keys, switches train/eval through every child, and finds every random stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aics_nn::{
    parameters, state_dict, BatchNorm, Dropout, Kind, Linear, Module, Result, Sequential,
};
use aics_tensor::{Rng, Tensor};

#[derive(Module)]
struct Block {
    #[module]
    fc: Linear,
    #[module]
    bn: BatchNorm,
    #[module]
    drop: Dropout,
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.drop.forward(&self.bn.forward(&self.fc.forward(x)?)?)
    }
}

#[derive(Module)]
struct Net {
    #[param]
    scale: Tensor,
    #[buffer]
    steps: Tensor,
    #[param(name = "offset")]
    shift: Option<Tensor>,
    #[module(flatten)]
    stem: Sequential,
    #[module]
    blocks: Vec<Block>,
    #[module(name = "AuxHead")]
    aux: Option<Linear>,
    #[module]
    missing: Option<Linear>,
    #[rng]
    noise: Mutex<Rng>,
    #[training]
    training: AtomicBool,
    /// not walked: a setting
    width: usize,
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.stem.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        Ok(h.mul(&self.scale)?)
    }
}

fn net() -> Net {
    let mut rng = Rng::new(1);
    let mut block = || Block {
        fc: Linear::new(4, 4, true, &mut rng).unwrap(),
        bn: BatchNorm::new(4),
        drop: Dropout::new(0.5, 9).unwrap(),
    };
    let (b0, b1) = (block(), block());
    let mut rng = Rng::new(2);
    Net {
        scale: Tensor::ones(&[4]),
        steps: Tensor::zeros(&[]),
        shift: Some(Tensor::zeros(&[4])),
        stem: Sequential::new().push("conv0", Linear::new(4, 4, false, &mut rng).unwrap()),
        blocks: vec![b0, b1],
        aux: Some(Linear::new(4, 2, true, &mut rng).unwrap()),
        missing: None,
        noise: Mutex::new(Rng::new(3)),
        training: AtomicBool::new(true),
        width: 4,
    }
}

#[test]
fn keys_kinds_training_and_rngs_follow_the_fields() {
    let n = net();
    let keys: Vec<String> = state_dict(&n).into_iter().map(|(k, _)| k).collect();
    let bn = |b: &str| {
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked",
        ]
        .map(|k| format!("blocks.{b}.bn.{k}"))
    };
    let mut want = vec!["scale", "steps", "offset", "conv0.weight"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for b in ["0", "1"] {
        want.push(format!("blocks.{b}.fc.weight"));
        want.push(format!("blocks.{b}.fc.bias"));
        want.extend(bn(b));
    }
    want.extend(["AuxHead.weight".to_string(), "AuxHead.bias".to_string()]);
    assert_eq!(keys, want);
    // buffers are not trained
    let trained: Vec<String> = parameters(&n).into_iter().map(|(k, _)| k).collect();
    assert!(!trained
        .iter()
        .any(|k| k == "steps" || k.contains("running")));
    let mut kinds = Vec::new();
    n.visit("net", &mut |k, _, kind| kinds.push((k, kind)));
    assert_eq!(kinds[1], ("net.steps".to_string(), Kind::Buffer));

    // train/eval reaches the struct's flag and every child's
    n.set_training(false);
    assert!(!n.training.load(Ordering::Relaxed));
    let x = Tensor::ones(&[2, 4]);
    let a = n.forward(&x).unwrap().to_vec();
    let b = n.forward(&x).unwrap().to_vec();
    assert_eq!(
        a, b,
        "dropout and batch norm in eval mode are deterministic"
    );
    n.set_training(true);
    assert!(n.training.load(Ordering::Relaxed));

    // random streams in field order: each block's dropout, then the struct's own
    let mut rngs = Vec::new();
    n.visit_rngs("", &mut |k, _| rngs.push(k));
    assert_eq!(rngs, ["blocks.0.drop.rng", "blocks.1.drop.rng", "noise"]);
    assert_eq!(n.type_name(), "Net");
    assert_eq!(n.width, 4);
}
