//! depth2img's extra UNet channel, as diffusers' `StableDiffusionDepth2ImgPipeline.prepare_depth_map`
//! makes it: the depth map (given, or estimated by the model folder's DPT) resampled to the latent grid with
//! PyTorch's bicubic interpolation (`imageproc::interpolate_bicubic`), then rescaled by its own range to [-1, 1].

use crate::error::{Error, Result};
use crate::imageproc::dpt_processor::DptImageProcessor;
use crate::imageproc::interpolate_bicubic;
use crate::models::dpt::DptForDepthEstimation;

use super::inputs::{DepthMap, InitImage};
use super::StableDiffusion;

impl StableDiffusion {
    /// Depth predicted from the init image by the model folder's `depth_estimator/` (DPT) after its
    /// `feature_extractor/` (DPTImageProcessor), as diffusers does when no depth map is given.
    pub fn estimate_depth(&self, image: &InitImage) -> Result<DepthMap> {
        let (processor, model) = match self.depth_estimator.get() {
            Some(d) => d,
            None => {
                let dir = self.dir.join("depth_estimator");
                if !dir.join("config.json").exists() {
                    return Err(Error::usage(format!(
                        "{} has no depth_estimator/ to estimate depth with: pass a depth map",
                        self.dir.display()
                    )));
                }
                let processor = DptImageProcessor::load(&self.dir.join("feature_extractor"))?;
                let model = DptForDepthEstimation::load(&self.gpu, &dir)?;
                self.depth_estimator.get_or_init(|| (processor, model))
            }
        };
        let pixels = processor.preprocess(std::slice::from_ref(&image.rgb))?;
        let [_, _, height, width] = pixels.shape;
        let data = model.predict(&pixels.data, pixels.shape)?;
        Ok(DepthMap { width, height, data })
    }
}

/// The depth channel for a latent grid `h × w`: resampled, then `2 (d − min) / (max − min) − 1`.
pub fn depth_condition(depth: &DepthMap, h: usize, w: usize) -> Result<Vec<f32>> {
    let d = interpolate_bicubic(&depth.data, depth.height, depth.width, h, w)?;
    let min = d.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = d.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if max <= min || !(max - min).is_finite() {
        return Err(Error::usage(format!(
            "the depth map is flat (every value {min}) once resampled to the {w}x{h} latent grid: depth2img needs depth that varies"
        )));
    }
    Ok(d.iter().map(|&v| 2.0 * (v - min) / (max - min) - 1.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_rescaled_to_its_own_range_and_flat_depth_is_refused() {
        let d = DepthMap { width: 8, height: 8, data: vec![3.0; 64] };
        assert!(depth_condition(&d, 1, 1).is_err());
        let d = DepthMap { width: 2, height: 1, data: vec![0.0, 1.0] };
        let c = depth_condition(&d, 1, 2).unwrap();
        assert_eq!(c, vec![-1.0, 1.0]);
    }
}
