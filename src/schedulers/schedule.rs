//! The maths every scheduler shares: the training noise schedule (betas, ᾱ), the timestep spacings and the
//! sigma schedules (interpolated, Karras, exponential).
//!
//! diffusers builds these from a mix of float32 torch tensors and float64 numpy arrays, and the float32
//! rounding shows in the fixtures (Karras timesteps, sigma_max). Each function says which precision it
//! follows; the helpers named `np_*` / `torch_*` reproduce those libraries' own formulas (numpy's
//! `linspace` is `i·step + start`, not `start + i·(stop−start)/(n−1)`; its `round` is half-to-even).

use super::Config;
use crate::error::Result;

/// `torch.linspace(start, end, steps, dtype=float32)` on the CPU: the first half counts up from `start`,
/// the second half down from `end`, each value one fused multiply-add in float32.
pub fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
        .collect()
}

/// `numpy.linspace(start, stop, num, endpoint)` in float64.
pub fn np_linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let mut y: Vec<f64> = if div > 0 {
        let step = (stop - start) / div as f64;
        if step == 0.0 {
            (0..num).map(|i| i as f64 / div as f64 * (stop - start) + start).collect()
        } else {
            (0..num).map(|i| i as f64 * step + start).collect()
        }
    } else {
        (0..num).map(|i| i as f64 * (stop - start) + start).collect()
    };
    if endpoint && num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// `numpy.arange(start, stop, step)` for floats: length ⌈(stop−start)/step⌉, values `start + i·δ` with
/// δ = (start+step) − start.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| if i == 0 { start } else { start + i as f64 * delta }).collect()
}

/// numpy's float32 `log` on x86-64 with AVX2/FMA3 (its SIMD kernel, not the C library's `logf`): the
/// mantissa normalised to [√½, √2), a degree-5/5 rational approximation of log(1 + y) in fused
/// multiply-adds, plus k·ln 2. Up to ~4 ulp from the true value, and diffusers' σ → timestep
/// interpolation (a difference of neighbouring log σ) shows which one was used.
pub fn np_log_f32(x: f32) -> f32 {
    // NPY_COEFF_P*_LOGf and NPY_COEFF_Q*_LOGf as float32.
    const P: [f32; 6] = [
        f32::from_bits(0x0000_0000),
        f32::from_bits(0x3f80_0000),
        f32::from_bits(0x4007_361c),
        f32::from_bits(0x3fbd_70a9),
        f32::from_bits(0x3ec3_0333),
        f32::from_bits(0x3cd4_2bcd),
    ];
    const Q: [f32; 6] = [
        f32::from_bits(0x3f80_0000),
        f32::from_bits(0x4027_361c),
        f32::from_bits(0x401c_fe0d),
        f32::from_bits(0x3f7c_8ae4),
        f32::from_bits(0x3e1e_5bf3),
        f32::from_bits(0x3bc0_83df),
    ];
    if x.is_nan() {
        return x;
    }
    if x < 0.0 {
        return -f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    // Subnormals are scaled by 2^100 first.
    let (x, bias) = if x < f32::MIN_POSITIVE { (x * f32::from_bits(0x7180_0000), 100.0) } else { (x, 0.0) };
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 126) as f32 - bias;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | (126 << 23));
    if m <= std::f32::consts::FRAC_1_SQRT_2 {
        m += m;
        e -= 1.0;
    }
    let y = m - 1.0;
    let num = P[..5].iter().rev().fold(P[5], |acc, &c| acc.mul_add(y, c));
    let den = Q[..5].iter().rev().fold(Q[5], |acc, &c| acc.mul_add(y, c));
    e.mul_add(std::f32::consts::LN_2, num / den)
}

/// numpy's `round` (half to even).
pub fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// The `beta_schedule` families.
fn alpha_bar(kind: &str, t: f64) -> f64 {
    match kind {
        "cosine" => ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2),
        "exp" => (t * -12.0).exp(),
        // "laplace"
        _ => {
            let sign = if 0.5 - t < 0.0 { -1.0 } else { 1.0 };
            let lmb = -0.5 * sign * (1.0 - 2.0 * (0.5 - t).abs() + 1e-6).ln();
            let snr = lmb.exp();
            (snr / (1.0 + snr)).sqrt()
        }
    }
}

/// `betas_for_alpha_bar`: computed in float64, stored as float32.
fn betas_for_alpha_bar(n: usize, kind: &str) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(kind, t2) / alpha_bar(kind, t1)).min(0.999) as f32
        })
        .collect()
}

/// `torch.cumprod` of a float32 tensor on the CPU: accumulated in float64, each output rounded to float32.
pub fn cumprod_f32(x: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    x.iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1), in float32 like diffusers.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut s: Vec<f32> = cumprod_f32(&alphas).iter().map(|a| a.sqrt()).collect();
    let s0 = s[0];
    let st = s[s.len() - 1];
    let scale = s0 / (s0 - st);
    for v in s.iter_mut() {
        *v = (*v - st) * scale;
    }
    let ab: Vec<f32> = s.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0 - ab[i] / ab[i - 1]);
    }
    out
}

/// The training noise schedule: betas and ᾱ (`alphas_cumprod`), float32 as in diffusers.
#[derive(Clone, Debug)]
pub struct TrainSchedule {
    pub num_train_timesteps: usize,
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
}

/// A class's defaults for the training-schedule keys, and which extras it knows.
pub struct BetaDefaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: &'static str,
    /// Beta schedules beyond linear / scaled_linear / squaredcos_cap_v2 that this class accepts.
    pub extra_schedules: &'static [&'static str],
    /// Whether the class has `rescale_betas_zero_snr`.
    pub has_rescale: bool,
    /// Whether a rescaled schedule's last ᾱ is set to 2⁻²⁴ (the sigma-based classes), so σ stays finite.
    pub clamp_terminal: bool,
}

impl TrainSchedule {
    pub fn from_config(cfg: &Config, d: &BetaDefaults) -> Result<TrainSchedule> {
        let n = cfg.usize("num_train_timesteps", 1000)?;
        // SD trains with 1000; a million is far past any model and would only exhaust memory.
        if !(2..=1_000_000).contains(&n) {
            return Err(cfg.unsupported("num_train_timesteps", n, "need 2 to 1000000 (SD uses 1000)"));
        }
        let betas = if let Some(tb) = cfg.f64_list("trained_betas")? {
            if tb.len() != n {
                return Err(cfg.unsupported(
                    "trained_betas",
                    format!("a list of {}", tb.len()),
                    &format!("need num_train_timesteps = {n} values"),
                ));
            }
            tb.iter().map(|&b| b as f32).collect()
        } else {
            let start = cfg.f64("beta_start", d.beta_start)?;
            let end = cfg.f64("beta_end", d.beta_end)?;
            let kind = cfg.string("beta_schedule", d.beta_schedule)?;
            match kind.as_str() {
                "linear" => torch_linspace_f32(start, end, n),
                "scaled_linear" => torch_linspace_f32(start.sqrt(), end.sqrt(), n).iter().map(|b| b * b).collect(),
                "squaredcos_cap_v2" => betas_for_alpha_bar(n, "cosine"),
                "exp" if d.extra_schedules.contains(&"exp") => betas_for_alpha_bar(n, "exp"),
                "laplace" if d.extra_schedules.contains(&"laplace") => betas_for_alpha_bar(n, "laplace"),
                "sigmoid" if d.extra_schedules.contains(&"sigmoid") => {
                    let (s, e) = (start as f32, end as f32);
                    torch_linspace_f32(-6.0, 6.0, n).iter().map(|x| 1.0 / (1.0 + (-x).exp()) * (e - s) + s).collect()
                }
                other => {
                    let mut known = vec!["linear", "scaled_linear", "squaredcos_cap_v2"];
                    known.extend(d.extra_schedules);
                    return Err(cfg.unsupported("beta_schedule", format!("{other:?}"), &format!("expected one of {known:?}")));
                }
            }
        };
        // Betas are noise variances per step: in (0, 1) and non-decreasing, or the schedule is nonsense
        // (NaN sigmas, alphas above 1, a schedule that denoises backwards).
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b < 1.0)) {
            return Err(cfg.unsupported("betas", format!("beta[{i}] = {b}"), "every beta must be in (0, 1): check beta_start, beta_end and trained_betas"));
        }
        // (The alpha-bar schedules are made from a smooth curve, monotone or not by design: only the
        // given and linear ones are checked.)
        let from_curve = cfg.get("trained_betas").is_none_or(|v| v.is_null())
            && matches!(cfg.string("beta_schedule", d.beta_schedule)?.as_str(), "squaredcos_cap_v2" | "exp" | "laplace");
        if let Some(i) = (1..n).find(|&i| !from_curve && betas[i] < betas[i - 1]) {
            return Err(cfg.unsupported(
                "betas",
                format!("beta[{i}] = {} < beta[{}] = {}", betas[i], i - 1, betas[i - 1]),
                "betas must not decrease (is beta_start above beta_end?)",
            ));
        }
        let rescale = d.has_rescale && cfg.bool("rescale_betas_zero_snr", false)?;
        let betas = if rescale { rescale_zero_terminal_snr(&betas) } else { betas };
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = cumprod_f32(&alphas);
        if rescale && d.clamp_terminal {
            alphas_cumprod[n - 1] = 2f32.powi(-24);
        }
        Ok(TrainSchedule { num_train_timesteps: n, betas, alphas_cumprod })
    }

    /// σ = √((1 − ᾱ)/ᾱ) for every training timestep, in float32 (increasing with t).
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect()
    }

    /// ᾱ at an integer timestep.
    pub fn alpha_cumprod(&self, t: i64) -> f32 {
        self.alphas_cumprod[t as usize]
    }

    /// Noising for the ᾱ-parameterised classes (DDIM, DDPM, PNDM, LCM): √ᾱ·x₀ + √(1−ᾱ)·ε.
    pub fn add_noise(&self, original: &[f32], noise: &[f32], t: i64) -> Vec<f32> {
        let a = self.alpha_cumprod(t);
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        original.iter().zip(noise).map(|(x, n)| sa * x + sb * n).collect()
    }
}

/// `timestep_spacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

impl Spacing {
    pub fn from_config(cfg: &Config, default: &str) -> Result<Spacing> {
        match cfg.string("timestep_spacing", default)?.as_str() {
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            "linspace" => Ok(Spacing::Linspace),
            other => Err(cfg.unsupported("timestep_spacing", format!("{other:?}"), "expected leading, trailing or linspace")),
        }
    }
}

/// Integer timesteps, descending, as DDIM / DDPM / LCM-style classes compute them (`int64`).
pub fn integer_timesteps(spacing: Spacing, n_train: usize, n: usize, steps_offset: i64) -> Vec<i64> {
    match spacing {
        Spacing::Linspace => np_linspace(0.0, (n_train - 1) as f64, n, true).iter().rev().map(|v| np_round(*v) as i64).collect(),
        Spacing::Leading => {
            let ratio = (n_train / n) as i64;
            (0..n as i64).rev().map(|i| i * ratio + steps_offset).collect()
        }
        Spacing::Trailing => {
            let ratio = n_train as f64 / n as f64;
            np_arange(n_train as f64, 0.0, -ratio).iter().map(|v| np_round(*v) as i64 - 1).collect()
        }
    }
}

/// Float timesteps, descending, as the sigma-based classes (Euler, Heun, LMS) compute them (float32).
pub fn float_timesteps(spacing: Spacing, n_train: usize, n: usize, steps_offset: i64) -> Vec<f32> {
    match spacing {
        Spacing::Linspace => np_linspace(0.0, (n_train - 1) as f64, n, true).iter().rev().map(|v| *v as f32).collect(),
        Spacing::Leading => {
            let ratio = (n_train / n) as i64;
            (0..n as i64).rev().map(|i| (i * ratio) as f32 + steps_offset as f32).collect()
        }
        Spacing::Trailing => {
            let ratio = n_train as f64 / n as f64;
            np_arange(n_train as f64, 0.0, -ratio).iter().map(|v| np_round(*v) as f32 - 1.0).collect()
        }
    }
}

/// `numpy.interp(x, arange(len(fp)), fp)`, in float64.
pub fn np_interp(x: &[f64], fp: &[f32]) -> Vec<f64> {
    let last = fp.len() - 1;
    x.iter()
        .map(|&x| {
            if x <= 0.0 {
                return fp[0] as f64;
            }
            if x >= last as f64 {
                return fp[last] as f64;
            }
            let j = x.floor() as usize;
            if x == j as f64 {
                return fp[j] as f64;
            }
            let slope = (fp[j + 1] as f64 - fp[j] as f64) / 1.0;
            slope * (x - j as f64) + fp[j] as f64
        })
        .collect()
}

/// `_sigma_to_t`: the fractional training timestep whose σ is `sigma`, interpolating linearly in log σ
/// between the two neighbouring entries of `log_sigmas` (float32, increasing).
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // The last index whose log σ is ≤ log_sigma (0 when there is none), at most len − 2.
    let low_idx = log_sigmas.iter().rposition(|&ls| log_sigma - ls as f64 >= 0.0).unwrap_or(0).min(log_sigmas.len() - 2);
    let (low, high) = (log_sigmas[low_idx], log_sigmas[low_idx + 1]);
    // numpy: `low - high` stays float32 (both float32), `low - log_sigma` is float64.
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

/// Karras et al. (2022) σ schedule, ρ = 7, in float64.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n, true).iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// σ evenly spaced in log σ, in float64.
pub fn exponential_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), n, true).iter().map(|v| v.exp()).collect()
}

/// Which σ spacing a class uses (`use_karras_sigmas`, `use_exponential_sigmas`; `use_beta_sigmas` is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaSpacing {
    Interpolated,
    Karras,
    Exponential,
}

impl SigmaSpacing {
    pub fn from_config(cfg: &Config) -> Result<SigmaSpacing> {
        let karras = cfg.bool("use_karras_sigmas", false)?;
        let exponential = cfg.bool("use_exponential_sigmas", false)?;
        cfg.refuse_true("use_beta_sigmas", "beta-distributed sigmas need scipy's beta.ppf, which wgsd does not implement")?;
        match (karras, exponential) {
            (true, true) => Err(cfg.unsupported(
                "use_exponential_sigmas",
                true,
                "only one of use_karras_sigmas and use_exponential_sigmas may be set",
            )),
            (true, false) => Ok(SigmaSpacing::Karras),
            (false, true) => Ok(SigmaSpacing::Exponential),
            _ => Ok(SigmaSpacing::Interpolated),
        }
    }
}

/// The σ grid of the discrete σ-based classes (Euler, Heun, LMS) before the final σ is appended:
/// float32 timesteps from the spacing, σ interpolated at them from the training table (float64), then
/// optionally respaced (Karras / exponential, with the timesteps mapped back by [`sigma_to_t`]).
/// `sigma_min` / `sigma_max` override the ends of a respaced grid (the classes that have those keys).
pub struct DiscreteGrid {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f64>,
}

pub fn discrete_grid(
    ts: &TrainSchedule,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    respace: SigmaSpacing,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
) -> DiscreteGrid {
    let timesteps: Vec<f64> =
        float_timesteps(spacing, ts.num_train_timesteps, n, steps_offset).iter().map(|&t| t as f64).collect();
    let table = ts.sigmas();
    let sigmas = np_interp(&timesteps, &table);
    respace_grid(timesteps, sigmas, &table, respace, sigma_min, sigma_max, n)
}

/// Karras / exponential respacing of an interpolated grid (`in_sigmas` descending).
pub fn respace_grid(
    timesteps: Vec<f64>,
    in_sigmas: Vec<f64>,
    table: &[f32],
    respace: SigmaSpacing,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    n: usize,
) -> DiscreteGrid {
    let lo = sigma_min.unwrap_or(in_sigmas[in_sigmas.len() - 1]);
    let hi = sigma_max.unwrap_or(in_sigmas[0]);
    let sigmas = match respace {
        SigmaSpacing::Interpolated => return DiscreteGrid { timesteps, sigmas: in_sigmas },
        SigmaSpacing::Karras => karras_sigmas(lo, hi, n),
        SigmaSpacing::Exponential => exponential_sigmas(lo, hi, n),
    };
    let log_sigmas: Vec<f32> = table.iter().map(|&s| np_log_f32(s)).collect();
    let timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
    DiscreteGrid { timesteps, sigmas }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn np_log_f32_matches_numpy_bit_for_bit() {
        // (input bits, numpy 2.4 float32 log bits on an AVX2 machine); the first six differ from the
        // correctly rounded logarithm.
        let cases = [
            (0x3fdae263u32, 0x3f0958ecu32),
            (0x3ffcec09, 0x3f2e595b),
            (0x3ec04c5f, 0xbf7ab1e1),
            (0x40bc239c, 0x3fe2bebc),
            (0x4026fe4c, 0x3f7585ac),
            (0x3f89d1df, 0x3d9761b7),
            (0x000116c2, 0xc2b834f2),
            (0x3f000000, 0xbf317218),
            (0x3f800000, 0x00000000),
            (0x40000000, 0x3f317218),
            (0x4169d598, 0x402ba649),
        ];
        for (x, want) in cases {
            let got = np_log_f32(f32::from_bits(x)).to_bits();
            assert_eq!(got, want, "log({}) = {:#x}, numpy {want:#x}", f32::from_bits(x), got);
        }
    }

    #[test]
    fn numpy_grids() {
        assert_eq!(np_arange(1000.0, 0.0, -100.0).len(), 10);
        assert_eq!(np_linspace(0.0, 1.0, 3, true), vec![0.0, 0.5, 1.0]);
        assert_eq!(np_round(2.5), 2.0);
        assert_eq!(np_round(3.5), 4.0);
        // SD's scaled-linear betas: first and last as float32.
        let b = torch_linspace_f32(0.00085f64.sqrt(), 0.012f64.sqrt(), 1000);
        assert_eq!((b[0], b[999]), (0.00085f64.sqrt() as f32, 0.012f64.sqrt() as f32));
    }
}
