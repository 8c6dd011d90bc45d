//! Darknet files: the bytes as a cfg (built into a network when it parses), and the same bytes
//! as a `.weights` file for a small fixed network.
#![no_main]

use aics_detect::darknet::Darknet;
use libfuzzer_sys::fuzz_target;

const NET: &str = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=2\nsize=3\npad=1\nactivation=leaky\n[maxpool]\nsize=2\nstride=2\n[connected]\noutput=3\nactivation=linear\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(net) = Darknet::from_cfg(&text) {
        assert_eq!(net.shapes.len(), net.layers.len());
    }
    if let Ok(net) = Darknet::from_cfg(NET) {
        let _ = net.load_weights_bytes(data);
    }
});
