//! `depth.predicted_depth`: the fixture's `depth.pixel_values` through the first model folder's
//! `depth_estimator/`, compared with transformers' `depth.predicted_depth`.

use std::sync::Arc;

use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::models::dpt::DptForDepthEstimation;
use crate::testing::{max_abs, rel_l2};
use super::{module_tol, CaseResult};

const CASE: &str = "depth.predicted_depth";

fn failed(detail: String) -> CaseResult {
    super::failed(CASE, detail)
}

/// The depth estimator case; none when the fixture set has no depth tensors.
pub fn depth_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    if !fx.has("depth.pixel_values") || !fx.has(CASE) {
        return Ok(Vec::new());
    }
    let models = fx.meta["models"].as_array().cloned().unwrap_or_default();
    let Some(dir) = models.iter().filter_map(|m| m.as_str()).map(|m| fx.dir.join(m).join("depth_estimator")).find(|d| d.exists())
    else {
        return Ok(vec![failed("no model folder with a depth_estimator/".into())]);
    };
    let run = || -> Result<CaseResult> {
        let model = DptForDepthEstimation::load(gpu, &dir)?;
        let s = fx.shape("depth.pixel_values")?;
        let shape: [usize; 4] = s.as_slice().try_into().map_err(|_| crate::error::Error::usage(format!("depth.pixel_values has shape {s:?}, not [B, C, H, W]")))?;
        let got = model.predict(&fx.tensor("depth.pixel_values")?, shape)?;
        let want = fx.tensor(CASE)?;
        if got.len() != want.len() {
            return Ok(failed(format!("{} values computed, {} expected", got.len(), want.len())));
        }
        let (r, m) = (rel_l2(&got, &want), max_abs(&got, &want));
        let finite = got.iter().all(|v| v.is_finite());
        Ok(CaseResult {
            unchecked: None,
            name: CASE.into(),
            passed: finite && r <= module_tol(gpu.precision),
            rel_l2: r,
            max_abs: m,
            detail: if finite { String::new() } else { "non-finite output".into() },
        })
    };
    Ok(vec![run().unwrap_or_else(|e| failed(e.to_string()))])
}
