//! MATLAB MAT-files v5 (both byte orders, `miCOMPRESSED` zlib streams, cells, structs, char
//! data), then the MatConvNet simplenn interpretation of whatever variables were read.
#![no_main]

use std::path::Path;

use aics_io::MatValue;
use libfuzzer_sys::fuzz_target;

/// Walks a value and calls the helpers, which must not panic either.
fn exercise(v: &MatValue) {
    match v {
        MatValue::Numeric(a) | MatValue::Logical(a) => {
            // Documented to panic only if data and dims disagree, which the reader rules out.
            let (_, r) = a.to_row_major_f32();
            assert_eq!(r.len(), a.numel());
        }
        MatValue::Char(_) => {}
        MatValue::Cell { items, .. } => items.iter().for_each(exercise),
        MatValue::Struct { elems, .. } => elems.iter().flatten().for_each(exercise),
    }
    let _ = v.field("name");
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.mat");
    if let Ok(values) = aics_io::load_mat_bytes(data, path) {
        values.iter().for_each(|(_, v)| exercise(v));
        if let Ok(model) = aics_io::matconvnet_simplenn(&values, path) {
            for c in &model.convs {
                let n = c.weight.shape.iter().product::<usize>();
                assert_eq!(n, c.weight.data.len());
                assert_eq!(c.bias.shape.iter().product::<usize>(), c.bias.data.len());
            }
        }
    }
});
