//! Normalisation kernels (`shaders/norm.wgsl`): GroupNorm with an optional fused activation, LayerNorm and
//! softmax over the last dimension, with their CPU twins.
//!
//! GroupNorm is two nodes: `<name>.stats` reduces each (batch, group) block to partial statistics (one per
//! chunk of at most [`STATS_CHUNK`] elements, so a block spreads over many workgroups) and merges them into
//! (shift, mean, 1/std); `<name>` applies the affine map and the activation. In NCHW a (b, g) block is
//! contiguous, so tensors larger than one storage binding are split into windows of whole blocks, and a block
//! larger than a binding into windows of whole chunks whose partials are merged by the finalize dispatch.
//! All statistics are f32 with Welford updates and Chan merges (see the shader header).

use std::sync::LazyLock;

use bytemuck::{Pod, Zeroable};

use super::unary::Activation;
use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, BackwardCtx, Bind, DeviceLimits, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("norm", with_activations);
/// The CPU (`_w8`) entry points reading x (and layer_norm's weight and bias) through textures (CPU
/// adapters: `DeviceLimits::texture_reads`; lavapipe 22.3 builds every lane-varying buffer load lane by lane).
pub static SHADER_TEX: LazyLock<ShaderSource> = LazyLock::new(|| SHADER.texture_reads(&["x4", "in1v", "in2v"]));

/// Workgroup size of every entry point.
pub(crate) const WG: u64 = 256;
/// Most elements one `gn_stats` workgroup reduces. Fixed at record time: the statistics tensor has one
/// slot per chunk. 128 KiB (128 elements per thread), far below any binding limit (WebGPU guarantees 128 MiB).
pub const STATS_CHUNK: u64 = 32768;
/// Elements one `gn_apply` workgroup normalises (planes smaller than this are packed several per workgroup).
pub(crate) const APPLY_CHUNK: u64 = 4096;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    units: u32,
    len: u32,
    count: u32,
    chunk: u32,
    chunks: u32,
    x_shift: u32,
    out_shift: u32,
    unit0: u32,
    parts: u32,
    channels: u32,
    cpg: u32,
    flags: u32,
    act: u32,
    eps: f32,
    scale: f32,
    _pad: u32,
}

pub(crate) fn check_f32(op: &str, what: &str, d: &TensorDesc) -> Result<()> {
    if d.dtype != DType::F32 {
        return Err(Error::DType { op: op.into(), msg: format!("{what} is {d}; this kernel takes f32") });
    }
    Ok(())
}

/// Checks that an optional affine parameter is `f32[n]`.
fn check_param(op: &str, what: &str, d: Option<&TensorDesc>, n: usize, x: &TensorDesc) -> Result<()> {
    if let Some(d) = d {
        check_f32(op, what, d)?;
        if d.shape != [n] {
            return Err(Error::shape(op, format!("{what} must be f32[{n}] for input {x}, got {d}")));
        }
    }
    Ok(())
}

/// Most f32 elements of x one GroupNorm window binds: the binding limit, and where the kernels read x
/// through a scratch texture (CPU adapters) the texture window too, never below one `quantum` — one large
/// window would size the texture every op shares.
fn window_cap(l: &DeviceLimits, quantum: u64) -> u64 {
    let cap = max_binding_elems(l, DType::F32);
    if l.cpu && l.texture_reads {
        cap.min((l.texture_window / 4).max(quantum))
    } else {
        cap
    }
}

/// Splits `units` contiguous units of `len` elements into windows of at most `cap` elements: whole units when
/// one fits, else each unit into pieces of whole `quantum`s. Returns `(first unit, units, start inside the
/// unit, elements per unit)`, or `None` when not even one quantum fits.
pub(crate) fn windows(units: u64, len: u64, cap: u64, quantum: u64) -> Option<Vec<(u64, u64, u64, u64)>> {
    if len <= cap {
        return Some(chunks(units, cap / len, 1).into_iter().map(|(u0, n)| (u0, n, 0, len)).collect());
    }
    if quantum > cap {
        return None;
    }
    Some((0..units).flat_map(|u| chunks(len, cap, quantum).into_iter().map(move |(s0, n)| (u, 1, s0, n))).collect())
}

/// [`limit_error`] for one unit (a row, a plane) of `elems` f32 values that a kernel cannot split: a
/// dispatch binds it from a chunk start that may sit up to `offset_align` bytes earlier
/// (`max_binding_elems`), so that is counted in what it needs.
pub(crate) fn unit_limit_error(op: &str, what: String, elems: u64, limits: &DeviceLimits) -> Error {
    limit_error(op, what, elems * 4 + limits.offset_align, limits)
}

pub(crate) fn limit_error(op: &str, what: String, needed: u64, limits: &DeviceLimits) -> Error {
    Error::Limit {
        op: op.into(),
        what,
        needed,
        limit_name: "max_storage_buffer_binding_size",
        limit: limits.max_binding,
        hint: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// GroupNorm

/// The geometry of a GroupNorm input `[B, C, *spatial]`.
#[derive(Clone, Copy, Debug)]
pub struct GnLayout {
    pub batch: u64,
    pub channels: u64,
    /// Product of the spatial dimensions (1 for `[B, C]`).
    pub spatial: u64,
    pub groups: u64,
    /// Elements of one (b, g) block: `C / groups · spatial`.
    pub block: u64,
    /// Partial statistics per block.
    pub parts: u64,
    /// Elements per partial (the last one may be shorter).
    pub chunk: u64,
}

impl GnLayout {
    pub fn new(x: &TensorDesc, groups: usize) -> GnLayout {
        let (b, c) = (x.shape[0] as u64, x.shape[1] as u64);
        let spatial: u64 = x.shape[2..].iter().map(|&d| d as u64).product();
        let g = groups as u64;
        let block = (c / g * spatial).max(1);
        let p = block.div_ceil(STATS_CHUNK);
        // Chunks of a multiple of 4 where blocks are, so every chunk can be read as vec4s (gn_stats4).
        let chunk = if block.is_multiple_of(4) { block.div_ceil(p).next_multiple_of(4) } else { block.div_ceil(p) };
        GnLayout { batch: b, channels: c, spatial, groups: g, block, parts: block.div_ceil(chunk), chunk }
    }
    /// Number of (b, g) blocks.
    pub fn blocks(&self) -> u64 {
        self.batch * self.groups
    }
    /// The statistics tensor: finals then partials, 4 floats per slot.
    pub fn stats_desc(&self) -> TensorDesc {
        TensorDesc::f32(&[(self.blocks() * (1 + self.parts)) as usize, 4])
    }
}

fn check_group_norm(x: &TensorDesc, groups: usize, w: Option<&TensorDesc>, b: Option<&TensorDesc>) -> Result<()> {
    let op = "group_norm";
    check_f32(op, "input", x)?;
    if x.rank() < 2 || x.numel() == 0 {
        return Err(Error::shape(op, format!("expects a non-empty [B, C, *spatial], got {x}")));
    }
    let c = x.shape[1];
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::shape(op, format!("channels C = {c} of {x} are not divisible into {groups} groups")));
    }
    if x.numel() as u64 > u32::MAX as u64 {
        return Err(Error::shape(op, format!("{x} has more than 2^32 elements")));
    }
    check_param(op, "weight", w, c, x)?;
    check_param(op, "bias", b, c, x)
}

/// GroupNorm's statistics node: `x: [B, C, *spatial]` → the statistics tensor of [`GnLayout::stats_desc`].
pub struct GroupNormStats {
    pub groups: usize,
    pub eps: f32,
}

impl Op for GroupNormStats {
    fn kind(&self) -> &'static str {
        "group_norm_stats"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_group_norm(inputs[0], self.groups, None, None)
            .map_err(|e| rename(e, "group_norm_stats"))?;
        Ok(GnLayout::new(inputs[0], self.groups).stats_desc())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let x = &l.inputs[0];
        let lay = GnLayout::new(x, self.groups);
        if l.output.bytes() > l.limits.max_binding {
            return Err(limit_error(self.kind(), format!("statistics {}", l.output), l.output.bytes(), l.limits));
        }
        let cap = window_cap(l.limits, lay.chunk);
        let wins = windows(lay.blocks(), lay.block, cap, lay.chunk).ok_or_else(|| {
            limit_error(self.kind(), format!("a chunk of {} elements of {x}", lay.chunk), lay.chunk * 4, l.limits)
        })?;
        let mut out = Vec::new();
        for (u0, nu, s0, cnt) in wins {
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, u0 * lay.block + s0, (nu - 1) * lay.block + cnt, l.limits);
            let per_unit = cnt.div_ceil(lay.chunk);
            // vec4 reads where the window starts on a vec4 and blocks and chunks are whole vec4s.
            let vec4 = x_shift % 4 == 0 && lay.block.is_multiple_of(4) && lay.chunk.is_multiple_of(4) && cnt.is_multiple_of(4);
            let p = Params {
                units: nu as u32,
                len: lay.block as u32,
                count: cnt as u32,
                chunk: lay.chunk as u32,
                chunks: per_unit as u32,
                x_shift,
                unit0: (lay.blocks() + u0 * lay.parts + s0 / lay.chunk) as u32,
                parts: lay.parts as u32,
                ..Default::default()
            };
            let entry = match vec4 {
                true if l.limits.cpu => "gn_stats4_w8",
                true => "gn_stats4",
                false => "gn_stats",
            };
            let mut bindings = vec![bx, Bind::output(l.output)];
            let textures = entry.ends_with("_w8") && l.limits.read_through_textures(&mut bindings, &[(0, x.dtype)]);
            out.push(Dispatch {
                shader: if textures { &SHADER_TEX } else { &SHADER },
                entry,
                params: params(&p),
                bindings,
                workgroups: grid_1d(nu * per_unit, l.limits),
                constants: Vec::new(),
            });
        }
        // The finalize reads only the statistics; binding 1 gets one element of x to fill the layout.
        let (bx, _) = Bind::elements(Slot::Input(0), x, 0, 1, l.limits);
        let p = Params { units: lay.blocks() as u32, parts: lay.parts as u32, eps: self.eps, ..Default::default() };
        out.push(Dispatch {
            shader: &SHADER,
            entry: "gn_finalize",
            params: params(&p),
            bindings: vec![bx, Bind::output(l.output)],
            workgroups: grid_1d(lay.blocks().div_ceil(WG), l.limits),
            constants: Vec::new(),
        });
        Ok(out)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let lay = GnLayout::new(descs[0], self.groups);
        let x = inputs[0];
        let (nb, l, q) = (lay.blocks() as usize, lay.block as usize, lay.chunk as usize);
        let mut out = vec![0.0f32; nb * (1 + lay.parts as usize) * 4];
        for bg in 0..nb {
            let block = &x[bg * l..(bg + 1) * l];
            let (mean, var) = mean_var(block);
            let k0 = block[0] as f64;
            out[4 * bg..4 * bg + 4].copy_from_slice(&[
                k0 as f32,
                (mean - k0) as f32,
                (1.0 / (var + self.eps as f64).sqrt()) as f32,
                0.0,
            ]);
            for (k, part) in block.chunks(q).enumerate() {
                let (m, v) = mean_var(part);
                let kk = part[0] as f64;
                let slot = 4 * (nb + bg * lay.parts as usize + k);
                out[slot..slot + 4].copy_from_slice(&[
                    kk as f32,
                    part.len() as f32,
                    (m - kk) as f32,
                    (v * part.len() as f64) as f32,
                ]);
            }
        }
        out
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * 6.0
    }
    /// The apply node's rule already carries the whole gradient through the mean and variance and gives
    /// the statistics none, so this node is never reached by the walker; `None` keeps it safe if it is.
    fn backward(&self, _: &mut Graph, _: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        Ok(vec![None])
    }
}

/// GroupNorm's apply node: inputs `[x, stats, weight?, bias?]` → `act(norm(x) · weight + bias)`.
pub struct GroupNormApply {
    pub groups: usize,
    pub eps: f32,
    pub act: Activation,
    pub has_weight: bool,
    pub has_bias: bool,
    /// Writes the output in f16 (planes must be whole vec4s): for a convolution that reads it widened,
    /// under `--precision f16` (see [`Graph::group_norm_to`]).
    pub out_f16: bool,
}

impl GroupNormApply {
    fn affine<'a>(&self, inputs: &[&'a TensorDesc]) -> (Option<&'a TensorDesc>, Option<&'a TensorDesc>) {
        let w = self.has_weight.then(|| inputs[2]);
        let b = self.has_bias.then(|| inputs[2 + self.has_weight as usize]);
        (w, b)
    }
}

impl Op for GroupNormApply {
    fn kind(&self) -> &'static str {
        "group_norm"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let want = 2 + self.has_weight as usize + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape("group_norm", format!("expects {want} inputs, got {}", inputs.len())));
        }
        let x = inputs[0];
        let (w, b) = self.affine(inputs);
        check_group_norm(x, self.groups, w, b)?;
        let stats = GnLayout::new(x, self.groups).stats_desc();
        if *inputs[1] != stats {
            return Err(Error::shape("group_norm", format!("statistics of {x} must be {stats}, got {}", inputs[1])));
        }
        if !self.out_f16 {
            return Ok(x.clone());
        }
        if !GnLayout::new(x, self.groups).spatial.is_multiple_of(4) {
            return Err(Error::shape("group_norm", format!("an f16 output needs planes of a multiple of 4 elements, got {x}")));
        }
        Ok(TensorDesc::new(&x.shape, DType::F16))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let x = &l.inputs[0];
        let lay = GnLayout::new(x, self.groups);
        let planes = lay.batch * lay.channels;
        let cap = window_cap(l.limits, APPLY_CHUNK);
        let wins = windows(planes, lay.spatial, cap, APPLY_CHUNK).ok_or_else(|| {
            limit_error(self.kind(), format!("a chunk of {APPLY_CHUNK} elements of {x}"), APPLY_CHUNK * 4, l.limits)
        })?;
        let (finals, _) = Bind::elements(Slot::Input(1), &l.inputs[1], 0, 4 * lay.blocks(), l.limits);
        if finals.size > l.limits.max_binding {
            return Err(limit_error(self.kind(), format!("statistics of {x}"), finals.size, l.limits));
        }
        let mut out = Vec::new();
        for (u0, nu, s0, cnt) in wins {
            let begin = u0 * lay.spatial + s0;
            let total = (nu - 1) * lay.spatial + cnt;
            let (bx, x_shift) = Bind::elements(Slot::Input(0), x, begin, total, l.limits);
            let (bo, out_shift) = Bind::elements(Slot::Output, l.output, begin, total, l.limits);
            // Small planes: several whole planes per workgroup; large ones: chunks of one plane.
            let (per_wg, chunk) = if cnt < APPLY_CHUNK { ((APPLY_CHUNK / cnt).min(nu), cnt) } else { (1, APPLY_CHUNK) };
            let per_plane = cnt.div_ceil(chunk);
            // vec4 reads and writes where planes, chunks and both windows' starts are whole vec4s.
            let vec4 = x_shift % 4 == 0
                && out_shift % 4 == 0
                && lay.spatial.is_multiple_of(4)
                && cnt.is_multiple_of(4)
                && chunk.is_multiple_of(4);
            let mut bindings = vec![bx.clone(), bo, finals.clone()];
            let mut next = 2;
            for has in [self.has_weight, self.has_bias] {
                if has {
                    bindings.push(Bind::input(next, &l.inputs[next]));
                    next += 1;
                } else {
                    bindings.push(bx.clone());
                }
            }
            let p = Params {
                units: nu as u32,
                len: lay.spatial as u32,
                count: cnt as u32,
                chunk: chunk as u32,
                chunks: per_plane as u32,
                x_shift,
                out_shift,
                unit0: u0 as u32,
                parts: per_wg as u32,
                channels: lay.channels as u32,
                cpg: (lay.channels / lay.groups) as u32,
                flags: self.has_weight as u32 | (self.has_bias as u32) << 1,
                act: self.act.code(),
                ..Default::default()
            };
            let entry = match (vec4, self.out_f16) {
                (true, true) if l.limits.cpu => "gn_apply4h_w8",
                (true, true) => "gn_apply4h",
                (true, false) if l.limits.cpu => "gn_apply4_w8",
                (true, false) => "gn_apply4",
                (false, false) => "gn_apply",
                // Whole-vec4 planes (checked at record time) start every window on a vec4 under any
                // WebGPU offset alignment; an adapter that broke that gets an error, not a wrong image.
                (false, true) => {
                    return Err(Error::usage(format!(
                        "group_norm: an f16 output of {x} needs windows starting on whole vec4s (x shift {x_shift}, output shift {out_shift})"
                    )))
                }
            };
            let textures = entry.ends_with("_w8") && l.limits.read_through_textures(&mut bindings, &[(0, x.dtype)]);
            out.push(Dispatch {
                shader: if textures { &SHADER_TEX } else { &SHADER },
                entry,
                params: params(&p),
                bindings,
                workgroups: grid_1d(nu.div_ceil(per_wg) * per_plane, l.limits),
                // One pipeline per activation (see shaders/activations.wgsl).
                constants: vec![("ACT", self.act.code())],
            });
        }
        Ok(out)
    }
    /// Computed from x directly in f64 (the statistics input is not used), so the graph's CPU result is an
    /// independent reference.
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let lay = GnLayout::new(descs[0], self.groups);
        let w = self.has_weight.then(|| inputs[2]);
        let b = self.has_bias.then(|| inputs[2 + self.has_weight as usize]);
        let y = cpu_group_norm(inputs[0], &lay, self.eps, w, b, self.act);
        if self.out_f16 {
            return y.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        }
        y
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        let per = if self.act == Activation::None { 3.0 } else { 7.0 };
        inputs[0].numel() as f64 * per
    }    /// The whole GroupNorm gradient (through the mean and variance too); see `norm_backward`.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if self.out_f16 {
            return Err(Error::usage(format!("'{}': a GroupNorm with an f16 output has no backward rule (training runs in f32)", c.name)));
        }
        super::norm_backward::group_norm_backward(self, g, c)
    }
}

/// Mean and biased variance in f64, two passes.
pub(crate) fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n;
    let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// GroupNorm in f64 (PyTorch semantics: biased variance over each (b, g) block), then `act`.
pub fn cpu_group_norm(
    x: &[f32],
    lay: &GnLayout,
    eps: f32,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let (l, s, cpg) = (lay.block as usize, lay.spatial as usize, (lay.channels / lay.groups) as usize);
    let c_all = lay.channels as usize;
    let mut out = Vec::with_capacity(x.len());
    for (bg, block) in x.chunks_exact(l).enumerate() {
        let (mean, var) = mean_var(block);
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (ci, plane) in block.chunks_exact(s).enumerate() {
            let c = (bg * cpg + ci) % c_all;
            let a = rstd * w.map_or(1.0, |w| w[c] as f64);
            let t = b.map_or(0.0, |b| b[c] as f64);
            out.extend(plane.iter().map(|&v| act.apply(((v as f64 - mean) * a + t) as f32)));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Row ops: LayerNorm and softmax over the last dimension

/// Threads per row: a power of two (1 to 64) giving each thread at least 64 elements. Short rows (softmax over
/// 77 keys) get a thread each: no combining at all. Each thread reducing many elements serially and few
/// threads per row keep the per-row combine and the workgroup's barrier cheap, which is what costs on
/// lavapipe; on a GPU, rows of a few hundred elements still get several threads, reading with stride tpr.
pub(crate) fn threads_per_row(len: u64) -> u64 {
    let t = (len / 64).max(1);
    (1u64 << (63 - t.leading_zeros())).min(64)
}

pub(crate) fn check_rows(op: &str, x: &TensorDesc) -> Result<()> {
    check_f32(op, "input", x)?;
    if x.rank() == 0 || x.numel() == 0 {
        return Err(Error::shape(op, format!("expects a non-empty tensor with a last dimension, got {x}")));
    }
    if x.numel() as u64 > u32::MAX as u64 {
        return Err(Error::shape(op, format!("{x} has more than 2^32 elements")));
    }
    Ok(())
}

/// Lowers a row kernel: windows of whole rows, `WG / tpr` rows per workgroup. `entry4`, when given, is the
/// entry point's vec4 form, used by dispatches whose rows and window starts are whole vec4s; on CPU
/// adapters the vec4 form's `_w8` twin runs instead, one row per invocation in 8-invocation workgroups.
fn lower_rows(
    l: &Lowering,
    op: &str,
    (entry, entry4): (&'static str, Option<(&'static str, &'static str)>),
    extra: &[Option<usize>],
    base: Params,
) -> Result<Vec<Dispatch>> {
    let x = &l.inputs[0];
    let len = x.dim(-1) as u64;
    let rows = x.numel() as u64 / len;
    let cap = max_binding_elems(l.limits, DType::F32) / len;
    if cap == 0 {
        return Err(unit_limit_error(op, format!("one row of {x}"), len, l.limits));
    }
    let tpr = threads_per_row(len);
    let mut out = Vec::new();
    for (r0, nr) in chunks(rows, cap, 1) {
        let (bx, x_shift) = Bind::elements(Slot::Input(0), x, r0 * len, nr * len, l.limits);
        let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * len, nr * len, l.limits);
        let mut bindings = vec![bx.clone(), bo];
        for e in extra {
            bindings.push(match e {
                Some(i) => Bind::input(*i, &l.inputs[*i]),
                None => bx.clone(),
            });
        }
        let vec4 = entry4.is_some() && len.is_multiple_of(4) && x_shift % 4 == 0 && out_shift % 4 == 0;
        let (entry, tpr, rows_per_wg) = match entry4 {
            Some((_, w8)) if vec4 && l.limits.cpu => (w8, 1, 8),
            Some((e4, _)) if vec4 => (e4, tpr, WG / tpr),
            _ => (entry, tpr, WG / tpr),
        };
        let p = Params { units: nr as u32, len: len as u32, chunk: tpr as u32, x_shift, out_shift, ..base };
        // The _w8 form reads x and (layer_norm's) weight and bias as vec4s: from textures where the adapter
        // wants them.
        let reads: Vec<(usize, DType)> = [0, 2, 3].iter().filter(|&&i| i < bindings.len()).map(|&i| (i, DType::F32)).collect();
        let textures = entry.ends_with("_w8") && l.limits.read_through_textures(&mut bindings, &reads);
        out.push(Dispatch {
            shader: if textures { &SHADER_TEX } else { &SHADER },
            entry,
            params: params(&p),
            bindings,
            workgroups: grid_1d(nr.div_ceil(rows_per_wg), l.limits),
            constants: Vec::new(),
        });
    }
    Ok(out)
}

/// LayerNorm over the last dimension: inputs `[x, weight?, bias?]`, weight and bias `[C]`.
pub struct LayerNorm {
    pub eps: f32,
    pub has_weight: bool,
    pub has_bias: bool,
}

impl LayerNorm {
    fn check(&self, inputs: &[&TensorDesc]) -> Result<()> {
        let want = 1 + self.has_weight as usize + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape("layer_norm", format!("expects {want} inputs, got {}", inputs.len())));
        }
        let x = inputs[0];
        check_rows("layer_norm", x)?;
        let w = self.has_weight.then(|| inputs[1]);
        let b = self.has_bias.then(|| inputs[1 + self.has_weight as usize]);
        check_param("layer_norm", "weight", w, x.dim(-1), x)?;
        check_param("layer_norm", "bias", b, x.dim(-1), x)
    }
}

impl Op for LayerNorm {
    fn kind(&self) -> &'static str {
        "layer_norm"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        self.check(inputs)?;
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let w = self.has_weight.then_some(1);
        let b = self.has_bias.then_some(1 + self.has_weight as usize);
        let base = Params {
            flags: self.has_weight as u32 | (self.has_bias as u32) << 1,
            eps: self.eps,
            ..Default::default()
        };
        lower_rows(l, self.kind(), ("layer_norm", Some(("layer_norm4", "layer_norm4_w8"))), &[w, b], base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let w = self.has_weight.then(|| inputs[1]);
        let b = self.has_bias.then(|| inputs[1 + self.has_weight as usize]);
        cpu_layer_norm(inputs[0], descs[0].dim(-1), self.eps, w, b)
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * 9.0
    }    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        super::norm_backward::layer_norm_backward(self, g, c)
    }
}

/// LayerNorm over rows of `c` elements in f64.
pub fn cpu_layer_norm(x: &[f32], c: usize, eps: f32, w: Option<&[f32]>, b: Option<&[f32]>) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(c) {
        let (mean, var) = mean_var(row);
        let rstd = 1.0 / (var + eps as f64).sqrt();
        out.extend(row.iter().enumerate().map(|(j, &v)| {
            let y = (v as f64 - mean) * rstd * w.map_or(1.0, |w| w[j] as f64) + b.map_or(0.0, |b| b[j] as f64);
            y as f32
        }));
    }
    out
}

/// Softmax of `scale · x` over the last dimension, max-subtracted.
pub struct Softmax {
    pub scale: f32,
}

impl Op for Softmax {
    fn kind(&self) -> &'static str {
        "softmax"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_rows("softmax", inputs[0])?;
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        lower_rows(l, self.kind(), ("softmax", None), &[], Params { scale: self.scale, ..Default::default() })
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        cpu_softmax(inputs[0], descs[0].dim(-1), self.scale)
    }
    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        inputs[0].numel() as f64 * 5.0
    }    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        super::norm_backward::softmax_backward(self, g, c)
    }
}

/// Softmax of `scale · x` over rows of `c` elements in f64.
pub fn cpu_softmax(x: &[f32], c: usize, scale: f32) -> Vec<f32> {
    let s = scale as f64;
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(c) {
        let m = row.iter().map(|&v| v as f64 * s).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 * s - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / sum) as f32));
    }
    out
}

// ---------------------------------------------------------------------------------------------------------

/// Gives an error the op name `op` (for checks shared between ops).
fn rename(e: Error, op: &str) -> Error {
    match e {
        Error::Shape { msg, .. } => Error::Shape { op: op.into(), msg },
        Error::DType { msg, .. } => Error::DType { op: op.into(), msg },
        other => other,
    }
}

/// Labels an error raised before any node is recorded the way `Graph::op` labels them.
fn at_node(e: Error, name: &str) -> Error {
    match e {
        Error::Shape { op, msg } => Error::Shape { op: format!("{op} '{name}'"), msg },
        Error::DType { op, msg } => Error::DType { op: format!("{op} '{name}'"), msg },
        other => other,
    }
}

impl Graph {
    /// GroupNorm of `x: [B, C, *spatial]` over `groups` groups (PyTorch semantics), with optional affine
    /// `weight`/`bias` of shape `[C]` and an optional SiLU fused after the affine. Records two nodes:
    /// `<name>.stats` and `<name>` (whose output this returns).
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm(
        &mut self,
        name: &str,
        x: TensorId,
        groups: usize,
        eps: f32,
        weight: Option<TensorId>,
        bias: Option<TensorId>,
        silu: bool,
    ) -> Result<TensorId> {
        let act = if silu { Activation::Silu } else { Activation::None };
        self.group_norm_act(name, x, groups, eps, weight, bias, act)
    }

    /// [`Graph::group_norm`] with any activation fused after the affine.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm_act(
        &mut self,
        name: &str,
        x: TensorId,
        groups: usize,
        eps: f32,
        weight: Option<TensorId>,
        bias: Option<TensorId>,
        act: Activation,
    ) -> Result<TensorId> {
        self.group_norm_to(name, x, groups, eps, weight, bias, act, DType::F32)
    }

    /// [`Graph::group_norm_act`] writing its output as `out`: f16 (planes of a multiple of 4 elements)
    /// halves what the convolution after it reads, which widens it exactly; the statistics and the affine
    /// stay f32, so the output is the f32 result rounded once.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm_to(
        &mut self,
        name: &str,
        x: TensorId,
        groups: usize,
        eps: f32,
        weight: Option<TensorId>,
        bias: Option<TensorId>,
        act: Activation,
        out: DType,
    ) -> Result<TensorId> {
        for t in [Some(x), weight, bias].into_iter().flatten() {
            if t.index() >= self.tensors.len() {
                return Err(Error::usage(format!("{name}: tensor id {} is not from this graph", t.index())));
            }
        }
        // Check everything before recording anything, so a bad weight does not leave a dangling stats node.
        check_group_norm(self.desc(x), groups, weight.map(|t| self.desc(t)), bias.map(|t| self.desc(t)))
            .map_err(|e| at_node(e, name))?;
        let stats = self.op(&format!("{name}.stats"), GroupNormStats { groups, eps }, &[x])?;
        let mut inputs = vec![x, stats];
        inputs.extend(weight);
        inputs.extend(bias);
        let op = GroupNormApply { groups, eps, act, has_weight: weight.is_some(), has_bias: bias.is_some(), out_f16: out == DType::F16 };
        self.op(name, op, &inputs)
    }

    /// LayerNorm over the last dimension with optional `weight`/`bias` of shape `[C]`.
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: TensorId,
        eps: f32,
        weight: Option<TensorId>,
        bias: Option<TensorId>,
    ) -> Result<TensorId> {
        let mut inputs = vec![x];
        inputs.extend(weight);
        inputs.extend(bias);
        self.op(name, LayerNorm { eps, has_weight: weight.is_some(), has_bias: bias.is_some() }, &inputs)
    }

    /// Softmax of `scale · x` over the last dimension.
    pub fn softmax(&mut self, name: &str, x: TensorId, scale: f32) -> Result<TensorId> {
        self.op(name, Softmax { scale }, &[x])
    }
}
