//! DDIM (`DDIMScheduler`, Song et al. 2020): x_{t−Δ} = √ᾱ_{t−Δ}·x̂₀ + √(1 − ᾱ_{t−Δ} − σ²)·ε̂ + σ·z, with
//! σ = η·√((1−ᾱ_{t−Δ})/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ_{t−Δ})). η = 0 is deterministic.
//!
//! diffusers passes η to `step()`; here it is part of the scheduler: the config key `eta` (a wgsd
//! extension, default 0) or [`Ddim::set_eta`].

use super::schedule::{integer_timesteps, BetaDefaults, Spacing, TrainSchedule};
use super::{check_len, check_step, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::{Error, Result};

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &[],
    has_rescale: true,
    clamp_terminal: false,
};

/// x̂₀ and ε̂ from the model output, for the ᾱ-parameterised classes (float32, diffusers' order).
pub(crate) fn predict_x0_eps(
    prediction: Prediction,
    alpha_prod: f32,
    model_output: &[f32],
    sample: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let beta_prod = 1.0 - alpha_prod;
    let (sa, sb) = (alpha_prod.sqrt(), beta_prod.sqrt());
    match prediction {
        Prediction::Epsilon => (zip_map(sample, model_output, |s, m| (s - sb * m) / sa), model_output.to_vec()),
        Prediction::Sample => (model_output.to_vec(), zip_map(sample, model_output, |s, x0| (s - sa * x0) / sb)),
        Prediction::VPrediction => {
            (zip_map(sample, model_output, |s, m| sa * s - sb * m), zip_map(model_output, sample, |m, s| sa * m + sb * s))
        }
    }
}

/// Checks integer timesteps index the training schedule.
pub(crate) fn check_timesteps(class: &str, ts: &[i64], n_train: usize) -> Result<()> {
    if let Some(t) = ts.iter().find(|&&t| t < 0 || t as usize >= n_train) {
        return Err(Error::usage(format!(
            "{class}: timestep {t} is outside the {n_train} training timesteps (check steps_offset and the number of steps)"
        )));
    }
    Ok(())
}

/// The integer timesteps of DDIM and DDPM for `n` steps, checked against the training schedule.
pub(crate) fn discrete_timesteps(class: &str, spacing: Spacing, n_train: usize, n: usize, steps_offset: i64) -> Result<Vec<i64>> {
    if n == 0 || n > n_train {
        return Err(Error::usage(format!("{class}: {n} steps: need 1 to {n_train}")));
    }
    let t = integer_timesteps(spacing, n_train, n, steps_offset);
    check_timesteps(class, &t, n_train)?;
    Ok(t)
}

pub struct Ddim {
    ts: TrainSchedule,
    prediction: Prediction,
    clip: Option<f32>,
    final_alpha_cumprod: f32,
    spacing: Spacing,
    steps_offset: i64,
    eta: f32,
    n: usize,
    int_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
}

impl Ddim {
    pub fn new(cfg: &Config) -> Result<Ddim> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        cfg.refuse_thresholding()?;
        let clip = if cfg.bool("clip_sample", true)? { Some(cfg.f64("clip_sample_range", 1.0)? as f32) } else { None };
        let final_alpha_cumprod = if cfg.bool("set_alpha_to_one", true)? { 1.0 } else { ts.alphas_cumprod[0] };
        let eta = cfg.f64("eta", 0.0)?;
        if eta < 0.0 {
            return Err(cfg.unsupported("eta", eta, "eta must be ≥ 0"));
        }
        Ok(Ddim {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?,
            clip,
            final_alpha_cumprod,
            spacing: Spacing::from_config(cfg, "leading")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            eta: eta as f32,
            n: 0,
            int_timesteps: Vec::new(),
            timesteps: Vec::new(),
            ts,
        })
    }

    /// η: 0 for deterministic DDIM, 1 for DDPM-like ancestral sampling.
    pub fn set_eta(&mut self, eta: f32) {
        self.eta = eta;
    }
}

impl Scheduler for Ddim {
    fn class_name(&self) -> &'static str {
        "DDIMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let t = discrete_timesteps(self.class_name(), self.spacing, self.ts.num_train_timesteps, n, self.steps_offset)?;
        self.timesteps = t.iter().map(|&t| t as f64).collect();
        self.int_timesteps = t;
        self.n = n;
        Ok(())
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: &[f32], step: usize, sample: &[f32], noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        check_step(self.class_name(), step, self.timesteps.len())?;
        check_len(self.class_name(), model_output, sample)?;
        let t = self.int_timesteps[step];
        // The previous timestep is always t − T/n, whatever the spacing (as in diffusers).
        let prev_t = t - (self.ts.num_train_timesteps / self.n) as i64;
        let a = self.ts.alpha_cumprod(t);
        let a_prev = if prev_t >= 0 { self.ts.alpha_cumprod(prev_t) } else { self.final_alpha_cumprod };
        let b = 1.0 - a;
        let (mut x0, eps) = predict_x0_eps(self.prediction, a, model_output, sample);
        if let Some(r) = self.clip {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        let variance = ((1.0 - a_prev) / b) * (1.0 - a / a_prev);
        let std_dev = self.eta * variance.sqrt();
        let dir = (1.0 - a_prev - std_dev * std_dev).sqrt();
        let sa_prev = a_prev.sqrt();
        let prev = zip_map(&x0, &eps, |x, e| sa_prev * x + dir * e);
        if self.eta > 0.0 {
            let z = noise.randn(sample.len())?;
            return Ok(zip_map(&prev, &z, |p, z| p + std_dev * z));
        }
        Ok(prev)
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        self.ts.add_noise(original, noise, self.int_timesteps[step])
    }
}
