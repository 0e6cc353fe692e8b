//! LoRA files for generation, merged into the weights at load: for each module `W += s · up·down` with
//! `s = multiplier × alpha / rank` (alpha = rank when the file has none), convolutions reshaped (`up
//! [out, r, 1, 1]`, `down [r, in, k, k]` → `ΔW [out, in, k, k]`). The files are read by
//! [`read_lora_file_lenient`] (kohya, diffusers, peft, diffusers' old attention-processor names, SD 2's
//! OpenCLIP names); every key is either merged or named in a warning.
//!
//! Also here: `--lora FILE[:WEIGHT]` parsing and A1111's `<lora:NAME:WEIGHT>` / `<lora:NAME:TE:UNET>` prompt
//! tags, resolved in `--lora-dir`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Param;
use crate::pipeline::TrainingHooks;
use crate::train::lora::TrainHooks;
use crate::train::lora_file::{read_lora_file_lenient, split_peft, Half, LoraFile, PACKED_QKV};
use crate::train::save::HostTensor;

/// One LoRA to merge: its file and its two multipliers.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraUse {
    pub path: PathBuf,
    /// Text-encoder multiplier.
    pub te: f32,
    /// UNet multiplier.
    pub unet: f32,
}

/// A `<lora:…>` tag of a prompt: the name and the text-encoder and UNet multipliers.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraTag {
    pub name: String,
    pub te: f32,
    pub unet: f32,
}

/// `--lora FILE[:WEIGHT]`: the weight (default 1) applies to both the text encoder and the UNet. A suffix
/// after the last `:` that is not a number is part of the path (Windows drive letters).
pub fn parse_lora_arg(arg: &str) -> Result<LoraUse> {
    let (path, weight) = match arg.rsplit_once(':') {
        Some((p, w)) if !p.is_empty() && w.trim().parse::<f32>().is_ok() => (p, w.trim().parse::<f32>().unwrap()),
        Some((p, w)) if !p.is_empty() && !w.contains(['/', '\\']) && !w.to_ascii_lowercase().ends_with(".safetensors") => {
            return Err(Error::usage(format!("--lora {arg}: '{w}' is not a number (expected FILE or FILE:WEIGHT, e.g. style.safetensors:0.8)")));
        }
        _ => (arg, 1.0),
    };
    if !weight.is_finite() {
        return Err(Error::usage(format!("--lora {arg}: the weight must be a finite number")));
    }
    Ok(LoraUse { path: PathBuf::from(path), te: weight, unet: weight })
}

/// A1111's extra-network tags of type `lora`: `<lora:NAME>`, `<lora:NAME:W>` (both multipliers),
/// `<lora:NAME:TE:UNET>`, and the named forms `te=` / `unet=`. Returns the prompt with the tags removed
/// (nothing else changes, as A1111 does) and the tags in order. Other `<type:…>` tags are left as text.
pub fn extract_lora_tags(prompt: &str) -> Result<(String, Vec<LoraTag>)> {
    let mut out = String::with_capacity(prompt.len());
    let mut tags = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("<lora:") {
        let Some(len) = rest[start..].find('>') else { break };
        let body = &rest[start + "<lora:".len()..start + len];
        out.push_str(&rest[..start]);
        rest = &rest[start + len + 1..];
        tags.push(parse_tag(body).map_err(|e| Error::usage(format!("prompt tag <lora:{body}>: {e}")))?);
    }
    out.push_str(rest);
    Ok((out, tags))
}

fn parse_tag(body: &str) -> std::result::Result<LoraTag, String> {
    let mut parts = body.split(':');
    let name = parts.next().unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err("no LoRA name".into());
    }
    let num = |s: &str| s.trim().parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("'{}' is not a number", s.trim()));
    let (mut positional, mut named) = (Vec::new(), HashMap::new());
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) => {
                named.insert(k.trim().to_string(), num(v)?);
            }
            None => positional.push(num(p)?),
        }
    }
    if positional.len() > 2 {
        return Err("at most two multipliers (text encoder, UNet)".into());
    }
    if let Some(k) = named.keys().find(|k| *k != "te" && *k != "unet") {
        return Err(format!("'{k}=' is not supported (te= and unet= are)"));
    }
    let te = named.get("te").copied().unwrap_or(positional.first().copied().unwrap_or(1.0));
    let unet = named.get("unet").copied().unwrap_or(positional.get(1).copied().unwrap_or(te));
    Ok(LoraTag { name, te, unet })
}

/// The file of a `<lora:NAME>` tag in `dir`: `NAME` itself when it has an extension, else
/// `NAME.safetensors`, else a `.safetensors` file with that stem in a sub-folder (as A1111 indexes them).
pub fn resolve_tag(dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    let Some(dir) = dir else {
        return Err(Error::usage(format!("the prompt has <lora:{name}:…>: pass --lora-dir <folder> holding {name}.safetensors")));
    };
    for candidate in [dir.join(name), dir.join(format!("{name}.safetensors"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    fn walk(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        entries.iter().find(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors") && p.file_stem().is_some_and(|s| s == name)).cloned().or_else(|| {
            if depth == 0 {
                return None;
            }
            entries.iter().filter(|p| p.is_dir()).find_map(|p| walk(p, name, depth - 1))
        })
    }
    walk(dir, name, 4).ok_or_else(|| Error::usage(format!("<lora:{name}>: no {name}.safetensors in --lora-dir {}", dir.display())))
}

/// The LoRAs of a run: `--lora` arguments, then the prompt's tags (resolved in `lora_dir`). Returns the
/// prompt without its tags. Every file must exist.
pub fn resolve_loras(args: &[String], lora_dir: Option<&Path>, prompt: &str) -> Result<(String, Vec<LoraUse>)> {
    let mut uses = args.iter().map(|a| parse_lora_arg(a)).collect::<Result<Vec<_>>>()?;
    let (clean, tags) = extract_lora_tags(prompt)?;
    for t in tags {
        uses.push(LoraUse { path: resolve_tag(lora_dir, &t.name)?, te: t.te, unet: t.unet });
    }
    for u in &uses {
        let lower = u.path.to_string_lossy().to_ascii_lowercase();
        if [".pt", ".ckpt", ".bin", ".pth"].iter().any(|e| lower.ends_with(e)) {
            return Err(Error::usage(format!(
                "LoRA {}: pickle files are not read (loading them can run code); convert it to .safetensors",
                u.path.display()
            )));
        }
        if !u.path.is_file() {
            return Err(Error::usage(format!("LoRA file {} does not exist", u.path.display())));
        }
    }
    Ok((clean, uses))
}

/// The weights of a loaded model by name (`unet.<key>`, `text_encoder.<key>`), from the training hooks it
/// was loaded with.
pub struct WeightIndex {
    by_name: HashMap<String, Arc<Param>>,
}

impl WeightIndex {
    /// Hooks that only record the weights (no adapters), for [`crate::generate::open_model`].
    pub fn hooks() -> TrainingHooks {
        let h = |p: &str| TrainHooks::new(p, None, HashMap::new(), 0);
        TrainingHooks { unet: h("unet."), text_encoder: h("text_encoder.") }
    }

    pub fn from_hooks(hooks: &TrainingHooks) -> Self {
        let mut by_name = HashMap::new();
        for (prefix, h) in [("unet.", &hooks.unet), ("text_encoder.", &hooks.text_encoder)] {
            for p in h.weights() {
                by_name.insert(format!("{prefix}{}", p.name), p);
            }
        }
        WeightIndex { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Param>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// `up · down` as a weight update: `[out, r]·[r, in]` → `[out, in]`, or for a conv `up [out, r, 1, 1]`,
/// `down [r, in, k, k]` → `[out, in, k, k]`. Returns the shape and values.
pub fn lora_delta(down: &HostTensor, up: &HostTensor) -> Result<(Vec<usize>, Vec<f32>)> {
    let (ds, us) = (&down.shape, &up.shape);
    let bad = || Error::shape("lora", format!("'{}' {ds:?} and '{}' {us:?} are not a LoRA pair", down.name, up.name));
    if ds.len() < 2 || us.len() < 2 || us[1] != ds[0] || us[2..].iter().any(|&d| d != 1) {
        return Err(bad());
    }
    let (out, r) = (us[0], us[1]);
    let cols: usize = ds[1..].iter().product();
    if down.values.len() != r * cols || up.values.len() != out * r {
        return Err(bad());
    }
    let mut delta = vec![0f32; out * cols];
    for o in 0..out {
        let row = &mut delta[o * cols..(o + 1) * cols];
        for j in 0..r {
            let u = up.values[o * r + j];
            if u != 0.0 {
                for (d, x) in row.iter_mut().zip(&down.values[j * cols..(j + 1) * cols]) {
                    *d += u * x;
                }
            }
        }
    }
    let mut shape = vec![out];
    shape.extend_from_slice(&ds[1..]);
    Ok((shape, delta))
}

/// What merging one file did.
#[derive(Clone, Debug, Default)]
pub struct LoraReport {
    /// UNet and text-encoder modules merged.
    pub unet_modules: usize,
    pub te_modules: usize,
    /// Keys not applied, each with the reason.
    pub warnings: Vec<String>,
}

/// One planned weight update.
struct Update {
    param: Arc<Param>,
    /// Values in the order of the param; the rows `[row0, row0 + rows)` of a packed split, zero-padded
    /// input channels of a 9-channel conv_in.
    delta: Vec<f32>,
    scale: f32,
}

/// Fits `delta` (shape `ds`) to the weight `param`: equal size and output count (a 1×1 conv read as a
/// linear, or the reverse), or a conv_in with more input channels (zero padding, as A1111 does for
/// inpainting UNets).
fn fit(module: &str, param: &Param, ds: &[usize], delta: Vec<f32>) -> Result<Vec<f32>> {
    let ws = &param.desc.shape;
    if ws.iter().product::<usize>() == delta.len() && ws.first() == ds.first() {
        return Ok(delta);
    }
    if module.ends_with("conv_in") && ws.len() == 4 && ds.len() == 4 && ws[0] == ds[0] && ws[2..] == ds[2..] && ws[1] > ds[1] {
        let (out, cin, kk) = (ws[0], ws[1], ws[2] * ws[3]);
        let mut padded = vec![0f32; out * cin * kk];
        for o in 0..out {
            let src = &delta[o * ds[1] * kk..(o + 1) * ds[1] * kk];
            padded[o * cin * kk..o * cin * kk + src.len()].copy_from_slice(src);
        }
        return Ok(padded);
    }
    Err(Error::shape(
        "lora",
        format!("LoRA module '{module}' changes a {ds:?} weight but the model's '{}' is {ws:?} (a LoRA for another model family?)", param.name),
    ))
}

/// Merges `file` into the weights of `index` at the given multipliers. Every update is checked before
/// any is written, so an error leaves the model as it was. A module the model lacks is a warning; a
/// module of the wrong shape, or a file none of whose modules the model has, is an error.
pub fn merge_lora(gpu: &Gpu, index: &WeightIndex, file: &LoraFile, source: &str, te_mult: f32, unet_mult: f32) -> Result<LoraReport> {
    let mut report = LoraReport { warnings: file.skipped.iter().map(|(k, why)| format!("{k}: {why}")).collect(), ..Default::default() };
    let mut pairs: BTreeMap<&str, (Option<&HostTensor>, Option<&HostTensor>)> = BTreeMap::new();
    for t in &file.tensors {
        let (module, half) = split_peft(&t.name).ok_or_else(|| Error::usage(format!("{source}: '{}' is not a LoRA tensor name", t.name)))?;
        let e = pairs.entry(module).or_default();
        if half == Half::Down { e.0 = Some(t) } else { e.1 = Some(t) }
    }
    let mut updates = Vec::new();
    for (module, (down, up)) in pairs {
        let (Some(down), Some(up)) = (down, up) else {
            report.warnings.push(format!("{module}: only one of lora_A / lora_B"));
            continue;
        };
        let (ds, delta) = lora_delta(down, up).map_err(|e| Error::usage(format!("{source}: module '{module}': {e}")))?;
        let rank = down.shape[0] as f32;
        let alpha = file.alphas.get(module).copied().unwrap_or(rank);
        let text = module.starts_with("text_encoder.");
        let scale = if text { te_mult } else { unet_mult } * alpha / rank;
        // A packed OpenCLIP in_proj updates q, k and v: three row blocks of its delta.
        let targets: Vec<(String, Vec<usize>, Vec<f32>)> = match module.strip_suffix(PACKED_QKV) {
            Some(parent) => {
                if ds[0] % 3 != 0 {
                    return Err(Error::usage(format!("{source}: packed in_proj '{module}' has {} output rows, not 3 × width", ds[0])));
                }
                let rows = ds[0] / 3;
                let cols = delta.len() / ds[0];
                ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("{parent}.self_attn.{p}"), vec![rows, cols], delta[i * rows * cols..(i + 1) * rows * cols].to_vec()))
                    .collect()
            }
            None => vec![(module.to_string(), ds, delta)],
        };
        let mut missing = false;
        let mut planned = Vec::new();
        for (target, shape, delta) in targets {
            let Some(param) = index.get(&format!("{target}.weight")) else {
                missing = true;
                break;
            };
            let delta = fit(&target, param, &shape, delta).map_err(|e| Error::usage(format!("{source}: {e}")))?;
            planned.push(Update { param: param.clone(), delta, scale });
        }
        if missing {
            let keys = file.sources.get(module).map(|k| k.join(", ")).unwrap_or_else(|| module.to_string());
            report.warnings.push(format!("{keys}: the model has no module '{module}'"));
            continue;
        }
        updates.extend(planned);
        if text {
            report.te_modules += 1;
        } else {
            report.unet_modules += 1;
        }
    }
    if report.unet_modules + report.te_modules == 0 {
        return Err(Error::usage(format!(
            "{source}: none of its {} modules is in this model (a LoRA for another model family?){}",
            file.tensors.len() / 2,
            report.warnings.first().map(|w| format!("; e.g. {w}")).unwrap_or_default()
        )));
    }
    for u in updates {
        if u.scale == 0.0 {
            continue;
        }
        let mut w = u.param.read(gpu)?;
        for (x, d) in w.iter_mut().zip(&u.delta) {
            *x += u.scale * d;
        }
        u.param.write(gpu, &w)?;
    }
    Ok(report)
}

/// Reads and merges every LoRA of `uses` into the model loaded with `hooks` (see [`WeightIndex::hooks`]).
pub fn merge_loras(gpu: &Gpu, hooks: &TrainingHooks, uses: &[LoraUse]) -> Result<Vec<LoraReport>> {
    let index = WeightIndex::from_hooks(hooks);
    uses.iter()
        .map(|u| merge_lora(gpu, &index, &read_lora_file_lenient(&u.path)?, &u.path.display().to_string(), u.te, u.unet))
        .collect()
}

/// [`merge_loras`], printing per file how many modules it touched and the keys it did not apply.
pub fn apply_loras(gpu: &Gpu, hooks: &TrainingHooks, uses: &[LoraUse]) -> Result<Vec<LoraReport>> {
    let reports = merge_loras(gpu, hooks, uses)?;
    for (u, r) in uses.iter().zip(&reports) {
        let source = u.path.display();
        eprintln!(
            "lora {source}: {} modules merged ({} UNet, {} text encoder) at text encoder ×{}, UNet ×{}",
            r.unet_modules + r.te_modules,
            r.unet_modules,
            r.te_modules,
            u.te,
            u.unet
        );
        if !r.warnings.is_empty() {
            eprintln!("warning: lora {source}: {} key(s) not applied:", r.warnings.len());
            for w in &r.warnings {
                eprintln!("  {w}");
            }
        }
    }
    Ok(reports)
}

/// The prompt as A1111 records it in a PNG: `prompt` (its own tags kept) followed by a `<lora:STEM:W>` tag
/// (`<lora:STEM:TE:UNET>` when the multipliers differ) for each `--lora` file.
pub fn a1111_prompt(prompt: &str, cli: &[LoraUse]) -> String {
    let mut s = prompt.to_string();
    for u in cli {
        let stem = u.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let tag = if u.te == u.unet { format!("<lora:{stem}:{}>", u.te) } else { format!("<lora:{stem}:{}:{}>", u.te, u.unet) };
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&tag);
    }
    s
}
