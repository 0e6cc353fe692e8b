//! `DPTDepthEstimationHead` (weights under `head.head.*`): conv 3×3 (F → F/2), bilinear 2× upsampling
//! (align_corners=True), conv 3×3 (→ 32), ReLU, conv 1×1 (→ 1), ReLU; the channel axis is squeezed.

use crate::error::Result;
use crate::graph::{Graph, TensorId};
use crate::kernels::unary::Activation;
use crate::models::dpt::config::DptConfig;
use crate::models::dpt::layers::{Conv, Pad};
use crate::models::nn::Loader;

pub struct DptDepthEstimationHead {
    conv0: Conv,
    conv2: Conv,
    conv4: Conv,
    name: String,
}

impl DptDepthEstimationHead {
    /// `l` is `head`.
    pub fn load(l: &Loader, c: &DptConfig) -> Result<Self> {
        let f = c.fusion_hidden_size;
        let h = l.pp("head");
        Ok(DptDepthEstimationHead {
            conv0: Conv::load(&h.pp(0), f, f / 2, 3, 1, Pad::Fixed(1), true)?,
            conv2: Conv::load(&h.pp(2), f / 2, 32, 3, 1, Pad::Fixed(1), true)?,
            conv4: Conv::load(&h.pp(4), 32, 1, 1, 1, Pad::Fixed(0), true)?,
            name: h.path().to_string(),
        })
    }

    // x: [B, F, h, w] → predicted_depth [B, 2h, 2w]
    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = self.conv0.forward(g, x, None)?;
        let s = g.shape(h).to_vec();
        let h = g.bilinear(&format!("{}.1", self.name), h, 2 * s[2], 2 * s[3], true)?;
        let h = self.conv2.forward(g, h, None)?;
        let h = g.activation(&format!("{}.3", self.name), h, Activation::Relu)?;
        let h = self.conv4.forward(g, h, None)?;
        let h = g.activation(&format!("{}.5", self.name), h, Activation::Relu)?;
        g.reshape(h, &[s[0], 2 * s[2], 2 * s[3]])
    }
}
