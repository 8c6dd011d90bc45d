//! COCO and VOC annotations: reading, writing, round trips, and bad files as one clear error.

use std::path::{Path, PathBuf};

use aics_detect::data::{
    parse_voc, read_coco, read_results, read_voc_dir, write_coco, write_voc_dir, Annotation,
    Category, Dataset, Image,
};

fn tmp(name: &str) -> aics_testkit::TempDir {
    aics_testkit::TempDir::new(&format!("detect-{name}"))
}

fn dataset() -> Dataset {
    let ann = |id, image_id, category_id, bbox, iscrowd, difficult| Annotation {
        id,
        image_id,
        category_id,
        bbox,
        area: None,
        iscrowd,
        difficult,
    };
    Dataset {
        images: vec![
            Image {
                id: 1,
                file_name: "a.jpg".into(),
                width: 100,
                height: 80,
            },
            Image {
                id: 2,
                file_name: "b&c.png".into(),
                width: 50,
                height: 50,
            },
        ],
        annotations: vec![
            ann(1, 1, 1, [10.0, 5.0, 30.0, 20.0], false, false),
            ann(2, 1, 2, [0.0, 0.0, 100.0, 80.0], false, true),
            ann(3, 2, 1, [4.0, 4.0, 10.0, 12.0], false, false),
        ],
        categories: vec![
            Category {
                id: 1,
                name: "cat".into(),
            },
            Category {
                id: 2,
                name: "dog <big>".into(),
            },
        ],
    }
}

#[test]
fn coco_round_trip_and_real_layout() {
    let d = tmp("coco");
    let p = d.join("gt.json");
    write_coco(&dataset(), &p).unwrap();
    let back = read_coco(&p).unwrap();
    assert_eq!(back.images, dataset().images);
    assert_eq!(back.annotations.len(), 3);
    assert_eq!(back.annotations[0].area, Some(600.0));
    // COCO's own layout: 0/1 flags, segmentations, extra fields, licenses
    let text = r#"{"info":{},"licenses":[],"images":[{"id":7,"file_name":"x.jpg","width":20,"height":10,"license":1}],
        "annotations":[{"id":1,"image_id":7,"category_id":3,"bbox":[1,2,3,4],"area":9.5,"iscrowd":1,"segmentation":{"counts":[1,2],"size":[10,20]}}],
        "categories":[{"id":3,"name":"kite","supercategory":"sky"}]}"#;
    std::fs::write(&p, text).unwrap();
    let c = read_coco(&p).unwrap();
    assert!(c.annotations[0].iscrowd && c.annotations[0].area == Some(9.5));
    // results
    let r = d.join("dt.json");
    std::fs::write(
        &r,
        r#"[{"image_id":7,"category_id":3,"bbox":[1,1,2,2],"score":0.9}]"#,
    )
    .unwrap();
    assert_eq!(read_results(&r, &c).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn voc_round_trip_keeps_boxes_classes_and_difficult() {
    let d = tmp("voc");
    write_voc_dir(&dataset(), &d).unwrap();
    let back = read_voc_dir(&d).unwrap();
    // categories are the names found, sorted; boxes survive VOC's 1-based inclusive corners
    let names: Vec<&str> = back.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cat", "dog <big>"]);
    assert_eq!(back.images[0].file_name, "a.jpg");
    assert_eq!(back.images[1].file_name, "b&c.png");
    let boxes: Vec<[f64; 4]> = back.annotations.iter().map(|a| a.bbox).collect();
    assert_eq!(
        boxes,
        dataset()
            .annotations
            .iter()
            .map(|a| a.bbox)
            .collect::<Vec<_>>()
    );
    let difficult: Vec<bool> = back.annotations.iter().map(|a| a.difficult).collect();
    assert_eq!(difficult, [false, true, false]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn voc_as_the_devkit_writes_it() {
    let xml = r#"<annotation><folder>VOC2007</folder><filename>000005.jpg</filename>
        <size><width>500</width><height>375</height><depth>3</depth></size>
        <object><name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
          <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox></object>
        <object><name>chair</name><difficult>1</difficult>
          <bndbox><xmin>5</xmin><ymin>244</ymin><xmax>67</xmax><ymax>374</ymax></bndbox>
          <part><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part></object>
        </annotation>"#;
    let r = parse_voc(xml).unwrap();
    assert_eq!(
        (r.filename.as_str(), r.width, r.height),
        ("000005.jpg", 500, 375)
    );
    assert_eq!(r.objects.len(), 2, "a <part> is not an object");
    assert_eq!(
        r.objects[0],
        ("chair".to_string(), [262.0, 210.0, 62.0, 129.0], false)
    );
    assert!(r.objects[1].2);
}

fn err_of(r: Result<impl std::fmt::Debug, aics_detect::DetectError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_files_are_one_clear_error() {
    let d = tmp("bad");
    let p = d.join("gt.json");
    let write = |t: &str| std::fs::write(&p, t).unwrap();
    write("{not json");
    let e = err_of(read_coco(&p));
    assert!(
        e.contains("gt.json") && e.contains("not a COCO annotation file"),
        "{e}"
    );
    let base = |anns: &str| {
        format!(
            r#"{{"images":[{{"id":1,"file_name":"a","width":10,"height":10}}],"categories":[{{"id":1,"name":"x"}}],"annotations":[{anns}]}}"#
        )
    };
    for (anns, want) in [
        (
            r#"{"image_id":1,"category_id":9,"bbox":[0,0,1,1]}"#,
            "unknown category id 9",
        ),
        (
            r#"{"image_id":5,"category_id":1,"bbox":[0,0,1,1]}"#,
            "no image with that id",
        ),
        (
            r#"{"image_id":1,"category_id":1,"bbox":[0,0,0,3]}"#,
            "has no area",
        ),
        (
            r#"{"image_id":1,"category_id":1,"bbox":[8,8,5,5]}"#,
            "outside the 10×10 image",
        ),
    ] {
        write(&base(anns));
        let e = err_of(read_coco(&p));
        assert!(e.contains(want) && e.contains("gt.json"), "{e}");
    }
    // results that name unknown ids
    write(&base(""));
    let gt = read_coco(&p).unwrap();
    let r = d.join("dt.json");
    std::fs::write(
        &r,
        r#"[{"image_id":1,"category_id":2,"bbox":[0,0,1,1],"score":0.5}]"#,
    )
    .unwrap();
    assert!(err_of(read_results(&r, &gt)).contains("detection 0: unknown category id 2"));
    // VOC
    let v = d.join("voc");
    std::fs::create_dir_all(&v).unwrap();
    assert!(err_of(read_voc_dir(&v)).contains("no VOC .xml"));
    std::fs::write(
        v.join("1.xml"),
        "<annotation><filename>a</filename><size><width>5</width>",
    )
    .unwrap();
    assert!(err_of(read_voc_dir(&v)).contains("1.xml"));
    std::fs::write(v.join("1.xml"), "<annotation><filename>a</filename><size><width>w</width><height>5</height></size></annotation>").unwrap();
    assert!(err_of(read_voc_dir(&v)).contains("not a number"));
    assert!(err_of(read_coco(Path::new("/no/such/gt.json"))).contains("/no/such/gt.json"));
    let _ = std::fs::remove_dir_all(&d);
}

/// The DeepForest aerial photos' VOC files (fetched by set-up): 61, 37 and 279 tree boxes.
#[test]
#[ignore = "needs the DeepForest annotations fetched by scripts/setup.sh"]
fn deepforest_annotations_read() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/deepforest");
    assert!(
        dir.join("OSBS_029.xml").exists(),
        "{} is missing: run `bash scripts/setup.sh` first",
        dir.display()
    );
    let d = read_voc_dir(&dir).unwrap();
    let mut counts: Vec<usize> = d
        .images
        .iter()
        .map(|im| d.annotations.iter().filter(|a| a.image_id == im.id).count())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![37, 61, 279]);
    let names: Vec<&str> = d.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Alive", "Dead", "Tree"]);
}
