//! Backward of the normalisation family (`shaders/norm_backward.wgsl`): GroupNorm (with its fused
//! activation), LayerNorm and softmax, with CPU twins.
//!
//! **GroupNorm.** The whole gradient sits in the apply node's rule (the statistics node gets none: its
//! output's gradient is folded into dx). With dyp = dy · act'(pre-activation), xhat = (x − mean) · rstd and
//! dxhat = dyp · w[c], PyTorch's formula per (b, g) group is
//! `dx = rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat))`, `dweight[c] = Σ dyp · xhat`,
//! `dbias[c] = Σ dyp`. Everything reduces to two sums per channel plane, A = Σ dyp and B = Σ dyp · xhat:
//! the group means are `Σ_c w[c] · A_bc / n` and `Σ_c w[c] · B_bc / n`, dweight and dbias are B and A summed
//! over the batch. So the rule records
//! 1. `grad_sums`: A and B per (plane, chunk of ≤ [`SUM_CHUNK`] elements) — the one full pass over x and dy;
//! 2. `grad_coef`: the two means per (b, g) (tiny);
//! 3. `grad_x`: dx elementwise (the second full pass);
//! 4. `grad_weight` / `grad_bias`: per-channel sums of the partials (tiny).
//!
//! The pre-activation and xhat are recomputed from x and the forward's statistics tensor (mean = K + md,
//! rstd), exactly as the forward kernel formed them. Large tensors are split into windows of whole planes or
//! whole chunks, as the forward splits them.
//!
//! **LayerNorm** has no saved statistics, so the rule records a statistics node (per row (K, md, rstd), the
//! layout of GroupNorm's finals), a row kernel for dx, partial column sums for dweight and
//! [`Graph::sum_to`] for dbias and the partials. **Softmax**: one row kernel from the forward output.

use bytemuck::{Pod, Zeroable};

use super::norm::{
    check_f32, check_rows, limit_error, mean_var, threads_per_row, unit_limit_error, windows, GnLayout, GroupNormApply, LayerNorm,
    Softmax,
    APPLY_CHUNK, WG,
};
use super::unary::Activation;
use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, BackwardCtx, Bind, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("norm_backward", with_activations);

/// Most elements of one channel plane one `gn_bwd_sums` unit reduces. Fixed at record time (the partial-sums
/// tensor has one slot per chunk); 16 elements per thread at 256 threads per unit.
pub const SUM_CHUNK: u64 = 4096;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    units: u32,
    len: u32,
    count: u32,
    chunk: u32,
    chunks: u32,
    x_shift: u32,
    dy_shift: u32,
    out_shift: u32,
    st_shift: u32,
    unit0: u32,
    k0: u32,
    parts: u32,
    channels: u32,
    cpg: u32,
    groups: u32,
    batch: u32,
    flags: u32,
    act: u32,
    tpu: u32,
    scale: f32,
    _pad: [u32; 4],
}

fn dispatch(entry: &'static str, p: &Params, bindings: Vec<Bind>, workgroups: [u32; 3]) -> Dispatch {
    Dispatch { shader: &SHADER, entry, params: params(p), bindings, workgroups, constants: Vec::new() }
}

/// A harmless read-only binding (one element of input `i`) for a binding number an entry point ignores.
fn dummy(l: &Lowering, i: usize) -> Bind {
    Bind::elements(Slot::Input(i), &l.inputs[i], 0, 1, l.limits).0
}

/// A small input bound whole, refused clearly when it exceeds a binding.
fn small(op: &str, l: &Lowering, i: usize) -> Result<Bind> {
    let d = &l.inputs[i];
    if d.bytes() > l.limits.max_binding {
        return Err(limit_error(op, format!("input {i} {d}"), d.bytes(), l.limits));
    }
    Ok(Bind::input(i, d))
}

/// d act(z) / dz in f64 (the CPU twins).
pub fn act_grad(act: Activation, z: f64) -> f64 {
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    match act {
        Activation::None => 1.0,
        Activation::Silu => {
            let s = sigmoid(z);
            s * (1.0 + z * (1.0 - s))
        }
        Activation::Gelu => {
            0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2)) + z * (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
        }
        Activation::GeluTanh => {
            let k = 0.7978845608028654;
            let t = (k * (z + 0.044715 * z * z * z)).tanh();
            0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * z * z)
        }
        Activation::QuickGelu => {
            let s = sigmoid(1.702 * z);
            s * (1.0 + 1.702 * z * (1.0 - s))
        }
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Tanh => 1.0 - z.tanh() * z.tanh(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// GroupNorm

/// Geometry of GroupNorm's backward: the forward's layout plus the chunking of each channel plane.
#[derive(Clone, Copy, Debug)]
pub struct GnBwdLayout {
    pub lay: GnLayout,
    /// Partial sums per channel plane.
    pub parts: u64,
    /// Elements per partial (the last one may be shorter).
    pub chunk: u64,
}

impl GnBwdLayout {
    pub fn new(x: &TensorDesc, groups: usize) -> Self {
        let lay = GnLayout::new(x, groups);
        let s = lay.spatial.max(1);
        let p = s.div_ceil(SUM_CHUNK);
        let chunk = s.div_ceil(p);
        GnBwdLayout { lay, parts: s.div_ceil(chunk), chunk }
    }
    fn planes(&self) -> u64 {
        self.lay.batch * self.lay.channels
    }
    fn cpg(&self) -> u64 {
        self.lay.channels / self.lay.groups
    }
    /// The partial sums: (A, B) per (plane, chunk).
    pub fn sums_desc(&self) -> TensorDesc {
        TensorDesc::f32(&[(self.planes() * self.parts) as usize, 2])
    }
}

/// Per (b, g) block: f64 mean and rstd, computed from x (the twins are independent of the GPU statistics).
fn cpu_block_stats(x: &[f32], lay: &GnLayout, eps: f32) -> Vec<(f64, f64)> {
    x.chunks_exact(lay.block as usize)
        .map(|blk| {
            let (m, v) = mean_var(blk);
            (m, 1.0 / (v + eps as f64).sqrt())
        })
        .collect()
}

/// The fused GroupNorm's affine parameters and activation, shared by the backward ops that recompute the
/// pre-activation.
#[derive(Clone, Copy, Debug)]
pub struct GnAffine {
    pub groups: usize,
    pub eps: f32,
    pub act: Activation,
    pub has_weight: bool,
    pub has_bias: bool,
}

impl GnAffine {
    fn flags(&self) -> u32 {
        self.has_weight as u32 | (self.has_bias as u32) << 1
    }
    /// Input index of the weight and bias after `first` (the first optional input).
    fn wb(&self, first: usize) -> (Option<usize>, Option<usize>) {
        (self.has_weight.then_some(first), self.has_bias.then_some(first + self.has_weight as usize))
    }
    fn check(&self, op: &str, inputs: &[&TensorDesc], fixed: usize) -> Result<()> {
        let want = fixed + self.has_weight as usize + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape(op, format!("expects {want} inputs, got {}", inputs.len())));
        }
        let x = inputs[0];
        check_f32(op, "input", x)?;
        if x.rank() < 2 || !x.shape[1].is_multiple_of(self.groups) {
            return Err(Error::shape(op, format!("{x} is not [B, C, *spatial] with C divisible by {}", self.groups)));
        }
        let stats = GnLayout::new(x, self.groups).stats_desc();
        if *inputs[1] != stats {
            return Err(Error::shape(op, format!("statistics of {x} must be {stats}, got {}", inputs[1])));
        }
        if inputs[2].shape != x.shape {
            return Err(Error::shape(op, format!("output gradient {} must have the shape of {x}", inputs[2])));
        }
        let (w, b) = self.wb(fixed);
        for i in [w, b].into_iter().flatten() {
            if inputs[i].shape != [x.shape[1]] {
                return Err(Error::shape(op, format!("weight/bias must be f32[{}], got {}", x.shape[1], inputs[i])));
            }
        }
        Ok(())
    }
    /// Bindings 5 and 6 (weight, bias), a dummy where absent.
    fn bind_wb(&self, op: &str, l: &Lowering, first: usize) -> Result<[Bind; 2]> {
        let (w, b) = self.wb(first);
        Ok([
            match w {
                Some(i) => small(op, l, i)?,
                None => dummy(l, 0),
            },
            match b {
                Some(i) => small(op, l, i)?,
                None => dummy(l, 0),
            },
        ])
    }
    /// The f64 twin of dyp = dy · act'(pre-activation) at one element.
    fn dyp(&self, xv: f32, dyv: f32, mean: f64, rstd: f64, w: f64, b: f64) -> f64 {
        let d = dyv as f64;
        if self.act == Activation::None {
            d
        } else {
            d * act_grad(self.act, (xv as f64 - mean) * rstd * w + b)
        }
    }
}

/// The statistics finals of `stats` (4 floats per (b, g)), refused when larger than a binding.
fn bind_finals(op: &str, l: &Lowering, lay: &GnLayout) -> Result<Bind> {
    let (finals, _) = Bind::elements(Slot::Input(1), &l.inputs[1], 0, 4 * lay.blocks(), l.limits);
    if finals.size > l.limits.max_binding {
        return Err(limit_error(op, format!("statistics of {}", l.inputs[0]), finals.size, l.limits));
    }
    Ok(finals)
}

/// `gn_bwd_sums`: inputs `[x, stats, dy, weight?, bias?]` → `[B·C·P, 2]` partial sums (A = Σ dyp,
/// B = Σ dyp · xhat) per (channel plane, chunk).
pub struct GnBwdSums(pub GnAffine);

impl Op for GnBwdSums {
    fn kind(&self) -> &'static str {
        "group_norm_grad_sums"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        self.0.check(self.kind(), inputs, 3)?;
        Ok(GnBwdLayout::new(inputs[0], self.0.groups).sums_desc())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let op = self.kind();
        let (x, dy) = (&l.inputs[0], &l.inputs[2]);
        let bl = GnBwdLayout::new(x, self.0.groups);
        let lay = &bl.lay;
        if l.output.bytes() > l.limits.max_binding {
            return Err(limit_error(op, format!("partial sums {}", l.output), l.output.bytes(), l.limits));
        }
        let finals = bind_finals(op, l, lay)?;
        let [bw, bb] = self.0.bind_wb(op, l, 3)?;
        let cap = max_binding_elems(l.limits, DType::F32);
        let wins = windows(bl.planes(), lay.spatial, cap, bl.chunk)
            .ok_or_else(|| limit_error(op, format!("a chunk of {} elements of {x}", bl.chunk), bl.chunk * 4, l.limits))?;
        // Threads per unit: a power of two giving each thread about 16 elements.
        let tpu = threads_per_unit(bl.chunk);
        let mut out = Vec::new();
        for (u0, nu, s0, cnt) in wins {
            let begin = u0 * lay.spatial + s0;
            let total = (nu - 1) * lay.spatial + cnt;
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, begin, total, l.limits);
            let (bd, dy_shift) = Bind::elements(Slot::Input(2), dy, begin, total, l.limits);
            let per_plane = cnt.div_ceil(bl.chunk);
            let p = Params {
                units: nu as u32,
                len: lay.spatial as u32,
                count: cnt as u32,
                chunk: bl.chunk as u32,
                chunks: per_plane as u32,
                x_shift,
                dy_shift,
                unit0: u0 as u32,
                k0: (s0 / bl.chunk) as u32,
                parts: bl.parts as u32,
                channels: lay.channels as u32,
                cpg: bl.cpg() as u32,
                flags: self.0.flags(),
                act: self.0.act.code(),
                tpu: tpu as u32,
                ..Default::default()
            };
            let bindings = vec![bx.clone(), bd, Bind::output(l.output), finals.clone(), bw.clone(), bb.clone(), bx];
            out.push(dispatch("gn_bwd_sums", &p, bindings, grid_1d((nu * per_plane).div_ceil(WG / tpu), l.limits)));
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let bl = GnBwdLayout::new(descs[0], self.0.groups);
        let (x, dy) = (inputs[0], inputs[2]);
        let (wi, bi) = self.0.wb(3);
        let (s, q, cpg, c_all) = (bl.lay.spatial as usize, bl.chunk as usize, bl.cpg() as usize, bl.lay.channels as usize);
        let stats = cpu_block_stats(x, &bl.lay, self.0.eps);
        let mut out = Vec::with_capacity(bl.sums_desc().numel());
        for plane in 0..bl.planes() as usize {
            let c = plane % c_all;
            let (mean, rstd) = stats[plane / cpg];
            let w = wi.map_or(1.0, |i| inputs[i][c] as f64);
            let b = bi.map_or(0.0, |i| inputs[i][c] as f64);
            let xs = &x[plane * s..(plane + 1) * s];
            let ds = &dy[plane * s..(plane + 1) * s];
            for (xc, dc) in xs.chunks(q).zip(ds.chunks(q)) {
                let (mut a, mut bsum) = (0.0f64, 0.0f64);
                for (&xv, &dv) in xc.iter().zip(dc) {
                    let d = self.0.dyp(xv, dv, mean, rstd, w, b);
                    a += d;
                    bsum += d * (xv as f64 - mean) * rstd;
                }
                out.push(a as f32);
                out.push(bsum as f32);
            }
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * if self.0.act == Activation::None { 4.0 } else { 12.0 }
    }
}

/// Threads per `gn_bwd_sums` unit: a power of two (1 to 256) giving each about 16 elements.
fn threads_per_unit(chunk: u64) -> u64 {
    let t = (chunk / 16).clamp(1, WG);
    1u64 << (63 - t.leading_zeros())
}

/// `gn_bwd_coef`: inputs `[sums, weight?]` → `[B·G, 2]`: (mean of dxhat, mean of dxhat · xhat) per group.
pub struct GnBwdCoef {
    pub x_shape: Vec<usize>,
    pub groups: usize,
    pub has_weight: bool,
}

impl GnBwdCoef {
    fn layout(&self) -> GnBwdLayout {
        GnBwdLayout::new(&TensorDesc::f32(&self.x_shape), self.groups)
    }
}

impl Op for GnBwdCoef {
    fn kind(&self) -> &'static str {
        "group_norm_grad_coef"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let bl = self.layout();
        if inputs.len() != 1 + self.has_weight as usize || *inputs[0] != bl.sums_desc() {
            return Err(Error::shape(self.kind(), format!("expects the partial sums {} (and a weight)", bl.sums_desc())));
        }
        Ok(TensorDesc::f32(&[bl.lay.blocks() as usize, 2]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let bl = self.layout();
        let sums = small(self.kind(), l, 0)?;
        let w = if self.has_weight { small(self.kind(), l, 1)? } else { dummy(l, 0) };
        let p = Params {
            units: bl.lay.blocks() as u32,
            parts: bl.parts as u32,
            channels: bl.lay.channels as u32,
            cpg: bl.cpg() as u32,
            groups: bl.lay.groups as u32,
            flags: self.has_weight as u32,
            scale: (1.0 / bl.lay.block as f64) as f32,
            ..Default::default()
        };
        let d = dummy(l, 0);
        let bindings = vec![d.clone(), d.clone(), Bind::output(l.output), d.clone(), w, d, sums];
        Ok(vec![dispatch("gn_bwd_coef", &p, bindings, grid_1d(bl.lay.blocks().div_ceil(WG), l.limits))])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let bl = self.layout();
        let (parts, c_all, cpg, n) = (bl.parts as usize, bl.lay.channels as usize, bl.cpg() as usize, bl.lay.block as f64);
        let mut out = Vec::new();
        for bg in 0..bl.lay.blocks() as usize {
            let (b, g) = (bg / bl.lay.groups as usize, bg % bl.lay.groups as usize);
            let (mut m1, mut m2) = (0.0f64, 0.0f64);
            for c in g * cpg..(g + 1) * cpg {
                let w = if self.has_weight { inputs[1][c] as f64 } else { 1.0 };
                let first = (b * c_all + c) * parts;
                for k in first..first + parts {
                    m1 += w * inputs[0][2 * k] as f64;
                    m2 += w * inputs[0][2 * k + 1] as f64;
                }
            }
            out.push((m1 / n) as f32);
            out.push((m2 / n) as f32);
        }
        out
    }
}

/// `gn_bwd_param`: inputs `[sums]` → `[C]`: the weight gradient (Σ B) or the bias gradient (Σ A).
pub struct GnBwdParam {
    pub x_shape: Vec<usize>,
    pub groups: usize,
    pub weight: bool,
}

impl Op for GnBwdParam {
    fn kind(&self) -> &'static str {
        "group_norm_grad_param"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let bl = GnBwdLayout::new(&TensorDesc::f32(&self.x_shape), self.groups);
        if inputs.len() != 1 || *inputs[0] != bl.sums_desc() {
            return Err(Error::shape(self.kind(), format!("expects the partial sums {}", bl.sums_desc())));
        }
        Ok(TensorDesc::f32(&[self.x_shape[1]]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let bl = GnBwdLayout::new(&TensorDesc::f32(&self.x_shape), self.groups);
        let sums = small(self.kind(), l, 0)?;
        let c = bl.lay.channels;
        let p = Params {
            units: c as u32,
            parts: bl.parts as u32,
            channels: c as u32,
            batch: bl.lay.batch as u32,
            flags: (self.weight as u32) << 2,
            ..Default::default()
        };
        let d = dummy(l, 0);
        let bindings = vec![d.clone(), d.clone(), Bind::output(l.output), d.clone(), d.clone(), d, sums];
        Ok(vec![dispatch("gn_bwd_param", &p, bindings, grid_1d(c.div_ceil(WG), l.limits))])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let bl = GnBwdLayout::new(&TensorDesc::f32(&self.x_shape), self.groups);
        let (parts, c_all) = (bl.parts as usize, bl.lay.channels as usize);
        let which = self.weight as usize;
        (0..c_all)
            .map(|c| {
                let mut s = 0.0f64;
                for b in 0..bl.lay.batch as usize {
                    let first = (b * c_all + c) * parts;
                    s += (first..first + parts).map(|k| inputs[0][2 * k + which] as f64).sum::<f64>();
                }
                s as f32
            })
            .collect()
    }
}

/// `gn_bwd_dx`: inputs `[x, stats, dy, coef, weight?, bias?]` → dx.
pub struct GnBwdDx(pub GnAffine);

impl Op for GnBwdDx {
    fn kind(&self) -> &'static str {
        "group_norm_grad_x"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        self.0.check(self.kind(), inputs, 4)?;
        let blocks = GnLayout::new(inputs[0], self.0.groups).blocks() as usize;
        if inputs[3].shape != [blocks, 2] {
            return Err(Error::shape(self.kind(), format!("coefficients must be [{blocks}, 2], got {}", inputs[3])));
        }
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let op = self.kind();
        let (x, dy) = (&l.inputs[0], &l.inputs[2]);
        let lay = GnLayout::new(x, self.0.groups);
        let finals = bind_finals(op, l, &lay)?;
        let coef = small(op, l, 3)?;
        let [bw, bb] = self.0.bind_wb(op, l, 4)?;
        let planes = lay.batch * lay.channels;
        let cap = max_binding_elems(l.limits, DType::F32);
        let wins = windows(planes, lay.spatial, cap, APPLY_CHUNK)
            .ok_or_else(|| limit_error(op, format!("a chunk of {APPLY_CHUNK} elements of {x}"), APPLY_CHUNK * 4, l.limits))?;
        let mut out = Vec::new();
        for (u0, nu, s0, cnt) in wins {
            let begin = u0 * lay.spatial + s0;
            let total = (nu - 1) * lay.spatial + cnt;
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, begin, total, l.limits);
            let (bd, dy_shift) = Bind::elements(Slot::Input(2), dy, begin, total, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, begin, total, l.limits);
            // As gn_apply: several whole small planes per workgroup, or chunks of one large plane.
            let (per_wg, chunk) = if cnt < APPLY_CHUNK { ((APPLY_CHUNK / cnt).min(nu), cnt) } else { (1, APPLY_CHUNK) };
            let per_plane = cnt.div_ceil(chunk);
            let p = Params {
                units: nu as u32,
                len: lay.spatial as u32,
                count: cnt as u32,
                chunk: chunk as u32,
                chunks: per_plane as u32,
                x_shift,
                dy_shift,
                out_shift,
                unit0: u0 as u32,
                parts: per_wg as u32,
                channels: lay.channels as u32,
                cpg: (lay.channels / lay.groups) as u32,
                flags: self.0.flags(),
                act: self.0.act.code(),
                ..Default::default()
            };
            let bindings = vec![bx, bd, bo, finals.clone(), bw.clone(), bb.clone(), coef.clone()];
            out.push(dispatch("gn_bwd_dx", &p, bindings, grid_1d(nu.div_ceil(per_wg) * per_plane, l.limits)));
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let lay = GnLayout::new(descs[0], self.0.groups);
        let (x, dy, coef) = (inputs[0], inputs[2], inputs[3]);
        let (wi, bi) = self.0.wb(4);
        let (s, cpg, c_all) = (lay.spatial as usize, (lay.channels / lay.groups) as usize, lay.channels as usize);
        let stats = cpu_block_stats(x, &lay, self.0.eps);
        let mut out = Vec::with_capacity(x.len());
        for plane in 0..(lay.batch * lay.channels) as usize {
            let (c, bg) = (plane % c_all, plane / cpg);
            let (mean, rstd) = stats[bg];
            let (m1, m2) = (coef[2 * bg] as f64, coef[2 * bg + 1] as f64);
            let w = wi.map_or(1.0, |i| inputs[i][c] as f64);
            let b = bi.map_or(0.0, |i| inputs[i][c] as f64);
            for i in plane * s..(plane + 1) * s {
                let d = self.0.dyp(x[i], dy[i], mean, rstd, w, b);
                let xhat = (x[i] as f64 - mean) * rstd;
                out.push((rstd * (w * d - m1 - xhat * m2)) as f32);
            }
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * if self.0.act == Activation::None { 5.0 } else { 13.0 }
    }
}

/// GroupNormApply's rule (inputs `[x, stats, weight?, bias?]`): see the module docs. Stats get no gradient.
pub(crate) fn group_norm_backward(op: &GroupNormApply, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
    let aff = GnAffine { groups: op.groups, eps: op.eps, act: op.act, has_weight: op.has_weight, has_bias: op.has_bias };
    let (x, stats) = (c.inputs[0], c.inputs[1]);
    let (wi, bi) = aff.wb(2);
    let need_x = c.need[0];
    let need_w = wi.is_some_and(|i| c.need[i]);
    let need_b = bi.is_some_and(|i| c.need[i]);
    let mut grads = vec![None; c.inputs.len()];
    if !(need_x || need_w || need_b) {
        return Ok(grads);
    }
    let wb: Vec<TensorId> = [wi, bi].into_iter().flatten().map(|i| c.inputs[i]).collect();
    let x_shape = g.shape(x).to_vec();
    let mut ins = vec![x, stats, c.dy];
    ins.extend(&wb);
    let sums = g.op(&c.node("sums"), GnBwdSums(aff), &ins)?;
    if need_x {
        let mut cin = vec![sums];
        cin.extend(wi.map(|i| c.inputs[i]));
        let coef = g.op(&c.node("coef"), GnBwdCoef { x_shape: x_shape.clone(), groups: op.groups, has_weight: op.has_weight }, &cin)?;
        let mut ins = vec![x, stats, c.dy, coef];
        ins.extend(&wb);
        grads[0] = Some(g.op(&c.node("x"), GnBwdDx(aff), &ins)?);
    }
    for (idx, need, weight) in [(wi, need_w, true), (bi, need_b, false)] {
        if let (Some(i), true) = (idx, need) {
            let what = if weight { "weight" } else { "bias" };
            grads[i] = Some(g.op(&c.node(what), GnBwdParam { x_shape: x_shape.clone(), groups: op.groups, weight }, &[sums])?);
        }
    }
    Ok(grads)
}

// ---------------------------------------------------------------------------------------------------------
// Row ops: LayerNorm and softmax

/// Windows of whole rows of `len` elements such that every row-sized binding (and the 4-float-per-row
/// statistics) fits.
fn row_windows(op: &str, l: &Lowering, len: u64) -> Result<Vec<(u64, u64)>> {
    let x = &l.inputs[0];
    let rows = x.numel() as u64 / len;
    let cap = max_binding_elems(l.limits, DType::F32) / len.max(4);
    if cap == 0 {
        return Err(unit_limit_error(op, format!("one row of {x}"), len.max(4), l.limits));
    }
    Ok(chunks(rows, cap, 1))
}

/// `ln_stats`: `x` → `[rows, 4]`: (K, md, rstd, 0) per row, mean = K + md.
pub struct LnStats {
    pub eps: f32,
}

impl Op for LnStats {
    fn kind(&self) -> &'static str {
        "layer_norm_stats"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_rows(self.kind(), inputs[0])?;
        Ok(TensorDesc::f32(&[inputs[0].numel() / inputs[0].dim(-1), 4]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let x = &l.inputs[0];
        let len = x.dim(-1) as u64;
        let tpr = threads_per_row(len);
        let mut out = Vec::new();
        for (r0, nr) in row_windows(self.kind(), l, len)? {
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, r0 * len, nr * len, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * 4, nr * 4, l.limits);
            let p = Params { units: nr as u32, len: len as u32, chunk: tpr as u32, x_shift, out_shift, scale: self.eps, ..Default::default() };
            let bindings = vec![bx.clone(), bx.clone(), bo, bx.clone(), bx.clone(), bx.clone(), bx];
            out.push(dispatch("ln_stats", &p, bindings, grid_1d(nr.div_ceil(WG / tpr), l.limits)));
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let mut out = Vec::new();
        for row in inputs[0].chunks_exact(descs[0].dim(-1)) {
            let (m, v) = mean_var(row);
            let k = row[0] as f64;
            out.extend([k as f32, (m - k) as f32, (1.0 / (v + self.eps as f64).sqrt()) as f32, 0.0]);
        }
        out
    }
}

/// `ln_bwd_dx`: inputs `[x, stats, dy, weight?]` → dx of LayerNorm over the last dimension.
pub struct LnBwdDx {
    pub eps: f32,
    pub has_weight: bool,
}

fn check_ln_bwd(op: &str, inputs: &[&TensorDesc], want: usize) -> Result<()> {
    if inputs.len() != want {
        return Err(Error::shape(op, format!("expects {want} inputs, got {}", inputs.len())));
    }
    let x = inputs[0];
    check_rows(op, x)?;
    let rows = x.numel() / x.dim(-1);
    if inputs[1].shape != [rows, 4] || inputs[2].shape != x.shape {
        return Err(Error::shape(op, format!("expects x {x}, statistics [{rows}, 4] and dy of x's shape, got {} and {}", inputs[1], inputs[2])));
    }
    Ok(())
}

/// Binds statistics rows `[r0, r0 + nr)` (4 floats each).
fn bind_row_stats(l: &Lowering, i: usize, r0: u64, nr: u64) -> (Bind, u32) {
    Bind::elements(Slot::Input(i), &l.inputs[i], r0 * 4, nr * 4, l.limits)
}

impl Op for LnBwdDx {
    fn kind(&self) -> &'static str {
        "layer_norm_grad_x"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_ln_bwd(self.kind(), inputs, 3 + self.has_weight as usize)?;
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (x, dy) = (&l.inputs[0], &l.inputs[2]);
        let len = x.dim(-1) as u64;
        let tpr = threads_per_row(len);
        let w = if self.has_weight { small(self.kind(), l, 3)? } else { dummy(l, 0) };
        let mut out = Vec::new();
        for (r0, nr) in row_windows(self.kind(), l, len)? {
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, r0 * len, nr * len, l.limits);
            let (bd, dy_shift) = Bind::elements(Slot::Input(2), dy, r0 * len, nr * len, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * len, nr * len, l.limits);
            let (bs, st_shift) = bind_row_stats(l, 1, r0, nr);
            let p = Params {
                units: nr as u32,
                len: len as u32,
                chunk: tpr as u32,
                x_shift,
                dy_shift,
                out_shift,
                st_shift,
                flags: self.has_weight as u32,
                ..Default::default()
            };
            let bindings = vec![bx.clone(), bd, bo, bs, w.clone(), bx.clone(), bx];
            out.push(dispatch("ln_bwd_dx", &p, bindings, grid_1d(nr.div_ceil(WG / tpr), l.limits)));
        }
        Ok(out)
    }
    /// From x in f64 (the statistics input is not used).
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let c = descs[0].dim(-1);
        let w = self.has_weight.then(|| inputs[3]);
        let mut out = Vec::with_capacity(inputs[0].len());
        for (row, drow) in inputs[0].chunks_exact(c).zip(inputs[2].chunks_exact(c)) {
            let (mean, var) = mean_var(row);
            let rstd = 1.0 / (var + self.eps as f64).sqrt();
            let dxhat: Vec<f64> = drow.iter().enumerate().map(|(j, &d)| d as f64 * w.map_or(1.0, |w| w[j] as f64)).collect();
            let xhat: Vec<f64> = row.iter().map(|&v| (v as f64 - mean) * rstd).collect();
            let m1 = dxhat.iter().sum::<f64>() / c as f64;
            let m2 = dxhat.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / c as f64;
            out.extend(dxhat.iter().zip(&xhat).map(|(d, xh)| (rstd * (d - m1 - xh * m2)) as f32));
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * 10.0
    }
}

/// `ln_bwd_dweight`: inputs `[x, stats, dy]` → `[parts, C]` partial column sums of dy · xhat over
/// `rows_per_part` rows each.
pub struct LnBwdDweight {
    pub eps: f32,
    pub rows_per_part: usize,
}

impl LnBwdDweight {
    /// Parts so that the first node has a few hundred workgroups, each summing at least 16 rows.
    pub fn for_shape(x: &TensorDesc, eps: f32) -> LnBwdDweight {
        let c = x.dim(-1);
        let rows = x.numel() / c;
        let tiles = c.div_ceil(WG as usize);
        let parts = (256 / tiles).clamp(1, rows.div_ceil(16).max(1));
        LnBwdDweight { eps, rows_per_part: rows.div_ceil(parts) }
    }
}

impl Op for LnBwdDweight {
    fn kind(&self) -> &'static str {
        "layer_norm_grad_weight"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_ln_bwd(self.kind(), inputs, 3)?;
        let c = inputs[0].dim(-1);
        let rows = inputs[0].numel() / c;
        Ok(TensorDesc::f32(&[rows.div_ceil(self.rows_per_part), c]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (x, dy) = (&l.inputs[0], &l.inputs[2]);
        let len = x.dim(-1) as u64;
        let rows = x.numel() as u64 / len;
        let rpp = self.rows_per_part as u64;
        let cap_rows = max_binding_elems(l.limits, DType::F32) / len.max(4);
        if cap_rows < rpp || l.output.bytes() > l.limits.max_binding {
            return Err(limit_error(self.kind(), format!("{rpp} rows of {x}"), rpp * len * 4, l.limits));
        }
        let tiles = len.div_ceil(WG);
        let mut out = Vec::new();
        for (q0, nq) in chunks(rows.div_ceil(rpp), cap_rows / rpp, 1) {
            let r0 = q0 * rpp;
            let nr = (nq * rpp).min(rows - r0);
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, r0 * len, nr * len, l.limits);
            let (bd, dy_shift) = Bind::elements(Slot::Input(2), dy, r0 * len, nr * len, l.limits);
            let (bs, st_shift) = bind_row_stats(l, 1, r0, nr);
            let p = Params {
                units: nr as u32,
                len: len as u32,
                chunk: rpp as u32,
                chunks: nq as u32,
                x_shift,
                dy_shift,
                st_shift,
                unit0: q0 as u32,
                ..Default::default()
            };
            let bindings = vec![bx.clone(), bd, Bind::output(l.output), bs, bx.clone(), bx.clone(), bx];
            out.push(dispatch("ln_bwd_dweight", &p, bindings, grid_1d(nq * tiles, l.limits)));
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let c = descs[0].dim(-1);
        let mut acc = vec![0.0f64; out.numel()];
        for (r, (row, drow)) in inputs[0].chunks_exact(c).zip(inputs[2].chunks_exact(c)).enumerate() {
            let (mean, var) = mean_var(row);
            let rstd = 1.0 / (var + self.eps as f64).sqrt();
            let part = r / self.rows_per_part;
            for j in 0..c {
                acc[part * c + j] += drow[j] as f64 * (row[j] as f64 - mean) * rstd;
            }
        }
        acc.into_iter().map(|v| v as f32).collect()
    }
}

/// LayerNorm's rule (inputs `[x, weight?, bias?]`).
pub(crate) fn layer_norm_backward(op: &LayerNorm, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
    let x = c.inputs[0];
    let wi = op.has_weight.then_some(1);
    let bi = op.has_bias.then_some(1 + op.has_weight as usize);
    let need_w = wi.is_some_and(|i| c.need[i]);
    let need_b = bi.is_some_and(|i| c.need[i]);
    let mut grads = vec![None; c.inputs.len()];
    let xd = g.desc(x).clone();
    let cdim = xd.dim(-1);
    if c.need[0] || need_w {
        let stats = g.op(&c.node("stats"), LnStats { eps: op.eps }, &[x])?;
        if c.need[0] {
            let mut ins = vec![x, stats, c.dy];
            ins.extend(wi.map(|i| c.inputs[i]));
            grads[0] = Some(g.op(&c.node("x"), LnBwdDx { eps: op.eps, has_weight: op.has_weight }, &ins)?);
        }
        if let (Some(i), true) = (wi, need_w) {
            let parts = g.op(&c.node("weight.parts"), LnBwdDweight::for_shape(&xd, op.eps), &[x, stats, c.dy])?;
            grads[i] = Some(if g.shape(parts)[0] == 1 { g.reshape(parts, &[cdim])? } else { g.sum_to(&c.node("weight"), parts, &[cdim])? });
        }
    }
    if let (Some(i), true) = (bi, need_b) {
        grads[i] = Some(g.sum_to(&c.node("bias"), c.dy, &[cdim])?);
    }
    Ok(grads)
}

/// `softmax_bwd`: inputs `[y, dy]` (y the forward output) → dx = scale · y · (dy − Σ dy · y) per row.
pub struct SoftmaxBwd {
    pub scale: f32,
}

impl Op for SoftmaxBwd {
    fn kind(&self) -> &'static str {
        "softmax_grad"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_rows(self.kind(), inputs[0])?;
        if inputs.len() != 2 || inputs[1].shape != inputs[0].shape {
            return Err(Error::shape(self.kind(), format!("expects y {} and dy of its shape", inputs[0])));
        }
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (y, dy) = (&l.inputs[0], &l.inputs[1]);
        let len = y.dim(-1) as u64;
        let tpr = threads_per_row(len);
        let mut out = Vec::new();
        for (r0, nr) in row_windows(self.kind(), l, len)? {
            let (by, x_shift) = Bind::elements(Slot::Input(0), y, r0 * len, nr * len, l.limits);
            let (bd, dy_shift) = Bind::elements(Slot::Input(1), dy, r0 * len, nr * len, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * len, nr * len, l.limits);
            let p = Params { units: nr as u32, len: len as u32, chunk: tpr as u32, x_shift, dy_shift, out_shift, scale: self.scale, ..Default::default() };
            let bindings = vec![by.clone(), bd, bo, by.clone(), by.clone(), by.clone(), by];
            out.push(dispatch("softmax_bwd", &p, bindings, grid_1d(nr.div_ceil(WG / tpr), l.limits)));
        }
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let c = descs[0].dim(-1);
        let s = self.scale as f64;
        let mut out = Vec::with_capacity(inputs[0].len());
        for (y, d) in inputs[0].chunks_exact(c).zip(inputs[1].chunks_exact(c)) {
            let dot: f64 = y.iter().zip(d).map(|(a, b)| *a as f64 * *b as f64).sum();
            out.extend(y.iter().zip(d).map(|(&a, &b)| (s * a as f64 * (b as f64 - dot)) as f32));
        }
        out
    }
}

/// Softmax's rule: from the forward output.
pub(crate) fn softmax_backward(op: &Softmax, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
    if !c.need[0] {
        return Ok(vec![None]);
    }
    Ok(vec![Some(g.op(&c.node("x"), SoftmaxBwd { scale: op.scale }, &[c.output, c.dy])?)])
}
