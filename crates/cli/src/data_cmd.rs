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
    }
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
