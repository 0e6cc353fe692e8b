//! LMS (`LMSDiscreteScheduler`): linear multistep in σ, up to 4th order. The coefficient of each stored
//! derivative is the integral over [σ_i, σ_{i+1}] of its Lagrange basis polynomial on the last σ's.

use super::euler::{add_noise_sigma, init_sigma, initial_sigmas, predict_x0, scale_by_sigma};
use super::schedule::{discrete_grid, BetaDefaults, SigmaSpacing, Spacing, TrainSchedule};
use super::{check_len, check_step, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::Result;

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &[],
    has_rescale: false,
    clamp_terminal: false,
};

/// diffusers' default `order` argument of `step` (the pipelines never change it).
const MAX_ORDER: usize = 4;

pub struct Lms {
    ts: TrainSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: i64,
    respace: SigmaSpacing,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The last derivatives (x − x̂₀)/σ, oldest first.
    derivatives: Vec<Vec<f32>>,
}

impl Lms {
    pub fn new(cfg: &Config) -> Result<Lms> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        let sigmas = initial_sigmas(&ts);
        Ok(Lms {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            respace: SigmaSpacing::from_config(cfg)?,
            n: 0,
            timesteps: Vec::new(),
            sigmas,
            derivatives: Vec::new(),
            ts,
        })
    }

    /// ∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ − σ_{t−k}) / (σ_{t−j} − σ_{t−k}) dτ, by 3-point Gauss–Legendre (exact:
    /// the integrand has degree ≤ 3), in float64.
    fn coefficient(&self, order: usize, t: usize, j: usize) -> f64 {
        let s = |i: usize| self.sigmas[i] as f64;
        let basis = |tau: f64| (0..order).filter(|&k| k != j).fold(1.0, |p, k| p * (tau - s(t - k)) / (s(t - j) - s(t - k)));
        let (a, b) = (s(t), s(t + 1));
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        let x = (3.0f64 / 5.0).sqrt();
        half * (5.0 / 9.0 * basis(mid - half * x) + 8.0 / 9.0 * basis(mid) + 5.0 / 9.0 * basis(mid + half * x))
    }
}

impl Scheduler for Lms {
    fn class_name(&self) -> &'static str {
        "LMSDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let grid = discrete_grid(&self.ts, self.spacing, self.steps_offset, n, self.respace, None, None);
        self.sigmas = grid.sigmas.iter().map(|&s| s as f32).chain(std::iter::once(0.0)).collect();
        self.timesteps = grid.timesteps.iter().map(|&t| t as f32 as f64).collect();
        self.derivatives.clear();
        self.n = n;
        Ok(())
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        init_sigma(&self.sigmas, self.spacing)
    }

    fn scale_model_input(&self, sample: &[f32], step: usize) -> Vec<f32> {
        scale_by_sigma(sample, self.sigmas[step])
    }

    fn step(&mut self, model_output: &[f32], step: usize, sample: &[f32], _noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        check_step(self.class_name(), step, self.timesteps.len())?;
        check_len(self.class_name(), model_output, sample)?;
        let sigma = self.sigmas[step];
        let pred = predict_x0(self.prediction, sigma, model_output, sample);
        self.derivatives.push(zip_map(sample, &pred, |s, p| (s - p) / sigma));
        if self.derivatives.len() > MAX_ORDER {
            self.derivatives.remove(0);
        }
        // As diffusers: the order counts from the schedule's start even when fewer derivatives are stored
        // (img2img), and the sum then stops at the oldest one stored.
        let order = (step + 1).min(MAX_ORDER);
        // Σ_j c_j·d_{newest−j}, summed newest first in float32, then added to the sample.
        let mut acc: Option<Vec<f32>> = None;
        for (j, d) in self.derivatives.iter().rev().take(order).enumerate() {
            let c = self.coefficient(order, step, j) as f32;
            acc = Some(match acc {
                None => d.iter().map(|v| c * v).collect(),
                Some(a) => zip_map(&a, d, |a, v| a + c * v),
            });
        }
        let acc = acc.unwrap_or_else(|| vec![0.0; sample.len()]);
        Ok(zip_map(sample, &acc, |s, a| s + a))
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[step])
    }
}
