//! What to generate (prompts, size, steps, guidance) and text-to-image, as diffusers'
//! `StableDiffusionPipeline.__call__` does it (the loop itself is in `denoise.rs`):
//!
//! 1. prompts (each repeated `images_per_prompt` times) and negative prompts ("" when none) → embeddings,
//!    unconditional first: `[uncond; cond]`;
//! 2. latents = one normal draw of `[N, 4, H/8, W/8]` × `init_noise_sigma`;
//! 3. for each timestep: the UNet on `[latents; latents]` (scaled by the scheduler), then
//!    `uncond + guidance · (cond − uncond)`, then the scheduler step (guidance ≤ 1 runs one batch);
//! 4. latents / `scaling_factor` → VAE decode → `(x / 2 + 0.5).clamp(0, 1)`.
//!
//! diffusers applies `clip_skip` to the prompt but not to the negative prompt; so does this pipeline with
//! plain prompts (A1111 syntax applies it to both, as A1111 does).

use super::denoise::{Condition, GenerationOutput};
use super::StableDiffusion;
use crate::error::{Error, Result};
use crate::schedulers::{NoiseSource, Scheduler};

/// What to generate: the part of a request every mode shares.
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
    ) -> Result<GenerationOutput> {
        self.generate(req, &Condition::Text, scheduler, noise, progress)
    }
}
