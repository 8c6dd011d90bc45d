//! PNG line charts for training runs.
//!
//! [`write_training_curves`] draws a two-panel figure (loss on the left,
//! accuracy on the right, a title on top); [`write_line_chart`] draws a
//! single-panel chart with arbitrary axis labels (loss per iteration and the
//! like). Both render with the pure-Rust `plotters` bitmap backend and write a
//! PNG file.
//!
//! Text is rendered with `ab_glyph` using Noto Sans Regular, which is compiled
//! into the binary (crate `ttf-noto-sans`), so no system font, fontconfig or
//! freetype is needed. Should that font ever fail to load, a few common system
//! TTF paths are tried; if no font can be loaded at all, the chart is still
//! drawn (lines, grid, frame and legend colour swatches), just without text.
//!
//! Non-finite points (NaN, ±inf) are skipped, empty curves are allowed and
//! degenerate ranges (a single point, constant values) are padded, so drawing
//! never panics on odd data.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// One named series of `(x, y)` points.
pub struct Curve<'a> {
    pub label: &'a str,
    pub points: &'a [(f64, f64)],
}

/// Size of the figure written by [`write_training_curves`].
const TRAINING_SIZE: (u32, u32) = (1000, 450);
/// Size of the figure written by [`write_line_chart`].
const LINE_CHART_SIZE: (u32, u32) = (800, 500);

/// Font family name the embedded font is registered under. `plotters` maps
/// `FontFamily::SansSerif` to this name, so default styles use it too.
const FONT_FAMILY: &str = "sans-serif";

/// System fonts tried when the embedded font cannot be registered.
const SYSTEM_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Tableau-10 colours: distinct, readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const TITLE_HEIGHT: u32 = 40;
const TITLE_FONT_PX: f64 = 22.0;
const CAPTION_FONT_PX: f64 = 18.0;
const AXIS_DESC_FONT_PX: f64 = 15.0;
const TICK_FONT_PX: f64 = 13.0;
const LEGEND_FONT_PX: f64 = 14.0;
/// Curves with at most this many points also get a marker at each point.
const MARKER_MAX_POINTS: usize = 40;

/// Draw one PNG with two panels side by side: left "loss" (several curves,
/// e.g. train loss and test loss vs epoch), right "accuracy" (e.g. test
/// accuracy in % vs epoch). Title at top.
///
/// The x axis of both panels is labelled "epoch". Every curve of the figure
/// gets its own colour (the accuracy panel continues the palette after the
/// loss curves). `path` must end in `.png`; missing parent directories are
/// created.
pub fn write_training_curves(
    path: &Path,
    title: &str,
    loss: &[Curve],
    accuracy: &[Curve],
) -> Result<()> {
    check_png_path(path)?;
    let text = ensure_font();
    let root = BitMapBackend::new(path, TRAINING_SIZE).into_drawing_area();
    render_training_curves(&root, title, loss, accuracy, text)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Generic single-panel line chart (loss per step and the like).
///
/// `path` must end in `.png`; missing parent directories are created.
pub fn write_line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
) -> Result<()> {
    check_png_path(path)?;
    let text = ensure_font();
    let root = BitMapBackend::new(path, LINE_CHART_SIZE).into_drawing_area();
    render_line_chart(&root, title, x_label, y_label, curves, text)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Rejects paths the PNG encoder would not accept and creates the parent
/// directory, so that failures surface with a clear message.
fn check_png_path(path: &Path) -> Result<()> {
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!("plot output path must end in .png: {}", path.display());
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Registers a font with `plotters` once per process. Returns whether text
/// can be drawn.
pub fn ensure_font() -> bool {
    static FONT_OK: OnceLock<bool> = OnceLock::new();
    *FONT_OK.get_or_init(|| {
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, ttf_noto_sans::REGULAR)
            .is_ok()
        {
            return true;
        }
        for candidate in SYSTEM_FONTS {
            if let Ok(bytes) = std::fs::read(candidate) {
                // The font table needs 'static bytes. This runs at most once
                // per process and only for the font that gets registered.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT_FAMILY, px).into_font()).color(&BLACK)
}

pub fn color_for(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Everything needed to draw one chart panel.
struct Panel<'a> {
    caption: Option<&'a str>,
    x_label: &'a str,
    y_label: &'a str,
    curves: &'a [Curve<'a>],
    /// Palette index of the first curve.
    color_offset: usize,
}

fn render_training_curves<DB>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    loss: &[Curve],
    accuracy: &[Curve],
    text: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = draw_title(root, title, text)?;
    let (width, _) = body.dim_in_pixel();
    let (left, right) = body.split_horizontally(width / 2);
    draw_panel(
        &left,
        &Panel {
            caption: Some("loss"),
            x_label: "epoch",
            y_label: "loss",
            curves: loss,
            color_offset: 0,
        },
        text,
    )?;
    draw_panel(
        &right,
        &Panel {
            caption: Some("accuracy"),
            x_label: "epoch",
            y_label: "accuracy",
            curves: accuracy,
            color_offset: loss.len(),
        },
        text,
    )?;
    Ok(())
}

fn render_line_chart<DB>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    text: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = draw_title(root, title, text)?;
    draw_panel(
        &body,
        &Panel {
            caption: None,
            x_label,
            y_label,
            curves,
            color_offset: 0,
        },
        text,
    )
}

/// Draws the figure title (when text is available) and returns the area
/// below it.
fn draw_title<DB>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    text: bool,
) -> Result<DrawingArea<DB, Shift>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let (top, body) = root.split_vertically(TITLE_HEIGHT);
    if text && !title.is_empty() {
        let (w, h) = top.dim_in_pixel();
        let style = font(TITLE_FONT_PX).pos(Pos::new(HPos::Center, VPos::Center));
        top.draw_text(title, &style, (w as i32 / 2, h as i32 / 2))?;
    }
    Ok(body)
}

/// Largest magnitude drawn; beyond it values are clamped so that axis spans
/// (`max - min`) stay finite.
const VALUE_LIMIT: f64 = f64::MAX / 4.0;

/// The finite points of a curve, clamped to `±VALUE_LIMIT`.
fn finite_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| {
            (
                x.clamp(-VALUE_LIMIT, VALUE_LIMIT),
                y.clamp(-VALUE_LIMIT, VALUE_LIMIT),
            )
        })
        .collect()
}

/// Tick label text: plain decimals without trailing zeros ("2", "0.25"),
/// scientific notation for very large or very small magnitudes.
fn format_tick(v: &f64) -> String {
    let v = *v;
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e6).contains(&a) {
        let s = format!("{v:.3e}");
        // Trim the mantissa: "1.500e-5" -> "1.5e-5".
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        };
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `[min, max]` over `values`, or `None` when there are none.
fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Turns a data extent into a drawable axis range: a missing extent becomes
/// `0..1`, a zero-width one is widened around its value, and `margin` (a
/// fraction of the span) is added on both sides.
fn axis_range(extent: Option<(f64, f64)>, margin: f64) -> (f64, f64) {
    let (lo, hi) = match extent {
        None => return (0.0, 1.0),
        Some(e) => e,
    };
    let span = hi - lo;
    if span <= 0.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        let (a, b) = (lo - pad, hi + pad);
        // Padding near f64::MAX overflows, and near 1e-308 it underflows.
        return if a.is_finite() && b.is_finite() && a < b {
            (a, b)
        } else if lo > 1.0 {
            (lo - lo * 0.2, lo)
        } else if lo < -1.0 {
            (lo, lo - lo * 0.2)
        } else {
            (lo - 1.0, lo + 1.0)
        };
    }
    let (a, b) = (lo - span * margin, hi + span * margin);
    if a.is_finite() && b.is_finite() && a < b {
        (a, b)
    } else {
        (lo, hi)
    }
}

fn draw_panel<DB>(area: &DrawingArea<DB, Shift>, panel: &Panel, text: bool) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let series: Vec<Vec<(f64, f64)>> = panel
        .curves
        .iter()
        .map(|c| finite_points(c.points))
        .collect();
    let all = || series.iter().flatten();
    let (x0, x1) = axis_range(min_max(all().map(|p| p.0)), 0.02);
    let (y0, y1) = axis_range(min_max(all().map(|p| p.1)), 0.06);

    let mut builder = ChartBuilder::on(area);
    builder.margin(10).margin_right(20);
    if text {
        if let Some(caption) = panel.caption {
            builder.caption(caption, font(CAPTION_FONT_PX));
        }
        builder.x_label_area_size(45).y_label_area_size(65);
    } else {
        // Without a font no axis labels can be drawn: leave the label areas
        // out and frame the plot instead (see below).
        builder.margin(20);
    }
    let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;

    // When every x is an integer (epochs, iterations) allow at most one tick
    // per unit so that tick labels stay integral.
    let integral_x = all().all(|p| p.0.fract() == 0.0);
    let x_ticks = if integral_x {
        ((x1 - x0).floor() as usize + 1).clamp(2, 10)
    } else {
        10
    };

    let grid = RGBColor(225, 225, 225);
    {
        let mut mesh = chart.configure_mesh();
        mesh.max_light_lines(0)
            .bold_line_style(grid)
            .axis_style(RGBColor(90, 90, 90))
            .x_labels(x_ticks)
            .y_labels(8)
            .x_label_formatter(&format_tick)
            .y_label_formatter(&format_tick);
        if text {
            mesh.label_style(font(TICK_FONT_PX))
                .axis_desc_style(font(AXIS_DESC_FONT_PX))
                .x_desc(panel.x_label)
                .y_desc(panel.y_label);
        }
        mesh.draw()?;
    }

    let plot_area = chart.plotting_area().strip_coord_spec();
    if !text {
        let (w, h) = plot_area.dim_in_pixel();
        plot_area.draw(&Rectangle::new(
            [(0, 0), (w as i32 - 1, h as i32 - 1)],
            RGBColor(90, 90, 90),
        ))?;
    }

    for (i, points) in series.iter().enumerate() {
        let color = color_for(panel.color_offset + i);
        if points.is_empty() {
            continue;
        }
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?;
        if points.len() <= MARKER_MAX_POINTS {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }

    // Legend: pixel positions of all points, relative to the plotting area,
    // so the legend can go into the emptiest corner.
    let base = plot_area.get_base_pixel();
    let pixels: Vec<(i32, i32)> = all()
        .map(|p| {
            let (px, py) = chart.backend_coord(p);
            (px - base.0, py - base.1)
        })
        .collect();
    draw_legend(&plot_area, panel, &pixels, text)?;
    Ok(())
}

/// Draws a boxed legend with one line per labelled curve into the corner of
/// `area` that covers the fewest data points.
fn draw_legend<DB>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    pixels: &[(i32, i32)],
    text: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    // (palette index, label, whether the curve is drawn with markers)
    let entries: Vec<(usize, &str, bool)> = panel
        .curves
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.label.is_empty())
        .map(|(i, c)| {
            let markers = c.points.len() <= MARKER_MAX_POINTS;
            (panel.color_offset + i, c.label, markers)
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }

    const PAD: i32 = 8;
    const ROW: i32 = 20;
    const SWATCH: i32 = 24;
    const GAP: i32 = 6;
    const OUTER: i32 = 8;

    let style = font(LEGEND_FONT_PX).pos(Pos::new(HPos::Left, VPos::Center));
    let mut text_width = 0;
    if text {
        for (_, label, _) in &entries {
            let (w, _) = area.estimate_text_size(label, &style).unwrap_or((0, 0));
            text_width = text_width.max(w as i32);
        }
    }
    let box_w = PAD + SWATCH + if text { GAP + text_width } else { 0 } + PAD;
    let box_h = PAD + ROW * entries.len() as i32 + PAD - 4;

    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let left = OUTER;
    let right = (w - OUTER - box_w).max(OUTER);
    let top = OUTER;
    let bottom = (h - OUTER - box_h).max(OUTER);
    // Preference order on ties: upper right, upper left, lower right, lower left.
    let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
    let covered = |&(cx, cy): &(i32, i32)| {
        pixels
            .iter()
            .filter(|&&(px, py)| px >= cx && px <= cx + box_w && py >= cy && py <= cy + box_h)
            .count()
    };
    let (bx, by) = corners
        .iter()
        .copied()
        .min_by_key(|c| covered(c))
        .unwrap_or((right, top));

    area.draw(&Rectangle::new(
        [(bx, by), (bx + box_w, by + box_h)],
        WHITE.mix(0.85).filled(),
    ))?;
    area.draw(&Rectangle::new(
        [(bx, by), (bx + box_w, by + box_h)],
        RGBColor(170, 170, 170),
    ))?;
    for (row, (color_index, label, with_marker)) in entries.iter().enumerate() {
        let color = color_for(*color_index);
        let cy = by + PAD + ROW * row as i32 + ROW / 2 - 2;
        let sx = bx + PAD;
        area.draw(&PathElement::new(
            vec![(sx, cy), (sx + SWATCH, cy)],
            color.stroke_width(3),
        ))?;
        if *with_marker {
            area.draw(&Circle::new((sx + SWATCH / 2, cy), 3, color.filled()))?;
        }
        if text {
            area.draw_text(label, &style, (sx + SWATCH + GAP, cy))?;
        }
    }
    Ok(())
}

/// One labelled box to draw on a photo: `[x1, y1, x2, y2]` in pixels, a colour index, and
/// points (landmarks) to mark.
pub struct LabelledBox {
    pub bbox: [f32; 4],
    pub label: String,
    pub color: usize,
    pub points: Vec<(f32, f32)>,
}

/// Draw boxes with their labels on an RGB photo and write it as PNG. Boxes reaching past the
/// border are drawn clipped to it.
pub fn write_boxes(path: &Path, img: &image::RgbImage, boxes: &[LabelledBox]) -> Result<()> {
    check_png_path(path)?;
    let text = ensure_font();
    let (w, h) = img.dimensions();
    let mut buf = img.as_raw().clone();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let line = ((w.max(h) as f32 / 300.0).round() as u32).clamp(2, 6);
        let px = (w.max(h) as f64 / 40.0).clamp(12.0, 28.0);
        let clip = |v: f32, hi: u32| (v.round() as i32).clamp(0, hi.saturating_sub(1) as i32);
        for b in boxes {
            let c = color_for(b.color);
            let (x1, y1) = (clip(b.bbox[0], w), clip(b.bbox[1], h));
            let (x2, y2) = (clip(b.bbox[2], w), clip(b.bbox[3], h));
            root.draw(&Rectangle::new([(x1, y1), (x2, y2)], c.stroke_width(line)))?;
            for &(x, y) in &b.points {
                root.draw(&Circle::new(
                    (x.round() as i32, y.round() as i32),
                    line + 1,
                    c.filled(),
                ))?;
            }
            if text && !b.label.is_empty() {
                let style = TextStyle::from((FONT_FAMILY, px).into_font()).color(&WHITE);
                let (tw, th) = root.estimate_text_size(&b.label, &style).unwrap_or((0, 0));
                let ty = if y1 >= th as i32 + 2 {
                    y1 - th as i32 - 2
                } else {
                    y1
                };
                root.draw(&Rectangle::new(
                    [(x1, ty), (x1 + tw as i32 + 6, ty + th as i32 + 2)],
                    c.filled(),
                ))?;
                root.draw(&Text::new(b.label.clone(), (x1 + 3, ty + 1), style))?;
            }
        }
        root.present()
            .with_context(|| format!("drawing on {}", path.display()))?;
    }
    image::save_buffer(path, &buf, w, h, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One panel of [`write_scatter`]: real and generated 2-D points as (x0, y0, x1, y1, …).
pub struct ScatterPanel<'a> {
    pub title: &'a str,
    pub real: &'a [f32],
    pub generated: &'a [f32],
}

/// Scatter plots side by side, real points in grey and generated ones in colour, every panel
/// on the same square axes (`lim` either way). Non-finite points are skipped.
pub fn write_scatter(path: &Path, title: &str, panels: &[ScatterPanel], lim: f64) -> Result<()> {
    check_png_path(path)?;
    let text = ensure_font();
    let n = panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (420 * n, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = draw_title(&root, title, text)?;
    for (area, p) in body.split_evenly((1, n as usize)).iter().zip(panels) {
        let mut b = ChartBuilder::on(area);
        b.margin(10).x_label_area_size(25).y_label_area_size(35);
        if text {
            b.caption(p.title, font(CAPTION_FONT_PX));
        }
        let mut chart = b.build_cartesian_2d(-lim..lim, -lim..lim)?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE);
        if text {
            mesh.label_style(font(TICK_FONT_PX));
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw()?;
        let pts = |v: &[f32]| -> Vec<(f64, f64)> {
            v.chunks_exact(2)
                .map(|q| (q[0] as f64, q[1] as f64))
                .filter(|(x, y)| x.is_finite() && y.is_finite() && x.abs() <= lim && y.abs() <= lim)
                .collect()
        };
        let grey = RGBColor(170, 170, 170);
        chart.draw_series(
            pts(p.real)
                .into_iter()
                .map(|q| Circle::new(q, 2, grey.filled())),
        )?;
        let c = color_for(0);
        chart.draw_series(
            pts(p.generated)
                .into_iter()
                .map(|q| Circle::new(q, 2, c.mix(0.6).filled())),
        )?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_png(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("aics_plot_test_{}_{name}.png", std::process::id()))
    }

    /// Checks the PNG signature, the IHDR size and that the file ends with an
    /// IEND chunk.
    fn assert_png(path: &Path, size: (u32, u32)) {
        let bytes = std::fs::read(path).expect("png written");
        assert!(bytes.len() > 100, "png too small: {} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "png signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), size);
        assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
        assert!(bytes.windows(4).any(|c| c == b"IDAT"));
    }

    /// Renders into an in-memory RGB buffer with the same code the file
    /// writers use.
    fn render_buffer(
        size: (u32, u32),
        draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
            draw(&root).unwrap();
            root.present().unwrap();
        }
        buf
    }

    fn count_pixels(buf: &[u8], pred: impl Fn(&[u8]) -> bool) -> usize {
        buf.chunks_exact(3).filter(|p| pred(p)).count()
    }

    fn is_color(p: &[u8], c: RGBColor) -> bool {
        p[0] == c.0 && p[1] == c.1 && p[2] == c.2
    }

    type Points = Vec<(f64, f64)>;

    /// Train loss, test loss and test accuracy over 20 epochs.
    fn sample() -> (Points, Points, Points) {
        let train: Vec<_> = (1..=20)
            .map(|e| (e as f64, 2.3 / (e as f64).sqrt()))
            .collect();
        let test: Vec<_> = (1..=20)
            .map(|e| (e as f64, 2.4 / (e as f64).sqrt() + 0.05))
            .collect();
        let acc: Vec<_> = (1..=20)
            .map(|e| (e as f64, 100.0 - 80.0 / (e as f64)))
            .collect();
        (train, test, acc)
    }

    #[test]
    fn training_curves_png() {
        let (train, test, acc) = sample();
        let path = temp_png("training");
        let loss = [
            Curve {
                label: "train loss",
                points: &train,
            },
            Curve {
                label: "test loss",
                points: &test,
            },
        ];
        let accuracy = [Curve {
            label: "test accuracy (%)",
            points: &acc,
        }];
        write_training_curves(&path, "MNIST MLP", &loss, &accuracy).unwrap();
        assert_png(&path, TRAINING_SIZE);
        let _ = std::fs::remove_file(&path);

        let buf = render_buffer(TRAINING_SIZE, |root| {
            render_training_curves(root, "MNIST MLP", &loss, &accuracy, ensure_font())
        });
        let total = (TRAINING_SIZE.0 * TRAINING_SIZE.1) as usize;
        let non_white = count_pixels(&buf, |p| p != [255, 255, 255]);
        assert!(
            non_white > total / 100,
            "image looks blank: {non_white} pixels"
        );
        // Each of the three curves is drawn in its own colour.
        for i in 0..3 {
            let n = count_pixels(&buf, |p| is_color(p, color_for(i)));
            assert!(n > 200, "curve {i} barely visible: {n} pixels");
        }
    }

    #[test]
    fn line_chart_png() {
        let pts: Vec<_> = (0..500)
            .map(|i| {
                (
                    i as f64,
                    (-(i as f64) / 100.0).exp() + 0.1 * (i as f64 / 7.0).sin(),
                )
            })
            .collect();
        let path = temp_png("line");
        let curves = [Curve {
            label: "loss",
            points: &pts,
        }];
        write_line_chart(&path, "loss per iteration", "iteration", "loss", &curves).unwrap();
        assert_png(&path, LINE_CHART_SIZE);
        let _ = std::fs::remove_file(&path);

        let buf = render_buffer(LINE_CHART_SIZE, |root| {
            render_line_chart(root, "t", "x", "y", &curves, ensure_font())
        });
        assert!(count_pixels(&buf, |p| is_color(p, color_for(0))) > 500);
    }

    #[test]
    fn embedded_font_registers() {
        assert!(ensure_font());
    }

    #[test]
    fn edge_cases_do_not_fail() {
        let empty: [(f64, f64); 0] = [];
        let single = [(3.0, 0.5)];
        let constant = [(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)];
        let same_x = [(5.0, 1.0), (5.0, 2.0)];
        let with_nan = [
            (1.0, 1.0),
            (2.0, f64::NAN),
            (f64::NAN, 3.0),
            (3.0, f64::INFINITY),
            (4.0, 0.5),
        ];
        let all_nan = [(f64::NAN, f64::NAN), (1.0, f64::NAN)];
        let huge = [(0.0, f64::MAX), (1.0, -f64::MAX)];
        let tiny = [(0.0, 1e-300), (1e-300, 1e-300)];
        let zero = [(0.0, 0.0)];
        // A span far below the values' precision.
        let coarse = [(1e17, 1e17), (1e17 + 16.0, 1e17 + 32.0)];
        let sets: Vec<Vec<Curve>> = vec![
            vec![],
            vec![Curve {
                label: "empty",
                points: &empty,
            }],
            vec![Curve {
                label: "single",
                points: &single,
            }],
            vec![Curve {
                label: "constant",
                points: &constant,
            }],
            vec![Curve {
                label: "same x",
                points: &same_x,
            }],
            vec![Curve {
                label: "nan",
                points: &with_nan,
            }],
            vec![Curve {
                label: "all nan",
                points: &all_nan,
            }],
            vec![Curve {
                label: "huge",
                points: &huge,
            }],
            vec![Curve {
                label: "tiny",
                points: &tiny,
            }],
            vec![Curve {
                label: "",
                points: &zero,
            }],
            vec![Curve {
                label: "coarse",
                points: &coarse,
            }],
            (0..15)
                .map(|_| Curve {
                    label: "many curves",
                    points: &constant,
                })
                .collect(),
        ];
        for (i, curves) in sets.iter().enumerate() {
            let p1 = temp_png(&format!("edge_train_{i}"));
            write_training_curves(&p1, "", curves, curves).unwrap();
            assert_png(&p1, TRAINING_SIZE);
            let p2 = temp_png(&format!("edge_line_{i}"));
            write_line_chart(&p2, "edge", "", "", curves).unwrap();
            assert_png(&p2, LINE_CHART_SIZE);
            let _ = std::fs::remove_file(&p1);
            let _ = std::fs::remove_file(&p2);
        }
        // A single point is still visible (it gets a marker).
        let buf = render_buffer(LINE_CHART_SIZE, |root| {
            render_line_chart(
                root,
                "",
                "",
                "",
                &[Curve {
                    label: "",
                    points: &single,
                }],
                true,
            )
        });
        assert!(count_pixels(&buf, |p| is_color(p, color_for(0))) > 10);
    }

    #[test]
    fn draws_without_font() {
        let (train, test, acc) = sample();
        let loss = [
            Curve {
                label: "train",
                points: &train,
            },
            Curve {
                label: "test",
                points: &test,
            },
        ];
        let accuracy = [Curve {
            label: "acc",
            points: &acc,
        }];
        let plain = render_buffer(TRAINING_SIZE, |root| {
            render_training_curves(root, "title", &loss, &accuracy, false)
        });
        for i in 0..3 {
            assert!(count_pixels(&plain, |p| is_color(p, color_for(i))) > 200);
        }
        let plain_line = render_buffer(LINE_CHART_SIZE, |root| {
            render_line_chart(root, "title", "x", "y", &loss, false)
        });
        assert!(count_pixels(&plain_line, |p| is_color(p, color_for(1))) > 200);

        // With the font, the same figure has extra (text) pixels.
        assert!(ensure_font());
        let with_text = render_buffer(TRAINING_SIZE, |root| {
            render_training_curves(root, "title", &loss, &accuracy, true)
        });
        let dark = |p: &[u8]| p[0] < 80 && p[1] < 80 && p[2] < 80;
        assert!(count_pixels(&with_text, dark) > count_pixels(&plain, dark) + 500);
    }

    #[test]
    fn rejects_non_png_path() {
        let path = std::env::temp_dir().join("aics_plot_test_not_png.jpg");
        assert!(write_line_chart(&path, "t", "x", "y", &[]).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn creates_missing_parent_dir() {
        let dir = std::env::temp_dir().join(format!("aics_plot_test_dir_{}", std::process::id()));
        let path = dir.join("nested").join("chart.png");
        write_line_chart(&path, "t", "x", "y", &[]).unwrap();
        assert_png(&path, LINE_CHART_SIZE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn axis_range_pads_degenerate_extents() {
        assert_eq!(axis_range(None, 0.05), (0.0, 1.0));
        assert_eq!(axis_range(Some((0.0, 0.0)), 0.05), (-1.0, 1.0));
        let (a, b) = axis_range(Some((2.0, 2.0)), 0.05);
        assert!(a < 2.0 && b > 2.0);
        let (a, b) = axis_range(Some((-3.0, -3.0)), 0.05);
        assert!(a < -3.0 && b > -3.0);
        let (a, b) = axis_range(Some((0.0, 10.0)), 0.1);
        assert!((a + 1.0).abs() < 1e-12 && (b - 11.0).abs() < 1e-12);
        let (a, b) = axis_range(Some((-VALUE_LIMIT, VALUE_LIMIT)), 0.1);
        assert!(a.is_finite() && b.is_finite() && a < b && (b - a).is_finite());
        for v in [f64::MAX, -f64::MAX, 1e-320, -1e-320, f64::MIN_POSITIVE] {
            let (a, b) = axis_range(Some((v, v)), 0.1);
            assert!(
                a.is_finite() && b.is_finite() && a < b && a <= v && v <= b,
                "{v}"
            );
        }
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(format_tick(&2.0), "2");
        assert_eq!(format_tick(&100.0), "100");
        assert_eq!(format_tick(&0.0), "0");
        assert_eq!(format_tick(&-0.0), "0");
        assert_eq!(format_tick(&0.30000000000000004), "0.3");
        assert_eq!(format_tick(&-1.25), "-1.25");
        assert_eq!(format_tick(&0.00002), "2e-5");
        assert_eq!(format_tick(&1.5e7), "1.5e7");
        assert_eq!(format_tick(&-1e-300), "-1e-300");
    }

    #[test]
    fn finite_points_skips_nan_and_inf() {
        let pts = [
            (1.0, 2.0),
            (f64::NAN, 1.0),
            (2.0, f64::NEG_INFINITY),
            (3.0, 4.0),
        ];
        assert_eq!(finite_points(&pts), vec![(1.0, 2.0), (3.0, 4.0)]);
        let big = finite_points(&[(f64::MAX, -f64::MAX)]);
        assert_eq!(big, vec![(VALUE_LIMIT, -VALUE_LIMIT)]);
    }
}
