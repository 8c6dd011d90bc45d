//! Export by tracing: each model written as ONNX gives the model's outputs when aics's ONNX
//! runner runs it on inputs other than the traced one, and reads back from its bytes whole.

use aics_nn::Module;
use aics_onnx::export::{check_export, export_module, module_forward};
use aics_tensor::{Rng, Tensor};
use aics_vision::{build, ModelConfig};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect(), shape).unwrap()
}

fn exports(name: &str, chw: [usize; 3], batch: usize) {
    let m = build(
        name,
        &ModelConfig {
            in_shape: chw,
            num_classes: 10,
            hidden: vec![32, 16],
            seed: 1,
        },
    )
    .unwrap();
    m.set_training(false);
    let shape = [batch, chw[0], chw[1], chw[2]];
    let model =
        export_module(m.as_ref(), &random(&shape, 2)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bytes = aics_onnx::encode_model(&model).unwrap();
    let back = aics_onnx::decode_model(&bytes).unwrap();
    assert_eq!(back.graph.nodes.len(), model.graph.nodes.len());
    let inputs = vec![vec![random(&shape, 3)], vec![random(&shape, 4)]];
    let err = check_export(&back, &["input"], &inputs, &mut module_forward(m.as_ref()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(err <= 1e-4, "{name}: relative difference {err}");
    // the weights keep their state-dict names
    let inits: Vec<&str> = back
        .graph
        .initializers
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    for (k, _) in aics_nn::state_dict(m.as_ref()) {
        // (auxiliary classifiers do not run in evaluation mode)
        if !k.ends_with("num_batches_tracked") && !k.starts_with("aux") {
            assert!(inits.contains(&k.as_str()), "{name}: no initializer '{k}'");
        }
    }
}

#[test]
fn lenet5_and_mlp() {
    exports("lenet5", [1, 28, 28], 2);
    exports("mlp", [1, 28, 28], 2);
}

#[test]
fn small_cnns() {
    exports("alexnet_small", [3, 32, 32], 2);
    exports("resnet20", [3, 32, 32], 2);
    exports("googlenet_small", [3, 32, 32], 1);
}
