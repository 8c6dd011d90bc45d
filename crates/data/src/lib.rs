//! Data loading for aics: readers for common image data sets, image
//! transforms and a reproducible, prefetching mini-batch loader.
//!
//! Images are plain `Vec<f32>` in CHW layout (channels, height, width) with
//! values in `[0, 1]` before normalisation; this crate depends on no other
//! aics crate.
//!
//! * [`Dataset`], [`InMemoryDataset`], [`Subset`]: the data set abstraction.
//! * [`load_mnist_dir`], [`load_fashion_mnist`], [`read_idx`]: IDX files
//!   (MNIST, Fashion-MNIST), plain or gzip-compressed.
//! * [`load_cifar10`], [`load_cifar100`]: CIFAR binary batches.
//! * [`ImageFolder`]: `root/<class>/<images>` folders of PNG or JPEG files.
//! * [`Transform`] and [`Normalize`], [`RandomCrop`],
//!   [`RandomHorizontalFlip`], [`Resize`], [`CenterCrop`], [`Compose`].
//! * [`DataLoader`], [`Batch`]: seeded shuffling and background batching.
//! * [`Rng`]: the seedable generator behind shuffles and augmentations.

pub mod cifar;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod rng;
pub mod transform;

#[cfg(test)]
mod test_util;

pub use cifar::{load_cifar10, load_cifar100, CIFAR10_CLASSES, CIFAR_SHAPE};
pub use dataset::{Dataset, InMemoryDataset, Subset};
pub use error::{DataError, Result};
pub use folder::{load_image, ColorMode, ImageFolder, IMAGE_EXTENSIONS};
pub use idx::{
    load_fashion_mnist, load_mnist_dir, read_idx, read_idx_images, read_idx_labels, IdxArray,
    FASHION_MNIST_CLASSES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
pub use loader::{Batch, DataLoader, Epoch, DEFAULT_PREFETCH};
pub use rng::Rng;
pub use transform::{
    hflip, CenterCrop, Compose, Normalize, RandomCrop, RandomHorizontalFlip, Resize, Transform,
};
