//! A data set read from a folder of images laid out as
//! `root/<class name>/<image files>`.
//!
//! Classes are the subdirectories of `root` sorted by name, and their index in
//! that order is the label (the same convention as torchvision's
//! `ImageFolder`). Image files (PNG and JPEG, found recursively inside each
//! class directory, in sorted order) are decoded lazily on access, converted
//! to RGB or grayscale, resized to the fixed size given by the caller so that
//! every sample has the same shape, and returned as CHW `f32` in `[0, 1]`.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::ImageReader;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// File extensions (lowercase) recognised as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Colour channels of the decoded images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// Three channels: red, green, blue.
    #[default]
    Rgb,
    /// One channel: luminance.
    Gray,
}

impl ColorMode {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Gray => 1,
        }
    }
}

/// Images in class subdirectories, decoded on access.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    height: usize,
    width: usize,
    color: ColorMode,
}

impl ImageFolder {
    /// Scans `root` for class directories and their image files. Images will
    /// be resized to `height x width` and converted to `color`.
    ///
    /// Fails when `root` is not a directory, holds no class directory, or a
    /// class directory holds no image, or when the size has a zero dimension.
    pub fn new(
        root: impl AsRef<Path>,
        height: usize,
        width: usize,
        color: ColorMode,
    ) -> Result<Self> {
        let root = root.as_ref();
        if height == 0 || width == 0 || u32::try_from(height.max(width)).is_err() {
            return Err(DataError::invalid(format!(
                "image size {height}x{width} is not usable"
            )));
        }
        if !root.is_dir() {
            return Err(DataError::not_found(root, "not a directory"));
        }

        let mut class_dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in read_dir_sorted(root)? {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !entry.is_dir() {
                continue;
            }
            let name = name.to_string();
            class_dirs.push((name, entry));
        }
        if class_dirs.is_empty() {
            return Err(DataError::empty(format!(
                "{} has no class subdirectories",
                root.display()
            )));
        }

        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        for (label, (name, dir)) in class_dirs.into_iter().enumerate() {
            let before = samples.len();
            collect_images(&dir, label, &mut samples)?;
            if samples.len() == before {
                return Err(DataError::empty(format!(
                    "class directory {} holds no image ({})",
                    dir.display(),
                    IMAGE_EXTENSIONS.join(", ")
                )));
            }
            classes.push(name);
        }

        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            height,
            width,
            color,
        })
    }

    /// The directory the data set was read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every sample's file and label, in data set order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// Colour mode of the returned images.
    pub fn color(&self) -> ColorMode {
        self.color
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn shape(&self) -> [usize; 3] {
        [self.color.channels(), self.height, self.width]
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn get(&self, i: usize) -> Result<(Vec<f32>, usize)> {
        let (path, label) = self.samples.get(i).ok_or(DataError::IndexOutOfRange {
            index: i,
            len: self.samples.len(),
        })?;
        let img = load_image(path, self.height, self.width, self.color)?;
        Ok((img, *label))
    }

    fn class_names(&self) -> Option<Vec<String>> {
        Some(self.classes.clone())
    }
}

/// Decodes the image at `path`, converts it to `color`, resizes it to
/// `height x width` (bilinear) and returns it as CHW `f32` in `[0, 1]`.
pub fn load_image(path: &Path, height: usize, width: usize, color: ColorMode) -> Result<Vec<f32>> {
    let image_err = |msg: String| DataError::Image {
        path: path.to_path_buf(),
        msg,
    };
    let (h, w) = match (u32::try_from(height), u32::try_from(width)) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => (h, w),
        _ => {
            return Err(DataError::invalid(format!(
                "image size {height}x{width} is not usable"
            )))
        }
    };
    let decoded = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| image_err(e.to_string()))?;

    let plane = height * width;
    match color {
        ColorMode::Gray => {
            let mut gray = decoded.to_luma8();
            if gray.dimensions() != (w, h) {
                gray = image::imageops::resize(&gray, w, h, FilterType::Triangle);
            }
            Ok(gray
                .as_raw()
                .iter()
                .map(|&b| f32::from(b) / 255.0)
                .collect())
        }
        ColorMode::Rgb => {
            let mut rgb = decoded.to_rgb8();
            if rgb.dimensions() != (w, h) {
                rgb = image::imageops::resize(&rgb, w, h, FilterType::Triangle);
            }
            // Interleaved HWC bytes to planar CHW floats.
            let mut out = vec![0.0; 3 * plane];
            for (p, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                for (c, &v) in px.iter().enumerate() {
                    out[c * plane + p] = f32::from(v) / 255.0;
                }
            }
            Ok(out)
        }
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        paths.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Appends the image files under `dir` (recursively, sorted, hidden entries
/// skipped; symbolic links to directories are not followed) with `label`.
fn collect_images(dir: &Path, label: usize, out: &mut Vec<(PathBuf, usize)>) -> Result<()> {
    for path in read_dir_sorted(dir)? {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if meta.is_dir() {
            collect_images(&path, label, out)?;
        } else if has_image_extension(&path) && path.is_file() {
            out.push((path, label));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use image::{Rgb, RgbImage};

    fn write_png(path: &Path, w: u32, h: u32, color: [u8; 3]) {
        RgbImage::from_pixel(w, h, Rgb(color))
            .save(path)
            .expect("write png");
    }

    fn two_class_folder(tag: &str) -> TempDir {
        let dir = TempDir::new(tag);
        let cats = dir.path().join("cats");
        let dogs = dir.path().join("dogs");
        std::fs::create_dir_all(&cats).expect("mkdir");
        std::fs::create_dir_all(dogs.join("nested")).expect("mkdir");
        write_png(&cats.join("b.png"), 4, 3, [255, 0, 0]);
        write_png(&cats.join("a.PNG"), 8, 8, [0, 255, 0]);
        write_png(&dogs.join("nested").join("c.png"), 2, 2, [0, 0, 255]);
        std::fs::write(cats.join("notes.txt"), "not an image").expect("write");
        std::fs::write(dogs.join(".hidden.png"), "skipped").expect("write");
        dir
    }

    #[test]
    fn two_classes_of_pngs() {
        let dir = two_class_folder("folder_two");
        let ds = ImageFolder::new(dir.path(), 4, 5, ColorMode::Rgb).expect("folder scans");
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.num_classes(), 2);
        assert_eq!(ds.shape(), [3, 4, 5]);
        assert_eq!(ds.class_names().expect("names"), vec!["cats", "dogs"]);

        // Files are sorted within a class: a.PNG (green) then b.png (red).
        let (img, label) = ds.get(0).expect("decodes");
        assert_eq!(label, 0);
        assert_eq!(img.len(), 3 * 4 * 5);
        assert!(img[..20].iter().all(|&v| v == 0.0));
        assert!(img[20..40].iter().all(|&v| v == 1.0));
        assert!(img[40..].iter().all(|&v| v == 0.0));

        let (img, label) = ds.get(1).expect("decodes");
        assert_eq!(label, 0);
        assert!(img[..20].iter().all(|&v| v == 1.0));

        let (img, label) = ds.get(2).expect("decodes");
        assert_eq!(label, 1);
        assert!(img[40..].iter().all(|&v| v == 1.0));
        assert!(ds.get(3).is_err());
    }

    #[test]
    fn grayscale_has_one_channel() {
        let dir = two_class_folder("folder_gray");
        let ds = ImageFolder::new(dir.path(), 2, 2, ColorMode::Gray).expect("folder scans");
        assert_eq!(ds.shape(), [1, 2, 2]);
        let (img, _) = ds.get(1).expect("decodes");
        assert_eq!(img.len(), 4);
        // Pure red has a luminance of about 0.21-0.30.
        assert!(img.iter().all(|&v| v > 0.15 && v < 0.35), "{img:?}");
    }

    #[test]
    fn corrupt_image_is_an_error_not_a_panic() {
        let dir = TempDir::new("folder_corrupt");
        let class = dir.path().join("only");
        std::fs::create_dir_all(&class).expect("mkdir");
        std::fs::write(class.join("broken.png"), b"\x89PNG\r\n\x1a\nthen garbage").expect("write");
        let ds = ImageFolder::new(dir.path(), 4, 4, ColorMode::Rgb).expect("folder scans");
        assert!(matches!(ds.get(0), Err(DataError::Image { .. })));
    }

    #[test]
    fn bad_layouts_are_errors() {
        let dir = TempDir::new("folder_bad");
        assert!(matches!(
            ImageFolder::new(dir.path(), 4, 4, ColorMode::Rgb),
            Err(DataError::Empty { .. })
        ));
        std::fs::create_dir_all(dir.path().join("empty_class")).expect("mkdir");
        assert!(matches!(
            ImageFolder::new(dir.path(), 4, 4, ColorMode::Rgb),
            Err(DataError::Empty { .. })
        ));
        assert!(matches!(
            ImageFolder::new(dir.path().join("missing"), 4, 4, ColorMode::Rgb),
            Err(DataError::NotFound { .. })
        ));
        assert!(matches!(
            ImageFolder::new(dir.path(), 0, 4, ColorMode::Rgb),
            Err(DataError::InvalidArgument { .. })
        ));
    }
}
