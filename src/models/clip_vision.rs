//! The CLIP vision encoder (transformers `CLIPVisionModel`), weights under `vision_model.*` (the safety
//! checker nests it once more: `vision_model.vision_model.*`).
//!
//! ```text
//! pixel_values [B, C, H, W] → patch_embedding (conv p×p stride p, no bias) → [B, N, D]
//!   → cat(class_embedding, patches) + position_embedding → pre_layrnorm
//!   → layers × { x += attn(ln1(x)) (full); x += mlp(ln2(x)) } → last_hidden_state [B, 1+N, D]
//!   → post_layernorm(last_hidden_state[:, 0]) → pooled [B, D]
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::models::clip::{ClipLayer, ClipLayerConfig};
use crate::models::nn::{LayerNorm, Loader};
use crate::tensor::TensorDesc;

/// transformers `CLIPVisionConfig` (absent fields take transformers' defaults, as older configs store only
/// what differs from them).
#[derive(Clone, Debug, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

fn d_hidden() -> usize {
    768
}
fn d_intermediate() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}

impl ClipVisionConfig {
    /// Parses a vision config object (`config.json` of a `CLIPVisionModel`, or the `vision_config` of a
    /// CLIP / safety-checker config); `file` names it in errors.
    pub fn from_value(file: &str, v: &Value) -> Result<ClipVisionConfig> {
        let err = |msg: String| Error::Config { file: file.to_string(), msg };
        let c: ClipVisionConfig =
            serde_json::from_value(v.clone()).map_err(|e| err(format!("unexpected vision config: {e}")))?;
        if c.hidden_act != "quick_gelu" && c.hidden_act != "gelu" {
            return Err(err(format!("hidden_act = \"{}\" is not supported by wgsd (supported: quick_gelu, gelu)", c.hidden_act)));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            return Err(err(format!("image_size {} is not a multiple of patch_size {}", c.image_size, c.patch_size)));
        }
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<ClipVisionConfig> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config { file: file.clone(), msg: format!("cannot read: {e}") })?;
        let v: Value = serde_json::from_str(&crate::fixtures::python_json(&text))
            .map_err(|e| Error::Config { file: file.clone(), msg: format!("invalid JSON: {e}") })?;
        let v = v.get("vision_config").cloned().unwrap_or(v);
        Self::from_value(&file, &v)
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Positions: the class token plus one per patch.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }

    pub fn layer_config(&self) -> ClipLayerConfig {
        ClipLayerConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: self.hidden_act.clone(),
            causal: false,
        }
    }
}

/// What the vision encoder records.
pub struct ClipVisionOutputs {
    /// [B, 1 + N, D].
    pub last_hidden_state: TensorId,
    /// `post_layernorm` of the class token: [B, D].
    pub pooled: TensorId,
}

/// `CLIPVisionModel` (its `vision_model` = `CLIPVisionTransformer`).
pub struct ClipVisionModel {
    pub config: ClipVisionConfig,
    patch_embedding: Arc<Param>,
    class_embedding: Arc<Param>,
    position_embedding: Arc<Param>,
    pre_layrnorm: LayerNorm,
    layers: Vec<ClipLayer>,
    post_layernorm: LayerNorm,
    name: String,
}

impl ClipVisionModel {
    /// Loads the weights under `l` + `vision_model.*` (`l` is the `CLIPVisionModel`'s own path).
    pub fn load(l: &Loader, config: ClipVisionConfig) -> Result<ClipVisionModel> {
        let l = l.pp("vision_model");
        let (d, p, c) = (config.hidden_size, config.patch_size, config.num_channels);
        let emb = l.pp("embeddings");
        let lc = config.layer_config();
        let layers = (0..config.num_hidden_layers)
            .map(|i| ClipLayer::load(&l.pp("encoder").pp("layers").pp(i), &lc))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVisionModel {
            patch_embedding: emb.pp("patch_embedding").tensor("weight", &[d, c, p, p])?,
            class_embedding: emb.tensor("class_embedding", &[d])?,
            position_embedding: emb.pp("position_embedding").tensor("weight", &[config.num_positions(), d])?,
            // transformers' spelling.
            pre_layrnorm: LayerNorm::load(&l.pp("pre_layrnorm"), d, config.layer_norm_eps)?,
            layers,
            post_layernorm: LayerNorm::load(&l.pp("post_layernorm"), d, config.layer_norm_eps)?,
            name: l.path().to_string(),
            config,
        })
    }

    /// Records the encoder for `pixel_values: [B, C, image_size, image_size]`.
    pub fn forward(&self, g: &mut Graph, pixel_values: TensorId) -> Result<ClipVisionOutputs> {
        let c = &self.config;
        let shape = g.shape(pixel_values).to_vec();
        if shape.len() != 4 || shape[1] != c.num_channels || shape[2] != c.image_size || shape[3] != c.image_size {
            return Err(Error::shape(
                "clip_vision_model",
                format!(
                    "pixel_values must be [B, {}, {}, {}], got {shape:?}",
                    c.num_channels, c.image_size, c.image_size
                ),
            ));
        }
        let (b, d, n) = (shape[0], c.hidden_size, c.grid() * c.grid());
        let name = |s: &str| format!("{}.{s}", self.name);

        // 1. embeddings
        let w = g.param(&self.patch_embedding);
        let patches = g.conv2d_auto(&name("embeddings.patch_embedding"), pixel_values, w, None, Conv2dOpts::new(c.patch_size, 0), None)?;
        // [B, D, g, g] → [B, D, N] → [B, N, D]
        let patches = g.reshape(patches, &[b, d, n])?;
        let patches = g.transpose(&name("embeddings.patch_embeds"), patches)?;
        // The class token for every image: row 0 of a one-row table.
        let cls = g.param(&self.class_embedding);
        let cls = g.reshape(cls, &[1, d])?;
        let zeros = g.constant(&name("embeddings.class_ids"), TensorDesc::f32(&[b, 1]), vec![0.0; b])?;
        let cls = g.gather(&name("embeddings.class_embeds"), cls, zeros)?;
        let x = g.concat(&name("embeddings.cat"), cls, patches, 1)?;
        let pos = g.param(&self.position_embedding);
        let x = g.add(&name("embeddings"), x, pos)?;

        // 2. encoder
        let mut x = self.pre_layrnorm.forward(g, x)?;
        for layer in &self.layers {
            x = layer.forward(g, x)?;
        }
        let last_hidden_state = x;

        // 3. pooled: the class token of each image through post_layernorm.
        let flat = g.reshape(x, &[b * (n + 1), d])?;
        let rows = g.constant(&name("pooled_ids"), TensorDesc::f32(&[b]), (0..b).map(|i| (i * (n + 1)) as f32).collect())?;
        let cls_out = g.gather(&name("pooled_rows"), flat, rows)?;
        let pooled = self.post_layernorm.forward(g, cls_out)?;
        Ok(ClipVisionOutputs { last_hidden_state, pooled })
    }
}
