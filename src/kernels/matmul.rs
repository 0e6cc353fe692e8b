//! Batched matrix multiplication (`shaders/matmul.wgsl`) with a fused epilogue:
//! `out[b] = act(alpha · op(A[b]) · op(B[b]) + bias)`, where `op` optionally transposes.
//!
//! - `A` may have any rank ≥ 2; its leading dimensions are batch (`[B, tokens, C]`).
//! - `B` is either rank 2 and shared by every batch (a weight), or has the same batch dimensions as `A`.
//!   `A` may likewise be rank 2 and shared by a batched `B`.
//! - `bias` is `[N]`; `act` is any [`Activation`].
//!
//! Two kernels compute it: the tuned register-tiled one (`matmul`) and a deliberately naive one thread per
//! output (`matmul_naive`), kept as the baseline the benchmark compares against.

use bytemuck::{Pod, Zeroable};

use super::unary::Activation;
use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{params, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("matmul", with_activations);
pub static SG_SHADER: ShaderSource = shader!("matmul_sg", with_activations);

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
    /// Register-tiled kernel (see the shader header for the tiling).
    Tuned,
    /// One thread per output, no tiling: the baseline for benchmarks.
    Naive,
    /// One of [`CANDIDATES`], for tuning benchmarks.
    Candidate(usize),
}

/// Tilings measured against each other: (entry point, rows, columns per workgroup).
pub const CANDIDATES: &[(&str, u32, u32)] = &[
    ("mm_rows_8x4", 8, 256),
    ("mm_a4x4", 32, 32),
    ("mm_a8x8", 64, 64),
    ("mm_a8x4", 64, 32),
    ("mm_a16x4", 128, 32),
    ("mm_k1_r32c8", 32, 64),
    ("mm_k1_r64c8", 64, 64),
    ("mm_k1_r64c16", 64, 128),
    ("mm_k1_r32c16", 32, 128),
    ("mm_k1_r128c8", 128, 64),
];

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

/// Problem shape derived from the inputs. Strides are in elements.
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
    _pad: [u32; 2],
}

/// Workgroup tile of the tuned kernel: `TILE_M` rows × `TILE_N` columns (must match the shader).
pub const TILE_M: u32 = 16;
pub const TILE_N: u32 = 128;
/// Tile of the naive kernel (one thread per output).
const NAIVE_TILE: u32 = 8;

fn check_f32(op: &str, ds: &[&TensorDesc]) -> Result<()> {
    for d in ds {
        if d.dtype != DType::F32 {
            return Err(Error::DType { op: op.into(), msg: format!("input is {d}; this kernel takes f32") });
        }
    }
    Ok(())
}

impl Op for Matmul {
    fn kind(&self) -> &'static str {
        match self.kernel {
            MatmulKernel::Tuned => "matmul",
            MatmulKernel::Naive => "matmul_naive",
            MatmulKernel::Candidate(_) => "matmul_candidate",
        }
    }

    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let want = 2 + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape(self.kind(), format!("takes {want} inputs, got {}", inputs.len())));
        }
        check_f32(self.kind(), inputs)?;
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
        let (a, b) = (&l.inputs[0], &l.inputs[1]);
        let d = self.dims(a, b)?;
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
            n: d.n as u32,
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
            ..Default::default()
        };
        let (entry, tm, tn) = match self.kernel {
            MatmulKernel::Tuned => ("matmul", TILE_M, TILE_N),
            MatmulKernel::Naive => ("matmul_naive", NAIVE_TILE, NAIVE_TILE),
            MatmulKernel::Candidate(i) => CANDIDATES[i],
        };
        let shader: &'static ShaderSource = if entry.starts_with("mm_k1") { &SG_SHADER } else { &SHADER };
        // Without a bias the slot is bound to A (read-only, never read) so the layout stays the same.
        let bias = if self.has_bias { Bind::input(2, &l.inputs[2]) } else { Bind::input(0, a) };
        let bindings = vec![Bind::input(0, a), Bind::input(1, b), bias, Bind::output(l.output)];
        let max = l.limits.max_workgroups as u64;
        let gx = (d.n as u64).div_ceil(tn as u64);
        if gx > max {
            return Err(Error::shape(self.kind(), format!("N = {} needs more than {max} workgroups", d.n)));
        }
        let gy_total = (m as u64).div_ceil(tm as u64);
        let mut out = Vec::new();
        // Split rows and batches over several dispatches when the grid exceeds the device limit.
        for z0 in (0..batch as u64).step_by(max as usize) {
            let gz = (batch as u64 - z0).min(max);
            for y0 in (0..gy_total).step_by(max as usize) {
                let gy = (gy_total - y0).min(max);
                let p = Params { m0: (y0 * tm as u64) as u32, z0: z0 as u32, ..base };
                out.push(Dispatch {
                    shader,
                    entry,
                    params: params(&p),
                    bindings: bindings.clone(),
                    workgroups: [gx as u32, gy as u32, gz as u32],
                });
            }
        }
        Ok(out)
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
