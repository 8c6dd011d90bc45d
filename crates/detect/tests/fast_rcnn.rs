//! Fast R-CNN end to end on one synthetic picture: the multi-task loss with selective search's
//! proposals is finite and falls as the network trains on it, and detection then finds the
//! object it was trained on.

use aics_detect::faster_rcnn::{FastRcnn, Target};
use aics_detect::selective_search::{fast_strategies, selective_search, RgbView};
use aics_nn::optim::Optimizer;
use aics_nn::{parameters, Adam, Module};
use aics_tensor::{Rng, Tensor};

#[test]
fn fast_rcnn_learns_one_picture() {
    let s = 64;
    // a red square on a grey background, and a blue bar
    let mut px = vec![120u8; s * s * 3];
    for y in 0..s {
        for x in 0..s {
            let c = if (10..34).contains(&x) && (12..36).contains(&y) {
                Some([220, 30, 30])
            } else if (40..60).contains(&x) && (44..54).contains(&y) {
                Some([30, 30, 220])
            } else {
                None
            };
            if let Some(c) = c {
                px[(y * s + x) * 3..(y * s + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    }
    let view = RgbView {
        width: s,
        height: s,
        pixels: &px,
    };
    let props = selective_search(&view, &fast_strategies(), 0).unwrap();
    assert!(props.len() >= 3, "{props:?}");
    let p = &px;
    let img = Tensor::from_vec(
        (0..3)
            .flat_map(|c| (0..s * s).map(move |i| p[i * 3 + c] as f32 / 255.0))
            .collect(),
        &[3, s, s],
    )
    .unwrap();
    let target = Target {
        boxes: vec![[10.0, 12.0, 34.0, 36.0], [40.0, 44.0, 60.0, 54.0]],
        labels: vec![1, 2],
    };
    let m = FastRcnn::small(3, s, 1).unwrap();
    m.set_training(true);
    let mut opt = Adam::new(parameters(&m)).lr(1e-3);
    let mut rng = Rng::new(0);
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..30 {
        opt.zero_grad();
        let (c, b) = m
            .losses(
                std::slice::from_ref(&img),
                std::slice::from_ref(&props),
                std::slice::from_ref(&target),
                &mut rng,
            )
            .unwrap();
        let l = c.add(&b).unwrap();
        last = l.to_vec()[0] as f64;
        assert!(last.is_finite());
        first.get_or_insert(last);
        l.backward().unwrap();
        opt.step().unwrap();
    }
    let first = first.unwrap();
    assert!(last < 0.5 * first, "loss {first} → {last}");
    m.set_training(false);
    let _g = aics_tensor::no_grad();
    let d = m
        .detect(std::slice::from_ref(&img), std::slice::from_ref(&props))
        .unwrap();
    let best = d[0]
        .labels
        .iter()
        .zip(&d[0].scores)
        .find(|(&l, _)| l == 1)
        .map(|(_, &sc)| sc);
    assert!(best.is_some_and(|sc| sc > 0.5), "{:?}", d[0]);
}
