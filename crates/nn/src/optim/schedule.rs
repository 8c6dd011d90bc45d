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

    /// Parse `const`, `step:S:G`, `multistep:A,B,..:G`, `cosine[:MIN]` (cosine spans `epochs`).
    pub fn parse(s: &str, epochs: usize) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            parts
                .get(i)
                .ok_or(format!("schedule `{s}`: missing {what}"))?
                .parse::<f64>()
                .map_err(|_| format!("schedule `{s}`: {what} is not a number"))
        };
        match parts[0] {
            "const" | "constant" => Ok(LrSchedule::Constant),
            "step" => Ok(LrSchedule::Step { step: num(1, "step size")? as usize, gamma: num(2, "gamma").unwrap_or(0.1) }),
            "multistep" => {
                let ms = parts.get(1).ok_or(format!("schedule `{s}`: missing milestones"))?;
                let milestones = ms.split(',').map(|m| m.parse::<usize>().map_err(|_| format!("schedule `{s}`: bad milestone `{m}`"))).collect::<Result<_, _>>()?;
                Ok(LrSchedule::MultiStep { milestones, gamma: num(2, "gamma").unwrap_or(0.1) })
            }
            "cosine" => Ok(LrSchedule::Cosine { total: epochs, min_lr: num(1, "min lr").unwrap_or(0.0) }),
            other => Err(format!("unknown schedule `{other}` (expected const, step:S:G, multistep:A,B:G or cosine[:MIN])")),
        }
    }
}
