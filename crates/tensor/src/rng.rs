//! A small seeded random number generator (SplitMix64 seeding a xoshiro256++ stream), so that a
//! run repeats exactly on every platform. Normal samples use Box–Muller.

#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng {
            s,
            spare_normal: None,
        }
    }

    /// A generator for a sub-stream, e.g. one per epoch or per worker, independent of call order.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
        Rng::new(splitmix64(&mut x))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal sample.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = loop {
            let u = self.uniform();
            if u > 0.0 {
                break u;
            }
        };
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        self.spare_normal = Some(r * th.sin());
        r * th.cos()
    }

    /// One word drawn from the whole state without advancing it: with [`Rng::derive`], the
    /// seed of streams forked from this one (another rank's dropout stream in data-parallel
    /// training, made from rank 0's).
    pub fn digest(&self) -> u64 {
        let mut x = self.s[0]
            ^ self.s[1].rotate_left(16)
            ^ self.s[2].rotate_left(32)
            ^ self.s[3].rotate_left(48);
        splitmix64(&mut x)
    }

    /// The generator's whole state as text (`s0:s1:s2:s3` in hex, then `:` and the bits of a
    /// pending normal sample, if any), for checkpoints: [`Rng::from_state`] restores it exactly.
    pub fn state(&self) -> String {
        let mut t = self.s.map(|w| format!("{w:016x}")).join(":");
        if let Some(z) = self.spare_normal {
            t.push_str(&format!(":{:016x}", z.to_bits()));
        }
        t
    }

    /// The generator whose [`Rng::state`] was `state`, or None if the text is not one.
    pub fn from_state(state: &str) -> Option<Self> {
        let words: Vec<u64> = state
            .split(':')
            .map(|w| u64::from_str_radix(w, 16).ok().filter(|_| w.len() == 16))
            .collect::<Option<_>>()?;
        match words[..] {
            [a, b, c, d] => Some(Rng {
                s: [a, b, c, d],
                spare_normal: None,
            }),
            [a, b, c, d, z] => Some(Rng {
                s: [a, b, c, d],
                spare_normal: Some(f64::from_bits(z)),
            }),
            _ => None,
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<X>(&mut self, v: &mut [X]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// `n` values in [0, 1) determined by a string key alone: `splitmix64(fnv1a64(key) + i·φ)`,
/// top 24 bits. The fixture generators (`fixtures/hashinit.py`) compute the same numbers with
/// numpy, so a test can rebuild the exact weights and inputs a PyTorch reference used without
/// storing them.
pub fn hash_uniform(key: &str, n: usize) -> Vec<f64> {
    let seed = key.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    });
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}

/// Values for the parameter or buffer `key` of `shape`, from [`hash_uniform`]: the fixture
/// generators' `fill` (`fixtures/hashinit.py`). Weights (2-D and up) are uniform with the He
/// bound `√(6 / fan_in)`, biases U(−0.1, 0.1), batch-norm scales 1 + U(−0.2, 0.2), running
/// means U(−0.2, 0.2), running variances 0.5 + U(0, 1).
pub fn hash_fill(key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    hash_uniform(key, n)
        .into_iter()
        .map(|u| {
            let v = if key.ends_with("running_var") {
                0.5 + u
            } else if key.ends_with("running_mean") {
                0.2 * (2.0 * u - 1.0)
            } else if shape.len() >= 2 {
                (2.0 * u - 1.0) * (6.0 / (n / shape[0]) as f64).sqrt()
            } else if key.ends_with("weight") {
                1.0 + 0.2 * (2.0 * u - 1.0)
            } else {
                0.1 * (2.0 * u - 1.0)
            };
            v as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn state_round_trips_mid_stream() {
        let mut a = Rng::new(7);
        a.next_u64();
        a.normal(); // leaves a spare normal pending
        for _ in 0..2 {
            let mut b = Rng::from_state(&a.state()).unwrap();
            assert_eq!(
                (0..5).map(|_| a.normal().to_bits()).collect::<Vec<_>>(),
                (0..5).map(|_| b.normal().to_bits()).collect::<Vec<_>>()
            );
        }
        for bad in ["", "12:34", "zz:0:0:0", "0000000000000000:1"] {
            assert!(Rng::from_state(bad).is_none(), "{bad}");
        }
    }
}
