//! The contract between the graph and the kernels. An [`Op`] validates its inputs when it is recorded,
//! lowers itself to GPU [`Dispatch`]es when a plan is built, and has a CPU twin that computes the same
//! thing with plain loops for the tests.

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::kernels::weight_storage::TEXEL_ROW;
use crate::kernels::ShaderSource;
use crate::tensor::TensorDesc;

/// The device limits that decide how an op is split into dispatches. Plain data, so ops can be lowered
/// (and their splitting tested) without a GPU.
#[derive(Clone, Debug)]
pub struct DeviceLimits {
    /// Largest range one storage binding may cover (`max_storage_buffer_binding_size`).
    pub max_binding: u64,
    /// Binding offsets must be multiples of this (`min_storage_buffer_offset_alignment`).
    pub offset_align: u64,
    /// `max_compute_workgroups_per_dimension`.
    pub max_workgroups: u32,
    /// Smallest subgroup size compute shaders may run with, or 0 when the device has no subgroup
    /// operations. Kernels use their subgroup variants only when this is at least what they assume.
    pub subgroup_min_size: u32,
    /// The adapter runs shaders on the CPU (lavapipe, WARP, SwiftShader): there a memory access costs far
    /// more than arithmetic, so kernels choose larger register tiles than suit a GPU's register file.
    pub cpu: bool,
    /// Kernels that read their large inputs through textures may (CPU adapters: see
    /// `kernels/weight_storage.rs`): the executor copies such a binding's range into a texture before the
    /// dispatch. Needs storage offsets that keep texels (16 bytes) aligned.
    pub texture_reads: bool,
    /// Rows a texture may have (`max_texture_dimension_2d`): a texture-read binding covers at most this many
    /// rows of [`TEXEL_ROW`] texels.
    pub max_texture_rows: u64,
    /// Most bytes of one tensor a dispatch reads through a scratch texture where the op can split its
    /// work ([`TEXTURE_WINDOW_BYTES`] unless a test lowers it).
    pub texture_window: u64,
    /// How plans compute 3×3 convolutions ([`Gpu::conv_algorithm`](crate::gpu::Gpu::conv_algorithm)).
    pub conv: ConvAlgorithm,
}

/// How a plan computes the 3×3, stride-1 convolutions the Winograd kernels can take
/// (`kernels/winograd.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAlgorithm {
    /// Winograd where it was measured faster (CPU adapters, images from 32×32), direct kernels elsewhere.
    #[default]
    Auto,
    /// Always the direct (or im2col) kernels.
    Direct,
    /// Winograd wherever the shape allows.
    Winograd,
}

impl ConvAlgorithm {
    /// `WGSD_CONV=auto|direct|winograd` (benchmarks and tests compare the forms with it).
    pub fn from_env() -> ConvAlgorithm {
        match std::env::var("WGSD_CONV").as_deref() {
            Ok("direct") => ConvAlgorithm::Direct,
            Ok("winograd") => ConvAlgorithm::Winograd,
            Ok("auto") | Err(_) => ConvAlgorithm::Auto,
            Ok(other) => {
                eprintln!("wgsd: WGSD_CONV={other} is not auto, direct or winograd; using auto");
                ConvAlgorithm::Auto
            }
        }
    }
}

impl DeviceLimits {
    /// Limits alone: no subgroups, GPU-style tiles.
    pub fn from_wgpu(l: &wgpu::Limits) -> Self {
        DeviceLimits {
            max_binding: l.max_storage_buffer_binding_size,
            offset_align: l.min_storage_buffer_offset_alignment as u64,
            max_workgroups: l.max_compute_workgroups_per_dimension,
            subgroup_min_size: 0,
            cpu: false,
            texture_reads: false,
            max_texture_rows: l.max_texture_dimension_2d as u64,
            texture_window: TEXTURE_WINDOW_BYTES,
            conv: ConvAlgorithm::Auto,
        }
    }

    /// Limits and the kernel-relevant facts of an open device.
    pub fn from_gpu(gpu: &crate::gpu::Gpu) -> Self {
        let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu && !gpu.gpu_style_kernels;
        let offsets_keep_texels = (gpu.limits.min_storage_buffer_offset_alignment as u64).is_multiple_of(16);
        DeviceLimits {
            subgroup_min_size: if gpu.caps.subgroups { gpu.info.subgroup_min_size } else { 0 },
            cpu,
            texture_reads: cpu && !gpu.buffer_reads_only && offsets_keep_texels,
            conv: gpu.conv_algorithm,
            texture_window: gpu.texture_window,
            ..Self::from_wgpu(&gpu.limits)
        }
    }

    /// Whether `bind`, a range of `dtype` values, can be read through a texture: the adapter reads
    /// textures, the range starts on a whole texel and fits the texture's rows.
    pub fn texture_fits(&self, bind: &Bind, dtype: crate::tensor::DType) -> bool {
        let texel = crate::gpu::Texels::of(dtype).bytes();
        self.texture_reads
            && bind.offset.is_multiple_of(texel)
            && bind.size.div_ceil(texel).div_ceil(TEXEL_ROW as u64) <= self.max_texture_rows
    }

    /// Marks `bindings[i]` (holding `dtype` values) for every `(i, dtype)` of `reads` as read through a
    /// texture when all of them can be ([`DeviceLimits::texture_fits`]), and says whether it did: the
    /// op then dispatches its `texture_reads` shader variant, which declares exactly those bindings as
    /// textures.
    pub fn read_through_textures(&self, bindings: &mut [Bind], reads: &[(usize, crate::tensor::DType)]) -> bool {
        let all = reads.iter().all(|&(i, dt)| self.texture_fits(&bindings[i], dt));
        if all {
            for &(i, _) in reads {
                bindings[i].texture = true;
            }
        }
        all
    }
}

/// What an op sees when it is lowered: its concrete input and output descriptions and the limits.
pub struct Lowering<'a> {
    pub inputs: &'a [TensorDesc],
    pub output: &'a TensorDesc,
    pub limits: &'a DeviceLimits,
}

/// Which tensor of the node a binding refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Input(usize),
    Output,
}

/// One storage binding: a byte range of one of the node's tensors.
#[derive(Clone, Debug)]
pub struct Bind {
    pub slot: Slot,
    pub offset: u64,
    pub size: u64,
    pub writable: bool,
    /// Read through a texture the executor fills with this range before the dispatch (the shader's
    /// `texture_reads` variant declares the binding as a read-only storage texture).
    pub texture: bool,
}

impl Bind {
    /// The whole of input `i` (in whole 4-byte words: an odd count of f16 values ends in a padding half).
    pub fn input(i: usize, desc: &TensorDesc) -> Bind {
        Bind { slot: Slot::Input(i), offset: 0, size: desc.bytes().next_multiple_of(4), writable: false, texture: false }
    }
    /// The whole output.
    pub fn output(desc: &TensorDesc) -> Bind {
        Bind { slot: Slot::Output, offset: 0, size: desc.bytes().next_multiple_of(4), writable: true, texture: false }
    }
    /// Elements `[begin, begin + count)` of a tensor. Binding offsets must be aligned, so the binding may
    /// start a few elements early: the returned shift is the index of element `begin` inside the binding,
    /// which the kernel adds to its indices.
    pub fn elements(slot: Slot, desc: &TensorDesc, begin: u64, count: u64, limits: &DeviceLimits) -> (Bind, u32) {
        let es = desc.dtype.size_bytes();
        let start = begin * es;
        let aligned = start / limits.offset_align * limits.offset_align;
        let shift = ((start - aligned) / es) as u32;
        let end = ((begin + count) * es).next_multiple_of(4).min(desc.bytes().next_multiple_of(4));
        let bind = Bind { slot, offset: aligned, size: end - aligned, writable: slot == Slot::Output, texture: false };
        (bind, shift)
    }
}

/// One compute dispatch: an entry point of a shader family, its uniform parameters (binding 0), its storage
/// bindings (1, 2, ... in order) and the workgroup grid.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub shader: &'static ShaderSource,
    pub entry: &'static str,
    pub params: Vec<u8>,
    pub bindings: Vec<Bind>,
    pub workgroups: [u32; 3],
    /// Values for the shader's pipeline-overridable constants (WGSL `override`), fixed when its pipeline is
    /// created: e.g. `ACT` of activations.wgsl. Each distinct set is its own pipeline.
    pub constants: Vec<(&'static str, u32)>,
}

/// What an op's backward rule is given (see [`Op::backward`]).
pub struct BackwardCtx<'a> {
    /// The forward node's name; backward nodes are named `<name>.grad_<what>`.
    pub name: &'a str,
    /// The forward node's inputs and output (still alive: the liveness planner keeps what backward reads).
    pub inputs: &'a [TensorId],
    pub output: TensorId,
    /// Gradient of the loss with respect to the output, same shape as the output.
    pub dy: TensorId,
    /// Which inputs want a gradient. Rules compute only those and return `None` for the others.
    pub need: &'a [bool],
}

impl BackwardCtx<'_> {
    /// Node name for a backward node of this op.
    pub fn node(&self, what: &str) -> String {
        format!("{}.grad_{what}", self.name)
    }
}

/// Gives every op an `&dyn Any`, so a pass over the graph can recognise an op it rewrites ([`downcast`]).
pub trait AsAny {
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `op` as the concrete op `T`, if it is one.
pub fn downcast<T: 'static>(op: &dyn Op) -> Option<&T> {
    <dyn Op as AsAny>::as_any(op).downcast_ref::<T>()
}

/// A kernel as the graph sees it.
pub trait Op: Send + Sync + AsAny {
    /// Short name used in errors, debug dumps and benchmarks ("conv2d", "group_norm", ...).
    fn kind(&self) -> &'static str;

    /// Checks the inputs (count, shapes, dtypes) and returns the output description. Called at record time,
    /// so a mistake in model code is reported where it was made.
    fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc>;

    /// The dispatches that compute the output, split as the limits require.
    fn lower(&self, l: &Lowering) -> Result<Vec<Dispatch>>;

    /// The CPU twin: the same result from plain loops over host data (f32 values, row-major).
    fn cpu(&self, inputs: &[&[f32]], descs: &[&TensorDesc], out: &TensorDesc) -> Vec<f32>;

    /// Floating-point operations (multiply-add = 2) for benchmarks.
    fn flops(&self, _inputs: &[&TensorDesc], _out: &TensorDesc) -> f64 {
        0.0
    }

    /// Bytes a perfect kernel must move: every input read once and the output written once.
    fn bytes(&self, inputs: &[&TensorDesc], out: &TensorDesc) -> f64 {
        (inputs.iter().map(|d| d.bytes()).sum::<u64>() + out.bytes()) as f64
    }

    /// An equivalent subgraph for this device, recorded on `g` from the node's `inputs`, whose last node
    /// writes the returned tensor (same description as this op's output); `None` (the default) lowers this
    /// op itself. Plans expand every node before lowering (`Graph::expanded`), so the recorded graph keeps
    /// the op — its CPU twin and backward rule — while the device computes it another way (a 3×3 conv as
    /// Winograd transforms around a GEMM).
    fn expand(&self, _g: &mut Graph, _name: &str, _inputs: &[TensorId], _limits: &DeviceLimits) -> Result<Option<TensorId>> {
        Ok(None)
    }

    /// The reverse-mode rule: records on `g` the ops that compute the gradient of every input `c.need`s from
    /// `c.dy`, and returns them (one entry per input, `None` where not needed or zero by the maths). The
    /// returned gradients have their inputs' shapes. Ops without a rule refuse by name.
    fn backward(&self, _g: &mut Graph, c: &BackwardCtx) -> Result<Vec<Option<TensorId>>> {
        Err(Error::usage(format!("op {} ('{}') has no backward rule: it cannot sit between a trainable tensor and the loss", self.kind(), c.name)))
    }
}

/// Number of workgroups to cover `n` items with `per_group` items each.
pub fn groups_for(n: u64, per_group: u64) -> u64 {
    n.div_ceil(per_group)
}

/// Spreads a 1-D count of workgroups over x and y so no dimension exceeds the limit. Shaders rebuild the
/// linear index as `wg.x + wg.y * nwg.x` and ignore indices past the end.
pub fn grid_1d(groups: u64, limits: &DeviceLimits) -> [u32; 3] {
    let max = limits.max_workgroups as u64;
    if groups <= max {
        [groups.max(1) as u32, 1, 1]
    } else {
        [max as u32, groups.div_ceil(max) as u32, 1]
    }
}

/// Parameters as the bytes of a `#[repr(C)]` struct.
pub fn params<T: bytemuck::Pod>(p: &T) -> Vec<u8> {
    bytemuck::bytes_of(p).to_vec()
}

/// Largest element count of one binding whose start may have to move back by up to `offset_align` bytes.
pub fn max_binding_elems(limits: &DeviceLimits, dtype: crate::tensor::DType) -> u64 {
    (limits.max_binding - limits.offset_align) / dtype.size_bytes()
}

/// How many whole units of `unit_elems` elements one binding may hold when it starts at a unit boundary.
/// Every tensor starts at an offset the storage alignment divides (the planner packs intermediates at
/// multiples of 256 bytes, the largest alignment WebGPU allows; weights and owned buffers start at 0), so
/// where a unit's bytes are a multiple of the alignment, every chunk of whole units starts aligned and may
/// fill the whole binding limit: a 128 MiB activation binds whole on a 128 MiB limit instead of being split
/// (splitting a convolution's input channels costs an accumulation pass). Otherwise the start may have to
/// move back by up to `offset_align` bytes.
pub fn max_units_per_binding(limits: &DeviceLimits, unit_elems: u64, dtype: crate::tensor::DType) -> u64 {
    let unit = unit_elems.max(1) * dtype.size_bytes();
    if unit.is_multiple_of(limits.offset_align) {
        limits.max_binding / unit
    } else {
        (limits.max_binding - limits.offset_align) / unit
    }
}

/// Most bytes of one tensor a dispatch reads through a scratch texture, where ops can split their work by
/// rows or batches: every op reading the same binding slot shares one scratch texture per format, so its
/// largest window sets that texture's size (without windows, the UNet's Winograd GEMMs made two of them
/// 57 and 68 MiB).
pub const TEXTURE_WINDOW_BYTES: u64 = 16 << 20;

/// Splits `[0, n)` into `(begin, count)` chunks of at most `cap` items, `cap` rounded down to a multiple of
/// `quantum` (so chunks stay aligned to whole rows, channels, ...).
pub fn chunks(n: u64, cap: u64, quantum: u64) -> Vec<(u64, u64)> {
    let step = (cap / quantum * quantum).max(quantum);
    (0..n.div_ceil(step)).map(|k| (k * step, step.min(n - k * step))).collect()
}
