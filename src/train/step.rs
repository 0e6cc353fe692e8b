//! One training step as one plan: text encoder → UNet → weighted MSE → backward → gradient clipping, with
//! the AdamW update encoded after it in the same pass. Parameters, gradients and optimizer moments are
//! persistent buffers; the liveness planner decides which activations live until the backward reads them.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::autodiff::BackwardOpts;
use crate::graph::plan::{MemoryReport, Plan};
use crate::graph::{Graph, Param, TensorId};
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet2DConditionModel;
use crate::tensor::TensorDesc;
use crate::train::optimizer::{AdamW, AdamWConfig};

/// Shapes and switches of a step.
#[derive(Clone, Debug)]
pub struct StepConfig {
    /// Samples per step (instance and class images together).
    pub batch: usize,
    /// Latent channels, height and width.
    pub latent: [usize; 3],
    /// Token ids per prompt (77).
    pub seq: usize,
    /// `clip_grad_norm_`'s max norm.
    pub max_grad_norm: f32,
    /// Gradient checkpointing: recompute resnets and transformer blocks in the backward pass.
    pub recompute: bool,
    /// Micro-batches whose gradients are summed before each update (`--grad-accum`; the caller scales the
    /// loss weights by 1/k, as accelerate divides the loss).
    pub grad_accum: usize,
}

/// A trainable tensor and where its gradient lands.
pub struct Trainable {
    pub name: String,
    pub param: Arc<Param>,
    /// None when nothing this tensor feeds reaches the loss (PyTorch leaves `.grad` at None then). With
    /// gradient accumulation, the sum over the micro-batches so far.
    pub grad: Option<TensorId>,
    /// With gradient accumulation: the persistent input holding the earlier micro-batches' sum.
    accumulated: Option<TensorId>,
}

/// One step's inputs, as the host prepared them (see `train::batch`).
pub struct StepInputs<'a> {
    pub noisy: &'a [f32],
    pub timesteps: &'a [f32],
    pub input_ids: &'a [f32],
    pub target: &'a [f32],
    pub weights: &'a [f32],
}

/// What a step reports.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    pub loss: f32,
    /// Total gradient norm before clipping.
    pub grad_norm: f32,
}

/// Memory of a training step, split the way the benchmark reports it.
#[derive(Clone, Debug, Default)]
pub struct TrainMemory {
    pub weights: u64,
    /// The pooled intermediates: activations saved for the backward pass and the backward's temporaries.
    pub activations: u64,
    pub gradients: u64,
    pub optimizer: u64,
    /// Inputs, the loss and other small buffers.
    pub other: u64,
}

impl TrainMemory {
    pub fn peak(&self) -> u64 {
        self.weights + self.activations + self.gradients + self.optimizer + self.other
    }
}

pub struct TrainStep {
    plan: Plan,
    noisy: TensorId,
    timesteps: TensorId,
    ids: TensorId,
    target: TensorId,
    weights: TensorId,
    loss: TensorId,
    clip: TensorId,
    pub trainable: Vec<Trainable>,
    optimizer: Option<AdamW>,
}

impl TrainStep {
    /// Records and plans the step. `trainable` are the tensors to train, by name (LoRA adapters or model
    /// weights); `adamw` None plans the gradients only.
    pub fn new(
        gpu: Arc<Gpu>,
        unet: &UNet2DConditionModel,
        text: &ClipTextModel,
        trainable: Vec<(String, Arc<Param>)>,
        cfg: &StepConfig,
        adamw: Option<AdamWConfig>,
    ) -> Result<TrainStep> {
        let mut g = Graph::new();
        let b = cfg.batch;
        let [c, h, w] = cfg.latent;
        let ids = g.input("input_ids", TensorDesc::f32(&[b, cfg.seq]));
        let context = text.forward(&mut g, ids)?.last_hidden_state;
        let noisy = g.input("noisy_latents", TensorDesc::f32(&[b, c, h, w]));
        let timesteps = g.input("timesteps", TensorDesc::f32(&[b]));
        let pred = unet.forward(&mut g, noisy, timesteps, context)?;
        let target = g.input("target", TensorDesc::f32(&[b, c, h, w]));
        let weights = g.input("loss_weights", TensorDesc::f32(&[b]));
        let loss = g.mse_loss("loss", pred, target, weights)?;
        g.output(loss);

        let uses: Vec<Vec<TensorId>> = trainable.iter().map(|(_, p)| g.param_uses(p)).collect();
        let wrt: Vec<TensorId> = uses.iter().flatten().copied().collect();
        let grads = g.backward_with(loss, &wrt, BackwardOpts { recompute: cfg.recompute })?;
        if cfg.grad_accum == 0 {
            return Err(Error::usage("gradient accumulation needs at least 1 micro-batch per update"));
        }
        let mut out = Vec::new();
        for ((name, param), ts) in trainable.into_iter().zip(uses) {
            let mut total: Option<TensorId> = None;
            for t in ts {
                if let Some(gt) = grads.get(&g, t) {
                    total = Some(match total {
                        Some(prev) => g.add(&format!("{name}.grad_total"), prev, gt)?,
                        None => gt,
                    });
                }
            }
            // Accumulation: grad = earlier micro-batches' sum (a persistent input) + this one's.
            let mut accumulated = None;
            if let (Some(t), true) = (total, cfg.grad_accum > 1) {
                let acc = g.input(&format!("{name}.grad_accumulated"), param.desc.clone());
                total = Some(g.add(&format!("{name}.grad_accumulate"), acc, t)?);
                accumulated = Some(acc);
            }
            if let Some(t) = total {
                g.output(t);
            }
            out.push(Trainable { name, param, grad: total, accumulated });
        }
        let grad_list: Vec<TensorId> = out.iter().filter_map(|t| t.grad).collect();
        if grad_list.is_empty() {
            return Err(Error::usage("training: none of the trainable tensors reaches the loss"));
        }
        let clip = g.clip_coefficient("clip_grad_norm", &grad_list, cfg.max_grad_norm)?;
        g.output(clip);
        let plan = Plan::new(gpu.clone(), g)?;
        let optimizer = match adamw {
            Some(ac) => {
                let param_buffers: Vec<Option<wgpu::Buffer>> =
                    out.iter().map(|t| t.grad.map(|_| t.param.buffer()).transpose()).collect::<Result<_>>()?;
                let mut pairs: Vec<(&wgpu::Buffer, &wgpu::Buffer, usize)> = Vec::new();
                for (t, pb) in out.iter().zip(&param_buffers) {
                    if let (Some(gt), Some(pb)) = (t.grad, pb) {
                        pairs.push((pb, plan.buffer_of(gt)?, t.param.desc.numel()));
                    }
                }
                Some(AdamW::new(gpu.clone(), ac, &pairs, plan.buffer_of(clip)?)?)
            }
            None => None,
        };
        Ok(TrainStep { plan, noisy, timesteps, ids, target, weights, loss, clip, trainable: out, optimizer })
    }

    fn write_inputs(&self, x: &StepInputs) -> Result<()> {
        self.plan.write(self.noisy, x.noisy)?;
        self.plan.write(self.timesteps, x.timesteps)?;
        self.plan.write(self.ids, x.input_ids)?;
        self.plan.write(self.target, x.target)?;
        self.plan.write(self.weights, x.weights)
    }

    /// The loss and gradient norm, read back in the run's own encoder.
    fn report(values: Vec<Vec<f32>>) -> StepReport {
        StepReport { loss: values[0][0], grad_norm: values[1][0] }
    }

    /// Forward and backward only: the gradients stay readable through [`TrainStep::gradient`].
    pub fn gradients_only(&self, x: &StepInputs) -> Result<StepReport> {
        self.write_inputs(x)?;
        Ok(Self::report(self.plan.run_and_read(&[self.loss, self.clip])?))
    }

    /// A full step at learning rate `lr`: forward, backward, clipping and the AdamW update, one submit. With
    /// gradient accumulation this is the last micro-batch of the update ([`TrainStep::accumulate`] ran the
    /// others); the accumulated sums are cleared after it.
    pub fn step(&mut self, x: &StepInputs, lr: f64) -> Result<StepReport> {
        self.write_inputs(x)?;
        let opt = self.optimizer.as_mut().ok_or_else(|| Error::usage("this training step was planned without an optimizer"))?;
        opt.prepare(lr, &self.plan);
        let opt = self.optimizer.as_ref().expect("checked");
        let acc: Vec<&wgpu::Buffer> = self.trainable.iter().filter_map(|t| t.accumulated.map(|a| self.plan.buffer_of(a))).collect::<Result<_>>()?;
        let clear = |enc: &mut wgpu::CommandEncoder| {
            for b in &acc {
                enc.clear_buffer(b, 0, None);
            }
        };
        Ok(Self::report(self.plan.run_with(&|pass| opt.encode(pass), &clear, &[self.loss, self.clip])?))
    }

    /// A micro-batch that is not the last of an update: forward and backward, its gradients added to the
    /// accumulated sums, no update.
    pub fn accumulate(&mut self, x: &StepInputs) -> Result<StepReport> {
        self.write_inputs(x)?;
        let mut copies = Vec::new();
        for t in &self.trainable {
            if let (Some(acc), Some(total)) = (t.accumulated, t.grad) {
                copies.push((self.plan.buffer_of(total)?, self.plan.buffer_of(acc)?, t.param.desc.bytes()));
            }
        }
        if copies.is_empty() {
            return Err(Error::usage("this training step was planned without gradient accumulation"));
        }
        let accumulate = |enc: &mut wgpu::CommandEncoder| {
            for (from, to, bytes) in &copies {
                enc.copy_buffer_to_buffer(from, 0, to, 0, *bytes);
            }
        };
        Ok(Self::report(self.plan.run_with(&|_| {}, &accumulate, &[self.loss, self.clip])?))
    }

    /// The optimizer (its step count and moments, for checkpoints).
    pub fn optimizer(&self) -> Option<&AdamW> {
        self.optimizer.as_ref()
    }

    pub fn optimizer_mut(&mut self) -> Option<&mut AdamW> {
        self.optimizer.as_mut()
    }

    /// The last run's gradient of trainable tensor `i` (zeros when it has none).
    pub fn gradient(&self, i: usize) -> Result<Vec<f32>> {
        let t = &self.trainable[i];
        match t.grad {
            Some(gt) => self.plan.read(gt),
            None => Ok(vec![0.0; t.param.desc.numel()]),
        }
    }

    pub fn plan_graph(&self) -> &Graph {
        self.plan.graph()
    }

    /// The planned step (profiling, debugging).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn plan_memory(&self) -> &MemoryReport {
        self.plan.memory()
    }

    /// Memory split into weights, activations, gradients and optimizer state.
    pub fn memory(&self) -> TrainMemory {
        let m = self.plan.memory();
        let gradients: u64 = self.trainable.iter().filter(|t| t.grad.is_some()).map(|t| t.param.desc.bytes()).sum();
        TrainMemory {
            weights: m.params,
            activations: m.intermediates,
            gradients,
            optimizer: self.optimizer.as_ref().map_or(0, |o| o.state_bytes()),
            other: m.inputs_outputs.saturating_sub(gradients) + m.uniforms,
        }
    }
}
