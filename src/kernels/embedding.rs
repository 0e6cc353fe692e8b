//! Sinusoidal timestep embedding (`shaders/embedding.wgsl`), diffusers' `get_timestep_embedding`:
//! `exponent = -ln(max_period) * arange(half) / (half - shift)`, `emb = t[:, None] * exp(exponent)`,
//! `emb = scale * emb`, `[sin, cos]` (or `[cos, sin]` with `flip_sin_to_cos`), zero-padded to an odd `dim`.

use bytemuck::{Pod, Zeroable};

use super::{shader, ShaderSource};
use crate::error::{Error, Result};
use crate::graph::op::{params, Bind, Dispatch, Lowering, Op};
use crate::graph::{Graph, TensorId};
use crate::tensor::{DType, TensorDesc};

pub static SHADER: ShaderSource = shader!("embedding");

#[derive(Clone, Debug)]
pub struct TimestepEmbedding {
    pub dim: usize,
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f32,
    pub scale: f32,
    pub max_period: f32,
}

impl TimestepEmbedding {
    /// diffusers' defaults for `Timesteps(dim, flip_sin_to_cos, freq_shift)`.
    pub fn new(dim: usize, flip_sin_to_cos: bool, downscale_freq_shift: f32) -> Self {
        TimestepEmbedding { dim, flip_sin_to_cos, downscale_freq_shift, scale: 1.0, max_period: 10000.0 }
    }

    /// The frequency table, in f32 with PyTorch's order of operations (so it matches bit for bit).
    pub fn freqs(&self) -> Vec<f32> {
        let half = self.dim / 2;
        let ln = -(self.max_period as f64).ln() as f32;
        (0..half)
            .map(|j| {
                let e = (ln * j as f32) / (half as f32 - self.downscale_freq_shift);
                (e as f64).exp() as f32
            })
            .collect()
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    dim: u32,
    half: u32,
    flip: u32,
    scale: f32,
    _pad: [u32; 3],
}

impl Op for TimestepEmbedding {
    fn kind(&self) -> &'static str {
        "timestep_embedding"
    }
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let (t, f) = (inputs[0], inputs[1]);
        if t.dtype != DType::F32 {
            return Err(Error::DType { op: self.kind().into(), msg: format!("timesteps are {t}; expected f32") });
        }
        if t.rank() != 1 || f.shape != [self.dim / 2] || self.dim < 2 {
            return Err(Error::shape(self.kind(), format!("expects timesteps [B] and {} frequencies, got {t} and {f}", self.dim / 2)));
        }
        Ok(TensorDesc::f32(&[t.shape[0], self.dim]))
    }
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>> {
        let batch = l.inputs[0].shape[0];
        let p = Params {
            batch: batch as u32,
            dim: self.dim as u32,
            half: (self.dim / 2) as u32,
            flip: self.flip_sin_to_cos as u32,
            scale: self.scale,
            _pad: [0; 3],
        };
        Ok(vec![Dispatch {
            shader: &SHADER,
            entry: "timestep_embedding",
            params: params(&p),
            bindings: vec![Bind::input(0, &l.inputs[0]), Bind::input(1, &l.inputs[1]), Bind::output(l.output)],
            workgroups: [((batch * self.dim) as u32).div_ceil(64), 1, 1],
            constants: Vec::new(),
        }])
    }
    fn cpu(&self, inputs: &[&[f32]], _: &[&TensorDesc], _: &TensorDesc) -> Vec<f32> {
        let (ts, freqs) = (inputs[0], inputs[1]);
        let half = self.dim / 2;
        let mut out = Vec::with_capacity(ts.len() * self.dim);
        for &t in ts {
            let args: Vec<f64> = freqs.iter().map(|f| (self.scale * (t * f)) as f64).collect();
            let sin = args.iter().map(|a| a.sin() as f32);
            let cos = args.iter().map(|a| a.cos() as f32);
            if self.flip_sin_to_cos {
                out.extend(cos.chain(sin));
            } else {
                out.extend(sin.chain(cos));
            }
            out.extend(std::iter::repeat_n(0.0, self.dim - 2 * half));
        }
        out
    }
}

impl Graph {
    /// Embeds timesteps `[B]` into `[B, dim]` (the frequency table becomes a plan constant).
    pub fn timestep_embedding(&mut self, name: &str, t: TensorId, emb: TimestepEmbedding) -> Result<TensorId> {
        let freqs = emb.freqs();
        let f = self.constant(&format!("{name}.freqs"), TensorDesc::f32(&[freqs.len()]), freqs)?;
        self.op(name, emb, &[t, f])
    }
}
