//! ONNX models: the hand-written protobuf reader (varints, lengths, nesting, packed and
//! unpacked repeated fields), the model, graph, node, attribute and tensor messages, then
//! what `aics onnx check` does with a decoded model and every initializer's conversion.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = aics_onnx::decode_model(data) {
        let report = aics_onnx::check::check(&model);
        assert_eq!(report.nodes, model.graph.nodes.len());
        for t in &model.graph.initializers {
            // a conversion that succeeds agrees with the tensor's dims
            if let (Ok(n), Ok(v)) = (t.numel(), t.to_f32()) {
                assert_eq!(n, v.len());
            }
        }
    }
    if let Ok(t) = aics_onnx::decode_tensor(data) {
        if let (Ok(n), Ok(v)) = (t.numel(), t.to_i64()) {
            assert_eq!(n, v.len());
        }
    }
});
