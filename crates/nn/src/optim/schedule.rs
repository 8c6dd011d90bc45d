//! Learning-rate schedules as pure functions of the epoch, so a resumed run gets the same rate.

/// How the learning rate evolves over epochs; `warmup` epochs ramp linearly up to the base rate.
#[derive(Clone, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// Multiply by `gamma` every `step` epochs.
    Step {
        step: usize,
        gamma: f64,
    },
    /// Multiply by `gamma` at each listed epoch.
    MultiStep {
        milestones: Vec<usize>,
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total` epochs.
    Cosine {
        total: usize,
        min_lr: f64,
    },
}

impl LrSchedule {
    /// Learning rate for `epoch` (0-based) with `warmup` linear warm-up epochs.
    pub fn lr_at(&self, base: f64, epoch: usize, warmup: usize) -> f64 {
        if epoch < warmup {
            return base * (epoch + 1) as f64 / (warmup + 1) as f64;
        }
        let e = epoch - warmup;
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Step { step, gamma } => base * gamma.powi((e / (*step).max(1)) as i32),
            LrSchedule::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= e).count() as i32)
            }
            LrSchedule::Cosine { total, min_lr } => {
                let t = (*total).max(1) as f64;
                min_lr
                    + (base - min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * (e as f64).min(t) / t).cos())
            }
        }
    }

    /// Parse `const`, `step:S[:G]`, `multistep:A,B,..[:G]`, `cosine[:MIN]` (cosine spans
    /// `epochs`; G defaults to 0.1, MIN to 0). A field that is given must parse: a bad one is an
    /// error that names it, never a silent default.
    pub fn parse(s: &str, epochs: usize) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let max_fields = match parts[0] {
            "const" | "constant" => 1,
            "step" | "multistep" => 3,
            "cosine" => 2,
            other => {
                return Err(format!(
                    "unknown schedule `{other}` (expected const, step:S:G, multistep:A,B:G or cosine[:MIN])"
                ))
            }
        };
        if parts.len() > max_fields {
            return Err(format!(
                "schedule `{s}`: unexpected `{}` (expected const, step:S:G, multistep:A,B:G or cosine[:MIN])",
                parts[max_fields..].join(":")
            ));
        }
        // field i as a number, or `default` when it is absent
        let num = |i: usize, what: &str, default: Option<f64>| -> Result<f64, String> {
            match parts.get(i) {
                None => default.ok_or(format!("schedule `{s}`: missing {what}")),
                Some(v) => match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                    _ => Err(format!(
                        "schedule `{s}`: {what} `{v}` is not a non-negative number"
                    )),
                },
            }
        };
        match parts[0] {
            "step" => {
                let step = parts
                    .get(1)
                    .ok_or(format!("schedule `{s}`: missing step size"))?;
                let step = match step.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "schedule `{s}`: step size `{step}` is not a positive whole number of epochs"
                        ))
                    }
                };
                Ok(LrSchedule::Step {
                    step,
                    gamma: num(2, "gamma", Some(0.1))?,
                })
            }
            "multistep" => {
                let ms = parts
                    .get(1)
                    .ok_or(format!("schedule `{s}`: missing milestones"))?;
                let milestones = ms
                    .split(',')
                    .map(|m| {
                        m.parse::<usize>().map_err(|_| {
                            format!("schedule `{s}`: milestone `{m}` is not an epoch number")
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(LrSchedule::MultiStep {
                    milestones,
                    gamma: num(2, "gamma", Some(0.1))?,
                })
            }
            "cosine" => Ok(LrSchedule::Cosine {
                total: epochs,
                min_lr: num(1, "min lr", Some(0.0))?,
            }),
            _ => Ok(LrSchedule::Constant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(LrSchedule::parse("const", 5), Ok(LrSchedule::Constant));
        assert_eq!(
            LrSchedule::parse("step:2", 5),
            Ok(LrSchedule::Step {
                step: 2,
                gamma: 0.1
            })
        );
        assert_eq!(
            LrSchedule::parse("step:3:0.5", 5),
            Ok(LrSchedule::Step {
                step: 3,
                gamma: 0.5
            })
        );
        assert_eq!(
            LrSchedule::parse("multistep:4,6:0.2", 5),
            Ok(LrSchedule::MultiStep {
                milestones: vec![4, 6],
                gamma: 0.2
            })
        );
        assert_eq!(
            LrSchedule::parse("cosine", 7),
            Ok(LrSchedule::Cosine {
                total: 7,
                min_lr: 0.0
            })
        );
        assert_eq!(
            LrSchedule::parse("cosine:1e-4", 7),
            Ok(LrSchedule::Cosine {
                total: 7,
                min_lr: 1e-4
            })
        );
    }

    /// A bad field is an error naming it; before, `step:2:abc` and `cosine:x` quietly became
    /// gamma 0.1 and min lr 0.
    #[test]
    fn bad_fields_are_errors_that_name_them() {
        for (spec, names) in [
            ("step:2:abc", "gamma `abc`"),
            ("cosine:x", "min lr `x`"),
            ("step:x", "step size `x`"),
            ("step:0", "step size `0`"),
            ("step", "missing step size"),
            ("multistep:4,z:0.1", "milestone `z`"),
            ("multistep:4:nan", "gamma `nan`"),
            ("cosine:-1", "min lr `-1`"),
            ("const:3", "unexpected `3`"),
            ("step:2:0.1:9", "unexpected `9`"),
            ("linear", "unknown schedule `linear`"),
        ] {
            let e = LrSchedule::parse(spec, 5).unwrap_err();
            assert!(e.contains(names), "{spec}: {e}");
        }
    }
}
