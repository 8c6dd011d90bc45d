//! Losses against PyTorch float64 values (`fixtures/ops/*loss*.json`, `cross_entropy*.json`).

use std::path::PathBuf;

use aics_nn::loss::*;
use aics_testkit::fixture::Fixture;

#[test]
fn losses_match_pytorch() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/ops");
    let mut checked = 0;
    const LOSSES: &[&str] = &[
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "bce_with_logits",
    ];
    for fx in Fixture::load_dir(&dir)
        .unwrap()
        .into_iter()
        .filter(|f| LOSSES.contains(&f.op.as_str()))
    {
        let target = fx.usizes("target");
        let weight = fx.f64s("weight");
        let r = fx.check(
            |t| {
                let res = match fx.op.as_str() {
                    "cross_entropy" => cross_entropy(
                        &t["logits"],
                        &target,
                        weight.as_deref(),
                        fx.num("label_smoothing"),
                    ),
                    "nll_loss" => nll_loss(&t["x"], &target, weight.as_deref()),
                    "mse_loss" => mse_loss(&t["x"], &t["target"]),
                    "l1_loss" => l1_loss(&t["x"], &t["target"]),
                    "smooth_l1_loss" => smooth_l1_loss(&t["x"], &t["target"], fx.num("beta")),
                    "bce_with_logits" => bce_with_logits(&t["x"], &t["target"]),
                    other => unreachable!("filtered above: {other}"),
                };
                res.map_err(|e| aics_tensor::TensorError::Arg {
                    op: "loss",
                    msg: e.to_string(),
                })
            },
            1e-9,
        );
        r.unwrap_or_else(|e| panic!("{e}"));
        checked += 1;
    }
    assert!(checked >= 10, "checked {checked} loss fixtures");
}

#[test]
fn bad_targets_are_errors_not_panics() {
    let x = aics_tensor::Tensor::<f32>::zeros(&[2, 3]);
    assert!(cross_entropy(&x, &[0, 3], None, 0.0).is_err());
    assert!(cross_entropy(&x, &[0], None, 0.0).is_err());
    assert!(cross_entropy(&x, &[0, 1], Some(&[1.0, 2.0]), 0.0).is_err());
    assert!(mse_loss(&x, &aics_tensor::Tensor::zeros(&[3, 2])).is_err());
}
