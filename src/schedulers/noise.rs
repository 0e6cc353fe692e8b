//! Where the schedulers' randomness comes from: one trait, [`NoiseSource`], with a seeded generator for
//! users ([`TorchCpuGenerator`]) and a replay of recorded draws for tests ([`ReplayNoise`]).

use crate::error::{Error, Result};

/// A source of standard normal draws. Every random number a scheduler (or a pipeline) uses comes from one
/// `randn` call, in the order diffusers makes its `randn_tensor` calls, so a recorded run can be replayed.
pub trait NoiseSource {
    /// `n` independent N(0, 1) samples, as one `torch.randn(n)` call makes them.
    fn randn(&mut self, n: usize) -> Result<Vec<f32>>;
}

/// The seeded generator: PyTorch's CPU generator. `TorchCpuGenerator::new(seed)` followed by `randn(n)`
/// gives what `torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))` gives in float32 on an
/// x86-64 machine with AVX2, bit for bit, so a diffusers seed gives the same latents here. (PyTorch's
/// AVX-512 build takes a scalar path with the C library's `log`/`cos`/`sin` instead; its draws differ from
/// these by an ulp or two in some elements.)
///
/// The algorithm: MT19937 seeded with the low 32 bits of the seed; each uniform in [0, 1) is the low 24
/// bits of one 32-bit output times 2⁻²⁴. For n ≥ 16 all n uniforms are drawn first, then every block of
/// 16 becomes 16 normals by Box–Muller (u1 = 1 − d[j], u2 = d[j+8], r = √(−2 ln u1), θ = 2π·u2, all
/// float32 with Cephes' `logf`/`sincosf` polynomials as PyTorch's AVX2 kernel evaluates them; d[j] =
/// r cos θ, d[j+8] = r sin θ); when 16 does not divide n the last 16 are redrawn and transformed again.
/// For n < 16 each value is a float64 Box–Muller draw from 53-bit uniforms (the second value of each
/// pair is kept for the next call), as PyTorch does for small tensors.
pub struct TorchCpuGenerator {
    mt: Mt19937,
    cached_normal: Option<f64>,
}

impl TorchCpuGenerator {
    pub fn new(seed: u64) -> Self {
        TorchCpuGenerator { mt: Mt19937::new(seed as u32), cached_normal: None }
    }

    fn uniform_f32(&mut self) -> f32 {
        // 24 random bits scaled by 2^-24: exact in float32.
        (self.mt.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    fn uniform_f64(&mut self) -> f64 {
        let hi = self.mt.next_u32() as u64;
        let lo = self.mt.next_u32() as u64;
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.cached_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// Box–Muller on one block of 16 uniforms, in float32 as PyTorch's AVX2 kernel does.
    fn box_muller_16(d: &mut [f32]) {
        let two_pi = (2.0 * std::f64::consts::PI) as f32;
        for j in 0..8 {
            let u1 = 1.0 - d[j];
            let u2 = d[j + 8];
            let radius = (-2.0 * cephes_log(u1)).sqrt();
            let (sin, cos) = cephes_sincos(two_pi * u2);
            d[j] = radius * cos;
            d[j + 8] = radius * sin;
        }
    }
}

/// Cephes' single-precision `logf` (for 0 < x ≤ 1 here), with the fused multiply-adds that PyTorch's
/// compiled `log256_ps` uses.
fn cephes_log(x: f32) -> f32 {
    const P: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461_1e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_5e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    const Q1: f32 = -2.121_944_4e-4;
    const Q2: f32 = 0.693_359_4;
    if x <= 0.0 {
        return f32::NAN;
    }
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    // Mantissa in [0.5, 1), exponent to match.
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0x3f00_0000);
    let x = if m < std::f32::consts::FRAC_1_SQRT_2 {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = x * x;
    let y = P[1..].iter().fold(P[0], |y, &p| y.mul_add(x, p)) * x;
    let y = y.mul_add(z, e * Q1);
    let y = (-z).mul_add(0.5, y);
    e.mul_add(Q2, x + y)
}

/// Cephes' single-precision `sincosf` (sin, cos), with the fused multiply-adds of PyTorch's compiled
/// `sincos256_ps`.
fn cephes_sincos(x: f32) -> (f32, f32) {
    const DP: [f32; 3] = [-0.785_156_25, -2.418_756_5e-4, -3.774_895e-8];
    const SIN: [f32; 3] = [-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1];
    const COS: [f32; 3] = [2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2];
    const FOUR_OVER_PI: f32 = 1.273_239_5;
    let neg = x.is_sign_negative();
    let x = x.abs();
    // Octant j (even), and the reduced argument x − j·π/4 in three parts.
    let j = (((x * FOUR_OVER_PI) as i32) + 1) & !1;
    let y = j as f32;
    let x = DP.iter().fold(x, |x, &dp| y.mul_add(dp, x));
    let z = x * x;
    let yc = COS[0].mul_add(z, COS[1]).mul_add(z, COS[2]) * z;
    let yc = yc.mul_add(z, -(z * 0.5)) + 1.0;
    let ys = SIN[0].mul_add(z, SIN[1]).mul_add(z, SIN[2]) * z;
    let ys = ys.mul_add(x, x);
    let (s, c) = if j & 2 == 0 { (ys, yc) } else { (yc, ys) };
    let s = if neg ^ (j & 4 != 0) { -s } else { s };
    let c = if (!(j - 2)) & 4 != 0 { -c } else { c };
    (s, c)
}

impl NoiseSource for TorchCpuGenerator {
    fn randn(&mut self, n: usize) -> Result<Vec<f32>> {
        if n < 16 {
            return Ok((0..n).map(|_| self.normal_f64() as f32).collect());
        }
        let mut d: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for i in (0..n - 15).step_by(16) {
            Self::box_muller_16(&mut d[i..i + 16]);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut d[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            Self::box_muller_16(tail);
        }
        Ok(d)
    }
}

/// Replays recorded draws (the fixtures' `sched.<name>.noise.N`), one per `randn` call, checking sizes.
pub struct ReplayNoise {
    draws: Vec<Vec<f32>>,
    next: usize,
}

impl ReplayNoise {
    pub fn new(draws: Vec<Vec<f32>>) -> Self {
        ReplayNoise { draws, next: 0 }
    }

    /// How many recorded draws were used.
    pub fn used(&self) -> usize {
        self.next
    }

    pub fn remaining(&self) -> usize {
        self.draws.len() - self.next
    }
}

impl NoiseSource for ReplayNoise {
    fn randn(&mut self, n: usize) -> Result<Vec<f32>> {
        let Some(d) = self.draws.get(self.next) else {
            return Err(Error::usage(format!(
                "replayed noise: draw {} asked for, but only {} were recorded",
                self.next,
                self.draws.len()
            )));
        };
        if d.len() != n {
            return Err(Error::usage(format!(
                "replayed noise: draw {} has {} values, the scheduler asked for {n}",
                self.next,
                d.len()
            )));
        }
        self.next += 1;
        Ok(d.clone())
    }
}

/// Noise for schedulers that never draw (DDIM with eta 0, Euler, DPM++ 2M, ...): any call is an error.
pub struct NoNoise;

impl NoiseSource for NoNoise {
    fn randn(&mut self, n: usize) -> Result<Vec<f32>> {
        Err(Error::usage(format!("a deterministic run asked for {n} random values")))
    }
}

/// The Mersenne Twister MT19937 (32-bit), seeded as `init_genrand` seeds it.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_output() {
        // The 10000th output of std::mt19937 with the default seed 5489 is 4123659995 (C++ standard).
        let mut mt = Mt19937::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = mt.next_u32();
        }
        assert_eq!(v, 4_123_659_995);
    }
}
