//! Test support for the aics crates, kept out of their public APIs: the reader of the PyTorch
//! reference fixtures (`fixtures/ops/*.json`), helpers for the other JSON fixtures, and a global
//! allocator that counts live heap bytes for the memory tests and examples, and self-deleting
//! temporary folders.

pub mod alloc;
pub mod fixture;
pub mod json;
pub mod tempdir;

pub use tempdir::TempDir;
