//! Models from the Hugging Face Hub, downloaded and cached the way diffusers does (the shared
//! `~/.cache/huggingface/hub` cache, `HF_HOME` / `HF_HUB_CACHE` honoured, `HF_TOKEN` for gated repos,
//! `HF_HUB_OFFLINE=1` to use only what is cached). Only the files a pipeline needs are fetched.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

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

/// The Hugging Face cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => Cache::new(dir.into()),
        None => Cache::from_env(),
    }
}

/// Whether `model` names a local folder (else it is taken as a repo id like `org/name`).
pub fn is_local(model: &str) -> bool {
    Path::new(model).exists() || model.starts_with('.') || model.starts_with('/') || model.matches('/').count() != 1
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
            return Err(Error::usage(format!("model folder {model} does not exist")));
        }
        return Ok(p);
    }
    let mut files: Vec<String> = FILES
        .iter()
        .filter(|f| weights || !f.ends_with(".safetensors"))
        .map(|f| f.replace("{v}", &variant.map(|v| format!(".{v}")).unwrap_or_default()))
        .collect();
    let repo = Repo::new(model.to_string(), RepoType::Model);
    let api = || api_repo(model, &repo);
    let download_error = |f: &str, e: &dyn std::fmt::Display| {
        Error::usage(format!(
            "cannot download {model}/{f}: {e}. Check the repo id and your network (gated repos need HF_TOKEN), \
             or pass a local diffusers folder to --model"
        ))
    };
    // The index says which optional components the repository has.
    let cache = cache().repo(repo.clone());
    let index_path = match cache.get("model_index.json") {
        Some(p) => p,
        None => api()?.get("model_index.json").map_err(|e| download_error("model_index.json", &e))?,
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
    // Everything already cached: no network needed.
    if files.iter().all(|f| cache.get(f).is_some()) {
        return Ok(snapshot_dir(&index_path));
    }
    let api = api()?;
    let mut first = None;
    for f in &files {
        eprintln!("fetching {model}/{f}");
        let p = api.get(f).map_err(|e| download_error(f, &e))?;
        first.get_or_insert(p);
    }
    Ok(snapshot_dir(first.as_ref().expect("at least one file")))
}

/// The Hub API for `repo`, unless `HF_HUB_OFFLINE=1` forbids downloading.
fn api_repo(model: &str, repo: &Repo) -> Result<hf_hub::api::sync::ApiRepo> {
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(Error::usage(format!("{model} is not fully in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it")));
    }
    let mut builder = ApiBuilder::from_cache(cache()).with_progress(true);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    Ok(builder.build().map_err(|e| Error::usage(format!("cannot reach the Hugging Face Hub: {e}")))?.repo(repo.clone()))
}

/// The folder of a single diffusers model (`config.json` + `diffusion_pytorch_model.safetensors`, as a VAE
/// or TAESD repository such as madebyollin/taesd ships them): `model` itself when it is a folder, else the
/// Hub snapshot, downloaded as needed.
pub fn resolve_single_model(model: &str) -> Result<PathBuf> {
    if is_local(model) {
        let p = PathBuf::from(model);
        if !p.is_dir() {
            return Err(Error::usage(format!("model folder {model} does not exist")));
        }
        return Ok(p);
    }
    let repo = Repo::new(model.to_string(), RepoType::Model);
    let cached = cache().repo(repo.clone());
    let files = ["config.json", "diffusion_pytorch_model.safetensors"];
    if let Some(p) = files.iter().map(|f| cached.get(f)).collect::<Option<Vec<_>>>() {
        return Ok(snapshot_dir(&p[0]));
    }
    let api = api_repo(model, &repo)?;
    let mut first = None;
    for f in files {
        eprintln!("fetching {model}/{f}");
        let p = api.get(f).map_err(|e| Error::usage(format!("cannot download {model}/{f}: {e}. Check the repo id and your network, or pass a local folder")))?;
        first.get_or_insert(p);
    }
    Ok(snapshot_dir(&first.expect("two files")))
}

/// `…/snapshots/<rev>/model_index.json` → `…/snapshots/<rev>`.
fn snapshot_dir(model_index: &Path) -> PathBuf {
    model_index.parent().map(Path::to_path_buf).unwrap_or_default()
}
