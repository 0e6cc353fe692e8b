//! diffusers' `GEGLU` module as one op: `hidden · gelu(gate)` where `[hidden, gate] = x · Wᵀ + b` splits
//! the projection's `2F` outputs in halves (`BasicTransformerBlock`'s `ff.net.0`).
//!
//! On CPU adapters with the subgroup kernels it is one dispatch, `matmul_bcast_k4_geglu`
//! (`shaders/matmul_subgroup.wgsl`): each lane multiplies 4 hidden and the 4 matching gate columns and
//! stores only the F results, so the `2F`-wide projection is never written nor read back by a separate
//! GEGLU pass — at 512² the UNet's largest intermediate (2 × 4096 × 2560 floats per 64×64 block). Elsewhere
//! (GPUs, odd sizes, a weight larger than one texture window) the plan [expands](Op::expand) it into the
//! product and the `geglu` op, which compute the same values: the fused epilogue does the same f32
//! operations in the same order, so both forms give bit-identical results.
//!
//! Inference only: there is no backward rule (training records the product and `geglu`, whose gradients
//! need the projection anyway).

use super::matmul::{Matmul, MatmulKernel, MatmulOpts};
use super::unary::{cpu_geglu, Activation};
use super::check_f32;
use crate::error::{Error, Result};
use crate::graph::op::{DeviceLimits, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

/// The fused op. Inputs: `x [..., K]`, the projection weight `W [2F, K]` (f32 or f16) and, when
/// `has_bias`, its bias `[2F]`; output `[..., F]`.
#[derive(Clone, Debug)]
pub struct LinearGeglu {
    pub has_bias: bool,
}

impl LinearGeglu {
    /// The product it contains, as the plain matmul op computes it.
    fn product(&self) -> Matmul {
        Matmul { trans_a: false, trans_b: true, has_bias: self.has_bias, act: Activation::None, alpha: 1.0, kernel: MatmulKernel::Tuned }
    }

    /// Whether `matmul_bcast_k4_geglu` computes it on this device: the subgroup kernels (CPU adapters with
    /// subgroups of 8 or more), K and F multiples of 4, and a weight that fits one texture window where the
    /// kernels read through textures.
    fn fused_here(w: &TensorDesc, l: &DeviceLimits) -> bool {
        let (k, f) = (w.shape[1], w.shape[0] / 2);
        MatmulKernel::Tuned.resolve(l) == MatmulKernel::Broadcast
            && k % 4 == 0
            && f % 4 == 0
            && (!l.texture_reads || w.bytes() <= l.texture_window)
    }
}

impl Op for LinearGeglu {
    fn kind(&self) -> &'static str {
        "linear_geglu"
    }

    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let want = 2 + self.has_bias as usize;
        if inputs.len() != want {
            return Err(Error::shape(self.kind(), format!("takes {want} inputs, got {}", inputs.len())));
        }
        let (x, w) = (inputs[0], inputs[1]);
        check_f32(self.kind(), &[x])?;
        check_f32(self.kind(), &inputs[2..])?;
        if !matches!(w.dtype, DType::F32 | DType::F16) {
            return Err(Error::DType { op: self.kind().into(), msg: format!("W is {w}; this kernel takes f32 or f16") });
        }
        if x.rank() < 2 || w.rank() != 2 || x.dim(-1) != w.shape[1] || w.shape[0] % 2 != 0 {
            return Err(Error::shape(self.kind(), format!("needs x [..., K] and W [2F, K], got x {x} and W {w}")));
        }
        if self.has_bias && inputs[2].shape != [w.shape[0]] {
            return Err(Error::shape(self.kind(), format!("bias {} must be [{}]", inputs[2], w.shape[0])));
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank ≥ 2") = w.shape[0] / 2;
        Ok(TensorDesc::f32(&shape))
    }

    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        self.product().lower_product(l, true)
    }

    fn expand(&self, g: &mut Graph, name: &str, inputs: &[TensorId], limits: &DeviceLimits) -> Result<Option<TensorId>> {
        if Self::fused_here(g.desc(inputs[1]), limits) {
            return Ok(None);
        }
        let opts = MatmulOpts { trans_b: true, bias: inputs.get(2).copied(), ..Default::default() };
        let h = g.matmul(&format!("{name}.product"), inputs[0], inputs[1], opts)?;
        Ok(Some(g.geglu(name, h)?))
    }

    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32> {
        let h = self.product().cpu(inputs, descs, out);
        cpu_geglu(&h, out.dim(-1))
    }

    fn flops(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        self.product().flops(inputs, out)
    }
}

impl Graph {
    /// diffusers' `GEGLU`: `hidden · gelu(gate)` of `[hidden, gate] = x · weightᵀ + bias`, for `x: [..., K]`,
    /// `weight: [2F, K]`, `bias: [2F]`; one op (see [`LinearGeglu`]). Inference only.
    pub fn linear_geglu(&mut self, name: &str, x: TensorId, weight: TensorId, bias: Option<TensorId>) -> Result<TensorId> {
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        self.op(name, LinearGeglu { has_bias: bias.is_some() }, &inputs)
    }
}
