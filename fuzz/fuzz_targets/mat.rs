//! MATLAB MAT-files v5 (both byte orders, `miCOMPRESSED` zlib streams, cells, structs, char
//! data), then the MatConvNet simplenn interpretation of whatever variables were read.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/io/tests/common/mat_exercise.rs"]
mod mat_exercise;
use mat_exercise::exercise;

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
