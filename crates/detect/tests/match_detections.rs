//! `boxes::match_detections`, which export checks and tests use to compare two detectors'
//! outputs: order among detections does not matter, labels do, and a non-finite value fails.

use aics_detect::boxes::match_detections;

#[test]
fn detections_match_in_any_order_and_nan_fails() {
    let boxes = [0.0, 0.0, 10.0, 10.0, 5.0, 5.0, 20.0, 30.0];
    let (scores, labels) = ([0.9, 0.8], [1.0, 2.0]);
    // the same two, swapped, one box 0.03 px off: 0.03 / 30 of the largest coordinate
    let swapped = [5.0, 5.0, 20.0, 30.03, 0.0, 0.0, 10.0, 10.0];
    let d = match_detections(
        (&boxes, &scores, &labels),
        (&swapped, &[0.8, 0.9], &[2.0, 1.0]),
    )
    .unwrap();
    assert!((d - 0.001).abs() < 1e-6, "{d}");
    // a partner of another label
    assert!(match_detections(
        (&boxes, &scores, &labels),
        (&swapped, &[0.8, 0.9], &[1.0, 1.0])
    )
    .is_err());
    // a count that differs
    assert!(match_detections((&boxes, &scores, &labels), (&boxes[..4], &[0.9], &[1.0])).is_err());
    // NaN in a box or a score, on either side
    let mut nan = boxes;
    nan[6] = f32::NAN;
    let e = match_detections((&boxes, &scores, &labels), (&nan, &scores, &labels)).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
    assert!(match_detections((&nan, &scores, &labels), (&boxes, &scores, &labels)).is_err());
    assert!(match_detections(
        (&boxes, &[0.9, f32::NAN], &labels),
        (&boxes, &scores, &labels)
    )
    .is_err());
    assert!(match_detections(
        (&boxes, &scores, &labels),
        (&boxes, &[f32::INFINITY, 0.8], &labels)
    )
    .is_err());
}
