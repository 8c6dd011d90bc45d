//! `aics-bench-tract [FILTER]`: the ONNX workloads of `aics bench` (torchvision's exports
//! that bench/export_onnx.py writes into .cache/onnx-bench) in tract, one JSON line each, named
//! WORKLOAD@tract: the median seconds of at least 5 runs and 1 s after 2 warm-up runs, as
//! `aics bench` times. tract runs on one thread.

use std::time::Instant;

use tract_onnx::prelude::*;

const WORKLOADS: [(&str, &str); 2] = [
    ("onnx_resnet50_b1", "resnet50.onnx"),
    ("onnx_mobilenet_v2_b1", "mobilenet_v2.onnx"),
];

fn main() -> TractResult<()> {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnx-bench");
    for (name, file) in WORKLOADS {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let path = root.join(file);
        if !path.exists() {
            eprintln!("{name}@tract: {} not found (bench/export_onnx.py); skipped", path.display());
            continue;
        }
        let model = tract_onnx::onnx()
            .model_for_path(&path)?
            .with_input_fact(0, f32::fact([1, 3, 224, 224]).into())?
            .into_optimized()?
            .into_runnable()?;
        let x: Tensor = tract_ndarray::Array4::<f32>::from_shape_fn((1, 3, 224, 224), |(_, c, y, x)| {
            ((c * 7 + y * 3 + x) % 17) as f32 / 17.0 - 0.5
        })
        .into();
        for _ in 0..2 {
            model.run(tvec!(x.clone().into()))?;
        }
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < 5 || (start.elapsed().as_secs_f64() < 1.0 && times.len() < 200) {
            let t = Instant::now();
            model.run(tvec!(x.clone().into()))?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let s = times[times.len() / 2];
        println!(
            "{{\"workload\": \"{name}@tract\", \"seconds\": {s}, \"reps\": {}, \"images_s\": {}, \"threads\": 1}}",
            times.len(),
            1.0 / s
        );
    }
    Ok(())
}
