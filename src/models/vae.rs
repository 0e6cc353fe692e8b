//! `AutoencoderKL`: the encoder (image → latent mean and log-variance) and the decoder (latent → image).
//! Scaling by `scaling_factor` is the pipeline's job, as in diffusers.

use std::path::Path;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::models::clip::weight_file;
use crate::models::config::VaeConfig;
use crate::models::nn::{Conv2d, GroupNorm, Loader};
use crate::models::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::models::transformer::VaeAttention;
use crate::models::weights::Weights;

const EPS: f64 = 1e-6;

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
pub struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Option<VaeAttention>,
}

impl MidBlock {
    pub fn load(l: &Loader, ch: usize, groups: usize, attention: bool) -> Result<Self> {
        Ok(MidBlock {
            resnets: [
                ResnetBlock2D::load(&l.pp("resnets").pp(0), ch, ch, None, groups, EPS)?,
                ResnetBlock2D::load(&l.pp("resnets").pp(1), ch, ch, None, groups, EPS)?,
            ],
            attention: if attention { Some(VaeAttention::load(&l.pp("attentions").pp(0), ch, groups)?) } else { None },
        })
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let mut x = self.resnets[0].forward(g, x, None)?;
        if let Some(a) = &self.attention {
            x = a.forward(g, x)?;
        }
        self.resnets[1].forward(g, x, None)
    }
}

/// `DownEncoderBlock2D`: resnets, then a stride-2 downsample except in the last block.
pub struct DownEncoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsample: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn load(l: &Loader, cin: usize, cout: usize, layers: usize, groups: usize, downsample: bool) -> Result<Self> {
        Ok(DownEncoderBlock2D {
            resnets: (0..layers)
                .map(|j| ResnetBlock2D::load(&l.pp("resnets").pp(j), if j == 0 { cin } else { cout }, cout, None, groups, EPS))
                .collect::<Result<_>>()?,
            downsample: if downsample { Some(Downsample2D::load(&l.pp("downsamplers").pp(0), cout, 0)?) } else { None },
        })
    }

    pub fn forward(&self, g: &mut Graph, mut x: TensorId) -> Result<TensorId> {
        for r in &self.resnets {
            x = r.forward(g, x, None)?;
        }
        match &self.downsample {
            Some(d) => d.forward(g, x),
            None => Ok(x),
        }
    }
}

/// `UpDecoderBlock2D`: resnets, then a nearest 2× upsample and conv except in the last block.
pub struct UpDecoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsample: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn load(l: &Loader, cin: usize, cout: usize, layers: usize, groups: usize, upsample: bool) -> Result<Self> {
        Ok(UpDecoderBlock2D {
            resnets: (0..layers)
                .map(|j| ResnetBlock2D::load(&l.pp("resnets").pp(j), if j == 0 { cin } else { cout }, cout, None, groups, EPS))
                .collect::<Result<_>>()?,
            upsample: if upsample { Some(Upsample2D::load(&l.pp("upsamplers").pp(0), cout)?) } else { None },
        })
    }

    pub fn forward(&self, g: &mut Graph, mut x: TensorId) -> Result<TensorId> {
        for r in &self.resnets {
            x = r.forward(g, x, None)?;
        }
        match &self.upsample {
            Some(u) => u.forward(g, x, None),
            None => Ok(x),
        }
    }
}

pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownEncoderBlock2D>,
    mid: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

pub struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<UpDecoderBlock2D>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub struct AutoencoderKL {
    pub config: VaeConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
}

impl AutoencoderKL {
    pub fn load(gpu: &Gpu, dir: &Path, variant: Option<&str>) -> Result<Self> {
        let config = VaeConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&[weight_file(dir, "diffusion_pytorch_model", variant)?])?;
        Self::from_weights(gpu, config, &weights)
    }

    pub fn from_weights(gpu: &Gpu, c: VaeConfig, weights: &Weights) -> Result<Self> {
        let l = Loader::new(gpu, weights).with_precision(gpu.vae_precision).keeping_stored_f16();
        let ch = &c.block_out_channels;
        let n = ch.len();
        let groups = c.norm_num_groups;
        let (lat, k3) = (c.latent_channels, Conv2dOpts::new(1, 1));
        let one = Conv2dOpts::new(1, 0);

        let e = l.pp("encoder");
        let mut down = Vec::new();
        let mut out_ch = ch[0];
        for i in 0..n {
            let in_ch = out_ch;
            out_ch = ch[i];
            let bl = e.pp("down_blocks").pp(i);
            down.push(DownEncoderBlock2D::load(&bl, in_ch, out_ch, c.layers_per_block, groups, i + 1 < n)?);
        }
        let encoder = Encoder {
            conv_in: Conv2d::load(&e.pp("conv_in"), c.in_channels, ch[0], 3, k3)?,
            down,
            mid: MidBlock::load(&e.pp("mid_block"), ch[n - 1], groups, c.mid_block_add_attention)?,
            conv_norm_out: GroupNorm::load(&e.pp("conv_norm_out"), groups, ch[n - 1], EPS)?,
            conv_out: Conv2d::load(&e.pp("conv_out"), ch[n - 1], 2 * lat, 3, k3)?,
            quant_conv: if c.use_quant_conv { Some(Conv2d::load(&l.pp("quant_conv"), 2 * lat, 2 * lat, 1, one)?) } else { None },
        };

        let d = l.pp("decoder");
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up = Vec::new();
        let mut out_ch = rev[0];
        for i in 0..n {
            let prev = out_ch;
            out_ch = rev[i];
            let bl = d.pp("up_blocks").pp(i);
            up.push(UpDecoderBlock2D::load(&bl, prev, out_ch, c.layers_per_block + 1, groups, i + 1 < n)?);
        }
        let decoder = Decoder {
            post_quant_conv: if c.use_post_quant_conv { Some(Conv2d::load(&l.pp("post_quant_conv"), lat, lat, 1, one)?) } else { None },
            conv_in: Conv2d::load(&d.pp("conv_in"), lat, rev[0], 3, k3)?,
            mid: MidBlock::load(&d.pp("mid_block"), rev[0], groups, c.mid_block_add_attention)?,
            up,
            conv_norm_out: GroupNorm::load(&d.pp("conv_norm_out"), groups, ch[0], EPS)?,
            conv_out: Conv2d::load(&d.pp("conv_out"), ch[0], c.out_channels, 3, k3)?,
        };
        Ok(AutoencoderKL { config: c, encoder, decoder })
    }

    /// Records the encoder: image `[B, 3, H, W]` in [-1, 1] → moments `[B, 2·latent, H/8, W/8]` (mean, then
    /// log-variance before clamping; see [`split_moments`]).
    pub fn encode(&self, g: &mut Graph, image: TensorId) -> Result<TensorId> {
        let e = &self.encoder;
        let mut x = e.conv_in.forward(g, image, None)?;
        for block in &e.down {
            x = block.forward(g, x)?;
        }
        x = e.mid.forward(g, x)?;
        x = e.conv_norm_out.forward(g, x, true)?;
        x = e.conv_out.forward(g, x, None)?;
        match &e.quant_conv {
            Some(q) => q.forward(g, x, None),
            None => Ok(x),
        }
    }

    /// Records the decoder: latent `[B, latent, h, w]` (already divided by the scaling factor) → image
    /// `[B, 3, 8h, 8w]` in about [-1, 1].
    pub fn decode(&self, g: &mut Graph, latent: TensorId) -> Result<TensorId> {
        let d = &self.decoder;
        let mut x = match &d.post_quant_conv {
            Some(p) => p.forward(g, latent, None)?,
            None => latent,
        };
        x = d.conv_in.forward(g, x, None)?;
        x = d.mid.forward(g, x)?;
        for block in &d.up {
            x = block.forward(g, x)?;
        }
        x = d.conv_norm_out.forward(g, x, true)?;
        d.conv_out.forward(g, x, None)
    }
}

/// Splits encoder moments `[B, 2L, h, w]` into the mean and the log-variance clamped to [-30, 20]
/// (diffusers' `DiagonalGaussianDistribution`).
pub fn split_moments(moments: &[f32], batch: usize, latent: usize, hw: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = Vec::with_capacity(batch * latent * hw);
    let mut logvar = Vec::with_capacity(batch * latent * hw);
    for b in 0..batch {
        let base = b * 2 * latent * hw;
        mean.extend_from_slice(&moments[base..base + latent * hw]);
        logvar.extend(moments[base + latent * hw..base + 2 * latent * hw].iter().map(|v| v.clamp(-30.0, 20.0)));
    }
    (mean, logvar)
}
