//! `train.<case>.layout`: the adapter files wgsd writes for a LoRA training case, from the fixture's final
//! parameters, against the files diffusers' script wrote (`saved` in cases.json): the same keys, shapes
//! and dtypes, the same values (they are the same numbers, so within 1e-6 relative), the metadata keys the
//! fixture has; and both files read back by `read_lora_file` give the parameters again. No GPU.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::SafeTensors;
use serde_json::Value;

use super::{failed, CaseResult};
use crate::error::{Error, Result};
use crate::fixtures::Fixtures;
use crate::models::config::ClipTextConfig;
use crate::train::lora_file::{read_lora_file, save_lora, KohyaInfo};
use crate::train::save::HostTensor;

/// Values are copied, not computed: anything beyond rounding is a bug.
pub const SAVED_TOL: f64 = 1e-6;

/// Every LoRA `train.*` case of `fx` that has saved files.
pub fn train_saved_cases(fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let Some(cases) = fx.meta["cases"].as_object() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (name, case) in cases.iter().filter(|(k, c)| k.starts_with("train.") && c["lora"].is_object() && c["saved"].is_object()) {
        let case_name = format!("{name}.layout");
        out.push(run_case(fx, name, case, &case_name).unwrap_or_else(|e| failed(&case_name, e)));
    }
    Ok(out)
}

/// A safetensors file's tensors (dtype, shape, values as f64) and metadata.
struct Contents {
    tensors: BTreeMap<String, (String, Vec<usize>, Vec<f64>)>,
    metadata: BTreeMap<String, String>,
}

fn contents(path: &Path) -> Result<Contents> {
    let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| err(format!("invalid safetensors: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| err(format!("invalid safetensors: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (k, v) in st.tensors() {
        let values: Vec<f64> = match v.dtype() {
            safetensors::Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
            safetensors::Dtype::F64 => v.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            safetensors::Dtype::F16 => v.data().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            _ => Vec::new(),
        };
        tensors.insert(k, (format!("{:?}", v.dtype()), v.shape().to_vec(), values));
    }
    Ok(Contents { tensors, metadata: meta.metadata().clone().unwrap_or_default().into_iter().collect() })
}

/// Differences of `got` from `want`: problems found, worst relative max error, worst absolute error.
fn compare_files(label: &str, got: &Contents, want: &Contents, problems: &mut Vec<String>) -> (f64, f64) {
    let (mut worst_rel, mut worst_abs) = (0f64, 0f64);
    for k in want.tensors.keys().filter(|k| !got.tensors.contains_key(*k)).take(3) {
        problems.push(format!("{label}: missing key '{k}'"));
    }
    for k in got.tensors.keys().filter(|k| !want.tensors.contains_key(*k)).take(3) {
        problems.push(format!("{label}: extra key '{k}'"));
    }
    for (k, (dt, shape, values)) in &got.tensors {
        let Some((wdt, wshape, wvalues)) = want.tensors.get(k) else { continue };
        if dt != wdt || shape != wshape {
            problems.push(format!("{label}: '{k}' is {dt} {shape:?}, the fixture's {wdt} {wshape:?}"));
            continue;
        }
        let scale = wvalues.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        let diff = values.iter().zip(wvalues).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        worst_abs = worst_abs.max(diff);
        worst_rel = worst_rel.max(if wvalues.iter().all(|v| *v == 0.0) { diff } else { diff / scale });
    }
    for k in want.metadata.keys().filter(|k| !got.metadata.contains_key(*k)) {
        problems.push(format!("{label}: metadata key '{k}' missing"));
    }
    (worst_rel, worst_abs)
}

fn run_case(fx: &Fixtures, name: &str, case: &Value, case_name: &str) -> Result<CaseResult> {
    let bad = |what: &str| Error::usage(format!("fixture case {name}: {what}"));
    let steps = case["steps"].as_u64().ok_or_else(|| bad("no 'steps'"))?;
    let last = steps.checked_sub(1).ok_or_else(|| bad("zero steps"))?;
    let rank = case["lora"]["rank"].as_u64().ok_or_else(|| bad("no lora.rank"))? as usize;
    let alpha = case["lora"]["alpha"].as_f64().ok_or_else(|| bad("no lora.alpha"))?;
    let trainable: Vec<&str> = case["trainable"].as_array().ok_or_else(|| bad("no 'trainable'"))?.iter().filter_map(|v| v.as_str()).collect();
    let mut tensors = Vec::new();
    for t in &trainable {
        let key = format!("{name}.param.step{last}.{t}");
        tensors.push(HostTensor { name: t.to_string(), shape: fx.shape(&key)?, values: fx.tensor(&key)? });
    }
    // The kohya metadata's base-model fields, from the model's text encoder (OpenCLIP = SD 2).
    let model_dir = fx.dir.join(fx.meta["model_dir"].as_str().unwrap_or("../tiny")).join(case["model"].as_str().unwrap_or(""));
    let v2 = ClipTextConfig::from_file(&model_dir.join("text_encoder/config.json")).map(|c| c.hidden_act == "gelu").unwrap_or(false);
    let info = KohyaInfo { v2, v_prediction: case["prediction_type"].as_str() == Some("v_prediction"), extra: Vec::new() };

    let dir = std::env::temp_dir().join(format!("wgsd-verify-saved-{}-{}", std::process::id(), name.replace('.', "_")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
    let result = (|| {
        let paths = save_lora(&dir, &tensors, rank, alpha, &info, false)?;
        let mut problems = Vec::new();
        let (mut rel, mut abs) = (0f64, 0f64);
        for (label, ours, key) in [("diffusers", &paths.diffusers, "diffusers"), ("kohya", &paths.kohya, "kohya")] {
            let theirs = fx.dir.join(case["saved"][key].as_str().ok_or_else(|| bad(&format!("no saved.{key}")))?);
            let (r, a) = compare_files(label, &contents(ours)?, &contents(&theirs)?, &mut problems);
            rel = rel.max(r);
            abs = abs.max(a);
            // Read back: the same names and values as trained.
            let back = read_lora_file(ours)?;
            if back.tensors.len() != tensors.len() || back.tensors.iter().any(|b| !tensors.iter().any(|t| t == b)) {
                problems.push(format!("{label}: read_lora_file does not give back the trained tensors"));
            }
            if label == "kohya" && back.alpha() != Some(alpha) {
                problems.push(format!("kohya: alpha read back as {:?}, trained with {alpha}", back.alpha()));
            }
        }
        Ok::<_, Error>((problems, rel, abs))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (problems, rel, abs) = result?;
    let passed = problems.is_empty() && rel <= SAVED_TOL;
    Ok(CaseResult {
        unchecked: None,
        name: case_name.to_string(),
        passed,
        rel_l2: rel,
        max_abs: abs,
        detail: if problems.is_empty() && !passed { format!("values differ by {rel:.2e} relative") } else { problems.join("; ") },
    })
}
