//! Loaders for the binary versions of CIFAR-10 and CIFAR-100.
//!
//! Each file is a sequence of fixed-size records: the label byte(s) followed
//! by a 32x32 RGB image of 3072 bytes, stored channel after channel (1024 red,
//! 1024 green, 1024 blue bytes, each row-major), which is already CHW.
//!
//! * CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`,
//!   one label byte per record, usually in `cifar-10-batches-bin/`.
//! * CIFAR-100: `train.bin` and `test.bin`, two label bytes per record (coarse
//!   then fine; the fine label is used), usually in `cifar-100-binary/`.

use std::path::{Path, PathBuf};

use crate::dataset::InMemoryDataset;
use crate::error::{DataError, Result};

/// Shape of a CIFAR image: `[3, 32, 32]`.
pub const CIFAR_SHAPE: [usize; 3] = [3, 32, 32];
const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Class names of CIFAR-10, indexed by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Loads the training (the five `data_batch_*.bin`) or test (`test_batch.bin`)
/// split of CIFAR-10 from `dir` or from its `cifar-10-batches-bin`
/// subdirectory.
pub fn load_cifar10(dir: impl AsRef<Path>, train: bool) -> Result<InMemoryDataset> {
    let dir = resolve_dir(dir.as_ref(), "cifar-10-batches-bin")?;
    let files: Vec<PathBuf> = if train {
        (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect()
    } else {
        vec![dir.join("test_batch.bin")]
    };
    let (images, labels) = read_records(&files, 1, 0, 10)?;
    let names = read_names(&dir.join("batches.meta.txt"), 10)
        .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    InMemoryDataset::new(images, labels, CIFAR_SHAPE, 10)?.with_class_names(names)
}

/// Loads the training (`train.bin`) or test (`test.bin`) split of CIFAR-100
/// with its 100 fine labels from `dir` or from its `cifar-100-binary`
/// subdirectory. Class names are attached when `fine_label_names.txt` is
/// present.
pub fn load_cifar100(dir: impl AsRef<Path>, train: bool) -> Result<InMemoryDataset> {
    let dir = resolve_dir(dir.as_ref(), "cifar-100-binary")?;
    let file = dir.join(if train { "train.bin" } else { "test.bin" });
    let (images, labels) = read_records(&[file], 2, 1, 100)?;
    let ds = InMemoryDataset::new(images, labels, CIFAR_SHAPE, 100)?;
    match read_names(&dir.join("fine_label_names.txt"), 100) {
        Some(names) => ds.with_class_names(names),
        None => Ok(ds),
    }
}

fn resolve_dir(dir: &Path, subdir: &str) -> Result<PathBuf> {
    let nested = dir.join(subdir);
    if nested.is_dir() {
        Ok(nested)
    } else if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(DataError::not_found(dir, "not a directory"))
    }
}

/// Reads every record of `files`. Each record has `label_bytes` label bytes,
/// of which the one at `label_index` is used, then the image.
fn read_records(
    files: &[PathBuf],
    label_bytes: usize,
    label_index: usize,
    num_classes: usize,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let record = label_bytes + IMAGE_BYTES;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        if !path.is_file() {
            return Err(DataError::not_found(path, "file not found"));
        }
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        if bytes.is_empty() {
            return Err(DataError::format(path, "file is empty"));
        }
        if bytes.len() % record != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "length {} is not a multiple of the record size {record} \
                     ({label_bytes} label byte(s) + {IMAGE_BYTES} image bytes)",
                    bytes.len()
                ),
            ));
        }
        images.reserve(bytes.len() / record * IMAGE_BYTES);
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            let label = usize::from(rec[label_index]);
            if label >= num_classes {
                return Err(DataError::format(
                    path,
                    format!("record {i} has label {label}, expected below {num_classes}"),
                ));
            }
            labels.push(label);
            images.extend_from_slice(&rec[label_bytes..]);
        }
    }
    Ok((images, labels))
}

/// Reads one class name per non-empty line; `None` unless there are exactly
/// `expected` of them.
fn read_names(path: &Path, expected: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (names.len() == expected).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::test_util::TempDir;

    /// `n` records whose label bytes are `labels(i)` and whose image bytes are
    /// all equal to `i`.
    fn records(n: usize, labels: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend(labels(i));
            v.extend(std::iter::repeat_n(i as u8, IMAGE_BYTES));
        }
        v
    }

    #[test]
    fn cifar10_tiny_batches() {
        let root = TempDir::new("cifar10");
        let dir = root.path().join("cifar-10-batches-bin");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for b in 1..=5 {
            std::fs::write(
                dir.join(format!("data_batch_{b}.bin")),
                records(2, |i| vec![(i + b) as u8 % 10]),
            )
            .expect("write batch");
        }
        std::fs::write(dir.join("test_batch.bin"), records(3, |i| vec![i as u8])).expect("write");

        // Both the parent and the batches directory are accepted.
        let train = load_cifar10(root.path(), true).expect("train loads");
        assert_eq!(train.len(), 10);
        assert_eq!(train.shape(), [3, 32, 32]);
        assert_eq!(train.num_classes(), 10);
        assert_eq!(train.labels()[..4], [1, 2, 2, 3]);
        let test = load_cifar10(&dir, false).expect("test loads");
        assert_eq!(test.len(), 3);
        let (img, label) = test.get(2).expect("sample 2");
        assert_eq!(label, 2);
        assert_eq!(img.len(), 3072);
        assert!(img.iter().all(|&v| v == 2.0 / 255.0));
        assert_eq!(test.class_names().expect("names")[0], "airplane");
    }

    #[test]
    fn cifar10_errors() {
        let root = TempDir::new("cifar10_err");
        let dir = root.path();
        std::fs::write(dir.join("test_batch.bin"), vec![0u8; 3073 * 2 + 5]).expect("write");
        let err = load_cifar10(dir, false).expect_err("bad length");
        assert!(matches!(err, DataError::Format { .. }));
        assert!(
            err.to_string().contains("multiple of the record size 3073"),
            "{err}"
        );

        std::fs::write(dir.join("test_batch.bin"), records(1, |_| vec![10])).expect("write");
        assert!(matches!(
            load_cifar10(dir, false),
            Err(DataError::Format { .. })
        ));

        // Training batches are missing.
        assert!(matches!(
            load_cifar10(dir, true),
            Err(DataError::NotFound { .. })
        ));
        assert!(matches!(
            load_cifar10(dir.join("missing"), true),
            Err(DataError::NotFound { .. })
        ));
    }

    #[test]
    fn cifar100_uses_fine_labels() {
        let root = TempDir::new("cifar100");
        let dir = root.path().join("cifar-100-binary");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("train.bin"), records(4, |i| vec![3, 50 + i as u8]))
            .expect("write");
        let names: String = (0..100).map(|i| format!("class{i}\n")).collect();
        std::fs::write(dir.join("fine_label_names.txt"), names).expect("write");

        let train = load_cifar100(root.path(), true).expect("train loads");
        assert_eq!(train.len(), 4);
        assert_eq!(train.num_classes(), 100);
        assert_eq!(train.labels(), &[50, 51, 52, 53]);
        assert_eq!(train.class_names().expect("names")[52], "class52");

        std::fs::write(dir.join("test.bin"), vec![0u8; 3073]).expect("write");
        assert!(matches!(
            load_cifar100(&dir, false),
            Err(DataError::Format { .. })
        ));
    }
}
