//! Why gradients vanish or explode through time, measured: the norm of ∂L/∂h₀ of a one-layer
//! recurrent network as the sequence grows (L = Σ h_T, or Σ c_T for the LSTM), with recurrent
//! weights W = s·P (P a permutation, so every singular value is s): a tanh RNN with s = 0.5
//! vanishes like 0.5^T, a ReLU RNN with s = 1.5 explodes like 1.5^T, and the LSTM's cell state
//! carries the gradient as far as its forget gate lets it (f ≈ 0.5 with no bias, 0.95 with a
//! bias of 3). Then one exploding gradient clipped by its global norm.
//!
//!     cargo run --release -p aics-nn --example bptt_gradients

use aics_nn::clip_grad_norm;
use aics_tensor::{Cell, RecurrentOpts, Rng, Tensor};

/// `scale` times a random permutation matrix: orthogonal and non-negative, so a ReLU network
/// with positive input keeps every unit active and the products are plain powers of `scale`.
fn scaled_permutation(n: usize, scale: f64, rng: &mut Rng) -> Vec<f32> {
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    let mut w = vec![0f32; n * n];
    for (i, &j) in p.iter().enumerate() {
        w[i * n + j] = scale as f32;
    }
    w
}

/// ‖∂(Σ h_T)/∂h₀‖ after `t` steps of `cell` with a small constant input (and, for the LSTM,
/// `forget` added to the forget gate's input, as a forget-gate bias does).
pub fn grad_norm(cell: Cell, h: usize, scale: f64, t: usize, forget: f32) -> f32 {
    let mut rng = Rng::new(7);
    let g = cell.gates();
    let mut w = Vec::new();
    for _ in 0..g {
        w.extend(scaled_permutation(h, scale, &mut rng));
    }
    let whh = Tensor::from_vec(w, &[g * h, h]).expect("shape");
    let mut x = vec![0.05f32; t * g * h];
    if g == 4 {
        for s in 0..t {
            x[s * g * h + h..s * g * h + 2 * h].fill(forget);
        }
    }
    let xp = Tensor::from_vec(x, &[t, 1, g * h]).expect("shape");
    let h0 = Tensor::rand(&[1, h], 0.1, 1.0, &mut rng).requires_grad_(true);
    let out = xp
        .recurrent(cell, &h0, &whh, RecurrentOpts::default())
        .expect("recurrent");
    // through the cell state for the LSTM: its h reads c through the output gate
    let last = out.c_n.unwrap_or(out.h_n);
    last.sum().backward().expect("backward");
    let gv = h0.grad().expect("grad").to_vec();
    gv.iter().map(|v| v * v).sum::<f32>().sqrt()
}

fn main() {
    let lstm = Cell::Lstm {
        peephole: false,
        coupled: false,
    };
    println!("steps  tanh RNN, W=0.5P  ReLU RNN, W=1.5P  LSTM, forget 0.5  LSTM, forget 0.95");
    for t in [1, 5, 10, 20, 40, 80] {
        println!(
            "{t:>5}  {:>16.3e}  {:>16.3e}  {:>16.3e}  {:>17.3e}",
            grad_norm(Cell::RnnTanh, 32, 0.5, t, 0.0),
            grad_norm(Cell::RnnRelu, 32, 1.5, t, 0.0),
            grad_norm(lstm, 32, 1.0, t, 0.0),
            grad_norm(lstm, 32, 1.0, t, 3.0)
        );
    }
    // clipping: the exploding gradient of the recurrent weight, rescaled to norm 1
    let mut rng = Rng::new(1);
    let h = 32;
    let whh = Tensor::from_vec(scaled_permutation(h, 1.5, &mut rng), &[h, h])
        .expect("shape")
        .requires_grad_(true);
    let xp = Tensor::full(&[40, 1, h], 0.05);
    let h0 = Tensor::rand(&[1, h], 0.1, 1.0, &mut rng);
    let out = xp
        .recurrent(Cell::RnnRelu, &h0, &whh, RecurrentOpts::default())
        .expect("recurrent");
    out.h_n.sum().backward().expect("backward");
    let before = clip_grad_norm(&[("w_hh".to_string(), whh.clone())], 1.0);
    let after: f32 = whh
        .grad()
        .expect("grad")
        .to_vec()
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    println!("ReLU RNN, 40 steps: |dL/dW_hh| = {before:.3e}, clipped to {after:.3}");
}
