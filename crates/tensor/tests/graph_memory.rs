//! What an autograd graph keeps alive: each op's node holds only what its backward reads.
//! One test in this binary, so that no other test allocates while it counts.

use aics_tensor::{ConvParams, Rng, Tensor};
use aics_testkit::alloc::{live, Counting};

#[global_allocator]
static A: Counting = Counting;

/// Bytes that `f`'s result keeps alive: what dropping it frees. (Measured by the drop, not by
/// growth since the call, so that buffers a kernel keeps per thread, such as the GEMM's packing
/// space on a worker's first use, do not count.)
fn held<R>(f: impl FnOnce() -> R) -> usize {
    let r = f();
    let with = live();
    drop(r);
    with.saturating_sub(live())
}

#[test]
fn graph_keeps_only_what_backward_reads() {
    let mut rng = Rng::new(1);
    let (n, c, h, w) = (2, 16, 24, 24);
    let s = n * c * h * w * 4; // bytes of one activation
    let x = Tensor::<f32>::randn(&[n, c, h, w], 0.0, 1.0, &mut rng).requires_grad_(true);
    // frozen weights: the convolutions keep neither their input nor unfolded columns
    let w1 = Tensor::<f32>::randn(&[c, c, 3, 3], 0.0, 0.1, &mut rng);
    let w2 = Tensor::<f32>::randn(&[c, c, 3, 3], 0.0, 0.1, &mut rng);
    let p = ConvParams::default().padding(1);
    let block = || -> Tensor<f32> {
        // a residual block: relu(conv2(relu(conv1(x))) + x)
        let h1 = x.conv2d(&w1, None, p).unwrap().relu();
        let y2 = x.add(&h1.conv2d(&w2, None, p).unwrap()).unwrap();
        y2.relu().sum()
    };
    let _ = block(); // the thread pool and allocator caches are set up before counting

    // add and sub keep nothing: a + b − b, with a and b dropped, holds only its own output
    let bytes = held(|| {
        let (a, b) = (x.mul_scalar(2.0), x.mul_scalar(3.0));
        a.add(&b).unwrap().sub(&b).unwrap()
    });
    assert!(
        (s..s + s / 4).contains(&bytes),
        "a + b − b holds {bytes} bytes (its output is {s}); the operands were kept"
    );

    // the residual block holds the two ReLU outputs (each ReLU's backward reads its output)
    // and nothing else: not the second convolution's output, which only the add used
    let bytes = held(block);
    assert!(
        (2 * s..2 * s + s / 4).contains(&bytes),
        "the residual block's graph holds {bytes} bytes; two activations are {}",
        2 * s
    );
    eprintln!(
        "residual block graph: {bytes} bytes held ({:.2} activations)",
        bytes as f64 / s as f64
    );
    // a trainable convolution holds its input (for the weight gradient) beside its output, and
    // not its unfolded input (nine times the input here), which the backward pass forms again
    let wt = w1.detach().requires_grad_(true);
    let xi = x.detach();
    let bytes = held(|| xi.conv2d(&wt, None, p).unwrap());
    assert!(
        (s..2 * s + s / 4).contains(&bytes),
        "a trainable convolution holds {bytes} bytes; its input and output are {}",
        2 * s
    );

    // and the graph still back-propagates
    block().backward().unwrap();
    assert!(x
        .grad()
        .is_some_and(|g| g.to_vec().iter().all(|v| v.is_finite())));
}
