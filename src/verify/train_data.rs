//! `train.<case>.pixels` and `train.<case>.ids`: the DreamBooth data pipeline against the batches diffusers'
//! training scripts built (fixture README, train/, step 1). For every stored step the batch is rebuilt from
//! the case's `order[s]` (image files beside the fixtures, prompts given) with its resolution, crop and
//! interpolation, and compared with `step{s}.pixel_values` and `step{s}.input_ids`.

use std::path::Path;

use serde_json::Value;

use super::{failed, CaseResult};
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::models::tokenizer::ClipTokenizer;
use crate::testing::{max_abs, rel_l2};
use crate::train::data::{parse_interpolation, prepare_image, tokenize_prompts, Preprocess};

/// Largest pixel difference allowed. Pillow's resampling is reproduced bit for bit, so the u8 images are
/// equal and the [−1, 1] values identical; one u8 level would be 2/255 ≈ 7.8e-3.
pub const PIXEL_TOL: f64 = 1e-6;

/// Every `train.*` case of `fx`: two results each.
pub fn train_data_cases(fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let model_dir = fx.dir.join(fx.meta["model_dir"].as_str().unwrap_or("../tiny"));
    let mut out = Vec::new();
    for (name, case) in cases.iter().filter(|(k, _)| k.starts_with("train.")) {
        match run_case(fx, &model_dir, name, case) {
            Ok(r) => out.extend(r),
            Err(e) => {
                out.push(failed(&format!("{name}.pixels"), &e));
                out.push(failed(&format!("{name}.ids"), &e));
            }
        }
    }
    Ok(out)
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .ok_or_else(|| Error::usage(format!("fixture case: '{what}' is not a list")))
}

fn run_case(fx: &Fixtures, model_dir: &Path, name: &str, case: &Value) -> Result<[CaseResult; 2]> {
    let model = case["model"].as_str().ok_or_else(|| Error::usage(format!("{name}: no 'model'")))?;
    let resolution = case["resolution"].as_u64().ok_or_else(|| Error::usage(format!("{name}: no 'resolution'")))? as usize;
    let mode = case["image_interpolation_mode"].as_str().unwrap_or("lanczos");
    let center_crop = case["center_crop"].as_bool().unwrap_or(false);
    if !center_crop {
        return Err(Error::usage(format!("{name}: a random crop cannot be reproduced from the fixture")));
    }
    let p = Preprocess { resolution, filter: parse_interpolation(mode)?, center_crop, random_flip: false };
    let tok = ClipTokenizer::from_folder(&model_dir.join(model).join("tokenizer"))?;
    let order = case["order"].as_array().ok_or_else(|| Error::usage(format!("{name}: no 'order'")))?;
    // A centre crop without flips draws nothing.
    let mut rng = crate::testing::Rng::new(0);
    let (mut px_worst, mut px_max, mut px_detail) = (0.0f64, 0.0f64, String::new());
    let (mut id_worst, mut id_max, mut id_detail) = (0.0f64, 0.0f64, String::new());
    for (s, entry) in order.iter().enumerate() {
        let images = strings(&entry["images"], "images")?;
        let prompts = strings(&entry["prompts"], "prompts")?;
        let mut px = Vec::new();
        for img in &images {
            px.extend(prepare_image(&fx.dir.join(img), &p, &mut rng)?);
        }
        let want_shape = fx.shape(&format!("{name}.step{s}.pixel_values"))?;
        let got_shape = vec![images.len(), 3, resolution, resolution];
        if want_shape != got_shape {
            px_detail = format!("step {s}: pixel values {got_shape:?}, fixture {want_shape:?}");
            px_worst = f64::INFINITY;
        } else {
            let want = fx.tensor(&format!("{name}.step{s}.pixel_values"))?;
            let (r, m) = (rel_l2(&px, &want), max_abs(&px, &want));
            if m > px_max {
                px_detail = format!("step {s}: max |Δ| {m:.3e}");
            }
            px_worst = px_worst.max(r);
            px_max = px_max.max(m);
        }
        let ids = tokenize_prompts(&tok, &prompts)?;
        let want = fx.tensor(&format!("{name}.step{s}.input_ids"))?;
        if ids.len() != want.len() {
            id_detail = format!("step {s}: {} ids, fixture {}", ids.len(), want.len());
            id_worst = f64::INFINITY;
        } else if let Some(i) = (0..ids.len()).find(|&i| ids[i] != want[i]) {
            let row = i / tok.max_len;
            id_detail = format!("step {s}: prompt {:?} differs at position {}", prompts.get(row), i % tok.max_len);
            id_worst = id_worst.max(rel_l2(&ids, &want));
            id_max = id_max.max(max_abs(&ids, &want));
        }
    }
    let pixels = CaseResult {
        unchecked: None,
        name: format!("{name}.pixels"),
        passed: px_max <= PIXEL_TOL && px_worst.is_finite(),
        rel_l2: px_worst,
        max_abs: px_max,
        detail: px_detail,
    };
    let ids = CaseResult { name: format!("{name}.ids"), passed: id_detail.is_empty(), rel_l2: id_worst, max_abs: id_max, detail: id_detail, unchecked: None };
    Ok([pixels, ids])
}
