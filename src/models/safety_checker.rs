//! diffusers' `StableDiffusionSafetyChecker`: a CLIP vision encoder, a projection, and cosine
//! similarities against fixed concept embeddings with per-concept thresholds.
//!
//! ```text
//! pixel_values → vision_model (CLIPVisionModel) → pooled [B, D] → visual_projection (no bias) → image_embeds [B, P]
//! per image: special = cos(image_embeds, special_care_embeds), concept = cos(image_embeds, concept_embeds)
//!   adjustment = 0; for each special concept: score = round(cos − threshold + adjustment, 3); > 0 ⇒ adjustment = 0.01
//!   for each concept: score = round(cos − threshold + adjustment, 3); has_nsfw = any score > 0
//! ```
//! The GPU runs the encoder and projection; the scores are host arithmetic done as diffusers does it
//! (float32 NumPy scalars, `round` to 3 decimals as NumPy's float32 `round`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::imageproc::clip_processor::ClipImageProcessor;
use crate::imageproc::{PixelValues, RgbImage};
use crate::models::clip_vision::{ClipVisionConfig, ClipVisionModel};
use crate::models::nn::{Linear, Loader};
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

/// The safety checker's verdict on one image.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetyResult {
    /// `visual_projection(pooled)`: [projection_dim].
    pub image_embeds: Vec<f32>,
    /// Per special-care concept: `round(cos − threshold + adjustment, 3)`.
    pub special_scores: Vec<f32>,
    /// Per concept: `round(cos − threshold + adjustment, 3)`.
    pub concept_scores: Vec<f32>,
    /// Some concept score is > 0 (diffusers blacks the image out and warns).
    pub has_nsfw: bool,
}

/// The checker's fixed concept tables (host side).
struct Concepts {
    /// [n, P] each.
    concept_embeds: Vec<f32>,
    special_care_embeds: Vec<f32>,
    concept_embeds_weights: Vec<f32>,
    special_care_embeds_weights: Vec<f32>,
}

pub struct SafetyChecker {
    gpu: Arc<Gpu>,
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
    vision_model: ClipVisionModel,
    visual_projection: Linear,
    concepts: Concepts,
    /// The pipeline's `feature_extractor/` processor, when [`SafetyChecker::load_pipeline`] found it.
    pub feature_extractor: Option<ClipImageProcessor>,
}

/// `model.safetensors` of the checker folder.
fn weight_path(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("model.safetensors");
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Weights { file: p.display().to_string(), msg: "safety checker weight file not found".into() })
    }
}

impl SafetyChecker {
    /// Loads `dir/config.json` and `dir/model.safetensors` (a pipeline's `safety_checker/` folder).
    pub fn load(gpu: &Arc<Gpu>, dir: &Path) -> Result<SafetyChecker> {
        let config_path = dir.join("config.json");
        let file = config_path.display().to_string();
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::Config { file: file.clone(), msg: format!("cannot read: {e}") })?;
        let v: serde_json::Value = serde_json::from_str(&crate::fixtures::python_json(&text))
            .map_err(|e| Error::Config { file: file.clone(), msg: format!("invalid JSON: {e}") })?;
        let vc = v.get("vision_config").ok_or_else(|| Error::Config { file: file.clone(), msg: "missing key 'vision_config'".into() })?;
        let vision_config = ClipVisionConfig::from_value(&file, vc)?;
        // transformers' CLIPConfig default.
        let projection_dim = match v.get("projection_dim") {
            None => 512,
            Some(p) => p.as_u64().filter(|&p| p > 0).ok_or_else(|| Error::Config { file: file.clone(), msg: format!("'projection_dim' must be a positive integer, got {p}") })? as usize,
        };
        let weights = Weights::open(&[weight_path(dir)?])?;
        Self::from_weights(gpu, vision_config, projection_dim, &weights)
    }

    /// Loads the checker from `pipeline_dir/safety_checker` and its processor from
    /// `pipeline_dir/feature_extractor`.
    pub fn load_pipeline(gpu: &Arc<Gpu>, pipeline_dir: &Path) -> Result<SafetyChecker> {
        let mut s = Self::load(gpu, &pipeline_dir.join("safety_checker"))?;
        s.feature_extractor = Some(ClipImageProcessor::load(&pipeline_dir.join("feature_extractor"))?);
        Ok(s)
    }

    pub fn from_weights(gpu: &Arc<Gpu>, vision_config: ClipVisionConfig, projection_dim: usize, weights: &Weights) -> Result<SafetyChecker> {
        let root = Loader::new(gpu, weights);
        let vision_model = ClipVisionModel::load(&root.pp("vision_model"), vision_config.clone())?;
        let visual_projection = Linear::load(&root.pp("visual_projection"), vision_config.hidden_size, projection_dim, false)?;
        let p = projection_dim;
        // The concept counts (17 and 3 in the released checker) are whatever the file holds.
        // A missing or mis-shaped table is reported by `Weights::get` (naming the file) against the released
        // checker's shape.
        let rows = |key: &str, released: usize| -> Result<usize> {
            match weights.shape(key) {
                Some(s) if s.len() == 2 && s[1] == p && s[0] > 0 => Ok(s[0]),
                _ => weights.get(key, &[released, p]).map(|_| released),
            }
        };
        let (nc, ns) = (rows("concept_embeds", 17)?, rows("special_care_embeds", 3)?);
        let concepts = Concepts {
            concept_embeds: weights.get("concept_embeds", &[nc, p])?,
            special_care_embeds: weights.get("special_care_embeds", &[ns, p])?,
            concept_embeds_weights: weights.get("concept_embeds_weights", &[nc])?,
            special_care_embeds_weights: weights.get("special_care_embeds_weights", &[ns])?,
        };
        Ok(SafetyChecker {
            gpu: gpu.clone(),
            vision_config,
            projection_dim,
            vision_model,
            visual_projection,
            concepts,
            feature_extractor: None,
        })
    }

    /// Records `pixel_values [B, C, S, S]` → `image_embeds [B, P]`.
    pub fn forward(&self, g: &mut Graph, pixel_values: TensorId) -> Result<TensorId> {
        let o = self.vision_model.forward(g, pixel_values)?;
        self.visual_projection.forward(g, o.pooled)
    }

    /// Runs the encoder and projection on preprocessed `pixel_values` → `image_embeds [B · P]`.
    pub fn image_embeds(&self, pixel_values: &PixelValues) -> Result<Vec<f32>> {
        let mut g = Graph::new();
        let x = g.input("pixel_values", TensorDesc::f32(&pixel_values.shape));
        let e = self.forward(&mut g, x)?;
        g.output(e);
        let plan = Plan::new(self.gpu.clone(), g)?;
        plan.write(x, &pixel_values.data)?;
        Ok(plan.run_and_read(&[e])?.remove(0))
    }

    /// The verdicts for precomputed `image_embeds [B · P]`.
    pub fn scores(&self, image_embeds: &[f32]) -> Vec<SafetyResult> {
        let p = self.projection_dim;
        let c = &self.concepts;
        image_embeds
            .chunks_exact(p)
            .map(|e| {
                let special_cos = cosine_rows(e, &c.special_care_embeds, p);
                let concept_cos = cosine_rows(e, &c.concept_embeds, p);
                let mut adjustment = 0.0f32;
                let mut special_scores = Vec::with_capacity(special_cos.len());
                for (cos, &t) in special_cos.iter().zip(&c.special_care_embeds_weights) {
                    let s = round3(cos - t + adjustment);
                    if s > 0.0 {
                        adjustment = 0.01;
                    }
                    special_scores.push(s);
                }
                let concept_scores: Vec<f32> =
                    concept_cos.iter().zip(&c.concept_embeds_weights).map(|(cos, &t)| round3(cos - t + adjustment)).collect();
                let has_nsfw = concept_scores.iter().any(|&s| s > 0.0);
                SafetyResult { image_embeds: e.to_vec(), special_scores, concept_scores, has_nsfw }
            })
            .collect()
    }

    /// Checks preprocessed `pixel_values`.
    pub fn check_pixel_values(&self, pixel_values: &PixelValues) -> Result<Vec<SafetyResult>> {
        Ok(self.scores(&self.image_embeds(pixel_values)?))
    }

    /// Checks 8-bit RGB images (diffusers feeds `(image * 255).round()` as uint8) through the pipeline's
    /// feature extractor (needs [`SafetyChecker::load_pipeline`] or `feature_extractor` set).
    pub fn check(&self, images: &[RgbImage]) -> Result<Vec<SafetyResult>> {
        let fe = self.feature_extractor.as_ref().ok_or_else(|| {
            Error::usage("safety checker: no feature extractor loaded (use SafetyChecker::load_pipeline or set feature_extractor)")
        })?;
        self.check_pixel_values(&fe.preprocess(images)?)
    }
}

/// `cosine_distance(a, B)` for one row `a` against the rows of `b [n, p]`: both L2-normalised
/// (`F.normalize`, eps 1e-12) then dotted. Accumulated in f64, returned as f32 (torch computes in f32; the
/// difference is far below the 3-decimal rounding that follows).
fn cosine_rows(a: &[f32], b: &[f32], p: usize) -> Vec<f32> {
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt().max(1e-12);
    let na = norm(a);
    b.chunks_exact(p)
        .map(|r| {
            let dot: f64 = a.iter().zip(r).map(|(&x, &y)| x as f64 * y as f64).sum();
            (dot / (na * norm(r))) as f32
        })
        .collect()
}

/// NumPy's float32 `round(x, 3)`: `rint(x · 1000) / 1000` in float32 (ties to even).
fn round3(x: f32) -> f32 {
    (x * 1000.0).round_ties_even() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::round3;

    #[test]
    fn round3_matches_numpy_float32() {
        assert_eq!(round3(0.0004), 0.0);
        assert_eq!(round3(0.0006), 0.001);
        assert_eq!(round3(-0.0004), 0.0);
        assert!(round3(0.0005) <= 0.001);
    }
}
