//! PNDM (`PNDMScheduler`, Liu et al. 2022): pseudo linear multistep. Without `skip_prk_steps` it warms up
//! with 3 pseudo Runge–Kutta steps (4 model calls each, on a 12-entry half-step schedule); with it (the
//! Stable Diffusion default, "PLMS") the first step is repeated as a pseudo-Heun pair (n + 1 timesteps),
//! then Adams–Bashforth combinations of up to 4 past model outputs.

use super::schedule::{np_arange, np_linspace, np_round, BetaDefaults, Spacing, TrainSchedule};
use super::{check_len, check_step, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::{Error, Result};

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &[],
    has_rescale: false,
    clamp_terminal: false,
};

pub struct Pndm {
    ts: TrainSchedule,
    prediction: Prediction,
    skip_prk_steps: bool,
    final_alpha_cumprod: f32,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    prk_len: usize,
    int_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
    // Multistep state, as diffusers keeps it.
    counter: usize,
    ets: Vec<Vec<f32>>,
    cur_model_output: Option<Vec<f32>>,
    cur_sample: Option<Vec<f32>>,
}

impl Pndm {
    pub fn new(cfg: &Config) -> Result<Pndm> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        let final_alpha_cumprod = if cfg.bool("set_alpha_to_one", false)? { 1.0 } else { ts.alphas_cumprod[0] };
        Ok(Pndm {
            prediction: Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction])?,
            skip_prk_steps: cfg.bool("skip_prk_steps", false)?,
            final_alpha_cumprod,
            spacing: Spacing::from_config(cfg, "leading")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            n: 0,
            prk_len: 0,
            int_timesteps: Vec::new(),
            timesteps: Vec::new(),
            counter: 0,
            ets: Vec::new(),
            cur_model_output: None,
            cur_sample: None,
            ts,
        })
    }

    /// Training-step distance between inference steps (T // n).
    fn ratio(&self) -> i64 {
        (self.ts.num_train_timesteps / self.n) as i64
    }

    /// The DDIM-like update from `t` to `t_prev` given ε (Liu et al. eq. 9), float32.
    fn prev_sample(&self, sample: &[f32], t: i64, t_prev: i64, model_output: &[f32]) -> Vec<f32> {
        let a = self.ts.alpha_cumprod(t);
        let a_prev = if t_prev >= 0 { self.ts.alpha_cumprod(t_prev) } else { self.final_alpha_cumprod };
        let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
        let eps = match self.prediction {
            Prediction::VPrediction => zip_map(model_output, sample, |m, s| a.sqrt() * m + b.sqrt() * s),
            _ => model_output.to_vec(),
        };
        let sample_coeff = (a_prev / a).sqrt();
        let denom = a * b_prev.sqrt() + (a * b * a_prev).sqrt();
        let da = a_prev - a;
        zip_map(sample, &eps, |s, e| sample_coeff * s - da * e / denom)
    }

    fn step_prk(&mut self, m: &[f32], t: i64, sample: &[f32]) -> Vec<f32> {
        let diff_to_prev = if self.counter % 2 == 1 { 0 } else { self.ratio() / 2 };
        let prev_t = t - diff_to_prev;
        let t = self.int_timesteps[self.counter / 4 * 4];
        let mut model_output = m.to_vec();
        match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(m.iter().map(|v| (1.0 / 6.0) as f32 * v).collect());
                self.ets.push(m.to_vec());
                self.cur_sample = Some(sample.to_vec());
            }
            1 | 2 => {
                let acc = self.cur_model_output.take().unwrap_or_else(|| vec![0.0; m.len()]);
                self.cur_model_output = Some(zip_map(&acc, m, |a, v| a + (1.0 / 3.0) as f32 * v));
            }
            _ => {
                let acc = self.cur_model_output.take().unwrap_or_else(|| vec![0.0; m.len()]);
                model_output = zip_map(&acc, m, |a, v| a + (1.0 / 6.0) as f32 * v);
            }
        }
        let cur = self.cur_sample.clone().unwrap_or_else(|| sample.to_vec());
        self.counter += 1;
        self.prev_sample(&cur, t, prev_t, &model_output)
    }

    fn step_plms(&mut self, m: &[f32], t: i64, sample: &[f32]) -> Result<Vec<f32>> {
        if !self.skip_prk_steps && self.ets.len() < 3 {
            return Err(Error::usage("PNDMScheduler: PLMS steps need the 12 PRK steps first"));
        }
        let (mut t, mut prev_t) = (t, t - self.ratio());
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(m.to_vec());
        } else {
            // The repeated first timestep: redo the first step from the same start with averaged ε.
            prev_t = t;
            t += self.ratio();
        }
        let e = &self.ets;
        let k = e.len();
        let mut sample = sample.to_vec();
        let model_output: Vec<f32> = if k == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            m.to_vec()
        } else if k == 1 && self.counter == 1 {
            sample = self.cur_sample.take().unwrap_or(sample);
            zip_map(m, &e[0], |a, b| (a + b) / 2.0)
        } else if k == 2 {
            zip_map(&e[1], &e[0], |e1, e2| (3.0 * e1 - e2) / 2.0)
        } else if k == 3 {
            (0..m.len()).map(|i| (23.0 * e[2][i] - 16.0 * e[1][i] + 5.0 * e[0][i]) / 12.0).collect()
        } else {
            let c = (1.0 / 24.0) as f32;
            (0..m.len()).map(|i| c * (55.0 * e[3][i] - 59.0 * e[2][i] + 37.0 * e[1][i] - 9.0 * e[0][i])).collect()
        };
        self.counter += 1;
        Ok(self.prev_sample(&sample, t, prev_t, &model_output))
    }
}

impl Scheduler for Pndm {
    fn class_name(&self) -> &'static str {
        "PNDMScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let nt = self.ts.num_train_timesteps;
        if n == 0 || n > nt {
            return Err(Error::usage(format!("PNDMScheduler: {n} steps: need 1 to {nt}")));
        }
        if !self.skip_prk_steps && n < 4 {
            return Err(Error::usage(format!("PNDMScheduler: {n} steps: PRK warm-up needs at least 4 (or set skip_prk_steps)")));
        }
        self.n = n;
        // The base grid, ascending.
        let base: Vec<i64> = match self.spacing {
            Spacing::Linspace => np_linspace(0.0, (nt - 1) as f64, n, true).iter().map(|v| np_round(*v) as i64).collect(),
            Spacing::Leading => (0..n as i64).map(|i| i * self.ratio() + self.steps_offset).collect(),
            Spacing::Trailing => {
                let r = nt as f64 / n as f64;
                np_arange(nt as f64, 0.0, -r).iter().rev().map(|v| np_round(*v) as i64 - 1).collect()
            }
        };
        let (prk, plms): (Vec<i64>, Vec<i64>) = if self.skip_prk_steps {
            // [t_{n−1}, …, t_1, t_1, t_0]: the second-to-last ascending entry repeated.
            let mut p = base[..n - 1].to_vec();
            if n >= 2 {
                p.push(base[n - 2]);
            }
            p.push(base[n - 1]);
            p.reverse();
            (Vec::new(), p)
        } else {
            // Half steps between the 4 largest timesteps, each inner one twice.
            let half = self.ratio() / 2;
            let top = &base[n - 4..];
            let pairs: Vec<i64> = top.iter().flat_map(|&t| [t, t + half]).collect();
            let pairs = &pairs[..pairs.len() - 1];
            let doubled: Vec<i64> = pairs.iter().flat_map(|&t| [t, t]).collect();
            let mut prk = doubled[1..doubled.len() - 1].to_vec();
            prk.reverse();
            (prk, base[..n - 3].iter().rev().copied().collect())
        };
        self.prk_len = prk.len();
        let all: Vec<i64> = prk.into_iter().chain(plms).collect();
        super::ddim::check_timesteps(self.class_name(), &all, nt)?;
        self.timesteps = all.iter().map(|&t| t as f64).collect();
        self.int_timesteps = all;
        self.counter = 0;
        self.ets.clear();
        self.cur_model_output = None;
        self.cur_sample = None;
        Ok(())
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: &[f32], step: usize, sample: &[f32], _noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        check_step(self.class_name(), step, self.timesteps.len())?;
        check_len(self.class_name(), model_output, sample)?;
        let t = self.int_timesteps[step];
        if self.counter < self.prk_len && !self.skip_prk_steps {
            Ok(self.step_prk(model_output, t, sample))
        } else {
            self.step_plms(model_output, t, sample)
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        self.ts.add_noise(original, noise, self.int_timesteps[step])
    }
}
