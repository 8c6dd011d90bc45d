//! `roi_pool` and `roi_align` against torchvision 0.14 (`fixtures/roi.json`, written by
//! `fixtures/gen_roi.py`): outputs and feature gradients, for regions inside, across the
//! border, outside and smaller than a cell; and both against f64 finite differences.

use std::path::PathBuf;

use aics_tensor::gradcheck::gradcheck;
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{Rng, Tensor};
use aics_testkit::json::f64s;
use serde_json::Value;

fn pair(v: &Value) -> (usize, usize) {
    let a = f64s(v);
    (a[0] as usize, a[1] as usize)
}

#[test]
fn roi_ops_equal_torchvision() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/roi.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let shape: Vec<usize> = f64s(&fx["x_shape"])
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let rois = Tensor::<f64>::from_vec(f64s(&fx["rois"]), &[7, 5]).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (i, c) in cases.iter().enumerate() {
        let x = Tensor::<f64>::from_vec(f64s(&fx["x"]), &shape)
            .unwrap()
            .requires_grad_(true);
        let p = &c["params"];
        let (op, out, scale) = (
            c["op"].as_str().unwrap(),
            pair(&p["output"]),
            p["scale"].as_f64().unwrap(),
        );
        let run = || {
            match op {
                "roi_pool" => x.roi_pool(&rois, out, scale),
                _ => x.roi_align(
                    &rois,
                    out,
                    scale,
                    p["sampling_ratio"].as_i64().unwrap() as i32,
                    p["aligned"].as_bool().unwrap(),
                ),
            }
            .unwrap()
        };
        let y = run();
        let what = format!("case {i} ({op} {p})");
        // the forward without a graph (roi_pool then keeps no argmax) gives the same values
        let plain = {
            let _g = aics_tensor::no_grad();
            run()
        };
        assert_eq!(plain.to_vec(), y.to_vec(), "{what}: without a graph");
        let want_shape: Vec<usize> = f64s(&c["shape"]).into_iter().map(|v| v as usize).collect();
        assert_eq!(y.shape(), &want_shape[..], "{what}");
        assert_close(&what, &y.to_vec(), &f64s(&c["out"]), Tol::mixed(1e-12));
        y.backward_with(f64s(&c["gout"])).unwrap();
        assert_close(
            &format!("{what} grad"),
            &x.grad().unwrap().to_vec(),
            &f64s(&c["grad"]),
            Tol::mixed(1e-12),
        );
    }
}

#[test]
fn roi_ops_pass_gradcheck() {
    for seed in 0..4u64 {
        let mut rng = Rng::new(seed);
        // distinct values keep the max pool's choice away from ties
        let x = Tensor::<f64>::rand(&[2, 2, 6, 7], -1.0, 1.0, &mut rng);
        let rois = Tensor::<f64>::from_vec(
            vec![
                0.0, 0.5, 1.2, 9.3, 8.1, 1.0, -2.0, 3.0, 4.5, 12.0, 1.0, 2.0, 2.0, 2.4, 2.3,
            ],
            &[3, 5],
        )
        .unwrap();
        let r2 = rois.clone();
        let pool = gradcheck(
            &move |t| t[0].roi_pool(&r2, (2, 3), 0.5),
            &[x.copy()],
            &[true],
            seed,
        )
        .unwrap();
        assert!(pool.passed, "roi_pool seed {seed}: {pool:?}");
        for (sampling, aligned) in [(2, false), (-1, true), (0, false)] {
            let r3 = rois.clone();
            let al = gradcheck(
                &move |t| t[0].roi_align(&r3, (3, 2), 0.5, sampling, aligned),
                &[x.copy()],
                &[true],
                seed,
            )
            .unwrap();
            assert!(
                al.passed,
                "roi_align {sampling} {aligned} seed {seed}: {al:?}"
            );
        }
    }
}

#[test]
fn bad_regions_are_errors() {
    let x = Tensor::<f64>::zeros(&[1, 2, 4, 4]);
    let bad_batch = Tensor::<f64>::from_vec(vec![1.0, 0.0, 0.0, 2.0, 2.0], &[1, 5]).unwrap();
    let e = x
        .roi_align(&bad_batch, (2, 2), 1.0, 2, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch index 1"), "{e}");
    let four = Tensor::<f64>::zeros(&[1, 4]);
    assert!(x
        .roi_pool(&four, (2, 2), 1.0)
        .unwrap_err()
        .to_string()
        .contains("(K, 5)"));
    let nan = Tensor::<f64>::from_vec(vec![0.0, f64::NAN, 0.0, 2.0, 2.0], &[1, 5]).unwrap();
    assert!(x.roi_pool(&nan, (2, 2), 1.0).is_err());
    let ok = Tensor::<f64>::from_vec(vec![0.0, 0.0, 0.0, 2.0, 2.0], &[1, 5]).unwrap();
    assert!(x.roi_pool(&ok, (0, 2), 1.0).is_err());
    assert!(x.roi_align(&ok, (2, 2), 0.0, 2, false).is_err());
    assert!(Tensor::<f64>::zeros(&[2, 4, 4])
        .roi_pool(&ok, (2, 2), 1.0)
        .is_err());
}
