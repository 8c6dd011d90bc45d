//! NumPy `.npz` archives and bare `.npy` arrays: the zip container, the header's dict, dtypes,
//! byte and memory orders.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = aics_io::npz::load_npz_bytes(data, Path::new("fuzz.npz")) {
        for (_, t) in &entries {
            // The reader promises shape and data agree.
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
    }
    if let Ok(t) = aics_io::npz::parse_npy(data) {
        assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
    }
});
