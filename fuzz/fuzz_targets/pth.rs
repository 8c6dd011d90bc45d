//! PyTorch checkpoints: the zip container (torch >= 1.6) and the legacy pickle stream, through
//! the non-executing unpickler, storage lookup and strided view materialisation.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = aics_io::load_pth_bytes(data, Path::new("fuzz.pth")) {
        for (_, t) in &entries {
            // The reader promises shape and data agree.
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
    }
});
