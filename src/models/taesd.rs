//! diffusers `AutoencoderTiny` (TAESD, e.g. madebyollin/taesd): `EncoderTiny` and `DecoderTiny` of
//! autoencoders/vae.py built from `AutoencoderTinyBlock` (unet_2d_blocks.py). Both are one `nn.Sequential`
//! called `layers`, so weights are `encoder.layers.<i>.*` / `decoder.layers.<i>.*` with `i` counting every
//! module, parameterless ones (ReLU, Upsample) included.
//!
//! `decode(latent).sample` is the decoder on the raw latent and `encode(image).latents` the encoder's raw
//! output: `latent_magnitude`/`latent_shift` only matter to diffusers' `scale_latents` helpers, and the
//! `scaling_factor` (1.0 for TAESD) is the pipeline's job, as with `AutoencoderKL`.

use std::path::Path;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::kernels::unary::Activation;
use crate::models::clip::weight_file;
use crate::models::config::AutoencoderTinyConfig;
use crate::models::nn::{Conv2d, Loader};
use crate::models::weights::Weights;

/// `AutoencoderTinyBlock`: `relu(conv(x) + skip(x))` with `conv` = conv3×3, ReLU, conv3×3, ReLU, conv3×3
/// (`conv.0`, `conv.2`, `conv.4`) and `skip` a bias-free 1×1 conv when the channel count changes.
pub struct AutoencoderTinyBlock {
    conv: [Conv2d; 3],
    skip: Option<Conv2d>,
    name: String,
}

impl AutoencoderTinyBlock {
    pub fn load(l: &Loader, cin: usize, cout: usize) -> Result<Self> {
        let k3 = Conv2dOpts::new(1, 1);
        let c = l.pp("conv");
        Ok(AutoencoderTinyBlock {
            conv: [Conv2d::load(&c.pp(0), cin, cout, 3, k3)?, Conv2d::load(&c.pp(2), cout, cout, 3, k3)?, Conv2d::load(&c.pp(4), cout, cout, 3, k3)?],
            skip: if cin != cout { Some(Conv2d::load_with_bias(&l.pp("skip"), cin, cout, 1, Conv2dOpts::new(1, 0), false)?) } else { None },
            name: l.path().to_string(),
        })
    }

    // x: [B, Cin, H, W] → [B, Cout, H, W]
    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = self.conv[0].forward(g, x, None)?;
        let h = g.activation(&format!("{}.conv.1", self.name), h, Activation::Relu)?;
        let h = self.conv[1].forward(g, h, None)?;
        let h = g.activation(&format!("{}.conv.3", self.name), h, Activation::Relu)?;
        let skip = match &self.skip {
            Some(s) => s.forward(g, x, None)?,
            None => x,
        };
        // The skip add is fused into the last conv's epilogue.
        let h = self.conv[2].forward(g, h, Some(skip))?;
        g.activation(&format!("{}.fuse", self.name), h, Activation::Relu)
    }
}

/// One module of a `layers` sequence.
enum Layer {
    Conv(Conv2d),
    Relu(String),
    Block(AutoencoderTinyBlock),
    /// `nn.Upsample(scale_factor, mode="nearest")`.
    Upsample(String, usize),
}

/// `nn.Sequential` of [`Layer`]s, numbered as diffusers numbers them.
struct Layers {
    layers: Vec<Layer>,
}

impl Layers {
    fn forward(&self, g: &mut Graph, mut x: TensorId) -> Result<TensorId> {
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(c) => c.forward(g, x, None)?,
                Layer::Relu(name) => g.activation(name, x, Activation::Relu)?,
                Layer::Block(b) => b.forward(g, x)?,
                Layer::Upsample(name, f) => {
                    let s = g.shape(x).to_vec();
                    g.upsample_nearest(name, x, s[2] * f, s[3] * f)?
                }
            };
        }
        Ok(x)
    }
}

/// `EncoderTiny`: per block a conv (the first 3×3 from the image, the others 3×3 stride 2 without bias)
/// followed by its `AutoencoderTinyBlock`s, then a 3×3 conv to the latent channels.
pub struct EncoderTiny {
    layers: Layers,
    name: String,
}

impl EncoderTiny {
    pub fn load(l: &Loader, c: &AutoencoderTinyConfig) -> Result<Self> {
        let ll = l.pp("layers");
        let mut layers = Vec::new();
        for (i, (&ch, &blocks)) in c.encoder_block_out_channels.iter().zip(&c.num_encoder_blocks).enumerate() {
            let at = ll.pp(layers.len());
            layers.push(Layer::Conv(if i == 0 {
                Conv2d::load(&at, c.in_channels, ch, 3, Conv2dOpts::new(1, 1))?
            } else {
                Conv2d::load_with_bias(&at, ch, ch, 3, Conv2dOpts::new(2, 1), false)?
            }));
            for _ in 0..blocks {
                layers.push(Layer::Block(AutoencoderTinyBlock::load(&ll.pp(layers.len()), ch, ch)?));
            }
        }
        let last = *c.encoder_block_out_channels.last().expect("config checked non-empty");
        layers.push(Layer::Conv(Conv2d::load(&ll.pp(layers.len()), last, c.latent_channels, 3, Conv2dOpts::new(1, 1))?));
        Ok(EncoderTiny { layers: Layers { layers }, name: l.path().to_string() })
    }

    // image: [B, 3, H, W] in [-1, 1] → latents [B, latent, H/8, W/8]
    pub fn forward(&self, g: &mut Graph, image: TensorId) -> Result<TensorId> {
        // TAESD works on images in [0, 1]: x.add(1).div(2).
        let x = g.scale(&format!("{}.to_unit_range", self.name), image, 0.5, 0.5)?;
        self.layers.forward(g, x)
    }
}

/// `DecoderTiny`: a 3×3 conv and ReLU, then per block its `AutoencoderTinyBlock`s, a nearest upsample
/// (not after the last) and a 3×3 conv (bias-free except the last, which maps to the image channels).
pub struct DecoderTiny {
    layers: Layers,
    name: String,
}

impl DecoderTiny {
    pub fn load(l: &Loader, c: &AutoencoderTinyConfig) -> Result<Self> {
        let ll = l.pp("layers");
        let ch = &c.decoder_block_out_channels;
        let mut layers = vec![Layer::Conv(Conv2d::load(&ll.pp(0), c.latent_channels, ch[0], 3, Conv2dOpts::new(1, 1))?)];
        layers.push(Layer::Relu(format!("{}.1", ll.path())));
        let n = ch.len();
        for (i, (&ch, &blocks)) in ch.iter().zip(&c.num_decoder_blocks).enumerate() {
            let last = i + 1 == n;
            for _ in 0..blocks {
                layers.push(Layer::Block(AutoencoderTinyBlock::load(&ll.pp(layers.len()), ch, ch)?));
            }
            if !last {
                layers.push(Layer::Upsample(format!("{}.{}", ll.path(), layers.len()), c.upsampling_scaling_factor));
            }
            let cout = if last { c.out_channels } else { ch };
            layers.push(Layer::Conv(Conv2d::load_with_bias(&ll.pp(layers.len()), ch, cout, 3, Conv2dOpts::new(1, 1), last)?));
        }
        Ok(DecoderTiny { layers: Layers { layers }, name: l.path().to_string() })
    }

    // latent: [B, latent, h, w] → image [B, 3, 8h, 8w] in about [-1, 1]
    pub fn forward(&self, g: &mut Graph, latent: TensorId) -> Result<TensorId> {
        // Soft clamp of the latent to (-3, 3): torch.tanh(x / 3) * 3.
        let x = g.op(&format!("{}.clamp", self.name), crate::kernels::unary::Map { act: Activation::Tanh, alpha: 1.0 / 3.0, beta: 0.0 }, &[latent])?;
        let x = g.scale(&format!("{}.clamp_scale", self.name), x, 3.0, 0.0)?;
        let x = self.layers.forward(g, x)?;
        // [0, 1] → [-1, 1]: x.mul(2).sub(1).
        g.scale(&format!("{}.to_signed_range", self.name), x, 2.0, -1.0)
    }
}

pub struct AutoencoderTiny {
    pub config: AutoencoderTinyConfig,
    pub encoder: EncoderTiny,
    pub decoder: DecoderTiny,
}

impl AutoencoderTiny {
    /// Loads a diffusers `AutoencoderTiny` folder (`config.json` + `diffusion_pytorch_model.safetensors`).
    pub fn load(gpu: &Gpu, dir: &Path) -> Result<Self> {
        let config = AutoencoderTinyConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&[weight_file(dir, "diffusion_pytorch_model", None)?])?;
        Self::from_weights(gpu, config, &weights)
    }

    pub fn from_weights(gpu: &Gpu, config: AutoencoderTinyConfig, weights: &Weights) -> Result<Self> {
        let l = Loader::new(gpu, weights).with_precision(gpu.vae_precision).keeping_stored_f16();
        Ok(AutoencoderTiny {
            encoder: EncoderTiny::load(&l.pp("encoder"), &config)?,
            decoder: DecoderTiny::load(&l.pp("decoder"), &config)?,
            config,
        })
    }

    /// Records `encode(image).latents`: image `[B, 3, H, W]` in [-1, 1] → latents `[B, L, H/8, W/8]`.
    pub fn encode(&self, g: &mut Graph, image: TensorId) -> Result<TensorId> {
        self.encoder.forward(g, image)
    }

    /// Records `decode(latent).sample`: latents `[B, L, h, w]` → image `[B, 3, 8h, 8w]` in about [-1, 1].
    pub fn decode(&self, g: &mut Graph, latent: TensorId) -> Result<TensorId> {
        self.decoder.forward(g, latent)
    }
}
