//! The host half of a DreamBooth training step (diffusers' `train_dreambooth*.py`): the VAE posterior sample,
//! DDPM noising at random timesteps, the epsilon or velocity target, and the per-sample loss weights of
//! prior preservation and min-SNR weighting. Small arithmetic, done in f64 and handed to the GPU as f32.

use crate::schedulers::schedule::TrainSchedule;

/// What the UNet is trained to predict (the scheduler config's `prediction_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

impl Prediction {
    pub fn parse(s: &str) -> Option<Prediction> {
        match s {
            "epsilon" => Some(Prediction::Epsilon),
            "v_prediction" => Some(Prediction::VPrediction),
            _ => None,
        }
    }
}

/// `(mean + exp(logvar / 2) · eps) · scaling_factor`: a sample of the VAE posterior, scaled (logvar already
/// clamped as `DiagonalGaussianDistribution` does).
pub fn posterior_latents(mean: &[f32], logvar: &[f32], eps: &[f32], scaling_factor: f64) -> Vec<f32> {
    mean.iter()
        .zip(logvar)
        .zip(eps)
        .map(|((m, lv), e)| ((*m as f64 + (0.5 * *lv as f64).exp() * *e as f64) * scaling_factor) as f32)
        .collect()
}

/// The noisy latents (`DDPMScheduler.add_noise`) and the training target for each sample of a batch:
/// `latents`, `noise` are `[B, ...]`, one timestep per sample.
pub fn noisy_and_target(s: &TrainSchedule, latents: &[f32], noise: &[f32], timesteps: &[i64], pred: Prediction) -> (Vec<f32>, Vec<f32>) {
    let per = latents.len() / timesteps.len();
    let mut noisy = Vec::with_capacity(latents.len());
    let mut target = Vec::with_capacity(latents.len());
    for (b, &t) in timesteps.iter().enumerate() {
        // ᾱ is float32 in the scheduler, promoted to the sample's precision before the square roots.
        let a = s.alpha_cumprod(t) as f64;
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        for i in b * per..(b + 1) * per {
            let (x, n) = (latents[i] as f64, noise[i] as f64);
            noisy.push((sa * x + sb * n) as f32);
            target.push(match pred {
                Prediction::Epsilon => n as f32,
                Prediction::VPrediction => (sa * n - sb * x) as f32,
            });
        }
    }
    (noisy, target)
}

/// Signal-to-noise ratio ᾱ/(1 − ᾱ) at a timestep (diffusers' `compute_snr`).
pub fn snr(s: &TrainSchedule, t: i64) -> f64 {
    let a = s.alpha_cumprod(t) as f64;
    let (alpha, sigma) = (a.sqrt(), (1.0 - a).sqrt());
    (alpha / sigma).powi(2)
}

/// Per-sample weights `w` of the loss `Σ_b w_b · mean((pred_b − target_b)²)`. The batch is the instance
/// samples followed by `n_class` class samples (prior preservation): the loss is
/// `mean_instance(snr_weight · mse_b) + prior_loss_weight · mean_class(mse_b)`, with min-SNR weights
/// `min(snr, γ)/snr` (`/(snr + 1)` for v-prediction) when `snr_gamma` is set, else 1.
pub fn loss_weights(s: &TrainSchedule, timesteps: &[i64], n_class: usize, prior_loss_weight: f64, snr_gamma: Option<f64>, pred: Prediction) -> Vec<f32> {
    let n_inst = timesteps.len() - n_class;
    let mut w = Vec::with_capacity(timesteps.len());
    for &t in &timesteps[..n_inst] {
        let sw = match snr_gamma {
            None => 1.0,
            Some(g) => {
                let r = snr(s, t);
                let floor = r.min(g);
                match pred {
                    Prediction::Epsilon => floor / r,
                    Prediction::VPrediction => floor / (r + 1.0),
                }
            }
        };
        w.push((sw / n_inst as f64) as f32);
    }
    for _ in 0..n_class {
        w.push((prior_loss_weight / n_class as f64) as f32);
    }
    w
}
