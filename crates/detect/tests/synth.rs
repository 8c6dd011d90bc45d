//! Synthetic detection scenes: exact boxes, reproducible from the seed, written as COCO and VOC
//! files that read back to the same boxes.

use aics_detect::data::{read_coco, read_voc_dir};
use aics_detect::synth::{scene, write_synth, FashionItems, SynthConfig};

fn fashion() -> FashionItems {
    // stand-in items (the test needs no data set): a filled 20×12 block per label
    let mut pixels = vec![0u8; 10 * 784];
    for l in 0..10 {
        for i in 4..24 {
            for j in 8..20 {
                pixels[l * 784 + i * 28 + j] = 200;
            }
        }
    }
    FashionItems {
        pixels,
        labels: (0..10).collect(),
    }
}

#[test]
fn boxes_are_the_tight_boxes_of_their_pixels() {
    let cfg = SynthConfig {
        classes: 15,
        images: 30,
        seed: 7,
        ..SynthConfig::default()
    };
    let f = fashion();
    let mut objects = 0;
    for i in 0..cfg.images {
        let s = scene(&cfg, i, Some(&f)).unwrap();
        assert!(!s.objects.is_empty());
        for (k, (class, b)) in s.objects.iter().enumerate() {
            assert!((1..=15).contains(class));
            assert!(
                b[0] >= 0.0 && b[1] >= 0.0 && b[0] + b[2] <= 256.0 && b[1] + b[3] <= 256.0,
                "{b:?}"
            );
            // the visible pixels of object k lie in its box; the topmost object's fill it exactly
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (p, &o) in s.owner.iter().enumerate() {
                if o as usize == k + 1 {
                    let (x, y) = (p % s.width, p / s.width);
                    assert!(
                        x as f64 >= b[0]
                            && (x as f64) < b[0] + b[2]
                            && y as f64 >= b[1]
                            && (y as f64) < b[1] + b[3]
                    );
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
            }
            if k + 1 == s.objects.len() {
                assert_eq!(
                    [
                        x0 as f64,
                        y0 as f64,
                        (x1 - x0 + 1) as f64,
                        (y1 - y0 + 1) as f64
                    ],
                    *b
                );
            }
            objects += 1;
        }
    }
    assert!(objects >= 60, "{objects}");
}

#[test]
fn scenes_follow_the_seed() {
    let cfg = SynthConfig {
        images: 3,
        seed: 3,
        ..SynthConfig::default()
    };
    let a = scene(&cfg, 2, None).unwrap();
    let b = scene(&cfg, 2, None).unwrap();
    assert_eq!(a.rgb, b.rgb);
    assert_eq!(a.objects, b.objects);
    let c = scene(&SynthConfig { seed: 4, ..cfg }, 2, None).unwrap();
    assert_ne!(a.rgb, c.rgb);
    // more than five classes need the items; sizes out of range are refused
    assert!(scene(&SynthConfig { classes: 6, ..cfg }, 0, None).is_err());
    assert!(scene(&SynthConfig { classes: 16, ..cfg }, 0, Some(&fashion())).is_err());
    assert!(scene(&SynthConfig { width: 16, ..cfg }, 0, None).is_err());
}

#[test]
fn files_read_back_to_the_same_boxes() {
    let dir = aics_testkit::TempDir::new("synth");
    let cfg = SynthConfig {
        images: 5,
        classes: 5,
        seed: 11,
        ..SynthConfig::default()
    };
    let d = write_synth(&dir, &cfg, None, |_| {}).unwrap();
    let coco = read_coco(&dir.join("annotations.json")).unwrap();
    assert_eq!(coco, d);
    let voc = read_voc_dir(&dir.join("voc")).unwrap();
    assert_eq!(voc.images.len(), 5);
    assert_eq!(voc.annotations.len(), d.annotations.len());
    for (a, b) in voc.annotations.iter().zip(&d.annotations) {
        assert_eq!(a.bbox, b.bbox);
        let name = |ds: &aics_detect::data::Dataset, id| {
            ds.categories
                .iter()
                .find(|c| c.id == id)
                .unwrap()
                .name
                .clone()
        };
        assert_eq!(name(&voc, a.category_id), name(&d, b.category_id));
    }
    assert!(dir.join("images/00005.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
