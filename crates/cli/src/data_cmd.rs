//! `aics data`: make data sets.

use std::path::PathBuf;

use aics_detect::synth::{write_synth, FashionItems, SynthConfig, SHAPES};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data_spec::DEFAULT_FASHION_DIR;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Synthetic detection scenes with exact boxes (drawn shapes, then Fashion-MNIST items, on
    /// textured backgrounds), written as PNGs, COCO JSON (annotations.json) and VOC XML (voc/).
    SynthDetect(SynthArgs),
    /// Cut the photos of a detection data set into square tiles with their boxes (as aerial
    /// photos are cut for training): PNGs and COCO JSON (annotations.json), read back as
    /// synth:OUT.
    Tile(TileArgs),
}

#[derive(Args, Debug)]
struct TileArgs {
    /// The data set: coco:ANNOTATIONS.json:IMAGES or voc:XML_DIR:IMAGES.
    #[arg(long)]
    dataset: String,
    /// Output folder (images/ and annotations.json).
    #[arg(long)]
    out: PathBuf,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 400)]
    tile: u32,
    /// Pixels between tiles (at most --tile; the last tile of a row or column is flush with
    /// the edge).
    #[arg(long, default_value_t = 200)]
    stride: u32,
    /// Keep an object in a tile when at least this fraction of its box is inside.
    #[arg(long, default_value_t = 0.5)]
    min_visible: f64,
    /// Merge every class into one of this name (DeepForest labels some trees Alive and Dead,
    /// others Tree).
    #[arg(long)]
    one_class: Option<String>,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Classes: 1–5 are circle, square, triangle, ring, cross; 6–15 add Fashion-MNIST's items
    /// (t-shirt … ankle boot), read from --fashion-mnist.
    #[arg(long, default_value_t = 5)]
    classes: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image width and height.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Objects per image: at least.
    #[arg(long, default_value_t = 2)]
    min_objects: usize,
    /// Objects per image: at most.
    #[arg(long, default_value_t = 6)]
    max_objects: usize,
    /// Fashion-MNIST folder (the t10k files are used), for more than 5 classes.
    #[arg(long, default_value = DEFAULT_FASHION_DIR)]
    fashion_mnist: PathBuf,
}

pub fn run(a: DataArgs) -> Result<()> {
    match a.cmd {
        DataCmd::SynthDetect(s) => synth(s),
        DataCmd::Tile(t) => tile(t),
    }
}

fn tile(a: TileArgs) -> Result<()> {
    let (d, images) = crate::detect_train::parse_spec(&a.dataset)?;
    let (mut t, tiles) = aics_detect::data::tile_dataset(&d, a.tile, a.stride, a.min_visible)?;
    if let Some(name) = &a.one_class {
        t.categories = vec![aics_detect::data::Category {
            id: 1,
            name: name.clone(),
        }];
        t.annotations.iter_mut().for_each(|x| x.category_id = 1);
    }
    let dir = a.out.join("images");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut last: Option<(usize, image::RgbImage)> = None;
    for (ti, tl) in t.images.iter().zip(&tiles) {
        if last.as_ref().map(|l| l.0) != Some(tl.source) {
            let img = crate::detect_train::read_annotated(&images, &d.images[tl.source])?;
            last = Some((tl.source, img));
        }
        let Some((_, img)) = &last else { continue };
        let [x, y, w, h] = tl.rect;
        let crop = image::imageops::crop_imm(img, x, y, w, h).to_image();
        let path = dir.join(&ti.file_name);
        crop.save(&path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let ann = a.out.join("annotations.json");
    let tmp = a.out.join("annotations.json.tmp");
    aics_detect::data::write_coco(&t, &tmp)?;
    std::fs::rename(&tmp, &ann).with_context(|| format!("{}: cannot write", ann.display()))?;
    println!(
        "{} tiles of {} images, {} objects: {}",
        t.images.len(),
        d.images.len(),
        t.annotations.len(),
        ann.display()
    );
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    let fashion = if a.classes > SHAPES.len() {
        let dir = &a.fashion_mnist;
        let (pixels, dims) = aics_data::idx::read_idx_images(dir.join("t10k-images-idx3-ubyte.gz"))
            .with_context(|| format!("{}: Fashion-MNIST images for classes 6–15 (run `bash scripts/setup.sh`, or give --fashion-mnist DIR)", dir.display()))?;
        let labels = aics_data::idx::read_idx_labels(dir.join("t10k-labels-idx1-ubyte.gz"))
            .with_context(|| format!("{}: Fashion-MNIST labels", dir.display()))?;
        if dims[1] != 28 || dims[2] != 28 || labels.len() != dims[0] {
            bail!(
                "{}: expected 28×28 images with one label each, got {dims:?} and {} labels",
                dir.display(),
                labels.len()
            );
        }
        Some(FashionItems { pixels, labels })
    } else {
        None
    };
    let cfg = SynthConfig {
        images: a.images,
        classes: a.classes,
        width: a.size,
        height: a.size,
        min_objects: a.min_objects,
        max_objects: a.max_objects,
        seed: a.seed,
        ..SynthConfig::default()
    };
    let pb = ProgressBar::new(a.images as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} scenes {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let d = write_synth(&a.out, &cfg, fashion.as_ref(), |i| {
        pb.set_position(i as u64)
    })?;
    pb.finish_and_clear();
    println!(
        "{}: {} images, {} objects of {} classes → images/, annotations.json, voc/",
        a.out.display(),
        d.images.len(),
        d.annotations.len(),
        d.categories.len()
    );
    Ok(())
}
