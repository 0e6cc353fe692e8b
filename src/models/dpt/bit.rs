//! The BiT backbone of DPT-hybrid (transformers `BitBackbone`, `layer_type="bottleneck"`, "SAME" padding),
//! weights under `dpt.embeddings.backbone.bit.*`.
//!
//! ```text
//! pixels → embedder { WS-conv 7×7/2 → GroupNorm+act → max-pool 3×3/2 }                  "stem"
//!        → stages × layers × { shortcut = GN(WS-conv 1×1/s) (first layer);
//!                              act(GN(conv1)) → act(GN(conv2 3×3/s)) → GN(conv3) ; act(· + shortcut) } "stageN"
//! ```
//! The feature maps named in `out_features` are returned.

use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::unary::Activation;
use crate::models::dpt::config::{activation, make_div, BitConfig};
use crate::models::dpt::layers::{dynamic_pad, Conv};
use crate::models::nn::Loader;
use crate::models::weights::Weights;

/// Every BiT convolution standardises its weights with this epsilon.
const WS_EPS: f64 = 1e-8;
/// `BitGroupNormActivation`'s GroupNorm epsilon.
const GN_EPS: f64 = 1e-5;

/// `BitGroupNormActivation`: GroupNorm with the activation fused (or none).
struct GnAct {
    weight: Arc<Param>,
    bias: Arc<Param>,
    groups: usize,
    act: Activation,
    name: String,
}

impl GnAct {
    fn load(l: &Loader, c: &BitConfig, channels: usize, act: bool) -> Result<Self> {
        Ok(GnAct {
            weight: l.tensor("weight", &[channels])?,
            bias: l.tensor("bias", &[channels])?,
            groups: c.num_groups,
            act: if act { activation(&c.hidden_act).expect("validated") } else { Activation::None },
            name: l.path().to_string(),
        })
    }

    fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let (w, b) = (g.param(&self.weight), g.param(&self.bias));
        g.group_norm_act(&self.name, x, self.groups, GN_EPS as f32, Some(w), Some(b), self.act)
    }
}

/// `BitEmbeddings`: stem convolution, norm + activation, max pool.
struct BitEmbeddings {
    convolution: Conv,
    norm: GnAct,
    dynamic_pool_pad: bool,
    name: String,
}

/// `BitBottleneckLayer` (non-pre-activation, "v1.5").
struct BitBottleneckLayer {
    downsample: Option<(Conv, GnAct)>,
    conv1: Conv,
    norm1: GnAct,
    conv2: Conv,
    norm2: GnAct,
    conv3: Conv,
    norm3: GnAct,
    act: Activation,
    name: String,
}

impl BitBottleneckLayer {
    fn load(l: &Loader, w: &Weights, c: &BitConfig, cin: usize, cout: usize, stride: usize, first: bool) -> Result<Self> {
        let mid = make_div(cout as f64 * 0.25);
        let downsample = if first {
            let d = l.pp("downsample");
            Some((Conv::load_standardized(&d.pp("conv"), w, cin, cout, 1, stride, WS_EPS)?, GnAct::load(&d.pp("norm"), c, cout, false)?))
        } else {
            None
        };
        Ok(BitBottleneckLayer {
            downsample,
            conv1: Conv::load_standardized(&l.pp("conv1"), w, cin, mid, 1, 1, WS_EPS)?,
            norm1: GnAct::load(&l.pp("norm1"), c, mid, true)?,
            conv2: Conv::load_standardized(&l.pp("conv2"), w, mid, mid, 3, stride, WS_EPS)?,
            norm2: GnAct::load(&l.pp("norm2"), c, mid, true)?,
            conv3: Conv::load_standardized(&l.pp("conv3"), w, mid, cout, 1, 1, WS_EPS)?,
            norm3: GnAct::load(&l.pp("norm3"), c, cout, false)?,
            act: activation(&c.hidden_act).expect("validated"),
            name: l.path().to_string(),
        })
    }

    // x: [B, Cin, H, W] → [B, Cout, H/s, W/s]
    fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let shortcut = match &self.downsample {
            Some((conv, norm)) => {
                let s = conv.forward(g, x, None)?;
                norm.forward(g, s)?
            }
            None => x,
        };
        let h = self.conv1.forward(g, x, None)?;
        let h = self.norm1.forward(g, h)?;
        let h = self.conv2.forward(g, h, None)?;
        let h = self.norm2.forward(g, h)?;
        let h = self.conv3.forward(g, h, None)?;
        let h = self.norm3.forward(g, h)?;
        let h = g.add(&format!("{}.residual", self.name), h, shortcut)?;
        g.activation(&format!("{}.activation", self.name), h, self.act)
    }
}

/// `BitBackbone`: returns the feature maps of `out_features`.
pub struct BitBackbone {
    embedder: BitEmbeddings,
    stages: Vec<Vec<BitBottleneckLayer>>,
    out_stages: Vec<usize>,
    /// Channels of each stage's output (`stem` first).
    pub channels: Vec<usize>,
}

impl BitBackbone {
    /// `l` is the `bit` module (`dpt.embeddings.backbone.bit`).
    pub fn load(l: &Loader, w: &Weights, c: &BitConfig) -> Result<Self> {
        let e = l.pp("embedder");
        let embedder = BitEmbeddings {
            convolution: Conv::load_standardized(&e.pp("convolution"), w, c.num_channels, c.embedding_size, 7, 2, WS_EPS)?,
            norm: GnAct::load(&e.pp("norm"), c, c.embedding_size, true)?,
            dynamic_pool_pad: c.embedding_dynamic_padding,
            name: e.path().to_string(),
        };
        let mut stages = Vec::new();
        let mut channels = vec![c.embedding_size];
        let mut prev = c.embedding_size;
        for (s, (&depth, &hidden)) in c.depths.iter().zip(&c.hidden_sizes).enumerate() {
            // Stage 0 keeps the stem's stride 4; the others halve (no dilation: checked by the config).
            let out = make_div((hidden * c.width_factor) as f64);
            let stride = if s == 0 { 1 } else { 2 };
            let sl = l.pp("encoder").pp("stages").pp(s).pp("layers");
            let layers = (0..depth)
                .map(|j| BitBottleneckLayer::load(&sl.pp(j), w, c, if j == 0 { prev } else { out }, out, if j == 0 { stride } else { 1 }, j == 0))
                .collect::<Result<Vec<_>>>()?;
            stages.push(layers);
            channels.push(out);
            prev = out;
        }
        let out_stages = c.out_stage_indices().map_err(crate::error::Error::usage)?;
        Ok(BitBackbone { embedder, stages, out_stages, channels })
    }

    /// The channels of the returned feature maps.
    pub fn out_channels(&self) -> Vec<usize> {
        self.out_stages.iter().map(|&i| self.channels[i]).collect()
    }

    /// pixel_values: [B, C, H, W] → the `out_features` maps, [B, Cᵢ, Hᵢ, Wᵢ] each.
    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<Vec<TensorId>> {
        let e = &self.embedder;
        let h = e.convolution.forward(g, x, None)?;
        let h = e.norm.forward(g, h)?;
        // x: [B, C, H, W] after the stem conv; 3×3 stride-2 pool, padded with zeros by DynamicPad2d.
        let s = g.shape(h).to_vec();
        let pad = if e.dynamic_pool_pad {
            let (t, b) = dynamic_pad(s[2], 3, 2);
            let (l, r) = dynamic_pad(s[3], 3, 2);
            [t, b, l, r]
        } else {
            [0; 4]
        };
        let mut h = g.max_pool2d(&format!("{}.pooler", e.name), h, 3, 2, pad, Some(0.0))?;
        let mut hidden = vec![h];
        for stage in &self.stages {
            for layer in stage {
                h = layer.forward(g, h)?;
            }
            hidden.push(h);
        }
        Ok(self.out_stages.iter().map(|&i| hidden[i]).collect())
    }
}
