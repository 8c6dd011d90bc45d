//! Detection annotations: COCO JSON (`images`, `annotations`, `categories`; boxes `[x, y, w, h]`,
//! `iscrowd`; segmentations and other fields are tolerated and ignored), Pascal VOC XML (one
//! file an image: `filename`, `size`, `object`s with `name`, `bndbox` and `difficult`), and
//! COCO results files (`[{"image_id", "category_id", "bbox", "score"}]`). Readers check what a
//! detector or an evaluation relies on and name the file and the record in their errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use crate::error::{DetectError, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
}

/// One ground-truth object: a box `[x, y, w, h]` in pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    #[serde(default)]
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
    /// COCO's area (of the segmentation, when there is one); the box's when absent.
    #[serde(default)]
    pub area: Option<f64>,
    #[serde(default, deserialize_with = "flag")]
    pub iscrowd: bool,
    /// VOC's `difficult` (not in COCO files).
    #[serde(
        default,
        deserialize_with = "flag",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub difficult: bool,
}

/// COCO writes flags as 0/1; booleans are accepted too.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        B(bool),
        N(u64),
    }
    Ok(match F::deserialize(d)? {
        F::B(b) => b,
        F::N(n) => n != 0,
    })
}

/// A detection data set: images, their objects, and the classes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

/// One detection of a results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub score: f64,
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> DetectError {
    DetectError::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e))
}

impl Dataset {
    /// Check ids and boxes: unique image and category ids, every annotation's image and
    /// category known, boxes finite with positive width and height, inside their image (by
    /// half a pixel at most, as annotation tools round).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut images = HashMap::new();
        for im in &self.images {
            if images.insert(im.id, im).is_some() {
                return Err(format!("image id {} appears twice", im.id));
            }
        }
        let mut cats = BTreeSet::new();
        for c in &self.categories {
            if !cats.insert(c.id) {
                return Err(format!("category id {} appears twice", c.id));
            }
        }
        for (i, a) in self.annotations.iter().enumerate() {
            let at = || format!("annotation {i} (id {}, image {})", a.id, a.image_id);
            let Some(im) = images.get(&a.image_id) else {
                return Err(format!("{}: no image with that id", at()));
            };
            if !cats.contains(&a.category_id) {
                return Err(format!("{}: unknown category id {}", at(), a.category_id));
            }
            let [x, y, w, h] = a.bbox;
            if !a.bbox.iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
                return Err(format!("{}: box {:?} has no area", at(), a.bbox));
            }
            let (iw, ih) = (im.width as f64, im.height as f64);
            if x < -0.5 || y < -0.5 || x + w > iw + 0.5 || y + h > ih + 0.5 {
                return Err(format!(
                    "{}: box {:?} lies outside the {}×{} image",
                    at(),
                    a.bbox,
                    im.width,
                    im.height
                ));
            }
        }
        Ok(())
    }

    /// The category ids with their names, by id.
    pub fn category_names(&self) -> BTreeMap<u64, &str> {
        self.categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect()
    }
}

/// Parse and validate the text of a COCO annotation file.
pub fn parse_coco(text: &str) -> std::result::Result<Dataset, String> {
    let d: Dataset =
        serde_json::from_str(text).map_err(|e| format!("not a COCO annotation file: {e}"))?;
    d.validate()?;
    Ok(d)
}

/// Read a COCO annotation file and validate it.
pub fn read_coco(path: &Path) -> Result<Dataset> {
    parse_coco(&read(path)?).map_err(|e| file_err(path, e))
}

/// Write a COCO annotation file (areas filled in from the boxes where absent).
pub fn write_coco(d: &Dataset, path: &Path) -> Result<()> {
    let mut d = d.clone();
    for a in &mut d.annotations {
        a.area.get_or_insert(a.bbox[2] * a.bbox[3]);
    }
    let text = serde_json::to_string(&d).map_err(|e| file_err(path, e))?;
    std::fs::write(path, text).map_err(|e| file_err(path, e))
}

/// Parse the text of a COCO results file, checking that every detection names an image and a
/// category of `gt` and has a finite score and a box with no negative side (pycocotools scores a zero-area box as a miss). An `image_id` may also be a
/// string: the image's file name or its stem (VOC data sets name images by file), and a
/// `category_id` the category's name (VOC data sets name classes, and number them only in the
/// order the reader finds them).
pub fn parse_results(text: &str, gt: &Dataset) -> std::result::Result<Vec<Detection>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        N(u64),
        S(String),
    }
    #[derive(Deserialize)]
    struct Raw {
        image_id: Id,
        category_id: Id,
        bbox: [f64; 4],
        score: f64,
    }
    let raw: Vec<Raw> =
        serde_json::from_str(text).map_err(|e| format!("not a COCO results file: {e}"))?;
    let images: BTreeSet<u64> = gt.images.iter().map(|i| i.id).collect();
    let mut names: HashMap<&str, u64> = HashMap::new();
    for im in &gt.images {
        names.insert(im.file_name.as_str(), im.id);
        if let Some(stem) = Path::new(&im.file_name)
            .file_stem()
            .and_then(|s| s.to_str())
        {
            names.entry(stem).or_insert(im.id);
        }
    }
    let cats: BTreeSet<u64> = gt.categories.iter().map(|c| c.id).collect();
    let cat_names: HashMap<&str, u64> = gt
        .categories
        .iter()
        .map(|c| (c.name.as_str(), c.id))
        .collect();
    let mut dets = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let image_id = match d.image_id {
            Id::N(n) if images.contains(&n) => n,
            Id::N(n) => return Err(format!("detection {i}: unknown image id {n}")),
            Id::S(s) => match names.get(s.as_str()) {
                Some(&n) => n,
                None => return Err(format!("detection {i}: unknown image {s:?}")),
            },
        };
        let category_id = match d.category_id {
            Id::N(n) if cats.contains(&n) => n,
            Id::N(n) => return Err(format!("detection {i}: unknown category id {n}")),
            Id::S(s) => match cat_names.get(s.as_str()) {
                Some(&n) => n,
                None => return Err(format!("detection {i}: unknown category {s:?}")),
            },
        };
        if !d.score.is_finite()
            || !d.bbox.iter().all(|v| v.is_finite())
            || d.bbox[2] < 0.0
            || d.bbox[3] < 0.0
        {
            return Err(format!(
                "detection {i}: score {} and box {:?} must be finite, with no negative side",
                d.score, d.bbox
            ));
        }
        dets.push(Detection {
            image_id,
            category_id,
            bbox: d.bbox,
            score: d.score,
        });
    }
    Ok(dets)
}

/// Read a COCO results file (see [`parse_results`]).
pub fn read_results(path: &Path, gt: &Dataset) -> Result<Vec<Detection>> {
    parse_results(&read(path)?, gt).map_err(|e| file_err(path, e))
}

/// One VOC XML file: the image's file name and size, and its objects (class name, box
/// `[x, y, w, h]` from the 1-based inclusive `bndbox`, difficult).
#[derive(Clone, Debug, PartialEq)]
pub struct VocRecord {
    pub filename: String,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<(String, [f64; 4], bool)>,
}

/// Parse one VOC annotation.
pub fn parse_voc(text: &str) -> std::result::Result<VocRecord, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let (mut filename, mut width, mut height) = (None, None, None);
    let mut objects = Vec::new();
    let mut cur: Option<(Option<String>, [Option<f64>; 4], bool)> = None;
    // the text of the element being read, entity references resolved
    let mut text = String::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {}: {e}", reader.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "object" && path.last().map(String::as_str) == Some("annotation") {
                    cur = Some((None, [None; 4], false));
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let entity = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&entity)
                    .map_err(|e| format!("entity {entity}: {e}"))?;
                text.push_str(&resolved);
            }
            Event::End(_) => {
                let v = text.trim().to_string();
                text.clear();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let num = || {
                    v.parse::<f64>()
                        .map_err(|_| format!("<{}> is `{v}`, not a number", p.join("/")))
                };
                match p.as_slice() {
                    ["annotation", "filename"] => filename = Some(v.clone()),
                    ["annotation", "size", "width"] => width = Some(num()? as u32),
                    ["annotation", "size", "height"] => height = Some(num()? as u32),
                    ["annotation", "object", "name"] => {
                        if let Some(c) = cur.as_mut() {
                            c.0 = Some(v.clone());
                        }
                    }
                    ["annotation", "object", "difficult"] => {
                        if let Some(c) = cur.as_mut() {
                            c.2 = num()? != 0.0;
                        }
                    }
                    ["annotation", "object", "bndbox", k] => {
                        let i = match *k {
                            "xmin" => Some(0),
                            "ymin" => Some(1),
                            "xmax" => Some(2),
                            "ymax" => Some(3),
                            _ => None,
                        };
                        if let (Some(i), Some(c)) = (i, cur.as_mut()) {
                            c.1[i] = Some(num()?);
                        }
                    }
                    ["annotation", "object"] => {
                        let (name, b, difficult) = cur.take().ok_or("unbalanced <object>")?;
                        let name = name.ok_or("an <object> without <name>")?;
                        let [Some(x1), Some(y1), Some(x2), Some(y2)] = b else {
                            return Err(format!(
                                "object `{name}`: <bndbox> needs xmin, ymin, xmax, ymax"
                            ));
                        };
                        // VOC's pixel indices are 1-based and inclusive
                        objects.push((
                            name,
                            [x1 - 1.0, y1 - 1.0, x2 - x1 + 1.0, y2 - y1 + 1.0],
                            difficult,
                        ));
                    }
                    _ => {}
                }
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(format!("unclosed <{}>", path.join("/")));
    }
    Ok(VocRecord {
        filename: filename.ok_or("no <filename>")?,
        width: width.ok_or("no <size><width>")?,
        height: height.ok_or("no <size><height>")?,
        objects,
    })
}

/// Read a folder of VOC XML files (sorted by name; image ids 1, 2, …) into a data set whose
/// categories are the class names found, in sorted order, with ids 1, 2, …; validated.
pub fn read_voc_dir(dir: &Path) -> Result<Dataset> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(file_err(dir, "no VOC .xml annotation files"));
    }
    let records: Vec<VocRecord> = files
        .iter()
        .map(|p| parse_voc(&read(p)?).map_err(|e| file_err(p, e)))
        .collect::<Result<_>>()?;
    let names: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.objects.iter().map(|o| o.0.as_str()))
        .collect();
    let ids: HashMap<&str, u64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u64 + 1))
        .collect();
    let mut d = Dataset {
        categories: names
            .iter()
            .map(|n| Category {
                id: ids[n],
                name: n.to_string(),
            })
            .collect(),
        ..Dataset::default()
    };
    for (i, r) in records.iter().enumerate() {
        let image_id = i as u64 + 1;
        d.images.push(Image {
            id: image_id,
            file_name: r.filename.clone(),
            width: r.width,
            height: r.height,
        });
        for (name, bbox, difficult) in &r.objects {
            d.annotations.push(Annotation {
                id: d.annotations.len() as u64 + 1,
                image_id,
                category_id: ids[name.as_str()],
                bbox: *bbox,
                area: None,
                iscrowd: false,
                difficult: *difficult,
            });
        }
    }
    d.validate().map_err(|e| file_err(dir, e))?;
    Ok(d)
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Write each image of `d` as a VOC XML file `<file stem>.xml` in `dir`.
pub fn write_voc_dir(d: &Dataset, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let names = d.category_names();
    for im in &d.images {
        let mut x = format!(
            "<annotation>\n  <filename>{}</filename>\n  <size><width>{}</width><height>{}</height><depth>3</depth></size>\n",
            escape(&im.file_name),
            im.width,
            im.height
        );
        for a in d.annotations.iter().filter(|a| a.image_id == im.id) {
            let name = names.get(&a.category_id).copied().unwrap_or("unknown");
            let [bx, by, bw, bh] = a.bbox;
            x.push_str(&format!(
                "  <object>\n    <name>{}</name>\n    <difficult>{}</difficult>\n    <bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox>\n  </object>\n",
                escape(name),
                u8::from(a.difficult),
                bx + 1.0,
                by + 1.0,
                bx + bw,
                by + bh
            ));
        }
        x.push_str("</annotation>\n");
        let stem = Path::new(&im.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| im.id.to_string());
        let p = dir.join(format!("{stem}.xml"));
        std::fs::write(&p, x).map_err(|e| file_err(&p, e))?;
    }
    Ok(())
}

/// One tile of [`tile_dataset`]: the source image's index in the data set and the tile's
/// rectangle (x, y, width, height) in its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub source: usize,
    pub rect: [u32; 4],
}

/// Offsets of `tile`-wide windows every `stride` pixels along a side of `len`, the last one
/// flush with the end; one window of the whole side when it is shorter than a tile.
fn tile_offsets(len: u32, tile: u32, stride: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let mut v: Vec<u32> = (0..=len - tile).step_by(stride as usize).collect();
    if *v.last().unwrap_or(&0) != len - tile {
        v.push(len - tile);
    }
    v
}

/// Cut every image of `d` into `tile`×`tile` windows every `stride` pixels (the last window of
/// a row or column flush with the edge), as detectors are trained on crops of large aerial
/// photos. An object is kept in a tile, clipped to it, when at least `min_visible` of its box
/// lies inside; crowd and difficult flags carry over. Returns the tiles' data set (file names
/// `STEM_X_Y.png`, ids from 1) and where each tile comes from.
pub fn tile_dataset(
    d: &Dataset,
    tile: u32,
    stride: u32,
    min_visible: f64,
) -> Result<(Dataset, Vec<Tile>)> {
    if tile == 0 || stride == 0 || stride > tile || !(0.0..=1.0).contains(&min_visible) {
        return Err(crate::error::arg(
            "tile_dataset",
            format!("tile {tile}, stride {stride}, min visible {min_visible}: need 0 < stride ≤ tile and a fraction in [0, 1]"),
        ));
    }
    let mut out = Dataset {
        images: Vec::new(),
        annotations: Vec::new(),
        categories: d.categories.clone(),
    };
    let mut tiles = Vec::new();
    for (si, im) in d.images.iter().enumerate() {
        let stem = Path::new(&im.file_name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image")
            .to_string();
        let (tw, th) = (tile.min(im.width), tile.min(im.height));
        for &y in &tile_offsets(im.height, tile, stride) {
            for &x in &tile_offsets(im.width, tile, stride) {
                let id = out.images.len() as u64 + 1;
                out.images.push(Image {
                    id,
                    file_name: format!("{stem}_{x}_{y}.png"),
                    width: tw,
                    height: th,
                });
                tiles.push(Tile {
                    source: si,
                    rect: [x, y, tw, th],
                });
                let (x0, y0, x1, y1) = (x as f64, y as f64, (x + tw) as f64, (y + th) as f64);
                for a in d.annotations.iter().filter(|a| a.image_id == im.id) {
                    let [bx, by, bw, bh] = a.bbox;
                    let (cx0, cy0) = (bx.max(x0), by.max(y0));
                    let (cx1, cy1) = ((bx + bw).min(x1), (by + bh).min(y1));
                    if cx1 <= cx0 || cy1 <= cy0 {
                        continue;
                    }
                    let inside = (cx1 - cx0) * (cy1 - cy0);
                    if bw * bh <= 0.0 || inside < min_visible * bw * bh {
                        continue;
                    }
                    out.annotations.push(Annotation {
                        id: out.annotations.len() as u64 + 1,
                        image_id: id,
                        category_id: a.category_id,
                        bbox: [cx0 - x0, cy0 - y0, cx1 - cx0, cy1 - cy0],
                        area: None,
                        iscrowd: a.iscrowd,
                        difficult: a.difficult,
                    });
                }
            }
        }
    }
    Ok((out, tiles))
}

#[cfg(test)]
mod tile_tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_and_clip_their_objects() {
        assert_eq!(tile_offsets(1000, 400, 200), vec![0, 200, 400, 600]);
        assert_eq!(tile_offsets(1035, 400, 200), vec![0, 200, 400, 600, 635]);
        assert_eq!(tile_offsets(300, 400, 200), vec![0]);
        let d = Dataset {
            images: vec![Image {
                id: 7,
                file_name: "a.tif".into(),
                width: 600,
                height: 400,
            }],
            annotations: vec![
                // across the seam at x = 400: 40% in the first tile, all in the second
                Annotation {
                    id: 1,
                    image_id: 7,
                    category_id: 3,
                    bbox: [380.0, 10.0, 50.0, 20.0],
                    area: None,
                    iscrowd: false,
                    difficult: false,
                },
            ],
            categories: vec![Category {
                id: 3,
                name: "tree".into(),
            }],
        };
        let (t, tiles) = tile_dataset(&d, 400, 200, 0.5).unwrap();
        assert_eq!(tiles.len(), 2);
        assert_eq!(tiles[1].rect, [200, 0, 400, 400]);
        assert_eq!(t.images[1].file_name, "a_200_0.png");
        // the first tile holds 20 of its 50 px (40%): dropped; the second all of it, shifted
        assert_eq!(t.annotations.len(), 1);
        assert_eq!(t.annotations[0].image_id, 2);
        assert_eq!(t.annotations[0].bbox, [180.0, 10.0, 50.0, 20.0]);
        // keeping a third or more: the first tile has it too, clipped at its edge
        let (t, _) = tile_dataset(&d, 400, 200, 0.3).unwrap();
        assert_eq!(t.annotations.len(), 2);
        assert_eq!(t.annotations[0].image_id, 1);
        assert_eq!(t.annotations[0].bbox, [380.0, 10.0, 20.0, 20.0]);
        assert!(tile_dataset(&d, 400, 500, 0.5).is_err());
    }
}
