//! DDPM (`DDPMScheduler`, Ho et al. 2020): the ancestral sampler of the posterior q(x_{t'} | x_t, x̂₀),
//! with fresh noise at every step whose timestep is above 0, stepping between the scheduled timesteps.

use super::ddim::{discrete_timesteps, predict_x0_eps};
use super::schedule::{BetaDefaults, Spacing, TrainSchedule};
use super::{check_len, check_step, zip3_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::Result;

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &["laplace", "sigmoid"],
    has_rescale: true,
    clamp_terminal: false,
};

/// `variance_type`: the fixed posterior variances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variance {
    Small,
    SmallLog,
    Large,
}

pub struct Ddpm {
    ts: TrainSchedule,
    prediction: Prediction,
    variance: Variance,
    clip: Option<f32>,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    int_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
}

impl Ddpm {
    pub fn new(cfg: &Config) -> Result<Ddpm> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        cfg.refuse_thresholding()?;
        let variance = match cfg.string("variance_type", "fixed_small")?.as_str() {
            "fixed_small" => Variance::Small,
            "fixed_small_log" => Variance::SmallLog,
            "fixed_large" => Variance::Large,
            other @ ("learned" | "learned_range") => {
                return Err(cfg.unsupported(
                    "variance_type",
                    format!("{other:?}"),
                    "learned variances need a model that predicts them (twice the output channels)",
                ))
            }
            other => {
                return Err(cfg.unsupported(
                    "variance_type",
                    format!("{other:?}"),
                    "expected fixed_small, fixed_small_log or fixed_large",
                ))
            }
        };
        let clip = if cfg.bool("clip_sample", true)? { Some(cfg.f64("clip_sample_range", 1.0)? as f32) } else { None };
        Ok(Ddpm {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?,
            variance,
            clip,
            spacing: Spacing::from_config(cfg, "leading")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            n: 0,
            int_timesteps: Vec::new(),
            timesteps: Vec::new(),
            ts,
        })
    }
}

impl Scheduler for Ddpm {
    fn class_name(&self) -> &'static str {
        "DDPMScheduler"
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
        let prev_t = self.int_timesteps.get(step + 1).copied().unwrap_or(-1);
        let a = self.ts.alpha_cumprod(t);
        let a_prev = if prev_t >= 0 { self.ts.alpha_cumprod(prev_t) } else { 1.0 };
        let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
        let cur_alpha = a / a_prev;
        let cur_beta = 1.0 - cur_alpha;
        let (mut x0, _) = predict_x0_eps(self.prediction, a, model_output, sample);
        if let Some(r) = self.clip {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        // Posterior mean coefficients (Ho et al. eq. 7).
        let x0_coeff = (a_prev.sqrt() * cur_beta) / b;
        let x_coeff = cur_alpha.sqrt() * b_prev / b;
        if t <= 0 {
            return Ok(x0.iter().zip(sample).map(|(x, s)| x0_coeff * x + x_coeff * s).collect());
        }
        let z = noise.randn(sample.len())?;
        let variance = (((1.0 - a_prev) / (1.0 - a)) * cur_beta).max(1e-20);
        let std = match self.variance {
            Variance::Small => variance.sqrt(),
            Variance::SmallLog => (0.5 * variance.ln()).exp(),
            Variance::Large => cur_beta.sqrt(),
        };
        Ok(zip3_map(&x0, sample, &z, |x, s, z| (x0_coeff * x + x_coeff * s) + std * z))
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        self.ts.add_noise(original, noise, self.int_timesteps[step])
    }
}

/// The training noise schedule and prediction type of a model, as diffusers' training scripts build them:
/// `DDPMScheduler.from_pretrained(model, subfolder="scheduler")` reads whatever class the folder's config
/// names, with DDPM's defaults for absent keys.
pub fn training_schedule(config: &serde_json::Value, source: &str) -> Result<(TrainSchedule, String)> {
    let c = Config::new("DDPMScheduler", config, source)?;
    let ts = TrainSchedule::from_config(&c, &DEFAULTS)?;
    let pred = c.string("prediction_type", "epsilon")?;
    Ok((ts, pred))
}
