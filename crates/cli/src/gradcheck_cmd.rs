//! `aics gradcheck`: the f64 finite-difference check of every operator, as a table.

use aics_tensor::gradcheck::op_cases;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct GradcheckArgs {
    /// Seeds per op.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Only ops whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

pub fn run(a: GradcheckArgs) -> Result<()> {
    println!(
        "{:<24} {:>8} {:>8} {:>12} {:>12}  result",
        "op", "seeds", "checked", "max abs err", "max rel err"
    );
    let (mut failed, mut total) = (0, 0);
    for c in op_cases().iter().filter(|c| {
        a.filter
            .as_ref()
            .is_none_or(|f| c.name.contains(f.as_str()))
    }) {
        let (mut abs, mut rel, mut checked, mut ok) = (0.0f64, 0.0f64, 0usize, true);
        for seed in 0..a.seeds.max(1) {
            let r = c.run(seed)?;
            abs = abs.max(r.max_abs_err);
            rel = rel.max(r.max_rel_err);
            checked += r.checked;
            ok &= r.passed;
        }
        total += 1;
        if !ok {
            failed += 1;
        }
        println!(
            "{:<24} {:>8} {:>8} {:>12.2e} {:>12.2e}  {}",
            c.name,
            a.seeds.max(1),
            checked,
            abs,
            rel,
            if ok { "ok" } else { "FAIL" }
        );
    }
    println!("{} passed, {} failed", total - failed, failed);
    if failed > 0 {
        bail!("{failed} of {total} operators failed the gradient check");
    }
    Ok(())
}
