//! LCM (`LCMScheduler`, Luo et al. 2023): latent consistency sampling. Each step maps the sample to the
//! consistency function's x̂₀ (c_skip·x + c_out·x̂₀) and, except at the last step, re-noises it to the
//! next timestep with fresh noise. Timesteps are a subset of the distillation schedule of
//! `original_inference_steps` steps.

use super::ddim::{check_timesteps, predict_x0_eps};
use super::schedule::{np_linspace, BetaDefaults, TrainSchedule};
use super::{check_len, check_step, zip3_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::{Error, Result};

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    extra_schedules: &[],
    has_rescale: true,
    clamp_terminal: false,
};

pub struct Lcm {
    ts: TrainSchedule,
    prediction: Prediction,
    clip: Option<f32>,
    final_alpha_cumprod: f32,
    original_inference_steps: usize,
    timestep_scaling: f32,
    n: usize,
    int_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
}

impl Lcm {
    pub fn new(cfg: &Config) -> Result<Lcm> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        cfg.refuse_thresholding()?;
        let clip = if cfg.bool("clip_sample", false)? { Some(cfg.f64("clip_sample_range", 1.0)? as f32) } else { None };
        let final_alpha_cumprod = if cfg.bool("set_alpha_to_one", true)? { 1.0 } else { ts.alphas_cumprod[0] };
        let original_inference_steps = cfg.usize("original_inference_steps", 50)?;
        if original_inference_steps == 0 || original_inference_steps > ts.num_train_timesteps {
            return Err(cfg.unsupported(
                "original_inference_steps",
                original_inference_steps,
                &format!("must be 1 to num_train_timesteps = {}", ts.num_train_timesteps),
            ));
        }
        Ok(Lcm {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?,
            clip,
            final_alpha_cumprod,
            original_inference_steps,
            timestep_scaling: cfg.f64("timestep_scaling", 10.0)? as f32,
            n: 0,
            int_timesteps: Vec::new(),
            timesteps: Vec::new(),
            ts,
        })
    }

    /// `set_timesteps` with img2img's `strength`: LCM draws its steps from the first `strength` part of
    /// the distillation schedule (as diffusers' LCM img2img pipeline asks for).
    pub fn set_timesteps_with_strength(&mut self, n: usize, strength: f64) -> Result<()> {
        let orig = self.original_inference_steps;
        let k = (self.ts.num_train_timesteps / orig) as i64;
        let count = (orig as f64 * strength) as usize;
        // The distillation schedule k−1, 2k−1, … (descending), of which n are taken evenly.
        let origin: Vec<i64> = (1..=count as i64).rev().map(|i| i * k - 1).collect();
        if n == 0 || n > self.ts.num_train_timesteps {
            return Err(Error::usage(format!("LCMScheduler: {n} steps: need 1 to {}", self.ts.num_train_timesteps)));
        }
        if origin.len() / n < 1 {
            return Err(Error::usage(format!(
                "LCMScheduler: original_inference_steps × strength = {orig} × {strength} is fewer than the {n} steps asked for"
            )));
        }
        if n > orig {
            return Err(Error::usage(format!("LCMScheduler: {n} steps is more than original_inference_steps = {orig}")));
        }
        let idx = np_linspace(0.0, origin.len() as f64, n, false);
        let t: Vec<i64> = idx.iter().map(|i| origin[i.floor() as usize]).collect();
        check_timesteps("LCMScheduler", &t, self.ts.num_train_timesteps)?;
        self.timesteps = t.iter().map(|&t| t as f64).collect();
        self.int_timesteps = t;
        self.n = n;
        Ok(())
    }
}

impl Scheduler for Lcm {
    fn class_name(&self) -> &'static str {
        "LCMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        self.set_timesteps_with_strength(n, 1.0)
    }

    /// diffusers' LCM img2img pipeline runs all `n` steps, taken from the first `strength` part of the
    /// distillation schedule, so the run starts at step 0.
    fn set_timesteps_img2img(&mut self, n: usize, strength: f64) -> Result<usize> {
        self.set_timesteps_with_strength(n, strength)?;
        Ok(0)
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
        let prev_t = self.int_timesteps.get(step + 1).copied().unwrap_or(t);
        let a = self.ts.alpha_cumprod(t);
        let a_prev = if prev_t >= 0 { self.ts.alpha_cumprod(prev_t) } else { self.final_alpha_cumprod };
        // Boundary-condition scalings with σ_data = 0.5 (float32: t·scaling is a float32 tensor).
        let scaled = t as f32 * self.timestep_scaling;
        let c_skip = 0.25 / (scaled * scaled + 0.25);
        let c_out = scaled / (scaled * scaled + 0.25).sqrt();
        let (mut x0, _) = predict_x0_eps(self.prediction, a, model_output, sample);
        if let Some(r) = self.clip {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        if step + 1 == self.n {
            return Ok(x0.iter().zip(sample).map(|(x, s)| c_out * x + c_skip * s).collect());
        }
        let z = noise.randn(sample.len())?;
        let (sa, sb) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        Ok(zip3_map(&x0, sample, &z, |x, s, z| sa * (c_out * x + c_skip * s) + sb * z))
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        self.ts.add_noise(original, noise, self.int_timesteps[step])
    }
}
