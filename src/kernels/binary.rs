//! Two-input kernels (`shaders/binary.wgsl`): broadcast add and multiply, concatenation along a dimension,
//! and the row gather that looks up token embeddings. Each has its CPU twin below it.

use std::sync::LazyLock;

use bytemuck::{Pod, Zeroable};

use super::{check_f32, shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, BackwardCtx, Bind, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("binary");
/// The same kernels reading `a` as f16 weights (two per word, see `weight_storage.rs`): the gather of an
/// f16 embedding table uses it.
pub static SHADER_F16A: LazyLock<ShaderSource> = LazyLock::new(|| SHADER.f16_weights("a"));
/// The vec4 entry points reading a and b through textures (CPU adapters: `DeviceLimits::texture_reads`;
/// lavapipe 22.3 builds every lane-varying buffer load lane by lane).
pub static SHADER_TEX: LazyLock<ShaderSource> = LazyLock::new(|| SHADER.texture_reads(&["a4", "b4"]));

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    a_shift: u32,
    b_shift: u32,
    out_shift: u32,
    base: u32,
    inner: u32,
    bn: u32,
    rows: u32,
    vocab: u32,
    first: u32,
    id_offset: u32,
    _pad: u32,
}


#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Mul,
}

/// `a + b` or `a * b` where `b` broadcasts to `a`'s shape (NumPy rules) and its non-unit dimensions are
/// one contiguous run: a bias `[C]` on `[N, C]`, a per-channel `[B, C, 1, 1]` on `[B, C, H, W]`, a scalar, or
/// the same shape.
pub struct Binary {
    pub kind: BinaryKind,
}

/// For a broadcast `b` of `out`: `(inner, bn)` such that `b[(i / inner) % bn]` is the value for element `i`.
pub(crate) fn broadcast_layout(a: &TensorDesc, b: &TensorDesc) -> Option<(usize, usize)> {
    if b.rank() > a.rank() {
        return None;
    }
    let pad = a.rank() - b.rank();
    let bs: Vec<usize> = std::iter::repeat_n(1, pad).chain(b.shape.iter().copied()).collect();
    let non_unit: Vec<usize> = (0..a.rank()).filter(|&d| bs[d] != 1).collect();
    for &d in &non_unit {
        if bs[d] != a.shape[d] {
            return None;
        }
    }
    let (lo, hi) = match (non_unit.first(), non_unit.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi + 1),
        _ => return Some((1, 1)),
    };
    // Unit dims of b inside the run would need a strided index.
    if (lo..hi).any(|d| bs[d] == 1 && a.shape[d] != 1) {
        return None;
    }
    Some((a.shape[hi..].iter().product(), a.shape[lo..hi].iter().product()))
}

impl Op for Binary {
    fn kind(&self) -> &'static str {
        match self.kind {
            BinaryKind::Add => "add",
            BinaryKind::Mul => "mul",
        }
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (a, b) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[a, b])?;
        if broadcast_layout(a, b).is_none() {
            return Err(Error::shape(self.kind(), format!("cannot broadcast {b} to {a}")));
        }
        Ok(a.clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (a, b) = (&l.inputs[0], &l.inputs[1]);
        let (inner, bn) = broadcast_layout(a, b).expect("checked at record time");
        // b with a's own elements is split like a; a broadcast one (fewer elements, even when its index
        // runs over all of a's, like a per-channel b of [B, C, 1, 1]) is bound whole and indexed globally.
        let full_b = inner == 1 && bn == a.numel();
        // A full b needs no broadcast index in the vec4 forms.
        let (entry, entry4) = match (self.kind == BinaryKind::Add, full_b) {
            (true, false) => ("add", "add4"),
            (true, true) => ("add", "add4_full"),
            (false, false) => ("mul", "mul4"),
            (false, true) => ("mul", "mul4_full"),
        };
        let mut out = Vec::new();
        for (s, n) in chunks(a.numel() as u64, max_binding_elems(l.limits, DType::F32), 1) {
            let (ba, a_shift) = Bind::elements(Slot::Input(0), a, s, n, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, s, n, l.limits);
            // A full-size b is split like a; a broadcast one is small and bound whole.
            let (bb, b_shift, base) = if full_b {
                let (bb, sh) = Bind::elements(Slot::Input(1), b, s, n, l.limits);
                (bb, sh, 0)
            } else {
                (Bind::input(1, b), 0, s as u32)
            };
            let p = Params {
                n: n as u32,
                a_shift,
                b_shift,
                out_shift,
                base,
                inner: inner as u32,
                bn: bn as u32,
                ..Default::default()
            };
            // Whole vec4s of a, out and (full or repeated) b: the 4-wide entry point.
            // (b is read as vec4s even when one value is used: its binding must hold whole vec4s too.)
            let b_ok = bn % 4 == 0 && b_shift % 4 == 0 && (inner == 1 || inner % 4 == 0);
            let vec4 = b_ok && [n, a_shift as u64, out_shift as u64, base as u64].iter().all(|v| v % 4 == 0);
            let mut bindings = vec![ba, bb, bo];
            let textures = vec4 && l.limits.read_through_textures(&mut bindings, &[(0, DType::F32), (1, DType::F32)]);
            out.push(Dispatch {
                shader: if textures { &SHADER_TEX } else { &SHADER },
                entry: if vec4 { entry4 } else { entry },
                params: params(&p),
                bindings,
                workgroups: grid_1d(if vec4 { (n / 4).div_ceil(256) } else { n.div_ceil(256) }, l.limits),
                constants: Vec::new(),
            });
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (inner, bn) = broadcast_layout(descs[0], descs[1]).unwrap();
        let b = inputs[1];
        inputs[0]
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let y = b[(i / inner) % bn];
                match self.kind {
                    BinaryKind::Add => x + y,
                    BinaryKind::Mul => x * y,
                }
            })
            .collect()
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        out.numel() as f64
    }
    /// `add`: da = dy, db = dy summed over b's broadcast dimensions. `mul`: da = dy·b, db = Σ dy·a.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        let (a, b) = (c.inputs[0], c.inputs[1]);
        let b_shape = g.shape(b).to_vec();
        let full_b = g.desc(b).numel() == g.desc(a).numel();
        let da = match (c.need[0], self.kind) {
            (false, _) => None,
            (true, BinaryKind::Add) => Some(c.dy),
            (true, BinaryKind::Mul) => Some(g.mul(&c.node("a"), c.dy, b)?),
        };
        let db = if c.need[1] {
            let prod = match self.kind {
                BinaryKind::Add => c.dy,
                BinaryKind::Mul => g.mul(&c.node("b_prod"), c.dy, a)?,
            };
            Some(if full_b { g.reshape(prod, &b_shape)? } else { g.sum_to(&c.node("b"), prod, &b_shape)? })
        } else {
            None
        };
        Ok(vec![da, db])
    }
}

/// Concatenation of two tensors along `dim` (UNet skip connections use dim 1).
pub struct Concat {
    pub dim: usize,
}

impl Concat {
    /// `(outer, a elements per outer step, b elements per outer step)`.
    fn layout(&self, a: &TensorDesc, b: &TensorDesc) -> (usize, usize, usize) {
        let inner: usize = a.shape[self.dim + 1..].iter().product();
        let outer: usize = a.shape[..self.dim].iter().product();
        (outer, a.shape[self.dim] * inner, b.shape[self.dim] * inner)
    }
}

impl Op for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (a, b) = (inputs[0], inputs[1]);
        check_f32("concat", &[a, b])?;
        let same_rest = a.rank() == b.rank()
            && self.dim < a.rank()
            && (0..a.rank()).all(|d| d == self.dim || a.shape[d] == b.shape[d]);
        if !same_rest {
            return Err(Error::shape("concat", format!("cannot concatenate {a} and {b} along dim {}", self.dim)));
        }
        let mut shape = a.shape.clone();
        shape[self.dim] += b.shape[self.dim];
        Ok(TensorDesc::f32(&shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (_, ia, ib) = self.layout(&l.inputs[0], &l.inputs[1]);
        let n = l.output.numel() as u64;
        let p = Params { n: n as u32, inner: ia as u32, bn: ib as u32, ..Default::default() };
        // Whole tensors bind from their (aligned) starts, so rows of a multiple of 4 make every access a vec4.
        let vec4 = ia.is_multiple_of(4) && ib.is_multiple_of(4);
        let mut bindings = vec![Bind::input(0, &l.inputs[0]), Bind::input(1, &l.inputs[1]), Bind::output(l.output)];
        let textures = vec4 && l.limits.read_through_textures(&mut bindings, &[(0, DType::F32), (1, DType::F32)]);
        Ok(vec![Dispatch {
            shader: if textures { &SHADER_TEX } else { &SHADER },
            entry: if vec4 { "concat4" } else { "concat" },
            params: params(&p),
            bindings,
            workgroups: grid_1d(n.div_ceil(if vec4 { 1024 } else { 256 }), l.limits),
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (outer, ia, ib) = self.layout(descs[0], descs[1]);
        let mut out = Vec::with_capacity(outer * (ia + ib));
        for o in 0..outer {
            out.extend_from_slice(&inputs[0][o * ia..(o + 1) * ia]);
            out.extend_from_slice(&inputs[1][o * ib..(o + 1) * ib]);
        }
        out
    }
    /// Each input's gradient is its range of `dy` along the concatenated dimension.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        let (na, nb) = (g.shape(c.inputs[0])[self.dim], g.shape(c.inputs[1])[self.dim]);
        let da = if c.need[0] { Some(g.slice(&c.node("a"), c.dy, self.dim, 0, na)?) } else { None };
        let db = if c.need[1] { Some(g.slice(&c.node("b"), c.dy, self.dim, na, nb)?) } else { None };
        Ok(vec![da, db])
    }
}

/// Row gather: `table: [V, D]` (f32, or f16 weights), `ids: [N]` (integer values stored as f32, exact
/// below 2^24) → `[N, D]` f32: row `id - first_id` of the table. Ids outside `[first_id, first_id + V)` give
/// zero rows, so rows appended to a table (textual-inversion vectors) are a second gather added to the
/// first, with no copy of the table. Tables larger than one binding (CLIP's 49,408 × 1,024 in f32) are
/// split by rows across dispatches.
pub struct Gather {
    pub first_id: usize,
}

impl Op for Gather {
    fn kind(&self) -> &'static str {
        "gather"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (t, ids) = (inputs[0], inputs[1]);
        check_f32("gather", &[ids])?;
        if !matches!(t.dtype, DType::F32 | DType::F16) {
            return Err(Error::DType { op: "gather".into(), msg: format!("table is {t}; this kernel takes f32 or f16") });
        }
        if t.rank() != 2 {
            return Err(Error::shape("gather", format!("table must be [V, D], got {t}")));
        }
        let mut shape = ids.shape.clone();
        shape.push(t.shape[1]);
        Ok(TensorDesc::f32(&shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (t, ids) = (&l.inputs[0], &l.inputs[1]);
        let (v, d) = (t.shape[0] as u64, t.shape[1] as u64);
        let n = l.output.numel() as u64;
        let cap = max_binding_elems(l.limits, t.dtype) / d;
        let shader: &'static ShaderSource = if t.dtype == DType::F16 { &SHADER_F16A } else { &SHADER };
        let mut out = Vec::new();
        for (k, (r0, nr)) in chunks(v, cap, 1).into_iter().enumerate() {
            let (bt, a_shift) = Bind::elements(Slot::Input(0), t, r0 * d, nr * d, l.limits);
            let p = Params {
                n: n as u32,
                a_shift,
                inner: d as u32,
                bn: r0 as u32,
                rows: nr as u32,
                vocab: v as u32,
                first: (k == 0) as u32,
                id_offset: self.first_id as u32,
                ..Default::default()
            };
            out.push(Dispatch {
                shader,
                entry: "gather",
                params: params(&p),
                bindings: vec![bt, Bind::input(1, ids), Bind::output(l.output)],
                workgroups: grid_1d(n.div_ceil(256), l.limits),
                constants: Vec::new(),
            });
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (v, d) = (descs[0].shape[0], descs[0].shape[1]);
        let mut out = Vec::with_capacity(inputs[1].len() * d);
        for &id in inputs[1] {
            let id = id - self.first_id as f32;
            if id >= 0.0 && (id as usize) < v {
                let r = id as usize;
                out.extend_from_slice(&inputs[0][r * d..(r + 1) * d]);
            } else {
                out.extend(std::iter::repeat_n(0.0, d));
            }
        }
        out
    }
    fn bytes(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        (inputs[1].bytes() + 2 * out.bytes()) as f64
    }
    /// The table's gradient sums the output gradient rows of each id; ids have none.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None, None]);
        }
        if self.first_id != 0 {
            return Err(Error::usage(format!("{}: a gather with a first id has no backward", c.node("table"))));
        }
        let vocab = g.shape(c.inputs[0])[0];
        Ok(vec![Some(g.gather_grad(&c.node("table"), c.inputs[1], c.dy, vocab)?), None])
    }
}

impl Graph {
    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.op(name, Binary { kind: BinaryKind::Add }, &[a, b])
    }
    pub fn mul(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.op(name, Binary { kind: BinaryKind::Mul }, &[a, b])
    }
    pub fn concat(&mut self, name: &str, a: TensorId, b: TensorId, dim: usize) -> Result<TensorId> {
        self.op(name, Concat { dim }, &[a, b])
    }
    /// `x` repeated along dim 0 until it has `batch` rows (`[x; x; …]`; `batch` a multiple of x's): the
    /// tensors a shared-input evaluation computed once, where they meet per-copy ones (see
    /// `UNet2DConditionModel::forward_chunked`). `x` itself when it has `batch` rows already.
    pub fn repeat_to_batch(&mut self, name: &str, x: TensorId, batch: usize) -> Result<TensorId> {
        let rows = self.shape(x).first().copied().unwrap_or(0);
        if rows == batch {
            return Ok(x);
        }
        if rows == 0 || !batch.is_multiple_of(rows) {
            return Err(Error::shape("repeat_to_batch", format!("{name}: cannot repeat {} to a batch of {batch}", self.desc(x))));
        }
        let mut out = x;
        for i in 1..batch / rows {
            out = self.concat(&format!("{name}.{i}"), out, x, 0)?;
        }
        Ok(out)
    }
    pub fn gather(&mut self, name: &str, table: TensorId, ids: TensorId) -> Result<TensorId> {
        self.op(name, Gather { first_id: 0 }, &[table, ids])
    }
    /// [`Graph::gather`] from a table whose row 0 is id `first_id` (other ids give zero rows).
    pub fn gather_from(&mut self, name: &str, table: TensorId, ids: TensorId, first_id: usize) -> Result<TensorId> {
        self.op(name, Gather { first_id }, &[table, ids])
    }
}
