//! `aics map`: score detections against ground truth with COCO's or Pascal VOC's metric.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aics_detect::data::{read_coco, read_results, read_voc_dir, Dataset, Detection};
use aics_detect::{coco_eval, voc_eval, CocoStats, VocAp};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use crate::plot::{write_line_chart, Curve};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    /// COCOeval's twelve numbers (AP@[.5:.95], AP50, AP75, by area, AR@1/10/100, by area).
    Coco,
    /// Pascal VOC 2007: 11-point interpolated AP.
    Voc07,
    /// Pascal VOC 2010 and later: all-point AP.
    Voc,
}

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Ground truth: a COCO annotation JSON file, or a folder of Pascal VOC XML files.
    #[arg(long)]
    gt: PathBuf,
    /// Detections: a COCO results JSON (`[{"image_id","category_id","bbox":[x,y,w,h],"score"}]`);
    /// `image_id` may also be the image's file name or its stem, and `category_id` the class
    /// name (VOC folders number their classes in name order).
    #[arg(long)]
    dt: PathBuf,
    #[arg(long, value_enum, default_value = "coco")]
    metric: Metric,
    /// IoU threshold of a match (VOC: default 0.5). With `coco`, the threshold whose
    /// precision–recall curves `--plot` draws and whose per-class AP the table adds: one of
    /// 0.50, 0.55, …, 0.95.
    #[arg(long)]
    iou: Option<f64>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Write the per-class precision–recall curves to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn read_gt(path: &Path) -> Result<Dataset> {
    Ok(if path.is_dir() {
        read_voc_dir(path)?
    } else {
        read_coco(path)?
    })
}

pub fn run(a: MapArgs) -> Result<()> {
    if let Some(v) = a.iou {
        if !(v > 0.0 && v <= 1.0) {
            bail!("--iou must be in (0, 1], got {v}");
        }
    }
    let gt = read_gt(&a.gt)?;
    let dets = read_results(&a.dt, &gt)?;
    let names: BTreeMap<u64, &str> = gt.category_names();
    let mut n_gt: BTreeMap<u64, usize> = gt.categories.iter().map(|c| (c.id, 0)).collect();
    for an in &gt.annotations {
        *n_gt.entry(an.category_id).or_default() += 1;
    }
    let mut n_dt: BTreeMap<u64, usize> = gt.categories.iter().map(|c| (c.id, 0)).collect();
    for d in &dets {
        *n_dt.entry(d.category_id).or_default() += 1;
    }
    match a.metric {
        Metric::Coco => run_coco(&a, &gt, &dets, &names, &n_gt, &n_dt),
        Metric::Voc07 | Metric::Voc => run_voc(&a, &gt, &dets, &names, &n_gt, &n_dt),
    }
}

fn name_of(names: &BTreeMap<u64, &str>, id: u64) -> String {
    names
        .get(&id)
        .map_or_else(|| id.to_string(), |s| s.to_string())
}

/// Per-class precision–recall curves as one PNG.
fn plot_pr(path: &Path, title: &str, curves: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let cs: Vec<Curve> = curves
        .iter()
        .map(|(l, c)| Curve {
            label: l,
            points: c,
        })
        .collect();
    write_line_chart(path, title, "recall", "precision", &cs)
}

fn fmt(v: f64) -> String {
    if v < 0.0 {
        "   n/a".into()
    } else {
        format!("{v:6.4}")
    }
}

fn run_coco(
    a: &MapArgs,
    gt: &Dataset,
    dets: &[Detection],
    names: &BTreeMap<u64, &str>,
    n_gt: &BTreeMap<u64, usize>,
    n_dt: &BTreeMap<u64, usize>,
) -> Result<()> {
    let ev = coco_eval(gt, dets);
    let t_sel = match a.iou {
        None => 0,
        Some(v) => match ev.iou_thresholds.iter().position(|&t| (t - v).abs() < 1e-9) {
            Some(t) => t,
            None => bail!("with --metric coco, --iou must be one of 0.50, 0.55, …, 0.95 (got {v})"),
        },
    };
    let thr = ev.iou_thresholds[t_sel];
    let stats = ev.stats();
    let per_class = ev.per_class_ap();
    // per-class AP at the selected threshold: mean over recall thresholds
    let ap_at = |k: usize| -> f64 {
        let vals: Vec<f64> = (0..101)
            .map(|r| ev.precision_at(t_sel, r, k, 0, 2))
            .filter(|&v| v > -1.0)
            .collect();
        if vals.is_empty() {
            -1.0
        } else {
            vals.iter().sum::<f64>() / vals.len() as f64
        }
    };
    if let Some(p) = &a.plot {
        let curves: Vec<(String, Vec<(f64, f64)>)> = ev
            .category_ids
            .iter()
            .enumerate()
            .filter_map(|(k, &id)| ev.pr_curve(t_sel, k).map(|c| (name_of(names, id), c)))
            .collect();
        plot_pr(
            p,
            &format!("Precision–recall at IoU {thr:.2} (COCO, area all, 100 detections)"),
            &curves,
        )?;
    }
    if a.json {
        let mut o = Map::new();
        o.insert("metric".into(), json!("coco"));
        for (n, v) in CocoStats::NAMES.iter().zip(stats.to_array()) {
            o.insert((*n).into(), json!(v));
        }
        let mut pc = Map::new();
        for (k, &id) in ev.category_ids.iter().enumerate() {
            pc.insert(
                name_of(names, id),
                json!({"id": id, "AP": per_class[&id], format!("AP{}", (thr * 100.0).round()): ap_at(k),
                       "gt": n_gt.get(&id).copied().unwrap_or(0), "dt": n_dt.get(&id).copied().unwrap_or(0)}),
            );
        }
        o.insert("per_class".into(), Value::Object(pc));
        println!("{}", Value::Object(o));
        return Ok(());
    }
    let col = format!("AP{}", (thr * 100.0).round());
    println!(
        "{:>6}  {:<20} {:>6} {:>6} {:>6} {:>6}",
        "id", "class", "gt", "dt", "AP", col
    );
    for (k, &id) in ev.category_ids.iter().enumerate() {
        println!(
            "{:>6}  {:<20} {:>6} {:>6} {} {}",
            id,
            name_of(names, id),
            n_gt.get(&id).copied().unwrap_or(0),
            n_dt.get(&id).copied().unwrap_or(0),
            fmt(per_class[&id]),
            fmt(ap_at(k))
        );
    }
    println!();
    let labels = [
        "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
        "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
        "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
        "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
        "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
        "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
        "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    ];
    for (l, v) in labels.iter().zip(stats.to_array()) {
        println!(" {l} = {v:.3}");
    }
    Ok(())
}

fn run_voc(
    a: &MapArgs,
    gt: &Dataset,
    dets: &[Detection],
    names: &BTreeMap<u64, &str>,
    n_gt: &BTreeMap<u64, usize>,
    n_dt: &BTreeMap<u64, usize>,
) -> Result<()> {
    let iou = a.iou.unwrap_or(0.5);
    let (kind, label) = match a.metric {
        Metric::Voc07 => (VocAp::ElevenPoint, "voc07"),
        _ => (VocAp::AllPoint, "voc"),
    };
    let ev = voc_eval(gt, dets, iou, kind);
    if let Some(p) = &a.plot {
        let curves: Vec<(String, Vec<(f64, f64)>)> = ev
            .per_class
            .iter()
            .filter_map(|(&id, c)| {
                let c = c.as_ref()?;
                let pts: Vec<(f64, f64)> = c
                    .recall
                    .iter()
                    .copied()
                    .zip(c.precision.iter().copied())
                    .collect();
                Some((name_of(names, id), pts))
            })
            .collect();
        plot_pr(
            p,
            &format!("Precision–recall at IoU {iou} (Pascal VOC)"),
            &curves,
        )?;
    }
    if a.json {
        let mut pc = Map::new();
        for (&id, c) in &ev.per_class {
            pc.insert(
                name_of(names, id),
                json!({"id": id, "AP": c.as_ref().map(|c| c.ap),
                       "gt": c.as_ref().map_or(0, |c| c.npos), "dt": n_dt.get(&id).copied().unwrap_or(0)}),
            );
        }
        let map = if ev.map.is_finite() {
            json!(ev.map)
        } else {
            Value::Null
        };
        println!(
            "{}",
            json!({"metric": label, "iou": iou, "mAP": map, "per_class": Value::Object(pc)})
        );
        return Ok(());
    }
    println!(
        "{:>6}  {:<20} {:>6} {:>6} {:>6}",
        "id", "class", "gt", "dt", "AP"
    );
    for (&id, c) in &ev.per_class {
        println!(
            "{:>6}  {:<20} {:>6} {:>6} {}",
            id,
            name_of(names, id),
            n_gt.get(&id).copied().unwrap_or(0),
            n_dt.get(&id).copied().unwrap_or(0),
            c.as_ref()
                .map_or_else(|| "   n/a".to_string(), |c| fmt(c.ap))
        );
    }
    println!();
    if ev.map.is_finite() {
        println!("mAP ({label}, IoU {iou}) = {:.4}", ev.map);
    } else {
        println!("mAP ({label}, IoU {iou}) = n/a (no class has a ground-truth object that counts)");
    }
    Ok(())
}
