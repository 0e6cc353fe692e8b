//! Heun (`HeunDiscreteScheduler`): Karras et al.'s second-order sampler. Each inference step is two
//! `step` calls: an Euler step to σ_{i+1}, then a correction with the derivative averaged over both ends.
//! The timesteps therefore repeat every inner entry (2n − 1 of them), and so do the σ.

use super::euler::{add_noise_sigma, init_sigma, initial_sigmas, predict_x0, scale_by_sigma};
use super::schedule::{discrete_grid, BetaDefaults, SigmaSpacing, Spacing, TrainSchedule};
use super::{check_len, check_step, zip3_map, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::Result;

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "linear",
    extra_schedules: &["exp"],
    has_rescale: false,
    clamp_terminal: false,
};

/// The first half of a step, kept for the second: derivative, step size and starting sample.
struct FirstHalf {
    derivative: Vec<f32>,
    dt: f32,
    sample: Vec<f32>,
}

pub struct Heun {
    ts: TrainSchedule,
    prediction: Prediction,
    clip: Option<f32>,
    spacing: Spacing,
    steps_offset: i64,
    respace: SigmaSpacing,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    first: Option<FirstHalf>,
}

impl Heun {
    pub fn new(cfg: &Config) -> Result<Heun> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        let clip = if cfg.bool("clip_sample", false)? { Some(cfg.f64("clip_sample_range", 1.0)? as f32) } else { None };
        let sigmas = initial_sigmas(&ts);
        Ok(Heun {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?,
            clip,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            respace: SigmaSpacing::from_config(cfg)?,
            n: 0,
            timesteps: Vec::new(),
            sigmas,
            first: None,
            ts,
        })
    }
}

impl Scheduler for Heun {
    fn class_name(&self) -> &'static str {
        "HeunDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let grid = discrete_grid(&self.ts, self.spacing, self.steps_offset, n, self.respace, None, None);
        let s: Vec<f32> = grid.sigmas.iter().map(|&s| s as f32).chain(std::iter::once(0.0)).collect();
        // [σ0, σ1, σ1, …, σ_{n−1}, σ_{n−1}, 0] and [t0, t1, t1, …, t_{n−1}, t_{n−1}].
        self.sigmas =
            std::iter::once(s[0]).chain(s[1..s.len() - 1].iter().flat_map(|&v| [v, v])).chain(std::iter::once(0.0)).collect();
        let t: Vec<f64> = grid.timesteps.iter().map(|&t| t as f32 as f64).collect();
        self.timesteps = std::iter::once(t[0]).chain(t[1..].iter().flat_map(|&v| [v, v])).collect();
        self.first = None;
        self.n = n;
        Ok(())
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn order(&self) -> usize {
        2
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
        let first_order = self.first.is_none();
        let (sigma, sigma_next) =
            if first_order { (self.sigmas[step], self.sigmas[step + 1]) } else { (self.sigmas[step - 1], self.sigmas[step]) };
        // x̂₀ uses σ at the point the model was evaluated: σ_i in the first half, σ_{i+1} in the second.
        let sigma_input = if first_order { sigma } else { sigma_next };
        let mut pred = predict_x0(self.prediction, sigma_input, model_output, sample);
        if let Some(r) = self.clip {
            pred.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        match self.first.take() {
            None => {
                let derivative = zip_map(sample, &pred, |s, p| (s - p) / sigma);
                let dt = sigma_next - sigma;
                let prev = zip_map(sample, &derivative, |s, d| s + d * dt);
                self.first = Some(FirstHalf { derivative, dt, sample: sample.to_vec() });
                Ok(prev)
            }
            Some(h) => {
                let derivative = zip3_map(sample, &pred, &h.derivative, |s, p, d0| (d0 + (s - p) / sigma_next) / 2.0);
                Ok(zip_map(&h.sample, &derivative, |s, d| s + d * h.dt))
            }
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[step])
    }
}
