//! The inference path's per-layer caches: a convolution's weights kept in its kernel's layout
//! (packed panels for 1×1, Winograd-transformed filters for 3×3) give the plain op's output,
//! for each input size (the Winograd tile depends on it) and after the weights change.

use aics_nn::{Conv2d, Module};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{ConvParams, PackedWeights, Rng, Tensor};

fn plain(conv: &Conv2d, x: &Tensor) -> Vec<f32> {
    x.conv2d(&conv.weight, conv.bias.as_ref(), conv.params)
        .unwrap()
        .to_vec()
}

#[test]
fn cached_weights_follow_the_input_size_and_the_weights() {
    let mut rng = Rng::new(41);
    let p = ConvParams::default().padding(1);
    for (k, shapes) in [
        // 3×3, 64 channels: F4 at 64² (512 tiles; its filters are not kept), F2 at 44² (968
        // tiles), neither at 12²
        (
            3,
            vec![
                [2, 64, 64, 64],
                [2, 64, 44, 44],
                [1, 64, 12, 12],
                [2, 64, 64, 64],
            ],
        ),
        // 1×1: packed panels, whatever the size
        (1, vec![[2, 64, 9, 9], [1, 64, 20, 20]]),
    ] {
        let params = if k == 3 { p } else { ConvParams::default() };
        let mut conv = Conv2d::new(64, 64, k, params, true, &mut rng).unwrap();
        conv.prepare_inference().unwrap();
        for (i, shape) in shapes.iter().enumerate() {
            let x = Tensor::<f32>::randn(shape, 0.0, 1.0, &mut rng);
            let what = format!("{k}x{k} on {shape:?}");
            assert_close(
                &what,
                &conv.forward(&x).unwrap().to_vec(),
                &plain(&conv, &x),
                Tol::mixed(1e-5),
            );
            if i == 0 {
                // new weights: the cache is made again from them
                let w: Vec<f32> = conv
                    .weight
                    .to_vec()
                    .iter()
                    .map(|v| v * -1.5 + 0.01)
                    .collect();
                conv.weight.set_data(w).unwrap();
                let what = format!("{what}, new weights");
                assert_close(
                    &what,
                    &conv.forward(&x).unwrap().to_vec(),
                    &plain(&conv, &x),
                    Tol::mixed(1e-5),
                );
            }
        }
    }
}

#[test]
fn winograd_filters_are_made_for_the_tile_the_input_needs() {
    use aics_tensor::cpu::winograd::Tile;
    let mut rng = Rng::new(42);
    let p = ConvParams::default().padding(1);
    let w = Tensor::<f32>::randn(&[128, 128, 3, 3], 0.0, 0.1, &mut rng);
    // 4×4 tiles' filters (four times the weights) are not kept; 2×2 tiles' are
    assert!(PackedWeights::for_conv_input(&w, &p, &[2, 128, 64, 64]).is_none());
    let f2 = PackedWeights::for_conv_input(&w, &p, &[2, 128, 44, 44]).unwrap();
    assert_eq!(f2.winograd_tile(), Some(Tile::F2));
    assert!(f2.fits_input(w.shape(), &p, &[2, 128, 44, 44]));
    assert!(!f2.fits_input(w.shape(), &p, &[2, 128, 64, 64]));
    // no Winograd on a 12×12 map, nor with 2×2 tiles on 64 channels: the row kernel's weights
    // where it runs (AVX2 and up)
    let avx = aics_tensor::cpu::simd::level_name() != "base";
    let w64 = Tensor::<f32>::randn(&[64, 64, 3, 3], 0.0, 0.1, &mut rng);
    let mut cases = Vec::new();
    for (w, shape) in [(&w, [1, 128, 12, 12]), (&w64, [2, 64, 44, 44])] {
        let rows = PackedWeights::for_conv_input(w, &p, &shape);
        cases.extend(rows.clone().map(|r| (w.clone(), r, shape)));
        assert_eq!(rows.as_ref().and_then(|r| r.rows_lanes()).is_some(), avx);
        assert!(
            rows.is_none_or(|r| r.winograd_tile().is_none() && r.fits_input(w.shape(), &p, &shape))
        );
    }
    // filters made for F4 by hand run through the op with that tile
    let f4 = PackedWeights::winograd(&w.to_vec(), 128, 128, Tile::F4);
    // refused shapes give no packing, not a panic
    assert!(PackedWeights::for_conv_input(&w, &p, &[2, 3, 64, 64]).is_none());
    cases.push((w.clone(), f4, [2, 128, 64, 64]));
    cases.push((w.clone(), f2, [2, 128, 44, 44]));
    for (w, pw, shape) in &cases {
        let x = Tensor::<f32>::randn(shape, 0.0, 1.0, &mut rng);
        let b = Tensor::<f32>::randn(&[w.shape()[0]], 0.0, 1.0, &mut rng);
        let act = aics_tensor::Activation::Relu;
        let want = x.conv2d_fused(w, Some(&b), p, act, None).unwrap();
        let got = x
            .conv2d_fused_packed(w, pw, Some(&b), p, act, None)
            .unwrap();
        assert_close(
            &format!("{shape:?}"),
            &got.to_vec(),
            &want.to_vec(),
            Tol::mixed(1e-5),
        );
    }
}
