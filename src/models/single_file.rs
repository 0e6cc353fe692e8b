//! Original-LDM single-file checkpoints (the `.safetensors` A1111 / Civitai distribute for SD 1.x and 2.x):
//! one file holding the UNet (`model.diffusion_model.*`), the VAE (`first_stage_model.*`) and the text
//! encoder (`cond_stage_model.transformer.*`, SD 1's HF CLIP, or `cond_stage_model.model.*`, SD 2's
//! OpenCLIP), under the names of the CompVis code.
//!
//! Model code keeps asking for diffusers keys: a [`NameMap`] per component, derived from that component's
//! diffusers config (number of blocks, layers per block, which up blocks have attention, text layers),
//! says where each diffusers tensor lives in the file — an LDM key, and for OpenCLIP's fused `in_proj`
//! the rows of q, k or v. It mirrors diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
//! `convert_ldm_clip_checkpoint` and `convert_open_clip_checkpoint`, in the other direction. Tensors of the
//! file no diffusers key maps to (EMA copies, `alphas_cumprod`, OpenCLIP's last resblock, which SD 2 skips
//! as it conditions on the penultimate layer, `text_projection`, `logit_scale`) are never read.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
use crate::models::weights::{shape_accepts, shape_str, WeightFile};

/// Where one diffusers tensor lives in a single file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub key: String,
    /// Rows of the stored tensor's first dimension (q, k or v of a fused `in_proj`); None = all of it.
    pub rows: Option<Range<usize>>,
}

/// A renamed leaf inside a module: diffusers suffix → LDM suffix; `slot` = q/k/v slice (0, 1, 2) of a
/// fused tensor.
struct Leaf {
    from: &'static str,
    to: &'static str,
    slot: Option<usize>,
}

const fn leaf(from: &'static str, to: &'static str) -> Leaf {
    Leaf { from, to, slot: None }
}

const fn fused(from: &'static str, to: &'static str, slot: usize) -> Leaf {
    Leaf { from, to, slot: Some(slot) }
}

const UNET_RESNET: &[Leaf] = &[
    leaf("norm1", "in_layers.0"),
    leaf("conv1", "in_layers.2"),
    leaf("time_emb_proj", "emb_layers.1"),
    leaf("norm2", "out_layers.0"),
    leaf("conv2", "out_layers.3"),
    leaf("conv_shortcut", "skip_connection"),
];
const VAE_RESNET: &[Leaf] = &[leaf("conv_shortcut", "nin_shortcut")];
const VAE_ATTENTION: &[Leaf] =
    &[leaf("group_norm", "norm"), leaf("to_q", "q"), leaf("to_k", "k"), leaf("to_v", "v"), leaf("to_out.0", "proj_out")];
const OPEN_CLIP_LAYER: &[Leaf] = &[
    leaf("layer_norm1", "ln_1"),
    leaf("layer_norm2", "ln_2"),
    leaf("mlp.fc1", "mlp.c_fc"),
    leaf("mlp.fc2", "mlp.c_proj"),
    leaf("self_attn.out_proj", "attn.out_proj"),
    fused("self_attn.q_proj.weight", "attn.in_proj_weight", 0),
    fused("self_attn.k_proj.weight", "attn.in_proj_weight", 1),
    fused("self_attn.v_proj.weight", "attn.in_proj_weight", 2),
    fused("self_attn.q_proj.bias", "attn.in_proj_bias", 0),
    fused("self_attn.k_proj.bias", "attn.in_proj_bias", 1),
    fused("self_attn.v_proj.bias", "attn.in_proj_bias", 2),
];

struct Module {
    ldm: String,
    leaves: &'static [Leaf],
}

/// diffusers key → LDM key for one component: diffusers module paths mapped to LDM module paths (the
/// longest matching one wins), leaves inside renamed per module kind.
pub struct NameMap {
    component: &'static str,
    modules: HashMap<String, Module>,
    /// Rows per q/k/v slot of a fused `in_proj` (the text hidden size).
    fused_rows: usize,
}

impl NameMap {
    fn new(component: &'static str) -> Self {
        NameMap { component, modules: HashMap::new(), fused_rows: 0 }
    }

    fn add(&mut self, diffusers: impl Into<String>, ldm: impl Into<String>, leaves: &'static [Leaf]) {
        self.modules.insert(diffusers.into(), Module { ldm: ldm.into(), leaves });
    }

    /// `unet`, `vae` or `text_encoder`.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The UNet under `model.diffusion_model.`: `input_blocks` (conv_in, then per down block
    /// `layers_per_block` resnet [+ transformer] entries and a downsampler), `middle_block` (resnet,
    /// transformer, resnet), `output_blocks` (per up block `layers_per_block + 1` entries, the upsampler in
    /// the last one after its transformer when the block has attention).
    pub fn unet(c: &UNetConfig) -> NameMap {
        let p = "model.diffusion_model.";
        let mut m = NameMap::new("unet");
        m.add("time_embedding.linear_1", format!("{p}time_embed.0"), &[]);
        m.add("time_embedding.linear_2", format!("{p}time_embed.2"), &[]);
        m.add("conv_in", format!("{p}input_blocks.0.0"), &[]);
        m.add("conv_norm_out", format!("{p}out.0"), &[]);
        m.add("conv_out", format!("{p}out.2"), &[]);
        let (n, per) = (c.block_out_channels.len(), c.layers_per_block + 1);
        for i in 0..n {
            for j in 0..c.layers_per_block {
                let k = 1 + i * per + j;
                m.add(format!("down_blocks.{i}.resnets.{j}"), format!("{p}input_blocks.{k}.0"), UNET_RESNET);
                m.add(format!("down_blocks.{i}.attentions.{j}"), format!("{p}input_blocks.{k}.1"), &[]);
            }
            if i + 1 < n {
                m.add(format!("down_blocks.{i}.downsamplers.0.conv"), format!("{p}input_blocks.{}.0.op", 1 + i * per + c.layers_per_block), &[]);
            }
        }
        m.add("mid_block.resnets.0", format!("{p}middle_block.0"), UNET_RESNET);
        m.add("mid_block.attentions.0", format!("{p}middle_block.1"), &[]);
        m.add("mid_block.resnets.1", format!("{p}middle_block.2"), UNET_RESNET);
        for i in 0..n {
            for j in 0..per {
                let k = i * per + j;
                m.add(format!("up_blocks.{i}.resnets.{j}"), format!("{p}output_blocks.{k}.0"), UNET_RESNET);
                m.add(format!("up_blocks.{i}.attentions.{j}"), format!("{p}output_blocks.{k}.1"), &[]);
            }
            if i + 1 < n {
                let attention = c.up_block_types.get(i).is_some_and(|t| t.starts_with("CrossAttn"));
                let slot = if attention { 2 } else { 1 };
                m.add(format!("up_blocks.{i}.upsamplers.0.conv"), format!("{p}output_blocks.{}.{slot}.conv", i * per + c.layers_per_block), &[]);
            }
        }
        m
    }

    /// The VAE under `first_stage_model.`: `encoder.down.{i}.block.{j}`, `mid.block_1/attn_1/block_2`,
    /// `norm_out`, and the decoder's `up.{i}` numbered from the lowest resolution up (diffusers' up block
    /// `i` is LDM's `up.{n-1-i}`).
    pub fn vae(c: &VaeConfig) -> NameMap {
        let p = "first_stage_model.";
        let mut m = NameMap::new("vae");
        for name in ["encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out", "quant_conv", "post_quant_conv"] {
            m.add(name, format!("{p}{name}"), &[]);
        }
        for part in ["encoder", "decoder"] {
            m.add(format!("{part}.conv_norm_out"), format!("{p}{part}.norm_out"), &[]);
            m.add(format!("{part}.mid_block.resnets.0"), format!("{p}{part}.mid.block_1"), VAE_RESNET);
            m.add(format!("{part}.mid_block.resnets.1"), format!("{p}{part}.mid.block_2"), VAE_RESNET);
            m.add(format!("{part}.mid_block.attentions.0"), format!("{p}{part}.mid.attn_1"), VAE_ATTENTION);
        }
        let n = c.block_out_channels.len();
        for i in 0..n {
            for j in 0..c.layers_per_block {
                m.add(format!("encoder.down_blocks.{i}.resnets.{j}"), format!("{p}encoder.down.{i}.block.{j}"), VAE_RESNET);
            }
            m.add(format!("encoder.down_blocks.{i}.downsamplers.0.conv"), format!("{p}encoder.down.{i}.downsample.conv"), &[]);
            let r = n - 1 - i;
            for j in 0..=c.layers_per_block {
                m.add(format!("decoder.up_blocks.{i}.resnets.{j}"), format!("{p}decoder.up.{r}.block.{j}"), VAE_RESNET);
            }
            m.add(format!("decoder.up_blocks.{i}.upsamplers.0.conv"), format!("{p}decoder.up.{r}.upsample.conv"), &[]);
        }
        m
    }

    /// SD 1's text encoder: transformers' CLIP names under `prefix` (`cond_stage_model.transformer.`, with
    /// or without the `text_model.` level some old exports lack).
    pub fn clip(prefix: &str, with_text_model: bool) -> NameMap {
        let mut m = NameMap::new("text_encoder");
        let ldm = if with_text_model { format!("{prefix}text_model") } else { prefix.trim_end_matches('.').to_string() };
        m.add("text_model", ldm, &[]);
        m
    }

    /// SD 2's OpenCLIP text encoder under `cond_stage_model.model.`: the config's `num_hidden_layers`
    /// (23 for SD 2) of OpenCLIP's resblocks (24), q/k/v sliced from the fused `in_proj` by rows of
    /// `hidden_size`. The last resblock and `text_projection` are not used, as in diffusers.
    pub fn open_clip(c: &ClipTextConfig) -> NameMap {
        let p = "cond_stage_model.model.";
        let mut m = NameMap::new("text_encoder");
        m.fused_rows = c.hidden_size;
        m.add("text_model.embeddings.token_embedding", format!("{p}token_embedding"), &[]);
        m.add("text_model.embeddings.position_embedding.weight", format!("{p}positional_embedding"), &[]);
        m.add("text_model.final_layer_norm", format!("{p}ln_final"), &[]);
        for i in 0..c.num_hidden_layers {
            m.add(format!("text_model.encoder.layers.{i}"), format!("{p}transformer.resblocks.{i}"), OPEN_CLIP_LAYER);
        }
        m
    }

    /// The text encoder map for what `file` holds: SD 1's CLIP or SD 2's OpenCLIP. A config of the other
    /// family (told by its activation: quick_gelu is OpenAI CLIP's, gelu OpenCLIP's) is an error, as the
    /// checkpoint then needs another `--config`.
    pub fn text_encoder(c: &ClipTextConfig, file: &WeightFile) -> Result<NameMap> {
        let names = file.names();
        let has = |p: &str| names.iter().any(|k| k.starts_with(p));
        let mismatch = |file_kind: &str, want_act: &str, example: &str| Error::Weights {
            file: file.path().display().to_string(),
            msg: format!(
                "this checkpoint's text encoder is {file_kind}, but the config's text_encoder has hidden_act '{}' (expected \
                 '{want_act}'): pass a matching --config, e.g. {example}",
                c.hidden_act
            ),
        };
        if has("cond_stage_model.transformer.") {
            if c.hidden_act != "quick_gelu" {
                return Err(mismatch("SD 1's CLIP (cond_stage_model.transformer.*)", "quick_gelu", "stable-diffusion-v1-5/stable-diffusion-v1-5"));
            }
            Ok(NameMap::clip("cond_stage_model.transformer.", has("cond_stage_model.transformer.text_model.")))
        } else if has("cond_stage_model.model.") {
            if c.hidden_act != "gelu" {
                return Err(mismatch("SD 2's OpenCLIP (cond_stage_model.model.*)", "gelu", "stabilityai/stable-diffusion-2-1"));
            }
            Ok(NameMap::open_clip(c))
        } else {
            Err(Error::Weights { file: file.path().display().to_string(), msg: no_component_msg("text encoder", &names) })
        }
    }

    /// Where the diffusers tensor `key` lives in the file, or None when no LDM name is known for it.
    pub fn ldm(&self, key: &str) -> Option<Source> {
        // Longest diffusers module path first: try the key, then each shorter dotted prefix.
        let mut end = key.len();
        loop {
            let prefix = &key[..end];
            if let Some(m) = self.modules.get(prefix) {
                let rest = if end < key.len() { &key[end + 1..] } else { "" };
                return Some(self.resolve(m, rest));
            }
            end = key[..end].rfind('.')?;
        }
    }

    fn resolve(&self, m: &Module, rest: &str) -> Source {
        if rest.is_empty() {
            return Source { key: m.ldm.clone(), rows: None };
        }
        for l in m.leaves {
            let matches = rest == l.from || (l.slot.is_none() && rest.starts_with(l.from) && rest[l.from.len()..].starts_with('.'));
            if matches {
                let rows = l.slot.map(|s| s * self.fused_rows..(s + 1) * self.fused_rows);
                return Source { key: format!("{}.{}{}", m.ldm, l.to, &rest[l.from.len()..]), rows };
            }
        }
        Source { key: format!("{}.{rest}", m.ldm), rows: None }
    }
}

/// Why a component's tensors are not in a file, with a hint at what the file is.
fn no_component_msg(component: &str, names: &[String]) -> String {
    let has = |p: &str| names.iter().any(|k| k.starts_with(p));
    let hint = if has("conditioner.embedders.") {
        "; this looks like an SDXL checkpoint (conditioner.embedders.*), which wgsd does not support".to_string()
    } else if names.iter().any(|k| k.starts_with("down_blocks.") || k.starts_with("text_model.") || k.starts_with("encoder.down_blocks.")) {
        "; this looks like one diffusers component file: pass the diffusers folder to --model instead".to_string()
    } else {
        String::new()
    };
    format!(
        "no {component} in this single-file checkpoint (expected model.diffusion_model.* for the UNet, first_stage_model.* for the \
         VAE, cond_stage_model.transformer.* (SD 1) or cond_stage_model.model.* (SD 2) for the text encoder){hint}"
    )
}

/// Checks that `file` holds tensors under `prefix` (`model.diffusion_model.`, `first_stage_model.`) for the
/// component `map` is for, so a wrong file fails with what it is rather than with its first missing tensor.
pub fn check_component(map: &NameMap, prefix: &str, file: &WeightFile) -> Result<()> {
    let names = file.names();
    if names.iter().any(|k| k.starts_with(prefix)) {
        Ok(())
    } else {
        Err(Error::Weights { file: file.path().display().to_string(), msg: no_component_msg(map.component, &names) })
    }
}

fn describe(src: &Source, key: &str) -> String {
    match &src.rows {
        Some(r) => format!("LDM tensor '{}' rows {}..{} (diffusers '{key}')", src.key, r.start, r.end),
        None => format!("LDM tensor '{}' (diffusers '{key}')", src.key),
    }
}

/// The shape of `src` as the model sees it (the row slice applied).
fn sliced_shape(file: &WeightFile, src: &Source) -> Option<Vec<usize>> {
    let mut s = file.shape(&src.key)?;
    if let Some(r) = &src.rows {
        if s.is_empty() || s[0] < r.end {
            return Some(s);
        }
        s[0] = r.len();
    }
    Some(s)
}

/// Shape stored for the diffusers tensor `key`, if the file has it.
pub fn shape(map: &NameMap, file: &WeightFile, key: &str) -> Option<Vec<usize>> {
    map.ldm(key).and_then(|src| sliced_shape(file, &src))
}

/// The diffusers tensor `key` from the single file, which must have shape `expected` (a `(C, C, 1, 1)`
/// conv weight is accepted for a `(C, C)` linear one, as LDM's VAE attention and SD 1's `proj_in` store them).
pub fn get(map: &NameMap, file: &WeightFile, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
    let src = locate(map, file, key, expected)?;
    let data = file.read_weight(&src.key)?;
    Ok(match src.rows {
        Some(r) => {
            let per_row: usize = file.shape(&src.key).unwrap_or_default()[1..].iter().product();
            data[r.start * per_row..r.end * per_row].to_vec()
        }
        None => data,
    })
}

/// Where the diffusers tensor `key` lives in the file, checked against `expected` as [`get`] checks it
/// (what can be checked without reading the tensor's values).
pub fn locate(map: &NameMap, file: &WeightFile, key: &str, expected: &[usize]) -> Result<Source> {
    let err = |msg: String| Error::Weights { file: file.path().display().to_string(), msg };
    let Some(src) = map.ldm(key) else {
        return Err(err(format!("no LDM name is known for the {} tensor '{key}' (diffusers name)", map.component)));
    };
    let Some(stored) = file.shape(&src.key) else {
        return Err(err(format!("{} of shape {} is missing", describe(&src, key), shape_str(expected))));
    };
    let seen = sliced_shape(file, &src).unwrap_or_default();
    let rows_fit = src.rows.as_ref().is_none_or(|r| !stored.is_empty() && stored[0] >= r.end);
    if !rows_fit || !shape_accepts(&seen, expected) {
        return Err(err(format!(
            "{} is stored with shape {} but the model expects {}{}",
            describe(&src, key),
            shape_str(&stored),
            shape_str(expected),
            if src.rows.is_some() { " per q/k/v slice" } else { "" }
        )));
    }
    Ok(src)
}
