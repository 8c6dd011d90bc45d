//! The [`Dataset`] trait, an in-memory data set of 8-bit images and a
//! [`Subset`] view for splits and quick runs.
//!
//! Images are plain `Vec<f32>` in CHW layout (channels, height, width) with
//! values in `[0, 1]`; labels are class indices.

use std::sync::Arc;

use crate::error::{DataError, Result};

/// A labelled collection of equally shaped images.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// `true` when the data set holds no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of every image as `[channels, height, width]`.
    fn shape(&self) -> [usize; 3];

    /// Number of classes; every label is below it.
    fn num_classes(&self) -> usize;

    /// Image `i` (CHW, `f32` in `[0, 1]`) and its label.
    fn get(&self, i: usize) -> Result<(Vec<f32>, usize)>;

    /// Human-readable class names, indexed by label, when known.
    fn class_names(&self) -> Option<Vec<String>> {
        None
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn shape(&self) -> [usize; 3] {
        (**self).shape()
    }
    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }
    fn get(&self, i: usize) -> Result<(Vec<f32>, usize)> {
        (**self).get(i)
    }
    fn class_names(&self) -> Option<Vec<String>> {
        (**self).class_names()
    }
}

/// Images held in memory as bytes (one byte per pixel and channel, CHW),
/// converted to `f32` in `[0, 1]` on access.
#[derive(Debug, Clone)]
pub struct InMemoryDataset {
    images: Vec<u8>,
    labels: Vec<usize>,
    shape: [usize; 3],
    num_classes: usize,
    class_names: Option<Vec<String>>,
}

impl InMemoryDataset {
    /// Builds a data set from `labels.len()` images of `shape` stored back to
    /// back in `images`.
    ///
    /// Fails when the image buffer does not hold exactly one image per label,
    /// when the shape has a zero dimension, or when a label is not below
    /// `num_classes`.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<usize>,
        shape: [usize; 3],
        num_classes: usize,
    ) -> Result<Self> {
        let per_image = checked_volume(&shape)
            .ok_or_else(|| DataError::invalid(format!("image shape {shape:?} is not usable")))?;
        if per_image == 0 {
            return Err(DataError::invalid(format!(
                "image shape {shape:?} has a zero dimension"
            )));
        }
        let expected = per_image.checked_mul(labels.len()).ok_or_else(|| {
            DataError::invalid(format!(
                "{} images of shape {shape:?} overflow",
                labels.len()
            ))
        })?;
        if images.len() != expected {
            return Err(DataError::mismatch(format!(
                "{} labels need {expected} image bytes of shape {shape:?}, found {}",
                labels.len(),
                images.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= num_classes) {
            return Err(DataError::mismatch(format!(
                "label {l} of sample {i} is not below the number of classes ({num_classes})"
            )));
        }
        Ok(InMemoryDataset {
            images,
            labels,
            shape,
            num_classes,
            class_names: None,
        })
    }

    /// Attaches class names; there must be exactly one per class.
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.num_classes {
            return Err(DataError::mismatch(format!(
                "{} class names given for {} classes",
                names.len(),
                self.num_classes
            )));
        }
        self.class_names = Some(names);
        Ok(self)
    }

    /// Keeps only the first `n` samples (all of them when `n` is larger).
    pub fn truncate(&mut self, n: usize) {
        if n < self.labels.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.image_len());
        }
    }

    /// Number of values in one image (`C * H * W`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// All image bytes, image after image, each in CHW order.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The bytes of image `i`.
    pub fn image_bytes(&self, i: usize) -> Result<&[u8]> {
        if i >= self.labels.len() {
            return Err(DataError::IndexOutOfRange {
                index: i,
                len: self.labels.len(),
            });
        }
        let n = self.image_len();
        Ok(&self.images[i * n..(i + 1) * n])
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn get(&self, i: usize) -> Result<(Vec<f32>, usize)> {
        let bytes = self.image_bytes(i)?;
        let img = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
        Ok((img, self.labels[i]))
    }

    fn class_names(&self) -> Option<Vec<String>> {
        self.class_names.clone()
    }
}

/// A view of selected samples of another data set, in the given order.
#[derive(Clone)]
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl std::fmt::Debug for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subset")
            .field("len", &self.indices.len())
            .field("inner_len", &self.inner.len())
            .finish()
    }
}

impl Subset {
    /// The samples of `inner` at `indices`; fails if any index is out of range.
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Self> {
        let len = inner.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::IndexOutOfRange { index, len });
        }
        Ok(Subset { inner, indices })
    }

    /// The first `n` samples of `inner` (all of them when `n` is larger).
    pub fn take(inner: Arc<dyn Dataset>, n: usize) -> Self {
        let n = n.min(inner.len());
        Subset {
            inner,
            indices: (0..n).collect(),
        }
    }

    /// Splits `inner` into its first `n` samples and the rest (for instance a
    /// validation split). `n` is clamped to the length of `inner`.
    pub fn split_at(inner: Arc<dyn Dataset>, n: usize) -> (Self, Self) {
        let len = inner.len();
        let n = n.min(len);
        let head = Subset {
            inner: Arc::clone(&inner),
            indices: (0..n).collect(),
        };
        let tail = Subset {
            inner,
            indices: (n..len).collect(),
        };
        (head, tail)
    }

    /// Indices into the underlying data set.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn shape(&self) -> [usize; 3] {
        self.inner.shape()
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn get(&self, i: usize) -> Result<(Vec<f32>, usize)> {
        let &j = self.indices.get(i).ok_or(DataError::IndexOutOfRange {
            index: i,
            len: self.indices.len(),
        })?;
        self.inner.get(j)
    }

    fn class_names(&self) -> Option<Vec<String>> {
        self.inner.class_names()
    }
}

/// Product of the dimensions, or `None` on overflow.
pub(crate) fn checked_volume(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> InMemoryDataset {
        // Three 1x2x2 images, values 0..12, labels 0, 1, 2.
        let images: Vec<u8> = (0..12).collect();
        InMemoryDataset::new(images, vec![0, 1, 2], [1, 2, 2], 3).expect("valid data set")
    }

    #[test]
    fn get_scales_bytes() {
        let ds = tiny();
        assert_eq!(ds.len(), 3);
        let (img, label) = ds.get(1).expect("index 1 exists");
        assert_eq!(label, 1);
        assert_eq!(
            img,
            vec![4.0 / 255.0, 5.0 / 255.0, 6.0 / 255.0, 7.0 / 255.0]
        );
        assert!(matches!(
            ds.get(3),
            Err(DataError::IndexOutOfRange { index: 3, len: 3 })
        ));
    }

    #[test]
    fn rejects_inconsistent_parts() {
        assert!(matches!(
            InMemoryDataset::new(vec![0; 11], vec![0, 1, 2], [1, 2, 2], 3),
            Err(DataError::Mismatch { .. })
        ));
        assert!(matches!(
            InMemoryDataset::new(vec![0; 12], vec![0, 1, 3], [1, 2, 2], 3),
            Err(DataError::Mismatch { .. })
        ));
        assert!(matches!(
            InMemoryDataset::new(vec![], vec![], [0, 2, 2], 3),
            Err(DataError::InvalidArgument { .. })
        ));
        assert!(tiny().with_class_names(vec!["a".into()]).is_err());
    }

    #[test]
    fn truncate_and_counts() {
        let mut ds = tiny();
        assert_eq!(ds.class_counts(), vec![1, 1, 1]);
        ds.truncate(2);
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.images().len(), 8);
        ds.truncate(10);
        assert_eq!(ds.len(), 2);
    }

    #[test]
    fn subsets() {
        let ds: Arc<dyn Dataset> = Arc::new(tiny());
        let s = Subset::take(Arc::clone(&ds), 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(1).expect("exists").1, 1);
        assert!(s.get(2).is_err());
        assert_eq!(Subset::take(Arc::clone(&ds), 99).len(), 3);

        let picked = Subset::new(Arc::clone(&ds), vec![2, 0]).expect("valid indices");
        assert_eq!(picked.get(0).expect("exists").1, 2);
        assert!(Subset::new(Arc::clone(&ds), vec![3]).is_err());

        let (a, b) = Subset::split_at(ds, 1);
        assert_eq!((a.len(), b.len()), (1, 2));
        assert_eq!(b.get(0).expect("exists").1, 1);
    }
}
