//! MTCNN against facenet-pytorch 2.6.0 (fixtures/mtcnn/mtcnn.json, made by
//! fixtures/gen_mtcnn.py): each network on key-hashed inputs, and the whole cascade's boxes,
//! scores and landmarks on photos.

use std::path::PathBuf;

use aics_detect::mtcnn::{Mtcnn, MtcnnSettings};
use aics_detect::yolo::Planar;
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{hash_uniform, Tensor};
use aics_testkit::json;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn weights() -> Mtcnn {
    let dir = repo().join(".cache/weights/mtcnn");
    assert!(
        dir.join("onet.pt").exists(),
        "{} is missing: run `bash scripts/setup.sh` first",
        dir.display()
    );
    Mtcnn::load(&dir).unwrap()
}

fn input(net: &Value) -> Tensor {
    let shape = json::usizes(&net["input"]["shape"]);
    let n = shape.iter().product();
    let key = net["input"]["key"].as_str().unwrap();
    let v: Vec<f32> = hash_uniform(key, n)
        .iter()
        .map(|&u| (2.0 * u - 1.0) as f32)
        .collect();
    Tensor::from_vec(v, &shape).unwrap()
}

#[test]
#[ignore = "needs the MTCNN weights fetched by scripts/setup.sh"]
fn mtcnn_networks_equal_facenet_pytorch() {
    let f = json::load("mtcnn/mtcnn.json");
    let m = weights();
    let _g = aics_tensor::no_grad();
    let tol = Tol::new(1e-5, 1e-4);
    let n = &f["nets"];
    let (r, p) = m.pnet.forward2(&input(&n["pnet"])).unwrap();
    assert_close(
        "pnet reg",
        &r.to_vec(),
        &json::f64s(&n["pnet"]["outputs"]["reg"]["data"]),
        tol,
    );
    assert_close(
        "pnet prob",
        &p.to_vec(),
        &json::f64s(&n["pnet"]["outputs"]["prob"]["data"]),
        tol,
    );
    let (r, p) = m.rnet.forward2(&input(&n["rnet"])).unwrap();
    assert_close(
        "rnet reg",
        &r.to_vec(),
        &json::f64s(&n["rnet"]["outputs"]["reg"]["data"]),
        tol,
    );
    assert_close(
        "rnet prob",
        &p.to_vec(),
        &json::f64s(&n["rnet"]["outputs"]["prob"]["data"]),
        tol,
    );
    let (r, l, p) = m.onet.forward3(&input(&n["onet"])).unwrap();
    assert_close(
        "onet reg",
        &r.to_vec(),
        &json::f64s(&n["onet"]["outputs"]["reg"]["data"]),
        tol,
    );
    assert_close(
        "onet landmarks",
        &l.to_vec(),
        &json::f64s(&n["onet"]["outputs"]["landmarks"]["data"]),
        tol,
    );
    assert_close(
        "onet prob",
        &p.to_vec(),
        &json::f64s(&n["onet"]["outputs"]["prob"]["data"]),
        tol,
    );
}

#[test]
#[ignore = "needs the MTCNN weights and photos fetched by scripts/setup.sh"]
fn mtcnn_faces_equal_facenet_pytorch() {
    let f = json::load("mtcnn/mtcnn.json");
    let m = weights();
    let mut faces_seen = 0;
    for im in f["images"].as_array().unwrap() {
        let file = repo().join(im["file"].as_str().unwrap());
        let img = image::open(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .to_rgb8();
        let (w, h) = img.dimensions();
        let planar = Planar::from_rgb8_255(w as usize, h as usize, img.as_raw()).unwrap();
        let (faces, trace) = m.detect(&planar, MtcnnSettings::default()).unwrap();
        let name = im["name"].as_str().unwrap();
        let want = im["boxes"].as_array().map(|a| a.len()).unwrap_or(0);
        assert_eq!(
            faces.len(),
            want,
            "{name}: faces {faces:?}, trace {trace:?}"
        );
        assert_eq!(
            trace.scales.len() as u64,
            im["counts"]["scales"].as_u64().unwrap(),
            "{name}: scales"
        );
        for (k, face) in faces.iter().enumerate() {
            let b = json::f64s(&im["boxes"][k]);
            for j in 0..4 {
                let d = (face.bbox[j] as f64 - b[j]).abs();
                assert!(
                    d <= 1.0,
                    "{name} face {k}: box {:?} vs facenet-pytorch {b:?}",
                    face.bbox
                );
            }
            let p = im["probs"][k].as_f64().unwrap();
            assert!(
                (face.score as f64 - p).abs() <= 1e-4,
                "{name} face {k}: {} vs {p}",
                face.score
            );
            for (j, &(x, y)) in face.landmarks.iter().enumerate() {
                let l = json::f64s(&im["landmarks"][k][j]);
                assert!(
                    (x as f64 - l[0]).abs() <= 1.0 && (y as f64 - l[1]).abs() <= 1.0,
                    "{name} face {k} landmark {j}: ({x}, {y}) vs {l:?}"
                );
            }
            faces_seen += 1;
        }
    }
    assert_eq!(faces_seen, 5);
}
