//! DPM-Solver multistep (`DPMSolverMultistepScheduler`, Lu et al. 2022): DPM++ 2M (`algorithm_type =
//! "dpmsolver++"`), DPM++ 2M SDE (`"sde-dpmsolver++"`), their Karras variants (`use_karras_sigmas`), and
//! the older `dpmsolver` / `sde-dpmsolver` forms; orders 1–3.
//!
//! Every update is a linear combination of the sample, the stored (converted) model outputs and, for the
//! SDE forms, fresh noise. The scalar coefficients are computed in float32 exactly as diffusers' 0-d
//! tensor expressions are, then the terms are summed element-wise left to right (a subtraction there is
//! the addition of a negated coefficient, which rounds identically).

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
enum Algorithm {
    DpmSolver,
    DpmSolverPp,
    SdeDpmSolver,
    SdeDpmSolverPp,
}

impl Algorithm {
    /// The ++ forms predict x₀ (data prediction); the others ε.
    fn data_prediction(self) -> bool {
        matches!(self, Algorithm::DpmSolverPp | Algorithm::SdeDpmSolverPp)
    }
    fn sde(self) -> bool {
        matches!(self, Algorithm::SdeDpmSolver | Algorithm::SdeDpmSolverPp)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Respace {
    Interpolated,
    Karras,
    Lu,
    Exponential,
}

/// (α_t, σ_t) of the VP process at k-diffusion σ: α = 1/√(σ² + 1), σ_t = σ·α.
pub(crate) fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = ln α − ln σ (float32; +∞ at σ = 0).
pub(crate) fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

/// Σ c_k·v_k element-wise, left to right in float32.
pub(crate) fn combine(terms: &[(f32, &[f32])]) -> Vec<f32> {
    let (c0, v0) = terms[0];
    let mut acc: Vec<f32> = v0.iter().map(|v| c0 * v).collect();
    for &(c, v) in &terms[1..] {
        acc.iter_mut().zip(v).for_each(|(a, x)| *a += c * x);
    }
    acc
}

pub struct DpmSolverMultistep {
    ts: TrainSchedule,
    prediction: Prediction,
    order: usize,
    algorithm: Algorithm,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    respace: Respace,
    final_sigma_min: bool,
    lambda_min_clipped: f64,
    squaredcos: bool,
    spacing: Spacing,
    steps_offset: i64,
    n: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The last `order` converted model outputs, oldest first.
    model_outputs: Vec<Vec<f32>>,
    lower_order_nums: usize,
}

impl DpmSolverMultistep {
    pub fn new(cfg: &Config) -> Result<DpmSolverMultistep> {
        let ts = TrainSchedule::from_config(cfg, &DEFAULTS)?;
        cfg.refuse_thresholding()?;
        let prediction = Prediction::from_config(cfg, &[Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample])?;
        let order = cfg.usize("solver_order", 2)?;
        if !(1..=3).contains(&order) {
            return Err(cfg.unsupported("solver_order", order, "expected 1, 2 or 3"));
        }
        let algorithm = match cfg.string("algorithm_type", "dpmsolver++")?.as_str() {
            "dpmsolver" => Algorithm::DpmSolver,
            "dpmsolver++" | "deis" => Algorithm::DpmSolverPp,
            "sde-dpmsolver" => Algorithm::SdeDpmSolver,
            "sde-dpmsolver++" => Algorithm::SdeDpmSolverPp,
            other => {
                return Err(cfg.unsupported(
                    "algorithm_type",
                    format!("{other:?}"),
                    "expected dpmsolver++, sde-dpmsolver++, dpmsolver or sde-dpmsolver",
                ))
            }
        };
        let heun = match cfg.string("solver_type", "midpoint")?.as_str() {
            "midpoint" | "logrho" | "bh1" | "bh2" => false,
            "heun" => true,
            other => return Err(cfg.unsupported("solver_type", format!("{other:?}"), "expected midpoint or heun")),
        };
        if order == 3 && algorithm == Algorithm::SdeDpmSolver {
            return Err(cfg.unsupported("solver_order", 3, "sde-dpmsolver has no third-order update"));
        }
        let final_sigma_min = match cfg.string("final_sigmas_type", "zero")?.as_str() {
            "zero" => false,
            "sigma_min" => true,
            other => return Err(cfg.unsupported("final_sigmas_type", format!("{other:?}"), "expected zero or sigma_min")),
        };
        if !final_sigma_min && !algorithm.data_prediction() {
            return Err(cfg.unsupported(
                "final_sigmas_type",
                "\"zero\"",
                "dpmsolver and sde-dpmsolver need final_sigmas_type = \"sigma_min\"",
            ));
        }
        cfg.refuse_set("variance_type", "learned variances need a model that predicts them")?;
        cfg.refuse_true("use_flow_sigmas", "flow-matching sigmas are for flow models, not Stable Diffusion")?;
        cfg.refuse_true("use_dynamic_shifting", "dynamic shifting is for flow models")?;
        cfg.refuse_true("use_beta_sigmas", "beta-distributed sigmas need scipy's beta.ppf, which wgsd does not implement")?;
        let karras = cfg.bool("use_karras_sigmas", false)?;
        let exponential = cfg.bool("use_exponential_sigmas", false)?;
        if karras && exponential {
            return Err(cfg.unsupported(
                "use_exponential_sigmas",
                true,
                "only one of use_karras_sigmas and use_exponential_sigmas may be set",
            ));
        }
        // diffusers' order of precedence.
        let respace = if karras {
            Respace::Karras
        } else if cfg.bool("use_lu_lambdas", false)? {
            Respace::Lu
        } else if exponential {
            Respace::Exponential
        } else {
            Respace::Interpolated
        };
        let squaredcos =
            cfg.get("trained_betas").is_none() && cfg.string("beta_schedule", DEFAULTS.beta_schedule)? == "squaredcos_cap_v2";
        Ok(DpmSolverMultistep {
            prediction,
            order,
            algorithm,
            heun,
            lower_order_final: cfg.bool("lower_order_final", true)?,
            euler_at_final: cfg.bool("euler_at_final", false)?,
            respace,
            final_sigma_min,
            lambda_min_clipped: cfg.f64("lambda_min_clipped", f64::NEG_INFINITY)?,
            squaredcos,
            spacing: Spacing::from_config(cfg, "linspace")?,
            steps_offset: cfg.i64("steps_offset", 0)?,
            n: 0,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            ts,
        })
    }

    /// x̂₀ (++ forms) or ε̂ (the others) from the raw model output.
    fn convert(&self, m: &[f32], sample: &[f32], step: usize) -> Vec<f32> {
        let (at, st) = alpha_sigma(self.sigmas[step]);
        match (self.algorithm.data_prediction(), self.prediction) {
            (true, Prediction::Epsilon) => zip_map(sample, m, |s, m| (s - st * m) / at),
            (true, Prediction::VPrediction) => zip_map(sample, m, |s, m| at * s - st * m),
            (false, Prediction::Sample) => zip_map(sample, m, |s, m| (s - at * m) / st),
            (false, Prediction::VPrediction) => zip_map(m, sample, |m, s| at * m + st * s),
            // x̂₀ given directly, or ε given directly.
            _ => m.to_vec(),
        }
    }

    fn first_order(&self, step: usize, sample: &[f32], z: &[f32]) -> Vec<f32> {
        let m = &self.model_outputs[self.model_outputs.len() - 1];
        let (at, st) = alpha_sigma(self.sigmas[step + 1]);
        let (a_s, ss) = alpha_sigma(self.sigmas[step]);
        let h = lambda(at, st) - lambda(a_s, ss);
        match self.algorithm {
            Algorithm::DpmSolverPp => combine(&[(st / ss, sample), (-(at * ((-h).exp() - 1.0)), m)]),
            Algorithm::DpmSolver => combine(&[(at / a_s, sample), (-(st * (h.exp() - 1.0)), m)]),
            Algorithm::SdeDpmSolverPp => combine(&[
                (st / ss * (-h).exp(), sample),
                (at * (1.0 - (-2.0 * h).exp()), m),
                (st * (1.0 - (-2.0 * h).exp()).sqrt(), z),
            ]),
            Algorithm::SdeDpmSolver => combine(&[
                (at / a_s, sample),
                (-(2.0 * (st * (h.exp() - 1.0))), m),
                (st * ((2.0 * h).exp() - 1.0).sqrt(), z),
            ]),
        }
    }

    fn second_order(&self, step: usize, sample: &[f32], z: &[f32]) -> Vec<f32> {
        let k = self.model_outputs.len();
        let (m0, m1) = (&self.model_outputs[k - 1], &self.model_outputs[k - 2]);
        let (at, st) = alpha_sigma(self.sigmas[step + 1]);
        let (a0, s0) = alpha_sigma(self.sigmas[step]);
        let (a1, s1) = alpha_sigma(self.sigmas[step - 1]);
        let (l_t, l0, l1) = (lambda(at, st), lambda(a0, s0), lambda(a1, s1));
        let (h, h0) = (l_t - l0, l0 - l1);
        let r0 = h0 / h;
        let inv_r0 = 1.0 / r0;
        let d1 = zip_map(m0, m1, |a, b| inv_r0 * (a - b));
        let em = (-h).exp() - 1.0;
        let ep = h.exp() - 1.0;
        match (self.algorithm, self.heun) {
            (Algorithm::DpmSolverPp, false) => combine(&[(st / s0, sample), (-(at * em), m0), (-(0.5 * (at * em)), &d1)]),
            (Algorithm::DpmSolverPp, true) => combine(&[(st / s0, sample), (-(at * em), m0), (at * (em / h + 1.0), &d1)]),
            (Algorithm::DpmSolver, false) => combine(&[(at / a0, sample), (-(st * ep), m0), (-(0.5 * (st * ep)), &d1)]),
            (Algorithm::DpmSolver, true) => combine(&[(at / a0, sample), (-(st * ep), m0), (-(st * (ep / h - 1.0)), &d1)]),
            (Algorithm::SdeDpmSolverPp, heun) => {
                let e2 = (-2.0 * h).exp();
                let c1 = if heun { at * ((1.0 - e2) / (-2.0 * h) + 1.0) } else { 0.5 * (at * (1.0 - e2)) };
                combine(&[
                    (st / s0 * (-h).exp(), sample),
                    (at * (1.0 - e2), m0),
                    (c1, &d1),
                    (st * (1.0 - (-2.0 * h).exp()).sqrt(), z),
                ])
            }
            (Algorithm::SdeDpmSolver, heun) => {
                let c1 = if heun { -(2.0 * (st * (ep / h - 1.0))) } else { -(st * ep) };
                combine(&[(at / a0, sample), (-(2.0 * (st * ep)), m0), (c1, &d1), (st * ((2.0 * h).exp() - 1.0).sqrt(), z)])
            }
        }
    }

    fn third_order(&self, step: usize, sample: &[f32], z: &[f32]) -> Vec<f32> {
        let k = self.model_outputs.len();
        let (m0, m1, m2) = (&self.model_outputs[k - 1], &self.model_outputs[k - 2], &self.model_outputs[k - 3]);
        let (at, st) = alpha_sigma(self.sigmas[step + 1]);
        let (a0, s0) = alpha_sigma(self.sigmas[step]);
        let (a1, s1) = alpha_sigma(self.sigmas[step - 1]);
        let (a2, s2) = alpha_sigma(self.sigmas[step - 2]);
        let (l_t, l0, l1, l2) = (lambda(at, st), lambda(a0, s0), lambda(a1, s1), lambda(a2, s2));
        let (h, h0, h1) = (l_t - l0, l0 - l1, l1 - l2);
        let (r0, r1) = (h0 / h, h1 / h);
        let (i0, i1) = (1.0 / r0, 1.0 / r1);
        let d1_0 = zip_map(m0, m1, |a, b| i0 * (a - b));
        let d1_1 = zip_map(m1, m2, |a, b| i1 * (a - b));
        let (c, c2) = (r0 / (r0 + r1), 1.0 / (r0 + r1));
        let d1 = zip_map(&d1_0, &d1_1, |a, b| a + c * (a - b));
        let d2 = zip_map(&d1_0, &d1_1, |a, b| c2 * (a - b));
        let em = (-h).exp() - 1.0;
        let ep = h.exp() - 1.0;
        match self.algorithm {
            Algorithm::DpmSolverPp => combine(&[
                (st / s0, sample),
                (-(at * em), m0),
                (at * (em / h + 1.0), &d1),
                (-(at * (((-h).exp() - 1.0 + h) / (h * h) - 0.5)), &d2),
            ]),
            Algorithm::DpmSolver => combine(&[
                (at / a0, sample),
                (-(st * ep), m0),
                (-(st * (ep / h - 1.0)), &d1),
                (-(st * ((h.exp() - 1.0 - h) / (h * h) - 0.5)), &d2),
            ]),
            // sde-dpmsolver with order 3 is refused in `new`.
            _ => {
                let e2 = (-2.0 * h).exp();
                let h2 = 2.0 * h;
                combine(&[
                    (st / s0 * (-h).exp(), sample),
                    (at * (1.0 - e2), m0),
                    (at * ((1.0 - e2) / (-2.0 * h) + 1.0), &d1),
                    (at * ((1.0 - e2 - 2.0 * h) / (h2 * h2) - 0.5), &d2),
                    (st * (1.0 - e2).sqrt(), z),
                ])
            }
        }
    }
}

impl Scheduler for DpmSolverMultistep {
    fn class_name(&self) -> &'static str {
        "DPMSolverMultistepScheduler"
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let nt = self.ts.num_train_timesteps;
        if n == 0 {
            return Err(Error::usage("DPMSolverMultistepScheduler: 0 steps"));
        }
        // λ_min clipping: the last usable training timestep.
        let ac = &self.ts.alphas_cumprod;
        let lambdas: Vec<f32> = ac.iter().rev().map(|a| lambda(a.sqrt(), (1.0 - a).sqrt())).collect();
        let clip = self.lambda_min_clipped as f32;
        let clipped_idx = lambdas.iter().position(|&l| l >= clip).unwrap_or(lambdas.len());
        let last = (nt - clipped_idx) as i64;
        let int_t: Vec<i64> = match self.spacing {
            Spacing::Linspace => {
                let v = np_linspace(0.0, (last - 1) as f64, n + 1, true);
                v.iter().rev().take(n).map(|x| np_round(*x) as i64).collect()
            }
            Spacing::Leading => {
                let ratio = last / (n as i64 + 1);
                (1..=n as i64).rev().map(|i| i * ratio + self.steps_offset).collect()
            }
            Spacing::Trailing => {
                let ratio = nt as f64 / n as f64;
                np_arange(last as f64, 0.0, -ratio).iter().map(|x| np_round(*x) as i64 - 1).collect()
            }
        };
        let table = self.ts.sigmas();
        let log_sigmas: Vec<f32> = table.iter().map(|&s| np_log_f32(s)).collect();
        let (lo, hi) = (table[0] as f64, table[nt - 1] as f64);
        // Respaced grids map σ back to (fractional) timesteps; diffusers rounds them except for the
        // cosine schedule, then stores int64 (truncating).
        let to_timesteps = |sigmas: &[f64], round: bool| -> Vec<i64> {
            sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    (if round { np_round(t) } else { t }) as i64
                })
                .collect()
        };
        let (sigmas, int_t): (Vec<f64>, Vec<i64>) = match self.respace {
            Respace::Karras => {
                let s = karras_sigmas(lo, hi, n);
                let t = to_timesteps(&s, !self.squaredcos);
                (s, t)
            }
            Respace::Lu => {
                // Evenly spaced in log σ between the table's ends (diffusers calls these lambdas).
                let (l_lo, l_hi) = (log_sigmas[0] as f64, log_sigmas[nt - 1] as f64);
                let s: Vec<f64> = np_linspace(0.0, 1.0, n, true).iter().map(|r| (l_hi + r * (l_lo - l_hi)).exp()).collect();
                let t = to_timesteps(&s, !self.squaredcos);
                (s, t)
            }
            Respace::Exponential => {
                let s = exponential_sigmas(lo, hi, n);
                let t = to_timesteps(&s, false);
                (s, t)
            }
            Respace::Interpolated => {
                let x: Vec<f64> = int_t.iter().map(|&t| t as f64).collect();
                (np_interp(&x, &table), int_t)
            }
        };
        let last_sigma = if self.final_sigma_min {
            let a = self.ts.alphas_cumprod[0];
            ((1.0 - a) / a).sqrt()
        } else {
            0.0
        };
        self.sigmas = sigmas.iter().map(|&s| s as f32).chain(std::iter::once(last_sigma)).collect();
        self.timesteps = int_t.iter().map(|&t| t as f64).collect();
        self.n = self.timesteps.len();
        self.model_outputs.clear();
        self.lower_order_nums = 0;
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
        let len = self.timesteps.len();
        let short = self.lower_order_final && len < 15;
        // Lower orders at the end: they are more stable with few steps, and σ = 0 needs first order.
        let lower_final = step == len - 1 && (self.euler_at_final || short || !self.final_sigma_min);
        let lower_second = step + 2 == len && short;
        let converted = self.convert(model_output, sample, step);
        self.model_outputs.push(converted);
        if self.model_outputs.len() > self.order {
            self.model_outputs.remove(0);
        }
        // Fresh noise for the SDE forms (every step, the last included, as diffusers draws it).
        let z = if self.algorithm.sde() { noise.randn(sample.len())? } else { Vec::new() };
        let z = z.as_slice();
        let prev = if self.order == 1 || self.lower_order_nums < 1 || lower_final {
            self.first_order(step, sample, z)
        } else if self.order == 2 || self.lower_order_nums < 2 || lower_second {
            self.second_order(step, sample, z)
        } else {
            self.third_order(step, sample, z)
        };
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
