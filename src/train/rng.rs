//! The training run's random generator: every draw of a DreamBooth run (data order, crops and flips, noise,
//! timesteps, posterior samples) comes from one seeded stream whose whole state is one integer, so a
//! checkpoint saves it and a resumed run continues the same stream bit for bit.

/// SplitMix64 with Box–Muller normals (f64, the pair's second value discarded so the state stays one word).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainRng {
    state: u64,
}

impl TrainRng {
    pub fn new(seed: u64) -> Self {
        TrainRng { state: seed ^ 0x7761_6773_6474_7261 }
    }

    /// The whole state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn from_state(state: u64) -> Self {
        TrainRng { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for timesteps and indices (n ≪ 2⁶⁴).
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// `n` standard normal values.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = 1.0 - self.uniform(); // (0, 1]
                let u2 = self.uniform();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect()
    }

    /// A random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_draws_look_normal() {
        let mut a = TrainRng::new(5);
        a.randn(3);
        let mut b = TrainRng::from_state(a.state());
        assert_eq!(a.randn(10), b.randn(10));
        let v = TrainRng::new(1).randn(20000);
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
        let mut p = TrainRng::new(2).permutation(50);
        p.sort();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
        assert!((0..1000).all(|_| TrainRng::new(3).below(7) < 7));
    }
}
