//! `DPTViTHybridEmbeddings` (BiT features → 1×1 projection → tokens, cls token, position embeddings) and
//! the pre-norm ViT encoder (`DPTViTEncoder`), weights under `dpt.embeddings.*` and `dpt.encoder.*`.
//!
//! ```text
//! pixels → BiT → feature maps f1, f2, f3 ; tokens = [cls ; flatten(projection(f3))ᵀ] + position_embeddings
//! layer: x += attention(layernorm_before(x)) ; x += output(gelu(intermediate(layernorm_after(x))))
//! ```

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::attention::AttentionOpts;
use crate::models::dpt::bit::BitBackbone;
use crate::models::dpt::config::{activation, DptConfig};
use crate::models::dpt::layers::{Conv, Pad};
use crate::models::nn::{LayerNorm, Linear, Loader};
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

/// What the embeddings record.
pub struct Embeddings {
    /// `[B, 1 + h·w, D]`.
    pub tokens: TensorId,
    /// The first two backbone feature maps (the neck's stages 1 and 2).
    pub intermediate: [TensorId; 2],
    /// Token grid `(h, w)`.
    pub grid: (usize, usize),
}

pub struct DptViTHybridEmbeddings {
    backbone: BitBackbone,
    projection: Conv,
    cls_token: Arc<Param>,
    position_embeddings: Arc<Param>,
    image_size: [usize; 2],
    patch_size: usize,
    num_channels: usize,
    name: String,
}

impl DptViTHybridEmbeddings {
    /// `l` is `dpt.embeddings`.
    pub fn load(l: &Loader, w: &Weights, c: &DptConfig) -> Result<Self> {
        let backbone = BitBackbone::load(&l.pp("backbone").pp("bit"), w, c.backbone())?;
        let image_size = c.image_size.hw();
        let patch = c.patch_size.hw();
        let num_patches = (image_size[0] / patch[0]) * (image_size[1] / patch[1]);
        let feature_dim = c.backbone_featmap_shape.as_ref().expect("validated")[1];
        let d = c.hidden_size;
        Ok(DptViTHybridEmbeddings {
            backbone,
            projection: Conv::load(&l.pp("projection"), feature_dim, d, 1, 1, Pad::Fixed(0), true)?,
            cls_token: l.tensor("cls_token", &[1, 1, d])?,
            position_embeddings: l.tensor("position_embeddings", &[1, num_patches + 1, d])?,
            image_size,
            patch_size: patch[0],
            num_channels: c.num_channels,
            name: l.path().to_string(),
        })
    }

    /// pixel_values: [B, C, H, W] → tokens [B, 1 + h·w, D] and the backbone's first two feature maps.
    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<Embeddings> {
        let s = g.shape(x).to_vec();
        let err = |msg: String| Error::shape("DPTViTHybridEmbeddings", msg);
        if s.len() != 4 || s[1] != self.num_channels {
            return Err(err(format!("pixel_values must be [B, {}, H, W], got {:?}", self.num_channels, s)));
        }
        // transformers refuses other sizes here (it never interpolates the hybrid's position embeddings).
        if s[2] != self.image_size[0] || s[3] != self.image_size[1] {
            return Err(err(format!(
                "Input image size ({}*{}) doesn't match model ({}*{})",
                s[2], s[3], self.image_size[0], self.image_size[1]
            )));
        }
        let b = s[0];
        let feats = self.backbone.forward(g, x)?;
        let f = self.projection.forward(g, feats[2], None)?; // [B, D, h, w]
        let fs = g.shape(f).to_vec();
        let (d, h, w) = (fs[1], fs[2], fs[3]);
        let (ph, pw) = (s[2] / self.patch_size, s[3] / self.patch_size);
        if (h, w) != (ph, pw) {
            return Err(err(format!("the backbone gives a {h}×{w} feature grid but the position embeddings cover {ph}×{pw} patches")));
        }
        let f = g.reshape(f, &[b, d, h * w])?;
        let patches = g.transpose(&format!("{}.flatten", self.name), f)?; // [B, h·w, D]
        let cls = g.param(&self.cls_token);
        let cls = if b == 1 {
            cls
        } else {
            // cls_token.expand(B, -1, -1): gather row 0 B times.
            let table = g.reshape(cls, &[1, d])?;
            let ids = g.constant(&format!("{}.cls_ids", self.name), TensorDesc::f32(&[b]), vec![0.0; b])?;
            let rows = g.gather(&format!("{}.cls_expand", self.name), table, ids)?;
            g.reshape(rows, &[b, 1, d])?
        };
        let tokens = g.concat(&format!("{}.cat_cls", self.name), cls, patches, 1)?;
        let pos = g.param(&self.position_embeddings);
        let tokens = g.add(&format!("{}.position", self.name), tokens, pos)?;
        Ok(Embeddings { tokens, intermediate: [feats[0], feats[1]], grid: (h, w) })
    }
}

/// `DPTViTLayer`: pre-norm self-attention and MLP.
pub struct DptViTLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    output_attn: Linear,
    intermediate: Linear,
    output: Linear,
    layernorm_before: LayerNorm,
    layernorm_after: LayerNorm,
    heads: usize,
    act: crate::kernels::unary::Activation,
    name: String,
}

impl DptViTLayer {
    pub fn load(l: &Loader, c: &DptConfig) -> Result<Self> {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        let a = l.pp("attention");
        Ok(DptViTLayer {
            query: Linear::load(&a.pp("attention").pp("query"), d, d, c.qkv_bias)?,
            key: Linear::load(&a.pp("attention").pp("key"), d, d, c.qkv_bias)?,
            value: Linear::load(&a.pp("attention").pp("value"), d, d, c.qkv_bias)?,
            output_attn: Linear::load(&a.pp("output").pp("dense"), d, d, true)?,
            intermediate: Linear::load(&l.pp("intermediate").pp("dense"), d, f, true)?,
            output: Linear::load(&l.pp("output").pp("dense"), f, d, true)?,
            layernorm_before: LayerNorm::load(&l.pp("layernorm_before"), d, c.layer_norm_eps)?,
            layernorm_after: LayerNorm::load(&l.pp("layernorm_after"), d, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
            act: activation(&c.hidden_act).expect("validated"),
            name: l.path().to_string(),
        })
    }

    // x: [B, N, D] → [B, N, D]
    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = self.layernorm_before.forward(g, x)?;
        let q = self.query.forward(g, h)?;
        let k = self.key.forward(g, h)?;
        let v = self.value.forward(g, h)?;
        let a = g.attention(&format!("{}.attention.attention", self.name), q, k, v, AttentionOpts { heads: self.heads, ..Default::default() })?;
        let a = self.output_attn.forward(g, a)?;
        let x = g.add(&format!("{}.attention_residual", self.name), a, x)?;
        let h = self.layernorm_after.forward(g, x)?;
        let h = self.intermediate.forward_act(g, h, self.act)?;
        let h = self.output.forward(g, h)?;
        g.add(&format!("{}.output_residual", self.name), h, x)
    }
}
