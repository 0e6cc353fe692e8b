//! One-input kernels without reductions (`shaders/unary.wgsl`): activations and affine maps, GEGLU and
//! nearest 2× upsampling, with their CPU twins. All of them split tensors larger than one binding.

use std::sync::LazyLock;

use bytemuck::{Pod, Zeroable};

use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use super::elementwise_backward::ActivationGrad;
use crate::graph::op::{chunks, grid_1d, max_binding_elems, params, BackwardCtx, Bind, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("unary", with_activations);
/// The vec4 entry points (geglu4, transpose4) reading x through a texture (CPU adapters:
/// `DeviceLimits::texture_reads`; lavapipe 22.3 builds every lane-varying buffer load lane by lane).
pub static SHADER_TEX: LazyLock<ShaderSource> = LazyLock::new(|| SHADER.texture_reads(&["x4"]));

/// Activation functions, shared with the kernels that fuse them into an epilogue.
/// The numeric codes match the `ACT_*` constants of `shaders/activations.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None = 0,
    Silu = 1,
    /// Exact GELU (erf form).
    Gelu = 2,
    /// GELU's tanh approximation.
    GeluTanh = 3,
    /// CLIP's `x * sigmoid(1.702 x)`.
    QuickGelu = 4,
    /// `max(x, 0)` (BiT and DPT in the depth estimator, TAESD).
    Relu = 5,
    /// `tanh(x)` (TAESD's decoder clamps its input with `3 · tanh(x / 3)`).
    Tanh = 6,
}

impl Activation {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "identity",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::QuickGelu => "quick_gelu",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        }
    }

    /// CPU twin, computed in f64 with an exact erf.
    pub fn apply(self, x: f32) -> f32 {
        let v = x as f64;
        let r = match self {
            Activation::None => v,
            Activation::Silu => v / (1.0 + (-v).exp()),
            Activation::Gelu => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => 0.5 * v * (1.0 + (0.7978845608028654 * (v + 0.044715 * v * v * v)).tanh()),
            Activation::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
            Activation::Relu => v.max(0.0),
            Activation::Tanh => v.tanh(),
        };
        r as f32
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    x_shift: u32,
    out_shift: u32,
    act: u32,
    alpha: f32,
    beta: f32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
}

fn check_f32(op: &str, d: &TensorDesc) -> Result<()> {
    if d.dtype != DType::F32 {
        return Err(Error::DType { op: op.into(), msg: format!("input is {d}; this kernel takes f32") });
    }
    Ok(())
}

/// Lowers a kernel that maps input rows of `in_row` elements to output rows of `out_row` elements,
/// splitting by whole rows so each dispatch's bindings fit the device.
/// `entries`: the entry point, and a variant reading and writing vec4s with how many outputs each of its
/// invocations writes, used for the dispatches whose rows and offsets are all multiples of 4.
fn lower_rows(
    l: &Lowering,
    entries: (&'static str, Option<(&'static str, u64)>),
    in_row: u64,
    out_row: u64,
    base: Params,
) -> Result<Vec<Dispatch>> {
    let (entry, entry4) = entries;
    let x = &l.inputs[0];
    let rows = x.numel() as u64 / in_row.max(1);
    let cap = max_binding_elems(l.limits, DType::F32) / in_row.max(out_row);
    if cap == 0 {
        return Err(super::norm::unit_limit_error(entry, format!("one row of {x}"), in_row.max(out_row), l.limits));
    }
    // Where x is read through a scratch texture, smaller windows keep that texture small: it is shared with
    // every op reading the same binding slot, and GEGLU's input (the UNet's largest tensor, 2×4096×2560
    // f32 = 84 MB) would otherwise set its size.
    let cap = if l.limits.texture_reads { cap.min((l.limits.texture_window / 4 / in_row.max(1)).max(1)) } else { cap };
    let mut out = Vec::new();
    for (r0, nr) in chunks(rows, cap, 1) {
        let (bx, x_shift) = Bind::elements(Slot::Input(0), x, r0 * in_row, nr * in_row, l.limits);
        let (bo, out_shift) = Bind::elements(Slot::Output, l.output, r0 * out_row, nr * out_row, l.limits);
        let n = nr * out_row;
        let p = Params { n: n as u32, x_shift, out_shift, ..base };
        let vec4 = [in_row, out_row, x_shift as u64, out_shift as u64].iter().all(|v| v % 4 == 0);
        let (entry, per_item) = match entry4 {
            Some(e4) if vec4 => e4,
            _ => (entry, 1),
        };
        let mut bindings = vec![bx, bo];
        let textures = per_item > 1 && l.limits.read_through_textures(&mut bindings, &[(0, DType::F32)]);
        out.push(Dispatch {
            shader: if textures { &SHADER_TEX } else { &SHADER },
            entry,
            params: params(&p),
            bindings,
            workgroups: grid_1d((n / per_item).div_ceil(256), l.limits),
            // One pipeline per activation (see shaders/activations.wgsl).
            constants: vec![("ACT", base.act)],
        });
    }
    Ok(out)
}

/// `out = act(alpha * x + beta)` elementwise.
pub struct Map {
    pub act: Activation,
    pub alpha: f32,
    pub beta: f32,
}

impl Op for Map {
    fn kind(&self) -> &'static str {
        if self.act == Activation::None {
            "scale"
        } else {
            self.act.name()
        }
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        check_f32(self.kind(), inputs[0])?;
        Ok(inputs[0].clone())
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let base = Params { act: self.act.code(), alpha: self.alpha, beta: self.beta, ..Default::default() };
        lower_rows(l, ("map", None), 1, 1, base)
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        inputs[0].iter().map(|v| self.act.apply(self.alpha * v + self.beta)).collect()
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        out.numel() as f64 * 2.0
    }
    /// `dx = alpha · dy · act'(alpha · x + beta)`; a plain scale for the identity.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None]);
        }
        let dx = if self.act == Activation::None {
            g.scale(&c.node("x"), c.dy, self.alpha, 0.0)?
        } else {
            g.op(&c.node("x"), ActivationGrad { act: self.act, alpha: self.alpha, beta: self.beta }, &[c.inputs[0], c.dy])?
        };
        Ok(vec![Some(dx)])
    }
}

/// GEGLU: `x[..., :F] * gelu(x[..., F:])` for `x: [..., 2F]`.
pub struct Geglu;

impl Op for Geglu {
    fn kind(&self) -> &'static str {
        "geglu"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_f32("geglu", x)?;
        if x.rank() == 0 || !x.dim(-1).is_multiple_of(2) {
            return Err(Error::shape("geglu", format!("last dimension of {x} must be even")));
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() /= 2;
        Ok(TensorDesc::f32(&shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let f = l.output.dim(-1) as u64;
        lower_rows(l, ("geglu", Some(("geglu4", 4))), 2 * f, f, Params { a: f as u32, ..Default::default() })
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        cpu_geglu(inputs[0], out.dim(-1))
    }
    fn flops(&self, _: &[&TensorDesc], out: &TensorDesc) -> f64 {
        out.numel() as f64 * 20.0
    }
    /// Both halves of `dx` in one kernel (`geglu_grad`).
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None]);
        }
        Ok(vec![Some(g.geglu_grad(&c.node("x"), c.inputs[0], c.dy)?)])
    }
}

pub fn cpu_geglu(x: &[f32], f: usize) -> Vec<f32> {
    x.chunks_exact(2 * f)
        .flat_map(|row| (0..f).map(move |j| row[j] * Activation::Gelu.apply(row[f + j])))
        .collect()
}

/// Nearest-neighbour resizing of `[B, C, H, W]` to `[B, C, OH, OW]` (diffusers `Upsample2D` before its conv:
/// 2× normally, or the size of the matching skip connection when a latent side is not a multiple of 8).
pub struct UpsampleNearest {
    pub out_h: usize,
    pub out_w: usize,
}

impl Op for UpsampleNearest {
    fn kind(&self) -> &'static str {
        "upsample_nearest"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_f32(self.kind(), x)?;
        if x.rank() != 4 || self.out_h == 0 || self.out_w == 0 {
            return Err(Error::shape(self.kind(), format!("expects [B, C, H, W] and a positive size, got {x} → {}×{}", self.out_h, self.out_w)));
        }
        Ok(TensorDesc::f32(&[x.shape[0], x.shape[1], self.out_h, self.out_w]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (h, w) = (l.inputs[0].shape[2] as u64, l.inputs[0].shape[3] as u64);
        let (oh, ow) = (self.out_h as u64, self.out_w as u64);
        let base = Params { a: w as u32, b: h as u32, c: ow as u32, d: oh as u32, ..Default::default() };
        lower_rows(l, ("upsample_nearest", None), h * w, oh * ow, base)
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (h, w) = (descs[0].shape[2], descs[0].shape[3]);
        cpu_upsample_nearest(inputs[0], h, w, self.out_h, self.out_w)
    }
    /// Each input pixel gets the sum of the output gradients it was copied to.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None]);
        }
        let s = g.shape(c.inputs[0]).to_vec();
        Ok(vec![Some(g.upsample_nearest_grad(&c.node("x"), c.dy, s[2], s[3])?)])
    }
}

pub fn cpu_upsample_nearest(x: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / (h * w) * oh * ow);
    for plane in x.chunks_exact(h * w) {
        for oy in 0..oh {
            for ox in 0..ow {
                out.push(plane[(oy * h / oh) * w + ox * w / ow]);
            }
        }
    }
    out
}

/// Swaps the last two dimensions: `[..., M, N]` → `[..., N, M]` (NCHW ↔ token-major for transformers).
pub struct Transpose;

impl Op for Transpose {
    fn kind(&self) -> &'static str {
        "transpose"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let x = inputs[0];
        check_f32(self.kind(), x)?;
        if x.rank() < 2 {
            return Err(Error::shape(self.kind(), format!("needs at least 2 dimensions, got {x}")));
        }
        let mut shape = x.shape.clone();
        let r = shape.len();
        shape.swap(r - 2, r - 1);
        Ok(TensorDesc::f32(&shape))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let (m, n) = (l.inputs[0].dim(-2) as u64, l.inputs[0].dim(-1) as u64);
        // 4×4 blocks where both sides are multiples of 4 (the UNet's [B, C, H·W] ↔ [B, H·W, C] transposes).
        let blocks = (m % 4 == 0 && n % 4 == 0).then_some(("transpose4", 16));
        lower_rows(l, ("transpose", blocks), m * n, m * n, Params { a: m as u32, b: n as u32, ..Default::default() })
    }
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (m, n) = (descs[0].dim(-2), descs[0].dim(-1));
        let mut out = Vec::with_capacity(inputs[0].len());
        for mat in inputs[0].chunks_exact(m * n) {
            for c in 0..n {
                for r in 0..m {
                    out.push(mat[r * n + c]);
                }
            }
        }
        out
    }
    /// Transposed back.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        if !c.need[0] {
            return Ok(vec![None]);
        }
        Ok(vec![Some(g.transpose(&c.node("x"), c.dy)?)])
    }
}

impl Graph {
    /// `[..., M, N]` → `[..., N, M]`.
    pub fn transpose(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.op(name, Transpose, &[x])
    }
    pub fn activation(&mut self, name: &str, x: TensorId, act: Activation) -> Result<TensorId> {
        self.op(name, Map { act, alpha: 1.0, beta: 0.0 }, &[x])
    }
    pub fn silu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.activation(name, x, Activation::Silu)
    }
    pub fn gelu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.activation(name, x, Activation::Gelu)
    }
    pub fn quick_gelu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.activation(name, x, Activation::QuickGelu)
    }
    /// `alpha * x + beta`.
    pub fn scale(&mut self, name: &str, x: TensorId, alpha: f32, beta: f32) -> Result<TensorId> {
        self.op(name, Map { act: Activation::None, alpha, beta }, &[x])
    }
    pub fn geglu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.op(name, Geglu, &[x])
    }
    /// Nearest 2× upsampling of `[B, C, H, W]`.
    pub fn upsample_nearest2x(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let s = self.shape(x).to_vec();
        if s.len() != 4 {
            return Err(Error::shape("upsample_nearest", format!("'{name}' expects [B, C, H, W], got {:?}", s)));
        }
        self.upsample_nearest(name, x, 2 * s[2], 2 * s[3])
    }
    /// Nearest resizing of `[B, C, H, W]` to `[B, C, out_h, out_w]`.
    pub fn upsample_nearest(&mut self, name: &str, x: TensorId, out_h: usize, out_w: usize) -> Result<TensorId> {
        self.op(name, UpsampleNearest { out_h, out_w }, &[x])
    }
}
