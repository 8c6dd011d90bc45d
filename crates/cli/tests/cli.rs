//! End-to-end tests of the `aics` binary on a tiny synthetic IDX data set: training, exact
//! repetition under a seed, resume, eval, predict, summary, and one-line errors on bad input.

mod common;

use aics_tensor::testing::{assert_close_one, Tol};
use common::{aics, err, ok, tmp};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file fetched by `scripts/setup.sh`, relative to the repository root; the tests that need
/// one are `#[ignore]`d, and `.ci/run` runs them after set-up, so a missing file is a failure.
fn asset(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: this test needs the fetched assets (bash scripts/setup.sh)",
        p.display()
    );
    p
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

/// A learnable 10-class 28×28 data set: class k is a bright bar at row 2k+3 plus noise.
fn synthetic_mnist(dir: &Path, n_train: usize, n_test: usize) {
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let mut img = vec![0, 0, 8, 3];
        img.extend((n as u32).to_be_bytes());
        img.extend(28u32.to_be_bytes());
        img.extend(28u32.to_be_bytes());
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let k = (rnd() % 10) as usize;
            lab.push(k as u8);
            for r in 0..28 {
                for c in 0..28 {
                    let bar = r == 2 * k + 3 && (4..24).contains(&c);
                    let noise = (rnd() % 60) as u8;
                    img.push(if bar { 200 + noise / 2 } else { noise });
                }
            }
            let _ = i;
        }
        write_gz(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), &img);
        write_gz(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), &lab);
    }
}

fn train_args<'a>(data: &'a str, ckpt: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--threads",
        "2",
        "train",
        "--model",
        "lenet5",
        "--dataset",
        data,
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--checkpoint",
        ckpt,
        "--seed",
        "7",
        "--schedule",
        "step:1:0.7",
    ]
}

fn log_without_times(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v.as_object_mut().unwrap().remove("images_per_s");
            v.to_string()
        })
        .collect()
}

#[test]
fn train_repeat_resume_eval_predict() {
    let d = tmp("train");
    synthetic_mnist(&d, 600, 200);
    let data = format!("mnist:{}", d.display());
    let a = d.join("a.safetensors");
    let b = d.join("b.safetensors");
    let c = d.join("c.safetensors");
    let out = ok(&aics(&train_args(&data, a.to_str().unwrap(), "3")));
    assert!(out.contains("epoch   3/3"), "{out}");
    assert!(a.exists() && a.with_extension("jsonl").exists() && a.with_extension("png").exists());
    let log_a = log_without_times(&a.with_extension("jsonl"));
    assert_eq!(log_a.len(), 3);
    let last: serde_json::Value = serde_json::from_str(&log_a[2]).unwrap();
    assert!(
        last["test_acc"].as_f64().unwrap() > 0.8,
        "the bars are easy to learn: {last}"
    );

    // the same seed gives the same loss curve
    ok(&aics(&train_args(&data, b.to_str().unwrap(), "3")));
    assert_eq!(log_a, log_without_times(&b.with_extension("jsonl")));

    // 2 epochs, then resume to 3: same curve and bit-identical weights
    ok(&aics(&train_args(&data, c.to_str().unwrap(), "2")));
    let mut resumed = train_args(&data, c.to_str().unwrap(), "3");
    resumed.push("--resume");
    let out = ok(&aics(&resumed));
    assert!(out.contains("resuming"), "{out}");
    assert_eq!(log_a, log_without_times(&c.with_extension("jsonl")));
    let ta = aics_nn::checkpoint::load_checkpoint(&a)
        .unwrap()
        .model_tensors();
    let tc = aics_nn::checkpoint::load_checkpoint(&c)
        .unwrap()
        .model_tensors();
    assert_eq!(ta, tc);

    // eval
    let out = ok(&aics(&[
        "eval",
        "--checkpoint",
        a.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["images"], 200);
    assert!((v["accuracy"].as_f64().unwrap() - last["test_acc"].as_f64().unwrap()).abs() < 1e-9);

    // predict: an image of the class-4 bar
    let img = image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if y == 11 && (4..24).contains(&x) {
            230
        } else {
            10
        }])
    });
    let png = d.join("bar4.png");
    img.save(&png).unwrap();
    let out = ok(&aics(&[
        "predict",
        "--checkpoint",
        a.to_str().unwrap(),
        png.to_str().unwrap(),
    ]));
    assert!(out.starts_with(&format!("{}: 4 ", png.display())), "{out}");
}

/// `--resume` continues a run bit for bit, dropout's random streams and the cosine schedule's
/// span included, and refuses settings that would make it another run.
#[test]
fn resume_with_dropout_and_cosine_is_exact() {
    let d = tmp("resume-exact");
    synthetic_mnist(&d, 240, 60);
    let data = format!("mnist:{}", d.display());
    let args = |ck: &Path, epochs: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--threads",
            "2",
            "train",
            "--model",
            "alexnet_small",
            "--dataset",
            &data,
            "--epochs",
            epochs,
            "--batch-size",
            "32",
            "--schedule",
            "cosine",
            "--seed",
            "3",
            "--checkpoint",
            ck.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: Vec<String>| aics(&v.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
    ok(&run(args(&a, "3", &[])));
    ok(&run(args(&b, "3", &["--stop-after", "2"])));
    // the checkpoint carries both dropout layers' random streams
    let ck = aics_nn::checkpoint::load_checkpoint(&b).unwrap();
    let rng = ck
        .meta("aics.rng")
        .expect("dropout state in the checkpoint");
    assert!(
        rng.contains("classifier.0") && rng.contains("classifier.3"),
        "{rng}"
    );
    // settings that would change the run are refused, each named
    let e = err(&run(args(
        &b,
        "3",
        &["--resume", "--lr", "0.1", "--weight-decay", "0"],
    )));
    assert!(
        e.contains("--lr 0.1 (checkpoint: 0.05)")
            && e.contains("--weight-decay 0 (checkpoint: 0.0005)"),
        "{e}"
    );
    let e = err(&run(args(&b, "2", &["--resume"])));
    assert!(e.contains("already trained 2 epochs"), "{e}");
    // resumed to 3 epochs: the same weights as the uninterrupted run, bit for bit
    let out = ok(&run(args(&b, "3", &["--resume"])));
    assert!(out.contains("resuming"), "{out}");
    let ta = aics_nn::checkpoint::load_checkpoint(&a)
        .unwrap()
        .model_tensors();
    let tb = aics_nn::checkpoint::load_checkpoint(&b)
        .unwrap()
        .model_tensors();
    assert!(!ta.is_empty());
    for (k, (shape, v)) in &ta {
        let (s2, w) = &tb[k];
        assert_eq!(shape, s2, "{k}");
        assert!(
            v.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{k}: the resumed run's weights differ from the uninterrupted run's"
        );
    }
    assert_eq!(
        log_without_times(&a.with_extension("jsonl")),
        log_without_times(&b.with_extension("jsonl"))
    );
    // extending the run keeps the schedule's span and says so
    let out = ok(&run(args(&b, "4", &["--resume"])));
    assert!(out.contains("keeps the 3-epoch span"), "{out}");
    let log = std::fs::read_to_string(b.with_extension("jsonl")).unwrap();
    let lr4: serde_json::Value = serde_json::from_str(log.lines().nth(3).unwrap()).unwrap();
    assert_eq!(
        lr4["lr"].as_f64(),
        Some(0.0),
        "cosine over 3 epochs ends at 0: {lr4}"
    );
}

#[test]
fn summary_counts_parameters_and_weights() {
    let out = ok(&aics(&["summary", "--model", "lenet5", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // conv1 156, conv2 2416, fc1 48120, fc2 10164, fc3 850
    assert_eq!(v["total_params"], 61706);
    assert_eq!(v["layers"][0]["output"], serde_json::json!([1, 6, 28, 28]));
    // the chapter's count: a 32×32×3 input fully connected to 100 hidden units has 307,200 weights
    let out = ok(&aics(&[
        "summary", "--model", "mlp", "--input", "3x32x32", "--hidden", "100,50", "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let fc1 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "fc1")
        .unwrap()
        .clone();
    assert_eq!(fc1["weights"], 307_200);
    assert_eq!(fc1["params"], 307_300);
}

#[test]
fn bad_input_gives_one_clear_line() {
    let d = tmp("bad");
    // missing data directory
    let e = err(&aics(&[
        "train",
        "--dataset",
        &format!("mnist:{}", d.join("nowhere").display()),
    ]));
    assert!(e.contains("nowhere"), "{e}");
    // truncated data file
    synthetic_mnist(&d, 50, 20);
    let bytes = std::fs::read(d.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(
        d.join("train-images-idx3-ubyte.gz"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let e = err(&aics(&[
        "train",
        "--dataset",
        &format!("mnist:{}", d.display()),
        "--epochs",
        "1",
    ]));
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // missing / corrupt / foreign checkpoints
    let e = err(&aics(&[
        "eval",
        "--checkpoint",
        d.join("none.safetensors").to_str().unwrap(),
    ]));
    assert!(e.contains("none.safetensors"), "{e}");
    std::fs::write(
        d.join("junk.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    let e = err(&aics(&[
        "predict",
        "--checkpoint",
        d.join("junk.safetensors").to_str().unwrap(),
        "x.png",
    ]));
    assert!(e.contains("junk.safetensors"), "{e}");
    // unknown names and bad arguments
    let e = err(&aics(&["summary", "--model", "resnet9000"]));
    assert!(e.contains("resnet9000") && e.contains("lenet5"), "{e}");
    let e = err(&aics(&[
        "train",
        "--optimizer",
        "sgdd",
        "--dataset",
        &format!("mnist:{}", d.join("nowhere").display()),
    ]));
    assert!(e.contains("sgdd") && e.contains("adamw"), "{e}");
    let out = aics(&["summary", "--input", "1x0x28"]);
    assert!(!out.status.success());
    let e = err(&aics(&["summary", "--model", "lenet5", "--input", "1x6x6"]));
    assert!(e.contains("too small"), "{e}");
}

/// Every option takes effect or is refused with a line saying why; none is silently dropped.
#[test]
fn options_that_would_be_ignored_are_refused() {
    let d = tmp("refused");
    synthetic_mnist(&d, 40, 20);
    let data = format!("mnist:{}", d.display());
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--dataset", &data, "--epochs", "1"];
        args.extend_from_slice(extra);
        err(&aics(&args))
    };
    // a bad schedule field is named, not replaced by a default
    let e = train(&["--schedule", "step:2:abc"]);
    assert!(e.contains("gamma `abc`"), "{e}");
    let e = train(&["--schedule", "cosine:x"]);
    assert!(e.contains("min lr `x`"), "{e}");
    // momentum where the optimizer has none
    let e = train(&["--optimizer", "adam", "--momentum", "0.5"]);
    assert!(e.contains("--momentum") && e.contains("adam"), "{e}");
    let e = train(&["--optimizer", "rmsprop", "--nesterov"]);
    assert!(e.contains("--nesterov"), "{e}");
    // the help names the zoo's trainable models, and an unknown one lists them
    let help = ok(&aics(&["train", "--help"]));
    assert!(
        help.contains("resnet20") && help.contains("googlenet_small"),
        "{help}"
    );
    let e = train(&["--model", "resnet9000"]);
    assert!(e.contains("resnet9000") && e.contains("resnet20"), "{e}");
    // stylize: the options of the optimisation are refused with --model, --lr with L-BFGS
    let e = err(&aics(&[
        "stylize",
        "--model",
        "net.safetensors",
        "--steps",
        "10",
        "--seed",
        "3",
        "photo.png",
    ]));
    assert!(
        e.contains("--steps, --seed") && e.contains("--model net.safetensors"),
        "{e}"
    );
    let e = err(&aics(&["stylize", "--optimizer", "lbfgs", "--lr", "2"]));
    assert!(e.contains("--lr applies to Adam only"), "{e}");
    let e = err(&aics(&["stylize", "--lr", "2"]));
    assert!(e.contains("--lr applies to Adam only"), "{e}");
}

/// On the real Fashion-MNIST (present after `scripts/setup.sh`): two quick epochs on a third of
/// the training set already classify most of the test images.
#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn fashion_mnist_quick_training() {
    let dir = asset(".cache/fashion-mnist");
    asset(".cache/fashion-mnist/t10k-images-idx3-ubyte.gz");
    let d = tmp("fashion");
    let ck = d.join("f.safetensors");
    let data = format!("fashion-mnist:{}", dir.display());
    let out = ok(&aics(&[
        "train",
        "--dataset",
        &data,
        "--epochs",
        "2",
        "--limit-train",
        "20000",
        "--limit-test",
        "2000",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]));
    let log = std::fs::read_to_string(ck.with_extension("jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(last["test_acc"].as_f64().unwrap() > 0.8, "{out}");
}

/// torchvision's ImageNet MobileNetV2 weights (fetched by `scripts/setup.sh`) through the legacy
/// `.pth` reader: the scikit-image photos get the labels torchvision gives them.
#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn classify_with_real_mobilenet_v2_weights() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let weights = asset(".cache/weights/mobilenet_v2-b0353104.pth");
    let (cat, coffee) = (
        asset(".cache/images/chelsea.png"),
        asset(".cache/images/coffee.png"),
    );
    let w = weights.to_str().unwrap();
    let out = ok(&aics(&[
        "classify",
        "--weights",
        w,
        "--json",
        "--top",
        "5",
        cat.to_str().unwrap(),
        coffee.to_str().unwrap(),
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["top"][0]["label"], "Egyptian cat", "{out}");
    assert_eq!(lines[0]["top"][0]["class"], 285);
    assert!(lines[0]["top"][0]["prob"].as_f64().unwrap() > 0.5, "{out}");
    assert_eq!(lines[1]["top"][0]["label"], "espresso", "{out}");
    assert!(lines[1]["top"][0]["prob"].as_f64().unwrap() > 0.9, "{out}");
    // the same top-5 classes and probabilities as torchvision (fixtures/gen_classify.py):
    // identical preprocessing pixels and logits to float rounding
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/classify.json")).unwrap(),
    )
    .unwrap();
    for (line, name) in lines.iter().zip(["chelsea.png", "coffee.png"]) {
        let want = fx["top5"][name].as_array().unwrap();
        let got = line["top"].as_array().unwrap();
        assert_eq!(got.len(), 5);
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g["class"], w["class"], "{name}: {out}");
            let (pg, pw) = (g["prob"].as_f64().unwrap(), w["prob"].as_f64().unwrap());
            assert_close_one(
                &format!("{name} vs torchvision"),
                pg,
                pw,
                Tol::new(1e-4, 0.0),
            );
        }
    }
    // a weights file for another architecture is refused by name
    let e = err(&aics(&[
        "classify",
        "--model",
        "resnet18",
        "--weights",
        w,
        cat.to_str().unwrap(),
    ]));
    assert!(
        e.contains("mobilenet_v2-b0353104.pth") && e.contains("conv1.weight"),
        "{e}"
    );
    // a file that is not an image
    let e = err(&aics(&[
        "classify",
        "--weights",
        w,
        weights.to_str().unwrap(),
    ]));
    assert!(e.contains("cannot read image"), "{e}");
}

#[test]
fn filters_grid_png() {
    let d = tmp("filters");
    let out = d.join("f.png");
    ok(&aics(&[
        "filters",
        "--model",
        "lenet5",
        "--layer",
        "conv2",
        "--out",
        out.to_str().unwrap(),
    ]));
    let img = image::open(&out).unwrap();
    // 16 filters of 5×5 at 8 px per tap with a 1 px border: a 4×4 grid of 42 px tiles
    assert_eq!((img.width(), img.height()), (4 * 42, 4 * 42));
    let e = err(&aics(&["filters", "--model", "lenet5", "--layer", "fc1"]));
    assert!(e.contains("not a convolution"), "{e}");
    let e = err(&aics(&["filters", "--model", "lenet5", "--layer", "conv9"]));
    assert!(e.contains("conv1") && e.contains("conv9"), "{e}");
}

#[test]
fn feature_maps_grid_png() {
    let d = tmp("features");
    let png = d.join("in.png");
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 3) % 256) as u8]))
        .save(&png)
        .unwrap();
    let out = d.join("maps.png");
    let o = ok(&aics(&[
        "features",
        "--model",
        "lenet5",
        "--layer",
        "relu1",
        png.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(o.contains("6 of 6 channels, 28x28"), "{o}");
    // 6 maps of 28×28, scaled ×2 with a 1 px border, in a 3×2 grid
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (3 * 58, 2 * 58));
    let e = err(&aics(&[
        "features",
        "--model",
        "lenet5",
        "--layer",
        "fc9",
        png.to_str().unwrap(),
    ]));
    assert!(e.contains("fc9"), "{e}");
    let e = err(&aics(&[
        "features",
        "--model",
        "lenet5",
        "--layer",
        "fc1",
        png.to_str().unwrap(),
    ]));
    assert!(e.contains("not feature maps"), "{e}");
}

/// `aics stylize` end to end with the real VGG19 weights (fetched by `scripts/setup.sh`) on a
/// tiny image, plus its error messages.
#[test]
fn stylize_reports_a_missing_weights_file() {
    let e = err(&aics(&[
        "stylize",
        "--content",
        "/no/such/photo.png",
        "--weights",
        "/no/such.bin",
    ]));
    assert!(e.contains("/no/such.bin") && e.contains("--weights"), "{e}");
}

#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn stylize_runs_and_reports_bad_input() {
    let weights = asset(".cache/weights/vgg19_conv_q.bin");
    let cat = asset(".cache/images/chelsea.png");
    let night = asset(".cache/images/starry_night.jpg");
    let d = tmp("stylize");
    let (w, c, s) = (
        weights.to_str().unwrap(),
        cat.to_str().unwrap(),
        night.to_str().unwrap(),
    );
    let e = err(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        "/no/such/photo.png",
        "--style",
        s,
    ]));
    assert!(e.contains("/no/such/photo.png"), "{e}");
    let e = err(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--preset",
        "nope",
    ]));
    assert!(e.contains("unknown preset"), "{e}");
    let e = err(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--style-layers",
        "relu9_1",
    ]));
    assert!(e.contains("relu9_1"), "{e}");
    let e = err(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--size",
        "200000",
    ]));
    assert!(e.contains("GB") && e.contains("--size"), "{e}");
    // a loss that overflows stops with the step named
    let out = d.join("nan.png");
    let e = err(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--size",
        "24",
        "--steps",
        "3",
        "--style-weight",
        "1e40",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("step 1"), "{e}");
    // a real run: output keeps the photo's aspect ratio, logs every step, intermediate images
    let out = d.join("cat.png");
    let log = d.join("cat.jsonl");
    let plot = d.join("loss.png");
    ok(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--style",
        s,
        "--style-blend",
        "1,2",
        "--size",
        "48",
        "--steps",
        "4",
        "--save-every",
        "2",
        "--preserve-colors",
        "--scales",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--loss-plot",
        plot.to_str().unwrap(),
    ]));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (48, 32));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for k in [
        "step",
        "content_loss",
        "style_loss",
        "tv_loss",
        "total_loss",
        "seconds",
    ] {
        assert!(lines[3].get(k).is_some(), "{k} missing: {}", lines[3]);
    }
    assert!(d.join("cat_step2.png").exists() && d.join("cat_step4.png").exists());
    assert!(plot.exists());
    // the textbook preset
    let out = d.join("tb.png");
    ok(&aics(&[
        "stylize",
        "--weights",
        w,
        "--content",
        c,
        "--style",
        s,
        "--preset",
        "textbook",
        "--size",
        "32",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(out.exists());
}

/// Fast style transfer: a few training steps lower the perceptual loss, the network is saved
/// and then stylises a photo in one pass.
#[test]
fn stylize_train_refuses_bad_input_before_loading() {
    let e = err(&aics(&[
        "stylize-train",
        "--dataset",
        "folder:/no/such/dir",
    ]));
    assert!(e.contains("/no/such/dir"), "{e}");
    // a batch that cannot fit is refused before anything is loaded
    let e = err(&aics(&[
        "stylize-train",
        "--dataset",
        "folder:/no/such/dir",
        "--size",
        "2000000",
    ]));
    assert!(
        e.contains("needs about") && e.contains("lower --size or --batch-size"),
        "{e}"
    );
}

#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn stylize_train_then_feed_forward() {
    let weights = asset(".cache/weights/vgg19_conv_q.bin");
    let cat = asset(".cache/images/chelsea.png");
    let night = asset(".cache/images/starry_night.jpg");
    let d = tmp("fast-style");
    let photos = d.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(&cat, photos.join("cat.png")).unwrap();
    let net = d.join("net.safetensors");
    let log = d.join("log.jsonl");
    let dataset = format!("folder:{}", photos.display());
    // `extra`: "--resume" or nothing
    let train = |steps: &str, extra: &[&str]| {
        let mut args = vec![
            "stylize-train",
            "--weights",
            weights.to_str().unwrap(),
            "--style",
            night.to_str().unwrap(),
            "--dataset",
            &dataset,
            "--size",
            "32",
            "--batch-size",
            "1",
            "--steps",
            steps,
            "--lr",
            "1e-3",
            "--save-every",
            "4",
            "--preview",
            cat.to_str().unwrap(),
            "--checkpoint",
            net.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        aics(&args)
    };
    ok(&train("8", &[]));
    let totals: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["total_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(totals.len(), 8);
    assert!(totals[7] < totals[0], "{totals:?}");
    assert!(d.join("net_preview.png").exists());
    // --resume continues from the checkpoint's step with Adam's state, appending to the log
    let ck = aics_nn::checkpoint::load_checkpoint(&net).unwrap();
    assert_eq!(ck.meta("step"), Some("8"));
    assert_eq!(ck.meta("optimizer"), Some("adam"));
    let o = ok(&train("10", &["--resume"]));
    assert!(o.contains("from step 8"), "{o}");
    let steps: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    let ck = aics_nn::checkpoint::load_checkpoint(&net).unwrap();
    assert_eq!(ck.meta("step"), Some("10"));
    let e = err(&train("10", &["--resume"]));
    assert!(e.contains("already trained for 10 steps"), "{e}");
    let out = d.join("ff.png");
    ok(&aics(&[
        "stylize",
        "--model",
        net.to_str().unwrap(),
        "--content",
        cat.to_str().unwrap(),
        "--size",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (64, 40));
    // the photo may also be given as the positional argument
    let out2 = d.join("ff2.png");
    ok(&aics(&[
        "stylize",
        "--model",
        net.to_str().unwrap(),
        cat.to_str().unwrap(),
        "--size",
        "64",
        "--out",
        out2.to_str().unwrap(),
    ]));
    assert_eq!(
        image::open(&out2).unwrap().to_rgb8().into_raw(),
        img.to_rgb8().into_raw()
    );
    // a checkpoint of something else is refused
    let e = err(&aics(&[
        "stylize",
        "--model",
        log.to_str().unwrap(),
        "--content",
        cat.to_str().unwrap(),
    ]));
    assert!(e.contains("log.jsonl"), "{e}");
}

/// `aics bench --profile`: one model's layers and convolutions as JSON lines (the convolutions'
/// kernels named, the batch norms folded on the inference path and not with --plain), and one
/// clear line for what it does not take.
#[test]
fn bench_profile_lists_layers_and_convolutions() {
    let lines = |plain: bool| -> Vec<serde_json::Value> {
        let mut args = vec!["bench", "--profile", "mobilenet_v2_fwd_b1", "--json"];
        if plain {
            args.push("--plain");
        }
        ok(&aics(&args))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let fused = lines(false);
    assert_eq!(fused[0]["workload"], "mobilenet_v2_fwd_b1");
    assert!(fused[0]["seconds"].as_f64().is_some_and(|s| s > 0.0));
    let convs: Vec<&serde_json::Value> = fused.iter().filter(|v| v.get("op").is_some()).collect();
    // MobileNetV2: the stem, 17 blocks (the first without expansion) and the last 1×1
    assert_eq!(convs.len(), 1 + 2 + 16 * 3 + 1, "{convs:?}");
    assert!(convs
        .iter()
        .any(|v| v["detail"].as_str().unwrap().starts_with("depthwise")));
    let layer_types = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .filter_map(|l| l["type"].as_str().map(String::from))
            .collect()
    };
    assert!(layer_types(&fused).iter().any(|t| t.contains("+ ReLU6")));
    // the 1×1 convolutions run on packed weights on the inference path, wherever there is AVX2
    // (panels for the packed GEMM, or blocks for the row kernel, by their shape)
    let packed = |v: &[serde_json::Value]| {
        v.iter()
            .filter(|l| {
                l["detail"].as_str().is_some_and(|d| {
                    (d.starts_with("packed gemm") || d.starts_with("rows")) && d.contains(" 1×1 ")
                })
            })
            .count()
    };
    if aics_tensor::cpu::simd::level_name() != "base" {
        // the expansions and projections (the first block has no expansion) and the last 1×1
        assert_eq!(packed(&fused), 16 + 17 + 1);
    }
    assert_eq!(packed(&lines(true)), 0);
    assert!(!layer_types(&lines(true))
        .iter()
        .any(|t| t.contains("+ ReLU6")));
    let e = err(&aics(&["bench", "--profile", "lenet"]));
    assert!(e.contains("--profile takes one of"), "{e}");
    let e = err(&aics(&[
        "bench",
        "--profile",
        "vgg19_fwd_b1",
        "--filter",
        "x",
    ]));
    assert!(e.contains("no --filter"), "{e}");
}

#[test]
fn bench_reports_the_peak_memory_of_a_model_workload() {
    let out = ok(&aics(&[
        "bench",
        "--filter",
        "lenet5_train_b64",
        "--json",
        "--min-time",
        "0.05",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["workload"], "lenet5_train_b64");
    // LeNet-5's weights are 0.25 MB; a step on 64 images holds a few MB of activations
    let mb = v["peak_mb"].as_f64().unwrap();
    assert!(mb > 0.1 && mb < 1000.0, "{mb}");
}
