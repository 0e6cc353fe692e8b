//! Weighted MSE loss (`shaders/loss.wgsl`): `loss = Σ_b w[b] · mean over sample b of (pred − target)²`.
//! One op covers plain MSE (`w = 1/B`), DreamBooth prior preservation (instance and class halves weighted
//! apart) and min-SNR weighting (per-sample weights).
//!
//! The forward is two nodes, so every core has work: [`MsePartial`] sums squared differences into `parts`
//! partial sums per sample (one workgroup each), [`MseCombine`] weights and adds them into the `[1]` loss.
//! Their backward rules chain to `dpred = dy · 2 w[b] (pred − target) / n`.

use bytemuck::{Pod, Zeroable};

use super::{check_f32, shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{grid_1d, max_binding_elems, params, BackwardCtx, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("loss");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    per_sample: u32,
    parts: u32,
    per_part: u32,
    batch: u32,
    scale: f32,
    n: u32,
    _pad: [u32; 2],
}


/// `(batch, elements per sample)` of a `[B, ...]` prediction.
fn samples(pred: &TensorDesc) -> (usize, usize) {
    let b = pred.shape.first().copied().unwrap_or(1);
    (b, pred.numel() / b.max(1))
}

/// Refuses a tensor that would need splitting (a loss input is a latent batch: megabytes, not gigabytes).
fn check_fits(op: &str, d: &TensorDesc, l: &Lowering) -> Result<()> {
    if d.numel() as u64 > max_binding_elems(l.limits, DType::F32) {
        return Err(Error::shape(op, format!("{d} is larger than one storage binding; this kernel does not split it")));
    }
    Ok(())
}

/// `pred`, `target [B, ...]` → `[B, parts]`: sums of `(pred − target)²` over `parts` equal slices of each
/// sample (the last one may be short).
pub struct MsePartial {
    pub parts: usize,
}

impl MsePartial {
    fn per_part(&self, per_sample: usize) -> usize {
        per_sample.div_ceil(self.parts)
    }
}

impl Op for MsePartial {
    fn kind(&self) -> &'static str {
        "mse_partial"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (pred, target) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[pred, target])?;
        if pred.shape != target.shape || pred.rank() == 0 || pred.numel() == 0 {
            return Err(Error::shape(self.kind(), format!("pred {pred} and target {target} must have one non-empty [B, ...] shape")));
        }
        if self.parts == 0 {
            return Err(Error::shape(self.kind(), "needs at least one part"));
        }
        Ok(TensorDesc::f32(&[pred.shape[0], self.parts]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let pred = &l.inputs[0];
        check_fits(self.kind(), pred, l)?;
        let (batch, per_sample) = samples(pred);
        let p = Params {
            per_sample: per_sample as u32,
            parts: self.parts as u32,
            per_part: self.per_part(per_sample) as u32,
            batch: batch as u32,
            ..Default::default()
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "mse_partial",
            params: params(&p),
            bindings: vec![Bind::input(0, pred), Bind::input(1, &l.inputs[1]), Bind::input(0, pred), Bind::output(l.output)],
            workgroups: grid_1d((batch * self.parts) as u64, l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (batch, per_sample) = samples(descs[0]);
        let per_part = self.per_part(per_sample);
        let mut out = vec![0f64; batch * self.parts];
        for (i, (&a, &b)) in inputs[0].iter().zip(inputs[1]).enumerate() {
            let (s, e) = (i / per_sample, i % per_sample);
            let d = a as f64 - b as f64;
            out[s * self.parts + e / per_part] += d * d;
        }
        out.into_iter().map(|v| v as f32).collect()
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * 3.0
    }
    /// `dpred = 2 (pred − target) · d partial`, `dtarget = −dpred`.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        let (pred, target) = (c.inputs[0], c.inputs[1]);
        let dpred = g.op(&c.node("pred"), MsePartialGrad { parts: self.parts }, &[pred, target, c.dy])?;
        let dtarget = if c.need[1] { Some(g.scale(&c.node("target"), dpred, -1.0, 0.0)?) } else { None };
        Ok(vec![c.need[0].then_some(dpred), dtarget])
    }
}

/// `partials [B, parts]`, `weights [B]` → `[1]` = `Σ_b w[b] Σ_parts partial / per_sample`.
pub struct MseCombine {
    pub per_sample: usize,
}

impl Op for MseCombine {
    fn kind(&self) -> &'static str {
        "mse_combine"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (parts, w) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[parts, w])?;
        if parts.rank() != 2 || w.shape != [parts.shape[0]] {
            return Err(Error::shape(self.kind(), format!("partials {parts} must be [B, parts] and weights {w} [B]")));
        }
        Ok(TensorDesc::f32(&[1]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let parts = &l.inputs[0];
        let p = Params {
            parts: parts.shape[1] as u32,
            batch: parts.shape[0] as u32,
            scale: (1.0 / self.per_sample as f64) as f32,
            ..Default::default()
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "mse_combine",
            params: params(&p),
            bindings: vec![Bind::input(0, parts), Bind::input(1, &l.inputs[1]), Bind::input(0, parts), Bind::output(l.output)],
            workgroups: [1, 1, 1],
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let np = descs[0].shape[1];
        let s: f64 = inputs[0].iter().enumerate().map(|(i, &v)| v as f64 * inputs[1][i / np] as f64).sum();
        vec![(s / self.per_sample as f64) as f32]
    }
    /// `d partial[b, :] = dy · w[b] / n`; `dw[b] = dy · Σ_parts partial[b] / n`.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        let (parts, w) = (c.inputs[0], c.inputs[1]);
        let b = g.shape(parts)[0];
        let dparts = if c.need[0] { Some(g.op(&c.node("partials"), MseCombineGrad { per_sample: self.per_sample }, &[c.dy, w, parts])?) } else { None };
        let dw = if c.need[1] {
            let per = g.sum_to(&c.node("w_sum"), parts, &[b, 1])?;
            let per = g.reshape(per, &[b])?;
            let per = g.mul(&c.node("w_dy"), per, c.dy)?;
            Some(g.scale(&c.node("w"), per, (1.0 / self.per_sample as f64) as f32, 0.0)?)
        } else {
            None
        };
        Ok(vec![dparts, dw])
    }
}

/// `dy [1]`, `weights [B]`, `partials [B, parts]` (for the shape) → `d partials = dy · w[b] / per_sample`.
struct MseCombineGrad {
    per_sample: usize,
}

impl Op for MseCombineGrad {
    fn kind(&self) -> &'static str {
        "mse_combine_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_f32(self.kind(), inputs)?;
        Ok(inputs[2].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let out = l.output;
        let p = Params {
            parts: out.shape[1] as u32,
            scale: (1.0 / self.per_sample as f64) as f32,
            n: out.numel() as u32,
            ..Default::default()
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "mse_combine_grad",
            params: params(&p),
            bindings: vec![Bind::input(0, &l.inputs[0]), Bind::input(1, &l.inputs[1]), Bind::input(0, &l.inputs[0]), Bind::output(out)],
            workgroups: grid_1d((out.numel() as u64).div_ceil(256), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let np = out.shape[1];
        (0..out.numel()).map(|i| (inputs[0][0] as f64 * inputs[1][i / np] as f64 / self.per_sample as f64) as f32).collect()
    }
}

/// `pred`, `target`, `d partials [B, parts]` → `dpred = 2 (pred − target) · d partial` of each element's part.
struct MsePartialGrad {
    parts: usize,
}

impl Op for MsePartialGrad {
    fn kind(&self) -> &'static str {
        "mse_partial_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_f32(self.kind(), inputs)?;
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let pred = &l.inputs[0];
        check_fits(self.kind(), pred, l)?;
        let (batch, per_sample) = samples(pred);
        let p = Params {
            per_sample: per_sample as u32,
            parts: self.parts as u32,
            per_part: per_sample.div_ceil(self.parts) as u32,
            batch: batch as u32,
            n: pred.numel() as u32,
            ..Default::default()
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "mse_partial_grad",
            params: params(&p),
            bindings: vec![Bind::input(0, pred), Bind::input(1, &l.inputs[1]), Bind::input(2, &l.inputs[2]), Bind::output(l.output)],
            workgroups: grid_1d((pred.numel() as u64).div_ceil(256), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (_, per_sample) = samples(descs[0]);
        let per_part = per_sample.div_ceil(self.parts);
        inputs[0]
            .iter()
            .zip(inputs[1])
            .enumerate()
            .map(|(i, (&a, &b))| {
                let part = (i / per_sample) * self.parts + (i % per_sample) / per_part;
                (2.0 * (a as f64 - b as f64) * inputs[2][part] as f64) as f32
            })
            .collect()
    }
}

/// Partial sums per sample: enough workgroups to fill a GPU, each with at least a few thousand elements.
fn parts_for(batch: usize, per_sample: usize) -> usize {
    const MIN_PER_PART: usize = 2048;
    let want = 256usize.div_ceil(batch.max(1));
    want.min(per_sample / MIN_PER_PART).clamp(1, 1024)
}

impl Graph {
    /// `Σ_b weights[b] · mean over sample b of (pred − target)²` as a `[1]` tensor, for `pred`, `target
    /// [B, ...]` and `weights [B]` (plain MSE: all `1/B`). Differentiable in all three.
    pub fn mse_loss(&mut self, name: &str, pred: TensorId, target: TensorId, weights: TensorId) -> Result<TensorId> {
        let pd = self.desc(pred).clone();
        if pd.rank() == 0 || pd.numel() == 0 {
            return Err(Error::shape("mse_loss", format!("'{name}': pred {pd} must be a non-empty [B, ...]")));
        }
        let (batch, per_sample) = samples(&pd);
        let parts = self.op(&format!("{name}.partials"), MsePartial { parts: parts_for(batch, per_sample) }, &[pred, target])?;
        self.op(name, MseCombine { per_sample }, &[parts, weights])
    }
}
