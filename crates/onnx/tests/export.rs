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
    let hidden = if name == "mlp" { vec![32, 16] } else { vec![] };
    let m = build(
        name,
        &ModelConfig {
            in_shape: chw,
            num_classes: 10,
            hidden: hidden.clone(),
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
    let (err, _) = check_export(&back, &["input"], &inputs, &mut module_forward(m.as_ref()))
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

#[test]
fn lstm_seq_two_layers() {
    exports("lstm_seq", [1, 12, 10], 3);
}

/// Each recurrent cell aics has, batch-first and not, forward and bidirectional.
#[test]
fn recurrent_cells() {
    use aics_nn::{Recurrent, RecurrentConfig};
    use aics_tensor::Cell;
    let cells = [
        Cell::RnnTanh,
        Cell::RnnRelu,
        Cell::Lstm {
            peephole: false,
            coupled: false,
        },
        Cell::Lstm {
            peephole: true,
            coupled: false,
        },
        Cell::Lstm {
            peephole: true,
            coupled: true,
        },
        Cell::Gru { reset_after: true },
        Cell::Gru { reset_after: false },
    ];
    for cell in cells {
        for (bidir, layers) in [(false, 1), (true, 2)] {
            let mut rng = Rng::new(5);
            let m = Recurrent::new(
                RecurrentConfig::new(cell, 6, 5)
                    .layers(layers)
                    .bidirectional(bidir),
                &mut rng,
            )
            .unwrap();
            let named = aics_nn::state_dict(&m);
            let mut fwd = |xs: &[Tensor]| -> Result<Vec<Tensor>, String> {
                let (y, st) = m
                    .forward_state(&xs[0], None, None)
                    .map_err(|e| e.to_string())?;
                Ok(vec![y, st.h])
            };
            let x = random(&[4, 3, 6], 6);
            let model = aics_onnx::export::export(&[x], &["x"], &["y", "h"], &named, &mut fwd)
                .unwrap_or_else(|e| panic!("{cell:?}: {e}"));
            let inputs = vec![vec![random(&[4, 3, 6], 7)]];
            let (err, _) = check_export(&model, &["x"], &inputs, &mut fwd)
                .unwrap_or_else(|e| panic!("{cell:?} bidirectional {bidir}: {e}"));
            assert!(err <= 1e-4, "{cell:?}: relative difference {err}");
        }
    }
}
