use aics_detect::darknet::{Darknet, Layer};
use aics_tensor::{PoolParams, Tensor};
use std::time::Instant;
#[test]
fn prof() {
    let net = Darknet::read_cfg(std::path::Path::new(
        "/work/main/.cache/weights/yolov3-tiny.cfg",
    ))
    .unwrap();
    net.load_weights(std::path::Path::new(
        "/work/main/.cache/weights/yolov3-tiny.weights",
    ))
    .unwrap();
    let net = net.fused().unwrap();
    let _g = aics_tensor::no_grad();
    let x = Tensor::from_vec(vec![0.5f32; 3 * 416 * 416], &[1, 3, 416, 416]).unwrap();
    let mut outs: Vec<Tensor> = vec![];
    let mut acc = vec![(0f64, 0f64); 24];
    for rep in 0..8 {
        outs.clear();
        for (i, l) in net.layers.iter().enumerate() {
            let input = if i == 0 { &x } else { &outs[i - 1] };
            let t = Instant::now();
            let mut tc = 0.0;
            let y = match l {
                Layer::Conv(c) => {
                    let p = c.conv.unwrap();
                    let t2 = Instant::now();
                    let y = input.conv2d(&c.weight, Some(&c.bias), p).unwrap();
                    tc = t2.elapsed().as_secs_f64();
                    if matches!(c.activation, aics_detect::darknet::Activation::Leaky) {
                        y.leaky_relu(0.1)
                    } else {
                        y
                    }
                }
                Layer::MaxPool { size, stride, .. } => {
                    if *stride == 1 {
                        input
                            .pad(&[(0, 0), (0, 0), (0, 1), (0, 1)], f64::NEG_INFINITY)
                            .unwrap()
                            .max_pool2d(PoolParams::new(*size).stride(*stride))
                            .unwrap()
                    } else {
                        input
                            .max_pool2d(PoolParams::new(*size).stride(*stride))
                            .unwrap()
                    }
                }
                Layer::Route(idx) => {
                    let ts: Vec<&Tensor> = idx.iter().map(|&j| &outs[j]).collect();
                    if ts.len() == 1 {
                        ts[0].clone()
                    } else {
                        Tensor::concat(&ts, 1).unwrap()
                    }
                }
                Layer::Upsample { stride, .. } => {
                    let s = input.shape().to_vec();
                    input
                        .upsample(s[2] * stride, s[3] * stride, aics_tensor::Interp::Nearest)
                        .unwrap()
                }
                _ => input.clone(),
            };
            if rep >= 3 {
                acc[i].0 += t.elapsed().as_secs_f64() / 5.0;
                acc[i].1 += tc / 5.0;
            }
            outs.push(y);
        }
    }
    let mut tot = 0.0;
    for (i, l) in net.layers.iter().enumerate() {
        let sh = &net.shapes[i];
        let flops = if let Layer::Conv(c) = l {
            2.0 * c.weight.numel() as f64 * (sh.1 * sh.2) as f64
        } else {
            0.0
        };
        println!(
            "{i:2} {:<14} {:?} {:.2} ms (conv {:.2} ms, {:.0} GFLOP/s)",
            l.kind(),
            sh,
            acc[i].0 * 1e3,
            acc[i].1 * 1e3,
            flops / acc[i].1.max(1e-9) / 1e9
        );
        tot += acc[i].0;
    }
    println!("total {:.1} ms", tot * 1e3);
}
