//! Models from the Hugging Face Hub, downloaded and cached the way diffusers does (the shared
//! `~/.cache/huggingface/hub` cache, `HF_HOME` / `HF_HUB_CACHE` honoured, `HF_TOKEN` for gated repos,
//! `HF_HUB_OFFLINE=1` to use only what is cached). Only the files a pipeline needs are fetched; see
//! [`download`] for timeouts, resuming and progress.

pub mod download;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use download::Hub;

/// The files of a diffusers Stable Diffusion repository wgsd reads; `{v}` is `.variant` or empty.
const FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "text_encoder/config.json",
    "text_encoder/model{v}.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model{v}.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model{v}.safetensors",
];

/// The files of the optional components (fetched only when `model_index.json` lists them and the run
/// needs them); always the full-precision files, which every repository that has these components ships.
fn component_files(component: &str) -> &'static [&'static str] {
    match component {
        "safety_checker" => &["safety_checker/config.json", "safety_checker/model.safetensors"],
        "feature_extractor" => &["feature_extractor/preprocessor_config.json"],
        "depth_estimator" => &["depth_estimator/config.json", "depth_estimator/model.safetensors"],
        _ => &[],
    }
}

/// Whether a parsed `model_index.json` lists `component` with a class (not `[null, null]`).
fn lists_component(index: &serde_json::Value, component: &str) -> bool {
    index[component].as_array().is_some_and(|a| a.iter().any(|v| !v.is_null()))
}

/// `HF_HOME`, else `~/.cache/huggingface`.
fn hf_home() -> Option<PathBuf> {
    std::env::var_os("HF_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))
}

/// The Hugging Face cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache_root() -> Result<PathBuf> {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => Ok(dir.into()),
        None => hf_home()
            .map(|h| h.join("hub"))
            .ok_or_else(|| Error::usage("no Hugging Face cache: set HF_HOME or HF_HUB_CACHE (HOME is not set)")),
    }
}

/// A file of `repo` at the cached `refs/main` commit, if it is in the cache.
fn cached(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let commit = std::fs::read_to_string(dir.join("refs/main")).ok()?;
    let p = dir.join("snapshots").join(commit.trim()).join(file);
    p.exists().then_some(p)
}

/// Whether `model` names a local folder (else it is taken as a repo id like `org/name`).
pub fn is_local(model: &str) -> bool {
    Path::new(model).exists() || !is_repo_id(model)
}

/// A Hub repo id: `org/name`, each part letters, digits, `-`, `_`, `.` (not starting with `.` or `-`).
fn is_repo_id(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty() && p.len() <= 96 && !p.starts_with(['.', '-']) && !p.contains("..") && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(s.split_once('/'), Some((org, name)) if part(org) && part(name))
}

/// The local folder of a model: `model` itself when it is a folder, else the Hub snapshot holding the
/// repo's files, downloaded as needed. `extras` names optional components the run will use
/// (`safety_checker`, `feature_extractor`, `depth_estimator`): they are fetched when the repository has them.
pub fn resolve(model: &str, variant: Option<&str>, extras: &[&str]) -> Result<PathBuf> {
    resolve_files(model, variant, extras, true)
}

/// Like [`resolve`] without the three networks' weight files: the configs, tokenizer and scheduler a
/// single-file checkpoint (`--config`) takes from a diffusers repository.
pub fn resolve_config(model: &str, extras: &[&str]) -> Result<PathBuf> {
    resolve_files(model, None, extras, false)
}

fn resolve_files(model: &str, variant: Option<&str>, extras: &[&str], weights: bool) -> Result<PathBuf> {
    if is_local(model) {
        let p = PathBuf::from(model);
        if !p.is_dir() {
            return Err(Error::usage(if p.exists() {
                format!("{model} is a file, not a model folder (a single-file checkpoint is a .safetensors file)")
            } else {
                format!("no such folder: {model} (and it is not a Hugging Face repo id like org/name)")
            }));
        }
        return Ok(p);
    }
    let mut files: Vec<String> = FILES
        .iter()
        .filter(|f| weights || !f.ends_with(".safetensors"))
        .map(|f| f.replace("{v}", &variant.map(|v| format!(".{v}")).unwrap_or_default()))
        .collect();
    let root = cache_root()?;
    let hub = || online_hub(model);
    // The index says which optional components the repository has.
    let index_path = match cached(&root, model, "model_index.json") {
        Some(p) => p,
        None => hub()?.download(&root, model, "model_index.json")?,
    };
    let text = std::fs::read_to_string(&index_path)
        .map_err(|e| Error::Config { file: index_path.display().to_string(), msg: format!("cannot read: {e}") })?;
    let index: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config { file: index_path.display().to_string(), msg: format!("invalid JSON: {e}") })?;
    for c in extras.iter().filter(|c| lists_component(&index, c)) {
        for f in component_files(c) {
            if !files.iter().any(|have| have == f) {
                files.push(f.to_string());
            }
        }
    }
    fetch(&root, model, &files, hub)
}

/// `files` of `model` from the cache, downloading those missing. The first file is fetched again when
/// anything is missing (it is small: the index or config): if the repository moved to a new commit, every
/// file then lands in, and is looked up in, that commit's snapshot. Returns the snapshot folder.
fn fetch(root: &Path, model: &str, files: &[String], hub: impl FnOnce() -> Result<Hub>) -> Result<PathBuf> {
    let in_cache: Option<Vec<PathBuf>> = files.iter().map(|f| cached(root, model, f)).collect();
    if let Some(first) = in_cache.as_ref().and_then(|v| v.first()) {
        return Ok(snapshot_of(first, &files[0]));
    }
    let hub = hub()?;
    let mut first = None;
    for (i, f) in files.iter().enumerate() {
        let p = match cached(root, model, f) {
            Some(p) if i > 0 => p,
            _ => hub.download(root, model, f)?,
        };
        first.get_or_insert(p);
    }
    let first = first.ok_or_else(|| Error::usage(format!("{model}: no files to fetch")))?;
    Ok(snapshot_of(&first, &files[0]))
}

/// The folder of a single diffusers model (`config.json` + `diffusion_pytorch_model.safetensors`, as a VAE
/// or TAESD repository such as madebyollin/taesd ships them): `model` itself when it is a folder, else the
/// Hub snapshot, downloaded as needed.
pub fn resolve_single_model(model: &str) -> Result<PathBuf> {
    if is_local(model) {
        let p = PathBuf::from(model);
        if !p.is_dir() {
            return Err(Error::usage(format!("no such folder: {model} (and it is not a Hugging Face repo id like org/name)")));
        }
        return Ok(p);
    }
    let root = cache_root()?;
    let files = ["config.json".to_string(), "diffusion_pytorch_model.safetensors".to_string()];
    fetch(&root, model, &files, || online_hub(model))
}

/// The Hub client, unless `HF_HUB_OFFLINE=1` forbids downloading what `model` still lacks.
fn online_hub(model: &str) -> Result<Hub> {
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(Error::usage(format!("{model} is not fully in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it")));
    }
    Ok(Hub::from_env(hf_home().as_deref()))
}

/// The snapshot folder holding `path`, the snapshot file `file` (which may sit in a sub-folder).
fn snapshot_of(path: &Path, file: &str) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in Path::new(file).components() {
        p.pop();
    }
    p
}
