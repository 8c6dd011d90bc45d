//! `.npz` files written by numpy (`fixtures/gen_npz.py`), stored and deflated: every array's
//! shape and values, whatever its dtype, byte order or memory order; and errors that name the
//! file.

use std::path::PathBuf;

use aics_io::npz::load_npz;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/npz")
        .join(name)
}

#[test]
fn numpys_arrays_read_back() {
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("arrays.json")).unwrap()).unwrap();
    let want = want.as_object().unwrap();
    for file in ["arrays.npz", "arrays_compressed.npz"] {
        let got = load_npz(&fixture(file)).unwrap();
        assert_eq!(got.len(), want.len(), "{file}");
        for (k, t) in &got {
            let w = &want[k];
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{file} {k}");
            let data: Vec<f32> = w["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(t.data, data, "{file} {k}");
        }
    }
}

#[test]
fn errors_name_the_file() {
    let p = fixture("arrays.json");
    let e = load_npz(&p).unwrap_err().to_string();
    assert!(e.contains("arrays.json") && e.contains("zip"), "{e}");
    let e = load_npz(&fixture("missing.npz")).unwrap_err().to_string();
    assert!(e.contains("missing.npz"), "{e}");
}
