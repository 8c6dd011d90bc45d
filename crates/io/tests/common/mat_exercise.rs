//! Shared by the MAT mutation test and the MAT fuzz target.

use aics_io::MatValue;

/// Walks a value and calls the helpers, which must not panic either.
pub fn exercise(v: &MatValue) {
    v.walk(&mut |v| {
        if let MatValue::Numeric(a) | MatValue::Logical(a) = v {
            // Documented to panic only if data and dims disagree, which the reader rules out.
            let (_, r) = a.to_row_major_f32();
            assert_eq!(r.len(), a.numel());
        }
        let _ = v.field("name");
    });
}
