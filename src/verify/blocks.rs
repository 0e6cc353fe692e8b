//! Real-size block cases (`blocks.json`): weights by diffusers name, inputs by formula, outputs subsampled.

use std::sync::Arc;

use super::{compare, failed, module_tol, CaseResult};
use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::Graph;
use crate::models::config::UNetConfig;
use crate::models::nn::Loader;
use crate::models::transformer::{Transformer2DModel, VaeAttention};
use crate::models::vae::{DownEncoderBlock2D, UpDecoderBlock2D};
use crate::models::weights::Weights;
use crate::tensor::TensorDesc;

/// The blocks fixtures' input formula: `x[i] = sin(0.001·(i mod 9973) + 0.1·⌊i / 9973⌋ + phase)` in f64.
pub fn block_input(n: usize, phase: f64) -> Vec<f32> {
    (0..n).map(|i| (0.001 * (i % 9973) as f64 + 0.1 * (i / 9973) as f64 + phase).sin() as f32).collect()
}

/// Heads of the SD 1.5 UNet block a transformer belongs to, from its weight prefix (the count is not in the
/// weights): `heads` in blocks.json if given, else the published SD 1.5 config beside the fixtures, else 8.
fn block_heads(fx: &Fixtures, spec: &serde_json::Value, prefix: &str) -> usize {
    if let Some(h) = spec["heads"].as_u64() {
        return h as usize;
    }
    let cfg = fx.dir.join("../configs/sd15/unet/config.json");
    let Ok(c) = UNetConfig::from_file(&cfg) else { return 8 };
    let n = c.block_out_channels.len();
    let idx = |p: &str| prefix.strip_prefix(p).and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
    if let Some(i) = idx("down_blocks.") {
        c.heads(i)
    } else if let Some(i) = idx("up_blocks.") {
        c.heads(n - 1 - i)
    } else {
        c.heads(n - 1)
    }
}

/// `blocks.<name>`: one real-size block with saved weights and formula inputs; the output is compared on the
/// saved subsample, and its L2 norm and mean against the whole output's.
pub fn block_cases(gpu: &Arc<Gpu>, fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let weights = Weights::open(&[fx.tensors.path().to_path_buf()])?;
    let mut out = Vec::new();
    let Some(blocks) = fx.meta["blocks"].as_object() else { return Ok(out) };
    for (name, spec) in blocks {
        let case = format!("blocks.{name}");
        let run = || -> Result<CaseResult> {
            let prefix = spec["weight_prefix"].as_str().unwrap_or("").trim_end_matches('.').to_string();
            let l = Loader::new(gpu, &weights).pp(format!("{name}.weights.{prefix}"));
            let shape_of = |k: &str| weights.shape(&format!("{name}.weights.{prefix}.{k}"));
            let mut g = Graph::new();
            let mut inputs = Vec::new();
            let mut ids = std::collections::HashMap::new();
            for (iname, ispec) in spec["inputs"].as_object().into_iter().flatten() {
                let shape: Vec<usize> = ispec["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let t = g.input(iname, TensorDesc::f32(&shape));
                let n = shape.iter().product();
                inputs.push((t, block_input(n, ispec["phase"].as_f64().unwrap_or(0.0))));
                ids.insert(iname.clone(), t);
            }
            let x = *ids.get("hidden_states").ok_or_else(|| crate::error::Error::usage("block has no hidden_states input"))?;
            let groups = spec["norm_num_groups"].as_u64().unwrap_or(32) as usize;
            let y = if prefix.contains("mid_block.attentions") && (prefix.starts_with("decoder") || prefix.starts_with("encoder")) {
                let c = shape_of("group_norm.weight").unwrap_or_default()[0];
                VaeAttention::load(&l, c, groups)?.forward(&mut g, x)?
            } else if prefix.contains(".attentions.") {
                let c = shape_of("norm.weight").unwrap_or_default()[0];
                let cross = shape_of("transformer_blocks.0.attn2.to_k.weight").unwrap_or_default()[1];
                let layers = (0..).take_while(|i| shape_of(&format!("transformer_blocks.{i}.norm1.weight")).is_some()).count();
                let ctx = *ids.get("encoder_hidden_states").ok_or_else(|| crate::error::Error::usage("transformer block has no encoder_hidden_states input"))?;
                let heads = block_heads(fx, spec, &prefix);
                Transformer2DModel::load(&l, c, heads, cross, layers, groups)?.forward(&mut g, x, ctx, Default::default())?
            } else if prefix.starts_with("decoder.up_blocks.") || prefix.starts_with("encoder.down_blocks.") {
                let w = shape_of("resnets.0.conv1.weight").unwrap_or_default();
                let layers = (0..).take_while(|i| shape_of(&format!("resnets.{i}.conv1.weight")).is_some()).count();
                if prefix.starts_with("decoder") {
                    let up = shape_of("upsamplers.0.conv.weight").is_some();
                    UpDecoderBlock2D::load(&l, w[1], w[0], layers, groups, up)?.forward(&mut g, x)?
                } else {
                    let down = shape_of("downsamplers.0.conv.weight").is_some();
                    DownEncoderBlock2D::load(&l, w[1], w[0], layers, groups, down)?.forward(&mut g, x)?
                }
            } else {
                return Ok(failed(&case, format!("block kind of weight prefix '{prefix}' is not known to wgsd verify")));
            };
            g.output(y);
            let plan = Plan::new(gpu.clone(), g)?;
            for (t, v) in &inputs {
                plan.write(*t, v)?;
            }
            plan.run()?;
            let full = plan.read(y)?;
            let stride = spec["stride"].as_u64().unwrap_or(1) as usize;
            let sampled: Vec<f32> = full.iter().step_by(stride).copied().collect();
            let mut r = compare(&case, &sampled, &fx.tensor(&format!("{name}.out_sampled"))?, module_tol(gpu.precision));
            let l2 = full.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt();
            let mean = full.iter().map(|v| *v as f64).sum::<f64>() / full.len() as f64;
            let want_l2 = spec["out_l2"].as_f64().unwrap_or(l2);
            let want_mean = spec["out_mean"].as_f64().unwrap_or(mean);
            let l2_err = (l2 - want_l2).abs() / want_l2.abs().max(1e-30);
            let mean_err = (mean - want_mean).abs() / want_l2.abs().max(1e-30) * (full.len() as f64).sqrt();
            r.passed &= l2_err <= module_tol(gpu.precision) && mean_err <= module_tol(gpu.precision);
            r.detail = format!("sampled every {stride}; whole-output L2 rel err {l2_err:.1e}, mean err {mean_err:.1e}; {}", plan.memory());
            Ok(r)
        };
        out.push(run().unwrap_or_else(|e| failed(&case, e)));
    }
    Ok(out)
}
