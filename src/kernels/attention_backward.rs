//! The backward of attention (`shaders/attention_backward.wgsl`), FlashAttention-2 style: the Nq×Nk
//! score and probability matrices are never stored, every kernel recomputes the probabilities it needs
//! from the per-row log-sum-exp of the scores. Serves [`Attention`](super::attention::Attention) and
//! [`RowwiseAttention`](super::attention_rowwise::RowwiseAttention) (optionally causal).
//!
//! With s = scale · q kᵀ, P = softmax(s), O = P v and the output gradient dO:
//! - [`AttentionLse`]: L = log Σ_j exp(s_ij) per query row (the forward keeps only O, so its softmax
//!   statistics are recomputed: online max / sum over key blocks);
//! - [`AttentionDelta`]: Δ = Σ_d dO ∘ O per query row (= Σ_j P dP, so dS = P ∘ (dP − Δ));
//! - [`AttentionGrad`] `Q`: per query row, stream the keys: P = exp(s − L), dP = dO vᵀ, dQ = scale · dS k;
//! - `K`, `V`: per key row, stream the queries: dK = scale · dSᵀ q, dV = Pᵀ dO.
//!
//! Statistics are `[B, H, Nq]`; gradients have their inputs' layouts. All work is O(Nq·Nk·D) with O(N·D)
//! memory.
//!
//! Kernel design: each invocation owns 4 rows (query rows for L and dQ, key rows for dK and dV), keeps their
//! accumulators in the output rows themselves (any head dim, no races), and streams the other side in
//! blocks of 8 rows read at workgroup-uniform addresses, like the forward's portable kernels: each streamed
//! element loaded feeds 4 rows' FMAs, no workgroup memory, no barriers. Measured on lavapipe (1×1024²,
//! 8×40 heads): the whole backward ≈ 2.9 s against 0.06 s for the forward's subgroup-shuffle, 16-row
//! register tiles; those tricks (see [`super::attention`]) are what a faster CPU-adapter variant would add. Deviation from FlashAttention-2: dK and dV are separate ops (an op has one output), so the
//! key-side pass recomputes P twice (5 instead of 4 Nq·Nk·D products in all); in exchange a rule that
//! needs only one of them computes only that one.

use bytemuck::{Pod, Zeroable};

use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{params, BackwardCtx, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("attention_backward");

/// Rows per workgroup of the streaming kernels (64 invocations × 4 rows) and of `attn_delta` (one each).
const ROWS_STREAM: usize = 256;
const ROWS_DELTA: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    nq: u32,
    nk: u32,
    heads: u32,
    d: u32,
    causal: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

/// What every attention-backward op knows: heads, the (resolved) softmax scale and the causal mask.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub heads: usize,
    pub scale: f32,
    /// Key j > query i is masked.
    pub causal: bool,
}

/// Sizes read off q `[B, Nq, H·D]` and k `[B, Nk, H·D]`.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    nq: usize,
    nk: usize,
    h: usize,
    d: usize,
}

impl AttnShape {
    fn dims(&self, q: &TensorDesc, k: &TensorDesc) -> Dims {
        Dims { b: q.shape[0], nq: q.shape[1], nk: k.shape[1], h: self.heads, d: q.shape[2] / self.heads }
    }
    fn params(&self, dm: Dims) -> Params {
        Params {
            nq: dm.nq as u32,
            nk: dm.nk as u32,
            heads: dm.h as u32,
            d: dm.d as u32,
            causal: self.causal as u32,
            scale: self.scale,
            ..Default::default()
        }
    }
    /// Keys query row i sees.
    fn keys(&self, i: usize, nk: usize) -> usize {
        if self.causal {
            nk.min(i + 1)
        } else {
            nk
        }
    }
}

fn check(kind: &str, inputs: &[&TensorDesc], want: usize) -> Result<()> {
    if inputs.len() != want {
        return Err(Error::shape(kind, format!("takes {want} inputs, got {}", inputs.len())));
    }
    for d in inputs {
        if d.dtype != DType::F32 {
            return Err(Error::DType { op: kind.into(), msg: format!("input is {d}; this kernel takes f32") });
        }
    }
    Ok(())
}

/// Checks q `[B, Nq, W]`, k `[B, Nk, W]` and that W splits into the heads.
fn check_qk(kind: &str, s: &AttnShape, q: &TensorDesc, k: &TensorDesc) -> Result<()> {
    let ok = q.rank() == 3
        && k.rank() == 3
        && q.shape[0] == k.shape[0]
        && q.shape[2] == k.shape[2]
        && q.numel() > 0
        && k.numel() > 0
        && s.heads > 0
        && q.shape[2].is_multiple_of(s.heads);
    if !ok {
        return Err(Error::shape(kind, format!("q {q}, k {k} with {} heads: expected [B, Nq, H·D], [B, Nk, H·D]", s.heads)));
    }
    Ok(())
}

fn expect_shape(kind: &str, what: &str, t: &TensorDesc, shape: &[usize]) -> Result<()> {
    if t.shape != shape {
        return Err(Error::shape(kind, format!("{what} is {t}, expected {shape:?}")));
    }
    Ok(())
}

/// One dispatch of `entry` over `rows` rows per (batch, head), binding every input then the output whole.
/// Refuses by name what one binding or the grid cannot hold (a single SD attention at 1024² is ~40 MB per
/// tensor, far below the 128 MiB binding of the smallest adapter).
fn dispatch(kind: &str, entry: &'static str, p: &Params, l: &Lowering, rows: usize, bh: usize) -> Result<Vec<Dispatch>> {
    let per_group = if entry == "attn_delta" { ROWS_DELTA } else { ROWS_STREAM };
    for t in l.inputs.iter().chain(std::iter::once(l.output)) {
        if t.bytes() > l.limits.max_binding {
            return Err(Error::usage(format!(
                "{kind}: tensor {t} exceeds the device's largest storage binding ({} bytes)",
                l.limits.max_binding
            )));
        }
    }
    let gx = rows.div_ceil(per_group);
    let max = l.limits.max_workgroups as usize;
    if gx > max || bh > max {
        return Err(Error::usage(format!("{kind}: grid {gx}×{bh} exceeds {max} workgroups per dimension")));
    }
    let mut bindings: Vec<Bind> = l.inputs.iter().enumerate().map(|(i, d)| Bind::input(i, d)).collect();
    bindings.push(Bind::output(l.output));
    Ok(vec![Dispatch {
        shader: &SHADER,
        entry,
        params: params(p),
        bindings,
        workgroups: [gx.max(1) as u32, bh as u32, 1],
        constants: Vec::new(),
    }])
}

/// Scaled scores of query row i of (b, h) against every key, in f64, masked keys left out (`keys(i)` long).
fn scores(s: &AttnShape, q: &[f32], k: &[f32], dm: Dims, b: usize, h: usize, i: usize) -> Vec<f64> {
    let w = dm.h * dm.d;
    let qr = &q[(b * dm.nq + i) * w + h * dm.d..][..dm.d];
    (0..s.keys(i, dm.nk))
        .map(|j| {
            let kr = &k[(b * dm.nk + j) * w + h * dm.d..][..dm.d];
            qr.iter().zip(kr).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>() * s.scale as f64
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

// ---------------------------------------------------------------------------------------------------------

/// L[b, h, i] = log Σ_j exp(scale · q_i·k_j) over the keys row i sees. Inputs q, k; output `[B, H, Nq]`.
pub struct AttentionLse(pub AttnShape);

impl Op for AttentionLse {
    fn kind(&self) -> &'static str {
        "attention_lse"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check(self.kind(), inputs, 2)?;
        check_qk(self.kind(), &self.0, inputs[0], inputs[1])?;
        let q = inputs[0];
        Ok(TensorDesc::f32(&[q.shape[0], self.0.heads, q.shape[1]]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let dm = self.0.dims(&l.inputs[0], &l.inputs[1]);
        dispatch(self.kind(), "attn_lse", &self.0.params(dm), l, dm.nq, dm.b * dm.h)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let dm = self.0.dims(descs[0], descs[1]);
        let mut out = Vec::with_capacity(dm.b * dm.h * dm.nq);
        for b in 0..dm.b {
            for h in 0..dm.h {
                for i in 0..dm.nq {
                    let s = scores(&self.0, inputs[0], inputs[1], dm, b, h, i);
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    out.push((m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln()) as f32);
                }
            }
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        let dm = self.0.dims(inputs[0], inputs[1]);
        2.0 * (dm.b * dm.h * dm.nq * dm.nk * dm.d) as f64
    }
}

/// Δ[b, h, i] = Σ_d dO[b, i, h·D + d] · O[b, i, h·D + d]. Inputs dO, O `[B, Nq, H·D]`; output `[B, H, Nq]`.
pub struct AttentionDelta {
    pub heads: usize,
}

impl Op for AttentionDelta {
    fn kind(&self) -> &'static str {
        "attention_delta"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check(self.kind(), inputs, 2)?;
        let (g, o) = (inputs[0], inputs[1]);
        if g.rank() != 3 || g.shape != o.shape || self.heads == 0 || !g.shape[2].is_multiple_of(self.heads) {
            return Err(Error::shape(self.kind(), format!("dO {g}, O {o}: expected two equal [B, N, H·D], H = {}", self.heads)));
        }
        Ok(TensorDesc::f32(&[g.shape[0], self.heads, g.shape[1]]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let s = AttnShape { heads: self.heads, scale: 1.0, causal: false };
        let dm = s.dims(&l.inputs[0], &l.inputs[0]);
        dispatch(self.kind(), "attn_delta", &s.params(dm), l, dm.nq, dm.b * dm.h)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (b, n, w) = (descs[0].shape[0], descs[0].shape[1], descs[0].shape[2]);
        let d = w / self.heads;
        let mut out = Vec::with_capacity(b * self.heads * n);
        for bi in 0..b {
            for h in 0..self.heads {
                for i in 0..n {
                    let o = (bi * n + i) * w + h * d;
                    out.push(dot(&inputs[0][o..o + d], &inputs[1][o..o + d]) as f32);
                }
            }
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        2.0 * inputs[0].numel() as f64
    }
}

/// Which input gradient an [`AttentionGrad`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradOf {
    Q,
    K,
    V,
}

/// dQ, dK or dV of attention. Inputs: q, k, v, dO, L, Δ for `Q` and `K`; q, k, dO, L for `V` (which needs
/// neither v nor Δ). Output: the gradient in q's (`Q`) or k's layout.
pub struct AttentionGrad {
    pub of: GradOf,
    pub shape: AttnShape,
}

impl AttentionGrad {
    /// (q, k, v, dO, L, Δ) out of the inputs; v and Δ are None for `V`.
    fn split<T: Copy>(&self, x: &[T]) -> (T, T, Option<T>, T, T, Option<T>) {
        match self.of {
            GradOf::V => (x[0], x[1], None, x[2], x[3], None),
            _ => (x[0], x[1], Some(x[2]), x[3], x[4], Some(x[5])),
        }
    }
}

impl Op for AttentionGrad {
    fn kind(&self) -> &'static str {
        match self.of {
            GradOf::Q => "attention_grad_q",
            GradOf::K => "attention_grad_k",
            GradOf::V => "attention_grad_v",
        }
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let kind = self.kind();
        check(kind, inputs, if self.of == GradOf::V { 4 } else { 6 })?;
        let (q, k, v, g, l, dl) = self.split(inputs);
        check_qk(kind, &self.shape, q, k)?;
        let stats = [q.shape[0], self.shape.heads, q.shape[1]];
        if let Some(v) = v {
            expect_shape(kind, "v", v, &k.shape)?;
        }
        expect_shape(kind, "dO", g, &q.shape)?;
        expect_shape(kind, "L", l, &stats)?;
        if let Some(dl) = dl {
            expect_shape(kind, "Δ", dl, &stats)?;
        }
        Ok(if self.of == GradOf::Q { q.clone() } else { k.clone() })
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let dm = self.shape.dims(&l.inputs[0], &l.inputs[1]);
        let (entry, rows) = match self.of {
            GradOf::Q => ("attn_dq", dm.nq),
            GradOf::K => ("attn_dk", dm.nk),
            GradOf::V => ("attn_dv", dm.nk),
        };
        dispatch(self.kind(), entry, &self.shape.params(dm), l, rows, dm.b * dm.h)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let s = &self.shape;
        let dm = s.dims(descs[0], descs[1]);
        let (q, k, v, g, lse, delta) = self.split(inputs);
        let (w, d) = (dm.h * dm.d, dm.d);
        let row = |n: usize, b: usize, i: usize, h: usize| (b * n + i) * w + h * d..(b * n + i) * w + (h + 1) * d;
        let mut acc = vec![0f64; out.numel()];
        for b in 0..dm.b {
            for h in 0..dm.h {
                for i in 0..dm.nq {
                    let st = (b * dm.h + h) * dm.nq + i;
                    let sc = scores(s, q, k, dm, b, h, i);
                    let qi = row(dm.nq, b, i, h);
                    for (j, sij) in sc.iter().enumerate() {
                        let kj = row(dm.nk, b, j, h);
                        let pij = (sij - lse[st] as f64).exp();
                        let ds = |vv: &[f32], dl: &[f32]| pij * (dot(&g[qi.clone()], &vv[kj.clone()]) - dl[st] as f64) * s.scale as f64;
                        match self.of {
                            GradOf::Q => {
                                let ds = ds(v.unwrap(), delta.unwrap());
                                for (a, x) in acc[qi.clone()].iter_mut().zip(&k[kj.clone()]) {
                                    *a += ds * *x as f64;
                                }
                            }
                            GradOf::K => {
                                let ds = ds(v.unwrap(), delta.unwrap());
                                for (a, x) in acc[kj.clone()].iter_mut().zip(&q[qi.clone()]) {
                                    *a += ds * *x as f64;
                                }
                            }
                            GradOf::V => {
                                for (a, x) in acc[kj.clone()].iter_mut().zip(&g[qi.clone()]) {
                                    *a += pij * *x as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        acc.into_iter().map(|x| x as f32).collect()
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        let dm = self.shape.dims(inputs[0], inputs[1]);
        let products = if self.of == GradOf::V { 2.0 } else { 3.0 };
        let full = 2.0 * products * (dm.b * dm.h * dm.nq * dm.nk * dm.d) as f64;
        if self.shape.causal {
            full / 2.0
        } else {
            full
        }
    }
}

/// The backward rule of an attention node with inputs q, k, v (any of which may be the same tensor: the
/// walker adds up the per-input gradients) and output O: records L, then Δ (only for dq / dk) and the
/// gradient kernels of the inputs `c.need`s, nothing else.
pub fn record_backward(g: &mut Graph, c: &BackwardCtx, shape: AttnShape) -> Result<Vec<Option<TensorId>>> {
    let (q, k, v) = (c.inputs[0], c.inputs[1], c.inputs[2]);
    if !c.need.iter().any(|x| *x) {
        return Ok(vec![None, None, None]);
    }
    let lse = g.op(&c.node("lse"), AttentionLse(shape), &[q, k])?;
    let delta = if c.need[0] || c.need[1] {
        Some(g.op(&c.node("delta"), AttentionDelta { heads: shape.heads }, &[c.dy, c.output])?)
    } else {
        None
    };
    let mut grad = |of: GradOf, what: &str| -> Result<TensorId> {
        let inputs = match of {
            GradOf::V => vec![q, k, c.dy, lse],
            _ => vec![q, k, v, c.dy, lse, delta.expect("recorded when dq or dk is needed")],
        };
        g.op(&c.node(what), AttentionGrad { of, shape }, &inputs)
    };
    let dq = if c.need[0] { Some(grad(GradOf::Q, "q")?) } else { None };
    let dk = if c.need[1] { Some(grad(GradOf::K, "k")?) } else { None };
    let dv = if c.need[2] { Some(grad(GradOf::V, "v")?) } else { None };
    Ok(vec![dq, dk, dv])
}
