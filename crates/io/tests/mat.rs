//! Integration tests for the MAT-file v5 reader: loads the fixtures written by
//! `fixtures/mat/gen_mat.py` (scipy.io.savemat, compressed and uncompressed,
//! plus hand-written little- and big-endian files) and compares every
//! variable with what scipy.io.loadmat read back (`expected.json`); converts
//! two miniature MatConvNet models; and checks that truncated, oversized,
//! corrupt, deeply nested and randomly mutated inputs give errors, never
//! panics.

use std::io::Write;
use std::path::{Path, PathBuf};

use aics_io::mat::column_major_to_row_major;
use aics_io::{
    load_mat, load_mat_bytes, load_matconvnet, matconvnet_simplenn, IoError, MatArray, MatClass,
    MatData, MatValue, PthDtype,
};
use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mat")
}

fn expected() -> Json {
    let s = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn load(name: &str) -> Vec<(String, MatValue)> {
    load_mat(&fixtures().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn var<'a>(vars: &'a [(String, MatValue)], name: &str) -> &'a MatValue {
    &vars
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
        .1
}

fn err_msg(r: Result<Vec<(String, MatValue)>, IoError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {} variables", v.len()),
        Err(e) => {
            assert!(matches!(e, IoError::Format { .. }), "{e:?}");
            e.to_string()
        }
    }
}

fn usizes(j: &Json) -> Vec<usize> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// Compares one value with its description in expected.json.
fn check_value(got: &MatValue, exp: &Json, at: &str) {
    let kind = exp["kind"].as_str().unwrap();
    assert_eq!(got.kind(), kind, "{at}: kind");
    match got {
        MatValue::Numeric(a) | MatValue::Logical(a) => check_array(a, exp, at),
        MatValue::Char(s) => assert_eq!(s, exp["text"].as_str().unwrap(), "{at}: text"),
        MatValue::Cell { dims, items } => {
            assert_eq!(dims, &usizes(&exp["dims"]), "{at}: dims");
            let e = exp["items"].as_array().unwrap();
            assert_eq!(items.len(), e.len(), "{at}: item count");
            for (i, (g, x)) in items.iter().zip(e).enumerate() {
                check_value(g, x, &format!("{at}{{{}}}", i + 1));
            }
        }
        MatValue::Struct {
            dims,
            fields,
            elems,
        } => {
            assert_eq!(dims, &usizes(&exp["dims"]), "{at}: dims");
            let ef: Vec<&str> = exp["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(fields, &ef, "{at}: fields");
            let ee = exp["elems"].as_array().unwrap();
            assert_eq!(elems.len(), ee.len(), "{at}: element count");
            for (k, (g, x)) in elems.iter().zip(ee).enumerate() {
                let x = x.as_array().unwrap();
                assert_eq!(g.len(), fields.len(), "{at}({}): values", k + 1);
                for ((v, e), f) in g.iter().zip(x).zip(fields) {
                    check_value(v, e, &format!("{at}({}).{f}", k + 1));
                }
            }
        }
    }
}

fn check_array(a: &MatArray, exp: &Json, at: &str) {
    assert_eq!(a.dims, usizes(&exp["dims"]), "{at}: dims");
    let n: usize = a.dims.iter().product();
    assert_eq!(a.numel(), n, "{at}: numel");
    let data = exp["data"].as_array().unwrap();
    assert_eq!(data.len(), n, "{at}: expected numel");
    if exp["kind"] == "logical" {
        let (_, got) = a.to_row_major_f64();
        for (i, (g, e)) in got.iter().zip(data).enumerate() {
            assert_eq!(*g, e.as_u64().unwrap() as f64, "{at}[{i}]");
        }
        return;
    }
    assert_eq!(
        a.class.name(),
        exp["class"].as_str().unwrap(),
        "{at}: class"
    );
    match &a.data {
        MatData::I64(v) => {
            assert_eq!(a.class, MatClass::Int64);
            let rm = column_major_to_row_major(&a.dims, v).unwrap();
            for (i, (g, e)) in rm.iter().zip(data).enumerate() {
                assert_eq!(*g, e.as_i64().unwrap(), "{at}[{i}]");
            }
        }
        MatData::U64(v) => {
            assert_eq!(a.class, MatClass::UInt64);
            let rm = column_major_to_row_major(&a.dims, v).unwrap();
            for (i, (g, e)) in rm.iter().zip(data).enumerate() {
                assert_eq!(*g, e.as_u64().unwrap(), "{at}[{i}]");
            }
        }
        MatData::F32(_) => {
            assert_eq!(a.class, MatClass::Single);
            let (dims, rm) = a.to_row_major_f32();
            assert_eq!(dims, a.dims);
            for (i, (g, e)) in rm.iter().zip(data).enumerate() {
                assert_eq!(*g, e.as_f64().unwrap() as f32, "{at}[{i}]");
            }
        }
        MatData::F64(_) => {
            assert!(!matches!(
                a.class,
                MatClass::Single | MatClass::Int64 | MatClass::UInt64
            ));
            let (_, rm) = a.to_row_major_f64();
            for (i, (g, e)) in rm.iter().zip(data).enumerate() {
                assert_eq!(*g, e.as_f64().unwrap(), "{at}[{i}]");
            }
        }
    }
}

#[test]
fn fixtures_match_scipy() {
    let exp = expected();
    let files = exp["files"].as_object().unwrap();
    assert!(files.len() >= 10);
    for (file, vars) in files {
        let got = load(file);
        let vars = vars.as_array().unwrap();
        assert_eq!(got.len(), vars.len(), "{file}: variable count");
        for ((name, v), e) in got.iter().zip(vars) {
            assert_eq!(name, e[0].as_str().unwrap(), "{file}: variable order");
            check_value(v, &e[1], &format!("{file}:{name}"));
        }
    }
}

#[test]
fn compressed_equals_uncompressed() {
    for base in ["numeric", "containers", "single"] {
        let plain = read(&format!("{base}.mat"));
        let z = read(&format!("{base}_z.mat"));
        // The compressed file really holds miCOMPRESSED (15) elements.
        assert_eq!(&z[128..132], &15u32.to_le_bytes(), "{base}_z.mat");
        assert_eq!(&plain[128..132], &14u32.to_le_bytes(), "{base}.mat");
        assert_eq!(load(&format!("{base}.mat")), load(&format!("{base}_z.mat")));
    }
}

#[test]
fn big_endian_equals_little_endian() {
    let be = read("hand_be.mat");
    assert_eq!(&be[126..128], b"MI");
    assert_eq!(&read("hand_le.mat")[126..128], b"IM");
    let le = load("hand_le.mat");
    let be = load("hand_be.mat");
    assert_eq!(le, be);
    // Values stored with a narrower mi type come back in the class's type.
    let a = var(&be, "dbl_u8").as_array().unwrap();
    assert_eq!(a.class, MatClass::Double);
    assert_eq!(a.data, MatData::F64(vec![0.0, 7.0, 200.0, 255.0]));
    let a = var(&be, "sgl_dbl").as_array().unwrap();
    assert_eq!(a.data, MatData::F32(vec![0.5, -2.25]));
    let a = var(&be, "i16_i8").as_array().unwrap();
    assert_eq!(a.class, MatClass::Int16);
    assert_eq!(a.data, MatData::F64(vec![-5.0, 0.0, 100.0]));
    // Small data elements (4 bytes of data inside the tag).
    let a = var(&be, "u32_small").as_array().unwrap();
    assert_eq!(a.data, MatData::F64(vec![4e9]));
    let a = var(&be, "i8_small").as_array().unwrap();
    assert_eq!(a.data, MatData::F64(vec![-1.0, 2.0, -3.0]));
    assert_eq!(
        var(&be, "i64").as_array().unwrap().data,
        MatData::I64(vec![-(1 << 62) + 3, (1 << 53) + 1])
    );
    assert_eq!(
        var(&be, "u64").as_array().unwrap().data,
        MatData::U64(vec![u64::MAX - 1])
    );
    assert!(matches!(var(&be, "lg"), MatValue::Logical(_)));
    assert_eq!(var(&be, "txt").as_str(), Some("abc\ndef"));
    let st = var(&be, "st");
    assert_eq!(st.field("b").and_then(MatValue::as_str), Some("hi"));
    assert_eq!(
        st.field("alpha").unwrap().as_array().unwrap().data,
        MatData::F64(vec![-1.0, 2.0])
    );
}

#[test]
fn column_major_to_row_major_order() {
    let vars = load("numeric.mat");
    // dbl23 = arange(6).reshape(2, 3) * 1.5 - 2 in numpy (row-major).
    let a = var(&vars, "dbl23").as_array().unwrap();
    assert_eq!(a.dims, vec![2, 3]);
    // MATLAB stores column-major: (0,0) (1,0) (0,1) (1,1) ...
    let stored = a.to_f64_vec();
    assert_eq!(stored[1], 3.0 * 1.5 - 2.0);
    let (dims, rm) = a.to_row_major_f32();
    assert_eq!(dims, vec![2, 3]);
    let want: Vec<f32> = (0..6).map(|i| i as f32 * 1.5 - 2.0).collect();
    assert_eq!(rm, want);
    // sgl324[i, j, k] = (i*8 + j*4 + k) * 0.25 - 1.
    let a = var(&vars, "sgl324").as_array().unwrap();
    assert_eq!(a.dims, vec![3, 2, 4]);
    assert_eq!(a.class, MatClass::Single);
    let (_, rm) = a.to_row_major_f32();
    let want: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 1.0).collect();
    assert_eq!(rm, want);
    // Stored order: element (i, j, k) at i + 3j + 6k.
    let stored = a.to_f32_vec();
    assert_eq!(stored[1 + 3 + 6 * 2], (8 + 4 + 2) as f32 * 0.25 - 1.0);
    let a = var(&vars, "nd4").as_array().unwrap();
    assert_eq!(a.dims, vec![2, 1, 3, 2]);
    let (_, rm) = a.to_row_major_f64();
    let want: Vec<f64> = (0..12).map(|i| i as f64 + 0.5).collect();
    assert_eq!(rm, want);
    let a = var(&vars, "empty").as_array().unwrap();
    assert_eq!(a.dims, vec![0, 3]);
    assert!(a.to_row_major_f32().1.is_empty());
}

#[test]
fn struct_and_cell_helpers() {
    let vars = load("containers.mat");
    let s = var(&vars, "s");
    assert_eq!(s.field("name").and_then(MatValue::as_str), Some("conv1_1"));
    let inner = s.field("inner").unwrap();
    let x = inner.field("x").unwrap().as_array().unwrap();
    assert_eq!((x.class, x.to_f32_vec()), (MatClass::Int32, vec![4.0, 5.0]));
    let deep = inner.field("deep").unwrap().as_cell().unwrap();
    assert_eq!(deep[0].as_str(), Some("q"));
    assert!(s.field("missing").is_none());
    // A 2x3 struct array: no `field`, elements in column-major order.
    let sa = var(&vars, "sa");
    assert!(sa.field("f").is_none());
    let MatValue::Struct { dims, elems, .. } = sa else {
        panic!("sa is not a struct")
    };
    assert_eq!(dims, &vec![2, 3]);
    for r in 0..2 {
        for c in 0..3 {
            let e = &elems[r + 2 * c];
            assert_eq!(e[1].as_str(), Some(format!("r{r}c{c}").as_str()));
            let f = e[0].as_array().unwrap().to_f64_vec();
            assert_eq!(f, vec![(10 * r + c) as f64]);
        }
    }
    let MatValue::Cell { dims, items } = var(&vars, "cel22") else {
        panic!("cel22 is not a cell")
    };
    assert_eq!(dims, &vec![2, 2]);
    assert_eq!(items[2].as_str(), Some("three")); // (1, 2) in MATLAB
    let texts = load("text.mat");
    assert_eq!(var(&texts, "uni").as_str(), Some("h\u{e9}llo \u{20ac}"));
    assert_eq!(var(&texts, "rows").as_str(), Some("abc\ndef"));
    assert_eq!(var(&texts, "blank").as_str(), Some(""));
}

fn check_vgg(file: &str, key: &str, dtype: PthDtype, mean_tol: f32) {
    let exp = expected();
    let exp = &exp[key];
    let m = load_matconvnet(&fixtures().join(file)).unwrap_or_else(|e| panic!("{e}"));
    let ec = exp["convs"].as_array().unwrap();
    assert_eq!(m.convs.len(), ec.len(), "{file}: conv count");
    for (c, e) in m.convs.iter().zip(ec) {
        assert_eq!(c.name, e["name"].as_str().unwrap());
        let shape = usizes(&e["weight_shape"]);
        assert_eq!(c.weight.shape, shape, "{file}:{} weight shape", c.name);
        assert_eq!(c.weight.dtype, dtype);
        let w = e["weight"].as_array().unwrap();
        assert_eq!(c.weight.data.len(), w.len());
        for (i, (g, x)) in c.weight.data.iter().zip(w).enumerate() {
            assert_eq!(
                *g,
                x.as_f64().unwrap() as f32,
                "{file}:{} weight[{i}]",
                c.name
            );
        }
        let b = e["bias"].as_array().unwrap();
        assert_eq!(c.bias.shape, vec![shape[0]]);
        let want: Vec<f32> = b.iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(c.bias.data, want, "{file}:{} bias", c.name);
    }
    let mean = m.mean_rgb.expect("mean pixel");
    let want: Vec<f32> = exp["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    aics_tensor::testing::assert_close(
        &format!("{file}: mean"),
        &mean,
        &want,
        aics_tensor::testing::Tol::new(mean_tol as f64, 0.0),
    );
}

#[test]
fn matconvnet_simplenn_tiny() {
    check_vgg("vgg_tiny.mat", "vgg", PthDtype::F32, 0.0);
    let m = load_matconvnet(&fixtures().join("vgg_tiny.mat")).unwrap();
    assert_eq!(m.mean_rgb, Some([123.68, 116.779, 103.939]));
    // Spot-check the layout by hand: weight[co][ci][h][w] = W(h, w, ci, co).
    let vars = load("vgg_tiny.mat");
    let layers = var(&vars, "layers").as_cell().unwrap();
    assert_eq!(layers.len(), 5);
    let w = layers[3].field("weights").unwrap().as_cell().unwrap()[0]
        .as_array()
        .unwrap();
    let (kh, kw, cin, cout) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    assert_eq!((kh, kw, cin, cout), (2, 3, 4, 5));
    let src = w.to_f32_vec();
    let conv = &m.convs[1];
    for co in 0..cout {
        for ci in 0..cin {
            for h in 0..kh {
                for x in 0..kw {
                    let got = conv.weight.data[((co * cin + ci) * kh + h) * kw + x];
                    assert_eq!(got, src[h + kh * (x + kw * (ci + cin * co))]);
                }
            }
        }
    }
}

#[test]
fn matconvnet_simplenn_legacy_fields() {
    check_vgg("vgg_old.mat", "vgg_old", PthDtype::F64, 1e-4);
}

#[test]
fn matconvnet_rejects_other_layouts() {
    let p = fixtures().join("numeric.mat");
    let e = load_matconvnet(&p).unwrap_err().to_string();
    assert!(e.contains("no top-level variable 'layers'"), "{e}");
    assert!(e.contains("numeric.mat"), "{e}");
    // `layers` as a struct array (MatConvNet DagNN).
    let vars = vec![(
        "layers".to_string(),
        MatValue::Struct {
            dims: vec![1, 2],
            fields: vec![],
            elems: vec![vec![], vec![]],
        },
    )];
    let e = matconvnet_simplenn(&vars, &p).unwrap_err().to_string();
    assert!(e.contains("DagNN"), "{e}");
    // A conv layer without parameters.
    let layer = MatValue::Struct {
        dims: vec![1, 1],
        fields: vec!["name".into(), "type".into()],
        elems: vec![vec![
            MatValue::Char("c1".into()),
            MatValue::Char("conv".into()),
        ]],
    };
    let vars = vec![(
        "layers".to_string(),
        MatValue::Cell {
            dims: vec![1, 1],
            items: vec![layer],
        },
    )];
    let e = matconvnet_simplenn(&vars, &p).unwrap_err().to_string();
    assert!(e.contains("'c1'") && e.contains("weights"), "{e}");
}

#[test]
fn unsupported_classes_name_the_variable() {
    let cases = [
        ("sparse.mat", "'sp'", "sparse"),
        ("complex.mat", "'z'", "complex arrays not supported"),
        ("object.mat", "'obj'", "'object'"),
    ];
    for (file, name, what) in cases {
        let e = err_msg(load_mat(&fixtures().join(file)));
        assert!(e.contains(name) && e.contains(what), "{file}: {e}");
        assert!(e.contains(file), "{file}: {e}");
    }
}

// ---------------------------------------------------------------------------
// Hand-built little-endian files

fn el(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut v = ty.to_le_bytes().to_vec();
    v.extend((data.len() as u32).to_le_bytes());
    v.extend(data);
    v.resize(v.len() + (8 - data.len() % 8) % 8, 0);
    v
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn matrix(class: u32, flags: u32, dims: &[i32], name: &str, body: &[u8]) -> Vec<u8> {
    let mut d = el(6, &[(class | flags << 8).to_le_bytes(), [0; 4]].concat());
    d.extend(el(5, &i32s(dims)));
    d.extend(el(1, name.as_bytes()));
    d.extend(body);
    el(14, &d)
}

fn header() -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, test".to_vec();
    h.resize(116, b' ');
    h.extend([0; 8]);
    h.extend([0x00, 0x01, b'I', b'M']);
    h
}

fn file(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut f = header();
    for e in elements {
        f.extend(e);
    }
    f
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn compressed(data: &[u8]) -> Vec<u8> {
    let z = zlib(data);
    let mut v = 15u32.to_le_bytes().to_vec();
    v.extend((z.len() as u32).to_le_bytes());
    v.extend(z);
    v
}

fn parse(bytes: &[u8]) -> Result<Vec<(String, MatValue)>, IoError> {
    load_mat_bytes(bytes, Path::new("test.mat"))
}

fn nested_cells(depth: usize) -> Vec<u8> {
    let mut m = matrix(6, 0, &[1, 1], "", &el(9, &1.5f64.to_le_bytes()));
    for _ in 0..depth {
        m = matrix(1, 0, &[1, 1], "", &m);
    }
    m
}

#[test]
fn hand_built_basics() {
    // A header alone is an empty, valid file.
    assert!(parse(&header()).unwrap().is_empty());
    // miUINT8-stored double, small-element name, logical and global flags.
    let f = file(&[
        matrix(6, 0x04, &[1, 3], "a", &el(2, &[1, 2, 250])),
        matrix(9, 0x02, &[1, 2], "l", &el(2, &[1, 0])),
        matrix(6, 0, &[0, 0], "e", &el(9, &[])),
        el(14, &[]),
    ]);
    let v = parse(&f).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(v[0].0, "a");
    let a = v[0].1.as_array().unwrap();
    assert_eq!(a.data, MatData::F64(vec![1.0, 2.0, 250.0]));
    assert!(matches!(v[1].1, MatValue::Logical(_)));
    assert_eq!(v[2].1.as_array().unwrap().dims, vec![0, 0]);
    assert_eq!(v[3].1.as_array().unwrap().numel(), 0);
    // Integer classes saturate out-of-range stored values.
    let f = file(&[matrix(
        8,
        0,
        &[1, 2],
        "s",
        &el(3, &i32s(&[0x7fff_0400])[..4]),
    )]);
    let v = parse(&f).unwrap();
    assert_eq!(
        v[0].1.as_array().unwrap().data,
        MatData::F64(vec![127.0, 127.0])
    );
}

#[test]
fn bad_headers() {
    let e = err_msg(parse(b"MATLAB 5.0"));
    assert!(e.contains("too short"), "{e}");
    let mut h = header();
    h[126..128].copy_from_slice(b"XX");
    assert!(err_msg(parse(&h)).contains("endian indicator"));
    let mut h = header();
    h[..19].copy_from_slice(b"MATLAB 7.3 MAT-file");
    h[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
    assert!(err_msg(parse(&h)).contains("v7.3"));
    let mut h = header();
    h[124..126].copy_from_slice(&0x0300u16.to_le_bytes());
    assert!(err_msg(parse(&h)).contains("version"));
    let e = err_msg(parse(&[0u8; 200]));
    assert!(e.contains("v4"), "{e}");
    // A top-level element that is neither miMATRIX nor miCOMPRESSED.
    let e = err_msg(parse(&file(&[el(9, &[0; 8])])));
    assert!(e.contains("miDOUBLE") && e.contains("offset 128"), "{e}");
}

#[test]
fn truncated_at_every_offset() {
    for name in ["single.mat", "single_z.mat", "sparse.mat"] {
        let bytes = read(name);
        for cut in 0..bytes.len() {
            let r = parse(&bytes[..cut]);
            if cut == 128 {
                assert!(r.unwrap().is_empty(), "{name}: header only");
                continue;
            }
            let e = err_msg(r);
            if cut > 128 {
                assert!(e.contains("offset"), "{name} cut at {cut}: {e}");
            }
        }
    }
    // Multi-variable files: a cut between variables is a valid shorter file,
    // so only require that nothing panics and that other cuts fail.
    for name in [
        "numeric.mat",
        "containers_z.mat",
        "hand_be.mat",
        "vgg_tiny.mat",
    ] {
        let bytes = read(name);
        let full = parse(&bytes).unwrap().len();
        for cut in 0..bytes.len() {
            if let Ok(v) = parse(&bytes[..cut]) {
                assert!(v.len() < full, "{name} cut at {cut}");
            }
        }
    }
}

#[test]
fn huge_declared_sizes() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Top-level tag declaring ~4 GiB of data.
        (
            file(&[[14u32.to_le_bytes(), 0xffff_fff8u32.to_le_bytes()].concat()]),
            "truncated",
        ),
        // miCOMPRESSED declaring ~4 GiB.
        (
            file(&[[15u32.to_le_bytes(), 0xffff_fff0u32.to_le_bytes()].concat()]),
            "truncated",
        ),
        // Dimensions whose product overflows.
        (
            file(&[matrix(6, 0, &[i32::MAX; 3], "x", &el(9, &[0; 8]))]),
            "overflow",
        ),
        // 2^32 elements declared, 1 stored.
        (
            file(&[matrix(6, 0, &[65536, 65536], "x", &el(9, &[0; 8]))]),
            "do not match",
        ),
        (
            file(&[matrix(4, 0, &[1, 1 << 30], "c", &el(16, b"ab"))]),
            "do not match",
        ),
        (
            file(&[matrix(6, 0, &[-1, 2], "x", &el(9, &[0; 16]))]),
            "negative dimension",
        ),
        // A cell and struct arrays declaring far more elements than bytes.
        (
            file(&[matrix(1, 0, &[1 << 30, 1 << 30], "c", &[])]),
            "cannot fit",
        ),
        (
            file(&[matrix(
                2,
                0,
                &[1 << 30, 4],
                "s",
                &[el(5, &i32s(&[32])), el(1, &[])].concat(),
            )]),
            "cannot fit",
        ),
        (
            file(&[matrix(
                2,
                0,
                &[1 << 20, 1],
                "s",
                &[el(5, &i32s(&[8])), el(1, b"abcdefgh")].concat(),
            )]),
            "cannot fit",
        ),
        // Field names not a multiple of the declared length.
        (
            file(&[matrix(
                2,
                0,
                &[1, 1],
                "s",
                &[el(5, &i32s(&[-1])), el(1, b"abcdefgh")].concat(),
            )]),
            "field name length",
        ),
        // A small data element claiming more than 4 bytes.
        (
            file(&[matrix(6, 0, &[1, 1], "x", &[0x01, 0, 0x10, 0, 0, 0, 0, 0])]),
            "small data element",
        ),
    ];
    for (i, (bytes, want)) in cases.iter().enumerate() {
        let e = err_msg(parse(bytes));
        assert!(e.contains(want), "case {i}: {e}");
    }
    // The variable name appears in errors raised after it was read.
    let e = err_msg(parse(&cases[3].0));
    assert!(e.contains("variable 'x'"), "{e}");
}

#[test]
fn decompression_is_bounded() {
    // 16 MiB of zeros inside a valid miMATRIX compresses ~1000x: over the
    // limit of 64x the compressed size plus 1 MiB.
    let n = 16 << 20;
    let body = matrix(9, 0, &[1, n as i32], "big", &el(2, &vec![0u8; n]));
    let f = file(&[compressed(&body)]);
    assert!(f.len() < 64 << 10);
    let e = err_msg(parse(&f));
    assert!(e.contains("inflates to more than"), "{e}");
    // A small zero array is fine.
    let body = matrix(9, 0, &[1, 4096], "ok", &el(2, &[0u8; 4096]));
    let v = parse(&file(&[compressed(&body)])).unwrap();
    assert_eq!(v[0].1.as_array().unwrap().numel(), 4096);
}

#[test]
fn corrupt_zlib_streams() {
    let good = read("single_z.mat");
    assert!(parse(&good).is_ok());
    // Break the zlib header, the deflate data and the adler32 checksum.
    for pos in [136, 137, 150, good.len() - 1] {
        let mut b = good.clone();
        b[pos] ^= 0x5a;
        let e = err_msg(parse(&b));
        assert!(
            e.contains("zlib") || e.contains("offset"),
            "flip at {pos}: {e}"
        );
    }
    // Garbage instead of a zlib stream.
    let mut f = header();
    f.extend(15u32.to_le_bytes());
    f.extend(16u32.to_le_bytes());
    f.extend(b"not a zlib strm!");
    assert!(err_msg(parse(&f)).contains("zlib"));
    // A stream cut short inside the element (the element size matches).
    let z = zlib(&matrix(6, 0, &[1, 1], "x", &el(9, &[0; 8])));
    let mut f = header();
    f.extend(15u32.to_le_bytes());
    f.extend(((z.len() - 6) as u32).to_le_bytes());
    f.extend(&z[..z.len() - 6]);
    assert!(err_msg(parse(&f)).contains("zlib"));
    // A compressed element holding something other than miMATRIX.
    let mut f = header();
    f.extend(compressed(&el(9, &[0; 8])));
    assert!(err_msg(parse(&f)).contains("expected a miMATRIX"));
}

#[test]
fn nesting_is_bounded() {
    let ok = parse(&file(&[nested_cells(60)])).unwrap();
    let mut v = &ok[0].1;
    for _ in 0..60 {
        v = &v.as_cell().unwrap()[0];
    }
    assert_eq!(v.as_array().unwrap().to_f64_vec(), vec![1.5]);
    for f in [
        file(&[nested_cells(100)]),
        file(&[compressed(&nested_cells(100))]),
    ] {
        let e = err_msg(parse(&f));
        assert!(e.contains("nested deeper than 64"), "{e}");
    }
    // Much deeper input is rejected before any recursion depth problem.
    let e = err_msg(parse(&file(&[nested_cells(5000)])));
    assert!(e.contains("nested deeper"), "{e}");
}

/// xorshift64*: a tiny deterministic generator for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[path = "common/mat_exercise.rs"]
mod mat_exercise;
use mat_exercise::exercise;

#[test]
fn random_mutations_never_panic() {
    let files = [
        "single.mat",
        "containers.mat",
        "numeric.mat",
        "hand_be.mat",
        "text.mat",
        "vgg_old.mat",
        "single_z.mat",
        "vgg_tiny.mat",
    ];
    let bases: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut failed) = (0, 0);
    for iter in 0..4000 {
        let mut b = bases[iter % bases.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(b.len());
            // Mostly small changes near plausible values, sometimes any byte.
            b[pos] = match rng.below(4) {
                0 => b[pos] ^ (1 << rng.below(8)),
                1 => 0xff,
                2 => 0,
                _ => rng.next() as u8,
            };
        }
        if rng.below(8) == 0 {
            let cut = rng.below(b.len());
            b.truncate(cut);
        }
        match parse(&b) {
            Ok(vars) => {
                ok += 1;
                vars.iter().for_each(|(_, v)| exercise(v));
                let _ = matconvnet_simplenn(&vars, Path::new("m.mat"));
            }
            Err(e) => {
                failed += 1;
                assert!(matches!(e, IoError::Format { .. }));
            }
        }
    }
    // Both outcomes occur: mutations are neither all fatal nor all ignored.
    assert!(ok > 100 && failed > 100, "ok {ok}, failed {failed}");
}

/// Out-of-memory finding of the `mat` fuzz target (`-malloc_limit_mb=1024`, see fuzz/README.md;
/// the input was crafted and run through the target, then reduced by hand): after the header,
/// `layers` = {struct(type = 'conv', filters = single array of dims [0, 1, 1, 2^31 - 1])}.
/// The empty filters leave Cout unchecked by any data, and with no biases
/// `matconvnet_simplenn` used to allocate a zero bias of 2^31 - 1 floats (8 GiB).
#[test]
fn empty_filters_are_rejected() {
    let mut bytes = header();
    bytes.extend_from_slice(
        b"\x0e\x00\x00\x00\x08\x01\x00\x00\x06\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\
          \x00\x00\x00\x00\x05\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\
          \x01\x00\x00\x00\x06\x00\x00\x00\x6c\x61\x79\x65\x72\x73\x00\x00\x0e\x00\x00\x00\
          \xd0\x00\x00\x00\x06\x00\x00\x00\x08\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\
          \x05\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\
          \x00\x00\x00\x00\x05\x00\x00\x00\x04\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\
          \x01\x00\x00\x00\x10\x00\x00\x00\x74\x79\x70\x65\x00\x00\x00\x00\x66\x69\x6c\x74\
          \x65\x72\x73\x00\x0e\x00\x00\x00\x38\x00\x00\x00\x06\x00\x00\x00\x08\x00\x00\x00\
          \x04\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\
          \x04\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x04\x00\x00\x00\
          \x63\x6f\x6e\x76\x00\x00\x00\x00\x0e\x00\x00\x00\x38\x00\x00\x00\x06\x00\x00\x00\
          \x08\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x10\x00\x00\x00\
          \x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff\xff\x7f\x01\x00\x00\x00\
          \x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00",
    );
    let vars = parse(&bytes).unwrap();
    // No `unwrap_err`: printing an accepted 8 GiB bias would take far more memory.
    let e = match matconvnet_simplenn(&vars, Path::new("m.mat")) {
        Ok(_) => panic!("empty filters were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("m.mat") && e.contains("[0, 1, 1, 2147483647]") && e.contains("no elements"),
        "{e}"
    );
}
