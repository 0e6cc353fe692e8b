//! Batched matrix multiplication (`shaders/matmul.wgsl`) with a fused epilogue:
//! `out[b] = act(alpha · op(A[b]) · op(B[b]) + bias)`, where `op` optionally transposes.
//!
//! - `A` may have any rank ≥ 2; its leading dimensions are batch (`[B, tokens, C]`).
//! - `B` is either rank 2 and shared by every batch (a weight), or has the same batch dimensions as `A`.
//!   `A` may likewise be rank 2 and shared by a batched `B`.
//! - `bias` is `[N]`; `act` is any [`Activation`].
//!
//! Kernels (see [`MatmulKernel`]): the tuned default picks, per adapter, between `matmul_tiled`
//! (`shaders/matmul.wgsl`: shared-memory tiles for GPUs) and `matmul_bcast` (`shaders/matmul_subgroup.wgsl`:
//! register tiles fed by subgroup broadcasts, for CPU drivers such as lavapipe, where it is several times
//! faster); `matmul_naive` (one invocation per output) is kept as the benchmark baseline. Where A and B are
//! both contiguous along K and K is a multiple of 4 (every Linear layer: `x · Wᵀ`), the broadcast kernel
//! is `matmul_bcast_k4` (same file), which reads 4 k at a time.
//!
//! On lavapipe (2 cores, timestamps, `matmul_throughput` in tests/kernels/matmul.rs) `matmul_bcast_k4`
//! runs 1024³ and 8192×320×1280 with B transposed at about 43 and 38 GFLOP/s, `matmul_bcast` at 23, the
//! naive kernel at 0.15 and the GPU tiled one at 0.3–0.5: llvmpipe builds every lane-varying load lane by
//! lane and keeps large accumulator blocks on the stack, so loads and accumulator traffic per multiply-add
//! decide speed there (see `tools/gen_matmul_subgroup.py`).

use std::sync::LazyLock;

use bytemuck::{Pod, Zeroable};

use super::unary::Activation;
use super::{check_f32, shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{chunks, params, BackwardCtx, Bind, DeviceLimits, Dispatch, Lowering, Op, Slot};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("matmul", with_activations);
/// Needs subgroup operations, so it is a module of its own: compiling it fails on adapters without them.
pub static SUBGROUP_SHADER: ShaderSource = shader!("matmul_subgroup", with_activations);
/// The same kernels reading B (a Linear weight) stored in f16, two per word (see `weight_storage.rs`);
/// `b4` is matmul_bcast_k4's vec4 view of the same binding.
pub static SHADER_F16W: LazyLock<ShaderSource> = LazyLock::new(|| SHADER.f16_weights("b"));
pub static SUBGROUP_SHADER_F16W: LazyLock<ShaderSource> =
    LazyLock::new(|| SUBGROUP_SHADER.f16_weights("b").f16_weights("b4"));
/// The CPU-adapter kernels reading A and B through textures (`DeviceLimits::texture_reads`), B stored as
/// f32 or f16 alike.
pub static SUBGROUP_SHADER_TEX: LazyLock<ShaderSource> =
    LazyLock::new(|| SUBGROUP_SHADER.texture_reads(&["a", "a4", "b", "b4"]));

/// Options of [`Graph::matmul`].
#[derive(Clone, Copy, Debug)]
pub struct MatmulOpts {
    /// Use `Aᵀ` (the last two dimensions of `A` are `[K, M]`).
    pub trans_a: bool,
    /// Use `Bᵀ` (the last two dimensions of `B` are `[N, K]`, a PyTorch Linear weight).
    pub trans_b: bool,
    /// Added to every output row, `[N]`.
    pub bias: Option<TensorId>,
    pub act: Activation,
    /// Scales the product before the bias is added.
    pub alpha: f32,
}

impl Default for MatmulOpts {
    fn default() -> Self {
        MatmulOpts { trans_a: false, trans_b: false, bias: None, act: Activation::None, alpha: 1.0 }
    }
}

/// Which kernel computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// The fastest kernel for the adapter: [`Broadcast`](MatmulKernel::Broadcast) on CPU drivers with
    /// subgroups of at least 8 invocations, [`Tiled`](MatmulKernel::Tiled) everywhere else.
    Tuned,
    /// 64×64 shared-memory tiles, 4×4 outputs per invocation (`matmul_tiled`): the GPU kernel.
    Tiled,
    /// 64 rows × 64 columns per 8-invocation subgroup, 64×8 accumulators per invocation, A shared by
    /// subgroup broadcast (`matmul_bcast`): the kernel for CPU drivers. Needs subgroups of ≥ 8 invocations.
    /// Where A and B are contiguous along K and K is a multiple of 4, its variant `matmul_bcast_k4` (32 rows
    /// × 64 columns, 4 k per step) runs instead.
    Broadcast,
    /// One invocation per output, no tiling (`matmul_naive`): the benchmark baseline.
    Naive,
}

impl MatmulKernel {
    /// The kernel actually used on a device with these limits.
    pub fn resolve(self, adapter: &DeviceLimits) -> MatmulKernel {
        match self {
            MatmulKernel::Tuned if adapter.cpu && adapter.subgroup_min_size >= 8 => MatmulKernel::Broadcast,
            MatmulKernel::Tuned => MatmulKernel::Tiled,
            k => k,
        }
    }

    /// Shader (for B stored as `b`), entry point and workgroup tile (rows, columns). `contiguous_k`: A and
    /// B are both contiguous along K and K is a multiple of 4.
    fn entry(self, b: DType, contiguous_k: bool) -> (&'static ShaderSource, &'static str, u32, u32) {
        let (plain, sub): (&'static ShaderSource, &'static ShaderSource) = match b {
            DType::F32 => (&SHADER, &SUBGROUP_SHADER),
            DType::F16 => (&SHADER_F16W, &SUBGROUP_SHADER_F16W),
        };
        match self {
            MatmulKernel::Tuned | MatmulKernel::Tiled => (plain, "matmul_tiled", 64, 64),
            MatmulKernel::Broadcast if contiguous_k => (sub, "matmul_bcast_k4", BCAST_K4_TILE_M, BCAST_K4_TILE_N),
            MatmulKernel::Broadcast => (sub, "matmul_bcast", BCAST_TILE_M, BCAST_TILE_N),
            MatmulKernel::Naive => (plain, "matmul_naive", 8, 8),
        }
    }
}

/// Workgroup tiles of `matmul_bcast` (64 rows, 8 lanes × 8 columns) and `matmul_bcast_k4` (32 rows, 8 lanes
/// × 8 columns), as generated by `tools/gen_matmul_subgroup.py`.
const BCAST_TILE_M: u32 = 64;
const BCAST_TILE_N: u32 = 64;
const BCAST_K4_TILE_M: u32 = 32;
const BCAST_K4_TILE_N: u32 = 64;

/// The matmul op. Inputs: `a`, `b` and, when `has_bias`, `bias`.
#[derive(Clone, Debug)]
pub struct Matmul {
    pub trans_a: bool,
    pub trans_b: bool,
    pub has_bias: bool,
    pub act: Activation,
    pub alpha: f32,
    pub kernel: MatmulKernel,
}

/// Problem shape derived from the inputs.
#[derive(Clone, Debug, PartialEq)]
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    /// Output batch dimensions (`A`'s or `B`'s leading dimensions).
    batch_shape: Vec<usize>,
    a_batched: bool,
    b_batched: bool,
}

impl Matmul {
    fn dims(&self, a: &TensorDesc, b: &TensorDesc) -> Result<Dims> {
        let op = self.kind();
        if a.rank() < 2 || b.rank() < 2 {
            return Err(Error::shape(op, format!("needs matrices (rank ≥ 2), got A {a} and B {b}")));
        }
        let (ar, br) = (a.rank(), b.rank());
        let (m, ka) = if self.trans_a { (a.shape[ar - 1], a.shape[ar - 2]) } else { (a.shape[ar - 2], a.shape[ar - 1]) };
        let (kb, n) = if self.trans_b { (b.shape[br - 1], b.shape[br - 2]) } else { (b.shape[br - 2], b.shape[br - 1]) };
        let t = |x: bool| if x { "ᵀ" } else { "" };
        if ka != kb {
            return Err(Error::shape(
                op,
                format!(
                    "inner dimensions differ: A{} {a} gives K = {ka}, B{} {b} gives K = {kb}",
                    t(self.trans_a),
                    t(self.trans_b)
                ),
            ));
        }
        let (a_batch, b_batch) = (&a.shape[..ar - 2], &b.shape[..br - 2]);
        let batch_shape = if b_batch.is_empty() {
            a_batch.to_vec()
        } else if a_batch.is_empty() || a_batch == b_batch {
            b_batch.to_vec()
        } else {
            return Err(Error::shape(
                op,
                format!("batch dimensions of A {a} and B {b} differ (B must be a matrix or have A's batch dims)"),
            ));
        };
        if m == 0 || n == 0 || ka == 0 || batch_shape.contains(&0) {
            return Err(Error::shape(op, format!("empty operand: A {a}, B {b}")));
        }
        Ok(Dims {
            batch: batch_shape.iter().product(),
            m,
            k: ka,
            n,
            batch_shape,
            a_batched: !a_batch.is_empty(),
            b_batched: !b_batch.is_empty(),
        })
    }
}

/// Uniform parameters, mirrored by `Params` in `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    /// Bit 0: a bias is bound.
    flags: u32,
    /// Element strides of A: batch, row (m), column (k).
    a_bs: u32,
    a_sm: u32,
    a_sk: u32,
    /// Element strides of B: batch, row (k), column (n).
    b_bs: u32,
    b_sk: u32,
    b_sn: u32,
    act: u32,
    alpha: f32,
    /// First row and first batch of this dispatch (grids larger than the device allows are split).
    m0: u32,
    z0: u32,
    /// Elements between output rows: N, or more where a dispatch computes a window of the columns
    /// (`matmul_bcast*` only; the other kernels keep N).
    ldc: u32,
    _pad: u32,
}


impl Op for Matmul {
    fn kind(&self) -> &'static str {
        match self.kernel {
            MatmulKernel::Tuned => "matmul",
            MatmulKernel::Tiled => "matmul_tiled",
            MatmulKernel::Broadcast => "matmul_bcast",
            MatmulKernel::Naive => "matmul_naive",
        }
    }

    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let want = 2 + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape(self.kind(), format!("takes {want} inputs, got {}", inputs.len())));
        }
        // B may be a weight stored in f16 (widened in the kernel); A, bias and output are f32.
        check_f32(self.kind(), &[inputs[0]])?;
        check_f32(self.kind(), &inputs[2..])?;
        if !matches!(inputs[1].dtype, DType::F32 | DType::F16) {
            return Err(Error::DType { op: self.kind().into(), msg: format!("B is {}; this kernel takes f32 or f16", inputs[1]) });
        }
        let d = self.dims(inputs[0], inputs[1])?;
        if self.has_bias {
            let bias = inputs[2];
            if bias.shape != [d.n] {
                return Err(Error::shape(
                    self.kind(),
                    format!("bias {bias} must be [{}] for A {} and B {}", d.n, inputs[0], inputs[1]),
                ));
            }
        }
        let mut shape = d.batch_shape.clone();
        shape.extend([d.m, d.n]);
        Ok(TensorDesc::f32(&shape))
    }

    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        self.lower_product(l, false)
    }

    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let d = self.dims(descs[0], descs[1]).expect("checked at record time");
        let bias = self.has_bias.then(|| inputs[2]);
        cpu_matmul(self, &d, inputs[0], inputs[1], bias, 0..d.m)
    }

    fn flops(&self, inputs: &[&TensorDesc], _: &TensorDesc) -> f64 {
        match self.dims(inputs[0], inputs[1]) {
            Ok(d) => 2.0 * d.batch as f64 * d.m as f64 * d.n as f64 * d.k as f64,
            Err(_) => 0.0,
        }
    }

    /// `Y = act(alpha·op(A)·op(B) + bias)`. With an activation, the pre-activation `Z` is recomputed (the
    /// same product without it) and `dZ = act'(Z)·dY`. Then `dA`, `dB` are products of `dZ` with the other
    /// operand (carrying `alpha`), with transposes chosen so no operand is copied; where an operand is shared
    /// by a batch, its gradient sums over the batch: for a weight under an untransposed batched `A` (Linear)
    /// by folding the batch into the product's inner dimension (free reshapes), otherwise by a batched
    /// product and `sum_to`. `dbias = Σ_rows dZ`.
    fn backward(&self, g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        let (a, b) = (c.inputs[0], c.inputs[1]);
        let (ta, tb) = (self.trans_a, self.trans_b);
        let d = self.dims(g.desc(a), g.desc(b))?;
        let mm = |g: &mut Graph, what: &str, x: TensorId, y: TensorId, trans_a: bool, trans_b: bool| {
            let opts = MatmulOpts { trans_a, trans_b, bias: None, act: Activation::None, alpha: self.alpha };
            g.matmul_with(&c.node(what), x, y, opts, self.kernel)
        };
        let dz = if self.act == Activation::None {
            c.dy
        } else {
            let opts = MatmulOpts { trans_a: ta, trans_b: tb, bias: c.inputs.get(2).copied(), act: Activation::None, alpha: self.alpha };
            let z = g.matmul_with(&c.node("preact"), a, b, opts, self.kernel)?;
            g.activation_grad(&c.node("dz"), z, c.dy, self.act)?
        };
        let mut grads = vec![None; c.inputs.len()];
        if c.need[0] {
            // dA = dZ·op(B)ᵀ, or (dZ·op(B)ᵀ)ᵀ = op(B)·dZᵀ when A is stored transposed.
            let full = if !ta { mm(g, "a", dz, b, false, !tb)? } else { mm(g, "a", b, dz, tb, true)? };
            let a_shape = g.shape(a).to_vec();
            grads[0] = Some(if !d.a_batched && d.b_batched { g.sum_to(&c.node("a_sum"), full, &a_shape)? } else { full });
        }
        if c.need[1] {
            let b_shape = g.shape(b).to_vec();
            // dB = op(A)ᵀ·dZ, or dZᵀ·op(A) when B is stored transposed.
            let prod = |g: &mut Graph, x: TensorId, dz: TensorId, ta: bool| {
                if !tb {
                    mm(g, "b", x, dz, !ta, false)
                } else {
                    mm(g, "b", dz, x, true, ta)
                }
            };
            grads[1] = Some(if d.a_batched && !d.b_batched && !ta {
                let rows = d.batch * d.m;
                let a2 = g.reshape(a, &[rows, d.k])?;
                let dz2 = g.reshape(dz, &[rows, d.n])?;
                prod(g, a2, dz2, false)?
            } else if d.a_batched && !d.b_batched {
                let full = prod(g, a, dz, ta)?;
                g.sum_to(&c.node("b_sum"), full, &b_shape)?
            } else {
                prod(g, a, dz, ta)?
            });
        }
        if self.has_bias && c.need[2] {
            grads[2] = Some(g.sum_to(&c.node("bias"), dz, &[d.n])?);
        }
        Ok(grads)
    }
}

impl Matmul {
    /// The dispatches of this product; with `geglu` (a [`LinearGeglu`](super::linear_geglu::LinearGeglu)),
    /// `matmul_bcast_k4_geglu`'s: B holds 2F columns, the output F, `hidden · gelu(gate)`.
    pub(crate) fn lower_product(&self, l: &Lowering, geglu: bool) -> Result<Vec<Dispatch>> {
        let adapter = l.limits;
        let kernel = self.kernel.resolve(adapter);
        if kernel == MatmulKernel::Broadcast && adapter.subgroup_min_size < 8 {
            return Err(Error::usage(format!(
                "matmul_bcast needs subgroups of at least 8 invocations; this adapter has {}",
                match adapter.subgroup_min_size {
                    0 => "no subgroup operations".to_string(),
                    s => format!("subgroups of {s}"),
                }
            )));
        }
        let (a, b) = (&l.inputs[0], &l.inputs[1]);
        let d = self.dims(a, b)?;
        // Output columns: N, or F = N / 2 under the GEGLU epilogue.
        let n_out = if geglu { d.n / 2 } else { d.n };
        // Both operands run along K in memory (x · Wᵀ), in whole groups of 4: the vec4 kernel's offsets
        // (multiples of K) then stay multiples of 4. It stores whole vec4s too, so N (the output's row
        // stride, also in the column windows below) must be a multiple of 4.
        let contiguous_k = !self.trans_a && self.trans_b && d.k % 4 == 0 && n_out % 4 == 0;
        let (mut shader, entry, tm, tn) = if geglu {
            if kernel != MatmulKernel::Broadcast || !contiguous_k || d.n % 2 != 0 {
                return Err(Error::usage(format!(
                    "matmul_bcast_k4_geglu needs the subgroup kernels, x · Wᵀ, K and F multiples of 4; got A {a}, B {b}"
                )));
            }
            let (shader, _, tm, tn) = kernel.entry(b.dtype, true);
            (shader, "matmul_bcast_k4_geglu", tm, tn / 2)
        } else {
            kernel.entry(b.dtype, contiguous_k)
        };
        let (mut m, mut batch) = (d.m, d.batch);
        let (a_sm, a_sk) = if self.trans_a { (1, d.m) } else { (d.k, 1) };
        let (b_sk, b_sn) = if self.trans_b { (1, d.k) } else { (d.n, 1) };
        let mut a_bs = if d.a_batched { d.m * d.k } else { 0 };
        let b_bs = if d.b_batched { d.k * d.n } else { 0 };
        // A shared B with an untransposed A is one tall matrix: fold the batch into M (bigger tiles, fewer
        // partial ones). The output rows are contiguous in the same order.
        if d.a_batched && !d.b_batched && !self.trans_a {
            m *= batch;
            batch = 1;
            a_bs = 0;
        }
        for (what, v) in [("A", a.numel()), ("B", b.numel()), ("output", l.output.numel())] {
            if v > u32::MAX as usize {
                return Err(Error::shape(self.kind(), format!("{what} has more than 2³² elements")));
            }
        }
        let base = Params {
            m: m as u32,
            n: n_out as u32,
            k: d.k as u32,
            flags: self.has_bias as u32,
            a_bs: a_bs as u32,
            a_sm: a_sm as u32,
            a_sk: a_sk as u32,
            b_bs: b_bs as u32,
            b_sk: b_sk as u32,
            b_sn: b_sn as u32,
            act: self.act.code(),
            alpha: self.alpha,
            ldc: n_out as u32,
            ..Default::default()
        };
        // Without a bias the slot is bound to A (read-only, never read) so the layout stays the same.
        let bias = if self.has_bias { Bind::input(2, &l.inputs[2]) } else { Bind::input(0, a) };
        let mut bindings = vec![Bind::input(0, a), Bind::input(1, b), bias, Bind::output(l.output)];
        if kernel == MatmulKernel::Broadcast && adapter.read_through_textures(&mut bindings, &[(0, a.dtype), (1, b.dtype)]) {
            shader = &SUBGROUP_SHADER_TEX;
        }
        let max = l.limits.max_workgroups as u64;
        let gx = (n_out as u64).div_ceil(tn as u64);
        if gx > max {
            return Err(Error::shape(self.kind(), format!("N = {n_out} needs more than {max} workgroups")));
        }
        // The GEGLU kernel reads hidden and gate columns F apart, so B is never windowed by columns: it
        // must fit one texture window whole (LinearGeglu takes the two-op form otherwise).
        if geglu && bindings[1].texture && b.bytes() > l.limits.texture_window {
            return Err(Error::usage(format!("matmul_bcast_k4_geglu: B {b} is larger than a texture window")));
        }
        let windows = if bindings[0].texture {
            let dims = ProductExtent { m: m as u64, n: n_out as u64, k: d.k as u64, batch: batch as u64, tm: tm as u64, tn: tn as u64 };
            texture_windows(l, &bindings, dims, (self.trans_a, self.trans_b, self.has_bias), [a_bs, b_bs, m * n_out].map(|v| v as u64))
        } else {
            vec![(bindings.clone(), m as u64, batch as u64, n_out as u64)]
        };
        let mut out = Vec::new();
        for (bindings, m, batch, n) in windows {
            let gy_total = m.div_ceil(tm as u64);
            let gx = n.div_ceil(tn as u64);
            // Split rows and batches over several dispatches when the grid exceeds the device limit.
            for z0 in (0..batch).step_by(max as usize) {
                let gz = (batch - z0).min(max);
                for y0 in (0..gy_total).step_by(max as usize) {
                    let gy = (gy_total - y0).min(max);
                    let p = Params { m: m as u32, n: n as u32, m0: (y0 * tm as u64) as u32, z0: z0 as u32, ..base };
                    out.push(Dispatch {
                        shader,
                        entry,
                        params: params(&p),
                        bindings: bindings.clone(),
                        workgroups: [gx as u32, gy as u32, gz as u32],
                        // One pipeline per activation: the epilogue then computes only this one.
                        constants: vec![("ACT", self.act.code())],
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A product's extent for [`texture_windows`]: rows, columns, inner dimension, batches, and the tile's
/// rows and columns.
struct ProductExtent {
    m: u64,
    n: u64,
    k: u64,
    batch: u64,
    tm: u64,
    tn: u64,
}

/// Where A and B are read through scratch textures: the work split into windows whose A and B ranges stay
/// under the device's `texture_window` each (so the textures, shared by every op, stay small): runs of whole
/// batches, or for one batch runs of rows (multiples of the tile's `tm`; A untransposed, so its rows are
/// contiguous) times, where B is transposed (a Linear weight, `[N, K]`: its rows are the output's columns)
/// and over the window, runs of columns (multiples of `tn`; the output and bias bound from the run's first
/// column, output rows `ldc` = N apart). Each window is `(bindings, rows, batches, columns)` with A, B, the
/// bias and the output bound from its start. `strides`: elements per batch of A, B (0 when shared by every
/// batch) and the output. Falls back to one window where a start would not be a valid binding offset.
fn texture_windows(
    l: &Lowering,
    whole: &[Bind],
    d: ProductExtent,
    (trans_a, trans_b, has_bias): (bool, bool, bool),
    strides: [u64; 3],
) -> Vec<(Vec<Bind>, u64, u64, u64)> {
    let ProductExtent { m, n, k, batch, tm, tn } = d;
    let one = vec![(whole.to_vec(), m, batch, n)];
    let [a_bs, b_bs, out_bs] = strides;
    let (a, b, out) = (&l.inputs[0], &l.inputs[1], l.output);
    let (ea, eb) = (a.dtype.size_bytes(), b.dtype.size_bytes());
    // Per window: its rows, batches and columns, and the (first element, elements) of A, B, the bias and
    // the output (0 elements: bound whole).
    type Ranges = (u64, u64, u64, [(u64, u64); 4]);
    let ranges: Vec<Ranges> = if batch > 1 {
        let step = l.limits.texture_window / (a_bs * ea).max(b_bs * eb).max(1);
        let z = chunks(batch, step.max(1), 1);
        z.into_iter().map(|(z0, nz)| (m, nz, n, [(z0 * a_bs, nz * a_bs), (z0 * b_bs, nz * b_bs), (0, 0), (z0 * out_bs, nz * out_bs)])).collect()
    } else if !trans_a {
        let step = (l.limits.texture_window / (k * ea).max(1) / tm * tm).max(tm);
        let cols = if trans_b && n * k * eb > l.limits.texture_window {
            chunks(n, l.limits.texture_window / (k * eb).max(1), tn)
        } else {
            vec![(0, n)]
        };
        let mut r = Vec::new();
        for (r0, nr) in chunks(m, step, 1) {
            for &(c0, nc) in &cols {
                let whole_b = cols.len() == 1;
                let b_range = if whole_b { (0, 0) } else { (c0 * k, nc * k) };
                let bias = if has_bias && !whole_b { (c0, nc) } else { (0, 0) };
                r.push((nr, 1, nc, [(r0 * k, nr * k), b_range, bias, (r0 * n + c0, (nr - 1) * n + nc)]));
            }
        }
        r
    } else {
        return one;
    };
    let mut windows = Vec::new();
    for (rows, batches, cols, elements) in ranges {
        let mut binds = whole.to_vec();
        let bias = &l.inputs[2.min(l.inputs.len() - 1)];
        for (slot, (begin, count), desc) in [(0, elements[0], a), (1, elements[1], b), (2, elements[2], bias), (3, elements[3], out)] {
            if count == 0 {
                continue;
            }
            let s = if slot == 3 { Slot::Output } else { Slot::Input(slot) };
            let (bind, shift) = Bind::elements(s, desc, begin, count, l.limits);
            if shift != 0 || (whole[slot].texture && !l.limits.texture_fits(&bind, desc.dtype)) {
                return one;
            }
            binds[slot] = Bind { texture: whole[slot].texture, ..bind };
        }
        windows.push((binds, rows, batches, cols));
    }
    windows
}

/// CPU twin restricted to output rows `rows` of every batch (f64 accumulation). Returns
/// `[batch, rows.len(), N]`.
fn cpu_matmul(op: &Matmul, d: &Dims, a: &[f32], b: &[f32], bias: Option<&[f32]>, rows: std::ops::Range<usize>) -> Vec<f32> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = Vec::with_capacity(d.batch * rows.len() * n);
    let mut acc = vec![0f64; n];
    for z in 0..d.batch {
        let ab = if d.a_batched { &a[z * m * k..(z + 1) * m * k] } else { a };
        let bb = if d.b_batched { &b[z * k * n..(z + 1) * k * n] } else { b };
        for i in rows.clone() {
            acc.iter_mut().for_each(|v| *v = 0.0);
            for p in 0..k {
                let av = if op.trans_a { ab[p * m + i] } else { ab[i * k + p] } as f64;
                if op.trans_b {
                    for (j, v) in acc.iter_mut().enumerate() {
                        *v += av * bb[j * k + p] as f64;
                    }
                } else {
                    let row = &bb[p * n..(p + 1) * n];
                    for (v, &bv) in acc.iter_mut().zip(row) {
                        *v += av * bv as f64;
                    }
                }
            }
            for (j, v) in acc.iter().enumerate() {
                let x = op.alpha as f64 * v + bias.map_or(0.0, |bs| bs[j] as f64);
                out.push(op.act.apply(x as f32));
            }
        }
    }
    out
}

/// CPU reference for output rows `rows` (of every batch) of a recorded matmul node with inputs `a`, `b`
/// (and `bias`): lets tests at real SD shapes check a few row blocks without the full CPU product.
pub fn cpu_matmul_rows(
    op: &Matmul,
    a: (&TensorDesc, &[f32]),
    b: (&TensorDesc, &[f32]),
    bias: Option<&[f32]>,
    rows: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let d = op.dims(a.0, b.0)?;
    if rows.end > d.m {
        return Err(Error::usage(format!("rows {rows:?} past M = {}", d.m)));
    }
    Ok(cpu_matmul(op, &d, a.1, b.1, bias, rows))
}

impl Graph {
    /// `act(alpha · op(a) · op(b) + bias)` with the tuned kernel (see [`MatmulOpts`]).
    pub fn matmul(&mut self, name: &str, a: TensorId, b: TensorId, opts: MatmulOpts) -> Result<TensorId> {
        self.matmul_with(name, a, b, opts, MatmulKernel::Tuned)
    }

    /// The same product with the naive kernel (benchmark baseline).
    pub fn matmul_naive(&mut self, name: &str, a: TensorId, b: TensorId, opts: MatmulOpts) -> Result<TensorId> {
        self.matmul_with(name, a, b, opts, MatmulKernel::Naive)
    }

    pub fn matmul_with(
        &mut self,
        name: &str,
        a: TensorId,
        b: TensorId,
        opts: MatmulOpts,
        kernel: MatmulKernel,
    ) -> Result<TensorId> {
        let op = Matmul {
            trans_a: opts.trans_a,
            trans_b: opts.trans_b,
            has_bias: opts.bias.is_some(),
            act: opts.act,
            alpha: opts.alpha,
            kernel,
        };
        let mut inputs = vec![a, b];
        inputs.extend(opts.bias);
        self.op(name, op, &inputs)
    }

    /// PyTorch `nn.Linear`: `x · weightᵀ + bias` for `x: [..., in]`, `weight: [out, in]`, `bias: [out]`.
    pub fn linear(&mut self, name: &str, x: TensorId, weight: TensorId, bias: Option<TensorId>) -> Result<TensorId> {
        self.matmul(name, x, weight, MatmulOpts { trans_b: true, bias, ..Default::default() })
    }
}
