//! `aics proposals`: R-CNN's region proposals by selective search — drawn on a photo, or their
//! recall of a data set's boxes against the number of proposals.

use std::path::PathBuf;
use std::time::Instant;

use aics_detect::selective_search::{
    fast_strategies, recall, selective_search, ColorSpace, RgbView, Similarity, Strategy,
};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::plot::{write_boxes, LabelledBox};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The paper's fast diversification: HSV and Lab, k = 50 and 100, two similarity sets.
    Fast,
    /// One strategy: HSV, k = 100, all four similarities.
    Single,
}

#[derive(Args, Debug)]
pub struct ProposalsArgs {
    /// A photo to draw proposals on.
    image: Option<PathBuf>,
    /// Where to draw them (PNG).
    #[arg(long, default_value = "proposals.png")]
    out: PathBuf,
    /// How many proposals to draw (best first).
    #[arg(long, default_value_t = 50)]
    top: usize,
    #[arg(long, value_enum, default_value = "fast")]
    mode: Mode,
    /// Instead of drawing: the recall of this data set's boxes (synth:DIR, voc:XML_DIR:IMAGES
    /// or coco:ANNOTATIONS.json:IMAGES) at IoU 0.5 and 0.7 against the number of proposals.
    #[arg(long)]
    dataset: Option<String>,
    /// With --dataset: use only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the ranking's random factor.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn strategies(m: Mode) -> Vec<Strategy> {
    match m {
        Mode::Fast => fast_strategies(),
        Mode::Single => vec![Strategy {
            space: ColorSpace::Hsv,
            k: 100.0,
            similarity: Similarity::ALL,
        }],
    }
}

pub fn run(a: ProposalsArgs) -> Result<()> {
    let st = strategies(a.mode);
    if let Some(spec) = &a.dataset {
        if a.image.is_some() {
            bail!("give a photo or --dataset, not both");
        }
        return recall_table(spec, a.limit, &st, a.seed);
    }
    if a.limit.is_some() {
        bail!("--limit applies to --dataset");
    }
    let Some(path) = &a.image else {
        bail!("name a photo to draw proposals on, or give --dataset for their recall");
    };
    let img = image::open(path)
        .with_context(|| format!("{}: cannot read the image", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let t = Instant::now();
    let view = RgbView {
        width: w as usize,
        height: h as usize,
        pixels: img.as_raw(),
    };
    let p = selective_search(&view, &st, a.seed)?;
    let secs = t.elapsed().as_secs_f64();
    let boxes: Vec<LabelledBox> = p
        .iter()
        .take(a.top)
        .enumerate()
        .map(|(i, b)| LabelledBox {
            bbox: *b,
            label: String::new(),
            color: i,
            points: Vec::new(),
        })
        .collect();
    write_boxes(&a.out, &img, &boxes)?;
    println!(
        "{}: {} proposals in {secs:.2} s; the first {} drawn → {}",
        path.display(),
        p.len(),
        a.top.min(p.len()),
        a.out.display()
    );
    Ok(())
}

fn recall_table(spec: &str, limit: Option<usize>, st: &[Strategy], seed: u64) -> Result<()> {
    let (gt, images) = crate::detect_train::parse_spec(spec)?;
    let n = limit.unwrap_or(gt.images.len()).min(gt.images.len());
    if n == 0 {
        bail!("{spec}: no images");
    }
    const COUNTS: [usize; 6] = [10, 50, 100, 500, 1000, 2000];
    let mut found = [[0usize; COUNTS.len() + 1]; 2];
    let (mut total, mut props_sum) = (0usize, 0usize);
    let t = Instant::now();
    for im in &gt.images[..n] {
        let path = crate::detect_train::image_path(&images, &im.file_name);
        let img = image::open(&path)
            .with_context(|| format!("{}: cannot read the image", path.display()))?
            .to_rgb8();
        let view = RgbView {
            width: img.width() as usize,
            height: img.height() as usize,
            pixels: img.as_raw(),
        };
        let p = selective_search(&view, st, seed)?;
        props_sum += p.len();
        let boxes: Vec<[f32; 4]> = gt
            .annotations
            .iter()
            .filter(|a| a.image_id == im.id && !a.iscrowd)
            .map(|a| {
                let b = a.bbox;
                [
                    b[0] as f32,
                    b[1] as f32,
                    (b[0] + b[2]) as f32,
                    (b[1] + b[3]) as f32,
                ]
            })
            .collect();
        total += boxes.len();
        for (k, iou) in [0.5f32, 0.7].into_iter().enumerate() {
            for (j, &c) in COUNTS.iter().chain([&usize::MAX]).enumerate() {
                found[k][j] += recall(&p, &boxes, c, iou).0;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{spec}: {n} images, {total} boxes, {:.0} proposals an image on average, {:.2} s an image",
        props_sum as f64 / n as f64,
        secs / n as f64
    );
    println!("proposals   recall@0.5  recall@0.7");
    for (j, c) in COUNTS
        .iter()
        .map(|c| c.to_string())
        .chain(["all".to_string()])
        .enumerate()
    {
        println!(
            "{c:>9}   {:>10.3}  {:>10.3}",
            found[0][j] as f64 / total.max(1) as f64,
            found[1][j] as f64 / total.max(1) as f64
        );
    }
    Ok(())
}
