//! Box-aware transforms: after each one, the boxes still fit the objects in the image. Objects
//! are bright rectangles on black; a box fits when the pixels well inside it are bright and a
//! ring just outside it is dark.

use aics_detect::transforms::{
    color_jitter, crop, hflip, letterbox, random_crop, resize, resize_keep_ratio, Sample,
};
use aics_tensor::{Rng, Tensor};

fn scene() -> Sample {
    let (h, w) = (60, 90);
    let boxes = vec![
        [10.0f32, 8.0, 34.0, 30.0],
        [50.0, 20.0, 80.0, 52.0],
        [2.0, 40.0, 14.0, 58.0],
    ];
    let mut img = vec![0.0f32; 3 * h * w];
    for (k, b) in boxes.iter().enumerate() {
        for c in 0..3 {
            for y in b[1] as usize..b[3] as usize {
                for x in b[0] as usize..b[2] as usize {
                    img[(c * h + y) * w + x] = 0.6 + 0.1 * k as f32;
                }
            }
        }
    }
    Sample::new(
        Tensor::from_vec(img, &[3, h, w]).unwrap(),
        boxes,
        vec![0, 1, 2],
    )
    .unwrap()
}

/// Every box's inside (shrunk by `m` pixels) is bright and its ring (grown by `m`, outside the
/// other boxes) is dark, on channel 0.
fn boxes_fit(s: &Sample, m: f32, what: &str) {
    let (h, w) = s.size();
    let d = s.image.to_vec();
    let at = |x: usize, y: usize| d[y * w + x];
    let inside = |b: &[f32; 4], x: f32, y: f32| x >= b[0] && x < b[2] && y >= b[1] && y < b[3];
    assert!(!s.boxes.is_empty(), "{what}: no boxes left");
    for (i, b) in s.boxes.iter().enumerate() {
        assert!(b[0] < b[2] && b[1] < b[3], "{what}: box {i} {b:?} is empty");
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let core = [b[0] + m, b[1] + m, b[2] - m, b[3] - m];
                let grown = [b[0] - m, b[1] - m, b[2] + m, b[3] + m];
                if inside(&core, px, py) {
                    assert!(
                        at(x, y) > 0.45,
                        "{what}: box {i} {b:?}: ({x}, {y}) inside is dark"
                    );
                } else if !inside(&grown, px, py)
                    && !s
                        .boxes
                        .iter()
                        .any(|o| inside(&[o[0] - m, o[1] - m, o[2] + m, o[3] + m], px, py))
                    && (px - b[0] + m).abs().min((px - b[2] - m).abs()) < 2.0
                    && py > b[1] - m - 2.0
                    && py < b[3] + m + 2.0
                {
                    assert!(
                        at(x, y) < 0.15,
                        "{what}: box {i} {b:?}: ({x}, {y}) just outside is bright"
                    );
                }
            }
        }
    }
}

#[test]
fn boxes_follow_their_objects() {
    let s = scene();
    boxes_fit(&s, 0.0, "original");
    boxes_fit(&hflip(&s).unwrap(), 0.0, "hflip");
    boxes_fit(&resize(&s, 45, 120).unwrap(), 1.5, "resize");
    let r = resize_keep_ratio(&s, 40, 1000).unwrap();
    assert_eq!(r.size(), (40, 60));
    boxes_fit(&r, 1.5, "resize keeping the ratio");
    let (l, map) = letterbox(&s, 64, 0.0).unwrap();
    assert_eq!(l.size(), (64, 64));
    boxes_fit(&l, 1.5, "letterbox");
    for (b, o) in l.boxes.iter().zip(&s.boxes) {
        let back = map.unmap(*b);
        assert!(
            back.iter().zip(o).all(|(a, b)| (a - b).abs() < 1e-3),
            "{back:?} vs {o:?}"
        );
    }
    let c = crop(&s, 5, 20, 40, 60, 0.3).unwrap();
    // the first box is cut to its right part, the third is outside the window and dropped
    assert_eq!(c.labels, vec![0, 1]);
    boxes_fit(&c, 0.0, "crop");
    let mut rng = Rng::new(3);
    for i in 0..20 {
        let rc = random_crop(&s, 0.6, 0.5, &mut rng).unwrap();
        if !rc.boxes.is_empty() {
            boxes_fit(&rc, 0.0, &format!("random crop {i}"));
        }
        assert_eq!(rc.boxes.len(), rc.labels.len());
    }
    let j = color_jitter(&s, 0.2, &mut rng).unwrap();
    assert_eq!(j.boxes, s.boxes);
    assert!(j.image.to_vec().iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn bad_arguments_are_errors() {
    let s = scene();
    assert!(crop(&s, 50, 0, 20, 10, 0.5).is_err());
    assert!(resize(&s, 0, 10).is_err());
    assert!(letterbox(&s, 0, 0.5).is_err());
    assert!(Sample::new(Tensor::zeros(&[3, 4, 4]), vec![[0.0; 4]], vec![]).is_err());
    assert!(Sample::new(Tensor::zeros(&[4, 4]), vec![], vec![]).is_err());
}
