//! The fused recurrent op against its step-by-step reference built from the primitives: outputs,
//! final states and every input's gradient, for each cell, both directions and variable lengths.
//! (Finite differences of the fused op are in `gradcheck.rs`.)

use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{Cell, RecurrentOpts, Rng, Tensor};

struct Case {
    cell: Cell,
    h: usize,
    p: usize,
    lengths: Option<Vec<usize>>,
    reverse: bool,
}

/// Output, h_n, c_n and the gradients of all inputs of `L = Σ r ⊙ [output | h_n | c_n]`.
fn run(c: &Case, fused: bool, seed: u64) -> Vec<(String, Vec<f64>)> {
    let (t, n) = (5, 3);
    let gh = c.cell.gates() * c.h;
    let mut rng = Rng::new(seed);
    let mut leaf =
        |s: &[usize], sd: f64| Tensor::<f64>::randn(s, 0.0, sd, &mut rng).requires_grad_(true);
    let xp = leaf(&[t, n, gh], 1.0);
    let h0 = leaf(&[n, c.p], 1.0);
    let whh = leaf(&[gh, c.p], 0.5);
    let bhh = leaf(&[gh], 0.5);
    let c0 = leaf(&[n, c.h], 1.0);
    let peep = leaf(&[c.cell.peepholes().max(1), c.h], 0.5);
    let whr = leaf(&[c.p, c.h], 0.5);
    let opts = RecurrentOpts {
        b_hh: Some(&bhh),
        c0: c.cell.has_c().then_some(&c0),
        peephole: (c.cell.peepholes() > 0).then_some(&peep),
        w_hr: (c.p < c.h).then_some(&whr),
        lengths: c.lengths.as_deref(),
        reverse: c.reverse,
    };
    let out = if fused {
        xp.recurrent(c.cell, &h0, &whh, opts).unwrap()
    } else {
        xp.recurrent_reference(c.cell, &h0, &whh, opts).unwrap()
    };
    let mut parts = vec![
        out.output.reshape(&[t * n * c.p]).unwrap(),
        out.h_n.reshape(&[n * c.p]).unwrap(),
    ];
    if let Some(cn) = &out.c_n {
        parts.push(cn.reshape(&[n * c.h]).unwrap());
    }
    let refs: Vec<&Tensor<f64>> = parts.iter().collect();
    let all = Tensor::concat(&refs, 0).unwrap();
    let r = Tensor::<f64>::rand(all.shape(), -1.0, 1.0, &mut Rng::new(99));
    all.mul(&r).unwrap().sum().backward().unwrap();
    let mut res = vec![("values".to_string(), all.to_vec())];
    for (name, x) in [
        ("xp", &xp),
        ("h0", &h0),
        ("w_hh", &whh),
        ("b_hh", &bhh),
        ("c0", &c0),
        ("peephole", &peep),
        ("w_hr", &whr),
    ] {
        res.push((
            name.to_string(),
            x.grad().map(|g| g.to_vec()).unwrap_or_default(),
        ));
    }
    res
}

fn cases() -> Vec<Case> {
    let lstm = |peephole, coupled| Cell::Lstm { peephole, coupled };
    let mut v = Vec::new();
    for (cell, h, p) in [
        (Cell::RnnTanh, 4, 4),
        (Cell::RnnRelu, 4, 4),
        (lstm(false, false), 4, 4),
        (lstm(true, false), 4, 4),
        (lstm(false, true), 4, 4),
        (lstm(true, true), 4, 4),
        (lstm(false, false), 4, 3),
        (lstm(true, false), 5, 2),
        (Cell::Gru { reset_after: true }, 4, 4),
        (Cell::Gru { reset_after: false }, 4, 4),
    ] {
        for (lengths, reverse) in [
            (None, false),
            (None, true),
            (Some(vec![5, 2, 4]), false),
            (Some(vec![1, 5, 3]), true),
        ] {
            v.push(Case {
                cell,
                h,
                p,
                lengths,
                reverse,
            });
        }
    }
    v
}

#[test]
fn fused_equals_the_step_by_step_reference() {
    for (k, c) in cases().iter().enumerate() {
        let want = run(c, false, k as u64);
        let got = run(c, true, k as u64);
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{:?} {name}", c.cell);
            assert_close(
                &format!(
                    "{:?} p={} {:?} rev={} {name}",
                    c.cell, c.p, c.lengths, c.reverse
                ),
                g,
                w,
                Tol::mixed(1e-10),
            );
        }
    }
}

#[test]
fn ended_sequences_output_zero_and_keep_their_last_state() {
    let cell = Cell::Gru { reset_after: true };
    let (t, n, h) = (4, 2, 3);
    let mut rng = Rng::new(5);
    let xp = Tensor::<f32>::randn(&[t, n, 3 * h], 0.0, 1.0, &mut rng);
    let h0 = Tensor::<f32>::zeros(&[n, h]);
    let whh = Tensor::<f32>::randn(&[3 * h, h], 0.0, 0.5, &mut rng);
    let lengths = [4, 2];
    let opts = RecurrentOpts {
        lengths: Some(&lengths),
        ..Default::default()
    };
    let out = xp.recurrent(cell, &h0, &whh, opts).unwrap();
    let y = out.output.to_vec();
    // sequence 1 is zero at steps 2 and 3, and its final state is its output at step 1
    for s in 2..4 {
        assert!(y[(s * n + 1) * h..(s * n + 2) * h]
            .iter()
            .all(|&v| v == 0.0));
    }
    assert_eq!(&out.h_n.to_vec()[h..], &y[(n + 1) * h..(n + 2) * h]);
    // sequence 1 run alone for its 2 steps ends in the same state
    let alone = xp.narrow(1, 1, 1).unwrap().narrow(0, 0, 2).unwrap();
    let a = alone
        .recurrent(cell, &Tensor::zeros(&[1, h]), &whh, Default::default())
        .unwrap();
    assert_close(
        "alone",
        &a.h_n.to_vec(),
        &out.h_n.to_vec()[h..],
        Tol::mixed(1e-6),
    );
}

#[test]
fn bad_arguments_are_errors() {
    let lstm = Cell::Lstm {
        peephole: false,
        coupled: false,
    };
    let xp = Tensor::<f32>::zeros(&[3, 2, 8]);
    let h0 = Tensor::<f32>::zeros(&[2, 2]);
    let whh = Tensor::<f32>::zeros(&[8, 2]);
    assert!(xp.recurrent(lstm, &h0, &whh, Default::default()).is_ok());
    assert!(xp
        .recurrent(
            Cell::Gru { reset_after: true },
            &h0,
            &whh,
            Default::default()
        )
        .is_err());
    assert!(xp
        .recurrent(lstm, &Tensor::zeros(&[3, 2]), &whh, Default::default())
        .is_err());
    let zero = [0, 3];
    assert!(xp
        .recurrent(
            lstm,
            &h0,
            &whh,
            RecurrentOpts {
                lengths: Some(&zero),
                ..Default::default()
            }
        )
        .is_err());
    let long = [4, 3];
    assert!(xp
        .recurrent(
            lstm,
            &h0,
            &whh,
            RecurrentOpts {
                lengths: Some(&long),
                ..Default::default()
            }
        )
        .is_err());
    let peep = Cell::Lstm {
        peephole: true,
        coupled: false,
    };
    assert!(xp.recurrent(peep, &h0, &whh, Default::default()).is_err());
    let w = Tensor::<f32>::zeros(&[2, 2]);
    assert!(xp
        .recurrent(
            lstm,
            &h0,
            &whh,
            RecurrentOpts {
                w_hr: Some(&w),
                ..Default::default()
            }
        )
        .is_err());
}
