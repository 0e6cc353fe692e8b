//! The CLIP text encoder (transformers `CLIPTextModel`), weights under `text_model.*`.
//!
//! ```text
//! ids [B, S] → token_embedding + position_embedding → layers × { x += attn(ln1(x)) (causal); x += mlp(ln2(x)) }
//!            → final_layer_norm → last_hidden_state [B, S, D]
//! ```
//! The penultimate layer's output through the final LayerNorm is what "CLIP skip" (diffusers `clip_skip=1`)
//! feeds the UNet. The pooled output (the end-of-text token's row) is picked on the host.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::attention::AttentionOpts;
use crate::kernels::unary::Activation;
use crate::models::config::ClipTextConfig;
use crate::models::nn::{LayerNorm, Linear, Loader};
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    causal: bool,
    name: String,
}

/// What one `CLIPEncoderLayer` needs from a text or vision config.
#[derive(Clone, Debug)]
pub struct ClipLayerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
    /// `quick_gelu` or `gelu` (validated by the config readers).
    pub hidden_act: String,
    /// Causal self-attention (the text encoder) or full (the vision encoder).
    pub causal: bool,
}

impl ClipTextConfig {
    /// The encoder layers' shape: causal attention.
    pub fn layer_config(&self) -> ClipLayerConfig {
        ClipLayerConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: self.hidden_act.clone(),
            causal: true,
        }
    }
}

impl ClipAttention {
    fn load(l: &Loader, c: &ClipLayerConfig) -> Result<Self> {
        let d = c.hidden_size;
        Ok(ClipAttention {
            q_proj: Linear::load(&l.pp("q_proj"), d, d, true)?,
            k_proj: Linear::load(&l.pp("k_proj"), d, d, true)?,
            v_proj: Linear::load(&l.pp("v_proj"), d, d, true)?,
            out_proj: Linear::load(&l.pp("out_proj"), d, d, true)?,
            heads: c.num_attention_heads,
            causal: c.causal,
            name: l.path().to_string(),
        })
    }

    // x: [B, S, D] → [B, S, D]; causal in the text encoder, full in the vision encoder.
    fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let q = self.q_proj.forward(g, x)?;
        let k = self.k_proj.forward(g, x)?;
        let v = self.v_proj.forward(g, x)?;
        let a = if self.causal {
            g.causal_attention(&self.name, q, k, v, self.heads)?
        } else {
            g.attention(&self.name, q, k, v, AttentionOpts { heads: self.heads, ..Default::default() })?
        };
        self.out_proj.forward(g, a)
    }
}

/// transformers `CLIPEncoderLayer`, shared by the text and vision encoders.
pub(crate) struct ClipLayer {
    layer_norm1: LayerNorm,
    self_attn: ClipAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
    name: String,
}

impl ClipLayer {
    pub(crate) fn load(l: &Loader, c: &ClipLayerConfig) -> Result<Self> {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        Ok(ClipLayer {
            layer_norm1: LayerNorm::load(&l.pp("layer_norm1"), d, c.layer_norm_eps)?,
            self_attn: ClipAttention::load(&l.pp("self_attn"), c)?,
            layer_norm2: LayerNorm::load(&l.pp("layer_norm2"), d, c.layer_norm_eps)?,
            fc1: Linear::load(&l.pp("mlp").pp("fc1"), d, f, true)?,
            fc2: Linear::load(&l.pp("mlp").pp("fc2"), f, d, true)?,
            act: if c.hidden_act == "quick_gelu" { Activation::QuickGelu } else { Activation::Gelu },
            name: l.path().to_string(),
        })
    }

    // x: [B, S, D] → [B, S, D].
    pub(crate) fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = self.layer_norm1.forward(g, x)?;
        let h = self.self_attn.forward(g, h)?;
        let x = g.add(&format!("{}.attn_residual", self.name), x, h)?;
        let h = self.layer_norm2.forward(g, x)?;
        let h = self.fc1.forward_act(g, h, self.act)?;
        let h = self.fc2.forward(g, h)?;
        g.add(&format!("{}.mlp_residual", self.name), x, h)
    }
}

/// What the text encoder records.
pub struct ClipOutputs {
    /// `final_layer_norm(last layer)`: [B, S, D].
    pub last_hidden_state: TensorId,
    /// `final_layer_norm(second-to-last layer)`: [B, S, D] (CLIP skip).
    pub penultimate: TensorId,
}

pub struct ClipTextModel {
    pub config: ClipTextConfig,
    token_embedding: Arc<Param>,
    position_embedding: Arc<Param>,
    layers: Vec<ClipLayer>,
    final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Loads `config.json` and `model.safetensors` (or `model.<variant>.safetensors`) from `dir`.
    pub fn load(gpu: &Gpu, dir: &Path, variant: Option<&str>) -> Result<Self> {
        let config = ClipTextConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&[weight_file(dir, "model", variant)?])?;
        Self::from_weights(gpu, config, &weights)
    }

    pub fn from_weights(gpu: &Gpu, config: ClipTextConfig, weights: &Weights) -> Result<Self> {
        Self::from_loader(Loader::new(gpu, weights), config)
    }

    /// Builds the model from `root` (a training loader attaches LoRA adapters and records the weights).
    pub fn from_loader(root: Loader, config: ClipTextConfig) -> Result<Self> {
        let l = root.pp("text_model");
        let d = config.hidden_size;
        let emb = l.pp("embeddings");
        let lc = config.layer_config();
        let layers = (0..config.num_hidden_layers)
            .map(|i| ClipLayer::load(&l.pp("encoder").pp("layers").pp(i), &lc))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipTextModel {
            // The largest tensor of the text encoder (49408 rows): stored like the matrices (f16 under
            // --precision f16), of which only the prompt's rows are ever read.
            token_embedding: emb.pp("token_embedding").matrix("weight", &[config.vocab_size, d])?,
            position_embedding: emb.pp("position_embedding").tensor("weight", &[config.max_position_embeddings, d])?,
            layers,
            final_layer_norm: LayerNorm::load(&l.pp("final_layer_norm"), d, config.layer_norm_eps)?,
            config,
        })
    }

    /// The token table (`[vocab_size, D]`, the text encoder's largest weight).
    pub fn token_table(&self) -> &Arc<Param> {
        &self.token_embedding
    }

    /// Token plus position embeddings of `ids: [B, S]` (integer values as f32). `extra` (`[E, D]`) are
    /// rows appended to the token table (textual-inversion vectors): id `vocab_size + e` reads row `e`.
    /// `rows` (`[R, D]`) replaces the token table with the rows a run needs, gathered beforehand (ids
    /// then index them, and id `R + e` reads extra row `e`).
    fn embed(&self, g: &mut Graph, ids: TensorId, extra: Option<TensorId>, rows: Option<TensorId>) -> Result<TensorId> {
        let shape = g.shape(ids).to_vec();
        if shape.len() != 2 || shape[1] > self.config.max_position_embeddings {
            return Err(Error::shape(
                "clip_text_model",
                format!("token ids must be [B, S] with S ≤ {}, got {:?}", self.config.max_position_embeddings, shape),
            ));
        }
        let seq = shape[1];
        let (table, table_rows) = match rows {
            Some(r) if g.shape(r).len() == 2 && g.shape(r)[1] == self.config.hidden_size => (r, g.shape(r)[0]),
            Some(r) => {
                return Err(Error::shape(
                    "text_model.embeddings.token_embedding",
                    format!("gathered token rows must be [R, {}], got {:?}", self.config.hidden_size, g.shape(r)),
                ))
            }
            None => (g.param(&self.token_embedding), self.config.vocab_size),
        };
        let mut x = g.gather("text_model.embeddings.token_embedding", table, ids)?;
        if let Some(rows) = extra {
            if g.shape(rows).len() != 2 || g.shape(rows)[1] != self.config.hidden_size {
                return Err(Error::shape(
                    "text_model.embeddings.token_embedding",
                    format!("extra embedding rows must be [E, {}], got {:?}", self.config.hidden_size, g.shape(rows)),
                ));
            }
            // Ids past the vocabulary read the extra rows (and zeros from the table), the others zeros
            // here: the sum is the appended table's lookup without copying the table.
            let more = g.gather_from("text_model.embeddings.extra_rows", rows, ids, table_rows)?;
            x = g.add("text_model.embeddings.token_embedding_with_extra_rows", x, more)?;
        }
        let positions = g.constant("position_ids", TensorDesc::f32(&[seq]), (0..seq).map(|i| i as f32).collect())?;
        let ptable = g.param(&self.position_embedding);
        let pos = g.gather("text_model.embeddings.position_embedding", ptable, positions)?;
        g.add("text_model.embeddings", x, pos)
    }

    /// Records the encoder for token ids `ids: [B, S]` (integer values as f32).
    pub fn forward(&self, g: &mut Graph, ids: TensorId) -> Result<ClipOutputs> {
        let mut x = self.embed(g, ids, None, None)?;
        let mut previous = x;
        for layer in &self.layers {
            previous = x;
            x = layer.forward(g, x)?;
        }
        let last_hidden_state = self.final_layer_norm.forward(g, x)?;
        let penultimate = if self.layers.is_empty() { last_hidden_state } else { self.final_layer_norm.forward(g, previous)? };
        Ok(ClipOutputs { last_hidden_state, penultimate })
    }

    /// The hidden state `skip` layers before the last, through the final LayerNorm: `skip = 0` is
    /// `last_hidden_state`, `skip = 1` diffusers' `clip_skip=1` (A1111's "CLIP skip 2").
    pub fn forward_skip(&self, g: &mut Graph, ids: TensorId, skip: usize) -> Result<TensorId> {
        self.forward_skip_with(g, ids, skip, None)
    }

    /// [`ClipTextModel::forward_skip`] with extra token-table rows (see `embed`).
    pub fn forward_skip_with(&self, g: &mut Graph, ids: TensorId, skip: usize, extra: Option<TensorId>) -> Result<TensorId> {
        self.forward_skip_rows(g, ids, skip, extra, None)
    }

    /// [`ClipTextModel::forward_skip_with`] reading token embeddings from `rows` (`[R, D]`, gathered from
    /// the token table beforehand) instead of the table: ids index `rows` (see `embed`).
    pub fn forward_skip_rows(
        &self,
        g: &mut Graph,
        ids: TensorId,
        skip: usize,
        extra: Option<TensorId>,
        rows: Option<TensorId>,
    ) -> Result<TensorId> {
        if skip >= self.layers.len() {
            return Err(Error::usage(format!("clip skip {skip}: the text encoder has only {} layers", self.layers.len())));
        }
        let mut x = self.embed(g, ids, extra, rows)?;
        for layer in &self.layers[..self.layers.len() - skip] {
            x = layer.forward(g, x)?;
        }
        self.final_layer_norm.forward(g, x)
    }

    /// The pooled output: for each prompt, the row of the first end-of-text token (transformers' rule; the
    /// legacy `eos_token_id == 2` configs take the highest id instead).
    pub fn pooled(&self, last_hidden_state: &[f32], ids: &[u32], batch: usize) -> Vec<f32> {
        let seq = ids.len() / batch;
        let d = self.config.hidden_size;
        let mut out = Vec::with_capacity(batch * d);
        for b in 0..batch {
            let row = &ids[b * seq..(b + 1) * seq];
            let pos = if self.config.eos_token_id == 2 {
                row.iter().enumerate().max_by_key(|(_, v)| **v).map(|(i, _)| i).unwrap_or(0)
            } else {
                row.iter().position(|&t| t as usize == self.config.eos_token_id).unwrap_or(0)
            };
            let start = (b * seq + pos) * d;
            out.extend_from_slice(&last_hidden_state[start..start + d]);
        }
        out
    }
}

/// `<stem>.safetensors`, or `<stem>.<variant>.safetensors` when a variant (e.g. "fp16") is asked for.
pub fn weight_file(dir: &Path, stem: &str, variant: Option<&str>) -> Result<std::path::PathBuf> {
    let name = match variant {
        Some(v) => format!("{stem}.{v}.safetensors"),
        None => format!("{stem}.safetensors"),
    };
    let p = dir.join(&name);
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Weights { file: p.display().to_string(), msg: "weight file not found".into() })
    }
}
