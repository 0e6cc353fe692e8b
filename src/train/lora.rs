//! LoRA adapters for training: which layers get one, their rank and scale, and their starting values.
//! A LoRA layer computes `y = W·x + (alpha / rank) · B·(A·x)` with the base `W` frozen, `A` (`lora_A`,
//! `[rank, in]` or `[rank, in, k, k]`) and `B` (`lora_B`, `[out, rank]` or `[out, rank, 1, 1]`) trainable; it
//! is recorded as graph ops by `models::nn::Linear` / `Conv2d`, so the same layer serves training and
//! inference with an unmerged LoRA.
//!
//! Names follow peft as diffusers' DreamBooth LoRA script saves them: `<module path>.lora_A.weight`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::graph::{Graph, Param, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::kernels::matmul::MatmulOpts;
use crate::kernels::unary::Activation;
use crate::schedulers::noise::{NoiseSource, TorchCpuGenerator};

/// Which modules get a LoRA, and how.
#[derive(Clone, Debug)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    /// Module-name suffixes that get an adapter (`to_q`, `to_out.0`, `q_proj`, …): a module matches when its
    /// path ends with `.<suffix>`.
    pub targets: Vec<String>,
}

impl LoraSpec {
    /// diffusers' DreamBooth LoRA defaults for the UNet: the attention projections.
    pub fn unet_attention(rank: usize, alpha: f64) -> Self {
        LoraSpec { rank, alpha, targets: ["to_q", "to_k", "to_v", "to_out.0"].map(String::from).to_vec() }
    }
    /// The text encoder's attention projections (`--train_text_encoder` in the LoRA script).
    pub fn text_attention(rank: usize, alpha: f64) -> Self {
        LoraSpec { rank, alpha, targets: ["q_proj", "k_proj", "v_proj", "out_proj"].map(String::from).to_vec() }
    }
    pub fn scale(&self) -> f32 {
        (self.alpha / self.rank as f64) as f32
    }
    pub fn targets(&self, path: &str) -> bool {
        self.targets.iter().any(|t| path.ends_with(&format!(".{t}")) || path == t)
    }
}

/// What loading a model for training records: every weight it uploads (full fine-tuning trains them) and
/// the LoRA adapters it attaches. Shared by every [`Loader`](crate::models::nn::Loader) of one model.
pub struct TrainHooks {
    /// Prefix of the trainable tensors' names (`unet.`, `text_encoder.`), as the fixtures and peft name them.
    pub prefix: String,
    pub lora: Option<LoraSpec>,
    /// Starting values by name (`<prefix><module>.lora_A.weight`); adapters without one start as peft's
    /// `init_lora_weights="gaussian"`: A ~ N(0, 1/rank), B = 0.
    pub init: HashMap<String, Vec<f32>>,
    rng: Mutex<TorchCpuGenerator>,
    weights: Mutex<Vec<Arc<Param>>>,
    adapters: Mutex<Vec<Arc<Param>>>,
}

impl TrainHooks {
    pub fn new(prefix: &str, lora: Option<LoraSpec>, init: HashMap<String, Vec<f32>>, seed: u64) -> Self {
        TrainHooks {
            prefix: prefix.to_string(),
            lora,
            init,
            rng: Mutex::new(TorchCpuGenerator::new(seed)),
            weights: Mutex::new(Vec::new()),
            adapters: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn record_weight(&self, p: &Arc<Param>) {
        self.weights.lock().unwrap().push(p.clone());
    }

    /// Every base weight loaded, in load order (named by their checkpoint keys, without the prefix).
    pub fn weights(&self) -> Vec<Arc<Param>> {
        self.weights.lock().unwrap().clone()
    }

    /// Every LoRA tensor created, named `<prefix><module>.lora_{A,B}.weight`.
    pub fn adapters(&self) -> Vec<Arc<Param>> {
        self.adapters.lock().unwrap().clone()
    }

    /// The `(A, B)` tensors of a new adapter on module `path`, shaped `a_shape` / `b_shape`.
    pub(crate) fn make_adapter(
        &self,
        gpu: &crate::gpu::Gpu,
        path: &str,
        a_shape: &[usize],
        b_shape: &[usize],
    ) -> Result<(Arc<Param>, Arc<Param>)> {
        let spec = self.lora.as_ref().expect("only called for targeted modules");
        let make = |which: &str, shape: &[usize]| -> Result<Arc<Param>> {
            let name = format!("{}{path}.lora_{which}.weight", self.prefix);
            let n: usize = shape.iter().product();
            let data = match self.init.get(&name) {
                Some(v) if v.len() == n => v.clone(),
                Some(v) => {
                    return Err(Error::shape("lora", format!("'{name}': {} starting values for shape {shape:?}", v.len())));
                }
                None if which == "A" => {
                    let std = 1.0 / spec.rank as f32;
                    self.rng.lock().unwrap().randn(n)?.into_iter().map(|v| v * std).collect()
                }
                None => vec![0.0; n],
            };
            let p = Param::upload(gpu, &name, crate::tensor::TensorDesc::f32(shape), &data, false)?;
            self.adapters.lock().unwrap().push(p.clone());
            Ok(p)
        };
        Ok((make("A", a_shape)?, make("B", b_shape)?))
    }
}

impl Graph {
    /// A Linear layer with a LoRA: `act(x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ)` for `x: [..., in]`, `w: [out, in]`,
    /// `a: [rank, in]`, `b: [out, rank]`. Nodes: `<name>` (the frozen product), `<name>.lora_A`, `.lora_B`
    /// (scaled in its epilogue), `.lora` (the sum) and `.act` when there is an activation.
    #[allow(clippy::too_many_arguments)]
    pub fn lora_linear(&mut self, name: &str, x: TensorId, w: TensorId, bias: Option<TensorId>, a: TensorId, b: TensorId, scale: f32, act: Activation) -> Result<TensorId> {
        let y = self.matmul(name, x, w, MatmulOpts { trans_b: true, bias, ..Default::default() })?;
        let h = self.matmul(&format!("{name}.lora_A"), x, a, MatmulOpts { trans_b: true, ..Default::default() })?;
        let u = self.matmul(&format!("{name}.lora_B"), h, b, MatmulOpts { trans_b: true, alpha: scale, ..Default::default() })?;
        let y = self.add(&format!("{name}.lora"), y, u)?;
        if act == Activation::None {
            Ok(y)
        } else {
            self.activation(&format!("{name}.act"), y, act)
        }
    }

    /// A Conv2d with a LoCon adapter: `conv(x, W) + bias + residual + scale·B(A(x))`, `A` a k×k conv to
    /// `rank` channels with the layer's stride and padding, `B` a 1×1 conv; the adapter's output joins the
    /// residual fused into the frozen conv's epilogue.
    #[allow(clippy::too_many_arguments)]
    pub fn lora_conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        a: TensorId,
        b: TensorId,
        scale: f32,
        opts: Conv2dOpts,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let h = self.conv2d_auto(&format!("{name}.lora_A"), x, a, None, opts, None)?;
        let u = self.conv2d_auto(&format!("{name}.lora_B"), h, b, None, Conv2dOpts::new(1, 0), None)?;
        let u = self.scale(&format!("{name}.lora_scale"), u, scale, 0.0)?;
        let residual = match residual {
            Some(r) => self.add(&format!("{name}.lora_residual"), u, r)?,
            None => u,
        };
        self.conv2d_auto(name, x, w, bias, opts, Some(residual))
    }
}
