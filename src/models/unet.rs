//! `UNet2DConditionModel` for SD 1.x / 2.x (including 9-channel inpainting and 5-channel depth inputs).
//!
//! ```text
//! sample [B', Cin, H, W], timestep [B'], context [B, S, Cc]   (B = B' but for shared inputs, below)
//!   time_proj → time_embedding (linear, silu, linear) → emb [B, 4·C0]
//!   conv_in → down blocks (resnets [+ transformers], downsample) → mid block → up blocks (concat skips,
//!   resnets [+ transformers], upsample) → conv_norm_out + silu → conv_out → [B, Cout, H, W]
//! ```
//!
//! Classifier-free guidance evaluates the same latents under two contexts. Everything before the first
//! cross-attention sees only the latents and the timestep, so the pipelines pass each distinct sample once
//! (B' = B / 2) and the layers up to that point run once per sample: conv_in, the first resnet and the first
//! transformer's self-attention (in SD 1.5 at 512² one of the five 4096-token ones). Their results are repeated
//! along the batch where they meet per-context tensors. Every kernel computes each batch row on its own,
//! so the numbers are exactly those of the repeated batch.

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

    /// Records one evaluation. `sample: [B', in_channels, H, W]`, `timestep: [B']`, `context: [B, S, Cc]`
    /// with B a multiple of B': the batch is `B / B'` copies of the sample, one after another (see the
    /// module notes). Output: `[B, out_channels, H, W]`.
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
        let batch = g.shape(context)[0];
        if !batch.is_multiple_of(s[0]) || g.shape(timestep) != [s[0]] {
            return Err(Error::shape(
                "unet",
                format!("the context's batch {batch} must be a multiple of the sample's {s:?}, and the timestep [{}]: got {:?}", s[0], g.shape(timestep)),
            ));
        }
        let x = if c.center_input_sample { g.scale("center_input_sample", sample, 2.0, -1.0)? } else { sample };

        // 1. time
        let emb = TimestepEmbedding::new(c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift as f32);
        let t = g.timestep_embedding("time_proj", timestep, emb)?;
        let t = self.linear_1.forward_act(g, t, Activation::Silu)?;
        // Every resnet applies silu to the embedding before its projection: do it once here. Resnets take
        // the embedding at the batch of their input (the sample's until the first cross-attention).
        let temb_shared = self.linear_2.forward_act(g, t, Activation::Silu)?;
        let temb_full = g.repeat_to_batch("time_embedding.repeat", temb_shared, batch)?;
        let temb_for = |g: &Graph, x: TensorId| if g.shape(x)[0] == batch { temb_full } else { temb_shared };

        // 2. pre-process
        let mut x = self.conv_in.forward(g, x, None)?;

        // 3. down
        let mut skips = vec![x];
        for block in &self.down {
            for (j, resnet) in block.resnets.iter().enumerate() {
                x = resnet.forward(g, x, Some(temb_for(g, x)))?;
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
        x = self.mid_resnets[0].forward(g, x, Some(temb_for(g, x)))?;
        x = self.mid_attention.forward(g, x, context, ff_chunk)?;
        x = self.mid_resnets[1].forward(g, x, Some(temb_for(g, x)))?;
        // From here on every tensor has the whole batch (a no-op where a cross-attention repeated x).
        x = g.repeat_to_batch("mid_block.repeat", x, batch)?;

        // 5. up
        for (i, block) in self.up.iter().enumerate() {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                let skip = g.repeat_to_batch(&format!("up_blocks.{i}.skip.{j}.repeat"), skip, batch)?;
                x = g.concat(&format!("up_blocks.{i}.cat.{j}"), x, skip, 1)?;
                x = resnet.forward(g, x, Some(temb_full))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorDesc;
    use crate::Plan;

    /// A guidance batch given its latents once (2 latents, 4 contexts) computes exactly what the batch
    /// with the latents repeated computes, and runs the layers before the first cross-attention on 2 rows.
    /// 32×32 latents, so the 3×3 convolutions take the Winograd path where the adapter would.
    #[test]
    fn shared_sample_gives_the_repeated_batch_bitwise() {
        let gpu = crate::testing::test_gpu();
        let config = UNetConfig::from_json(
            "test unet",
            r#"{"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64], "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "attention_head_dim": 2, "cross_attention_dim": 24, "norm_num_groups": 8}"#,
        )
        .unwrap();
        let unet = UNet2DConditionModel::from_weights(&gpu, config, &Weights::random(11)).unwrap();
        let mut rng = crate::testing::Rng::new(4);
        let latents = rng.vec(2 * 4 * 32 * 32, 1.0);
        let context = rng.vec(4 * 7 * 24, 1.0);
        let mut outs = Vec::new();
        for rows in [2, 4] {
            let mut g = Graph::new();
            let s = g.input("sample", TensorDesc::f32(&[rows, 4, 32, 32]));
            let t = g.input("timestep", TensorDesc::f32(&[rows]));
            let c = g.input("context", TensorDesc::f32(&[4, 7, 24]));
            let o = unet.forward(&mut g, s, t, c).unwrap();
            g.output(o);
            let self_attention_rows: Vec<usize> =
                g.nodes().iter().filter(|n| n.name.ends_with("attentions.0.transformer_blocks.0.attn1")).map(|n| g.shape(n.output)[0]).collect();
            assert_eq!(self_attention_rows, vec![rows, 4, 4], "the first self-attention of down_blocks.0, mid_block, up_blocks.1");
            let plan = Plan::new(gpu.clone(), g).unwrap();
            plan.write(s, &latents.repeat(rows / 2)).unwrap();
            plan.write(t, &vec![321.0; rows]).unwrap();
            plan.write(c, &context).unwrap();
            plan.run().unwrap();
            outs.push(plan.read(o).unwrap());
        }
        assert_eq!(outs[0].len(), 4 * 4 * 32 * 32);
        let differing = outs[0].iter().zip(&outs[1]).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "shared vs repeated latents: {differing} of {} outputs differ", outs[0].len());
    }
}
