//! Component configs (`config.json` of `unet/`, `vae/`, `text_encoder/`) with every field SD 1.x/2.x use.
//! Fields keep diffusers' / transformers' names. A value wgsd does not implement is an error naming the field
//! and the value, never silently ignored.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fixtures::python_json;

/// A config value that is either one number for every block or a list with one per block.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Many(Vec<usize>),
}

impl PerBlock {
    pub fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Many(v) => v[i.min(v.len() - 1)],
        }
    }
    fn len_ok(&self, n: usize) -> bool {
        match self {
            PerBlock::One(_) => true,
            PerBlock::Many(v) => v.len() == n,
        }
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config { file: path.display().to_string(), msg: format!("cannot read: {e}") })
}

/// A config's text as JSON (Python's NaN/Infinity literals accepted, as diffusers writes them); `file`
/// names it in errors.
fn read(file: &str, text: &str) -> Result<(String, Value)> {
    let v: Value = serde_json::from_str(&python_json(text)).map_err(|e| Error::Config { file: file.to_string(), msg: format!("invalid JSON: {e}") })?;
    Ok((file.to_string(), v))
}

fn parse<T: for<'de> Deserialize<'de>>(file: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Config { file: file.to_string(), msg: format!("unexpected config: {e}") })
}

/// Checks that an optional field is absent/null or one of the supported values.
fn require(file: &str, v: &Value, field: &str, supported: &[Value]) -> Result<()> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(x) if supported.contains(x) => Ok(()),
        Some(x) => Err(Error::Config {
            file: file.to_string(),
            msg: format!("{field} = {x} is not supported by wgsd (supported: {})", if supported.is_empty() { "null".to_string() } else { supported.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ") }),
        }),
    }
}

fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "silu".into()
}
fn default_one() -> PerBlock {
    PerBlock::One(1)
}
fn default_true() -> bool {
    true
}
fn default_scale() -> f64 {
    0.18215
}

/// `UNet2DConditionModel` config.
#[derive(Clone, Debug, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    pub layers_per_block: usize,
    /// Despite the name, diffusers uses this as the number of heads when `num_attention_heads` is unset.
    #[serde(default)]
    pub attention_head_dim: Option<PerBlock>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    pub cross_attention_dim: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default = "default_downsample_padding")]
    pub downsample_padding: usize,
    #[serde(default = "default_mid_scale")]
    pub mid_block_scale_factor: f64,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "default_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_kernel")]
    pub conv_out_kernel: usize,
    /// Latent size the model was trained at (64 for SD 1.5, 96 for SD 2.1 768).
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_downsample_padding() -> usize {
    1
}
fn default_mid_scale() -> f64 {
    1.0
}
fn default_kernel() -> usize {
    3
}

/// `block_out_channels` present, each a positive multiple of a positive `norm_num_groups`.
fn check_channels(file: &str, channels: &[usize], groups: usize) -> Result<()> {
    let bad = |msg: String| Err(Error::Config { file: file.to_string(), msg });
    if channels.is_empty() {
        return bad("block_out_channels is empty".into());
    }
    if groups == 0 {
        return bad("norm_num_groups is 0".into());
    }
    if channels.iter().any(|&ch| ch == 0 || !ch.is_multiple_of(groups)) {
        return bad(format!("block_out_channels {channels:?} are not all positive multiples of norm_num_groups {groups}"));
    }
    Ok(())
}

impl UNetConfig {
    pub fn from_file(path: &Path) -> Result<UNetConfig> {
        Self::from_json(&path.display().to_string(), &read_file(path)?)
    }

    /// The config from its JSON text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<UNetConfig> {
        let (file, v) = read(file, text)?;
        // Features of other UNet variants (SDXL, LCM-distilled, class-conditioned): refused by name.
        for f in [
            "class_embed_type",
            "addition_embed_type",
            "encoder_hid_dim",
            "encoder_hid_dim_type",
            "time_cond_proj_dim",
            "time_embedding_dim",
            "timestep_post_act",
            "time_embedding_act_fn",
            "num_class_embeds",
            "cross_attention_norm",
            "reverse_transformer_layers_per_block",
        ] {
            require(&file, &v, f, &[])?;
        }
        require(&file, &v, "time_embedding_type", &["positional".into()])?;
        require(&file, &v, "resnet_time_scale_shift", &["default".into()])?;
        require(&file, &v, "attention_type", &["default".into()])?;
        require(&file, &v, "act_fn", &["silu".into()])?;
        require(&file, &v, "dual_cross_attention", &[false.into()])?;
        require(&file, &v, "only_cross_attention", &[false.into()])?;
        require(&file, &v, "resnet_skip_time_act", &[false.into()])?;
        require(&file, &v, "resnet_out_scale_factor", &[1.0.into(), 1.into()])?;
        require(&file, &v, "mid_block_only_cross_attention", &[false.into()])?;
        let c: UNetConfig = parse(&file, v)?;
        let n = c.block_out_channels.len();
        let bad = |msg: String| Err(Error::Config { file: file.clone(), msg });
        check_channels(&file, &c.block_out_channels, c.norm_num_groups)?;
        if c.down_block_types.len() != n || c.up_block_types.len() != n {
            return bad(format!("{n} block_out_channels but {} down and {} up block types", c.down_block_types.len(), c.up_block_types.len()));
        }
        for t in &c.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return bad(format!("down block type {t} is not supported (CrossAttnDownBlock2D, DownBlock2D)"));
            }
        }
        for t in &c.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return bad(format!("up block type {t} is not supported (CrossAttnUpBlock2D, UpBlock2D)"));
            }
        }
        match c.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => {}
            Some(t) => return bad(format!("mid_block_type {t} is not supported (UNetMidBlock2DCrossAttn)")),
        }
        for (name, pb) in [("attention_head_dim", &c.attention_head_dim), ("num_attention_heads", &c.num_attention_heads)] {
            if let Some(pb) = pb {
                if !pb.len_ok(n) {
                    return bad(format!("{name} has {pb:?} but there are {n} blocks"));
                }
            }
        }
        if !c.transformer_layers_per_block.len_ok(n) {
            return bad(format!("transformer_layers_per_block does not have {n} entries"));
        }
        for k in [c.conv_in_kernel, c.conv_out_kernel] {
            if k != 3 && k != 1 {
                return bad(format!("conv kernel size {k} is not supported (1 or 3)"));
            }
        }
        for (i, &ch) in c.block_out_channels.iter().enumerate() {
            let heads = c.heads(i);
            if heads == 0 || !ch.is_multiple_of(heads) {
                return bad(format!("block {i}: {heads} attention heads do not divide its {ch} channels (attention_head_dim / num_attention_heads)"));
            }
        }
        let mid_heads = c.heads(n - 1);
        if c.in_channels == 0 || c.out_channels == 0 || c.cross_attention_dim == 0 || c.layers_per_block == 0 || mid_heads == 0 {
            return bad("in_channels, out_channels, cross_attention_dim and layers_per_block must be at least 1".into());
        }
        Ok(c)
    }

    /// Attention heads of block `i` (diffusers: `num_attention_heads or attention_head_dim`).
    pub fn heads(&self, i: usize) -> usize {
        self.num_attention_heads.as_ref().or(self.attention_head_dim.as_ref()).map(|p| p.get(i)).unwrap_or(8)
    }
}

/// `AutoencoderKL` config.
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub layers_per_block: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default = "default_scale")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    /// The training image size; tiled decoding uses it as the tile size (diffusers' `tile_sample_min_size`).
    #[serde(default = "default_vae_sample_size")]
    pub sample_size: PerBlock,
}

/// diffusers' `AutoencoderKL` default.
fn default_vae_sample_size() -> PerBlock {
    PerBlock::One(32)
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<VaeConfig> {
        Self::from_json(&path.display().to_string(), &read_file(path)?)
    }

    /// The config from its JSON text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<VaeConfig> {
        let (file, v) = read(file, text)?;
        require(&file, &v, "act_fn", &["silu".into()])?;
        require(&file, &v, "latents_mean", &[])?;
        require(&file, &v, "latents_std", &[])?;
        let c: VaeConfig = parse(&file, v)?;
        let bad = |msg: String| Err(Error::Config { file: file.clone(), msg });
        if c.down_block_types.iter().any(|t| t != "DownEncoderBlock2D") {
            return bad(format!("down_block_types {:?}: only DownEncoderBlock2D is supported", c.down_block_types));
        }
        if c.up_block_types.iter().any(|t| t != "UpDecoderBlock2D") {
            return bad(format!("up_block_types {:?}: only UpDecoderBlock2D is supported", c.up_block_types));
        }
        if c.down_block_types.len() != c.block_out_channels.len() || c.up_block_types.len() != c.block_out_channels.len() {
            return bad("block type lists and block_out_channels differ in length".into());
        }
        check_channels(&file, &c.block_out_channels, c.norm_num_groups)?;
        if c.in_channels == 0 || c.out_channels == 0 || c.latent_channels == 0 || c.layers_per_block == 0 {
            return bad("in_channels, out_channels, latent_channels and layers_per_block must be at least 1".into());
        }
        if !(c.scaling_factor.is_finite() && c.scaling_factor > 0.0) {
            return bad(format!("scaling_factor {} must be a positive number", c.scaling_factor));
        }
        Ok(c)
    }
}

/// transformers `CLIPTextConfig`.
#[derive(Clone, Debug, Deserialize)]
pub struct ClipTextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    #[serde(default = "default_eos")]
    pub eos_token_id: usize,
}

fn default_positions() -> usize {
    77
}
fn default_vocab() -> usize {
    49408
}
fn default_eos() -> usize {
    49407
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> Result<ClipTextConfig> {
        Self::from_json(&path.display().to_string(), &read_file(path)?)
    }

    /// The config from its JSON text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<ClipTextConfig> {
        let (file, v) = read(file, text)?;
        require(&file, &v, "hidden_act", &["quick_gelu".into(), "gelu".into()])?;
        let c: ClipTextConfig = parse(&file, v)?;
        if c.hidden_size == 0 || c.num_attention_heads == 0 || c.num_hidden_layers == 0 || c.intermediate_size == 0 || c.vocab_size == 0 {
            return Err(Error::Config {
                file,
                msg: "hidden_size, num_attention_heads, num_hidden_layers, intermediate_size and vocab_size must be at least 1".into(),
            });
        }
        if c.eos_token_id >= c.vocab_size {
            return Err(Error::Config { file, msg: format!("eos_token_id {} is outside the vocabulary of {}", c.eos_token_id, c.vocab_size) });
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::Config {
                file,
                msg: format!("hidden_size {} is not divisible by num_attention_heads {}", c.hidden_size, c.num_attention_heads),
            });
        }
        Ok(c)
    }
}

/// `AutoencoderTiny` (TAESD) config.
#[derive(Clone, Debug, Deserialize)]
pub struct AutoencoderTinyConfig {
    #[serde(default = "default_three")]
    pub in_channels: usize,
    #[serde(default = "default_three")]
    pub out_channels: usize,
    #[serde(default = "default_four")]
    pub latent_channels: usize,
    pub encoder_block_out_channels: Vec<usize>,
    pub decoder_block_out_channels: Vec<usize>,
    pub num_encoder_blocks: Vec<usize>,
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "default_two")]
    pub upsampling_scaling_factor: usize,
    /// Only used by diffusers' `scale_latents`/`unscale_latents` helpers (latents ↔ [0, 1] for storage).
    #[serde(default = "default_three_f")]
    pub latent_magnitude: f64,
    #[serde(default = "default_half")]
    pub latent_shift: f64,
    #[serde(default = "default_one_f")]
    pub scaling_factor: f64,
}

fn default_two() -> usize {
    2
}
fn default_three() -> usize {
    3
}
fn default_four() -> usize {
    4
}
fn default_three_f() -> f64 {
    3.0
}
fn default_half() -> f64 {
    0.5
}
fn default_one_f() -> f64 {
    1.0
}

impl AutoencoderTinyConfig {
    pub fn from_file(path: &Path) -> Result<AutoencoderTinyConfig> {
        Self::from_json(&path.display().to_string(), &read_file(path)?)
    }

    /// The config from its JSON text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<AutoencoderTinyConfig> {
        let (file, v) = read(file, text)?;
        if let Some(class) = v.get("_class_name").and_then(Value::as_str).filter(|c| *c != "AutoencoderTiny") {
            return Err(Error::Config { file, msg: format!("is a {class} config, not an AutoencoderTiny (TAESD) one") });
        }
        require(&file, &v, "act_fn", &["relu".into()])?;
        require(&file, &v, "upsample_fn", &["nearest".into()])?;
        let c: AutoencoderTinyConfig = parse(&file, v)?;
        let bad = |msg: String| Err(Error::Config { file: file.clone(), msg });
        if c.encoder_block_out_channels.len() != c.num_encoder_blocks.len() || c.encoder_block_out_channels.is_empty() {
            return bad("encoder_block_out_channels and num_encoder_blocks must be non-empty and of equal length".into());
        }
        if c.decoder_block_out_channels.len() != c.num_decoder_blocks.len() || c.decoder_block_out_channels.is_empty() {
            return bad("decoder_block_out_channels and num_decoder_blocks must be non-empty and of equal length".into());
        }
        if c.upsampling_scaling_factor == 0 {
            return bad("upsampling_scaling_factor must be at least 1".into());
        }
        Ok(c)
    }
}
