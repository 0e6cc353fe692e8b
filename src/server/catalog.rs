//! What the server may load, by name: checkpoints (`--model` and the models in `--models-dir`), LoRAs in
//! `--lora-dir` and embeddings in `--embeddings-dir`. A name from a request is only ever looked up in
//! these lists or below these folders — never used as a path of its own (no `..`, no absolute paths, no
//! symbolic link leading out).

use std::path::{Component, Path, PathBuf};

use super::error::{ApiError, ApiResult};

/// One checkpoint a client can pick (`sd_model_checkpoint`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// What `sd-models` lists as title and model_name: `--model`'s folder or file name, or the path
    /// inside `--models-dir` (with `/`).
    pub name: String,
    /// What `open_model` takes: a folder, a `.safetensors` file, or a Hugging Face repo id.
    pub source: String,
    /// For a single-file checkpoint: the diffusers folder or repo id of its configs (`--config`).
    pub config: Option<String>,
}

/// The folders of the server and its startup model.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub initial: ModelEntry,
    pub models_dir: Option<PathBuf>,
    /// `--config`: lets single-file checkpoints in `--models-dir` load (they have no configs of their own).
    pub config: Option<String>,
    pub lora_dir: Option<PathBuf>,
    pub embeddings_dir: Option<PathBuf>,
}

/// How deep the folders are searched (A1111 users keep models in sub-folders).
const MAX_DEPTH: usize = 4;

impl Catalog {
    /// Every checkpoint: `--model` first, then `--models-dir`'s diffusers folders (those holding
    /// `model_index.json`) and, with `--config`, its `.safetensors` files; sorted by name.
    pub fn models(&self) -> Vec<ModelEntry> {
        let mut found = Vec::new();
        if let Some(dir) = &self.models_dir {
            scan_models(dir, dir, self.config.as_deref(), MAX_DEPTH, &mut found);
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all = vec![self.initial.clone()];
        all.extend(found.into_iter().filter(|m| m.name != self.initial.name));
        all
    }

    /// The checkpoint a client names: its title or model name as `sd-models` lists them, also with a
    /// trailing ` [hash]` as A1111 titles carry, or without its `.safetensors` extension.
    pub fn find_model(&self, name: &str) -> Option<ModelEntry> {
        let mut wanted = name.trim();
        if let Some(i) = wanted.rfind(" [") {
            if wanted.ends_with(']') {
                wanted = &wanted[..i];
            }
        }
        let stem = wanted.strip_suffix(".safetensors").unwrap_or(wanted);
        self.models().into_iter().find(|m| m.name == wanted || m.name.strip_suffix(".safetensors") == Some(stem))
    }

    /// Every LoRA file below `--lora-dir`: (name = file stem, path relative to the folder).
    pub fn loras(&self) -> Vec<(String, String)> {
        list_safetensors(self.lora_dir.as_deref())
    }

    /// Every embedding file below `--embeddings-dir`: (name, path relative to the folder).
    pub fn embedding_files(&self) -> Vec<(String, String)> {
        list_safetensors(self.embeddings_dir.as_deref())
    }

    /// The file of a prompt's `<lora:NAME…>` tag, found only inside `--lora-dir`.
    pub fn resolve_lora(&self, name: &str) -> ApiResult<PathBuf> {
        let Some(dir) = &self.lora_dir else {
            return Err(ApiError::bad_request(format!("prompt: <lora:{name}> needs a LoRA folder, and this server has none (start it with --lora-dir)")));
        };
        check_relative_name("prompt: <lora:…>", name)?;
        let path = wgsd_resolve_tag(dir, name)?;
        inside(dir, &path).map_err(|_| ApiError::bad_request(format!("prompt: <lora:{name}> resolves outside the LoRA folder")))?;
        Ok(path)
    }
}

fn wgsd_resolve_tag(dir: &Path, name: &str) -> ApiResult<PathBuf> {
    crate::pipeline::lora::resolve_tag(Some(dir), name).map_err(|_| ApiError::bad_request(format!("prompt: no LoRA named '{name}' (GET /sdapi/v1/loras lists them)")))
}

/// Refuses a name that could point outside its folder: empty, absolute, with `..`, a drive prefix, a
/// backslash or a NUL.
pub fn check_relative_name(what: &str, name: &str) -> ApiResult<()> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("{what}: '{name}' is not allowed ({why}); give a name from the server's list")));
    if name.trim().is_empty() {
        return bad("empty");
    }
    if name.contains(['\\', '\0']) {
        return bad("backslashes and NUL are not allowed");
    }
    for c in Path::new(name).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return bad("'..' is not allowed"),
            Component::RootDir | Component::Prefix(_) => return bad("absolute paths are not allowed"),
        }
    }
    Ok(())
}

/// Whether `path` lies inside `dir` once symbolic links are followed.
fn inside(dir: &Path, path: &Path) -> std::io::Result<()> {
    let (d, p) = (dir.canonicalize()?, path.canonicalize()?);
    if p.starts_with(&d) {
        Ok(())
    } else {
        Err(std::io::Error::other("outside"))
    }
}

fn scan_models(root: &Path, dir: &Path, config: Option<&str>, depth: usize, out: &mut Vec<ModelEntry>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let Some(rel) = relative_name(root, &p) else { continue };
        if inside(root, &p).is_err() {
            continue;
        }
        if p.is_dir() {
            if p.join("model_index.json").is_file() {
                out.push(ModelEntry { name: rel, source: p.display().to_string(), config: None });
            } else if depth > 0 {
                scan_models(root, &p, config, depth - 1, out);
            }
        } else if let Some(config) = config {
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
                out.push(ModelEntry { name: rel, source: p.display().to_string(), config: Some(config.to_string()) });
            }
        }
    }
}

/// `path` relative to `root` with `/` separators (None when not valid UTF-8).
fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn list_safetensors(dir: Option<&Path>) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                if depth > 0 {
                    walk(root, &p, depth - 1, out);
                }
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) && inside(root, &p).is_ok() {
                if let (Some(stem), Some(rel)) = (p.file_stem().and_then(|s| s.to_str()), relative_name(root, &p)) {
                    out.push((stem.to_string(), rel));
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(d) = dir {
        walk(d, d, MAX_DEPTH, &mut out);
    }
    out
}
