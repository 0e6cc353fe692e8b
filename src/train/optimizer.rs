//! torch.optim.AdamW on the GPU (`shaders/optimizer.wgsl`), with its CPU twin. The moments are persistent
//! buffers, one pair per trainable tensor; the update reads each gradient where the training plan left it
//! and the clipping coefficient the plan computed, so a whole step is one submit.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{BindKind, Gpu, Pipeline};
use crate::graph::op::{grid_1d, DeviceLimits};
use crate::kernels::{shader, ShaderSource};

pub static SHADER: ShaderSource = shader!("optimizer");

/// AdamW settings (PyTorch's names and the DreamBooth scripts' defaults).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct Hyper {
    decay: f32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    /// 1 − β1 and 1 − β2 computed in f64: in f32, 1 − 0.999f32 is 4.7e-5 off 0.001.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
}

impl Hyper {
    /// Step `t` (1-based) at learning rate `lr`; the bias corrections in f64 as PyTorch computes them in Python.
    fn new(c: &AdamWConfig, lr: f64, t: u64) -> Hyper {
        Hyper {
            decay: (1.0 - lr * c.weight_decay) as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            step_size: (lr / (1.0 - c.beta1.powi(t as i32))) as f32,
            bc2_sqrt: (1.0 - c.beta2.powi(t as i32)).sqrt() as f32,
            eps: c.eps as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
        }
    }
}

fn whole(b: &wgpu::Buffer, bytes: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b, offset: 0, size: std::num::NonZeroU64::new(bytes) })
}

/// One trainable tensor's update: its dispatch, and its moment buffers.
struct Slot {
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    numel: usize,
}

/// AdamW over a set of (parameter, gradient) buffer pairs.
pub struct AdamW {
    gpu: Arc<Gpu>,
    pub config: AdamWConfig,
    pipeline: Arc<Pipeline>,
    hyper: wgpu::Buffer,
    slots: Vec<Slot>,
    /// Steps taken (PyTorch's `state["step"]`).
    pub step: u64,
}

impl AdamW {
    /// Zero moments for every `(param, grad, numel)`; `clip` is the `[norm, coef]` buffer of
    /// [`Graph::clip_coefficient`](crate::graph::Graph::clip_coefficient).
    pub fn new(gpu: Arc<Gpu>, config: AdamWConfig, tensors: &[(&wgpu::Buffer, &wgpu::Buffer, usize)], clip: &wgpu::Buffer) -> Result<AdamW> {
        let pipeline = gpu.pipeline(&SHADER, "adamw", &[BindKind::Write, BindKind::Read, BindKind::Write, BindKind::Write, BindKind::Read], &[])?;
        let hyper = gpu.upload("adamw.hyper", bytemuck::bytes_of(&Hyper::default()), wgpu::BufferUsages::UNIFORM);
        let limits = DeviceLimits::from_gpu(&gpu);
        let mut slots = Vec::new();
        for &(p, g, numel) in tensors {
            let zeros = vec![0u8; numel * 4];
            let m = gpu.upload("adamw.m", &zeros, wgpu::BufferUsages::empty());
            let v = gpu.upload("adamw.v", &zeros, wgpu::BufferUsages::empty());
            let bytes = numel as u64 * 4;
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("adamw"),
                layout: &pipeline.layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: hyper.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: whole(p, bytes) },
                    wgpu::BindGroupEntry { binding: 2, resource: whole(g, bytes) },
                    wgpu::BindGroupEntry { binding: 3, resource: whole(&m, bytes) },
                    wgpu::BindGroupEntry { binding: 4, resource: whole(&v, bytes) },
                    wgpu::BindGroupEntry { binding: 5, resource: whole(clip, 8) },
                ],
            });
            slots.push(Slot { bind_group, workgroups: grid_1d((numel as u64).div_ceil(256), &limits), m, v, numel });
        }
        Ok(AdamW { gpu, config, pipeline, hyper, slots, step: 0 })
    }

    /// Bytes of optimizer state (both moments of every tensor).
    pub fn state_bytes(&self) -> u64 {
        self.slots.iter().map(|s| 8 * s.numel as u64).sum()
    }

    /// Advances the step counter and writes this step's scalars through `plan`, the plan whose next run
    /// encodes the update.
    pub fn prepare(&mut self, lr: f64, plan: &crate::graph::plan::Plan) {
        self.step += 1;
        let h = Hyper::new(&self.config, lr, self.step);
        plan.write_buffer(&self.hyper, 0, bytemuck::bytes_of(&h));
    }

    /// Encodes the update of every tensor.
    pub fn encode(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(&self.pipeline.pipeline);
        for s in &self.slots {
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
        }
    }

    /// Moments of tensor `i` (for checkpoints and tests).
    pub fn moments(&self, i: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let s = &self.slots[i];
        let m = self.gpu.read_bytes(&s.m, 0, s.numel as u64 * 4)?;
        let v = self.gpu.read_bytes(&s.v, 0, s.numel as u64 * 4)?;
        Ok((bytemuck::pod_collect_to_vec(&m), bytemuck::pod_collect_to_vec(&v)))
    }

    /// Restores tensor `i`'s moments (resuming from a checkpoint).
    pub fn set_moments(&self, i: usize, m: &[f32], v: &[f32]) {
        let s = &self.slots[i];
        self.gpu.queue.write_buffer(&s.m, 0, bytemuck::cast_slice(m));
        self.gpu.queue.write_buffer(&s.v, 0, bytemuck::cast_slice(v));
    }
}

#[allow(clippy::too_many_arguments)] // PyTorch's own argument list: settings, step scalars, four tensors
/// The CPU twin of one AdamW step (step `t`, 1-based) on one tensor, in f64 like PyTorch's float64 runs.
pub fn adamw_cpu(c: &AdamWConfig, lr: f64, t: u64, coef: f64, p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
    let bc1 = 1.0 - c.beta1.powi(t as i32);
    let bc2 = 1.0 - c.beta2.powi(t as i32);
    for i in 0..p.len() {
        let gi = g[i] * coef;
        p[i] *= 1.0 - lr * c.weight_decay;
        m[i] += (1.0 - c.beta1) * (gi - m[i]);
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
        p[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + c.eps);
    }
}
