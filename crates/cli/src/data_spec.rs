//! `--dataset` specs: `fashion-mnist[:DIR]`, `mnist:DIR`, `cifar10:DIR`, `cifar100:DIR`,
//! `folder:DIR` (with `DIR/train/<class>/…` and `DIR/test/<class>/…`), and the normalisation
//! each data set is trained with.

use std::path::PathBuf;
use std::sync::Arc;

use aics_data::{ColorMode, Dataset, ImageFolder, InMemoryDataset};
use anyhow::{bail, Context, Result};

/// Where the set-up script puts Fashion-MNIST.
pub const DEFAULT_FASHION_DIR: &str = ".cache/fashion-mnist";

pub struct DataSpec {
    pub name: String,
    pub train: Arc<dyn Dataset>,
    pub test: Arc<dyn Dataset>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub classes: Vec<String>,
}

impl DataSpec {
    pub fn in_shape(&self) -> [usize; 3] {
        self.train.shape()
    }
}

fn class_names(ds: &dyn Dataset) -> Vec<String> {
    ds.class_names()
        .unwrap_or_else(|| (0..ds.num_classes()).map(|i| i.to_string()).collect())
}

fn in_memory(
    name: &str,
    train: InMemoryDataset,
    test: InMemoryDataset,
    mean: Vec<f32>,
    std: Vec<f32>,
) -> DataSpec {
    let classes = class_names(&train);
    DataSpec {
        name: name.into(),
        train: Arc::new(train),
        test: Arc::new(test),
        mean,
        std,
        classes,
    }
}

/// Parse and load a data set spec. `image_size` applies to folder data sets.
pub fn load(spec: &str, image_size: (usize, usize), gray: bool) -> Result<DataSpec> {
    let (kind, dir) = match spec.split_once(':') {
        Some((k, d)) => (k, Some(PathBuf::from(d))),
        None => (spec, None),
    };
    let need_dir = |what: &str| -> Result<PathBuf> {
        dir.clone().with_context(|| {
            format!("dataset `{kind}` needs a directory: --dataset {kind}:DIR ({what})")
        })
    };
    match kind {
        "fashion-mnist" => {
            let d = dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_FASHION_DIR));
            if dir.is_none() && !d.exists() {
                bail!("Fashion-MNIST not found in {}: run `bash scripts/setup.sh` first, or pass --dataset fashion-mnist:DIR", d.display());
            }
            let train = aics_data::load_fashion_mnist(&d, true)?;
            let test = aics_data::load_fashion_mnist(&d, false)?;
            Ok(in_memory("fashion-mnist", train, test, vec![0.2860], vec![0.3530]))
        }
        "mnist" => {
            let d = need_dir("the folder with train-images-idx3-ubyte[.gz] and friends")?;
            Ok(in_memory("mnist", aics_data::load_mnist_dir(&d, true)?, aics_data::load_mnist_dir(&d, false)?, vec![0.1307], vec![0.3081]))
        }
        "cifar10" => {
            let d = need_dir("the cifar-10-batches-bin folder")?;
            let (m, s) = (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]);
            Ok(in_memory("cifar10", aics_data::load_cifar10(&d, true)?, aics_data::load_cifar10(&d, false)?, m, s))
        }
        "cifar100" => {
            let d = need_dir("the cifar-100-binary folder")?;
            let (m, s) = (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]);
            Ok(in_memory("cifar100", aics_data::load_cifar100(&d, true)?, aics_data::load_cifar100(&d, false)?, m, s))
        }
        "folder" => {
            let d = need_dir("a folder with train/ and test/ subfolders of class folders")?;
            let mode = if gray { ColorMode::Gray } else { ColorMode::Rgb };
            let test_dir = ["test", "val"].iter().map(|s| d.join(s)).find(|p| p.is_dir());
            let Some(test_dir) = test_dir else { bail!("{}: expected subfolders train/ and test/ (or val/)", d.display()) };
            let train = ImageFolder::new(d.join("train"), image_size.0, image_size.1, mode)?;
            let test = ImageFolder::new(&test_dir, image_size.0, image_size.1, mode)?;
            let c = if gray { 1 } else { 3 };
            let classes = class_names(&train);
            Ok(DataSpec { name: format!("folder:{}", d.display()), train: Arc::new(train), test: Arc::new(test), mean: vec![0.5; c], std: vec![0.5; c], classes })
        }
        other => bail!("unknown dataset `{other}` (expected fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR or folder:DIR)"),
    }
}

/// Parse `HxW` or `N`.
pub fn parse_hw(s: &str) -> Result<(usize, usize), String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}` is not a size (expected H x W, e.g. 32x32)"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

/// Parse `CxHxW`.
pub fn parse_chw(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a shape (expected C x H x W, e.g. 1x28x28)"))?;
    match v.as_slice() {
        [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
        _ => Err(format!(
            "`{s}` is not a shape (expected C x H x W, e.g. 1x28x28)"
        )),
    }
}

/// Parse `--hidden 128,64` (absent: no hidden sizes, the model's defaults).
pub fn parse_hidden(s: Option<&str>) -> Result<Vec<usize>> {
    let Some(h) = s else { return Ok(vec![]) };
    h.split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--hidden `{h}`: expected sizes like 128,64"))
}
