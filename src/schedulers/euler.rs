//! Euler (`EulerDiscreteScheduler`) and Euler ancestral (`EulerAncestralDiscreteScheduler`): the
//! k-diffusion first-order samplers in σ space, x_{i+1} = x_i + (x_i − x̂₀)/σ_i · (σ_{i+1} − σ_i).
//! The ancestral one steps down to σ_down and adds fresh noise of size σ_up.

use super::schedule::{discrete_grid, np_log_f32, torch_linspace_f32, BetaDefaults, SigmaSpacing, Spacing, TrainSchedule};
use super::{check_len, check_step, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::Result;

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &[],
    has_rescale: true,
    clamp_terminal: true,
};

/// x̂₀ from the model output at σ (float32, diffusers' order).
pub(crate) fn predict_x0(prediction: Prediction, sigma: f32, model_output: &[f32], sample: &[f32]) -> Vec<f32> {
    match prediction {
        Prediction::Epsilon => zip_map(sample, model_output, |s, m| s - sigma * m),
        Prediction::VPrediction => {
            let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
            let c_in = sigma * sigma + 1.0;
            zip_map(model_output, sample, |m, s| m * c_out + s / c_in)
        }
        Prediction::Sample => model_output.to_vec(),
    }
}

/// x / √(σ² + 1).
pub(crate) fn scale_by_sigma(sample: &[f32], sigma: f32) -> Vec<f32> {
    let d = (sigma * sigma + 1.0).sqrt();
    sample.iter().map(|x| x / d).collect()
}

/// x + ε·σ.
pub(crate) fn add_noise_sigma(original: &[f32], noise: &[f32], sigma: f32) -> Vec<f32> {
    zip_map(original, noise, |x, n| x + n * sigma)
}

/// σ_max for "linspace"/"trailing" spacing, else √(σ_max² + 1) (float32).
pub(crate) fn init_sigma(sigmas: &[f32], spacing: Spacing) -> f32 {
    let max = sigmas.iter().cloned().fold(f32::MIN, f32::max);
    if spacing == Spacing::Leading {
        (max * max + 1.0).sqrt()
    } else {
        max
    }
}

/// The training σ table descending with a final 0: the grid diffusers holds before `set_timesteps`.
pub(crate) fn initial_sigmas(ts: &TrainSchedule) -> Vec<f32> {
    let mut s: Vec<f32> = ts.sigmas().into_iter().rev().collect();
    s.push(0.0);
    s
}

pub struct Euler {
    ts: TrainSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: i64,
    log_linear: bool,
    respace: SigmaSpacing,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    /// `timestep_type = "continuous"` with v-prediction: the model timestep is ¼ ln σ.
    continuous: bool,
    final_sigma_min: bool,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
}

impl Euler {
    pub fn new(cfg: &Config) -> Result<Euler> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        let prediction = Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?;
        let log_linear = match cfg.string("interpolation_type", "linear")?.as_str() {
            "linear" => false,
            "log_linear" => true,
            other => return Err(cfg.unsupported("interpolation_type", format!("{other:?}"), "expected linear or log_linear")),
        };
        let continuous = match cfg.string("timestep_type", "discrete")?.as_str() {
            "discrete" => false,
            "continuous" => prediction == Prediction::VPrediction,
            other => return Err(cfg.unsupported("timestep_type", format!("{other:?}"), "expected discrete or continuous")),
        };
        let final_sigma_min = match cfg.string("final_sigmas_type", "zero")?.as_str() {
            "zero" => false,
            "sigma_min" => true,
            other => return Err(cfg.unsupported("final_sigmas_type", format!("{other:?}"), "expected zero or sigma_min")),
        };
        let sigmas = initial_sigmas(&ts);
        Ok(Euler {
            prediction,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            log_linear,
            respace: SigmaSpacing::from_config(cfg)?,
            sigma_min: cfg.opt_f64("sigma_min")?,
            sigma_max: cfg.opt_f64("sigma_max")?,
            continuous,
            final_sigma_min,
            n: 0,
            timesteps: Vec::new(),
            sigmas,
            ts,
        })
    }

    /// The σ grid, one more entry than the timesteps.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for Euler {
    fn class_name(&self) -> &'static str {
        "EulerDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let mut grid = discrete_grid(&self.ts, self.spacing, self.steps_offset, n, SigmaSpacing::Interpolated, None, None);
        if self.log_linear {
            // torch.linspace(ln σ_max, ln σ_min, n + 1).exp(), in float32.
            let table = self.ts.sigmas();
            let (lo, hi) = (np_log_f32(table[0]), np_log_f32(table[table.len() - 1]));
            grid.sigmas = torch_linspace_f32(hi as f64, lo as f64, n + 1).iter().map(|v| v.exp() as f64).collect();
        }
        if self.respace != SigmaSpacing::Interpolated {
            let table = self.ts.sigmas();
            grid = super::schedule::respace_grid(
                grid.timesteps,
                grid.sigmas,
                &table,
                self.respace,
                self.sigma_min,
                self.sigma_max,
                n,
            );
        }
        let last = if self.final_sigma_min {
            let a = self.ts.alphas_cumprod[0];
            ((1.0 - a) / a).sqrt()
        } else {
            0.0
        };
        self.sigmas = grid.sigmas.iter().map(|&s| s as f32).chain(std::iter::once(last)).collect();
        self.timesteps = if self.continuous {
            self.sigmas[..self.sigmas.len() - 1].iter().map(|s| (0.25 * s.ln()) as f64).collect()
        } else {
            grid.timesteps.iter().map(|&t| t as f32 as f64).collect()
        };
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
        // s_churn = 0 (diffusers' default): σ̂ = σ·(0 + 1) = σ, no noise.
        let sigma = self.sigmas[step];
        let pred = predict_x0(self.prediction, sigma, model_output, sample);
        let dt = self.sigmas[step + 1] - sigma;
        Ok(zip_map(sample, &pred, |s, p| s + (s - p) / sigma * dt))
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[step])
    }
}

pub struct EulerAncestral {
    ts: TrainSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
}

impl EulerAncestral {
    pub fn new(cfg: &Config) -> Result<EulerAncestral> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        let sigmas = initial_sigmas(&ts);
        Ok(EulerAncestral {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction])?,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            n: 0,
            timesteps: Vec::new(),
            sigmas,
            ts,
        })
    }
}

impl Scheduler for EulerAncestral {
    fn class_name(&self) -> &'static str {
        "EulerAncestralDiscreteScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let grid = discrete_grid(&self.ts, self.spacing, self.steps_offset, n, SigmaSpacing::Interpolated, None, None);
        self.sigmas = grid.sigmas.iter().map(|&s| s as f32).chain(std::iter::once(0.0)).collect();
        self.timesteps = grid.timesteps;
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

    fn step(&mut self, model_output: &[f32], step: usize, sample: &[f32], noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        check_step(self.class_name(), step, self.timesteps.len())?;
        check_len(self.class_name(), model_output, sample)?;
        let sigma = self.sigmas[step];
        let pred = predict_x0(self.prediction, sigma, model_output, sample);
        let (from, to) = (sigma, self.sigmas[step + 1]);
        // Split the step into a deterministic part down to σ_down and fresh noise σ_up, σ_down² + σ_up² = σ_to².
        let sigma_up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let sigma_down = (to * to - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma;
        let eps = noise.randn(sample.len())?;
        let prev = zip_map(sample, &pred, |s, p| s + (s - p) / sigma * dt);
        Ok(zip_map(&prev, &eps, |x, n| x + n * sigma_up))
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        add_noise_sigma(original, noise, self.sigmas[step])
    }
}
