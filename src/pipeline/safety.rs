//! The safety checker step of diffusers' pipelines: the decoded images, rounded to 8 bits as diffusers
//! does before its feature extractor, go through the model folder's `safety_checker/`; flagged images are
//! blacked out (diffusers' default), or kept with a warning, as the caller chooses.

use super::StableDiffusion;
use crate::error::{Error, Result};
use crate::imageproc::RgbImage;
use crate::models::safety_checker::SafetyChecker;

/// What to do with the safety checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetyMode {
    /// Check, and replace flagged images with black ones (diffusers' default).
    Black,
    /// Check and report, but keep the images.
    Warn,
    /// Do not run (or load) the checker.
    Off,
}

impl std::str::FromStr for SafetyMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "black" | "on" => Ok(SafetyMode::Black),
            "warn" => Ok(SafetyMode::Warn),
            "off" => Ok(SafetyMode::Off),
            _ => Err(format!("unknown safety checker mode '{s}': use black (default), warn or off")),
        }
    }
}

impl StableDiffusion {
    /// Whether the model folder ships a safety checker (SD 1.x does; SD 2.x does not).
    pub fn has_safety_checker(&self) -> bool {
        self.dir.join("safety_checker").join("config.json").exists()
    }

    /// The model folder's safety checker with its feature extractor, loaded on first use.
    fn safety_checker(&self) -> Result<&SafetyChecker> {
        if let Some(s) = self.safety_checker.get() {
            return Ok(s);
        }
        if !self.has_safety_checker() {
            return Err(Error::usage(format!("{} has no safety_checker/ folder", self.dir.display())));
        }
        let checker = SafetyChecker::load_pipeline(&self.gpu, &self.dir)?;
        Ok(self.safety_checker.get_or_init(|| checker))
    }

    /// Checks `count` NHWC images in [0, 1] and returns, per image, whether it was flagged; with
    /// [`SafetyMode::Black`] flagged images are set to 0. [`SafetyMode::Off`] checks nothing.
    pub fn run_safety_checker(&self, images: &mut [f32], count: usize, width: usize, height: usize, mode: SafetyMode) -> Result<Vec<bool>> {
        if mode == SafetyMode::Off {
            return Ok(vec![false; count]);
        }
        let checker = self.safety_checker()?;
        let len = width * height * 3;
        let rgb = images.chunks(len).map(|img| RgbImage::from_unit_floats(width, height, img)).collect::<Result<Vec<_>>>()?;
        let flags: Vec<bool> = checker.check(&rgb)?.iter().map(|r| r.has_nsfw).collect();
        if mode == SafetyMode::Black {
            for (img, &flagged) in images.chunks_mut(len).zip(&flags) {
                if flagged {
                    img.fill(0.0);
                }
            }
        }
        Ok(flags)
    }
}
