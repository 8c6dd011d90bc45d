//! Integration tests: loads the fixtures written by `fixtures/pth/gen_pth.py`
//! (torch 1.13, zip and legacy formats) and compares names, shapes, dtypes and
//! values with `expected.json`; checks that malicious, truncated and garbage
//! inputs are rejected with an error instead of a panic.

use std::path::{Path, PathBuf};

use aics_io::{load_pth, load_pth_bytes, load_pth_where, IoError};

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

/// Loading a subset of the entries gives exactly those entries of the full load, in order, in
/// both formats (storages shared by several views included), and keeping none gives none.
#[test]
fn a_subset_loads_like_the_whole() {
    for stem in ["tiny", "dtypes", "wrapped", "nested"] {
        for fmt in ["zip", "legacy"] {
            let path = fixtures().join(format!("{stem}_{fmt}.pth"));
            let all = load_pth(&path).unwrap();
            for parity in [0, 1] {
                let names: Vec<&str> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == parity)
                    .map(|(_, (n, _))| n.as_str())
                    .collect();
                let some = load_pth_where(&path, |n| names.contains(&n)).unwrap();
                let want: Vec<_> = all
                    .iter()
                    .filter(|(n, _)| names.contains(&n.as_str()))
                    .cloned()
                    .collect();
                assert_eq!(some, want, "{stem}_{fmt} parity {parity}");
            }
            assert!(load_pth_where(&path, |_| false).unwrap().is_empty());
        }
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

/// Out-of-memory finding of the `pth` fuzz target (`-malloc_limit_mb=1024`, see fuzz/README.md;
/// the input was crafted and run through the target, then reduced by hand): a 400-byte zip
/// whose `data/0` entry deflates to 65536 zero bytes (a `ByteStorage`) and whose `data.pkl`
/// holds one tensor viewing it with size `[2^28]`, stride `[0]`.  The view is within the
/// per-storage bound (4096 elements per storage element), so the reader used to allocate
/// 2^28 f32 = 1 GiB for it (and 8 GiB with a 2^19-byte storage, still under 1 KB of zip).
#[test]
fn compressed_storage_cannot_blow_up_the_output() {
    let bytes: &[u8] =
        b"\x50\x4b\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x21\x00\x55\xae\x10\x26\x78\x00\
          \x00\x00\x78\x00\x00\x00\x08\x00\x00\x00\x64\x61\x74\x61\x2e\x70\x6b\x6c\x80\x02\
          \x7d\x28\x58\x01\x00\x00\x00\x77\x63\x74\x6f\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\
          \x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\
          \x0a\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x63\x74\x6f\x72\x63\
          \x68\x0a\x42\x79\x74\x65\x53\x74\x6f\x72\x61\x67\x65\x0a\x58\x01\x00\x00\x00\x30\
          \x58\x03\x00\x00\x00\x63\x70\x75\x4a\x00\x00\x01\x00\x74\x51\x4a\x00\x00\x00\x00\
          \x4a\x00\x00\x00\x10\x85\x4a\x00\x00\x00\x00\x85\x89\x7d\x74\x52\x75\x2e\x50\x4b\
          \x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x21\x00\xeb\x8e\x97\xd7\x4e\x00\x00\x00\
          \x00\x00\x01\x00\x06\x00\x00\x00\x64\x61\x74\x61\x2f\x30\xed\xc1\x01\x01\x00\x00\
          \x00\x80\x90\xfe\xaf\xee\x08\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x6a\x50\x4b\x01\x02\x14\x03\x14\x00\
          \x00\x00\x00\x00\x00\x00\x21\x00\x55\xae\x10\x26\x78\x00\x00\x00\x78\x00\x00\x00\
          \x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00\x00\x00\x64\x61\
          \x74\x61\x2e\x70\x6b\x6c\x50\x4b\x01\x02\x14\x03\x14\x00\x00\x00\x08\x00\x00\x00\
          \x21\x00\xeb\x8e\x97\xd7\x4e\x00\x00\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\
          \x00\x00\x00\x00\x00\x00\x80\x01\x9e\x00\x00\x00\x64\x61\x74\x61\x2f\x30\x50\x4b\
          \x05\x06\x00\x00\x00\x00\x02\x00\x02\x00\x6a\x00\x00\x00\x10\x01\x00\x00\x00\x00";
    // No `unwrap_err`: printing 2^28 accepted elements would take far more memory.
    let e = match load_pth_bytes(bytes, Path::new("amp.pth")) {
        Ok(_) => panic!("a 400-byte file produced 2^28 elements"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("amp.pth") && e.contains("elements per byte of the file"),
        "{e}"
    );
}

/// A legacy file of one `ByteStorage` of `len` bytes and `views` tensors that each view it
/// with size `[view_len]`, stride `[0]`.
fn legacy_shared_storage(len: usize, views: usize, view_len: usize) -> Vec<u8> {
    let bu = |s: &str| [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
    let int = |v: usize| [&[b'J'][..], &(v as i32).to_le_bytes()].concat();
    let mut f = vec![0x80, 2, 0x8a, 10];
    f.extend(0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10].iter());
    f.extend(b".\x80\x02M\xe9\x03.\x80\x02}.\x80\x02}(");
    for i in 0..views {
        f.extend(bu(&format!("t{i}")));
        f.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        f.extend(bu("storage"));
        f.extend(b"ctorch\nByteStorage\n");
        f.extend(bu("0"));
        f.extend(bu("cpu"));
        f.extend(int(len));
        f.extend(b"NtQ");
        f.extend(int(0));
        f.extend(int(view_len));
        f.push(0x85);
        f.extend(int(0));
        f.extend(b"\x85\x89}tR");
    }
    f.extend(b"u.\x80\x02](");
    f.extend(bu("0"));
    f.extend(b"e.");
    f.extend((len as u64).to_le_bytes());
    f.extend((0..len).map(|i| (i % 251) as u8 + 1));
    f
}

/// Views of one storage share its bytes, so without a bound on the whole file each of up to
/// 2^20 tensors could expand the same storage 4096-fold.  The total is bounded by 4096
/// elements per byte of the file.
#[test]
fn many_views_of_one_storage_are_bounded() {
    let (len, view_len) = (1024, 1024 * 4096);
    let ok = load_pth_bytes(&legacy_shared_storage(len, 1, view_len), Path::new("v.pth")).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].1.shape, vec![view_len]);
    assert!(ok[0].1.data.iter().all(|&x| x == 1.0));
    let e = match load_pth_bytes(&legacy_shared_storage(len, 2, view_len), Path::new("v.pth")) {
        Ok(_) => panic!("two 4096-fold views of one storage were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("'t1'") && e.contains("elements per byte of the file"),
        "{e}"
    );
    // One view beyond its storage's own bound is refused as before.
    let e = load_pth_bytes(
        &legacy_shared_storage(len, 1, view_len + 1),
        Path::new("v.pth"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("too large for its storage"), "{e}");
}
