//! UniPC (`UniPCMultistepScheduler`, Zhao et al. 2023): a multistep predictor (UniP) followed, at the
//! next step, by a corrector (UniC) that reuses the new model output at no extra model call. Variants
//! B(h) = h (`bh1`) or eʰ − 1 (`bh2`), data (`predict_x0`) or noise prediction, any `solver_order`.

use super::dpm::{alpha_sigma, lambda};
use super::schedule::{
    exponential_sigmas, karras_sigmas, np_arange, np_interp, np_linspace, np_log_f32, np_round, sigma_to_t, BetaDefaults,
    Spacing, TrainSchedule,
};
use super::{check_len, check_step, zip_map, Config, NoiseSource, Prediction, Scheduler};
use crate::error::{Error, Result};

const DEFAULTS: BetaDefaults = BetaDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    extra_schedules: &[],
    has_rescale: true,
    clamp_terminal: true,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Respace {
    Interpolated,
    Karras,
    Exponential,
}

/// Solves the small dense system `a·x = b` (Gaussian elimination with partial pivoting, float64; the
/// coefficients come back as float32 as torch.linalg.solve on float32 gives them).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let f = a[row][col] / pivot_row[col];
            a[row].iter_mut().zip(&pivot_row).skip(col).for_each(|(v, p)| *v -= f * p);
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().map(|&v| v as f32).collect()
}

/// The coefficients shared by UniP and UniC for one step of size h with ratios `rks` (last one 1):
/// R[k] = rks^k, b[k] = φ_{k+1}(h)·(k+1)!/B(h), plus h·φ₁ = expm1(±h) and B(h). All float32.
struct Coefficients {
    r: Vec<Vec<f32>>,
    b: Vec<f32>,
    h_phi_1: f32,
    b_h: f32,
}

fn coefficients(h: f32, rks: &[f32], order: usize, predict_x0: bool, bh1: bool) -> Coefficients {
    let hh = if predict_x0 { -h } else { h };
    let h_phi_1 = hh.exp_m1();
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1u64;
    let b_h = if bh1 { hh } else { hh.exp_m1() };
    let mut r = Vec::new();
    let mut b = Vec::new();
    for i in 1..=order {
        r.push(rks.iter().map(|&x| if i == 1 { 1.0 } else { x.powi(i as i32 - 1) }).collect());
        b.push(h_phi_k * factorial as f32 / b_h);
        factorial *= i as u64 + 1;
        h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
    }
    Coefficients { r, b, h_phi_1, b_h }
}

pub struct UniPc {
    ts: TrainSchedule,
    prediction: Prediction,
    order: usize,
    predict_x0: bool,
    bh1: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    respace: Respace,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    final_sigma_min: bool,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The last `order` converted model outputs, oldest first.
    model_outputs: Vec<Vec<f32>>,
    lower_order_nums: usize,
    last_sample: Option<Vec<f32>>,
    this_order: usize,
}

impl UniPc {
    pub fn new(cfg: &Config) -> Result<UniPc> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        cfg.refuse_thresholding()?;
        let prediction = Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?;
        let order = cfg.usize("solver_order", 2)?;
        if order == 0 {
            return Err(cfg.unsupported("solver_order", 0, "must be at least 1"));
        }
        let bh1 = match cfg.string("solver_type", "bh2")?.as_str() {
            "bh1" => true,
            "bh2" | "midpoint" | "heun" | "logrho" => false,
            other => return Err(cfg.unsupported("solver_type", format!("{other:?}"), "expected bh1 or bh2")),
        };
        let disable_corrector = match cfg.get("disable_corrector") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_u64().map(|u| u as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| cfg.unsupported("disable_corrector", v, "expected a list of step indices"))?,
        };
        cfg.refuse_set("solver_p", "an external predictor scheduler cannot be given in a config")?;
        cfg.refuse_true("use_flow_sigmas", "flow-matching sigmas are for flow models, not Stable Diffusion")?;
        cfg.refuse_true("use_dynamic_shifting", "dynamic shifting is for flow models")?;
        cfg.refuse_true("use_beta_sigmas", "beta-distributed sigmas need scipy's beta.ppf, which wgsd does not implement")?;
        cfg.refuse_set("shift_terminal", "shift_terminal is only for flow sigmas")?;
        let karras = cfg.bool("use_karras_sigmas", false)?;
        let exponential = cfg.bool("use_exponential_sigmas", false)?;
        let respace = match (karras, exponential) {
            (true, true) => {
                return Err(cfg.unsupported(
                    "use_exponential_sigmas",
                    true,
                    "only one of use_karras_sigmas and use_exponential_sigmas may be set",
                ))
            }
            (true, false) => Respace::Karras,
            (false, true) => Respace::Exponential,
            _ => Respace::Interpolated,
        };
        let final_sigma_min = match cfg.string("final_sigmas_type", "zero")?.as_str() {
            "zero" => false,
            "sigma_min" => true,
            other => return Err(cfg.unsupported("final_sigmas_type", format!("{other:?}"), "expected zero or sigma_min")),
        };
        Ok(UniPc {
            prediction,
            order,
            predict_x0: cfg.bool("predict_x0", true)?,
            bh1,
            lower_order_final: cfg.bool("lower_order_final", true)?,
            disable_corrector,
            respace,
            sigma_min: cfg.opt_f64("sigma_min")?,
            sigma_max: cfg.opt_f64("sigma_max")?,
            final_sigma_min,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            n: 0,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            last_sample: None,
            this_order: 1,
            ts,
        })
    }

    fn convert(&self, m: &[f32], sample: &[f32], step: usize) -> Vec<f32> {
        let (at, st) = alpha_sigma(self.sigmas[step]);
        match (self.predict_x0, self.prediction) {
            (true, Prediction::Epsilon) => zip_map(sample, m, |s, m| (s - st * m) / at),
            (true, Prediction::VPrediction) => zip_map(sample, m, |s, m| at * s - st * m),
            (false, Prediction::Sample) => zip_map(sample, m, |s, m| (s - at * m) / st),
            (false, Prediction::VPrediction) => zip_map(m, sample, |m, s| at * m + st * s),
            _ => m.to_vec(),
        }
    }

    /// λ at σ index `i`.
    fn lambda_at(&self, i: usize) -> f32 {
        let (a, s) = alpha_sigma(self.sigmas[i]);
        lambda(a, s)
    }

    /// The ratios r_k = (λ_{s_k} − λ_{s0})/h and differences D1_k = (m_k − m0)/r_k of the older outputs.
    /// `older(k)` is the σ index of the k-th older output.
    fn differences(&self, h: f32, l0: f32, order: usize, older: impl Fn(usize) -> usize) -> (Vec<f32>, Vec<Vec<f32>>) {
        let k_len = self.model_outputs.len();
        let m0 = &self.model_outputs[k_len - 1];
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for k in 1..order {
            let rk = (self.lambda_at(older(k)) - l0) / h;
            d1s.push(zip_map(&self.model_outputs[k_len - 1 - k], m0, |mi, m0| (mi - m0) / rk));
            rks.push(rk);
        }
        rks.push(1.0);
        (rks, d1s)
    }

    /// Σ ρ_k·D1_k, or None without older outputs.
    fn weighted(rhos: &[f32], d1s: &[Vec<f32>]) -> Option<Vec<f32>> {
        let (first, rest) = d1s.split_first()?;
        let mut acc: Vec<f32> = first.iter().map(|v| rhos[0] * v).collect();
        for (k, d) in rest.iter().enumerate() {
            acc.iter_mut().zip(d).for_each(|(a, v)| *a += rhos[k + 1] * v);
        }
        Some(acc)
    }

    /// x_t_ = (σ_t/σ_s0)·x − α_t·hφ₁·m0 (data prediction) or (α_t/α_s0)·x − σ_t·hφ₁·m0, and the factor
    /// α_t·B(h) (or σ_t·B(h)) of the higher-order terms.
    fn base(&self, t: usize, s0: usize, x: &[f32], c: &Coefficients) -> (Vec<f32>, f32) {
        let (at, st) = alpha_sigma(self.sigmas[t]);
        let (a0, ss0) = alpha_sigma(self.sigmas[s0]);
        let m0 = &self.model_outputs[self.model_outputs.len() - 1];
        if self.predict_x0 {
            let (cx, cm) = (st / ss0, at * c.h_phi_1);
            (zip_map(x, m0, |x, m| cx * x - cm * m), at * c.b_h)
        } else {
            let (cx, cm) = (at / a0, st * c.h_phi_1);
            (zip_map(x, m0, |x, m| cx * x - cm * m), st * c.b_h)
        }
    }

    /// UniP: predicts the sample at σ_{i+1} from the stored outputs.
    fn predictor(&self, step: usize, x: &[f32], order: usize) -> Vec<f32> {
        let (l_t, l0) = (self.lambda_at(step + 1), self.lambda_at(step));
        let h = l_t - l0;
        let (rks, d1s) = self.differences(h, l0, order, |k| step - k);
        let c = coefficients(h, &rks, order, self.predict_x0, self.bh1);
        let rhos: Vec<f32> = if order == 2 {
            vec![0.5]
        } else if order > 2 {
            let a = c.r[..order - 1].iter().map(|row| row[..order - 1].iter().map(|&v| v as f64).collect()).collect();
            solve(a, c.b[..order - 1].iter().map(|&v| v as f64).collect())
        } else {
            Vec::new()
        };
        let (x_t, f) = self.base(step + 1, step, x, &c);
        match Self::weighted(&rhos, &d1s) {
            Some(res) => zip_map(&x_t, &res, |x, r| x - f * r),
            None => x_t,
        }
    }

    /// UniC: corrects the sample at σ_i, given the new (converted) output there.
    fn corrector(&self, step: usize, model_t: &[f32], last_sample: &[f32], order: usize) -> Vec<f32> {
        let (l_t, l0) = (self.lambda_at(step), self.lambda_at(step - 1));
        let h = l_t - l0;
        let (rks, d1s) = self.differences(h, l0, order, |k| step - (k + 1));
        let c = coefficients(h, &rks, order, self.predict_x0, self.bh1);
        let rhos: Vec<f32> = if order == 1 {
            vec![0.5]
        } else {
            let a = c.r.iter().map(|row| row.iter().map(|&v| v as f64).collect()).collect();
            solve(a, c.b.iter().map(|&v| v as f64).collect())
        };
        let (x_t, f) = self.base(step, step - 1, last_sample, &c);
        let m0 = &self.model_outputs[self.model_outputs.len() - 1];
        let rho_t = rhos[rhos.len() - 1];
        let d1_t = zip_map(model_t, m0, |a, b| a - b);
        let inner = match Self::weighted(&rhos, &d1s) {
            Some(res) => zip_map(&res, &d1_t, |r, d| r + rho_t * d),
            None => d1_t.iter().map(|d| rho_t * d).collect(),
        };
        zip_map(&x_t, &inner, |x, r| x - f * r)
    }
}

impl Scheduler for UniPc {
    fn class_name(&self) -> &'static str {
        "UniPCMultistepScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let nt = self.ts.num_train_timesteps;
        if n == 0 {
            return Err(Error::usage("UniPCMultistepScheduler: 0 steps"));
        }
        let int_t: Vec<i64> = match self.spacing {
            Spacing::Linspace => {
                np_linspace(0.0, (nt - 1) as f64, n + 1, true).iter().rev().take(n).map(|x| np_round(*x) as i64).collect()
            }
            Spacing::Leading => {
                let ratio = (nt / (n + 1)) as i64;
                (1..=n as i64).rev().map(|i| i * ratio + self.steps_offset).collect()
            }
            Spacing::Trailing => {
                np_arange(nt as f64, 0.0, -(nt as f64 / n as f64)).iter().map(|x| np_round(*x) as i64 - 1).collect()
            }
        };
        let table = self.ts.sigmas();
        let log_sigmas: Vec<f32> = table.iter().map(|&s| np_log_f32(s)).collect();
        let lo = self.sigma_min.unwrap_or(table[0] as f64);
        let hi = self.sigma_max.unwrap_or(table[nt - 1] as f64);
        let (sigmas, int_t, last): (Vec<f64>, Vec<i64>, f32) = match self.respace {
            Respace::Karras | Respace::Exponential => {
                let s = if self.respace == Respace::Karras { karras_sigmas(lo, hi, n) } else { exponential_sigmas(lo, hi, n) };
                let round = self.respace == Respace::Karras;
                let t = s
                    .iter()
                    .map(|&v| {
                        let t = sigma_to_t(v, &log_sigmas);
                        (if round { np_round(t) } else { t }) as i64
                    })
                    .collect();
                let last = if self.final_sigma_min { s[s.len() - 1] as f32 } else { 0.0 };
                (s, t, last)
            }
            Respace::Interpolated => {
                let x: Vec<f64> = int_t.iter().map(|&t| t as f64).collect();
                let a = self.ts.alphas_cumprod[0];
                let last = if self.final_sigma_min { ((1.0 - a) / a).sqrt() } else { 0.0 };
                (np_interp(&x, &table), int_t, last)
            }
        };
        self.sigmas = sigmas.iter().map(|&s| s as f32).chain(std::iter::once(last)).collect();
        self.timesteps = int_t.iter().map(|&t| t as f64).collect();
        self.n = self.timesteps.len();
        self.model_outputs.clear();
        self.lower_order_nums = 0;
        self.last_sample = None;
        self.this_order = 1;
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
        let converted = self.convert(model_output, sample, step);
        let use_corrector = step > 0 && !self.disable_corrector.contains(&(step - 1)) && self.last_sample.is_some();
        let sample = match (&self.last_sample, use_corrector) {
            (Some(last), true) => self.corrector(step, &converted, last, self.this_order),
            _ => sample.to_vec(),
        };
        self.model_outputs.push(converted);
        if self.model_outputs.len() > self.order {
            self.model_outputs.remove(0);
        }
        let order = if self.lower_order_final { self.order.min(self.timesteps.len() - step) } else { self.order };
        self.this_order = order.min(self.lower_order_nums + 1);
        let prev = self.predictor(step, &sample, self.this_order);
        self.last_sample = Some(sample);
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        Ok(prev)
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], step: usize) -> Vec<f32> {
        let (at, st) = alpha_sigma(self.sigmas[step]);
        zip_map(original, noise, |x, n| at * x + st * n)
    }
}
