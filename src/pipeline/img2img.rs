//! Encoding an init image into starting latents, as diffusers' img2img, inpaint and depth2img pipelines do:
//! VAE encode → one sample of the posterior `mean + exp(logvar / 2) · ε` → × `scaling_factor`.

use super::inputs::InitImage;
use super::StableDiffusion;
use crate::error::Result;
use crate::graph::plan::Plan;
use crate::graph::Graph;
use crate::models::vae::split_moments;
use crate::schedulers::NoiseSource;
use crate::tensor::TensorDesc;

impl StableDiffusion {
    /// Latents `[1, L, H/8, W/8]` of `image`, sampled from the VAE posterior with one draw from `noise`.
    pub fn encode_image(&self, image: &InitImage, noise: &mut dyn NoiseSource) -> Result<Vec<f32>> {
        let mut g = Graph::new();
        let x = g.input("image", TensorDesc::f32(&[1, 3, image.height, image.width]));
        let moments = self.vae.encode(&mut g, x)?;
        g.output(moments);
        let plan = Plan::new(self.gpu.clone(), g)?;
        plan.write(x, &image.chw)?;
        plan.run()?;
        let latent = self.vae.config.latent_channels;
        let hw = (image.height / 8) * (image.width / 8);
        let (mean, logvar) = split_moments(&plan.read(moments)?, 1, latent, hw);
        let eps = noise.randn(mean.len())?;
        let scale = self.vae.config.scaling_factor as f32;
        Ok(mean.iter().zip(&logvar).zip(&eps).map(|((m, lv), e)| scale * (m + (0.5 * lv).exp() * e)).collect())
    }
}
