//! Integration tests: loads the fixtures written by `fixtures/pth/gen_pth.py`
//! (torch 1.13, zip and legacy formats) and compares names, shapes, dtypes and
//! values with `expected.json`; checks that malicious, truncated and garbage
//! inputs are rejected with an error instead of a panic.

use std::path::{Path, PathBuf};

use aics_io::{load_pth, load_pth_bytes, IoError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pth")
}

fn expected() -> serde_json::Value {
    let s = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn check_file(file: &str) {
    let exp = expected();
    let entries = exp[file]
        .as_array()
        .unwrap_or_else(|| panic!("{file} missing in expected.json"));
    let got = load_pth(&fixtures().join(file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), entries.len(), "{file}: entry count");
    for ((name, t), e) in got.iter().zip(entries) {
        assert_eq!(name, e["name"].as_str().unwrap(), "{file}: name order");
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{file}:{name} shape");
        assert_eq!(
            t.dtype.name(),
            e["dtype"].as_str().unwrap(),
            "{file}:{name} dtype"
        );
        let data: Vec<f64> = e["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(t.data.len(), data.len(), "{file}:{name} numel");
        for (i, (&g, &x)) in t.data.iter().zip(&data).enumerate() {
            // f16/bf16/int values are exactly representable in f32; f64 values
            // compare exactly after the same f64 -> f32 rounding.
            assert_eq!(g, x as f32, "{file}:{name}[{i}]");
        }
    }
}

#[test]
fn tiny_model_zip() {
    check_file("tiny_zip.pth");
}

#[test]
fn tiny_model_legacy() {
    check_file("tiny_legacy.pth");
}

#[test]
fn tiny_model_protocol4_zip() {
    check_file("tiny_p4_zip.pth");
}

#[test]
fn dtypes_views_zip() {
    check_file("dtypes_zip.pth");
}

#[test]
fn dtypes_views_legacy() {
    check_file("dtypes_legacy.pth");
}

#[test]
fn wrapped_and_nested() {
    for f in [
        "wrapped_zip.pth",
        "wrapped_legacy.pth",
        "nested_zip.pth",
        "nested_legacy.pth",
    ] {
        check_file(f);
    }
}

#[test]
fn zip_and_legacy_agree() {
    for stem in ["tiny", "dtypes", "wrapped", "nested"] {
        let a = load_pth(&fixtures().join(format!("{stem}_zip.pth"))).unwrap();
        let b = load_pth(&fixtures().join(format!("{stem}_legacy.pth"))).unwrap();
        assert_eq!(a, b, "{stem}");
    }
}

#[test]
fn malicious_pickles_are_refused() {
    for f in ["malicious.pkl", "malicious_zip.pth", "malicious_legacy.pth"] {
        let path = fixtures().join(f);
        match load_pth(&path) {
            Err(e @ IoError::Refused { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("refusing to call os.system"), "{msg}");
                assert!(msg.contains(f), "{msg}");
            }
            other => panic!("{f}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = load_pth(Path::new("/nonexistent/dir/x.pth")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dir/x.pth"));
}

#[test]
fn truncated_files_error() {
    for f in [
        "tiny_zip.pth",
        "tiny_legacy.pth",
        "dtypes_zip.pth",
        "dtypes_legacy.pth",
        "tiny_p4_zip.pth",
    ] {
        let bytes = std::fs::read(fixtures().join(f)).unwrap();
        let n = bytes.len();
        let mut cuts: Vec<usize> = vec![
            0,
            1,
            2,
            3,
            10,
            50,
            n / 4,
            n / 3,
            n / 2,
            2 * n / 3,
            3 * n / 4,
            n - 100,
            n - 23,
            n - 8,
            n - 1,
        ];
        // Every byte position of the (small) legacy files.
        if f.ends_with("legacy.pth") {
            cuts.extend(0..n);
        } else {
            cuts.extend((0..n).step_by(97));
        }
        for cut in cuts {
            let r = load_pth_bytes(&bytes[..cut], Path::new(f));
            assert!(r.is_err(), "{f} cut at {cut}/{n} should fail");
            let msg = r.unwrap_err().to_string();
            assert!(msg.starts_with(f), "{msg}");
        }
    }
}

#[test]
fn garbage_errors() {
    // xorshift, deterministic
    let mut s: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for len in [0usize, 1, 7, 100, 1000, 5000] {
        for round in 0..20 {
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half of the inputs look like pickles / zips to reach deeper code.
            match round % 4 {
                1 if len > 2 => b[..2].copy_from_slice(&[0x80, 0x02]),
                2 if len > 4 => b[..4].copy_from_slice(b"PK\x03\x04"),
                _ => {}
            }
            assert!(
                load_pth_bytes(&b, Path::new("garbage.bin")).is_err(),
                "len {len} round {round}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip single bytes of the legacy and zip fixtures; any outcome but a panic is fine.
    for f in ["tiny_legacy.pth", "dtypes_zip.pth"] {
        let bytes = std::fs::read(fixtures().join(f)).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = load_pth_bytes(&b, Path::new(f));
        }
    }
}
