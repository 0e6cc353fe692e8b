//! Sums over broadcast dimensions (`shaders/reduce.wgsl`), the reverse of a broadcast: the gradient of a
//! bias `[C]` added to `[N, C]` rows is the column sum of the output gradient, that of a per-channel
//! `[B, C, 1, 1]` the sum over H·W, that of a scalar the sum of everything. The same kernel sums squares,
//! for gradient norms.
//!
//! A target shape is anything [`Graph::add`] would broadcast (`x` viewed as `[outer, bn, inner]`, the
//! target holding the `bn` middle values). Reductions of many elements into few outputs run in two
//! nodes: `parts` partial sums per output, then their sum, so every core has work.

use bytemuck::{Pod, Zeroable};

use super::binary::broadcast_layout;
use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{grid_1d, params, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("reduce");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    outer: u32,
    bn: u32,
    inner: u32,
    parts: u32,
    per_part: u32,
    square: u32,
    x_shift: u32,
    _pad: u32,
}

/// `x` summed down to `shape` (squared first when `square`), in `parts` partial sums: the output is
/// `[parts, numel(shape)]` viewed as `[parts, ...shape]` when `parts > 1`, else `shape`.
pub struct SumTo {
    pub shape: Vec<usize>,
    pub parts: usize,
    pub square: bool,
}

/// `(outer, bn, inner)` of `x` reduced to `shape`.
fn layout(x: &TensorDesc, shape: &[usize]) -> Option<(usize, usize, usize)> {
    let t = TensorDesc::f32(shape);
    let (inner, bn) = broadcast_layout(x, &t)?;
    Some((x.numel() / (inner * bn), bn, inner))
}

impl SumTo {
    fn out_shape(&self) -> Vec<usize> {
        if self.parts > 1 {
            std::iter::once(self.parts).chain(self.shape.iter().copied()).collect()
        } else {
            self.shape.clone()
        }
    }
}

impl Op for SumTo {
    fn kind(&self) -> &'static str {
        if self.square {
            "sum_squares"
        } else {
            "sum_to"
        }
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        if x.dtype != DType::F32 {
            return Err(Error::DType { op: self.kind().into(), msg: format!("input is {x}; this kernel takes f32") });
        }
        if layout(x, &self.shape).is_none() {
            return Err(Error::shape(self.kind(), format!("cannot sum {x} down to {:?} (not a broadcast of it)", self.shape)));
        }
        Ok(TensorDesc::f32(&self.out_shape()))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let x = &l.inputs[0];
        let (outer, bn, inner) = layout(x, &self.shape).expect("checked at record time");
        let total = outer * inner;
        let p = Params {
            outer: outer as u32,
            bn: bn as u32,
            inner: inner as u32,
            parts: self.parts as u32,
            per_part: total.div_ceil(self.parts) as u32,
            square: self.square as u32,
            ..Default::default()
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "sum_to",
            params: params(&p),
            bindings: vec![Bind::input(0, x), Bind::output(l.output)],
            workgroups: grid_1d((self.parts * bn) as u64, l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (outer, bn, inner) = layout(descs[0], &self.shape).unwrap();
        let per_part = (outer * inner).div_ceil(self.parts);
        let mut out = vec![0f64; self.parts * bn];
        for o in 0..outer {
            for j in 0..bn {
                for i in 0..inner {
                    let v = inputs[0][(o * bn + j) * inner + i] as f64;
                    let part = (o * inner + i) / per_part;
                    out[part * bn + j] += if self.square { v * v } else { v };
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * (1 + self.square as usize) as f64
    }
}

/// `[‖g‖, min(1, max_norm / (‖g‖ + 1e-6))]` from `Σ g²` (`[1]`): the total norm and coefficient of
/// `torch.nn.utils.clip_grad_norm_` (which multiplies every gradient by the coefficient, 1 when not clipping).
pub struct ClipCoef {
    pub max_norm: f32,
}

impl Op for ClipCoef {
    fn kind(&self) -> &'static str {
        "clip_coef"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        if inputs.len() != 1 || inputs[0].numel() != 1 {
            return Err(Error::shape("clip_coef", "takes one [1] sum of squares".to_string()));
        }
        Ok(TensorDesc::f32(&[2]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let p = Params { per_part: self.max_norm.to_bits(), ..Default::default() };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "clip_coef",
            params: params(&p),
            bindings: vec![Bind::input(0, &l.inputs[0]), Bind::output(l.output)],
            workgroups: [1, 1, 1],
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let norm = inputs[0][0].sqrt();
        vec![norm, (self.max_norm / (norm + 1e-6)).min(1.0)]
    }
}

/// Partial sums per output so that the first node has enough workgroups, each with enough to add.
fn parts_for(per_output: usize, outputs: usize) -> usize {
    const MIN_PER_PART: usize = 2048;
    let want = 256usize.div_ceil(outputs.max(1));
    want.min(per_output / MIN_PER_PART).clamp(1, 1024)
}

impl Graph {
    /// `x` summed down to `shape`, which must broadcast to `x`'s shape (a bias `[C]`, `[B, C, 1, 1]`, `[1]`).
    pub fn sum_to(&mut self, name: &str, x: TensorId, shape: &[usize]) -> Result<TensorId> {
        self.reduce_to(name, x, shape, false)
    }

    /// Σ x² over all of `x`, as a `[1]` tensor.
    pub fn sum_squares(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.reduce_to(name, x, &[1], true)
    }

    /// The total L2 norm of `grads` and the clipping coefficient for `max_norm`, as `[norm, coef]`.
    pub fn clip_coefficient(&mut self, name: &str, grads: &[TensorId], max_norm: f32) -> Result<TensorId> {
        let mut total: Option<TensorId> = None;
        for (i, &gt) in grads.iter().enumerate() {
            let s = self.sum_squares(&format!("{name}.sq{i}"), gt)?;
            total = Some(match total {
                Some(t) => self.add(&format!("{name}.acc{i}"), t, s)?,
                None => s,
            });
        }
        let total = total.ok_or_else(|| Error::usage(format!("{name}: no gradients to clip")))?;
        self.op(name, ClipCoef { max_norm }, &[total])
    }

    fn reduce_to(&mut self, name: &str, x: TensorId, shape: &[usize], square: bool) -> Result<TensorId> {
        let xd = self.desc(x).clone();
        let Some((outer, bn, inner)) = layout(&xd, shape) else {
            return Err(Error::shape("sum_to", format!("'{name}': cannot sum {xd} down to {shape:?}")));
        };
        let parts = parts_for(outer * inner, bn);
        if parts == 1 {
            return self.op(name, SumTo { shape: shape.to_vec(), parts: 1, square }, &[x]);
        }
        let partial = self.op(&format!("{name}.parts"), SumTo { shape: shape.to_vec(), parts, square }, &[x])?;
        self.op(name, SumTo { shape: shape.to_vec(), parts: 1, square: false }, &[partial])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_twin_sums_columns_channels_and_everything() {
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let d = TensorDesc::f32(&[2, 3, 4]);
        let cols = SumTo { shape: vec![4], parts: 1, square: false }.cpu(&[&x], &[&d], &d);
        assert_eq!(cols, vec![60.0, 66.0, 72.0, 78.0]);
        let chans = SumTo { shape: vec![3, 1], parts: 1, square: false }.cpu(&[&x], &[&d], &d);
        assert_eq!(chans, vec![60.0, 92.0, 124.0]);
        let all = SumTo { shape: vec![1], parts: 3, square: true }.cpu(&[&x], &[&d], &d);
        let want: f32 = x.iter().map(|v| v * v).sum();
        assert_eq!(all.iter().sum::<f32>(), want);
        assert_eq!(all.len(), 3);
    }
}
