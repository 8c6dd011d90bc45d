//! NumPy's `.npz` (a zip of `.npy` arrays, `np.savez`) and `.npy` files, read without Python:
//! the `.npy` header (format versions 1–3) gives the dtype (`descr`), the order and the shape;
//! the data that follows is converted to `f32` in row-major order. Little- and big-endian floats
//! and integers of 1–8 bytes, half floats and booleans are read; object arrays (pickles) are
//! refused. Every size is checked against the bytes present before anything is allocated.

use std::io::Read;
use std::path::Path;

use crate::{f16_to_f32, IoError, PthDtype, RawTensor, MAX_TENSOR_ELEMS};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The arrays of an `.npz` file, by name (the member's name without `.npy`), in archive order.
pub fn load_npz(path: &Path) -> Result<Vec<(String, RawTensor)>, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_npz_bytes(&bytes, path)
}

/// [`load_npz`] for the file's bytes already in memory; `path` names it in errors.
pub fn load_npz_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, RawTensor)>, IoError> {
    let fail = |msg: String| IoError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| fail(format!("not an .npz (zip) archive: {e}")))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| fail(format!("member {i}: {e}")))?;
        let name = f.name().to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        // a member claims its size; refuse one larger than any array we would accept
        let size = f.size();
        if size > (MAX_TENSOR_ELEMS as u64) * 8 + 65_536 {
            return Err(fail(format!("{name}: {size} bytes is too large")));
        }
        let mut data = Vec::with_capacity(size as usize);
        f.read_to_end(&mut data)
            .map_err(|e| fail(format!("{name}: {e}")))?;
        let t = parse_npy(&data).map_err(|m| fail(format!("{name}: {m}")))?;
        out.push((key.to_string(), t));
    }
    if out.is_empty() {
        return Err(fail("no .npy arrays in the archive".into()));
    }
    Ok(out)
}

/// One `.npy` file.
pub fn load_npy(path: &Path) -> Result<RawTensor, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_npy(&bytes).map_err(|msg| IoError::Format {
        path: path.to_path_buf(),
        msg,
    })
}

/// The `.npy` image (format 1.0, little-endian float32, C order) of `data` in `shape`.
/// Panics unless `data` holds the shape's elements.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy: data for {shape:?}"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The header's `'key': value` for a value up to the next top-level `,` or `}`.
fn header_value<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let at = h.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = h[at..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Parse one `.npy` image.
pub fn parse_npy(b: &[u8]) -> Result<RawTensor, String> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err("not a .npy array (bad magic)".into());
    }
    let major = b[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
        2 | 3 => {
            if b.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= b.len())
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(&b[start..end]).map_err(|_| "header is not text")?;
    let descr = header_value(header, "descr")
        .ok_or("header has no 'descr'")?
        .trim_matches(|c| c == '\'' || c == '"');
    let fortran = match header_value(header, "fortran_order") {
        Some("True") => true,
        Some("False") => false,
        _ => return Err("header has no fortran_order True/False".into()),
    };
    let shape_s = header_value(header, "shape").ok_or("header has no 'shape'")?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("shape {shape_s} is not a tuple"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("shape {shape_s}")))
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMS)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let (big, kind, width) = {
        let mut c = descr.chars();
        let order = c.next().ok_or("empty descr")?;
        let kind = c.next().ok_or("descr without a kind")?;
        let width: usize = c.as_str().parse().map_err(|_| format!("descr {descr}"))?;
        (order == '>', kind, width)
    };
    let dtype = match (kind, width) {
        ('f', 4) => PthDtype::F32,
        ('f', 8) => PthDtype::F64,
        ('f', 2) => PthDtype::F16,
        ('i', 8) => PthDtype::I64,
        ('i', 4) => PthDtype::I32,
        ('i', 2) => PthDtype::I16,
        ('i', 1) => PthDtype::I8,
        ('u', 1) => PthDtype::U8,
        ('b', 1) => PthDtype::Bool,
        _ => {
            return Err(format!(
                "dtype {descr} is not supported (object arrays are refused)"
            ))
        }
    };
    let body = &b[end..];
    let need = n.checked_mul(width).ok_or("size overflow")?;
    if body.len() < need {
        return Err(format!(
            "{} bytes of data for shape {shape:?} of {descr} ({need} needed)",
            body.len()
        ));
    }
    let mut data = Vec::with_capacity(n);
    for ch in body[..need].chunks_exact(width) {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(ch);
        if big {
            w[..width].reverse();
        }
        let v = match dtype {
            PthDtype::F32 => f32::from_le_bytes([w[0], w[1], w[2], w[3]]),
            PthDtype::F64 => f64::from_le_bytes(w) as f32,
            PthDtype::F16 => f16_to_f32(u16::from_le_bytes([w[0], w[1]])),
            PthDtype::I64 => i64::from_le_bytes(w) as f32,
            PthDtype::I32 => i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as f32,
            PthDtype::I16 => i16::from_le_bytes([w[0], w[1]]) as f32,
            PthDtype::I8 => w[0] as i8 as f32,
            PthDtype::U8 => w[0] as f32,
            PthDtype::Bool => (w[0] != 0) as u8 as f32,
            PthDtype::BF16 => unreachable!("no bf16 in .npy"),
        };
        data.push(v);
    }
    if fortran && shape.len() > 1 {
        // column-major: element (i0, …, ik) sits at Σ i_j · Π_{l<j} d_l
        let mut c = vec![0f32; n];
        let mut idx = vec![0usize; shape.len()];
        for v in c.iter_mut() {
            let mut off = 0;
            let mut stride = 1;
            for (j, &d) in shape.iter().enumerate() {
                off += idx[j] * stride;
                stride *= d;
            }
            *v = data[off];
            for j in (0..shape.len()).rev() {
                idx[j] += 1;
                if idx[j] < shape[j] {
                    break;
                }
                idx[j] = 0;
            }
        }
        data = c;
    }
    Ok(RawTensor { shape, dtype, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = MAGIC.to_vec();
        b.extend([1, 0]);
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn reads_dtypes_orders_and_shapes() {
        let body: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = parse_npy(&npy("<f4", false, "(2, 3)", &body)).unwrap();
        assert_eq!(
            (t.shape.clone(), t.data.clone()),
            (vec![2, 3], vec![1., 2., 3., 4., 5., 6.])
        );
        // the same bytes in column order are the transpose
        let t = parse_npy(&npy("<f4", true, "(2, 3)", &body)).unwrap();
        assert_eq!(t.data, vec![1., 3., 5., 2., 4., 6.]);
        let body: Vec<u8> = [7i64, -2].iter().flat_map(|v| v.to_be_bytes()).collect();
        let t = parse_npy(&npy(">i8", false, "(2,)", &body)).unwrap();
        assert_eq!(t.data, vec![7., -2.]);
        let t = parse_npy(&npy("<f8", false, "()", &1.5f64.to_le_bytes())).unwrap();
        assert_eq!((t.shape.len(), t.data.clone()), (0, vec![1.5]));
    }

    #[test]
    fn refuses_bad_arrays() {
        assert!(parse_npy(b"not numpy at all").is_err());
        assert!(parse_npy(&npy("|O", false, "(2,)", &[0; 16])).is_err());
        // shape larger than the data
        assert!(parse_npy(&npy("<f4", false, "(1000,)", &[0; 16])).is_err());
        assert!(parse_npy(&npy("<f4", false, "(99999999999, 99999999999)", &[])).is_err());
        let mut b = npy("<f4", false, "(1,)", &[0; 4]);
        b.truncate(12);
        assert!(parse_npy(&b).is_err());
    }
}

#[cfg(test)]
mod npy_write_tests {
    use super::*;

    #[test]
    fn written_arrays_read_back() {
        for shape in [vec![], vec![3], vec![2, 3, 4]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let b = npy_bytes(&shape, &data);
            assert_eq!((b.len() - 4 * n) % 64, 0, "header padded to 64 bytes");
            let t = parse_npy(&b).unwrap();
            assert_eq!(t.shape, shape);
            assert_eq!(t.data, data);
        }
    }
}
