//! depth2img's extra UNet channel, as diffusers' `StableDiffusionDepth2ImgPipeline.prepare_depth_map`
//! makes it: the depth map (given, or estimated by the model folder's DPT) resampled to the latent grid with
//! PyTorch's bicubic interpolation, then rescaled by its own range to [-1, 1].

use crate::error::{Error, Result};
use crate::imageproc::dpt_processor::DptImageProcessor;
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

/// PyTorch's cubic convolution weights (`A = -0.75`) for a fractional offset `t` in [0, 1).
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index: the first of the four source taps and their weights, like
/// `F.interpolate(mode="bicubic", align_corners=False)` (no antialiasing, borders clamped).
fn taps(input: usize, output: usize) -> Vec<(isize, [f32; 4])> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let real = (o as f32 + 0.5) * scale - 0.5;
            let floor = real.floor();
            (floor as isize - 1, cubic_weights(real - floor))
        })
        .collect()
}

/// Bicubic resampling of one `[H, W]` plane to `[h, w]`, as PyTorch does it on the CPU in float32.
pub fn resize_bicubic(src: &[f32], (sh, sw): (usize, usize), (h, w): (usize, usize)) -> Vec<f32> {
    let (ty, tx) = (taps(sh, h), taps(sw, w));
    let at = |y: isize, x: isize| src[y.clamp(0, sh as isize - 1) as usize * sw + x.clamp(0, sw as isize - 1) as usize];
    let mut out = Vec::with_capacity(h * w);
    for &(y0, wy) in &ty {
        for &(x0, wx) in &tx {
            let mut rows = [0f32; 4];
            for (k, row) in rows.iter_mut().enumerate() {
                let y = y0 + k as isize;
                *row = (0..4).map(|j| at(y, x0 + j as isize) * wx[j]).fold(0.0, |a, b| a + b);
            }
            out.push((0..4).map(|k| rows[k] * wy[k]).fold(0.0, |a, b| a + b));
        }
    }
    out
}

/// The depth channel for a latent grid `h × w`: resampled, then `2 (d − min) / (max − min) − 1`.
pub fn depth_condition(depth: &DepthMap, h: usize, w: usize) -> Result<Vec<f32>> {
    let d = resize_bicubic(&depth.data, (depth.height, depth.width), (h, w));
    let min = d.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = d.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if !(max > min) {
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
    fn weights_sum_to_one_and_identity_resize_is_exact() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let s: f32 = cubic_weights(t).iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "t={t}: {s}");
        }
        let src: Vec<f32> = (0..35).map(|i| (i as f32 * 0.7).sin()).collect();
        assert_eq!(resize_bicubic(&src, (5, 7), (5, 7)), src);
    }

    #[test]
    fn halving_matches_hand_computed_taps() {
        // 4 → 2: output 0 sits at source 0.5 (t = 0.5) with taps -1, 0, 1, 2 (the first clamped to 0).
        let src = [1.0f32, 2.0, 4.0, 8.0];
        let out = resize_bicubic(&src, (1, 4), (1, 2));
        let w = cubic_weights(0.5);
        let want0 = 1.0 * w[0] + 1.0 * w[1] + 2.0 * w[2] + 4.0 * w[3];
        assert!((out[0] - want0).abs() < 1e-6);
        let want1 = 2.0 * w[0] + 4.0 * w[1] + 8.0 * w[2] + 8.0 * w[3];
        assert!((out[1] - want1).abs() < 1e-6);
    }

    #[test]
    fn flat_depth_is_refused() {
        let d = DepthMap { width: 8, height: 8, data: vec![3.0; 64] };
        assert!(depth_condition(&d, 1, 1).is_err());
        let d = DepthMap { width: 2, height: 1, data: vec![0.0, 1.0] };
        let c = depth_condition(&d, 1, 2).unwrap();
        assert_eq!(c.iter().cloned().fold(f32::INFINITY, f32::min), -1.0);
        assert_eq!(c.iter().cloned().fold(f32::NEG_INFINITY, f32::max), 1.0);
    }
}
