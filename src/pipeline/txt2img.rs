//! Text-to-image, as diffusers' `StableDiffusionPipeline.__call__` does it:
//!
//! 1. prompts (each repeated `images_per_prompt` times) and negative prompts ("" when none) → embeddings,
//!    unconditional first: `[uncond; cond]`;
//! 2. latents = one normal draw of `[N, 4, H/8, W/8]` × `init_noise_sigma`;
//! 3. for each timestep: the UNet on `[latents; latents]` (scaled by the scheduler), then
//!    `uncond + guidance · (cond − uncond)`, then the scheduler step (guidance ≤ 1 runs one batch);
//! 4. latents / `scaling_factor` → VAE decode → `(x / 2 + 0.5).clamp(0, 1)`.
//!
//! diffusers applies `clip_skip` to the prompt but not to the negative prompt; so does this pipeline.

use super::{StableDiffusion, UNetRunner};
use crate::error::{Error, Result};
use crate::schedulers::{NoiseSource, Scheduler};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Txt2ImgRequest {
    pub prompts: Vec<String>,
    /// One per prompt, or empty for none.
    pub negative_prompts: Vec<String>,
    pub images_per_prompt: usize,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f32,
    /// diffusers' `clip_skip` (1 = A1111's "CLIP skip 2"); 0 = none.
    pub clip_skip: usize,
}

/// Generated images (NHWC float in [0, 1]) and what happened on the way.
pub struct Txt2ImgOutput {
    pub images: Vec<f32>,
    pub count: usize,
    pub width: usize,
    pub height: usize,
    /// Per prompt: tokens cut to fit the 77-token window.
    pub truncated: Vec<usize>,
    /// Seconds: text encoding, each denoising step, VAE decode.
    pub t_text: f64,
    pub t_steps: Vec<f64>,
    pub t_decode: f64,
}

impl Txt2ImgRequest {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::usage(m));
        if self.prompts.is_empty() {
            return bad("no prompt given".into());
        }
        if self.width == 0 || self.height == 0 || !self.width.is_multiple_of(8) || !self.height.is_multiple_of(8) {
            return bad(format!("width and height must be positive multiples of 8, got {}x{}", self.width, self.height));
        }
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.images_per_prompt == 0 {
            return bad("the number of images per prompt must be at least 1".into());
        }
        if !self.negative_prompts.is_empty() && self.negative_prompts.len() != self.prompts.len() {
            return bad(format!("{} negative prompts for {} prompts", self.negative_prompts.len(), self.prompts.len()));
        }
        if !self.guidance_scale.is_finite() {
            return bad("guidance scale must be a finite number".into());
        }
        Ok(())
    }
}

impl StableDiffusion {
    /// Runs text-to-image. `progress(step, total)` is called after every scheduler step.
    pub fn txt2img(
        &self,
        req: &Txt2ImgRequest,
        scheduler: &mut dyn Scheduler,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Txt2ImgOutput> {
        req.validate()?;
        let (h, w) = (req.height / 8, req.width / 8);
        let n = req.prompts.len() * req.images_per_prompt;
        let cfg = req.guidance_scale > 1.0;
        let t0 = std::time::Instant::now();

        // 1. Embeddings, each prompt repeated images_per_prompt times.
        let repeat = |v: &[String]| -> Vec<String> {
            v.iter().flat_map(|p| std::iter::repeat_n(p.clone(), req.images_per_prompt)).collect()
        };
        let (cond, truncated) = self.encode_prompts(&repeat(&req.prompts), req.clip_skip)?;
        let mut context = Vec::new();
        if cfg {
            let neg = if req.negative_prompts.is_empty() { vec![String::new(); req.prompts.len()] } else { req.negative_prompts.clone() };
            let (uncond, _) = self.encode_prompts(&repeat(&neg), 0)?;
            context.extend_from_slice(&uncond);
        }
        context.extend_from_slice(&cond);
        let t_text = t0.elapsed().as_secs_f64();

        // 2. Timesteps and initial latents.
        scheduler.set_timesteps(req.steps)?;
        let c = self.unet.config.out_channels;
        let latent_len = n * c * h * w;
        let sigma = scheduler.init_noise_sigma();
        let mut latents: Vec<f32> = noise.randn(latent_len)?.into_iter().map(|v| v * sigma).collect();

        // 3. Denoising loop: one UNet plan, re-run every step.
        let batch = if cfg { 2 * n } else { n };
        let d = self.text_encoder.config.hidden_size;
        let unet_in = self.unet.config.in_channels;
        if unet_in != c {
            return Err(Error::usage(format!(
                "this UNet takes {unet_in} input channels (an inpainting or depth model): use the matching pipeline"
            )));
        }
        let unet = UNetRunner::new(self, [batch, c, h, w], &context, [batch, self.tokenizer.max_len, d])?;
        let timesteps = scheduler.timesteps().to_vec();
        let mut t_steps = Vec::new();
        for (i, &t) in timesteps.iter().enumerate() {
            let ts = std::time::Instant::now();
            let scaled = scheduler.scale_model_input(&latents, i);
            let input = if cfg { [scaled.as_slice(), scaled.as_slice()].concat() } else { scaled };
            let pred = unet.run(&input, t as f32)?;
            let guided: Vec<f32> = if cfg {
                let (u, c) = pred.split_at(latent_len);
                u.iter().zip(c).map(|(u, c)| u + req.guidance_scale * (c - u)).collect()
            } else {
                pred
            };
            latents = scheduler.step(&guided, i, &latents, noise)?;
            t_steps.push(ts.elapsed().as_secs_f64());
            progress(i + 1, timesteps.len());
        }

        // 4. Decode.
        let td = std::time::Instant::now();
        let scale = self.vae.config.scaling_factor as f32;
        let scaled: Vec<f32> = latents.iter().map(|v| v / scale).collect();
        let images = self.decode_latents(&scaled, [n, c, h, w])?;
        Ok(Txt2ImgOutput {
            images,
            count: n,
            width: req.width,
            height: req.height,
            truncated,
            t_text,
            t_steps,
            t_decode: td.elapsed().as_secs_f64(),
        })
    }
}
