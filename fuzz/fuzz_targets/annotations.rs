//! Detection annotations: COCO annotation JSON (then validation), a COCO results file checked
//! against it, and a Pascal VOC XML record, all from the same bytes read as text.
#![no_main]

use aics_detect::data::{parse_coco, parse_results, parse_voc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(gt) = parse_coco(&text) {
        assert!(gt.validate().is_ok());
        if let Ok(dets) = parse_results(&text, &gt) {
            assert!(dets.iter().all(|d| d.score.is_finite()));
        }
    }
    if let Ok(r) = parse_voc(&text) {
        assert!(r.objects.iter().all(|o| o.1.iter().all(|v| !v.is_nan())));
    }
});
