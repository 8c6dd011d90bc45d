//! The networks' layout against PyTorch's DCGAN example, the Fréchet distance against scipy
//! (both in `fixtures/gan/dcgan_step.json`, from `fixtures/gen_gan.py`), the toy mixtures'
//! coverage, and the losses' gradients against finite differences.

use aics_gan::metrics::{class_histogram, classes_covered, frechet_distance, kl_to_uniform};
use aics_gan::models::dcgan_config_from_shapes;
use aics_gan::{loss, Discriminator, Gan, GanConfig, Generator, Objective, Toy};
use aics_nn::{num_params, parameters, state_dict, Module};
use aics_tensor::{hash_uniform, Rng, Tensor};

#[test]
fn dcgan_layout_is_the_pytorch_examples() {
    let fx = aics_testkit::json::load("gan/dcgan_step.json");
    for (name, cfg) in [
        ("dcgan64", GanConfig::dcgan(3, 64)),
        ("dcgan32", GanConfig::dcgan(1, 32)),
    ] {
        let want = &fx["layout"][name];
        let mut rng = Rng::new(0);
        let g = Generator::new(&cfg, &mut rng).unwrap();
        let d = Discriminator::new(&cfg, &mut rng).unwrap();
        for (net, m) in [("generator", &g as &dyn Module), ("discriminator", &d)] {
            let ours: Vec<(String, Vec<usize>)> = state_dict(m)
                .into_iter()
                .map(|(k, t)| (k, t.shape().to_vec()))
                .collect();
            let theirs = want[net].as_object().unwrap();
            assert_eq!(ours.len(), theirs.len(), "{name} {net}: key count");
            for (k, s) in &ours {
                assert_eq!(
                    Some(s.clone()),
                    theirs.get(k).map(aics_testkit::json::usizes),
                    "{name} {net}: {k}"
                );
            }
            let count = want[&format!("{net}_params")].as_u64().unwrap() as usize;
            assert_eq!(num_params(m), count, "{name} {net}: parameters");
        }
        // the configuration comes back from the generator's shapes (how a .pth is rebuilt)
        let shapes: std::collections::HashMap<String, Vec<usize>> = state_dict(&g)
            .into_iter()
            .map(|(k, t)| (k, t.shape().to_vec()))
            .collect();
        let back = dcgan_config_from_shapes(&|k| shapes.get(k).cloned()).unwrap();
        assert_eq!(back, cfg, "{name}");
        let y = g.forward(&g.noise(2, &mut rng)).unwrap();
        assert_eq!(y.shape(), [2, cfg.shape[0], cfg.shape[1], cfg.shape[2]]);
        assert!(y.data().iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        assert_eq!(d.forward(&y).unwrap().shape(), [2]);
    }
}

#[test]
fn every_parameter_learns() {
    for cfg in [
        GanConfig::dcgan(1, 32),
        GanConfig::mlp(&[1, 28, 28]),
        GanConfig::mlp(&[2]),
    ] {
        let mut rng = Rng::new(3);
        let gan = Gan::new(&cfg, &mut rng).unwrap();
        let z = gan.generator.noise(4, &mut rng);
        let l = gan
            .discriminator
            .forward(&gan.generator.forward(&z).unwrap())
            .unwrap();
        loss::g_loss(&l, Objective::NonSaturating)
            .unwrap()
            .backward()
            .unwrap();
        for (k, p) in parameters(&gan) {
            assert!(p.has_grad(), "{cfg:?}: {k} got no gradient");
        }
    }
}

#[test]
fn bad_configurations_are_errors() {
    let mut rng = Rng::new(0);
    assert!(Generator::new(&GanConfig::dcgan(3, 48), &mut rng).is_err());
    let mut c = GanConfig::dcgan(3, 64);
    c.z_dim = 0;
    assert!(Discriminator::new(&c, &mut rng).is_err());
    let g = Generator::new(&GanConfig::dcgan(1, 32), &mut rng).unwrap();
    assert!(g.forward(&Tensor::zeros(&[2, 7])).is_err());
    let d = Discriminator::new(&GanConfig::dcgan(1, 32), &mut rng).unwrap();
    assert!(d.forward(&Tensor::zeros(&[2, 3, 32, 32])).is_err());
    assert!(dcgan_config_from_shapes(&|_| None).is_err());
}

#[test]
fn frechet_distance_matches_scipy() {
    let fx = aics_testkit::json::load("gan/dcgan_step.json");
    for c in fx["frechet"].as_array().unwrap() {
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let (n1, n2, d) = (u("n1"), u("n2"), u("d"));
        let a = hash_uniform(&format!("fd.a.{d}"), n1 * d);
        let b: Vec<f64> = hash_uniform(&format!("fd.b.{d}"), n2 * d)
            .into_iter()
            .map(|v| v * v + 0.1)
            .collect();
        let got = frechet_distance(&a, &b, d).unwrap();
        let want = c["fd"].as_f64().unwrap();
        assert!(
            got.is_finite() && (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
            "d {d}: aics {got}, scipy {want}"
        );
        // a set against itself is at distance 0
        let same = frechet_distance(&a, &a, d).unwrap();
        assert!(same.is_finite() && same.abs() < 1e-10, "{same}");
    }
    // one dimension: (μ₁ − μ₂)² + (σ₁ − σ₂)²
    let a: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
    let b: Vec<f64> = a.iter().map(|v| 3.0 * v + 2.0).collect();
    let var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        (
            m,
            x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64,
        )
    };
    let ((ma, va), (mb, vb)) = (var(&a), var(&b));
    let want = (ma - mb).powi(2) + (va.sqrt() - vb.sqrt()).powi(2);
    let got = frechet_distance(&a, &b, 1).unwrap();
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    assert!(frechet_distance(&[f64::NAN, 1.0], &a, 1).is_err());
    assert!(frechet_distance(&[1.0], &a, 1).is_err());
}

#[test]
fn class_measures() {
    let h = class_histogram(&[0, 0, 1, 2, 2, 2], 4).unwrap();
    assert_eq!(h, [2, 1, 3, 0]);
    assert_eq!(classes_covered(&h), 3);
    // uniform: 0; one class: ln k
    assert!(kl_to_uniform(&[5, 5, 5, 5]).abs() < 1e-12);
    assert!((kl_to_uniform(&[0, 9, 0, 0]) - 4f64.ln()).abs() < 1e-12);
    let p = [2.0 / 6.0, 1.0 / 6.0, 3.0 / 6.0];
    let want: f64 = p.iter().map(|p| p * (p * 4.0f64).ln()).sum();
    assert!((kl_to_uniform(&h) - want).abs() < 1e-12);
    assert!(class_histogram(&[4], 4).is_err());
}

#[test]
fn toy_coverage_counts_modes() {
    for toy in [Toy::Ring8, Toy::Grid25] {
        let mut rng = Rng::new(1);
        let real = toy.sample(2500, &mut rng);
        let c = toy.coverage(&real.data()).unwrap();
        assert_eq!(c.covered, c.modes, "{toy:?}: real data covers every mode");
        // 3σ holds 98.9% of a 2-D Gaussian's mass
        assert!(c.high_quality > 0.97, "{toy:?}: {}", c.high_quality);
        // every point on one mode: one mode covered, all high quality
        let m = toy.modes()[2];
        let one: Vec<f32> = (0..2500).flat_map(|_| [m[0] as f32, m[1] as f32]).collect();
        let c = toy.coverage(&one).unwrap();
        assert_eq!((c.covered, c.high_quality), (1, 1.0));
        // points between the modes: none covered
        let mid: Vec<f32> = (0..100).flat_map(|_| [0.5f32, 0.5]).collect();
        let c = toy.coverage(&mid).unwrap();
        assert_eq!((c.covered, c.high_quality), (0, 0.0));
        assert!(toy.coverage(&[1.0]).is_err());
        assert!(toy.coverage(&[f32::NAN, 0.0]).unwrap().high_quality == 0.0);
    }
}

/// The losses' gradients with respect to the logits against central differences in f64.
#[test]
fn loss_gradients_match_finite_differences() {
    let logits: Vec<f64> = vec![-3.0, -0.4, 0.0, 0.7, 2.5];
    for obj in [
        Objective::Minimax,
        Objective::NonSaturating,
        Objective::Wasserstein,
    ] {
        let f = |v: &[f64]| -> f64 {
            let t = Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), &[v.len()]).unwrap();
            loss::g_loss(&t, obj).unwrap().item().unwrap() as f64
        };
        let x = Tensor::from_vec(logits.iter().map(|&v| v as f32).collect(), &[5])
            .unwrap()
            .requires_grad_(true);
        loss::g_loss(&x, obj).unwrap().backward().unwrap();
        let g = x.grad().unwrap().to_vec();
        for i in 0..5 {
            let h = 1e-2;
            let mut p = logits.clone();
            p[i] += h;
            let mut m = logits.clone();
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h);
            assert!(
                (g[i] as f64 - fd).abs() < 2e-4,
                "{obj:?} logit {i}: autograd {}, differences {fd}",
                g[i]
            );
        }
        // the minimax generator's gradient vanishes where D rejects confidently; the
        // non-saturating one does not
        if obj == Objective::Minimax {
            assert!(g[0].abs() < 0.01);
        }
        if obj == Objective::NonSaturating {
            assert!(g[0].abs() > 0.18);
        }
    }
}

/// The discriminator's (critic's) loss: gradients with respect to the real and the generated
/// logits against central differences (the clipping step is checked in `clip_weights_bounds`).
#[test]
fn discriminator_loss_gradients_match_finite_differences() {
    let real: Vec<f64> = vec![-1.5, 0.0, 0.3, 4.0];
    let fake: Vec<f64> = vec![2.0, -0.2, 0.0, -3.0];
    let t =
        |v: &[f64]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), &[v.len()]).unwrap();
    for obj in [Objective::NonSaturating, Objective::Wasserstein] {
        let f = |r: &[f64], g: &[f64]| -> f64 {
            let (a, b) = loss::d_loss(&t(r), &t(g), obj).unwrap();
            a.add(&b).unwrap().item().unwrap() as f64
        };
        let (xr, xf) = (t(&real).requires_grad_(true), t(&fake).requires_grad_(true));
        let (a, b) = loss::d_loss(&xr, &xf, obj).unwrap();
        a.add(&b).unwrap().backward().unwrap();
        let (gr, gf) = (xr.grad().unwrap().to_vec(), xf.grad().unwrap().to_vec());
        for i in 0..4 {
            let h = 1e-2;
            let bump = |v: &[f64], d: f64| {
                let mut w = v.to_vec();
                w[i] += d;
                w
            };
            let fr = (f(&bump(&real, h), &fake) - f(&bump(&real, -h), &fake)) / (2.0 * h);
            let ff = (f(&real, &bump(&fake, h)) - f(&real, &bump(&fake, -h))) / (2.0 * h);
            assert!(
                (gr[i] as f64 - fr).abs() < 2e-4,
                "{obj:?} real {i}: {} vs {fr}",
                gr[i]
            );
            assert!(
                (gf[i] as f64 - ff).abs() < 2e-4,
                "{obj:?} fake {i}: {} vs {ff}",
                gf[i]
            );
        }
    }
}

#[test]
fn clip_weights_bounds() {
    let p = Tensor::from_vec(vec![-0.5f32, -0.01, 0.003, 0.02, 7.0], &[5]).unwrap();
    aics_gan::clip_weights(&[("w".to_string(), p.clone())], 0.01);
    assert_eq!(p.to_vec(), [-0.01, -0.01, 0.003, 0.01, 0.01]);
}
