//! f64 central-difference gradient checks for every differentiable op (the case list lives in
//! `aics_tensor::gradcheck::op_cases`, shared with `aics gradcheck`), over several seeds.

use aics_tensor::gradcheck::op_cases;

#[test]
fn every_op_passes_gradcheck_over_seeds() {
    let cases = op_cases();
    assert!(cases.len() >= 70, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        for seed in 0..3 {
            match c.run(seed) {
                Ok(r) if r.passed => {}
                Ok(r) => failures.push(format!(
                    "{} (seed {seed}): max abs err {:.3e}, rel {:.3e}",
                    c.name, r.max_abs_err, r.max_rel_err
                )),
                Err(e) => failures.push(format!("{} (seed {seed}): {e}", c.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "gradcheck failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn gradcheck_catches_a_wrong_backward() {
    use aics_tensor::gradcheck::gradcheck;
    use aics_tensor::Tensor;
    // d/dx of x·x·(1 + 1e-3) computed through a detached factor is wrong by design:
    // the check must fail, or it could not catch anything.
    let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 2.0], &[3]).unwrap();
    let f = |xs: &[Tensor<f64>]| xs[0].mul(&xs[0].detach());
    let r = gradcheck(&f, &[x], &[true], 0).unwrap();
    assert!(!r.passed);
}
