//! The inference path (`Module::prepare_inference`: batch norm folded into convolutions,
//! activations and residual adds in their output pass) against the plain path, on every zoo
//! model with batch-norm statistics and affine terms far from the identity.

use aics_nn::{Kind, Module};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_fill, no_grad, Tensor};
use aics_vision::{build, default_shape, model_names, ModelConfig};

/// Batch-norm buffers and 1-D weights set from key-hashed values, so that folding them is not
/// folding the identity (the built models have mean 0, variance 1, weight 1).
fn perturb_norms(m: &dyn Module) {
    m.visit("", &mut |key, t, kind| {
        let n = t.numel();
        let u = hash_fill(&key, &[n]);
        if kind == Kind::Buffer && key.ends_with("running_mean") {
            t.update_data(|v| v.iter_mut().zip(&u).for_each(|(v, u)| *v = 0.4 * u));
        } else if kind == Kind::Buffer && key.ends_with("running_var") {
            t.update_data(|v| v.iter_mut().zip(&u).for_each(|(v, u)| *v = 0.3 + u.abs()));
        } else if t.shape().len() == 1 && key.ends_with("weight") {
            t.update_data(|v| v.iter_mut().zip(&u).for_each(|(v, u)| *v = 1.0 + 0.5 * u));
        }
    });
}

#[test]
fn every_zoo_model_gives_the_plain_paths_logits() {
    let mut fused_any = 0;
    for name in model_names() {
        let (shape, _) = default_shape(name);
        // ImageNet models at 64² (Inception-v3's and the paper's AlexNet's smallest inputs are
        // larger), the others as built
        let in_shape = if name.starts_with("inception_v3") {
            [3, 80, 80]
        } else if name == "alexnet_paper" {
            [3, 96, 96]
        } else if shape[1] >= 224 {
            [3, 64, 64]
        } else {
            shape
        };
        let cfg = ModelConfig {
            in_shape,
            num_classes: 10,
            hidden: vec![],
            seed: 3,
        };
        // one model: its plain outputs first, then the same model prepared
        let mut fused = build(name, &cfg).unwrap();
        perturb_norms(fused.as_ref());
        fused.set_training(false);
        let x = Tensor::from_vec(
            hash_fill("inference.x", &[2, in_shape[0], in_shape[1], in_shape[2]]),
            &[2, in_shape[0], in_shape[1], in_shape[2]],
        )
        .unwrap();
        let _g = no_grad();
        let want = fused.forward(&x).unwrap().to_vec();
        let before = aics_nn::inspect::summary(fused.as_ref(), &x).unwrap();
        fused.prepare_inference().unwrap();
        let got = fused.forward(&x).unwrap().to_vec();
        assert_close(name, &got, &want, Tol::scaled(1e-5, &want));
        // the summary's layer types show what was fused
        let after = aics_nn::inspect::summary(fused.as_ref(), &x).unwrap();
        let n = |s: &aics_nn::inspect::Summary| {
            s.rows.iter().filter(|r| r.layer.contains("+ ReLU")).count()
        };
        assert!(n(&after) >= n(&before), "{name}");
        if n(&after) > n(&before) {
            fused_any += 1;
        }
        // a second call changes nothing
        fused.prepare_inference().unwrap();
        assert_eq!(
            fused.forward(&x).unwrap().to_vec(),
            got,
            "{name}: second prepare"
        );
    }
    assert!(fused_any >= 10, "only {fused_any} models had layers fused");
}

#[test]
fn training_mode_batch_norm_is_refused() {
    let cfg = ModelConfig {
        in_shape: [3, 64, 64],
        num_classes: 10,
        hidden: vec![],
        seed: 0,
    };
    let mut m = build("resnet18", &cfg).unwrap();
    let e = m.prepare_inference().unwrap_err().to_string();
    assert!(e.contains("set_training(false)"), "{e}");
}
