//! `aics anchors`: the chapter's RPN figure — the 9 anchors (3 sizes × 3 aspect ratios) at one
//! location of a photo, and with a trained Faster R-CNN its region proposals.

use std::path::PathBuf;

use aics_detect::AnchorGenerator;
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::plot::{write_boxes, LabelledBox};

#[derive(Args, Debug)]
pub struct AnchorsArgs {
    /// The photo (default: darknet's dog photo, fetched by set-up).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Where to draw them (PNG).
    #[arg(long, default_value = "anchors.png")]
    out: PathBuf,
    /// A Faster R-CNN checkpoint of `aics detect-train --model faster_rcnn`: its own anchors,
    /// and its top proposals drawn too. Without it, the paper's anchors (128, 256, 512 pixels
    /// at a 600-pixel short side; ratios 1:2, 1:1, 2:1).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// How many proposals to draw (best first).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// The location the anchors are centred on, `X,Y` in the photo's pixels (default: its
    /// centre).
    #[arg(long)]
    at: Option<String>,
}

pub fn run(a: AnchorsArgs) -> Result<()> {
    let path = a
        .image
        .clone()
        .unwrap_or_else(|| PathBuf::from(".cache/darknet/data/dog.jpg"));
    let img = image::open(&path)
        .with_context(|| format!("{}: cannot read the image", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let (cx, cy) = match &a.at {
        None => (w as f32 / 2.0, h as f32 / 2.0),
        Some(s) => {
            let v: Vec<f32> = s.split(',').filter_map(|t| t.trim().parse().ok()).collect();
            match v[..] {
                [x, y] if x >= 0.0 && y >= 0.0 && x < w as f32 && y < h as f32 => (x, y),
                _ => bail!("--at {s}: expected X,Y inside the {w}×{h} photo"),
            }
        }
    };
    let mut boxes = Vec::new();
    let (base, proposals) = match &a.weights {
        Some(ck) => {
            let m = crate::detect_train::load_trained(ck, "faster_rcnn", 0.5, 0.5)?;
            match m.rpn(&img)? {
                Some(r) => r,
                None => bail!("{}: not a Faster R-CNN checkpoint", ck.display()),
            }
        }
        None => {
            let f = h.min(w) as f64 / 600.0;
            let base = AnchorGenerator::faster_rcnn()
                .cell_anchors(0)
                .iter()
                .map(|b| b.map(|v| (v * f) as f32))
                .collect();
            (base, Vec::new())
        }
    };
    for (i, p) in proposals.iter().take(a.top).enumerate() {
        boxes.push(LabelledBox {
            bbox: p.0,
            label: format!("#{} {:.2}", i + 1, p.1),
            color: 1,
            points: Vec::new(),
        });
    }
    for (i, b) in base.iter().enumerate() {
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        boxes.push(LabelledBox {
            bbox: [cx + b[0], cy + b[1], cx + b[2], cy + b[3]],
            label: format!("{:.0}×{:.0}", bw, bh),
            color: 2 + i / 3,
            points: vec![(cx, cy)],
        });
    }
    write_boxes(&a.out, &img, &boxes)?;
    println!(
        "{}: {} anchors at ({cx:.0}, {cy:.0}){} → {}",
        path.display(),
        base.len(),
        if proposals.is_empty() {
            String::new()
        } else {
            format!(
                ", top {} of {} proposals",
                a.top.min(proposals.len()),
                proposals.len()
            )
        },
        a.out.display()
    );
    Ok(())
}
