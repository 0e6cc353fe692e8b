//! Full fine-tuning output: a diffusers folder that diffusers' `from_pretrained` and wgsd load (the trained
//! components' weights written in f32 under the keys of the source files, everything else — configs,
//! tokenizer, scheduler, untrained components — copied), and optionally an original-LDM single file
//! (`--save-single-file`) that A1111 and ComfyUI load, written with [`NameMap`]s run backwards.
//! Every file is written atomically (see `save.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use super::save::{exists_error, write_atomic_with, write_safetensors_streamed, HostTensor, ReadValues};
use crate::error::{Error, Result};
use crate::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
use crate::models::single_file::NameMap;
use crate::models::weights::{candidates, shape_accepts, WeightFile, Weights};

/// Extensions of weight files: a trained component's old ones are not copied (a stale fp16 variant would
/// otherwise be loaded in place of the trained weights).
const WEIGHT_EXTENSIONS: &[&str] = &["safetensors", "bin", "ckpt", "pt", "pth", "msgpack", "h5", "onnx", "pb"];

/// The weight file name diffusers and transformers look for in a component folder.
fn weight_name(component: &str) -> &'static str {
    if component.starts_with("text_encoder") || component == "safety_checker" {
        "model.safetensors"
    } else {
        "diffusion_pytorch_model.safetensors"
    }
}

fn is_weight_file(name: &str) -> bool {
    name.ends_with(".index.json") || Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e))
}

fn usage(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("{}: {msg}", path.display()))
}

/// Copies `src` to `dst` atomically (the copy gets ordinary permissions, whatever the source's).
fn copy_file(src: &Path, dst: &Path, overwrite: bool) -> Result<()> {
    write_atomic_with(dst, overwrite, |tmp| {
        let mut from = fs::File::open(src).map_err(|e| usage(src, format!("cannot read: {e}")))?;
        let mut to = fs::File::create(tmp).map_err(|e| usage(tmp, format!("cannot create: {e}")))?;
        std::io::copy(&mut from, &mut to).map_err(|e| usage(dst, format!("cannot copy {}: {e}", src.display())))?;
        Ok(())
    })
}

/// Copies the tree `src` into `dst`, skipping files `skip` refuses (paths relative to the model root).
fn copy_tree(root: &Path, src: &Path, dst: &Path, overwrite: bool, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| usage(dst, format!("cannot create folder: {e}")))?;
    let mut entries: Vec<_> = fs::read_dir(src).map_err(|e| usage(src, format!("cannot list: {e}")))?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        // Follows symlinks (hub cache snapshots link to blobs).
        let Ok(meta) = fs::metadata(&path) else { continue };
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if meta.is_dir() {
            copy_tree(root, &path, &dst.join(&name), overwrite, skip)?;
        } else if !skip(&rel) {
            copy_file(&path, &dst.join(&name), overwrite)?;
        }
    }
    Ok(())
}

/// A stored key, its shape, and the index of the trained tensor replacing it (None = keep the stored one).
type Slot = (String, Vec<usize>, Option<usize>);

/// Which trained tensor replaces each stored key of a component's weight file (sorted keys; None = keep
/// the stored value), matched by the names the loader asks for, legacy aliases included. Every trained
/// tensor must match one stored key of an acceptable shape.
fn match_component(file: &WeightFile, changed: &[HostTensor]) -> Result<Vec<Slot>> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, t) in changed.iter().enumerate() {
        t.check()?;
        for c in candidates(&t.name) {
            by_key.entry(c).or_insert(i);
        }
    }
    let err = |msg: String| Error::Weights { file: file.path().display().to_string(), msg };
    let mut names = file.names();
    names.sort();
    let mut used = vec![false; changed.len()];
    let mut out = Vec::new();
    for key in names {
        let shape = file.shape(&key).unwrap_or_default();
        let found = by_key.get(&key).copied();
        if let Some(i) = found {
            let t = &changed[i];
            if !shape_accepts(&shape, &t.shape) {
                return Err(err(format!("trained tensor '{}' has shape {:?} but the stored '{key}' has {shape:?}", t.name, t.shape)));
            }
            used[i] = true;
        }
        out.push((key, shape, found));
    }
    if let Some(i) = used.iter().position(|u| !u) {
        let n = used.iter().filter(|u| !**u).count();
        return Err(err(format!("trained tensor '{}' is not in this file ({n} of {} trained tensors unmatched)", changed[i].name, used.len())));
    }
    Ok(out)
}

/// Writes one trained component: every tensor of the source file in f32 under its stored key, the trained
/// value where [`match_component`] found one.
fn write_component(file: &WeightFile, out_file: &Path, changed: &[HostTensor], overwrite: bool) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, ReadValues)> = Vec::new();
    for (key, shape, found) in match_component(file, changed)? {
        let read: ReadValues = match found {
            Some(i) => {
                let t = &changed[i];
                Box::new(move || Ok(t.values.clone()))
            }
            None => {
                let k = key.clone();
                Box::new(move || file.read_f32(&k))
            }
        };
        tensors.push((key, shape, read));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors_streamed(out_file, tensors, Some(meta), overwrite)
}

/// Writes a diffusers folder at `out_dir` from the model folder `src_model_dir` with the trained
/// components `changed` (component folder name, e.g. `unet` / `text_encoder`, and its trained tensors
/// under the names the loaders use). Trained components get `<component>/diffusion_pytorch_model.safetensors`
/// (`model.safetensors` for text encoders) in f32 and keep their config; their other weight files (fp16
/// variants, `.bin`) are left out; all other files are copied. Without `overwrite` an `out_dir` that holds
/// files is refused before anything is written.
pub fn save_diffusers_folder(src_model_dir: &Path, out_dir: &Path, changed: &[(String, Vec<HostTensor>)], overwrite: bool) -> Result<()> {
    if !src_model_dir.join("model_index.json").is_file() {
        return Err(usage(src_model_dir, "not a diffusers folder (no model_index.json): full fine-tuning output needs the model as a diffusers folder"));
    }
    if let (Ok(a), Ok(b)) = (src_model_dir.canonicalize(), out_dir.canonicalize()) {
        if a == b {
            return Err(usage(out_dir, "the output folder is the model folder; choose another --out"));
        }
    }
    if !overwrite && fs::read_dir(out_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(exists_error(out_dir));
    }
    let mut trained: BTreeMap<&str, &[HostTensor]> = BTreeMap::new();
    for (component, tensors) in changed {
        if !src_model_dir.join(component).is_dir() {
            return Err(usage(src_model_dir, format!("has no component folder '{component}'")));
        }
        trained.insert(component.as_str(), tensors);
    }
    // Sources opened and trained tensors matched before anything is written, so a bad input leaves no
    // half-made folder.
    let mut sources = Vec::new();
    for (component, tensors) in &trained {
        let name = weight_name(component);
        let src = src_model_dir.join(component).join(name);
        if !src.is_file() {
            return Err(usage(&src, "weight file not found (full fine-tuning reads and writes .safetensors)"));
        }
        let file = WeightFile::open(&src)?;
        match_component(&file, tensors)?;
        sources.push((file, out_dir.join(component).join(name), *tensors));
    }
    let skip = |rel: &Path| {
        let mut parts = rel.components();
        let first = parts.next().map(|c| c.as_os_str().to_string_lossy().to_string()).unwrap_or_default();
        let file = rel.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        rel.components().count() == 2 && trained.contains_key(first.as_str()) && is_weight_file(&file)
    };
    copy_tree(src_model_dir, src_model_dir, out_dir, overwrite, &skip)?;
    for (file, out, tensors) in sources {
        write_component(&file, &out, tensors, overwrite)?;
    }
    Ok(())
}

/// Where each LDM tensor's values come from: (component index, diffusers key, rows of a fused tensor).
type Parts = Vec<(usize, String, Option<std::ops::Range<usize>>)>;

/// Writes an original-LDM single file (`model.diffusion_model.*`, `first_stage_model.*`,
/// `cond_stage_model.*`) from the diffusers folder `folder`, with the crate's [`NameMap`]s run backwards:
/// every tensor under its LDM name, OpenCLIP's q/k/v gathered into the fused `in_proj`, the VAE's
/// attention projections as 1×1 convolutions as LDM stores them. f32; tensors the maps do not cover
/// (EMA copies, `alphas_cumprod`, OpenCLIP's unused last block and `text_projection`) are not written —
/// A1111 and ComfyUI load such files.
pub fn write_single_file(folder: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if !overwrite && out.exists() {
        return Err(exists_error(out));
    }
    let text_config = ClipTextConfig::from_file(&folder.join("text_encoder/config.json"))?;
    let text_map = if text_config.hidden_act == "gelu" { NameMap::open_clip(&text_config) } else { NameMap::clip("cond_stage_model.transformer.", true) };
    let parts = [
        ("unet", NameMap::unet(&UNetConfig::from_file(&folder.join("unet/config.json"))?)),
        ("vae", NameMap::vae(&VaeConfig::from_file(&folder.join("vae/config.json"))?)),
        ("text_encoder", text_map),
    ];
    let mut weights = Vec::new();
    let mut plan: BTreeMap<String, (Vec<usize>, Parts)> = BTreeMap::new();
    for (i, (component, map)) in parts.iter().enumerate() {
        let path = folder.join(component).join(weight_name(component));
        let file = WeightFile::open(&path)?;
        for key in file.names() {
            // Legacy VAE attention names (SD 2) under their current diffusers names, as the maps know them.
            let current = key.replace(".query.", ".to_q.").replace(".key.", ".to_k.").replace(".value.", ".to_v.").replace(".proj_attn.", ".to_out.0.");
            let Some(src) = map.ldm(&current) else { continue };
            let mut shape = file.shape(&key).unwrap_or_default();
            if *component == "vae" && src.key.contains(".attn_1.") && src.key.ends_with(".weight") && shape.len() == 2 {
                shape.extend([1, 1]);
            }
            let entry = plan.entry(src.key.clone()).or_insert_with(|| (shape.clone(), Vec::new()));
            if let Some(rows) = &src.rows {
                entry.0[0] = 3 * rows.len();
            }
            entry.1.push((i, current, src.rows));
        }
        weights.push(Weights::open(&[path])?);
    }
    let mut tensors: Vec<(String, Vec<usize>, ReadValues)> = Vec::new();
    for (ldm, (shape, sources)) in plan {
        let fused = sources.iter().any(|s| s.2.is_some());
        if fused && sources.len() != 3 {
            return Err(usage(folder, format!("LDM tensor '{ldm}' gathers q, k and v but only {} of them were found", sources.len())));
        }
        let w = &weights;
        let full = shape.clone();
        let read: ReadValues = Box::new(move || {
            let n: usize = full.iter().product();
            let mut out = vec![0f32; n];
            for (c, key, rows) in &sources {
                let mut part_shape = full.clone();
                match rows {
                    Some(r) => {
                        part_shape[0] = r.len();
                        let row_len = n / full[0];
                        let v = w[*c].get(key, &part_shape)?;
                        out[r.start * row_len..r.end * row_len].copy_from_slice(&v);
                    }
                    None => {
                        // Stored as the diffusers file has it (a 1×1 conv shape is read from a linear one).
                        let stored = w[*c].shape(key).unwrap_or_else(|| part_shape.clone());
                        out = w[*c].get(key, &stored)?;
                    }
                }
            }
            Ok(out)
        });
        tensors.push((ldm, shape, read));
    }
    write_safetensors_streamed(out, tensors, None, overwrite)
}

/// Full fine-tuning output: the diffusers folder `out_dir` and, when `single_file` names a path, an LDM
/// single file there, written from that folder.
pub fn save_full(src_model_dir: &Path, out_dir: &Path, changed: &[(String, Vec<HostTensor>)], single_file: Option<&Path>, overwrite: bool) -> Result<()> {
    if let Some(s) = single_file {
        if !overwrite && s.exists() {
            return Err(exists_error(s));
        }
    }
    save_diffusers_folder(src_model_dir, out_dir, changed, overwrite)?;
    match single_file {
        Some(s) => write_single_file(out_dir, s, overwrite),
        None => Ok(()),
    }
}
