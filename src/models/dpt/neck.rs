//! `DPTNeck` for DPT-hybrid (weights under `neck.*`): the reassemble stage (stages 1–2 are the BiT
//! feature maps as they are; stages 3–4 are ViT tokens: readout "project", 1×1 projection, resize), a 3×3
//! conv per stage to `fusion_hidden_size`, and the feature fusion stage (deepest first: residual conv
//! units, bilinear 2× upsampling with align_corners=True, 1×1 projection).

use crate::error::Result;
use crate::graph::{Graph, TensorId};
use crate::kernels::unary::Activation;
use crate::models::dpt::config::{activation, DptConfig};
use crate::models::dpt::layers::{Conv, Pad};
use crate::models::nn::{Linear, Loader};
use crate::tensor::TensorDesc;

/// Readout "project" + `DPTReassembleLayer` of one token stage.
struct ReassembleLayer {
    readout_project: Linear,
    act: Activation,
    projection: Conv,
    resize: Option<Conv>,
    name: String,
}

impl ReassembleLayer {
    fn load(stage: &Loader, i: usize, c: &DptConfig) -> Result<Self> {
        let (d, ch) = (c.hidden_size, c.neck_hidden_sizes[i]);
        let l = stage.pp("layers").pp(i);
        let factor = c.reassemble_factors[i];
        let resize = if factor < 1.0 {
            Some(Conv::load(&l.pp("resize"), ch, ch, 3, (1.0 / factor) as usize, Pad::Fixed(1), true)?)
        } else {
            None // factor 1 (> 1 is refused by the config)
        };
        Ok(ReassembleLayer {
            readout_project: Linear::load(&stage.pp("readout_projects").pp(i).pp(0), 2 * d, d, true)?,
            act: activation(&c.hidden_act).expect("validated"),
            projection: Conv::load(&l.pp("projection"), d, ch, 1, 1, Pad::Fixed(0), true)?,
            resize,
            name: l.path().to_string(),
        })
    }

    // tokens: [B, 1 + h·w, D] → [B, C, h', w']
    fn forward(&self, g: &mut Graph, tokens: TensorId, grid: (usize, usize)) -> Result<TensorId> {
        let s = g.shape(tokens).to_vec();
        let (b, n1, d) = (s[0], s[1], s[2]);
        let n = n1 - 1;
        // cat(tokens[:, 1:], cls.expand) row by row, through two gathers of the flattened tokens.
        let table = g.reshape(tokens, &[b * n1, d])?;
        let tok_ids: Vec<f32> = (0..b).flat_map(|bi| (1..n1).map(move |j| (bi * n1 + j) as f32)).collect();
        let cls_ids: Vec<f32> = (0..b).flat_map(|bi| std::iter::repeat_n((bi * n1) as f32, n)).collect();
        let tok_ids = g.constant(&format!("{}.token_ids", self.name), TensorDesc::f32(&[b * n]), tok_ids)?;
        let cls_ids = g.constant(&format!("{}.readout_ids", self.name), TensorDesc::f32(&[b * n]), cls_ids)?;
        let tok = g.gather(&format!("{}.tokens", self.name), table, tok_ids)?;
        let cls = g.gather(&format!("{}.readout", self.name), table, cls_ids)?;
        let cat = g.concat(&format!("{}.cat_readout", self.name), tok, cls, 1)?; // [B·N, 2D]
        let h = self.readout_project.forward_act(g, cat, self.act)?; // [B·N, D]
        let h = g.reshape(h, &[b, n, d])?;
        let h = g.transpose(&format!("{}.to_image", self.name), h)?; // [B, D, N]
        let h = g.reshape(h, &[b, d, grid.0, grid.1])?;
        let h = self.projection.forward(g, h, None)?;
        match &self.resize {
            Some(r) => r.forward(g, h, None),
            None => Ok(h),
        }
    }
}

/// `DPTPreActResidualLayer`: `x + conv2(relu(conv1(relu(x))))` (the residual add fused into conv2).
struct PreActResidualLayer {
    convolution1: Conv,
    convolution2: Conv,
    name: String,
}

impl PreActResidualLayer {
    fn load(l: &Loader, c: &DptConfig) -> Result<Self> {
        let f = c.fusion_hidden_size;
        Ok(PreActResidualLayer {
            convolution1: Conv::load(&l.pp("convolution1"), f, f, 3, 1, Pad::Fixed(1), c.fusion_bias())?,
            convolution2: Conv::load(&l.pp("convolution2"), f, f, 3, 1, Pad::Fixed(1), c.fusion_bias())?,
            name: l.path().to_string(),
        })
    }

    fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let h = g.activation(&format!("{}.activation1", self.name), x, Activation::Relu)?;
        let h = self.convolution1.forward(g, h, None)?;
        let h = g.activation(&format!("{}.activation2", self.name), h, Activation::Relu)?;
        self.convolution2.forward(g, h, Some(x))
    }
}

/// `DPTFeatureFusionLayer`.
struct FeatureFusionLayer {
    /// Absent in the first (deepest) layer, which has no residual input.
    residual_layer1: Option<PreActResidualLayer>,
    residual_layer2: PreActResidualLayer,
    projection: Conv,
    name: String,
}

impl FeatureFusionLayer {
    fn load(l: &Loader, c: &DptConfig, first: bool) -> Result<Self> {
        let f = c.fusion_hidden_size;
        Ok(FeatureFusionLayer {
            residual_layer1: if first { None } else { Some(PreActResidualLayer::load(&l.pp("residual_layer1"), c)?) },
            residual_layer2: PreActResidualLayer::load(&l.pp("residual_layer2"), c)?,
            projection: Conv::load(&l.pp("projection"), f, f, 1, 1, Pad::Fixed(0), true)?,
            name: l.path().to_string(),
        })
    }

    // hidden: [B, F, h, w], residual: [B, F, h', w'] → [B, F, 2h, 2w]
    fn forward(&self, g: &mut Graph, mut hidden: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
        if let (Some(mut r), Some(layer)) = (residual, &self.residual_layer1) {
            let (hs, rs) = (g.shape(hidden).to_vec(), g.shape(r).to_vec());
            if hs != rs {
                r = g.bilinear(&format!("{}.resize_residual", self.name), r, hs[2], hs[3], false)?;
            }
            let r = layer.forward(g, r)?;
            hidden = g.add(&format!("{}.fuse", self.name), hidden, r)?;
        }
        let h = self.residual_layer2.forward(g, hidden)?;
        let s = g.shape(h).to_vec();
        let h = g.bilinear(&format!("{}.upsample", self.name), h, 2 * s[2], 2 * s[3], true)?;
        self.projection.forward(g, h, None)
    }
}

pub struct DptNeck {
    /// Reassemble layers of stages 3 and 4 (stages 1 and 2 are identities in DPT-hybrid).
    reassemble: Vec<ReassembleLayer>,
    convs: Vec<Conv>,
    fusion: Vec<FeatureFusionLayer>,
}

impl DptNeck {
    /// `l` is `neck`; `backbone_channels` are the channels of the BiT feature maps of stages 1 and 2.
    pub fn load(l: &Loader, c: &DptConfig) -> Result<Self> {
        let rs = l.pp("reassemble_stage");
        let reassemble = (2..c.neck_hidden_sizes.len()).map(|i| ReassembleLayer::load(&rs, i, c)).collect::<Result<_>>()?;
        let convs = c
            .neck_hidden_sizes
            .iter()
            .enumerate()
            .map(|(i, &ch)| Conv::load(&l.pp("convs").pp(i), ch, c.fusion_hidden_size, 3, 1, Pad::Fixed(1), false))
            .collect::<Result<_>>()?;
        let fl = l.pp("fusion_stage").pp("layers");
        let fusion = (0..c.neck_hidden_sizes.len()).map(|i| FeatureFusionLayer::load(&fl.pp(i), c, i == 0)).collect::<Result<_>>()?;
        Ok(DptNeck { reassemble, convs, fusion })
    }

    /// `features`: the two BiT maps then the two ViT token tensors → the fused maps, deepest first
    /// (`[B, F, 2h, 2w]`, ... as transformers' list).
    pub fn forward(&self, g: &mut Graph, backbone: [TensorId; 2], tokens: &[TensorId], grid: (usize, usize)) -> Result<Vec<TensorId>> {
        let mut maps = backbone.to_vec();
        for (layer, &t) in self.reassemble.iter().zip(tokens) {
            maps.push(layer.forward(g, t, grid)?);
        }
        let features: Vec<TensorId> = self.convs.iter().zip(&maps).map(|(conv, &m)| conv.forward(g, m, None)).collect::<Result<_>>()?;
        let mut fused = Vec::new();
        let mut h: Option<TensorId> = None;
        for (layer, &f) in self.fusion.iter().zip(features.iter().rev()) {
            let out = match h {
                None => layer.forward(g, f, None)?,
                Some(prev) => layer.forward(g, prev, Some(f))?,
            };
            fused.push(out);
            h = Some(out);
        }
        Ok(fused)
    }
}
