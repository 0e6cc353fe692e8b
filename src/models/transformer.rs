//! diffusers `Attention`, `BasicTransformerBlock` and `Transformer2DModel` (the UNet's spatial
//! transformer), plus the VAE's single-head attention block.

use crate::error::Result;
use crate::graph::{Graph, TensorId};
use crate::kernels::attention::AttentionOpts;
use crate::models::nn::{GroupNorm, LayerNorm, Linear, Loader};

/// `Attention`: `to_out.0(attention(to_q(x), to_k(ctx), to_v(ctx)))`. All math is f32, so diffusers'
/// `upcast_attention` / `upcast_softmax` are always satisfied.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    name: String,
}

impl Attention {
    /// `qkv_bias`: false in the UNet, true in the VAE.
    pub fn load(l: &Loader, query_dim: usize, context_dim: usize, heads: usize, head_dim: usize, qkv_bias: bool) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Attention {
            to_q: Linear::load(&l.pp("to_q"), query_dim, inner, qkv_bias)?,
            to_k: Linear::load(&l.pp("to_k"), context_dim, inner, qkv_bias)?,
            to_v: Linear::load(&l.pp("to_v"), context_dim, inner, qkv_bias)?,
            to_out: Linear::load(&l.pp("to_out").pp(0), inner, query_dim, true)?,
            heads,
            name: l.path().to_string(),
        })
    }

    // x: [B, N, C]; context: [B, M, Cc] (x itself for self-attention) → [B, N, C].
    pub fn forward(&self, g: &mut Graph, x: TensorId, context: Option<TensorId>) -> Result<TensorId> {
        let ctx = context.unwrap_or(x);
        let q = self.to_q.forward(g, x)?;
        let k = self.to_k.forward(g, ctx)?;
        let v = self.to_v.forward(g, ctx)?;
        let opts = AttentionOpts { heads: self.heads, ..Default::default() };
        let a = g.attention(&self.name, q, k, v, opts)?;
        self.to_out.forward(g, a)
    }
}

/// `BasicTransformerBlock` with a GEGLU feed-forward.
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_proj: Linear,
    ff_out: Linear,
    name: String,
}

impl BasicTransformerBlock {
    pub fn load(l: &Loader, dim: usize, heads: usize, head_dim: usize, cross_dim: usize) -> Result<Self> {
        let inner_ff = 4 * dim;
        Ok(BasicTransformerBlock {
            norm1: LayerNorm::load(&l.pp("norm1"), dim, 1e-5)?,
            attn1: Attention::load(&l.pp("attn1"), dim, dim, heads, head_dim, false)?,
            norm2: LayerNorm::load(&l.pp("norm2"), dim, 1e-5)?,
            attn2: Attention::load(&l.pp("attn2"), dim, cross_dim, heads, head_dim, false)?,
            norm3: LayerNorm::load(&l.pp("norm3"), dim, 1e-5)?,
            ff_proj: Linear::load(&l.pp("ff").pp("net").pp(0).pp("proj"), dim, 2 * inner_ff, true)?,
            ff_out: Linear::load(&l.pp("ff").pp("net").pp(2), inner_ff, dim, true)?,
            name: l.path().to_string(),
        })
    }

    // x: [B, N, C]; context: [B, 77, Cc] → [B, N, C]. Or x: [B', N, C] with B a multiple of B' (a
    // classifier-free guidance batch whose copies share x, see `UNet2DConditionModel::forward_chunked`):
    // the self-attention runs on the B' distinct rows, which are repeated where the context enters.
    pub fn forward(&self, g: &mut Graph, x: TensorId, context: TensorId, ff_chunk: FeedForwardChunking) -> Result<TensorId> {
        // A recomputable segment for gradient checkpointing (diffusers checkpoints each transformer block).
        let segment = g.segment_begin();
        let y = self.forward_inner(g, x, context, ff_chunk)?;
        g.segment_end(segment);
        Ok(y)
    }

    fn forward_inner(&self, g: &mut Graph, x: TensorId, context: TensorId, ff_chunk: FeedForwardChunking) -> Result<TensorId> {
        let h = self.norm1.forward(g, x)?;
        let h = self.attn1.forward(g, h, None)?;
        let x = g.add(&format!("{}.attn1_residual", self.name), x, h)?;
        let x = g.repeat_to_batch(&format!("{}.repeat", self.name), x, g.shape(context)[0])?;
        let h = self.norm2.forward(g, x)?;
        let h = self.attn2.forward(g, h, Some(context))?;
        let x = g.add(&format!("{}.attn2_residual", self.name), x, h)?;
        let h = self.norm3.forward(g, x)?;
        let h = self.feed_forward(g, h, ff_chunk)?;
        g.add(&format!("{}.ff_residual", self.name), x, h)
    }

    // h: [B, N, C] → [B, N, C]: `ff.net.2(geglu(ff.net.0.proj(h)))`, in runs of tokens where chunking asks for
    // it (each token's result is the same either way: rows of a product are computed alone).
    fn feed_forward(&self, g: &mut Graph, h: TensorId, chunking: FeedForwardChunking) -> Result<TensorId> {
        let s = g.shape(h).to_vec();
        let (b, n) = (s[0], s[1]);
        let proj_bytes = (b * n * self.ff_proj.out_features() * 4) as u64;
        let parts = match chunking.max_proj_bytes {
            Some(cap) => (proj_bytes.div_ceil(cap.max(1)) as usize).clamp(1, n),
            None => 1,
        };
        let ff = |g: &mut Graph, h: TensorId| -> Result<TensorId> {
            let geglu = format!("{}.ff.net.0", self.name);
            let h = if chunking.fuse_geglu {
                self.ff_proj.forward_geglu(g, h, &geglu)?
            } else {
                let h = self.ff_proj.forward(g, h)?;
                g.geglu(&geglu, h)?
            };
            self.ff_out.forward(g, h)
        };
        if parts == 1 {
            return ff(g, h);
        }
        let mut out: Option<TensorId> = None;
        for i in 0..parts {
            let (t0, t1) = (i * n / parts, (i + 1) * n / parts);
            let piece = g.slice(&format!("{}.ff.chunk{i}", self.name), h, 1, t0, t1 - t0)?;
            let y = ff(g, piece)?;
            out = Some(match out {
                None => y,
                Some(prev) => g.concat(&format!("{}.ff.chunks{i}", self.name), prev, y, 1)?,
            });
        }
        Ok(out.expect("at least two parts"))
    }
}

/// diffusers' feed-forward chunking (`enable_forward_chunking`): each transformer block runs its
/// feed-forward on runs of tokens so its largest intermediate (the GEGLU projection, 8·C values per token:
/// 80 MiB for SD 1.5's 2×4096 tokens at 64×64 latents) stays under `max_proj_bytes`. Same results; costs a
/// slice and a concatenation per run. Inference only: slices have no backward rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct FeedForwardChunking {
    pub max_proj_bytes: Option<u64>,
    /// The projection and GEGLU as one op ([`crate::kernels::linear_geglu`]; inference only, same results).
    pub fuse_geglu: bool,
}

impl FeedForwardChunking {
    /// What generation uses: projections of at most 48 MiB. At 512² the 80 MiB projections of the five
    /// 64×64 blocks go in two runs (proj + GEGLU output 120 → 60 MiB alive, with the 64×64 Winograd convs
    /// done image by image the UNet's live peak 160 → 142 MiB); the 32×32 blocks' 40 MiB stay whole.
    /// Smaller runs cost more than they save: 32 MiB runs everywhere took 0.4 s per evaluation on
    /// lavapipe (25 slices, 15 concatenations).
    pub const INFERENCE: FeedForwardChunking = FeedForwardChunking { max_proj_bytes: Some(48 << 20), fuse_geglu: true };
}

/// `Transformer2DModel`: GroupNorm, `proj_in`, transformer blocks on tokens, `proj_out`, residual.
/// `proj_in`/`proj_out` are 1×1 convs in SD 1.x and linears in SD 2.x (`use_linear_projection`): on tokens
/// both are the same product, so both load as linears (a `(C, C, 1, 1)` weight reads as `(C, C)`).
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Linear,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
    name: String,
}

impl Transformer2DModel {
    pub fn load(l: &Loader, channels: usize, heads: usize, cross_dim: usize, layers: usize, groups: usize) -> Result<Self> {
        let head_dim = channels / heads;
        let inner = heads * head_dim;
        Ok(Transformer2DModel {
            norm: GroupNorm::load(&l.pp("norm"), groups, channels, 1e-6)?,
            proj_in: Linear::load(&l.pp("proj_in"), channels, inner, true)?,
            blocks: (0..layers)
                .map(|i| BasicTransformerBlock::load(&l.pp("transformer_blocks").pp(i), inner, heads, head_dim, cross_dim))
                .collect::<Result<_>>()?,
            proj_out: Linear::load(&l.pp("proj_out"), inner, channels, true)?,
            name: l.path().to_string(),
        })
    }

    // x: [B, C, H, W]; context: [B, 77, Cc] → [B, C, H, W]. x may hold B' rows that the context's batch
    // repeats (see `BasicTransformerBlock::forward`); the output has the context's batch.
    pub fn forward(&self, g: &mut Graph, x: TensorId, context: TensorId, ff_chunk: FeedForwardChunking) -> Result<TensorId> {
        let mut s = g.shape(x).to_vec();
        let (b, c, hw) = (s[0], s[1], s[2] * s[3]);
        let h = self.norm.forward(g, x, false)?;
        let h = g.reshape(h, &[b, c, hw])?;
        let h = g.transpose(&format!("{}.to_tokens", self.name), h)?; // [B, HW, C]
        let mut h = self.proj_in.forward(g, h)?;
        for block in &self.blocks {
            h = block.forward(g, h, context, ff_chunk)?;
        }
        let h = self.proj_out.forward(g, h)?;
        let h = g.transpose(&format!("{}.to_channels", self.name), h)?; // [B, C, HW]
        s[0] = g.shape(h)[0];
        let h = g.reshape(h, &s)?;
        let x = g.repeat_to_batch(&format!("{}.residual_repeat", self.name), x, s[0])?;
        g.add(&format!("{}.residual", self.name), x, h)
    }
}

/// The VAE's attention block: GroupNorm, one head over all channels (with q/k/v biases), residual.
pub struct VaeAttention {
    group_norm: GroupNorm,
    attn: Attention,
    name: String,
}

impl VaeAttention {
    pub fn load(l: &Loader, channels: usize, groups: usize) -> Result<Self> {
        Ok(VaeAttention {
            group_norm: GroupNorm::load(&l.pp("group_norm"), groups, channels, 1e-6)?,
            attn: Attention::load(l, channels, channels, 1, channels, true)?,
            name: l.path().to_string(),
        })
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let s = g.shape(x).to_vec();
        let (b, c, hw) = (s[0], s[1], s[2] * s[3]);
        let h = self.group_norm.forward(g, x, false)?;
        let h = g.reshape(h, &[b, c, hw])?;
        let h = g.transpose(&format!("{}.to_tokens", self.name), h)?;
        let h = self.attn.forward(g, h, None)?;
        let h = g.transpose(&format!("{}.to_channels", self.name), h)?;
        let h = g.reshape(h, &s)?;
        g.add(&format!("{}.residual", self.name), x, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::weights::Weights;
    use crate::tensor::TensorDesc;
    use crate::Plan;

    /// Chunked feed-forwards give the unchunked block's result: 100 tokens in 4 runs of 25, and in one run
    /// per token; so does the fused projection + GEGLU (bit for bit: the same f32 operations), whole and
    /// in runs.
    #[test]
    fn chunked_feed_forward_matches_the_whole() {
        let gpu = crate::testing::test_gpu();
        let weights = Weights::random(3);
        let block = BasicTransformerBlock::load(&Loader::new(&gpu, &weights).pp("block"), 64, 2, 32, 24).unwrap();
        let proj_bytes = 2 * 100 * 512 * 4;
        let mut outs = Vec::new();
        for (cap, fuse_geglu) in [(None, false), (Some(proj_bytes / 4), false), (Some(1), false), (None, true), (Some(proj_bytes / 4), true)] {
            let mut g = Graph::new();
            let x = g.input("x", TensorDesc::f32(&[2, 100, 64]));
            let ctx = g.input("ctx", TensorDesc::f32(&[2, 7, 24]));
            let y = block.forward(&mut g, x, ctx, FeedForwardChunking { max_proj_bytes: cap, fuse_geglu }).unwrap();
            g.output(y);
            let slices = g.nodes().iter().filter(|n| n.op.kind() == "slice").count();
            assert_eq!(slices, match cap { None => 0, Some(1) => 100, _ => 4 });
            let fused = g.nodes().iter().filter(|n| n.op.kind() == "linear_geglu").count();
            assert_eq!(fused, if fuse_geglu { slices.max(1) } else { 0 });
            let plan = Plan::new(gpu.clone(), g).unwrap();
            let mut rng = crate::testing::Rng::new(5);
            plan.write(x, &rng.vec(2 * 100 * 64, 1.0)).unwrap();
            plan.write(ctx, &rng.vec(2 * 7 * 24, 1.0)).unwrap();
            plan.run().unwrap();
            outs.push(plan.read(y).unwrap());
        }
        for o in &outs[1..3] {
            let err = crate::testing::rel_l2(o, &outs[0]);
            assert!(err <= 1e-6, "chunked vs whole: relative L2 {err:.3e}");
        }
        assert!(outs[3] == outs[0] && outs[4] == outs[1], "the fused GEGLU changed the block's output");
    }
}
