//! `aics gan` end to end on small inputs: exact resume, a folder of images through DCGAN and
//! the sampling commands, a PyTorch generator file, and one clear line on bad input.

mod common;

use std::path::Path;

use aics_nn::checkpoint::load_checkpoint;
use common::{aics, err, ok, tmp};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every tensor of two checkpoints, bit for bit, and their epoch and step.
fn same_checkpoints(a: &Path, b: &Path) {
    let (x, y) = (load_checkpoint(a).unwrap(), load_checkpoint(b).unwrap());
    assert_eq!(x.tensors.len(), y.tensors.len());
    for (k, (shape, v)) in &x.tensors {
        let (s2, w) = y.tensors.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(shape, s2, "{k}");
        assert!(
            v.iter().zip(w).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{k} differs"
        );
    }
    for key in ["aics.epoch", "aics.step", "aics.gan_settings"] {
        assert_eq!(x.meta(key), y.meta(key), "{key}");
    }
}

fn train(extra: &[&str]) -> std::process::Output {
    let mut v = vec!["gan", "train"];
    v.extend(extra);
    aics(&v)
}

#[test]
fn wgan_on_ring8_resumes_exactly() {
    let d = tmp("gan-resume");
    let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
    let base = [
        "--model",
        "wgan",
        "--dataset",
        "ring8",
        "--iterations",
        "20",
        "--batch",
        "32",
    ];
    let out = ok(&train(
        &[&base[..], &["--epochs", "3", "--checkpoint", s(&a)]].concat(),
    ));
    assert!(out.contains("epoch 3:"), "{out}");
    ok(&train(
        &[&base[..], &["--epochs", "1", "--checkpoint", s(&b)]].concat(),
    ));
    ok(&train(
        &[
            &base[..],
            &["--epochs", "3", "--checkpoint", s(&b), "--resume"],
        ]
        .concat(),
    ));
    same_checkpoints(&a, &b);
    // a run with other settings is refused
    let e = err(&train(
        &[
            &base[..],
            &[
                "--epochs",
                "4",
                "--lr",
                "1e-4",
                "--checkpoint",
                s(&b),
                "--resume",
            ],
        ]
        .concat(),
    ));
    assert!(e.contains("settings differ"), "{e}");
    // a line per generator step with the Wasserstein estimate (the modes covered every 100
    // steps, none here), and one per epoch; the resumed log equals the whole run's
    let log = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    let log_b = std::fs::read_to_string(d.join("b.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3 * 20 + 3, "{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("modes_covered")).count(),
        3
    );
    let strip = |l: &str| {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    for (l, m) in log.lines().zip(log_b.lines()) {
        let v = strip(l);
        assert!(v["wasserstein"].as_f64().is_some_and(f64::is_finite), "{l}");
        assert_eq!(v, strip(m));
    }
    assert!(d.join("a-samples/epoch_003.png").exists());
    // eval prints the coverage, and draws both runs side by side
    let plot = d.join("scatter.png");
    let out = ok(&aics(&[
        "gan",
        "eval",
        "--checkpoint",
        s(&a),
        "--checkpoint",
        s(&b),
        "--plot",
        s(&plot),
    ]));
    assert!(out.contains("modes covered"), "{out}");
    assert!(plot.exists());
    // bad uses
    let e = err(&aics(&[
        "gan",
        "eval",
        "--checkpoint",
        s(&a),
        "--classifier",
        s(&a),
    ]));
    assert!(e.contains("--classifier"), "{e}");
    let e = err(&aics(&["gan", "interpolate", "--checkpoint", s(&a)]));
    assert!(e.contains("points"), "{e}");
}

/// Small PNGs of one size (or not) in `dir`.
fn images(dir: &Path, n: usize, sizes: &[(u32, u32)]) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..n {
        let (w, h) = sizes[i % sizes.len()];
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 9 + i as u32 * 20) as u8, (y * 13) as u8, 100])
        });
        let p = if i % 2 == 0 {
            dir.join(format!("{i}.png"))
        } else {
            dir.join("sub").join(format!("{i}.png"))
        };
        img.save(p).unwrap();
    }
}

#[test]
fn dcgan_on_a_folder_then_sample_and_interpolate() {
    let d = tmp("gan-folder");
    let data = d.join("imgs");
    images(&data, 8, &[(20, 20)]);
    let ck = d.join("dc.safetensors");
    let spec = format!("folder:{}", data.display());
    let out = ok(&train(&[
        "--model",
        "dcgan",
        "--dataset",
        &spec,
        "--width",
        "4",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--checkpoint",
        s(&ck),
    ]));
    assert!(out.contains("8 images of 3×32×32"), "{out}");
    let grid = image::open(d.join("dc-samples/epoch_002.png")).unwrap();
    // 8 × 8 tiles of 32 pixels with 2-pixel gaps
    assert_eq!((grid.width(), grid.height()), (8 * 34 + 2, 8 * 34 + 2));
    let sample = |out: &Path| {
        ok(&aics(&[
            "gan",
            "sample",
            "--checkpoint",
            s(&ck),
            "--n",
            "6",
            "--out",
            s(out),
        ]))
    };
    let g = d.join("g.png");
    sample(&g);
    assert_eq!(image::open(&g).unwrap().width(), 3 * 34 + 2);
    let strip = d.join("strip.png");
    ok(&aics(&[
        "gan",
        "interpolate",
        "--checkpoint",
        s(&ck),
        "--steps",
        "5",
        "--out",
        s(&strip),
    ]));
    let im = image::open(&strip).unwrap();
    assert_eq!((im.width(), im.height()), (5 * 34 + 2, 2 * 34 + 2));
    // the same seed gives the same samples
    let g2 = d.join("g2.png");
    sample(&g2);
    assert_eq!(std::fs::read(&g).unwrap(), std::fs::read(&g2).unwrap());
    // WGAN on the same folder: 5 critic batches a generator step
    let e = err(&train(&[
        "--model",
        "wgan",
        "--dataset",
        &spec,
        "--width",
        "4",
        "--batch",
        "4",
        "--epochs",
        "1",
        "--checkpoint",
        s(&d.join("w.safetensors")),
    ]));
    assert!(e.contains("too few images"), "{e}");
    // eval needs labelled test images
    let e = err(&aics(&["gan", "eval", "--checkpoint", s(&ck)]));
    assert!(e.contains("test images") || e.contains("folder"), "{e}");
}

#[test]
fn pytorch_generator_samples() {
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gan/netG_32.pth");
    let d = tmp("gan-pth");
    let g = d.join("g.png");
    ok(&aics(&[
        "gan",
        "sample",
        "--checkpoint",
        s(&pth),
        "--n",
        "4",
        "--out",
        s(&g),
    ]));
    assert_eq!(image::open(&g).unwrap().width(), 2 * 34 + 2);
}

#[test]
fn bad_input_is_one_line() {
    let d = tmp("gan-bad");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ck = d.join("x.safetensors");
    let e = err(&train(&[
        "--dataset",
        &format!("folder:{}", empty.display()),
        "--checkpoint",
        s(&ck),
    ]));
    assert!(e.contains("no images"), "{e}");
    let mixed = d.join("mixed");
    images(&mixed, 4, &[(20, 20), (24, 20)]);
    let e = err(&train(&[
        "--dataset",
        &format!("folder:{}", mixed.display()),
        "--checkpoint",
        s(&ck),
    ]));
    assert!(e.contains("share one size"), "{e}");
    // options that do not apply, and unknown data, each refused naming what is wrong
    for (args, want) in [
        (
            &["--model", "dcgan", "--dataset", "ring8"][..],
            "2-D points",
        ),
        (
            &["--dataset", "ring8", "--model", "gan", "--image-size", "64"],
            "--image-size",
        ),
        (&["--dataset", "nonsense"], "unknown --dataset"),
        (
            &[
                "--model",
                "dcgan",
                "--dataset",
                "ring8",
                "--loss",
                "minimax",
            ],
            "--loss",
        ),
    ] {
        let e = err(&train(&[args, &["--checkpoint", s(&ck)]].concat()));
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // a loss that becomes NaN stops the run at the step, with nothing written
    let e = err(&train(&[
        "--model",
        "gan",
        "--dataset",
        "ring8",
        "--iterations",
        "50",
        "--lr",
        "1e30",
        "--checkpoint",
        s(&ck),
    ]));
    assert!(e.contains("not finite") && e.contains("step"), "{e}");
    assert!(!ck.exists() && !d.join("x-samples").exists());
    // a checkpoint of something else
    let other = d.join("other.safetensors");
    std::fs::write(&other, b"not a checkpoint").unwrap();
    let e = err(&aics(&["gan", "sample", "--checkpoint", s(&other)]));
    assert!(e.contains("other.safetensors"), "{e}");
    let e = err(&aics(&[
        "gan",
        "sample",
        "--checkpoint",
        s(&classifier(&d, 10)),
    ]));
    assert!(e.contains("not a checkpoint of `aics gan train`"), "{e}");
}

/// A LeNet-5 checkpoint as `aics train` writes it (random weights) for `classes` classes.
fn classifier(dir: &Path, classes: usize) -> std::path::PathBuf {
    let cfg = aics_vision::ModelConfig {
        in_shape: [1, 28, 28],
        num_classes: classes,
        hidden: vec![],
        seed: 0,
    };
    let m = aics_vision::build("lenet5", &cfg).unwrap();
    let meta = serde_json::json!({"model": "lenet5", "in_shape": [1, 28, 28], "num_classes": classes, "hidden": [],
        "dataset": "mnist", "mean": [0.1307], "std": [0.3081], "classes": (0..classes).map(|c| c.to_string()).collect::<Vec<_>>()});
    let p = dir.join(format!("lenet{classes}.safetensors"));
    let mut md = std::collections::HashMap::new();
    md.insert("aics.model".to_string(), meta.to_string());
    aics_nn::checkpoint::save_checkpoint(&p, m.as_ref(), None, md).unwrap();
    p
}

/// `n` MNIST-format images and labels (IDX files, uncompressed) for the train and test splits.
fn idx_dir(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (img, lab) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        let mut x = vec![0, 0, 8, 3];
        for v in [n as u32, 28, 28] {
            x.extend(v.to_be_bytes());
        }
        let mut y = vec![0, 0, 8, 1];
        y.extend((n as u32).to_be_bytes());
        for i in 0..n {
            x.extend((0..784).map(|p| ((p * 7 + i * 31) % 256) as u8));
            y.push((i % 10) as u8);
        }
        std::fs::write(dir.join(img), x).unwrap();
        std::fs::write(dir.join(lab), y).unwrap();
    }
}

#[test]
fn classifier_measures_on_labelled_images() {
    let d = tmp("gan-classes");
    let data = d.join("mnist");
    idx_dir(&data, 24);
    let spec = format!("mnist:{}", data.display());
    let ck = d.join("g.safetensors");
    let cls = classifier(&d, 10);
    let args = [
        "--model",
        "gan",
        "--dataset",
        &spec,
        "--batch",
        "8",
        "--epochs",
        "1",
        "--eval-samples",
        "40",
        "--checkpoint",
        s(&ck),
    ];
    let out = ok(&train(&[&args[..], &["--classifier", s(&cls)]].concat()));
    assert!(out.contains("classes, KL to uniform"), "{out}");
    let v: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(d.join("g.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let hist: Vec<u64> = v["class_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!((hist.len(), hist.iter().sum::<u64>()), (10, 40));
    assert!(
        v["frechet_lenet"]
            .as_f64()
            .is_some_and(|f| f.is_finite() && f >= -1e-6),
        "{v}"
    );
    assert!(
        v["kl_to_uniform"]
            .as_f64()
            .is_some_and(|f| f.is_finite() && f >= 0.0),
        "{v}"
    );
    let out = ok(&aics(&[
        "gan",
        "eval",
        "--checkpoint",
        s(&ck),
        "--classifier",
        s(&cls),
        "--n",
        "30",
    ]));
    assert!(out.contains("Fréchet distance"), "{out}");
    // a classifier whose classes do not fit the data set
    let e = err(&train(
        &[&args[..], &["--classifier", s(&classifier(&d, 3))]].concat(),
    ));
    assert!(e.contains("3 classes") && e.contains("lenet3"), "{e}");
    let e = err(&aics(&[
        "gan",
        "eval",
        "--checkpoint",
        s(&ck),
        "--classifier",
        s(&classifier(&d, 3)),
    ]));
    assert!(e.contains("3 classes"), "{e}");
    // 64² images of 28-pixel data: resized up for training, back down for the classifier
    let out = ok(&train(&[
        "--model",
        "dcgan",
        "--dataset",
        &spec,
        "--image-size",
        "64",
        "--width",
        "2",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--eval-samples",
        "20",
        "--classifier",
        s(&cls),
        "--checkpoint",
        s(&d.join("d64.safetensors")),
    ]));
    assert!(out.contains("1×64×64"), "{out}");
}
