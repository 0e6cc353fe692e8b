//! Verify cases of the image processors and the safety checker:
//! - `safety.pixel_values`: the `safety.images` files through the checker's `feature_extractor/`
//!   (CLIPImageProcessor) against the fixture;
//! - `safety.image_embeds`: the safety checker on the fixture's `pixel_values`;
//! - `safety.has_nsfw`: its flags against `cases.json` `safety.has_nsfw` (identical);
//! - `depth.pixel_values`: the first safety image through the depth model's `feature_extractor/`
//!   (DPTImageProcessor).
//!
//! The model folders are the first of `cases.json` `models` with a `safety_checker/` (resp.
//! `depth_estimator/`) folder. A case whose inputs the fixture set lacks is not reported.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::imageproc::clip_processor::ClipImageProcessor;
use crate::imageproc::dpt_processor::DptImageProcessor;
use crate::imageproc::{PixelValues, RgbImage};
use crate::models::safety_checker::SafetyChecker;
use crate::testing::{max_abs, rel_l2};
use super::{module_tol, CaseResult, MODULE_TOL};

/// The first model folder of the set that has `sub/`.
fn model_with(fx: &Fixtures, sub: &str) -> Option<PathBuf> {
    fx.meta["models"].as_array()?.iter().filter_map(|m| m.as_str()).map(|m| fx.dir.join(m)).find(|d| d.join(sub).is_dir())
}

fn safety_images(fx: &Fixtures) -> Vec<String> {
    fx.meta["safety"]["images"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn compare(name: &str, got: &[f32], want: &[f32], tol: f64) -> CaseResult {
    if got.len() != want.len() {
        return failed(name, format!("{} values computed, {} expected", got.len(), want.len()));
    }
    let r = rel_l2(got, want);
    let finite = got.iter().all(|v| v.is_finite());
    CaseResult {
        unchecked: None,
        name: name.into(),
        passed: finite && r <= tol,
        rel_l2: r,
        max_abs: max_abs(got, want),
        detail: if finite { String::new() } else { "non-finite output".into() },
    }
}

use super::failed;

/// Opens the fixture images as transformers' processors see a PIL image (`convert_to_rgb`).
fn open_all(fx: &Fixtures, names: &[String]) -> Result<Vec<RgbImage>> {
    names.iter().map(|n| RgbImage::open_over_white(&fx.dir.join(n))).collect()
}

/// Every case of this module present in the fixture set.
pub fn safety_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let images = safety_images(fx);
    let checker_dir = model_with(fx, "safety_checker");

    if let (Some(dir), false, true) = (&checker_dir, images.is_empty(), fx.has("safety.pixel_values")) {
        let name = "safety.pixel_values";
        let run = || -> Result<CaseResult> {
            let p = ClipImageProcessor::load(&dir.join("feature_extractor"))?.preprocess(&open_all(fx, &images)?)?;
            check_shape(name, &p, &fx.shape(name)?)?;
            Ok(compare(name, &p.data, &fx.tensor(name)?, MODULE_TOL))
        };
        out.push(run().unwrap_or_else(|e| failed(name, e)));
    }

    if let (Some(dir), true) = (&checker_dir, fx.has("safety.pixel_values")) {
        let run = || -> Result<Vec<CaseResult>> {
            let checker = SafetyChecker::load(gpu, &dir.join("safety_checker"))?;
            let shape = fx.shape("safety.pixel_values")?;
            let shape: [usize; 4] = shape.try_into().map_err(|s| Error::usage(format!("safety.pixel_values has shape {s:?}, expected 4 dims")))?;
            let pv = PixelValues { shape, data: fx.tensor("safety.pixel_values")? };
            let embeds = checker.image_embeds(&pv)?;
            let mut r = Vec::new();
            if fx.has("safety.image_embeds") {
                r.push(compare("safety.image_embeds", &embeds, &fx.tensor("safety.image_embeds")?, module_tol(gpu.precision)));
            }
            if let Some(want) = fx.meta["safety"]["has_nsfw"].as_array() {
                let want: Vec<bool> = want.iter().map(|v| v.as_bool().unwrap_or(false)).collect();
                let got: Vec<bool> = checker.scores(&embeds).iter().map(|s| s.has_nsfw).collect();
                let same = got == want;
                r.push(CaseResult {
                    unchecked: None,
                    name: "safety.has_nsfw".into(),
                    passed: same,
                    rel_l2: 0.0,
                    max_abs: got.iter().zip(&want).filter(|(a, b)| a != b).count() as f64 + got.len().abs_diff(want.len()) as f64,
                    detail: if same { format!("{} flags identical", got.len()) } else { format!("got {got:?}, want {want:?}") },
                });
            }
            Ok(r)
        };
        match run() {
            Ok(r) => out.extend(r),
            Err(e) => out.push(failed("safety.image_embeds", e)),
        }
    }

    if let (Some(dir), Some(image), true) = (model_with(fx, "depth_estimator"), images.first(), fx.has("depth.pixel_values")) {
        let name = "depth.pixel_values";
        let run = || -> Result<CaseResult> {
            let img = RgbImage::open_over_white(&fx.dir.join(image))?;
            let p = DptImageProcessor::load(&dir.join("feature_extractor"))?.preprocess(&[img])?;
            check_shape(name, &p, &fx.shape(name)?)?;
            Ok(compare(name, &p.data, &fx.tensor(name)?, MODULE_TOL))
        };
        out.push(run().unwrap_or_else(|e| failed(name, e)));
    }
    Ok(out)
}

fn check_shape(name: &str, p: &PixelValues, want: &[usize]) -> Result<()> {
    if p.shape[..] != want[..] {
        return Err(Error::usage(format!("{name}: computed shape {:?}, fixture {want:?}", p.shape)));
    }
    Ok(())
}
