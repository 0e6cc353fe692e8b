//! Backward kernels of the elementwise and layout ops (`shaders/elementwise_backward.wgsl`): activation
//! derivatives (also for the affine `Map`), GEGLU, nearest upsampling, slicing (the reverse of `concat`) and
//! the embedding-table gradient of `gather`. Each op has its CPU twin below it; the rules that use them sit
//! with the forward ops (`unary.rs`, `binary.rs`, `matmul.rs`).

use bytemuck::{Pod, Zeroable};

use super::unary::Activation;
use super::{check_f32, shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, Bind, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("elementwise_backward", with_activations);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    s0: u32,
    s1: u32,
    out_shift: u32,
    act: u32,
    alpha: f32,
    beta: f32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
}


/// The derivative of an activation, in f64 (exact erf).
pub fn activation_derivative(act: Activation, x: f64) -> f64 {
    let swish = |k: f64| {
        let s = 1.0 / (1.0 + (-k * x).exp());
        s * (1.0 + k * x * (1.0 - s))
    };
    match act {
        Activation::None => 1.0,
        Activation::Silu => swish(1.0),
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + x * pdf
        }
        Activation::GeluTanh => {
            let c = 0.7978845608028654;
            let t = (c * (x + 0.044715 * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x)
        }
        Activation::QuickGelu => swish(1.702),
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Tanh => 1.0 - x.tanh() * x.tanh(),
    }
}

/// Lowers a kernel whose output is `rows` rows of `out_row` elements, reading rows of `row0` elements of
/// input `ins[0].0` and `row1` of input `ins[1].0` (an input repeated for one-input kernels), split by whole
/// rows so every binding fits the device.
fn lower_rows(l: &Lowering, entry: &'static str, rows: u64, ins: [(usize, u64); 2], out_row: u64, base: Params) -> Result<Vec<Dispatch>> {
    let widest = ins[0].1.max(ins[1].1).max(out_row).max(1);
    let cap = max_binding_elems(l.limits, DType::F32) / widest;
    if cap == 0 {
        return Err(super::norm::unit_limit_error(entry, format!("one row of {widest} elements"), widest, l.limits));
    }
    let mut out = Vec::new();
    for (r0, nr) in chunks(rows, cap, 1) {
        let (b0, s0) = Bind::elements(Slot::Input(ins[0].0), &l.inputs[ins[0].0], r0 * ins[0].1, nr * ins[0].1, l.limits);
        let (b1, s1) = Bind::elements(Slot::Input(ins[1].0), &l.inputs[ins[1].0], r0 * ins[1].1, nr * ins[1].1, l.limits);
        let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * out_row, nr * out_row, l.limits);
        let n = nr * out_row;
        let p = Params { n: n as u32, s0, s1, out_shift, ..base };
        out.push(Dispatch {
            shader: &SHADER,
            entry,
            params: params(&p),
            bindings: vec![b0, b1, bo],
            workgroups: grid_1d(n.div_ceil(256), l.limits),
            constants: Vec::new(),
        });
    }
    Ok(out)
}

/// `dx = alpha · dy · act'(alpha · x + beta)`: the backward of `Map` (inputs `x`, `dy`).
pub struct ActivationGrad {
    pub act: Activation,
    pub alpha: f32,
    pub beta: f32,
}

impl Op for ActivationGrad {
    fn kind(&self) -> &'static str {
        "activation_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (x, dy) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[x, dy])?;
        if x.shape != dy.shape {
            return Err(Error::shape(self.kind(), format!("x {x} and dy {dy} differ in shape")));
        }
        Ok(x.clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let base = Params { act: self.act.code(), alpha: self.alpha, beta: self.beta, ..Default::default() };
        lower_rows(l, "activation_grad", l.output.numel() as u64, [(0, 1), (1, 1)], 1, base)
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (alpha, beta) = (self.alpha as f64, self.beta as f64);
        inputs[0]
            .iter()
            .zip(inputs[1])
            .map(|(&x, &dy)| (alpha * dy as f64 * activation_derivative(self.act, alpha * x as f64 + beta)) as f32)
            .collect()
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        out.numel() as f64 * 20.0
    }
}

/// GEGLU backward: inputs `x [..., 2F]` (= `[a, g]`), `dy [..., F]`; output `dx = [dy·gelu(g), dy·a·gelu'(g)]`.
pub struct GegluGrad;

impl Op for GegluGrad {
    fn kind(&self) -> &'static str {
        "geglu_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (x, dy) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[x, dy])?;
        let ok = x.rank() > 0
            && x.rank() == dy.rank()
            && x.shape[..x.rank() - 1] == dy.shape[..dy.rank() - 1]
            && x.dim(-1) == 2 * dy.dim(-1);
        if !ok {
            return Err(Error::shape(self.kind(), format!("x {x} must be dy {dy} with a doubled last dimension")));
        }
        Ok(x.clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let f = l.inputs[1].dim(-1) as u64;
        let rows = l.inputs[1].numel() as u64 / f;
        lower_rows(l, "geglu_grad", rows, [(0, 2 * f), (1, f)], 2 * f, Params { a: f as u32, ..Default::default() })
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let f = descs[1].dim(-1);
        let mut out = Vec::with_capacity(inputs[0].len());
        for (x, dy) in inputs[0].chunks_exact(2 * f).zip(inputs[1].chunks_exact(f)) {
            let (a, g) = x.split_at(f);
            out.extend((0..f).map(|j| dy[j] as f64 * Activation::Gelu.apply(g[j]) as f64).map(|v| v as f32));
            out.extend((0..f).map(|j| (dy[j] as f64 * a[j] as f64 * activation_derivative(Activation::Gelu, g[j] as f64)) as f32));
        }
        out
    }
}

/// Backward of nearest resizing `[B, C, H, W] → [B, C, OH, OW]`: input `dy [B, C, OH, OW]`, output
/// `[B, C, H, W]` where each input pixel gets the sum of the outputs it was copied to (any sizes).
pub struct UpsampleNearestGrad {
    pub h: usize,
    pub w: usize,
}

impl Op for UpsampleNearestGrad {
    fn kind(&self) -> &'static str {
        "upsample_nearest_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let dy = inputs[0];
        check_f32(self.kind(), &[dy])?;
        if dy.rank() != 4 || self.h == 0 || self.w == 0 {
            return Err(Error::shape(self.kind(), format!("expects dy [B, C, OH, OW] and a positive size, got {dy} → {}×{}", self.h, self.w)));
        }
        Ok(TensorDesc::f32(&[dy.shape[0], dy.shape[1], self.h, self.w]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let dy = &l.inputs[0];
        let (oh, ow) = (dy.shape[2] as u64, dy.shape[3] as u64);
        let (h, w) = (self.h as u64, self.w as u64);
        let planes = (dy.shape[0] * dy.shape[1]) as u64;
        let base = Params { a: w as u32, b: h as u32, c: ow as u32, d: oh as u32, ..Default::default() };
        lower_rows(l, "upsample_grad", planes, [(0, oh * ow), (0, oh * ow)], h * w, base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (oh, ow) = (descs[0].shape[2], descs[0].shape[3]);
        let (h, w) = (self.h, self.w);
        let mut out = Vec::with_capacity(inputs[0].len() / (oh * ow) * h * w);
        for plane in inputs[0].chunks_exact(oh * ow) {
            let mut acc = vec![0f64; h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    acc[(oy * h / oh) * w + ox * w / ow] += plane[oy * ow + ox] as f64;
                }
            }
            out.extend(acc.into_iter().map(|v| v as f32));
        }
        out
    }
}

/// `x[..., start..start + len, ...]` along `dim` (the backward of `concat`, and a forward op in itself).
pub struct Slice {
    pub dim: usize,
    pub start: usize,
    pub len: usize,
}

impl Slice {
    /// `(outer, elements per outer step of x, of the output, offset inside x's step)`.
    fn layout(&self, x: &TensorDesc) -> (usize, usize, usize, usize) {
        let inner: usize = x.shape[self.dim + 1..].iter().product();
        let outer: usize = x.shape[..self.dim].iter().product();
        (outer, x.shape[self.dim] * inner, self.len * inner, self.start * inner)
    }
}

impl Op for Slice {
    fn kind(&self) -> &'static str {
        "slice"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_f32(self.kind(), &[x])?;
        if self.dim >= x.rank() || self.len == 0 || self.start + self.len > x.shape[self.dim] {
            return Err(Error::shape(self.kind(), format!("cannot take [{}, {}) of dim {} of {x}", self.start, self.start + self.len, self.dim)));
        }
        let mut shape = x.shape.clone();
        shape[self.dim] = self.len;
        Ok(TensorDesc::f32(&shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (outer, ix, io, off) = self.layout(&l.inputs[0]);
        let base = Params { a: ix as u32, b: io as u32, c: off as u32, ..Default::default() };
        lower_rows(l, "slice", outer as u64, [(0, ix as u64), (0, ix as u64)], io as u64, base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (outer, ix, io, off) = self.layout(descs[0]);
        (0..outer).flat_map(|o| inputs[0][o * ix + off..o * ix + off + io].iter().copied()).collect()
    }
}

/// Embedding-table gradient, the backward of `gather`: inputs `ids [...]` (as f32) and `dy [..., D]`, output
/// `dtable [vocab, D]` with `dtable[v] = Σ_{t: ids[t] = v} dy[t]`. Deterministic (no atomics): each table row
/// scans the ids. Tables larger than one binding are written in row ranges, as the forward reads them.
pub struct GatherGrad {
    pub vocab: usize,
}

impl Op for GatherGrad {
    fn kind(&self) -> &'static str {
        "gather_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (ids, dy) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[ids, dy])?;
        if dy.rank() != ids.rank() + 1 || dy.shape[..ids.rank()] != ids.shape[..] || self.vocab == 0 {
            return Err(Error::shape(self.kind(), format!("dy {dy} must be ids {ids} with a trailing dimension")));
        }
        Ok(TensorDesc::f32(&[self.vocab, dy.dim(-1)]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (ids, dy) = (&l.inputs[0], &l.inputs[1]);
        let d = dy.dim(-1) as u64;
        let cap = max_binding_elems(l.limits, DType::F32) / d;
        if cap == 0 {
            return Err(super::norm::unit_limit_error(self.kind(), format!("one table row of {d} elements"), d, l.limits));
        }
        let mut out = Vec::new();
        for (r0, nr) in chunks(self.vocab as u64, cap, 1) {
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * d, nr * d, l.limits);
            let p = Params {
                n: nr as u32,
                out_shift,
                a: d as u32,
                b: ids.numel() as u32,
                c: r0 as u32,
                d: self.vocab as u32,
                ..Default::default()
            };
            out.push(Dispatch {
                shader: &SHADER,
                entry: "gather_grad",
                params: params(&p),
                bindings: vec![Bind::input(0, ids), Bind::input(1, dy), bo],
                workgroups: grid_1d(nr, l.limits),
                constants: Vec::new(),
            });
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let d = descs[1].dim(-1);
        let mut acc = vec![0f64; self.vocab * d];
        for (t, &id) in inputs[0].iter().enumerate() {
            if id >= 0.0 && (id as usize) < self.vocab {
                let r = id as usize;
                for (a, &g) in acc[r * d..(r + 1) * d].iter_mut().zip(&inputs[1][t * d..(t + 1) * d]) {
                    *a += g as f64;
                }
            }
        }
        acc.into_iter().map(|v| v as f32).collect()
    }
    fn bytes(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        (inputs[0].bytes() + inputs[1].bytes() + out.bytes()) as f64
    }
}

impl Graph {
    /// `dx = dy · act'(x)`: the gradient through `activation(x, act)`.
    pub fn activation_grad(&mut self, name: &str, x: TensorId, dy: TensorId, act: Activation) -> Result<TensorId> {
        self.op(name, ActivationGrad { act, alpha: 1.0, beta: 0.0 }, &[x, dy])
    }

    /// The gradient of `geglu(x)` given its output gradient `dy`.
    pub fn geglu_grad(&mut self, name: &str, x: TensorId, dy: TensorId) -> Result<TensorId> {
        self.op(name, GegluGrad, &[x, dy])
    }

    /// The gradient of a nearest resize from `h × w` given its output gradient `dy [B, C, OH, OW]`.
    pub fn upsample_nearest_grad(&mut self, name: &str, dy: TensorId, h: usize, w: usize) -> Result<TensorId> {
        self.op(name, UpsampleNearestGrad { h, w }, &[dy])
    }

    /// `x` restricted to `[start, start + len)` along `dim`.
    pub fn slice(&mut self, name: &str, x: TensorId, dim: usize, start: usize, len: usize) -> Result<TensorId> {
        self.op(name, Slice { dim, start, len }, &[x])
    }

    /// The gradient of a `[vocab, D]` table read by `gather(table, ids)`, given the output gradient `dy`.
    pub fn gather_grad(&mut self, name: &str, ids: TensorId, dy: TensorId, vocab: usize) -> Result<TensorId> {
        self.op(name, GatherGrad { vocab }, &[ids, dy])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences_of_the_activations() {
        for act in [Activation::None, Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu, Activation::Relu, Activation::Tanh] {
            for x in [-4.0f64, -1.3, -0.2, 0.3, 0.9, 2.5, 6.0] {
                let h = 1e-3;
                let f = |v: f64| {
                    let v = v as f32 as f64;
                    match act {
                        Activation::Gelu => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
                        _ => act.apply(v as f32) as f64,
                    }
                };
                let fd = (f(x + h) - f(x - h)) / (2.0 * h);
                let an = activation_derivative(act, x);
                assert!((fd - an).abs() < 2e-3, "{act:?} at {x}: {an} vs {fd}");
            }
        }
    }
}
