//! Training checkpoints (safetensors): header JSON, metadata, tensor table, and the
//! F32/F64/I64 -> f32 conversion of `aics_nn::checkpoint`.
#![no_main]

use std::path::Path;

use aics_nn::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = Checkpoint::from_bytes(data, Path::new("fuzz.safetensors")) {
        for (shape, values) in ck.tensors.values() {
            assert_eq!(shape.iter().product::<usize>(), values.len());
        }
        let _ = ck.model_tensors();
        let _ = ck.optimizer_state();
    }
});
