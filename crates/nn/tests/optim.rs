//! Optimizers: L-BFGS on the Rosenbrock function, closed-form checks of single steps, schedules,
//! clipping, and checkpoint round trips (atomic writes, bad files).

use std::collections::HashMap;

use aics_nn::checkpoint::{load_checkpoint, save_checkpoint};
use aics_nn::optim::Optimizer;
use aics_nn::*;
use aics_tensor::{Rng, Tensor};

fn rosenbrock(p: &Tensor) -> aics_tensor::Result<Tensor> {
    // (1 - x)² + 100 (y - x²)²
    let x = p.narrow(0, 0, 1)?;
    let y = p.narrow(0, 1, 1)?;
    let a = x.neg().add_scalar(1.0).square();
    let b = y.sub(&x.square())?.square().mul_scalar(100.0);
    Ok(a.add(&b)?.sum())
}

#[test]
fn lbfgs_strong_wolfe_minimises_rosenbrock() {
    let p = Tensor::from_vec(vec![-1.5f32, 2.0], &[2])
        .unwrap()
        .requires_grad_(true);
    let mut opt = Lbfgs::new(vec![("p".into(), p.clone())])
        .lr(1.0)
        .strong_wolfe(true);
    opt.max_iter = 100;
    opt.max_eval = 200;
    for _ in 0..5 {
        opt.step_with(&mut || {
            p.zero_grad();
            let l = rosenbrock(&p)?;
            l.backward()?;
            Ok(l.item()? as f64)
        })
        .unwrap();
    }
    let v = p.to_vec();
    assert!(
        (v[0] - 1.0).abs() < 1e-3 && (v[1] - 1.0).abs() < 1e-3,
        "ended at {v:?}"
    );
}

#[test]
fn sgd_momentum_nesterov_and_adam_single_steps() {
    // One parameter w = 2, loss = w² ⇒ g = 4.
    let mk = || {
        Tensor::from_vec(vec![2.0f32], &[1])
            .unwrap()
            .requires_grad_(true)
    };
    let grad = |w: &Tensor| w.square().sum().backward().unwrap();

    let w = mk();
    let mut sgd = Sgd::new(vec![("w".into(), w.clone())])
        .lr(0.1)
        .momentum(0.9);
    grad(&w);
    sgd.step().unwrap(); // b = 4; w = 2 - 0.4
    assert!((w.to_vec()[0] - 1.6).abs() < 1e-6);
    sgd.zero_grad();
    grad(&w); // g = 3.2; b = 0.9·4 + 3.2 = 6.8; w = 1.6 - 0.68
    sgd.step().unwrap();
    assert!((w.to_vec()[0] - 0.92).abs() < 1e-6);

    let w = mk();
    let mut nes = Sgd::new(vec![("w".into(), w.clone())])
        .lr(0.1)
        .momentum(0.9)
        .nesterov(true);
    grad(&w);
    nes.step().unwrap(); // b = 4; d = 4 + 0.9·4 = 7.6; w = 2 - 0.76
    assert!((w.to_vec()[0] - 1.24).abs() < 1e-6);

    let w = mk();
    let mut adam = Adam::new(vec![("w".into(), w.clone())]).lr(0.01);
    grad(&w);
    adam.step().unwrap(); // first Adam step moves by lr·sign(g) (up to ε)
    assert!((w.to_vec()[0] - 1.99).abs() < 1e-6);

    let w = mk();
    let mut adamw = Adam::adamw(vec![("w".into(), w.clone())])
        .lr(0.01)
        .weight_decay(0.1);
    grad(&w);
    adamw.step().unwrap(); // w·(1 - 0.001) - 0.01
    assert!((w.to_vec()[0] - (2.0 * 0.999 - 0.01)).abs() < 1e-6);
}

/// SGD in every setting (momentum or none, weight decay or none, Nesterov or not) and Adam
/// and AdamW, three steps on a parameter long enough to be updated in parallel chunks,
/// against the update rules of PyTorch's documentation written out in f64.
#[test]
fn optimizers_follow_their_update_rules_over_steps() {
    let n = 70_000;
    let mut rng = Rng::new(5);
    let w0: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let c: Vec<f32> = (0..n).map(|_| (0.5 + 1.5 * rng.uniform()) as f32).collect();
    let ct = Tensor::from_vec(c.clone(), &[n]).unwrap();
    // loss = ½ Σ c·w², so g = c·w
    let grad = |w: &Tensor| {
        w.square()
            .mul(&ct)
            .unwrap()
            .sum()
            .mul_scalar(0.5)
            .backward()
            .unwrap()
    };
    let check = |name: &str, got: &[f32], want: &[f64]| {
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            let ok = ((a as f64) - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(ok, "{name}: element {i}: {a} against {b}");
        }
    };
    let (lr, mu) = (0.05, 0.9);
    for (momentum, wd, nesterov) in [
        (0.0, 0.0, false),
        (0.0, 0.01, false),
        (mu, 0.0, false),
        (mu, 0.01, false),
        (mu, 0.0, true),
        (mu, 0.01, true),
    ] {
        let w = Tensor::from_vec(w0.clone(), &[n])
            .unwrap()
            .requires_grad_(true);
        let mut opt = Sgd::new(vec![("w".into(), w.clone())])
            .lr(lr)
            .momentum(momentum)
            .weight_decay(wd)
            .nesterov(nesterov);
        let mut rw: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
        let mut rb = vec![0.0f64; n];
        for step in 0..3 {
            opt.zero_grad();
            grad(&w);
            opt.step().unwrap();
            for i in 0..n {
                let d = c[i] as f64 * rw[i] + wd * rw[i];
                rb[i] = if step == 0 { d } else { momentum * rb[i] + d };
                let u = if momentum == 0.0 {
                    d
                } else if nesterov {
                    d + momentum * rb[i]
                } else {
                    rb[i]
                };
                rw[i] -= lr * u;
            }
            let tag = format!("sgd momentum {momentum} decay {wd} nesterov {nesterov} step {step}");
            check(&tag, &w.to_vec(), &rw);
        }
    }
    for (decoupled, wd) in [(false, 0.0), (false, 0.01), (true, 0.1)] {
        let w = Tensor::from_vec(w0.clone(), &[n])
            .unwrap()
            .requires_grad_(true);
        let params = vec![("w".to_string(), w.clone())];
        let mut opt = if decoupled {
            Adam::adamw(params)
        } else {
            Adam::new(params)
        }
        .lr(0.01)
        .weight_decay(wd);
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let mut rw: Vec<f64> = w0.iter().map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        for t in 1..=3 {
            opt.zero_grad();
            grad(&w);
            opt.step().unwrap();
            for i in 0..n {
                let mut g = c[i] as f64 * rw[i];
                if decoupled {
                    rw[i] *= 1.0 - lr * wd;
                } else {
                    g += wd * rw[i];
                }
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                rw[i] -= lr * mh / (vh.sqrt() + eps);
            }
            let tag = format!("adam decoupled {decoupled} decay {wd} step {t}");
            check(&tag, &w.to_vec(), &rw);
        }
    }
}

#[test]
fn schedules() {
    let s = LrSchedule::parse("step:2:0.5", 10).unwrap();
    assert_eq!(s.lr_at(1.0, 3, 0), 0.5);
    let m = LrSchedule::parse("multistep:2,4:0.1", 10).unwrap();
    assert!((m.lr_at(1.0, 4, 0) - 0.01).abs() < 1e-12);
    let c = LrSchedule::parse("cosine", 10).unwrap();
    assert!((c.lr_at(1.0, 5, 0) - 0.5).abs() < 1e-12);
    assert!((c.lr_at(1.0, 0, 2) - 1.0 / 3.0).abs() < 1e-12); // warm-up
    assert!(LrSchedule::parse("bogus", 10).is_err());
}

#[test]
fn clip_grad_norm_scales() {
    let p = Tensor::from_vec(vec![3.0f32, 4.0], &[2])
        .unwrap()
        .requires_grad_(true);
    p.mul(&p).unwrap().sum().mul_scalar(0.5).backward().unwrap(); // g = (3, 4), |g| = 5
    let params = vec![("p".to_string(), p.clone())];
    let n = clip_grad_norm(&params, 1.0);
    assert!((n - 5.0).abs() < 1e-6);
    let g = p.grad().unwrap().to_vec();
    assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
}

fn tmpdir(name: &str) -> aics_testkit::TempDir {
    aics_testkit::TempDir::new(&format!("nn-test-{name}"))
}

#[test]
fn checkpoint_round_trip_with_optimizer_state() {
    let mut rng = Rng::new(1);
    let model = Sequential::new()
        .add(Linear::new(3, 4, true, &mut rng).unwrap())
        .add(ReLU)
        .add(BatchNorm::new(4));
    let x = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng);
    let mut opt = Sgd::new(parameters(&model)).lr(0.1).momentum(0.9);
    model.forward(&x).unwrap().sum().backward().unwrap();
    opt.step().unwrap();
    let dir = tmpdir("ckpt");
    let path = dir.join("m.safetensors");
    save_checkpoint(
        &path,
        &model,
        Some(&opt),
        HashMap::from([("epoch".into(), "3".into())]),
    )
    .unwrap();

    let mut rng2 = Rng::new(99);
    let model2 = Sequential::new()
        .add(Linear::new(3, 4, true, &mut rng2).unwrap())
        .add(ReLU)
        .add(BatchNorm::new(4));
    let ck = load_checkpoint(&path).unwrap();
    ck.load_into(&model2).unwrap();
    assert_eq!(ck.meta("epoch"), Some("3"));
    for ((k1, a), (k2, b)) in state_dict(&model).iter().zip(state_dict(&model2).iter()) {
        assert_eq!(k1, k2);
        assert_eq!(a.to_vec(), b.to_vec(), "{k1}");
    }
    let keys: Vec<String> = state_dict(&model).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "0.weight",
            "0.bias",
            "2.weight",
            "2.bias",
            "2.running_mean",
            "2.running_var",
            "2.num_batches_tracked"
        ]
    );
    let mut opt2 = Sgd::new(parameters(&model2)).lr(0.1).momentum(0.9);
    opt2.load_state(&ck.optimizer_state()).unwrap();
    assert_eq!(opt2.state(), opt.state());
    // no temp files are left behind
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tmpdir("bad");
    let mut rng = Rng::new(1);
    let model = Sequential::new().add(Linear::new(3, 4, true, &mut rng).unwrap());
    // missing file
    let e = load_checkpoint(&dir.join("nope.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
    // garbage
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint at all").unwrap();
    let e = load_checkpoint(&dir.join("junk.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("junk.safetensors") && e.contains("not a valid checkpoint"),
        "{e}"
    );
    // truncated
    let good = dir.join("good.safetensors");
    save_checkpoint(&good, &model, None, HashMap::new()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("trunc.safetensors"), &bytes[..bytes.len() - 10]).unwrap();
    assert!(load_checkpoint(&dir.join("trunc.safetensors")).is_err());
    // another model's checkpoint: shape mismatch names the tensor
    let other = Sequential::new().add(Linear::new(3, 5, true, &mut rng).unwrap());
    let e = load_checkpoint(&good)
        .unwrap()
        .load_into(&other)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("0.weight") && e.contains("[5, 3]"), "{e}");
    // missing key
    let bigger = Sequential::new()
        .add(Linear::new(3, 4, true, &mut rng).unwrap())
        .add(Linear::new(4, 2, true, &mut rng).unwrap());
    let e = load_checkpoint(&good)
        .unwrap()
        .load_into(&bigger)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("1.weight"), "{e}");
}

/// `torch.optim.RMSprop` trajectories (`fixtures/rmsprop.json`, written by
/// `fixtures/gen_rmsprop.py` in float64): each step's stored gradient is replayed on our
/// float32 RMSprop and the parameter is compared with PyTorch's after every step.
#[test]
fn rmsprop_matches_pytorch() {
    // float32 updates against float64 references: relative (absolute near 0)
    const TOL: f64 = 1e-6;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/rmsprop.json");
    let text = std::fs::read_to_string(path).expect("fixtures/rmsprop.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .expect("a list of numbers")
            .iter()
            .map(|x| x.as_f64().expect("a number"))
            .collect()
    };
    let steps = v["steps"].as_u64().expect("steps") as usize;
    let cases = v["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 5 && steps >= 5,
        "{} cases of {steps} steps",
        cases.len()
    );
    let mut worst = 0.0f64;
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let num = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}"));
        let p0 = floats(&c["p0"]);
        let p = Tensor::from_vec(p0.iter().map(|&x| x as f32).collect(), &[p0.len()])
            .unwrap()
            .requires_grad_(true);
        let mut opt = RmsProp::new(vec![("p".into(), p.clone())])
            .lr(num("lr"))
            .momentum(num("momentum"))
            .weight_decay(num("weight_decay"));
        opt.alpha = num("alpha");
        opt.eps = num("eps");
        let grads = c["grads"].as_array().expect("grads");
        let params = c["params"].as_array().expect("params");
        assert!(
            grads.len() == steps && params.len() == steps,
            "{name}: {steps} steps"
        );
        for (step, (g, want)) in grads.iter().zip(params).enumerate() {
            let g: Vec<f32> = floats(g).iter().map(|&x| x as f32).collect();
            assert_eq!(g.len(), p0.len(), "{name}: gradient length");
            p.set_grad(Some(g));
            opt.step().unwrap();
            opt.zero_grad();
            let got = p.to_vec();
            let want = floats(want);
            let r = aics_tensor::testing::assert_close(
                &format!("rmsprop {name} step {}", step + 1),
                &got,
                &want,
                aics_tensor::testing::Tol::mixed(TOL),
            );
            worst = worst.max(r.max_rel);
        }
    }
    eprintln!("rmsprop: worst error {worst:.2e} (tolerance {TOL:e})");
}

/// Optimizers are built as PyTorch's: parameters, then named settings over PyTorch's defaults.
/// L-BFGS is an `Optimizer` too, whose step needs the closure.
#[test]
fn builders_start_from_pytorch_defaults() {
    let p = || {
        vec![(
            "w".to_string(),
            Tensor::from_vec(vec![1.0f32], &[1]).unwrap(),
        )]
    };
    let s = Sgd::new(p());
    assert_eq!(
        (s.lr, s.momentum, s.weight_decay, s.nesterov),
        (1e-3, 0.0, 0.0, false)
    );
    let a = Adam::new(p());
    assert_eq!(
        (a.lr, a.betas, a.eps, a.weight_decay, a.decoupled),
        (1e-3, (0.9, 0.999), 1e-8, 0.0, false)
    );
    let w = Adam::adamw(p());
    assert_eq!((w.weight_decay, w.decoupled), (1e-2, true));
    let r = RmsProp::new(p());
    assert_eq!(
        (r.lr, r.alpha, r.eps, r.momentum, r.weight_decay),
        (1e-2, 0.99, 1e-8, 0.0, 0.0)
    );
    let l = Lbfgs::new(p());
    assert_eq!(
        (
            l.lr,
            l.max_iter,
            l.max_eval,
            l.tolerance_grad,
            l.tolerance_change,
            l.history_size,
            l.strong_wolfe
        ),
        (1.0, 20, 25, 1e-7, 1e-9, 100, false)
    );
    let s = Sgd::new(p())
        .lr(0.05)
        .momentum(0.9)
        .weight_decay(5e-4)
        .nesterov(true);
    assert_eq!(
        (s.lr, s.momentum, s.weight_decay, s.nesterov),
        (0.05, 0.9, 5e-4, true)
    );

    // L-BFGS behind the trait: step() is refused, step_with(closure) minimises (x − 3)²
    let x = Tensor::from_vec(vec![0.0f32], &[1])
        .unwrap()
        .requires_grad_(true);
    let mut opt: Box<dyn Optimizer> =
        Box::new(Lbfgs::new(vec![("x".into(), x.clone())]).strong_wolfe(true));
    assert!(opt.step().unwrap_err().to_string().contains("step_with"));
    let mut closure = || {
        x.zero_grad();
        let loss = x.add_scalar(-3.0).square().sum();
        loss.backward()?;
        Ok(loss.item()? as f64)
    };
    let first = opt.step_with(&mut closure).unwrap();
    assert_eq!(first, 9.0);
    assert!((x.to_vec()[0] - 3.0).abs() < 1e-4, "{:?}", x.to_vec());
}

/// A large parameter is updated in chunks over the thread pool; every element's arithmetic is
/// the one-thread loop's, so the weights and state after three steps are bit-equal, for SGD
/// (plain, momentum, Nesterov, weight decay) and Adam/AdamW.
#[test]
fn parallel_parameter_updates_equal_one_thread() {
    let n = 200_003; // several chunks and a ragged last one
    let mut rng = Rng::new(5);
    let w0 = Tensor::<f32>::randn(&[n], 0.0, 1.0, &mut rng).to_vec();
    let grads: Vec<Vec<f32>> = (0..3)
        .map(|_| Tensor::<f32>::randn(&[n], 0.0, 1.0, &mut rng).to_vec())
        .collect();
    type Make = fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>;
    let makers: [(&str, Make); 5] = [
        ("sgd", |p| Box::new(Sgd::new(p).lr(0.1))),
        ("momentum", |p| {
            Box::new(Sgd::new(p).lr(0.1).momentum(0.9).weight_decay(1e-2))
        }),
        ("nesterov", |p| {
            Box::new(Sgd::new(p).lr(0.1).momentum(0.9).nesterov(true))
        }),
        ("adam", |p| {
            Box::new(Adam::new(p).lr(1e-2).weight_decay(1e-3))
        }),
        ("adamw", |p| Box::new(Adam::adamw(p).lr(1e-2))),
    ];
    for (name, make) in makers {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let p = Tensor::from_vec(w0.clone(), &[n])
                    .unwrap()
                    .requires_grad_(true);
                let mut opt = make(vec![("p".into(), p.clone())]);
                for g in &grads {
                    p.set_grad(Some(g.clone()));
                    opt.step().unwrap();
                }
                let state: Vec<Vec<f32>> = opt.state().into_iter().map(|s| s.2).collect();
                (p.to_vec(), state)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0.iter().all(|v| v.is_finite()), "{name}");
        assert!(one.0 != w0, "{name}: the weights did not move");
        assert_eq!(one, two, "{name}: threads changed the update");
    }
}
