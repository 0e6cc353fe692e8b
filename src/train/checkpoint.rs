//! Training checkpoints (`--checkpointing-steps`, `--resume`): everything a run needs to continue as if it
//! had never stopped — the trainable tensors, AdamW's moments and step count, the optimizer-step counter,
//! the random generator's state and the data order — in `<out>/checkpoint-<step>/`. A checkpoint is
//! written into a temporary folder and renamed into place, so a crash never leaves a half-written one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::weights::WeightFile;

/// The scalar state of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Optimizer steps done.
    pub step: usize,
    /// AdamW's own step count (bias corrections).
    pub adam_step: u64,
    /// The training generator's state after the last step.
    pub rng_state: u64,
    /// The current epoch's order of instance images and how many of it were used.
    pub order: Vec<usize>,
    pub position: usize,
    /// What the run was started with, to refuse resuming a different run.
    pub fingerprint: String,
}

/// One tensor of a checkpoint: name and values (f32, shape `[n]`: shapes come from the model on loading).
pub type NamedValues = (String, Vec<f32>);

fn io(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::usage(format!("{what} {}: {e}", path.display()))
}

fn write_tensors(path: &Path, tensors: &[NamedValues]) -> Result<()> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, v)| {
            TensorView::new(safetensors::Dtype::F32, vec![v.len()], bytemuck::cast_slice(v)).map(|t| (n.clone(), t))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| io(path, "cannot serialise", e))?;
    let bytes = safetensors::serialize(views, None).map_err(|e| io(path, "cannot serialise", e))?;
    std::fs::write(path, bytes).map_err(|e| io(path, "cannot write", e))
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Vec<f32>>> {
    let f = WeightFile::open(path)?;
    f.names().into_iter().map(|n| Ok((n.clone(), f.read_f32(&n)?))).collect()
}

/// Writes `<out>/checkpoint-<step>/`: `trainable.safetensors` (the tensors by name), `optimizer.safetensors`
/// (`<name>.exp_avg`, `<name>.exp_avg_sq`) and `state.json`. Returns the folder.
pub fn save(out: &Path, state: &RunState, params: &[NamedValues], moments: &[(String, Vec<f32>, Vec<f32>)]) -> Result<PathBuf> {
    let dir = out.join(format!("checkpoint-{}", state.step));
    let tmp = out.join(format!(".checkpoint-{}.partial", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, "cannot clear", e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, "cannot create", e))?;
    write_tensors(&tmp.join("trainable.safetensors"), params)?;
    let mut opt = Vec::with_capacity(2 * moments.len());
    for (n, m, v) in moments {
        opt.push((format!("{n}.exp_avg"), m.clone()));
        opt.push((format!("{n}.exp_avg_sq"), v.clone()));
    }
    write_tensors(&tmp.join("optimizer.safetensors"), &opt)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| io(&tmp, "cannot serialise state for", e))?;
    std::fs::write(tmp.join("state.json"), json).map_err(|e| io(&tmp, "cannot write state in", e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, "cannot replace", e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, "cannot move the checkpoint into", e))?;
    Ok(dir)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: RunState,
    pub params: HashMap<String, Vec<f32>>,
    /// name → (exp_avg, exp_avg_sq)
    pub moments: HashMap<String, (Vec<f32>, Vec<f32>)>,
}

/// The newest `checkpoint-<step>` folder in `out`, if any.
pub fn latest(out: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(out).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("state.json").exists().then_some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s)
        .map(|(_, p)| p)
}

pub fn load(dir: &Path) -> Result<Checkpoint> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| io(&state_path, "cannot read", e))?;
    let state: RunState = serde_json::from_str(&text).map_err(|e| io(&state_path, "invalid checkpoint state in", e))?;
    let params = read_tensors(&dir.join("trainable.safetensors"))?;
    let mut raw = read_tensors(&dir.join("optimizer.safetensors"))?;
    let mut moments = HashMap::new();
    for name in params.keys() {
        let m = raw.remove(&format!("{name}.exp_avg"));
        let v = raw.remove(&format!("{name}.exp_avg_sq"));
        if let (Some(m), Some(v)) = (m, v) {
            moments.insert(name.clone(), (m, v));
        }
    }
    Ok(Checkpoint { dir: dir.to_path_buf(), state, params, moments })
}
