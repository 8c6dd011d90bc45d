//! Summaries and feature captures from outside the model: what the containers run is seen
//! under its state-dict path, a struct's own forward is one layer unless the struct is
//! transparent, and the multiply-adds come from the ops.

use aics_nn::inspect::{capture, summary};
use aics_nn::{Conv2d, Linear, Module, ReLU, Result, Sequential};
use aics_tensor::{ConvParams, Rng, Tensor};

/// A block with its own forward: seen as one layer.
#[derive(Module)]
struct Block {
    #[module]
    conv: Conv2d,
    #[module]
    shortcut: Option<Sequential>,
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok(self.conv.forward(x)?.add(&s)?)
    }
}

/// Stages run by containers: looked into.
#[derive(Module)]
#[module(transparent)]
struct Net {
    #[module(flatten)]
    stem: Sequential,
    #[module]
    head: Sequential,
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.stem.forward(x)?.flatten(1)?)
    }
}

fn net() -> Net {
    let mut rng = Rng::new(4);
    let p = ConvParams::default().padding(1);
    let block = Block {
        conv: Conv2d::new(2, 2, 3, p, false, &mut rng).unwrap(),
        shortcut: Some(
            Sequential::new()
                .add(Conv2d::new(2, 2, 1, ConvParams::default(), false, &mut rng).unwrap()),
        ),
    };
    Net {
        stem: Sequential::new()
            .push("conv1", Conv2d::new(1, 2, 3, p, true, &mut rng).unwrap())
            .push("relu", ReLU)
            .push("block", block),
        head: Sequential::new().add(Linear::new(2 * 5 * 5, 3, true, &mut rng).unwrap()),
    }
}

#[test]
fn summary_rows_follow_the_containers() {
    let n = net();
    let x = Tensor::ones(&[1, 1, 5, 5]);
    let rows = summary(&n, &x).unwrap().rows;
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["conv1", "relu", "block", "head.0"]);
    let block = &rows[2];
    // the block's 3×3 conv and its 1×1 shortcut, counted by the ops: 2·25·(2·9) + 2·25·2
    assert_eq!(
        (block.layer.as_str(), block.macs, block.params),
        ("Block", 900 + 100, 36 + 4)
    );
    assert_eq!(rows[0].macs, 2 * 25 * 9);
    assert_eq!(rows[3].output, [1, 3]);
    assert_eq!(rows[3].macs, 50 * 3);
    // a model with no containers is one row
    let lin = Linear::new(4, 2, true, &mut Rng::new(1)).unwrap();
    let rows = summary(&lin, &Tensor::ones(&[3, 4])).unwrap().rows;
    assert_eq!(
        (rows.len(), rows[0].name.as_str(), rows[0].macs),
        (1, "", 3 * 4 * 2)
    );
}

#[test]
fn capture_finds_a_layer_by_its_path() {
    let n = net();
    let x = Tensor::ones(&[1, 1, 5, 5]);
    let want = n.forward(&x).unwrap().to_vec();
    for (path, shape) in [
        ("conv1", vec![1, 2, 5, 5]),
        ("block", vec![1, 2, 5, 5]),
        ("head.0", vec![1, 3]),
        ("head", vec![1, 3]),
    ] {
        let (y, got) = capture(&n, &x, path).unwrap();
        assert_eq!(y.to_vec(), want, "the output is the model's");
        assert_eq!(
            got.unwrap_or_else(|| panic!("{path} not captured")).shape(),
            &shape[..]
        );
    }
    // inside a block's own forward, and a path that is not there
    for path in ["block.shortcut.0", "block.conv", "nope"] {
        assert!(capture(&n, &x, path).unwrap().1.is_none(), "{path}");
    }
    // the relu's output is the stem's second layer's, clamped at 0
    let (_, r) = capture(&n, &x, "relu").unwrap();
    assert!(r.unwrap().to_vec().iter().all(|v| *v >= 0.0));
}
