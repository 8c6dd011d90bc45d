//! Two DCGAN and two WGAN training iterations against PyTorch (`fixtures/gan/dcgan_step.json`,
//! written by `fixtures/gen_gan.py`): the same key-hashed weights, latent codes and real
//! batches on both sides; the losses of each iteration and every tensor of both networks
//! afterwards (weights, batch-norm statistics) must agree.

use aics_gan::{Gan, GanConfig, GanTrainer, Objective};
use aics_nn::{state_dict, Module};
use aics_tensor::{hash_fill, hash_uniform, Tensor};
use serde_json::Value;

fn sym(key: &str, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v = hash_uniform(key, n)
        .into_iter()
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn hashed_gan(cfg: &GanConfig) -> Gan {
    let gan = Gan::new(cfg, &mut aics_tensor::Rng::new(0)).unwrap();
    for (k, t) in state_dict(&gan) {
        if !k.ends_with("num_batches_tracked") {
            t.set_data(hash_fill(&k, t.shape())).unwrap();
        }
    }
    gan
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        got.is_finite() && want.is_finite() && (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: aics {got}, PyTorch {want}"
    );
}

fn check(case: &str, objective: Objective, critic: usize) {
    let fx = aics_testkit::json::load("gan/dcgan_step.json");
    let c = &fx["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let (nz, b) = (u("nz"), u("batch"));
    let cfg = GanConfig {
        arch: aics_gan::Arch::Dcgan,
        z_dim: nz,
        shape: vec![u("nc"), u("size"), u("size")],
        width: u("ngf"),
    };
    let mut tr = GanTrainer::new(hashed_gan(&cfg), objective, None);
    tr.n_critic = critic;
    let want = &fx[case];
    let wgan = objective == Objective::Wasserstein;
    for (t, it) in want["iterations"].as_array().unwrap().iter().enumerate() {
        let (reals, codes): (Vec<Tensor>, Vec<String>) = if wgan {
            (
                (0..critic)
                    .map(|j| sym(&format!("wreal.{t}.{j}"), &[b, 3, 32, 32]))
                    .collect(),
                (0..critic)
                    .map(|j| format!("wz.{t}.{j}"))
                    .chain([format!("wz.{t}.g")])
                    .collect(),
            )
        } else {
            (
                vec![sym(&format!("real.{t}"), &[b, 3, 32, 32])],
                vec![format!("z.{t}")],
            )
        };
        let mut next = codes.into_iter();
        let s = tr
            .iteration(&reals, &mut |n| sym(&next.next().unwrap(), &[n, nz]))
            .unwrap();
        let tol = if wgan { 2e-4 } else { 2e-5 };
        let f = |k: &str| it[k].as_f64().unwrap();
        // WGAN's values are differences of nearly equal means: compared on an absolute scale
        let close = |w: &str, got: f64, want: f64| {
            if wgan {
                assert!(
                    got.is_finite() && (got - want).abs() <= 2e-8,
                    "{case} {w} {t}: aics {got}, PyTorch {want}"
                );
            } else {
                close(&format!("{case} {w} {t}"), got, want, tol)
            }
        };
        close("d_loss", s.d_loss, f("d_loss"));
        close("g_loss", s.g_loss, f("g_loss"));
        close("d_real", s.d_real, f("d_real"));
        close("d_fake", s.d_fake, f("d_fake"));
        if wgan {
            close("wasserstein", s.wasserstein.unwrap(), f("wasserstein"));
        }
    }
    let theirs = want["tensors"].as_object().unwrap();
    let ours = state_dict(&tr.gan);
    assert_eq!(ours.len(), theirs.len(), "{case}: tensor count");
    for (k, t) in ours {
        let w: &Value = theirs
            .get(&k)
            .unwrap_or_else(|| panic!("{case}: PyTorch has no {k}"));
        let w = aics_testkit::json::f64s(w);
        let got = t.to_vec_f64();
        assert_eq!(got.len(), w.len(), "{case} {k}: length");
        let worst = got
            .iter()
            .zip(&w)
            .map(|(a, b)| {
                if a.is_finite() {
                    (a - b).abs() / (1.0 + b.abs())
                } else {
                    f64::INFINITY
                }
            })
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-5,
            "{case} {k}: worst relative difference {worst}"
        );
    }
    let _ = tr.gan.generator.forward(&sym("z.0", &[2, nz])).unwrap();
}

#[test]
fn dcgan_iterations_match_pytorch() {
    check("dcgan", Objective::NonSaturating, 1);
}

#[test]
fn wgan_iterations_match_pytorch() {
    check("wgan", Objective::Wasserstein, 2);
}

/// PyTorch's DCGAN example saves `netG.state_dict()`; such a file loads as it is, and the
/// generator's evaluation-mode output (batch norm on its running statistics) equals PyTorch's.
#[test]
fn pytorch_generator_pth_loads_and_matches() {
    let fx = aics_testkit::json::load("gan/dcgan_step.json");
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gan/netG_32.pth");
    let raw = aics_io::load_pth(&path).unwrap();
    let map: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = raw
        .into_iter()
        .map(|(k, t)| (k, (t.shape, t.data)))
        .collect();
    let cfg =
        aics_gan::models::dcgan_config_from_shapes(&|k| map.get(k).map(|t| t.0.clone())).unwrap();
    assert_eq!(
        (cfg.z_dim, cfg.width, cfg.shape.clone()),
        (8, 4, vec![3, 32, 32])
    );
    let g = aics_gan::Generator::new(&cfg, &mut aics_tensor::Rng::new(0)).unwrap();
    aics_nn::load_state_dict(&g, &map, true).unwrap();
    let y = aics_gan::train::sample(&g, &sym("pth.z", &[1, 8])).unwrap();
    let want = aics_testkit::json::f64s(&fx["pth"]["output"]);
    assert_eq!(y.numel(), want.len());
    let worst = y
        .to_vec_f64()
        .iter()
        .zip(&want)
        .map(|(a, b)| {
            if a.is_finite() {
                (a - b).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0f64, f64::max);
    assert!(worst < 1e-5, "worst difference {worst}");
}
