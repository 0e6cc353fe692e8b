//! transformers' `DPTForDepthEstimation` with `is_hybrid: true` (DPT-hybrid, as Intel/dpt-hybrid-midas,
//! the `depth_estimator/` of stabilityai/stable-diffusion-2-depth), loaded from a folder holding
//! `config.json` and `model.safetensors`.
//!
//! ```text
//! pixel_values [B, 3, H, W] → BiT backbone (bit.rs) → maps f1, f2, f3
//!   f3 → tokens + cls + positions → ViT layers (vit_hybrid.rs) → outputs of layers backbone_out_indices[2:]
//!   neck (neck.rs): [f1, f2, reassemble(t_a), reassemble(t_b)] → convs → fusion (deepest first)
//!   head (head.rs): last fused map → predicted_depth [B, H, W]
//! ```
//! The final `dpt.layernorm` only feeds transformers' `last_hidden_state`, not the depth, so it is not
//! loaded; nor are ViT layers after the last one the neck reads.

pub mod bit;
pub mod config;
pub mod head;
pub mod layers;
pub mod neck;
pub mod vit_hybrid;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::models::clip::weight_file;
use crate::models::nn::Loader;
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

pub use config::DptConfig;
use head::DptDepthEstimationHead;
use neck::DptNeck;
use vit_hybrid::{DptViTHybridEmbeddings, DptViTLayer};

pub struct DptForDepthEstimation {
    pub config: DptConfig,
    gpu: Arc<Gpu>,
    embeddings: DptViTHybridEmbeddings,
    layers: Vec<DptViTLayer>,
    neck: DptNeck,
    head: DptDepthEstimationHead,
}

impl DptForDepthEstimation {
    /// Loads `dir/config.json` and `dir/model.safetensors` (dir = the pipeline's `depth_estimator/`).
    pub fn load(gpu: &Arc<Gpu>, dir: &Path) -> Result<Self> {
        let config = DptConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&[weight_file(dir, "model", None)?])?;
        Self::from_weights(gpu, config, &weights)
    }

    pub fn from_weights(gpu: &Arc<Gpu>, config: DptConfig, weights: &Weights) -> Result<Self> {
        let root = Loader::new(gpu, weights);
        let dpt = root.pp("dpt");
        let embeddings = DptViTHybridEmbeddings::load(&dpt.pp("embeddings"), weights, &config)?;
        let last = *config.layer_indices().last().expect("validated");
        let layers = (0..=last)
            .map(|i| DptViTLayer::load(&dpt.pp("encoder").pp("layer").pp(i), &config))
            .collect::<Result<_>>()?;
        let neck = DptNeck::load(&root.pp("neck"), &config)?;
        let head = DptDepthEstimationHead::load(&root.pp("head"), &config)?;
        Ok(DptForDepthEstimation { config, gpu: gpu.clone(), embeddings, layers, neck, head })
    }

    /// Records the model: pixel_values `[B, 3, H, W]` (H, W = the config's `image_size`, normalised by the
    /// DPT image processor) → predicted_depth `[B, H, W]`.
    pub fn forward(&self, g: &mut Graph, pixel_values: TensorId) -> Result<TensorId> {
        let emb = self.embeddings.forward(g, pixel_values)?;
        let wanted = self.config.layer_indices();
        let mut x = emb.tokens;
        let mut taps = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(g, x)?;
            if wanted.contains(&i) {
                taps.push(x);
            }
        }
        let fused = self.neck.forward(g, emb.intermediate, &taps, emb.grid)?;
        let n = fused.len() as i64;
        let idx = self.config.head_in_index.rem_euclid(n) as usize;
        self.head.forward(g, fused[idx])
    }

    /// Plans, runs and reads back predicted_depth `[B, H, W]` for `pixel_values` of `shape` `[B, 3, H, W]`.
    pub fn predict(&self, pixel_values: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if pixel_values.len() != n {
            return Err(Error::usage(format!("pixel_values: {} values given for shape {shape:?}", pixel_values.len())));
        }
        let mut g = Graph::new();
        let x = g.input("pixel_values", TensorDesc::f32(&shape));
        let depth = self.forward(&mut g, x)?;
        g.output(depth);
        let plan = Plan::new(self.gpu.clone(), g)?;
        plan.write(x, pixel_values)?;
        Ok(plan.run_and_read(&[depth])?.remove(0))
    }
}
