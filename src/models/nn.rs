//! The layers model code is written in, mirroring `torch.nn`: each loads its weights by diffusers key
//! through a [`Loader`] (which carries the module path, like `vb.pp("down_blocks").pp(0)`), and records its
//! op on a graph under that module path, so a debug dump names layers as diffusers does.

use std::fmt::Display;
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{Graph, Param, StoredBytes, TensorId};
use crate::kernels::conv2d::Conv2dOpts;
use crate::kernels::matmul::MatmulOpts;
use crate::kernels::unary::Activation;
use crate::models::weights::Weights;
use crate::precision::Precision;
use crate::tensor::{DType, TensorDesc};
use crate::timing::{timed, Phase};
use crate::train::lora::TrainHooks;

/// Loads weights under a module path and uploads them to the GPU.
#[derive(Clone)]
pub struct Loader<'a> {
    pub gpu: &'a Gpu,
    weights: &'a Weights,
    prefix: String,
    /// Set when loading for training: records the weights and attaches LoRA adapters.
    train: Option<&'a TrainHooks>,
    /// Storage of the Linear and Conv2d weights (see [`Loader::matrix`]).
    precision: Precision,
    /// In f32: Linear and Conv2d weights that the file stores in f16 stay f16 on the GPU (see
    /// [`Loader::keeping_stored_f16`]).
    keep_stored_f16: bool,
}

impl<'a> Loader<'a> {
    pub fn new(gpu: &'a Gpu, weights: &'a Weights) -> Self {
        Loader { gpu, weights, prefix: String::new(), train: None, precision: gpu.precision, keep_stored_f16: false }
    }

    /// The same loader with Linear and Conv2d weights stored in `p` (a VAE loads in `gpu.vae_precision`).
    pub fn with_precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }

    /// The same loader keeping f16-stored Linear and Conv2d weights (an fp16 variant file) in f16 when its
    /// precision is f32: the kernels widen them exactly and accumulate in f32, so the model computes what
    /// the widened f32 copy would, from half the memory and, on CPU adapters, fewer loaded words. Only for
    /// networks whose weights nothing changes after loading (a VAE: LoRAs merge into the UNet and text
    /// encoder, and an f16 weight would round the merged sum).
    pub fn keeping_stored_f16(mut self) -> Self {
        self.keep_stored_f16 = true;
        self
    }

    /// A loader for training (see [`TrainHooks`]): always f32, whatever the device's precision (the
    /// optimizer updates f32 weights, and the backward kernels take f32).
    pub fn for_training(gpu: &'a Gpu, weights: &'a Weights, hooks: &'a TrainHooks) -> Self {
        Loader { gpu, weights, prefix: String::new(), train: Some(hooks), precision: Precision::F32, keep_stored_f16: false }
    }

    /// The loader of a sub-module: `l.pp("down_blocks").pp(0)` loads `down_blocks.0.*`.
    pub fn pp(&self, name: impl Display) -> Loader<'a> {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Loader { prefix, ..self.clone() }
    }

    /// The LoRA `(A, B, scale)` for this module when training targets it; `a_shape`/`b_shape` are the
    /// adapter's tensor shapes.
    fn lora(&self, a_shape: &[usize], b_shape: &[usize]) -> Result<Option<Lora>> {
        match self.train {
            Some(h) if h.lora.as_ref().is_some_and(|s| s.targets(&self.prefix)) => {
                let scale = h.lora.as_ref().map(|s| s.scale()).unwrap_or(1.0);
                let (down, up) = h.make_adapter(self.gpu, &self.prefix, a_shape, b_shape)?;
                Ok(Some(Lora { down, up, scale }))
            }
            _ => Ok(None),
        }
    }

    fn rank(&self) -> usize {
        self.train.and_then(|h| h.lora.as_ref()).map(|s| s.rank).unwrap_or(0)
    }

    /// The module path (also the node name of the layer's op).
    pub fn path(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The weight `<path>.<name>` with shape `shape`, uploaded.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Arc<Param>> {
        let key = self.key(name);
        let (weights, kshape) = (self.weights.clone(), shape.to_vec());
        let reread =
            move |key: &str| timed(Phase::WeightRead, || Ok(Box::new(bytemuck::cast_slice(&weights.get(key, &kshape)?).to_vec()) as StoredBytes));
        let desc = TensorDesc::f32(shape);
        if self.waits_unread(&key, &desc)? {
            let name = key.clone();
            return Ok(Param::off_gpu(&name, desc, Box::new(move || reread(&key))));
        }
        let data = timed(Phase::WeightRead, || self.weights.get(&key, shape))?;
        self.place(key, desc, bytemuck::cast_slice(&data).to_vec(), reread)
    }

    /// Whether the weight `key` can wait off the GPU without being read now: while a network loads
    /// under `--low-vram` (not for training) it goes to the GPU only when the network first runs, and
    /// reads it then; reading it now as well pays off only where the read checks more than the file's
    /// header (narrowing to f16: see [`Weights::check_header`]). That halves what loading a model reads.
    fn waits_unread(&self, key: &str, desc: &TensorDesc) -> Result<bool> {
        if self.train.is_some() || !self.gpu.low_vram || !crate::graph::recording_params() {
            return Ok(false);
        }
        timed(Phase::WeightRead, || self.weights.check_header(key, &desc.shape, desc.dtype))
    }

    /// Puts a weight read as `bytes` on the GPU, where `reread` reads the same bytes again from its file:
    /// recorded for training (whose optimizer changes weights in place: never re-read); while a network
    /// loads under `--low-vram`, left off the GPU until the network first runs (the read checked it;
    /// uploading it now would only be undone); otherwise uploaded, re-readable should `--low-vram` move
    /// it out.
    fn place(
        &self,
        key: String,
        desc: TensorDesc,
        bytes: Vec<u8>,
        reread: impl Fn(&str) -> Result<StoredBytes> + Send + Sync + 'static,
    ) -> Result<Arc<Param>> {
        if let Some(h) = self.train {
            let p = Param::upload_bytes(self.gpu, &key, desc, &bytes, None);
            h.record_weight(&p);
            return Ok(p);
        }
        let name = key.clone();
        let reload: crate::graph::Reload = Box::new(move || reread(&key));
        if self.gpu.low_vram && crate::graph::recording_params() {
            return Ok(Param::off_gpu(&name, desc, reload));
        }
        let p = Param::upload_bytes(self.gpu, &name, desc, &bytes, None);
        p.set_reload(reload);
        Ok(p)
    }
}

impl Loader<'_> {
    /// A Linear or Conv2d weight `<path>.<name>`: stored in the loader's precision. These hold nearly
    /// all of a model's parameters; the small tensors ([`Loader::tensor`]) stay f32.
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Arc<Param>> {
        let key = self.key(name);
        // Stored in f16 (the header says so; a read would take it as it is): exact as f16.
        let stored_f16 = || timed(Phase::WeightRead, || self.weights.check_header(&key, shape, DType::F16));
        if self.precision == Precision::F32 && !(self.keep_stored_f16 && self.train.is_none() && stored_f16()?) {
            return self.tensor(name, shape);
        }
        let (weights, kshape) = (self.weights.clone(), shape.to_vec());
        let reread = move |key: &str| timed(Phase::WeightRead, || weights.get_f16_view(key, &kshape));
        let desc = TensorDesc::new(shape, DType::F16);
        if self.waits_unread(&key, &desc)? {
            let name = key.clone();
            return Ok(Param::off_gpu(&name, desc, Box::new(move || reread(&key))));
        }
        let bytes = timed(Phase::WeightRead, || self.weights.get_f16(&key, shape))?;
        self.place(key, desc, bytes, reread)
    }
}

/// A LoRA adapter on a layer: `scale · B·(A·x)` added to the layer's output.
pub struct Lora {
    /// `lora_A`: `[rank, in]` (Linear) or `[rank, in, k, k]` (Conv2d).
    pub down: Arc<Param>,
    /// `lora_B`: `[out, rank]` or `[out, rank, 1, 1]`.
    pub up: Arc<Param>,
    /// alpha / rank (times a user multiplier at inference).
    pub scale: f32,
}

/// `nn.Linear(in, out, bias)`.
pub struct Linear {
    pub weight: Arc<Param>,
    pub bias: Option<Arc<Param>>,
    pub lora: Option<Lora>,
    name: String,
}

impl Linear {
    pub fn load(l: &Loader, inp: usize, out: usize, bias: bool) -> Result<Linear> {
        let r = l.rank();
        Ok(Linear {
            weight: l.matrix("weight", &[out, inp])?,
            bias: if bias { Some(l.tensor("bias", &[out])?) } else { None },
            lora: l.lora(&[r, inp], &[out, r])?,
            name: l.path().to_string(),
        })
    }

    /// `act(x · Wᵀ + b)` for `x: [..., in]`, plus `scale · (x · Aᵀ) · Bᵀ` before the activation with a LoRA.
    pub fn forward_act(&self, g: &mut Graph, x: TensorId, act: Activation) -> Result<TensorId> {
        let w = g.param(&self.weight);
        let b = self.bias.as_ref().map(|b| g.param(b));
        let Some(lora) = &self.lora else {
            return g.matmul(&self.name, x, w, MatmulOpts { trans_b: true, bias: b, act, ..Default::default() });
        };
        let (a, up) = (g.param(&lora.down), g.param(&lora.up));
        g.lora_linear(&self.name, x, w, b, a, up, lora.scale, act)
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        self.forward_act(g, x, Activation::None)
    }

    /// diffusers' `GEGLU` around this projection: `hidden · gelu(gate)` of `[hidden, gate] = self(x)`, as
    /// one op (`Graph::linear_geglu`, inference only) unless a LoRA is attached; `geglu_name` names the
    /// GEGLU node of the two-op form.
    pub fn forward_geglu(&self, g: &mut Graph, x: TensorId, geglu_name: &str) -> Result<TensorId> {
        if self.lora.is_some() {
            let h = self.forward(g, x)?;
            return g.geglu(geglu_name, h);
        }
        let w = g.param(&self.weight);
        let b = self.bias.as_ref().map(|b| g.param(b));
        g.linear_geglu(&self.name, x, w, b)
    }

    /// Output features (rows of the `[out, in]` weight).
    pub fn out_features(&self) -> usize {
        self.weight.desc.shape[0]
    }
}

/// `nn.Conv2d(cin, cout, k, stride, padding)`, with a bias unless loaded without one.
pub struct Conv2d {
    pub weight: Arc<Param>,
    pub bias: Option<Arc<Param>>,
    pub opts: Conv2dOpts,
    /// LoCon: A a k×k conv to `rank` channels with this conv's stride and padding, B a 1×1 conv.
    pub lora: Option<Lora>,
    name: String,
}

impl Conv2d {
    pub fn load(l: &Loader, cin: usize, cout: usize, k: usize, opts: Conv2dOpts) -> Result<Conv2d> {
        Self::load_with_bias(l, cin, cout, k, opts, true)
    }

    /// `nn.Conv2d(..., bias=bias)`: without a bias no `<path>.bias` tensor is read.
    pub fn load_with_bias(l: &Loader, cin: usize, cout: usize, k: usize, opts: Conv2dOpts, bias: bool) -> Result<Conv2d> {
        let r = l.rank();
        Ok(Conv2d {
            weight: l.matrix("weight", &[cout, cin, k, k])?,
            bias: if bias { Some(l.tensor("bias", &[cout])?) } else { None },
            opts,
            lora: l.lora(&[r, cin, k, k], &[cout, r, 1, 1])?,
            name: l.path().to_string(),
        })
    }

    /// `conv(x) + bias (+ residual)`: the residual add is fused into the conv's epilogue, and so is a LoRA's
    /// `scale · B(A(x))`.
    pub fn forward(&self, g: &mut Graph, x: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
        self.forward_with(g, x, self.opts, residual)
    }

    /// `conv(upsample_nearest_2x(x)) + bias` as one op (diffusers' `Upsample2D`): the upsampled image is
    /// never built ([`Conv2dOpts::upsample2x`]).
    pub fn forward_upsampled(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        self.forward_with(g, x, Conv2dOpts { upsample2x: true, ..self.opts }, None)
    }

    fn forward_with(&self, g: &mut Graph, x: TensorId, opts: Conv2dOpts, residual: Option<TensorId>) -> Result<TensorId> {
        let w = g.param(&self.weight);
        let b = self.bias.as_ref().map(|b| g.param(b));
        match &self.lora {
            None => g.conv2d_auto(&self.name, x, w, b, opts, residual),
            Some(lora) => {
                let (a, up) = (g.param(&lora.down), g.param(&lora.up));
                g.lora_conv2d(&self.name, x, w, b, a, up, lora.scale, opts, residual)
            }
        }
    }
}

/// `nn.GroupNorm(groups, channels, eps)` with its affine weights; SiLU can be fused after it.
pub struct GroupNorm {
    pub weight: Arc<Param>,
    pub bias: Arc<Param>,
    pub groups: usize,
    pub eps: f32,
    /// Writes its output in f16 where planes allow (see [`GroupNorm::load_before_conv`]).
    f16_output: bool,
    name: String,
}

impl GroupNorm {
    pub fn load(l: &Loader, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
        Ok(GroupNorm {
            weight: l.tensor("weight", &[channels])?,
            bias: l.tensor("bias", &[channels])?,
            groups,
            eps: eps as f32,
            f16_output: false,
            name: l.path().to_string(),
        })
    }

    /// A GroupNorm whose only reader is a Conv2d: with `--f16-activations` in f16 precision (not
    /// training) it writes its output in f16, which the convolution widens as it reads, as it does its f16
    /// weights. On CPU adapters that makes the convolution 10-20 % faster (half the words loaded per
    /// window row); the output is the f32 result rounded once, an error of the f16 weights' size. Off by
    /// default: it fails the f16 image bar on the inpainting fixture (see README, Precision and memory).
    pub fn load_before_conv(l: &Loader, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
        let f16_output = l.gpu.f16_activations && l.precision == Precision::F16 && l.train.is_none();
        Ok(GroupNorm { f16_output, ..Self::load(l, groups, channels, eps)? })
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId, silu: bool) -> Result<TensorId> {
        let (w, b) = (g.param(&self.weight), g.param(&self.bias));
        let spatial: usize = g.shape(x).iter().skip(2).product();
        let out = if self.f16_output && spatial.is_multiple_of(4) { DType::F16 } else { DType::F32 };
        let act = if silu { Activation::Silu } else { Activation::None };
        g.group_norm_to(&self.name, x, self.groups, self.eps, Some(w), Some(b), act, out)
    }
}

/// `nn.LayerNorm(dim, eps)` over the last dimension.
pub struct LayerNorm {
    pub weight: Arc<Param>,
    pub bias: Arc<Param>,
    pub eps: f32,
    name: String,
}

impl LayerNorm {
    pub fn load(l: &Loader, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: l.tensor("weight", &[dim])?,
            bias: l.tensor("bias", &[dim])?,
            eps: eps as f32,
            name: l.path().to_string(),
        })
    }

    pub fn forward(&self, g: &mut Graph, x: TensorId) -> Result<TensorId> {
        let (w, b) = (g.param(&self.weight), g.param(&self.bias));
        g.layer_norm(&self.name, x, self.eps, Some(w), Some(b))
    }
}
