//! Encoding an init image into starting latents, as diffusers' img2img, inpaint and depth2img pipelines do:
//! VAE encode (tiled as `vae_tiling` decides) → one sample of the posterior `mean + exp(logvar / 2) · ε` →
//! × `scaling_factor`; with a TAESD in place of the VAE, its latents × its `scaling_factor`.

use super::inputs::InitImage;
use super::{Network, StableDiffusion};
use crate::error::Result;
use crate::models::vae::split_moments;
use crate::schedulers::NoiseSource;

impl StableDiffusion {
    /// Latents `[1, L, H/8, W/8]` of `image`, sampled from the VAE posterior with one draw from `noise`.
    pub fn encode_image(&self, image: &InitImage, noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        let shape = [1, 3, image.height, image.width];
        if let Some(tiny) = &self.tiny_vae {
            // AutoencoderTiny's output is the latent itself: diffusers' retrieve_latents takes `.latents`,
            // with no posterior to sample (and no draw from `noise`).
            let scale = tiny.config.scaling_factor as f32;
            return Ok(tiny.encode_images(&self.gpu, &image.chw, shape)?.iter().map(|v| v * scale).collect());
        }
        let moments = self.with_network(Network::Vae, || {
            if self.vae_tiling.tile_encode(&self.vae.config, image.height, image.width, &self.gpu.limits, &crate::graph::op::DeviceLimits::from_gpu(&self.gpu)) {
                Ok(self.vae.encode_tiled(&self.gpu, &image.chw, shape)?.0)
            } else {
                self.vae.encode_untiled(&self.gpu, &image.chw, shape)
            }
        })?;
        let latent = self.vae.config.latent_channels;
        let hw = (image.height / 8) * (image.width / 8);
        let (mean, logvar) = split_moments(&moments, 1, latent, hw);
        let eps = noise.randn(mean.len())?;
        let scale = self.vae.config.scaling_factor as f32;
        Ok(mean.iter().zip(&logvar).zip(&eps).map(|((m, lv), e)| scale * (m + (0.5 * lv).exp() * e)).collect())
    }
}
