use aics_tensor::{no_grad, Activation, ConvParams, PackedWeights, Rng, Tensor};
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let _g = no_grad();
    let mut rng = Rng::new(0);
    let x = Tensor::<f32>::randn(&[1, 64, 56, 56], 0.0, 1.0, &mut rng);
    let w = Tensor::<f32>::randn(&[256, 64, 1, 1], 0.0, 0.05, &mut rng);
    let b = Tensor::<f32>::randn(&[256], 0.0, 0.05, &mut rng);
    let p = ConvParams::default();
    let pw = PackedWeights::for_conv(&w, &p).unwrap();
    let r = x.conv2d(&w, None, p).unwrap();
    for act in [Activation::Identity, Activation::Relu] {
        for res in [false, true] {
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                let y = x
                    .conv2d_fused_packed(&w, &pw, Some(&b), p, act, res.then_some(&r))
                    .unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                drop(y);
            }
            println!("{act:?} residual {res}: {:.3} ms", best * 1e3);
        }
    }
}
