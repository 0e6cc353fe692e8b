//! diffusers `ResnetBlock2D`, `Downsample2D` and `Upsample2D`, shared by the UNet and the VAE.

use crate::error::Result;
use crate::graph::{Graph, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::models::nn::{Conv2d, GroupNorm, Linear, Loader};

/// `ResnetBlock2D`: `x + conv2(silu(norm2(conv1(silu(norm1(x))) + temb)))`, with a 1×1 `conv_shortcut`
/// on `x` when the channel count changes. The shortcut and the residual add are fused into conv2.
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    out_channels: usize,
    name: String,
}

impl ResnetBlock2D {
    /// `temb_channels`: width of the time embedding (None in the VAE).
    pub fn load(l: &Loader, cin: usize, cout: usize, temb_channels: Option<usize>, groups: usize, eps: f64) -> Result<Self> {
        Ok(ResnetBlock2D {
            norm1: GroupNorm::load_before_conv(&l.pp("norm1"), groups, cin, eps)?,
            conv1: Conv2d::load(&l.pp("conv1"), cin, cout, 3, Conv2dOpts::new(1, 1))?,
            time_emb_proj: temb_channels.map(|t| Linear::load(&l.pp("time_emb_proj"), t, cout, true)).transpose()?,
            norm2: GroupNorm::load_before_conv(&l.pp("norm2"), groups, cout, eps)?,
            conv2: Conv2d::load(&l.pp("conv2"), cout, cout, 3, Conv2dOpts::new(1, 1))?,
            conv_shortcut: if cin != cout {
                Some(Conv2d::load(&l.pp("conv_shortcut"), cin, cout, 1, Conv2dOpts::new(1, 0))?)
            } else {
                None
            },
            out_channels: cout,
            name: l.path().to_string(),
        })
    }

    // x: [B, Cin, H, W]; temb_silu: silu(temb) [B, T] (already activated, shared by all blocks).
    pub fn forward(&self, g: &mut Graph, x: TensorId, temb_silu: Option<TensorId>) -> Result<TensorId> {
        // A recomputable segment for gradient checkpointing (diffusers checkpoints each resnet).
        let segment = g.segment_begin();
        let y = self.forward_inner(g, x, temb_silu)?;
        g.segment_end(segment);
        Ok(y)
    }

    fn forward_inner(&self, g: &mut Graph, x: TensorId, temb_silu: Option<TensorId>) -> Result<TensorId> {
        let h = self.norm1.forward(g, x, true)?;
        let mut h = self.conv1.forward(g, h, None)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb_silu) {
            let t = proj.forward(g, t)?; // [B, Cout]
            let b = g.shape(t)[0];
            let t = g.reshape(t, &[b, self.out_channels, 1, 1])?;
            h = g.add(&format!("{}.temb_add", self.name), h, t)?;
        }
        let h = self.norm2.forward(g, h, true)?;
        let shortcut = match &self.conv_shortcut {
            Some(c) => c.forward(g, x, None)?,
            None => x,
        };
        self.conv2.forward(g, h, Some(shortcut))
    }
}

/// `Downsample2D` with its conv: stride 2; `padding` 1 in the UNet, 0 in the VAE encoder (which pads the
/// right and bottom by one instead).
pub struct Downsample2D {
    conv: Conv2d,
}

impl Downsample2D {
    pub fn load(l: &Loader, channels: usize, padding: usize) -> Result<Self> {
        let opts = if padding == 0 { Conv2dOpts::asymmetric(2, 0, 1, 0, 1) } else { Conv2dOpts::new(2, padding) };
        Ok(Downsample2D { conv: Conv2d::load(&l.pp("conv"), channels, channels, 3, opts)? })
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        self.conv.forward(g, x, None)
    }
}

/// `Upsample2D` with its conv: nearest 2× then a 3×3 conv.
pub struct Upsample2D {
    conv: Conv2d,
    name: String,
}

impl Upsample2D {
    pub fn load(l: &Loader, channels: usize) -> Result<Self> {
        Ok(Upsample2D { conv: Conv2d::load(&l.pp("conv"), channels, channels, 3, Conv2dOpts::new(1, 1))?, name: l.path().to_string() })
    }

    /// `size`: the output size when it is not simply twice the input (diffusers' `upsample_size`, the size of
    /// the next skip connection when a latent side is not a multiple of 8).
    pub fn forward(&self, g: &mut Graph, x: TensorId, size: Option<(usize, usize)>) -> Result<TensorId> {
        let s = g.shape(x);
        let doubled = (2 * s[2], 2 * s[3]);
        match size {
            Some((h, w)) if (h, w) != doubled => {
                let up = g.upsample_nearest(&format!("{}.interpolate", self.name), x, h, w)?;
                self.conv.forward(g, up, None)
            }
            // The common case, 2×: upsampling fused into the conv (4 multiply-adds per output instead of 9).
            _ => self.conv.forward_upsampled(g, x),
        }
    }
}
