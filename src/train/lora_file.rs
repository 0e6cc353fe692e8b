//! LoRA adapter files: wgsd trains adapters under peft's names (`unet.<module>.lora_A.weight`,
//! `text_encoder.<module>.lora_B.weight`) and writes them in the two layouts other tools read:
//!
//! - `pytorch_lora_weights.safetensors`, exactly as diffusers' DreamBooth LoRA script saves it (peft names
//!   through diffusers' `convert_state_dict_to_diffusers`: `to_q/to_k/to_v/to_out.0` get `.lora.down` /
//!   `.lora.up`, CLIP's `q_proj/k_proj/v_proj/out_proj` get `.lora_linear_layer.down` / `.up`, every other
//!   module keeps `lora_A` / `lora_B`; no metadata). The file has no alpha: diffusers' script trains with
//!   alpha = rank, and a loader reading it assumes that.
//! - `kohya_lora.safetensors`, the layout A1111 and ComfyUI read: `lora_unet_<module, dots as _>` and
//!   `lora_te_<module>` with `.lora_down.weight`, `.lora_up.weight` and a scalar `.alpha`, plus kohya's
//!   `ss_*` metadata (see [`kohya_metadata`]).
//!
//! [`read_lora_file`] maps either layout (and plain peft names) back to wgsd's names, for resuming and tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use super::save::{safetensors_bytes, write_atomic, HostTensor};
use crate::error::{Error, Result};

/// File names of the two adapter files in an output folder.
pub const DIFFUSERS_FILE: &str = "pytorch_lora_weights.safetensors";
pub const KOHYA_FILE: &str = "kohya_lora.safetensors";

/// diffusers' `PEFT_TO_DIFFUSERS`, in its order: the first pattern found in a key is replaced.
const PEFT_TO_DIFFUSERS: &[(&str, &str)] = &[
    (".q_proj.lora_B", ".q_proj.lora_linear_layer.up"),
    (".q_proj.lora_A", ".q_proj.lora_linear_layer.down"),
    (".k_proj.lora_B", ".k_proj.lora_linear_layer.up"),
    (".k_proj.lora_A", ".k_proj.lora_linear_layer.down"),
    (".v_proj.lora_B", ".v_proj.lora_linear_layer.up"),
    (".v_proj.lora_A", ".v_proj.lora_linear_layer.down"),
    (".out_proj.lora_B", ".out_proj.lora_linear_layer.up"),
    (".out_proj.lora_A", ".out_proj.lora_linear_layer.down"),
    ("to_k.lora_A", "to_k.lora.down"),
    ("to_k.lora_B", "to_k.lora.up"),
    ("to_q.lora_A", "to_q.lora.down"),
    ("to_q.lora_B", "to_q.lora.up"),
    ("to_v.lora_A", "to_v.lora.down"),
    ("to_v.lora_B", "to_v.lora.up"),
    ("to_out.0.lora_A", "to_out.0.lora.down"),
    ("to_out.0.lora_B", "to_out.0.lora.up"),
];

/// Module-path segments of the UNet and CLIP that contain `_` (and so cannot be told from kohya's
/// dot-replacing `_` without knowing them). Longest first, so `conv_norm_out` wins over `conv_out`.
const SEGMENTS: &[&str] = &[
    "conv_norm_out",
    "final_layer_norm",
    "time_emb_proj",
    "transformer_blocks",
    "position_embedding",
    "token_embedding",
    "time_embedding",
    "class_embedding",
    "add_embedding",
    "conv_shortcut",
    "down_blocks",
    "layer_norm1",
    "layer_norm2",
    "text_model",
    "up_blocks",
    "mid_block",
    "self_attn",
    "conv_out",
    "proj_out",
    "conv_in",
    "proj_in",
    "linear_1",
    "linear_2",
    "out_proj",
    "q_proj",
    "k_proj",
    "v_proj",
    "to_out",
    "to_q",
    "to_k",
    "to_v",
];

/// The two model parts adapters attach to: wgsd/peft prefix and kohya prefix.
const PARTS: [(&str, &str); 2] = [("unet.", "lora_unet_"), ("text_encoder.", "lora_te_")];

/// Which half of a LoRA pair a tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// `lora_A` / down: `[rank, in]` or `[rank, in, k, k]`.
    Down,
    /// `lora_B` / up: `[out, rank]` or `[out, rank, 1, 1]`.
    Up,
}

/// `unet.<module>.lora_A.weight` → (`unet.<module>`, Down).
pub fn split_peft(name: &str) -> Option<(&str, Half)> {
    let (module, half) = if let Some(m) = name.strip_suffix(".lora_A.weight") {
        (m, Half::Down)
    } else {
        (name.strip_suffix(".lora_B.weight")?, Half::Up)
    };
    PARTS.iter().any(|(p, _)| module.starts_with(p) && module.len() > p.len()).then_some((module, half))
}

/// The diffusers-layout key of a peft name (diffusers' `convert_state_dict_to_diffusers`).
pub fn diffusers_key(peft: &str) -> String {
    match PEFT_TO_DIFFUSERS.iter().find(|(from, _)| peft.contains(from)) {
        Some((from, to)) => peft.replace(from, to),
        None => peft.to_string(),
    }
}

/// The peft name of a diffusers-layout key (diffusers' converters back to peft).
pub fn peft_from_diffusers(key: &str) -> Option<String> {
    for (from, to) in [
        (".lora_linear_layer.down.weight", ".lora_A.weight"),
        (".lora_linear_layer.up.weight", ".lora_B.weight"),
        (".lora.down.weight", ".lora_A.weight"),
        (".lora.up.weight", ".lora_B.weight"),
        (".lora_A.weight", ".lora_A.weight"),
        (".lora_B.weight", ".lora_B.weight"),
    ] {
        if let Some(m) = key.strip_suffix(from) {
            let name = format!("{m}{to}");
            return split_peft(&name).is_some().then_some(name);
        }
    }
    None
}

/// `unet.down_blocks.0.attentions.0.proj_in` → `lora_unet_down_blocks_0_attentions_0_proj_in`.
pub fn kohya_module(peft_module: &str) -> Option<String> {
    PARTS.iter().find_map(|(p, k)| peft_module.strip_prefix(p).map(|rest| format!("{k}{}", rest.replace('.', "_"))))
}

/// The inverse of [`kohya_module`]: `_` becomes `.` except inside the module names that contain `_`.
pub fn peft_module_from_kohya(kohya: &str) -> Option<String> {
    let (prefix, rest) = PARTS.iter().find_map(|(p, k)| kohya.strip_prefix(k).map(|r| (*p, r)))?;
    let tokens: Vec<&str> = rest.split('_').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return None;
    }
    let mut segments: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let joined = SEGMENTS.iter().find_map(|s| {
            let n = s.split('_').count();
            (i + n <= tokens.len() && tokens[i..i + n].join("_") == *s).then_some((s.to_string(), n))
        });
        let (seg, n) = joined.unwrap_or_else(|| (tokens[i].to_string(), 1));
        segments.push(seg);
        i += n;
    }
    Some(format!("{prefix}{}", segments.join(".")))
}

/// One adapter pair, checked: its rank and whether it is a convolution.
struct Pair<'a> {
    module: &'a str,
    down: &'a HostTensor,
    up: &'a HostTensor,
}

/// Groups `tensors` into pairs by module and checks names, shapes and `rank`, naming the offending tensor.
fn pairs(tensors: &[HostTensor], rank: usize) -> Result<Vec<Pair<'_>>> {
    let mut by_module: BTreeMap<&str, (Option<&HostTensor>, Option<&HostTensor>)> = BTreeMap::new();
    for t in tensors {
        t.check()?;
        let (module, half) = split_peft(&t.name).ok_or_else(|| {
            Error::usage(format!(
                "'{}' is not a LoRA tensor name (expected unet.<module>.lora_A.weight / .lora_B.weight, or text_encoder.…)",
                t.name
            ))
        })?;
        let e = by_module.entry(module).or_default();
        let slot = if half == Half::Down { &mut e.0 } else { &mut e.1 };
        if slot.replace(t).is_some() {
            return Err(Error::usage(format!("LoRA tensor '{}' given twice", t.name)));
        }
    }
    by_module
        .into_iter()
        .map(|(module, (down, up))| {
            let missing = |h: &str| Error::usage(format!("LoRA module '{module}' has no {h}.weight"));
            let down = down.ok_or_else(|| missing("lora_A"))?;
            let up = up.ok_or_else(|| missing("lora_B"))?;
            let (ds, us) = (&down.shape, &up.shape);
            let down_ok = (ds.len() == 2 || ds.len() == 4) && ds[0] == rank;
            let up_ok = (us.len() == 2 || (us.len() == 4 && us[2] == 1 && us[3] == 1)) && us[1] == rank && (us.len() == 4) == (ds.len() == 4);
            if !down_ok || !up_ok {
                return Err(Error::usage(format!(
                    "LoRA module '{module}': lora_A {ds:?} and lora_B {us:?} are not a rank-{rank} pair ([rank, in] or [rank, in, k, k], and [out, rank] or [out, rank, 1, 1])"
                )));
            }
            Ok(Pair { module, down, up })
        })
        .collect()
}

/// `pytorch_lora_weights.safetensors` as bytes: diffusers' keys, f32, no metadata.
pub fn diffusers_lora_bytes(tensors: &[HostTensor], rank: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in pairs(tensors, rank)? {
        for t in [p.down, p.up] {
            out.push(HostTensor { name: diffusers_key(&t.name), shape: t.shape.clone(), values: t.values.clone() });
        }
    }
    safetensors_bytes(&out, None)
}

/// What kohya's `ss_*` metadata says about the base model and the run, beyond rank and alpha.
#[derive(Clone, Debug, Default)]
pub struct KohyaInfo {
    /// SD 2.x base (OpenCLIP text encoder): `ss_v2`, `ss_base_model_version` `sd_v2…`.
    pub v2: bool,
    /// v-prediction base (SD 2.x 768): `ss_base_model_version` ends in `_v`.
    pub v_prediction: bool,
    /// Further `ss_*` keys, written as given (e.g. `ss_sd_model_name`, `ss_resolution` "(512, 512)",
    /// `ss_steps`, `ss_learning_rate`, `ss_seed`, `ss_num_train_images`, `ss_output_name`).
    pub extra: Vec<(String, String)>,
}

/// Python's `str(float)` for whole numbers ("4.0"), as kohya writes alpha.
fn py_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// The `ss_*` metadata of the kohya file, as kohya's sd-scripts write it and A1111, ComfyUI and the kohya
/// tools read it: `ss_network_module` "networks.lora", `ss_network_dim` (rank), `ss_network_alpha`,
/// `ss_network_args` (`conv_dim` / `conv_alpha` when 3×3 convolutions have adapters, as kohya's LoCon
/// option records them), `ss_v2`, `ss_base_model_version` ("sd_v1", "sd_v2", "sd_v2_v"),
/// `ss_training_comment`, then `info.extra`.
pub fn kohya_metadata(rank: usize, alpha: f64, has_conv: bool, info: &KohyaInfo) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("ss_network_module".into(), "networks.lora".into());
    m.insert("ss_network_dim".into(), rank.to_string());
    m.insert("ss_network_alpha".into(), py_float(alpha));
    if has_conv {
        m.insert("ss_network_args".into(), format!("{{\"conv_dim\": \"{rank}\", \"conv_alpha\": \"{}\"}}", py_float(alpha)));
    }
    m.insert("ss_v2".into(), if info.v2 { "True" } else { "False" }.into());
    let version = format!("sd_{}{}", if info.v2 { "v2" } else { "v1" }, if info.v_prediction { "_v" } else { "" });
    m.insert("ss_base_model_version".into(), version);
    m.insert("ss_training_comment".into(), format!("wgsd {} train dreambooth", env!("CARGO_PKG_VERSION")));
    for (k, v) in &info.extra {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// `kohya_lora.safetensors` as bytes: kohya keys, f32, one scalar `alpha` per module, `ss_*` metadata.
pub fn kohya_lora_bytes(tensors: &[HostTensor], rank: usize, alpha: f64, info: &KohyaInfo) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut has_conv = false;
    for p in pairs(tensors, rank)? {
        let k = kohya_module(p.module).expect("pairs() checked the prefix");
        has_conv |= p.down.shape.len() == 4 && p.down.shape[2..] != [1, 1];
        out.push(HostTensor { name: format!("{k}.lora_down.weight"), shape: p.down.shape.clone(), values: p.down.values.clone() });
        out.push(HostTensor { name: format!("{k}.lora_up.weight"), shape: p.up.shape.clone(), values: p.up.values.clone() });
        out.push(HostTensor { name: format!("{k}.alpha"), shape: vec![], values: vec![alpha as f32] });
    }
    safetensors_bytes(&out, Some(kohya_metadata(rank, alpha, has_conv, info)))
}

/// Paths of the two files [`save_lora`] wrote.
#[derive(Clone, Debug)]
pub struct LoraPaths {
    pub diffusers: PathBuf,
    pub kohya: PathBuf,
}

/// Writes both adapter files into `out_dir` (which must exist), each atomically; without `overwrite` an
/// existing file is an error and nothing is written.
pub fn save_lora(out_dir: &Path, tensors: &[HostTensor], rank: usize, alpha: f64, info: &KohyaInfo, overwrite: bool) -> Result<LoraPaths> {
    let paths = LoraPaths { diffusers: out_dir.join(DIFFUSERS_FILE), kohya: out_dir.join(KOHYA_FILE) };
    if !overwrite {
        for p in [&paths.diffusers, &paths.kohya] {
            if p.exists() {
                return Err(super::save::exists_error(p));
            }
        }
    }
    // Both serialised first, so a bad tensor writes neither file.
    let diffusers = diffusers_lora_bytes(tensors, rank)?;
    let kohya = kohya_lora_bytes(tensors, rank, alpha, info)?;
    write_atomic(&paths.diffusers, &diffusers, overwrite)?;
    write_atomic(&paths.kohya, &kohya, overwrite)?;
    Ok(paths)
}

/// The layout a LoRA file was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraLayout {
    /// diffusers' `pytorch_lora_weights.safetensors` keys.
    Diffusers,
    /// kohya / A1111 keys (`lora_unet_…`, `lora_te_…`).
    Kohya,
    /// peft's own names (`….lora_A.weight`) with `unet.` / `text_encoder.` prefixes.
    Peft,
}

/// A LoRA file read back under wgsd's (peft) names.
#[derive(Clone, Debug)]
pub struct LoraFile {
    pub layout: LoraLayout,
    /// Sorted by name.
    pub tensors: Vec<HostTensor>,
    /// Per-module alpha (`unet.<module>` → alpha), from kohya's `.alpha` tensors; empty for diffusers'
    /// layout, where alpha is the rank.
    pub alphas: BTreeMap<String, f32>,
    pub metadata: HashMap<String, String>,
    /// Keys [`read_lora_file_lenient`] could not use, each with the reason (always empty from
    /// [`read_lora_file`], which fails on them instead).
    pub skipped: Vec<(String, String)>,
    /// The file's own keys behind each module (`unet.<module>` → its down, up and alpha keys), for messages.
    pub sources: BTreeMap<String, Vec<String>>,
}

impl LoraFile {
    /// The rank, when every pair has the same one.
    pub fn rank(&self) -> Option<usize> {
        let mut ranks = self.tensors.iter().filter(|t| t.name.ends_with(".lora_A.weight")).map(|t| t.shape[0]);
        let r = ranks.next()?;
        ranks.all(|x| x == r).then_some(r)
    }

    /// The alpha, when every module has the same one (the rank for diffusers' layout).
    pub fn alpha(&self) -> Option<f64> {
        if self.alphas.is_empty() {
            return self.rank().map(|r| r as f64);
        }
        let mut it = self.alphas.values();
        let a = *it.next()?;
        it.all(|x| *x == a).then_some(a as f64)
    }
}

fn read_tensor(path: &Path, st: &SafeTensors, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
    let v = st.tensor(key).map_err(|e| err(format!("tensor '{key}': {e}")))?;
    let data = v.data();
    let values: Vec<f32> = match v.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(err(format!("tensor '{key}' has dtype {other:?}; LoRA files hold F32, F16 or BF16"))),
    };
    Ok((v.shape().to_vec(), values))
}

/// What one key of a LoRA file is, under wgsd's names.
enum Mapped {
    /// A down or up tensor: its peft name (`unet.<module>.lora_A.weight`).
    Tensor(String),
    /// The scalar alpha of a module (`unet.<module>`).
    Alpha(String),
}

/// Top-level UNet module names: a diffusers/peft key starting with one of them belongs to the UNet even
/// without the `unet.` prefix (files saved by older diffusers UNet-only loaders).
const UNET_ROOTS: &[&str] = &["down_blocks.", "up_blocks.", "mid_block.", "conv_in.", "conv_out.", "time_embedding.", "conv_norm_out."];

/// `text_encoder.` / `unet.` prefix of a diffusers/peft key, `unet.` added for bare UNet paths.
fn with_part_prefix(key: &str) -> Option<String> {
    // A raw peft `save_pretrained` of a bare model (LCM-LoRA's training script writes these) puts
    // `base_model.model.` before the module path.
    if let Some(rest) = key.strip_prefix("base_model.model.") {
        return if rest.starts_with("text_model.") { Some(format!("text_encoder.{rest}")) } else { with_part_prefix(rest) };
    }
    if PARTS.iter().any(|(p, _)| key.starts_with(p)) {
        Some(key.to_string())
    } else if UNET_ROOTS.iter().any(|r| key.starts_with(r)) {
        Some(format!("unet.{key}"))
    } else {
        None
    }
}

/// diffusers' old attention-processor names (`….attn1.processor.to_q_lora.down.weight`, the text encoder's
/// `….self_attn.to_q_lora.down.weight`) → peft names.
fn peft_from_attn_processor(key: &str) -> Option<String> {
    let key = with_part_prefix(key)?;
    let (rest, half) = if let Some(r) = key.strip_suffix("_lora.down.weight") {
        (r, "lora_A")
    } else {
        (key.strip_suffix("_lora.up.weight")?, "lora_B")
    };
    let (parent, proj) = rest.rsplit_once('.')?;
    let parent = parent.strip_suffix(".processor").unwrap_or(parent);
    let text = parent.starts_with("text_encoder.");
    let module = match (proj, text) {
        ("to_q" | "to_k" | "to_v", false) => proj.to_string(),
        ("to_out", false) => "to_out.0".to_string(),
        ("to_q" | "to_k" | "to_v", true) => format!("{}_proj", &proj[3..]),
        ("to_out", true) => "out_proj".to_string(),
        _ => return None,
    };
    Some(format!("{parent}.{module}.{half}.weight"))
}

/// Module name of a packed OpenCLIP `in_proj` (q, k and v stacked along the output axis); the merger splits
/// its update into the three projections.
pub const PACKED_QKV: &str = ".self_attn.in_proj";

/// SD 2's OpenCLIP kohya names (`lora_te_model_transformer_resblocks_3_mlp_c_fc`, also with `wrapped_`)
/// → the HF CLIP module (`text_encoder.text_model.encoder.layers.3.mlp.fc1`).
fn peft_module_from_openclip(kohya: &str) -> Option<String> {
    let rest = kohya.strip_prefix("lora_te_")?;
    let rest = rest.strip_prefix("wrapped_").unwrap_or(rest);
    let rest = rest.strip_prefix("model_").unwrap_or(rest).strip_prefix("transformer_resblocks_")?;
    let (layer, tail) = rest.split_once('_')?;
    layer.parse::<usize>().ok()?;
    let module = match tail {
        "mlp_c_fc" => "mlp.fc1",
        "mlp_c_proj" => "mlp.fc2",
        "attn_out_proj" => "self_attn.out_proj",
        "attn_q_proj" => "self_attn.q_proj",
        "attn_k_proj" => "self_attn.k_proj",
        "attn_v_proj" => "self_attn.v_proj",
        "attn_in_proj" => "self_attn.in_proj",
        _ => return None,
    };
    Some(format!("text_encoder.text_model.encoder.layers.{layer}.{module}"))
}

/// Maps one key to wgsd's names, or says why it cannot.
fn map_key(key: &str, layout: LoraLayout) -> std::result::Result<Mapped, String> {
    match layout {
        LoraLayout::Kohya => {
            let Some((module, suffix)) = key.split_once('.') else { return Err("not a kohya LoRA key (no '.')".into()) };
            let module = peft_module_from_openclip(module)
                .or_else(|| peft_module_from_kohya(module))
                .ok_or_else(|| "not a kohya module name (lora_unet_… / lora_te_…)".to_string())?;
            match suffix {
                "alpha" => Ok(Mapped::Alpha(module)),
                "lora_down.weight" => Ok(Mapped::Tensor(format!("{module}.lora_A.weight"))),
                "lora_up.weight" => Ok(Mapped::Tensor(format!("{module}.lora_B.weight"))),
                "lora_mid.weight" => Err("LoCon Tucker 'lora_mid' is not supported".into()),
                s if s.starts_with("hada_") => Err("LyCORIS LoHa is not supported".into()),
                s if s.starts_with("lokr_") => Err("LyCORIS LoKr is not supported".into()),
                "dora_scale" => Err("DoRA is not supported".into()),
                _ => Err(format!("unknown kohya tensor '.{suffix}'")),
            }
        }
        LoraLayout::Diffusers | LoraLayout::Peft => {
            if let Some(m) = key.strip_suffix(".alpha") {
                return with_part_prefix(m).map(Mapped::Alpha).ok_or_else(|| "alpha of an unknown module".into());
            }
            peft_from_diffusers(key)
                .or_else(|| with_part_prefix(key).and_then(|k| peft_from_diffusers(&k)))
                .or_else(|| peft_from_attn_processor(key))
                .map(Mapped::Tensor)
                .ok_or_else(|| "not a diffusers/peft LoRA key (….lora_A/B.weight, .lora.down/up, .lora_linear_layer, _lora.down/up)".into())
        }
    }
}

/// Reads a LoRA file in diffusers', kohya's or peft's layout and returns its tensors under wgsd's peft
/// names. A key that fits none of them (LyCORIS LoHa/LoKr, SDXL's `lora_te1_`, DoRA scales) is an error
/// naming it.
pub fn read_lora_file(path: &Path) -> Result<LoraFile> {
    read(path, true)
}

/// [`read_lora_file`] for generation: keys it cannot use (and every key of a module one of whose keys it
/// cannot use, or that lacks a half) are listed in [`LoraFile::skipped`] instead of failing the read.
/// A file that cannot be read, holds no tensors, or has a tensor of an unsupported dtype is still an error.
pub fn read_lora_file_lenient(path: &Path) -> Result<LoraFile> {
    read(path, false)
}

fn read(path: &Path, strict: bool) -> Result<LoraFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::Weights { file: path.display().to_string(), msg: format!("cannot read: {e}") })?;
    parse_lora(path, &bytes, strict)
}

/// [`read_lora_file_lenient`] on bytes in memory; `path` names them in errors.
pub fn parse_lora_bytes_lenient(path: &Path, bytes: &[u8]) -> Result<LoraFile> {
    parse_lora(path, bytes, false)
}

fn parse_lora(path: &Path, bytes: &[u8], strict: bool) -> Result<LoraFile> {
    let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a valid safetensors file (truncated or corrupt?): {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if names.is_empty() {
        return Err(err("no tensors: not a LoRA file".into()));
    }
    let layout = if names.iter().any(|k| PARTS.iter().any(|(_, kp)| k.starts_with(kp))) {
        LoraLayout::Kohya
    } else if names.iter().any(|k| k.contains(".lora.down.") || k.contains(".lora.up.") || k.contains(".lora_linear_layer.") || k.contains("_lora.down.")) {
        LoraLayout::Diffusers
    } else {
        LoraLayout::Peft
    };
    // key → (module, mapped) or the reason it is unusable.
    let mut tensors = Vec::new();
    let mut alphas = BTreeMap::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut origin: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bad_modules: BTreeMap<String, String> = BTreeMap::new();
    for key in &names {
        match map_key(key, layout) {
            Err(reason) => {
                if strict {
                    return Err(err(format!("tensor '{key}' is not a LoRA tensor wgsd reads ({layout:?} layout): {reason}")));
                }
                // Poison the whole module when the key names one (a LoCon mid, a DoRA scale).
                if layout == LoraLayout::Kohya {
                    if let Some(m) = key.split_once('.').and_then(|(m, _)| peft_module_from_openclip(m).or_else(|| peft_module_from_kohya(m))) {
                        bad_modules.entry(m).or_insert_with(|| reason.clone());
                    }
                }
                skipped.push((key.clone(), reason));
            }
            Ok(Mapped::Alpha(module)) => {
                let (_, v) = read_tensor(path, &st, key)?;
                let a = *v.first().ok_or_else(|| err(format!("tensor '{key}' (alpha) is empty")))?;
                origin.entry(module.clone()).or_default().push(key.clone());
                alphas.insert(module, a);
            }
            Ok(Mapped::Tensor(peft)) => {
                let (shape, values) = read_tensor(path, &st, key)?;
                let module = split_peft(&peft).map(|(m, _)| m.to_string()).unwrap_or_else(|| peft.clone());
                origin.entry(module).or_default().push(key.clone());
                tensors.push(HostTensor { name: peft, shape, values });
            }
        }
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    // Every module must have both halves of a consistent rank.
    let rank_of = |t: &HostTensor| if t.name.ends_with(".lora_A.weight") { t.shape.first().copied() } else { t.shape.get(1).copied() };
    let mut by_module: BTreeMap<String, Vec<&HostTensor>> = BTreeMap::new();
    for t in &tensors {
        by_module.entry(split_peft(&t.name).map(|(m, _)| m).unwrap_or(&t.name).to_string()).or_default().push(t);
    }
    for module in alphas.keys() {
        by_module.entry(module.clone()).or_default();
    }
    for (module, ts) in &by_module {
        if ts.len() != 2 || rank_of(ts[0]).is_none() || rank_of(ts[0]) != rank_of(ts[1]) {
            let msg = format!("LoRA module '{module}' does not have one down and one up tensor of the same rank");
            if strict {
                return Err(err(msg));
            }
            bad_modules.entry(module.clone()).or_insert(msg);
        }
    }
    for (module, reason) in &bad_modules {
        for key in origin.get(module).into_iter().flatten() {
            skipped.push((key.clone(), format!("module skipped: {reason}")));
        }
        alphas.remove(module);
    }
    tensors.retain(|t| !bad_modules.contains_key(split_peft(&t.name).map(|(m, _)| m).unwrap_or(&t.name)));
    skipped.sort();
    origin.retain(|m, _| !bad_modules.contains_key(m));
    Ok(LoraFile { layout, tensors, alphas, metadata: meta.metadata().clone().unwrap_or_default(), skipped, sources: origin })
}
