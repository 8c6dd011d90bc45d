//! Style transfer against f64 finite differences and PyTorch (`fixtures/style.json`, written by
//! `fixtures/gen_style.py` with the same key-hashed VGG19 weights and images).

use std::path::{Path, PathBuf};

use aics_style::fast::Perceptual;
use aics_style::gatys::{self, Config, Flow};
use aics_style::loss::{content_loss, gram, style_loss, tv_loss, LossForm};
use aics_style::vgg::{InputSpace, Vgg19, CAFFE_MEAN_RGB};
use aics_tensor::gradcheck::gradcheck;
use aics_tensor::testing::{assert_close, assert_close_one, Tol};
use aics_tensor::{hash_fill, hash_uniform, Rng, Tensor};
use serde_json::Value;

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/style.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// VGG19 with the generator's weights (`hash_fill` by `features.N.weight` / `.bias`).
fn hashed_vgg() -> Vgg19 {
    let mut parts = Vec::new();
    let mut idx = 0;
    let shapes = Vgg19::conv_shapes();
    let mut s = shapes.iter();
    for n in [2, 2, 4, 4, 4] {
        for _ in 0..n {
            let shape = *s.next().unwrap();
            let w = hash_fill(&format!("features.{idx}.weight"), &shape);
            let b = hash_fill(&format!("features.{idx}.bias"), &shape[..1]);
            parts.push((format!("features.{idx}"), shape.to_vec(), w, b));
            idx += 2;
        }
        idx += 1;
    }
    let space = InputSpace::Caffe {
        bgr: false,
        mean_rgb: CAFFE_MEAN_RGB,
    };
    Vgg19::from_parts(parts, space, Path::new("hashed")).unwrap()
}

fn image(key: &str, h: usize, w: usize) -> Tensor {
    let d = hash_uniform(key, 3 * h * w)
        .into_iter()
        .map(|u| u as f32)
        .collect();
    Tensor::from_vec(d, &[1, 3, h, w]).unwrap()
}

fn close(what: &str, got: f64, want: f64, rtol: f64) {
    assert_close_one(
        &format!("{what} vs PyTorch"),
        got,
        want,
        Tol::new(rtol * 1e-6, rtol),
    );
}

/// The losses and a gradient equal a fixture entry's (`content`, `style`, `tv`, `total`,
/// `grad`), the gradient to 1e-4 of its largest magnitude.
fn matches_fixture(what: &str, l: &gatys::Losses, g: &[f32], m: &Value) {
    close("content", l.content, m["content"].as_f64().unwrap(), 1e-4);
    close("style", l.style, m["style"].as_f64().unwrap(), 1e-4);
    close("tv", l.tv, m["tv"].as_f64().unwrap(), 1e-4);
    close("total", l.total, m["total"].as_f64().unwrap(), 1e-4);
    let want: Vec<f64> = m["grad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_close(what, g, &want, Tol::scaled(1e-4, &want));
}

#[test]
fn losses_match_finite_differences() {
    let mut rng = Rng::new(3);
    let f = Tensor::<f64>::randn(&[1, 4, 3, 5], 0.0, 1.0, &mut rng);
    let p = Tensor::<f64>::randn(&[1, 4, 3, 5], 0.0, 1.0, &mut rng);
    for form in [LossForm::Mean, LossForm::Textbook] {
        let a = gram(
            &Tensor::<f64>::randn(&[1, 4, 3, 5], 0.0, 1.0, &mut rng),
            form,
        )
        .unwrap();
        let r = gradcheck(
            &|x| Ok(gram(&x[0], form).unwrap()),
            std::slice::from_ref(&f),
            &[true],
            1,
        )
        .unwrap();
        assert!(r.passed, "gram {form:?}: {r:?}");
        let r = gradcheck(
            &|x| Ok(style_loss(&x[0], &x[1], form).unwrap()),
            &[f.clone(), a.clone()],
            &[true, true],
            2,
        )
        .unwrap();
        assert!(r.passed, "style {form:?}: {r:?}");
        let r = gradcheck(
            &|x| Ok(content_loss(&x[0], &x[1], form).unwrap()),
            &[f.clone(), p.clone()],
            &[true, true],
            3,
        )
        .unwrap();
        assert!(r.passed, "content {form:?}: {r:?}");
    }
    let img = Tensor::<f64>::rand(&[1, 3, 4, 6], 0.0, 1.0, &mut rng);
    let r = gradcheck(&|x| Ok(tv_loss(&x[0]).unwrap()), &[img], &[true], 4).unwrap();
    assert!(r.passed, "tv: {r:?}");
    // bad shapes are errors, not panics
    assert!(tv_loss(&Tensor::<f64>::zeros(&[1, 3, 1, 5])).is_err());
    assert!(gram(&Tensor::<f64>::zeros(&[3, 5]), LossForm::Mean).is_err());
}

/// The default losses and the gradient with respect to the image, through all of VGG19 up to
/// relu5_1, equal PyTorch's.
#[test]
fn image_gradient_matches_pytorch() {
    let fx = fixture();
    let m = &fx["mean"];
    let vgg = hashed_vgg();
    let enc = |t: &Tensor| vgg.space.encode(t).unwrap();
    let content = enc(&image("content", 32, 32));
    let style = enc(&image("style", 40, 24));
    // the generator's weights: content 1, style 1e4, TV 1e2
    let cfg = Config {
        style_weight: 1e4,
        tv_weight: 1e2,
        ..Config::default()
    };
    let t = gatys::targets(&vgg, &content, &[(style, 1.0)], &cfg).unwrap();
    let x = enc(&image("image", 32, 32)).requires_grad_(true);
    let (total, l) = gatys::loss(&vgg, &x, &t, &cfg).unwrap();
    total.backward().unwrap();
    matches_fixture("image gradient", &l, &x.grad().unwrap().to_vec(), m);
}

/// The fast-style perceptual loss of a batch (content at relu2_2, per-image Gram style losses at
/// relu1_2…relu4_3, TV) and its gradient with respect to the network's outputs equal PyTorch's.
#[test]
fn perceptual_loss_matches_pytorch() {
    let fx = fixture();
    let m = &fx["perceptual"];
    let vgg = hashed_vgg();
    let batch = |key: &str| {
        let d = hash_uniform(key, 2 * 3 * 16 * 16)
            .into_iter()
            .map(|u| u as f32)
            .collect();
        Tensor::from_vec(d, &[2, 3, 16, 16]).unwrap()
    };
    let p = Perceptual::new(&vgg, &image("painting", 20, 20), 1.0, 5.0, 100.0).unwrap();
    let y = batch("outputs").requires_grad_(true);
    let (total, l) = p.loss(&vgg, &batch("photos"), &y).unwrap();
    total.backward().unwrap();
    matches_fixture("output gradient", &l, &y.grad().unwrap().to_vec(), m);
}

/// The textbook preset's formulas and Adam (lr 1.0) from the same noisy start: the losses of
/// the first ten steps equal a PyTorch implementation's.
#[test]
fn textbook_steps_match_pytorch() {
    let fx = fixture();
    let tb = &fx["textbook"];
    let vgg = hashed_vgg();
    let (h, w) = (48, 64);
    let enc = |t: &Tensor| vgg.space.encode(t).unwrap();
    let content = enc(&image("content", h, w));
    let style = enc(&image("style", h, w));
    let mut cfg = Config::textbook();
    cfg.steps = 10;
    let t = gatys::targets(&vgg, &content, &[(style, 1.0)], &cfg).unwrap();
    let noise: Vec<f32> = hash_uniform("init", 3 * h * w)
        .into_iter()
        .map(|u| (u * 40.0 - 20.0) as f32)
        .collect();
    let x0 = Tensor::from_vec(noise, &[1, 3, h, w])
        .unwrap()
        .mul_scalar(0.5)
        .add(&content.mul_scalar(0.5))
        .unwrap();
    let mut seen = Vec::new();
    gatys::optimize(&vgg, &x0, &t, &cfg, &mut |s, _| {
        seen.push(s.losses);
        Ok(Flow::Continue)
    })
    .unwrap();
    let steps = tb["steps"].as_array().unwrap();
    assert_eq!(seen.len(), steps.len());
    for (i, (got, want)) in seen.iter().zip(steps).enumerate() {
        close(
            &format!("step {} total", i + 1),
            got.total,
            want["total"].as_f64().unwrap(),
            1e-4,
        );
        close(
            &format!("step {} content", i + 1),
            got.content,
            want["content"].as_f64().unwrap(),
            1e-3,
        );
    }
    assert!(seen[9].total < seen[0].total);
}

/// Under L-BFGS with line search the total loss never goes up.
#[test]
fn lbfgs_lowers_the_loss_monotonically() {
    let vgg = Vgg19::random(1, InputSpace::ImageNet);
    let enc = |t: &Tensor| vgg.space.encode(t).unwrap();
    let content = enc(&image("content", 32, 32));
    let style = enc(&image("style", 32, 32));
    let cfg = Config {
        steps: 8,
        ..Config::default()
    };
    let t = gatys::targets(&vgg, &content, &[(style, 1.0)], &cfg).unwrap();
    let mut totals = Vec::new();
    gatys::optimize(&vgg, &content, &t, &cfg, &mut |s, _| {
        totals.push(s.losses.total);
        Ok(Flow::Continue)
    })
    .unwrap();
    assert_eq!(totals.len(), 8);
    for w in totals.windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-6), "loss went up: {totals:?}");
    }
    assert!(totals[7] < totals[0], "{totals:?}");
}

#[test]
fn encode_decode_round_trip_and_layer_names() {
    let img = image("rt", 5, 7);
    for space in [
        InputSpace::ImageNet,
        InputSpace::Caffe {
            bgr: true,
            mean_rgb: CAFFE_MEAN_RGB,
        },
    ] {
        let back = space.decode(&space.encode(&img).unwrap()).unwrap();
        assert_close(
            &format!("{space:?} round trip"),
            &back.to_vec(),
            &img.to_vec(),
            Tol::new(1e-5, 0.0),
        );
    }
    // BGR: channel 0 of the input is blue
    let caffe = InputSpace::Caffe {
        bgr: true,
        mean_rgb: CAFFE_MEAN_RGB,
    };
    let x = caffe.encode(&img).unwrap().to_vec();
    let b0 = img.to_vec()[2 * 35] * 255.0 - 103.939;
    assert_close_one("blue first", x[0] as f64, b0 as f64, Tol::new(1e-3, 0.0));
    let names = aics_style::vgg::layer_names();
    assert_eq!(names.len(), 37);
    assert_eq!(Vgg19::layer_index("relu4_2").unwrap(), 22);
    assert!(Vgg19::layer_index("relu6_1").is_err());
}

/// Feed-forward stylisation keeps the photo's size whatever it is (the reflected margin and the
/// round-up to a multiple of 4 are cropped off) and refuses what is not a batch of RGB images.
#[test]
fn fast_stylize_keeps_the_size_and_refuses_bad_input() {
    let net = aics_style::fast::transform_net(3).unwrap();
    for &(h, w) in &[(8, 8), (9, 13), (37, 50), (64, 64)] {
        let x = Tensor::from_vec(
            (0..3 * h * w)
                .map(|i| ((i * 37) % 101) as f32 / 100.0)
                .collect(),
            &[1, 3, h, w],
        )
        .unwrap();
        let y = aics_style::fast::stylize(&net, &x).unwrap();
        assert_eq!(y.shape(), &[1, 3, h, w], "{h}×{w}");
        assert!(y.to_vec().iter().all(|v| v.is_finite()));
    }
    for s in [&[3, 8, 8][..], &[1, 1, 8, 8], &[1, 3, 7, 8]] {
        let x = Tensor::zeros(s);
        let e = aics_style::fast::stylize(&net, &x).unwrap_err().to_string();
        assert!(e.contains("expected photos"), "{s:?}: {e}");
    }
}
