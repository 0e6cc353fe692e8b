//! `UNet2DConditionModel` for SD 1.x / 2.x (including 9-channel inpainting and 5-channel depth inputs).
//!
//! ```text
//! sample [B, Cin, H, W], timestep [B], context [B, S, Cc]
//!   time_proj → time_embedding (linear, silu, linear) → emb [B, 4·C0]
//!   conv_in → down blocks (resnets [+ transformers], downsample) → mid block → up blocks (concat skips,
//!   resnets [+ transformers], upsample) → conv_norm_out + silu → conv_out → [B, Cout, H, W]
//! ```

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::kernels::embedding::TimestepEmbedding;
use crate::kernels::unary::Activation;
use crate::models::clip::weight_file;
use crate::models::config::UNetConfig;
use crate::models::nn::{Conv2d, GroupNorm, Linear, Loader};
use crate::models::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::models::transformer::{FeedForwardChunking, Transformer2DModel};
use crate::models::weights::Weights;

/// One down or up block: resnets, optionally a transformer after each, optionally a resampler.
struct Block {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsample: Option<Downsample2D>,
    upsample: Option<Upsample2D>,
}

pub struct UNet2DConditionModel {
    pub config: UNetConfig,
    linear_1: Linear,
    linear_2: Linear,
    conv_in: Conv2d,
    down: Vec<Block>,
    mid_resnets: Vec<ResnetBlock2D>,
    mid_attention: Transformer2DModel,
    up: Vec<Block>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Loads `config.json` and `diffusion_pytorch_model[.<variant>].safetensors` from a `unet/` folder.
    pub fn load(gpu: &Gpu, dir: &Path, variant: Option<&str>) -> Result<Self> {
        let config = UNetConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&[weight_file(dir, "diffusion_pytorch_model", variant)?])?;
        Self::from_weights(gpu, config, &weights)
    }

    pub fn from_weights(gpu: &Gpu, c: UNetConfig, weights: &Weights) -> Result<Self> {
        Self::from_loader(Loader::new(gpu, weights), c)
    }

    /// Builds the model from `l` (a training loader attaches LoRA adapters and records the weights).
    pub fn from_loader(l: Loader, c: UNetConfig) -> Result<Self> {
        if c.mid_block_scale_factor != 1.0 {
            return Err(Error::Config { file: "unet/config.json".into(), msg: format!("mid_block_scale_factor = {} is not supported (1)", c.mid_block_scale_factor) });
        }
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let (groups, eps) = (c.norm_num_groups, c.norm_eps);
        let kpad = |k: usize| Conv2dOpts::new(1, (k - 1) / 2);
        let te = l.pp("time_embedding");
        let linear_1 = Linear::load(&te.pp("linear_1"), ch[0], temb, true)?;
        let linear_2 = Linear::load(&te.pp("linear_2"), temb, temb, true)?;
        let conv_in = Conv2d::load(&l.pp("conv_in"), c.in_channels, ch[0], c.conv_in_kernel, kpad(c.conv_in_kernel))?;

        let mut down = Vec::new();
        let mut out_ch = ch[0];
        for i in 0..n {
            let bl = l.pp("down_blocks").pp(i);
            let in_ch = out_ch;
            out_ch = ch[i];
            let cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
            let mut block = Block { resnets: vec![], attentions: vec![], downsample: None, upsample: None };
            for j in 0..c.layers_per_block {
                let cin = if j == 0 { in_ch } else { out_ch };
                block.resnets.push(ResnetBlock2D::load(&bl.pp("resnets").pp(j), cin, out_ch, Some(temb), groups, eps)?);
                if cross {
                    block.attentions.push(Transformer2DModel::load(
                        &bl.pp("attentions").pp(j),
                        out_ch,
                        c.heads(i),
                        c.cross_attention_dim,
                        c.transformer_layers_per_block.get(i),
                        groups,
                    )?);
                }
            }
            if i + 1 < n {
                block.downsample = Some(Downsample2D::load(&bl.pp("downsamplers").pp(0), out_ch, c.downsample_padding)?);
            }
            down.push(block);
        }

        let mb = l.pp("mid_block");
        let last = ch[n - 1];
        let mid_resnets = vec![
            ResnetBlock2D::load(&mb.pp("resnets").pp(0), last, last, Some(temb), groups, eps)?,
            ResnetBlock2D::load(&mb.pp("resnets").pp(1), last, last, Some(temb), groups, eps)?,
        ];
        let mid_attention = Transformer2DModel::load(
            &mb.pp("attentions").pp(0),
            last,
            c.heads(n - 1),
            c.cross_attention_dim,
            c.transformer_layers_per_block.get(n - 1),
            groups,
        )?;

        let mut up = Vec::new();
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut out_ch = rev[0];
        for i in 0..n {
            let bl = l.pp("up_blocks").pp(i);
            let prev_out = out_ch;
            out_ch = rev[i];
            let in_ch = rev[(i + 1).min(n - 1)];
            let rb = n - 1 - i; // the matching down block, for per-block head counts
            let cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
            let mut block = Block { resnets: vec![], attentions: vec![], downsample: None, upsample: None };
            for j in 0..=c.layers_per_block {
                let skip = if j == c.layers_per_block { in_ch } else { out_ch };
                let cin = if j == 0 { prev_out } else { out_ch };
                block.resnets.push(ResnetBlock2D::load(&bl.pp("resnets").pp(j), cin + skip, out_ch, Some(temb), groups, eps)?);
                if cross {
                    block.attentions.push(Transformer2DModel::load(
                        &bl.pp("attentions").pp(j),
                        out_ch,
                        c.heads(rb),
                        c.cross_attention_dim,
                        c.transformer_layers_per_block.get(rb),
                        groups,
                    )?);
                }
            }
            if i + 1 < n {
                block.upsample = Some(Upsample2D::load(&bl.pp("upsamplers").pp(0), out_ch)?);
            }
            up.push(block);
        }
        Ok(UNet2DConditionModel {
            linear_1,
            linear_2,
            conv_in,
            down,
            mid_resnets,
            mid_attention,
            up,
            conv_norm_out: GroupNorm::load(&l.pp("conv_norm_out"), groups, ch[0], eps)?,
            conv_out: Conv2d::load(&l.pp("conv_out"), ch[0], c.out_channels, c.conv_out_kernel, kpad(c.conv_out_kernel))?,
            config: c,
        })
    }

    /// `sample_size` of the config (latent size the model was trained at), if given.
    pub fn config_sample_size(&self) -> Option<usize> {
        self.config.sample_size
    }

    /// Records one evaluation. `sample: [B, in_channels, H, W]`, `timestep: [B]`, `context: [B, S, Cc]`.
    pub fn forward(&self, g: &mut Graph, sample: TensorId, timestep: TensorId, context: TensorId) -> Result<TensorId> {
        self.forward_chunked(g, sample, timestep, context, FeedForwardChunking::default())
    }

    /// [`Self::forward`] with the transformer blocks' feed-forwards chunked (inference: less memory, same
    /// results).
    pub fn forward_chunked(
        &self,
        g: &mut Graph,
        sample: TensorId,
        timestep: TensorId,
        context: TensorId,
        ff_chunk: FeedForwardChunking,
    ) -> Result<TensorId> {
        let c = &self.config;
        let s = g.shape(sample).to_vec();
        if s.len() != 4 || s[1] != c.in_channels {
            return Err(Error::shape("unet", format!("sample must be [B, {}, H, W], got {:?}", c.in_channels, s)));
        }
        let x = if c.center_input_sample { g.scale("center_input_sample", sample, 2.0, -1.0)? } else { sample };

        // 1. time
        let emb = TimestepEmbedding::new(c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift as f32);
        let t = g.timestep_embedding("time_proj", timestep, emb)?;
        let t = self.linear_1.forward_act(g, t, Activation::Silu)?;
        // Every resnet applies silu to the embedding before its projection: do it once here.
        let temb = self.linear_2.forward_act(g, t, Activation::Silu)?;

        // 2. pre-process
        let mut x = self.conv_in.forward(g, x, None)?;

        // 3. down
        let mut skips = vec![x];
        for block in &self.down {
            for (j, resnet) in block.resnets.iter().enumerate() {
                x = resnet.forward(g, x, Some(temb))?;
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(g, x, context, ff_chunk)?;
                }
                skips.push(x);
            }
            if let Some(ds) = &block.downsample {
                x = ds.forward(g, x)?;
                skips.push(x);
            }
        }

        // 4. mid
        x = self.mid_resnets[0].forward(g, x, Some(temb))?;
        x = self.mid_attention.forward(g, x, context, ff_chunk)?;
        x = self.mid_resnets[1].forward(g, x, Some(temb))?;

        // 5. up
        for (i, block) in self.up.iter().enumerate() {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                x = g.concat(&format!("up_blocks.{i}.cat.{j}"), x, skip, 1)?;
                x = resnet.forward(g, x, Some(temb))?;
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(g, x, context, ff_chunk)?;
                }
            }
            if let Some(us) = &block.upsample {
                // Upsample to the next skip's size: 2× unless a side was odd on the way down.
                let size = skips.last().map(|t| {
                    let s = g.shape(*t);
                    (s[2], s[3])
                });
                x = us.forward(g, x, size)?;
            }
        }

        // 6. post-process
        let x = self.conv_norm_out.forward(g, x, true)?;
        self.conv_out.forward(g, x, None)
    }
}
