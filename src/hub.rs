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

/// Whether `model` names a local folder (else it is taken as a repo id like `org/name`).
pub fn is_local(model: &str) -> bool {
    Path::new(model).exists() || model.starts_with('.') || model.starts_with('/') || model.matches('/').count() != 1
}

/// The local folder of a model: `model` itself when it is a folder, else the Hub snapshot holding the
/// repo's files, downloaded as needed.
pub fn resolve(model: &str, variant: Option<&str>) -> Result<PathBuf> {
    if is_local(model) {
        let p = PathBuf::from(model);
        if !p.is_dir() {
            return Err(Error::usage(format!("model folder {model} does not exist")));
        }
        return Ok(p);
    }
    let files: Vec<String> = FILES
        .iter()
        .map(|f| f.replace("{v}", &variant.map(|v| format!(".{v}")).unwrap_or_default()))
        .collect();
    let repo = Repo::new(model.to_string(), RepoType::Model);
    // Everything already cached: no network needed.
    let cache = Cache::from_env().repo(repo.clone());
    if let Some(paths) = files.iter().map(|f| cache.get(f)).collect::<Option<Vec<PathBuf>>>() {
        return Ok(snapshot_dir(&paths[0]));
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(Error::usage(format!(
            "{model} is not fully in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it"
        )));
    }
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| Error::usage(format!("cannot reach the Hugging Face Hub: {e}")))?
        .repo(repo);
    let mut first = None;
    for f in &files {
        eprintln!("fetching {model}/{f}");
        let p = api.get(f).map_err(|e| {
            Error::usage(format!(
                "cannot download {model}/{f}: {e}. Check the repo id and your network (gated repos need HF_TOKEN), \
                 or pass a local diffusers folder to --model"
            ))
        })?;
        first.get_or_insert(p);
    }
    Ok(snapshot_dir(first.as_ref().expect("at least one file")))
}

/// `…/snapshots/<rev>/model_index.json` → `…/snapshots/<rev>`.
fn snapshot_dir(model_index: &Path) -> PathBuf {
    model_index.parent().map(Path::to_path_buf).unwrap_or_default()
}
