//! The example `bptt_gradients` as a check: gradients through time vanish for the contracting
//! tanh RNN, explode for the expanding ReLU RNN, survive in the LSTM's cell state as long as the
//! forget gate stays near 1, and clipping by global norm bounds the exploding one.

#[allow(dead_code)]
#[path = "../examples/bptt_gradients.rs"]
mod example;

use aics_tensor::Cell;
use example::grad_norm;

#[test]
fn gradients_vanish_explode_and_are_carried() {
    let lstm = Cell::Lstm {
        peephole: false,
        coupled: false,
    };
    let ratio = |cell, s, f| grad_norm(cell, 32, s, 40, f) / grad_norm(cell, 32, s, 1, f);
    let tanh = ratio(Cell::RnnTanh, 0.5, 0.0);
    let relu = ratio(Cell::RnnRelu, 1.5, 0.0);
    let lstm_short = ratio(lstm, 1.0, 0.0);
    let lstm_long = ratio(lstm, 1.0, 3.0);
    assert!(tanh.is_finite() && tanh < 1e-9, "tanh {tanh}");
    assert!(relu.is_finite() && relu > 1e6, "relu {relu}");
    assert!(
        lstm_short.is_finite() && lstm_short < 1e-2,
        "lstm, forget 0.5: {lstm_short}"
    );
    assert!(
        lstm_long.is_finite() && lstm_long > 0.5,
        "lstm, forget 0.95: {lstm_long}"
    );
}
