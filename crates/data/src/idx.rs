//! Reader for IDX files, the format of MNIST and Fashion-MNIST, plain or
//! gzip-compressed, and loaders for directories holding such a data set.
//!
//! An IDX file starts with a magic number `0x0000TTNN` (`TT` the element type,
//! `08` for unsigned bytes; `NN` the number of dimensions), then one big-endian
//! `u32` per dimension, then the elements in row-major order. Image files have
//! magic `0x00000803` (`[n, rows, cols]`) and label files `0x00000801` (`[n]`).
//! Compression is detected from the gzip magic bytes, not from the file name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::dataset::{checked_volume, InMemoryDataset};
use crate::error::{DataError, Result};

/// Magic number of an IDX file of unsigned-byte images `[n, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels `[n]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

const IDX_TYPE_U8: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Class names of Fashion-MNIST, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with any number of dimensions.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    read_idx_checked(path.as_ref(), None)
}

/// Reads an IDX image file (magic `0x00000803`): returns the pixels and
/// `[n, rows, cols]`.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(Vec<u8>, [usize; 3])> {
    let arr = read_idx_checked(path.as_ref(), Some(IDX_IMAGES_MAGIC))?;
    Ok((arr.data, [arr.dims[0], arr.dims[1], arr.dims[2]]))
}

/// Reads an IDX label file (magic `0x00000801`).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    Ok(read_idx_checked(path.as_ref(), Some(IDX_LABELS_MAGIC))?.data)
}

/// Loads the training (`train = true`, files `train-*`) or test (`t10k-*`)
/// split of an MNIST-format data set from `dir`.
///
/// The directory must hold `{train,t10k}-images-idx3-ubyte` and
/// `{train,t10k}-labels-idx1-ubyte`, each optionally gzip-compressed with a
/// `.gz` suffix (the variant with `.idx3-ubyte` is accepted too). Pixels are
/// scaled to `[0, 1]` on access and images have shape `[1, rows, cols]`. The
/// number of classes is 10, or more if a label is 10 or above.
pub fn load_mnist_dir(dir: impl AsRef<Path>, train: bool) -> Result<InMemoryDataset> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(DataError::not_found(dir, "not a directory"));
    }
    let prefix = if train { "train" } else { "t10k" };
    let images_path = find_split_file(dir, prefix, "images", "idx3")?;
    let labels_path = find_split_file(dir, prefix, "labels", "idx1")?;

    let (pixels, [n, rows, cols]) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if n != labels.len() {
        return Err(DataError::mismatch(format!(
            "{} holds {n} images but {} holds {} labels",
            images_path.display(),
            labels_path.display(),
            labels.len()
        )));
    }
    if n == 0 {
        return Err(DataError::empty(format!(
            "{} holds no images",
            images_path.display()
        )));
    }
    let num_classes = labels
        .iter()
        .map(|&l| usize::from(l) + 1)
        .max()
        .unwrap_or(0)
        .max(10);
    let labels = labels.into_iter().map(usize::from).collect();
    InMemoryDataset::new(pixels, labels, [1, rows, cols], num_classes)
}

/// Like [`load_mnist_dir`], with the Fashion-MNIST class names attached.
pub fn load_fashion_mnist(dir: impl AsRef<Path>, train: bool) -> Result<InMemoryDataset> {
    let ds = load_mnist_dir(dir, train)?;
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    ds.with_class_names(names)
}

fn find_split_file(dir: &Path, prefix: &str, what: &str, kind: &str) -> Result<PathBuf> {
    let stems = [
        format!("{prefix}-{what}-{kind}-ubyte"),
        format!("{prefix}-{what}.{kind}-ubyte"),
    ];
    for stem in &stems {
        for name in [stem.clone(), format!("{stem}.gz")] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DataError::not_found(
        dir,
        format!("no {}[.gz] in this directory", stems[0]),
    ))
}

/// Opens a file and returns a reader of its content, decompressing gzip data.
/// The flag tells whether the data is compressed.
fn open_maybe_gzip(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok((Box::new(GzDecoder::new(reader)), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// Reads up to `n` bytes, fewer only at end of data.
fn read_up_to(reader: &mut dyn Read, n: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_idx_checked(path: &Path, expected_magic: Option<u32>) -> Result<IdxArray> {
    let (mut reader, gz) = open_maybe_gzip(path)?;
    let read_err = |e: std::io::Error| {
        if gz {
            DataError::format(path, format!("corrupt gzip data: {e}"))
        } else {
            DataError::io(path, e)
        }
    };
    let what = if gz { " after decompression" } else { "" };

    let magic_bytes = read_up_to(&mut reader, 4).map_err(read_err)?;
    if magic_bytes.len() < 4 {
        return Err(DataError::format(
            path,
            format!(
                "too short for an IDX file: expected at least 4 bytes{what}, found {}",
                magic_bytes.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([
        magic_bytes[0],
        magic_bytes[1],
        magic_bytes[2],
        magic_bytes[3],
    ]);
    if magic_bytes[0] != 0 || magic_bytes[1] != 0 || magic_bytes[3] == 0 {
        return Err(DataError::format(
            path,
            format!("bad magic number 0x{magic:08x}: not an IDX file"),
        ));
    }
    if let Some(expected) = expected_magic {
        if magic != expected {
            return Err(DataError::format(
                path,
                format!("bad magic number 0x{magic:08x}, expected 0x{expected:08x}"),
            ));
        }
    }
    if magic_bytes[2] != IDX_TYPE_U8 {
        return Err(DataError::format(
            path,
            format!(
                "unsupported IDX element type 0x{:02x} (only unsigned bytes, 0x08, are supported)",
                magic_bytes[2]
            ),
        ));
    }

    let ndim = usize::from(magic_bytes[3]);
    let header_len = 4 + 4 * ndim;
    let dim_bytes = read_up_to(&mut reader, 4 * ndim as u64).map_err(read_err)?;
    if dim_bytes.len() < 4 * ndim {
        return Err(DataError::format(
            path,
            format!(
                "truncated header: expected {header_len} bytes{what}, found {}",
                4 + dim_bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let too_large = || DataError::format(path, format!("dimensions {dims:?} are too large"));
    let data_len = checked_volume(&dims).ok_or_else(too_large)?;
    let total = data_len.checked_add(header_len + 1).ok_or_else(too_large)? - 1;

    // Read one byte more than needed to detect trailing data without trusting
    // the header for an allocation size.
    let data = read_up_to(&mut reader, data_len as u64 + 1).map_err(read_err)?;
    if data.len() < data_len {
        return Err(DataError::format(
            path,
            format!(
                "truncated: expected {total} bytes{what}, found {}",
                header_len + data.len()
            ),
        ));
    }
    if data.len() > data_len {
        return Err(DataError::format(
            path,
            format!("expected {total} bytes{what} for dimensions {dims:?}, found more"),
        ));
    }
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::test_util::TempDir;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("write to memory");
        enc.finish().expect("finish gzip")
    }

    /// Writes a split of `n` images of 2x3 pixels with labels `i % 3`.
    fn write_split(dir: &Path, prefix: &str, n: u32, compress: bool) {
        let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        let images = idx_bytes(IDX_IMAGES_MAGIC, &[n, 2, 3], &pixels);
        let labels = idx_bytes(IDX_LABELS_MAGIC, &[n], &labels);
        let (images, labels, ext) = if compress {
            (gzip(&images), gzip(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images)
            .expect("write images");
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels)
            .expect("write labels");
    }

    #[test]
    fn reads_plain_and_gzip_splits() {
        let dir = TempDir::new("idx_splits");
        write_split(dir.path(), "train", 5, false);
        write_split(dir.path(), "t10k", 4, true);

        let train = load_mnist_dir(dir.path(), true).expect("plain split loads");
        assert_eq!(train.len(), 5);
        assert_eq!(train.shape(), [1, 2, 3]);
        assert_eq!(train.num_classes(), 10);
        let (img, label) = train.get(1).expect("sample 1");
        assert_eq!(label, 1);
        let expected: Vec<f32> = (6..12).map(|i| (i * 7 % 256) as f32 / 255.0).collect();
        assert_eq!(img, expected);

        let test = load_mnist_dir(dir.path(), false).expect("gzip split loads");
        assert_eq!(test.len(), 4);
        assert_eq!(test.labels(), &[0, 1, 2, 0]);
        assert!(test
            .get(3)
            .expect("sample 3")
            .0
            .iter()
            .all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = TempDir::new("idx_gzip_name");
        let p = dir.path().join("labels-without-suffix");
        std::fs::write(&p, gzip(&idx_bytes(IDX_LABELS_MAGIC, &[3], &[2, 1, 0]))).expect("write");
        assert_eq!(read_idx_labels(&p).expect("gzip labels"), vec![2, 1, 0]);
    }

    #[test]
    fn generic_reader_reports_dims() {
        let dir = TempDir::new("idx_generic");
        let p = dir.path().join("a.idx");
        std::fs::write(&p, idx_bytes(0x0000_0802, &[2, 2], &[1, 2, 3, 4])).expect("write");
        let arr = read_idx(&p).expect("valid file");
        assert_eq!(arr.dims, vec![2, 2]);
        assert_eq!(arr.data, vec![1, 2, 3, 4]);
    }

    #[test]
    fn truncated_file_is_a_format_error() {
        let dir = TempDir::new("idx_truncated");
        let p = dir.path().join("train-images-idx3-ubyte");
        let mut bytes = idx_bytes(IDX_IMAGES_MAGIC, &[60000, 28, 28], &[]);
        bytes.resize(1000, 0);
        std::fs::write(&p, &bytes).expect("write");
        let err = read_idx_images(&p).expect_err("truncated");
        match &err {
            DataError::Format { msg, .. } => {
                assert!(msg.contains("expected 47040016 bytes, found 1000"), "{msg}")
            }
            other => panic!("unexpected error {other:?}"),
        }

        // Truncated inside the header, and compressed and truncated.
        std::fs::write(&p, &bytes[..10]).expect("write");
        assert!(matches!(read_idx_images(&p), Err(DataError::Format { .. })));
        std::fs::write(&p, gzip(&bytes)).expect("write");
        assert!(matches!(read_idx_images(&p), Err(DataError::Format { .. })));
        std::fs::write(&p, []).expect("write");
        assert!(matches!(read_idx_images(&p), Err(DataError::Format { .. })));
    }

    #[test]
    fn trailing_data_is_a_format_error() {
        let dir = TempDir::new("idx_trailing");
        let p = dir.path().join("labels");
        std::fs::write(&p, idx_bytes(IDX_LABELS_MAGIC, &[2], &[1, 2, 3])).expect("write");
        assert!(matches!(read_idx_labels(&p), Err(DataError::Format { .. })));
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let dir = TempDir::new("idx_magic");
        let p = dir.path().join("f");
        std::fs::write(&p, idx_bytes(IDX_LABELS_MAGIC, &[2], &[1, 2])).expect("write");
        let err = read_idx_images(&p).expect_err("labels are not images");
        assert!(err.to_string().contains("0x00000801"), "{err}");

        std::fs::write(&p, b"PK\x03\x04 definitely not idx").expect("write");
        assert!(matches!(read_idx(&p), Err(DataError::Format { .. })));

        // Element type other than unsigned byte (0x0D is f32).
        std::fs::write(&p, idx_bytes(0x0000_0D01, &[1], &[0, 0, 0, 0])).expect("write");
        assert!(matches!(read_idx(&p), Err(DataError::Format { .. })));
    }

    #[test]
    fn corrupt_gzip_is_a_format_error() {
        let dir = TempDir::new("idx_corrupt_gz");
        let p = dir.path().join("f.gz");
        let mut bytes = gzip(&idx_bytes(IDX_LABELS_MAGIC, &[100], &[7; 100]));
        let mid = bytes.len() / 2;
        for b in &mut bytes[10..mid] {
            *b ^= 0x5a;
        }
        std::fs::write(&p, &bytes).expect("write");
        assert!(matches!(read_idx_labels(&p), Err(DataError::Format { .. })));

        // A gzip stream cut short.
        let whole = gzip(&idx_bytes(IDX_LABELS_MAGIC, &[100], &[7; 100]));
        std::fs::write(&p, &whole[..whole.len() / 2]).expect("write");
        assert!(matches!(read_idx_labels(&p), Err(DataError::Format { .. })));
    }

    #[test]
    fn count_mismatch_and_missing_files() {
        let dir = TempDir::new("idx_mismatch");
        write_split(dir.path(), "train", 5, false);
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx_bytes(IDX_LABELS_MAGIC, &[4], &[0, 1, 2, 3]),
        )
        .expect("write");
        assert!(matches!(
            load_mnist_dir(dir.path(), true),
            Err(DataError::Mismatch { .. })
        ));
        assert!(matches!(
            load_mnist_dir(dir.path(), false),
            Err(DataError::NotFound { .. })
        ));
        assert!(matches!(
            load_mnist_dir(dir.path().join("nope"), true),
            Err(DataError::NotFound { .. })
        ));
    }

    #[test]
    fn real_fashion_mnist_if_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fashion-mnist");
        if !dir.is_dir() {
            println!(
                "skipping: {} not found (run scripts/setup.sh)",
                dir.display()
            );
            return;
        }
        let train = load_fashion_mnist(&dir, true).expect("train split loads");
        let test = load_fashion_mnist(&dir, false).expect("test split loads");
        assert_eq!(train.len(), 60_000);
        assert_eq!(test.len(), 10_000);
        assert_eq!(train.shape(), [1, 28, 28]);
        assert_eq!(test.shape(), [1, 28, 28]);
        assert_eq!(train.num_classes(), 10);
        assert_eq!(test.num_classes(), 10);
        // Fashion-MNIST is balanced: 6000 / 1000 images per class.
        assert_eq!(train.class_counts(), vec![6000; 10]);
        assert_eq!(test.class_counts(), vec![1000; 10]);
        assert_eq!(
            train.class_names().expect("names attached")[9],
            "Ankle boot"
        );
    }
}
