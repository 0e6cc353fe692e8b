//! The device layer: picks an adapter, opens a device with the adapter's real limits, and caches shader
//! modules and compute pipelines so that a plan never compiles the same kernel twice.
//!
//! Selection: `WGSD_BACKEND` (vulkan, metal, dx12, gl) and `WGSD_ADAPTER` (a case-insensitive substring of the
//! adapter name) or the matching fields of [`GpuOptions`]. Without them the best adapter wins: discrete GPU,
//! then integrated, then virtual, then CPU (lavapipe).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::kernels::ShaderSource;
use crate::precision::{Precision, PrecisionChoice};

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backend name: "vulkan", "metal", "dx12" or "gl". `None` = Vulkan, Metal and DX12 (or `WGSD_BACKEND`);
    /// GL only when asked, as its compute support is too limited to be a default.
    pub backend: Option<String>,
    /// Substring of the adapter name. `None` = best adapter (or `WGSD_ADAPTER`).
    pub adapter: Option<String>,
    /// Precision of the models loaded on this device (`--precision`). `None` = f32.
    pub precision: Option<PrecisionChoice>,
    /// Precision of the VAE (`--vae-precision`). `None` = f32: SD's VAE overflows in f16 (diffusers'
    /// `force_upcast`).
    pub vae_precision: Option<PrecisionChoice>,
    /// `--low-vram`: keep only the network in use on the GPU. `None` = off.
    pub low_vram: Option<LowVramChoice>,
    /// `--f16-activations`: in f16 precision, GroupNorms hand their output to the convolution after them
    /// in f16 (see `models::nn::GroupNorm::load_before_conv`).
    pub f16_activations: bool,
    /// Upload through wgpu's staging copies even on a CPU adapter (where weights are otherwise written
    /// straight into their buffers): what every GPU does, so tests on lavapipe can cover that path.
    pub staged_uploads: bool,
}

/// `--low-vram on|off|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowVramChoice {
    On,
    Off,
    /// On for CPU adapters (lavapipe, llvmpipe, SwiftShader), whose "GPU memory" is host memory: there a
    /// network that is not running costs the process memory for nothing, while its weights wait in the
    /// page cache and are read back in a fraction of a second. Off for GPUs.
    Auto,
}

impl std::str::FromStr for LowVramChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Ok(LowVramChoice::On),
            "off" | "false" | "no" => Ok(LowVramChoice::Off),
            "auto" => Ok(LowVramChoice::Auto),
            other => Err(format!("unknown --low-vram value '{other}': expected on, off or auto")),
        }
    }
}

impl LowVramChoice {
    /// Whether an adapter of `device_type` runs with one network at a time.
    pub fn resolve(self, device_type: wgpu::DeviceType) -> bool {
        match self {
            LowVramChoice::On => true,
            LowVramChoice::Off => false,
            LowVramChoice::Auto => device_type == wgpu::DeviceType::Cpu,
        }
    }
}

impl GpuOptions {
    /// Options from `WGSD_BACKEND` / `WGSD_ADAPTER`.
    pub fn from_env() -> Self {
        GpuOptions {
            backend: std::env::var("WGSD_BACKEND").ok().filter(|s| !s.is_empty()),
            adapter: std::env::var("WGSD_ADAPTER").ok().filter(|s| !s.is_empty()),
            ..Default::default()
        }
    }

    /// The generating commands' default: `auto` precision unless one was asked for (the VAE stays f32).
    pub fn generating(mut self) -> Self {
        self.precision = self.precision.or(Some(PrecisionChoice::Auto));
        self.low_vram = self.low_vram.or(Some(LowVramChoice::Auto));
        self
    }
}

/// Optional capabilities the kernels can use, as reported by the adapter.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
    pub timestamp_inside_passes: bool,
}

/// One open device with its queue, limits and kernel cache.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub caps: Capabilities,
    /// Precision models load in on this device (from [`GpuOptions::precision`], resolved against `caps`).
    pub precision: Precision,
    /// Precision of VAEs (from [`GpuOptions::vae_precision`]).
    pub vae_precision: Precision,
    /// `--low-vram`: pipelines keep only the network in use on the GPU.
    pub low_vram: bool,
    /// `--f16-activations` (effective for networks loaded in f16).
    pub f16_activations: bool,
    /// Choose the kernels a GPU would get even on a CPU adapter (`DeviceLimits::cpu` false): lets tests
    /// on lavapipe run the GPU forms of kernels that have a CPU form. Off except in tests.
    pub gpu_style_kernels: bool,
    /// Read every kernel input from storage buffers even where the adapter would get texture reads
    /// (`DeviceLimits::texture_reads`): lets tests on lavapipe run both forms, and benchmarks compare
    /// them (`WGSD_TEXTURE_READS=off`). Off otherwise.
    pub buffer_reads_only: bool,
    /// Most bytes of one tensor a dispatch copies into a scratch texture where the op can split its work
    /// ([`crate::graph::op::TEXTURE_WINDOW_BYTES`]; tests lower it to run the split paths at small sizes).
    pub texture_window: u64,
    /// How plans compute 3×3 convolutions (`WGSD_CONV`, default auto; see `kernels/winograd.rs`).
    pub conv_algorithm: crate::graph::op::ConvAlgorithm,
    /// Plans pack all intermediates into one arena, binding a node's inputs read-write where they share
    /// its output's buffer (`WGSD_SHARED_ARENA=on|off`; on for CPU adapters, whose GPU memory is the
    /// process's own, and where the hot inputs are read through textures anyway). Off, a node's inputs and
    /// output lie in different arenas and inputs are always bound read-only (which GPU compilers may use
    /// for read-only caches; unmeasured), for a few arenas' worth of slack (see `graph/plan.rs`).
    pub shared_arena: bool,
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// Shader variants with some read-only inputs declared read-write, or some texture reads declared
    /// with f16 texels (see [`Gpu::pipeline`]), by shader, derivation and bindings.
    variants: Mutex<HashMap<(&'static str, Derivation, Vec<u32>), &'static ShaderSource>>,
    /// Compiled pipelines saved between runs, where the driver supports it.
    disk_cache: Option<crate::pipeline_cache::DiskPipelineCache>,
    /// Buffers filled by [`Gpu::upload`] are mapped themselves (CPU adapters), not through staging copies.
    pub direct_upload: bool,
    /// Bytes uploaded since the last flush of wgpu's staging copies (see [`Gpu::upload`]).
    unflushed_upload: std::sync::atomic::AtomicU64,
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.save_pipeline_cache();
    }
}

/// A host-readable copy of a buffer range, encoded by [`Gpu::encode_readback`] and read by [`Gpu::read_back`].
pub struct Readback {
    staging: wgpu::Buffer,
}

/// A compiled compute pipeline together with the layout its bind groups must follow.
pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// How a kernel binding (1, 2, ...) is bound: a read-only or read-write storage buffer, or a read-only
/// storage texture of these texels that the executor fills from a buffer range (`Bind::texture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindKind {
    Read,
    Write,
    Texture(Texels),
}

/// The texels of a texture-read binding: 4 values each, stored as the tensor's dtype (`textureLoad`
/// widens both to f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Texels {
    F32,
    F16,
}

impl Texels {
    pub fn of(dtype: crate::tensor::DType) -> Texels {
        match dtype {
            crate::tensor::DType::F32 => Texels::F32,
            crate::tensor::DType::F16 => Texels::F16,
        }
    }

    pub fn format(self) -> wgpu::TextureFormat {
        match self {
            Texels::F32 => wgpu::TextureFormat::Rgba32Float,
            Texels::F16 => wgpu::TextureFormat::Rgba16Float,
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            Texels::F32 => 16,
            Texels::F16 => 8,
        }
    }
}

/// How [`Gpu::pipeline`] derives a shader's variant for the way its bindings are bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Derivation {
    Writable,
    HalfTexels,
}

/// Pipelines are keyed by shader family, entry point and the binding signature.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    kinds: Vec<BindKind>,
    constants: Vec<(&'static str, u32)>,
}

fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::usage(format!(
            "unknown backend '{other}': expected vulkan, metal, dx12 or gl"
        ))),
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// All adapters wgpu can see on this machine (for `wgsd devices`).
pub fn list_adapters(opts: &GpuOptions) -> Result<Vec<wgpu::AdapterInfo>> {
    let backends = match &opts.backend {
        Some(b) => parse_backend(b)?,
        None => wgpu::Backends::PRIMARY,
    };
    let adapters = pollster::block_on(instance(backends).enumerate_adapters(backends));
    Ok(adapters.iter().map(|a| a.get_info()).collect())
}

impl Gpu {
    /// Opens the adapter chosen by `opts` (see the module docs).
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let backends = match &opts.backend {
            Some(b) => parse_backend(b)?,
            None => wgpu::Backends::PRIMARY,
        };
        let inst = instance(backends);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends));
        if adapters.is_empty() {
            let detail = match &opts.backend {
                Some(b) => format!(" for backend '{b}'"),
                None => String::new(),
            };
            return Err(Error::NoAdapter { detail });
        }
        if let Some(want) = &opts.adapter {
            let w = want.to_ascii_lowercase();
            let available = adapters
                .iter()
                .map(|a| format!("'{}' ({:?})", a.get_info().name, a.get_info().backend))
                .collect::<Vec<_>>()
                .join(", ");
            adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&w));
            if adapters.is_empty() {
                return Err(Error::AdapterNotFound { wanted: format!("'{want}'"), available });
            }
        }
        // Prefer real GPUs, and among equals prefer Vulkan/Metal/DX12 over GL.
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (rank(i.device_type), i.backend == wgpu::Backend::Gl)
        });
        let adapter = adapters.remove(0);
        let mut gpu = Self::open(adapter, opts.staged_uploads)?;
        gpu.set_precision(opts.precision.unwrap_or(PrecisionChoice::F32), opts.vae_precision.unwrap_or(PrecisionChoice::F32));
        gpu.low_vram = opts.low_vram.unwrap_or(LowVramChoice::Off).resolve(gpu.info.device_type);
        gpu.f16_activations = opts.f16_activations;
        Ok(gpu)
    }

    /// Sets the precisions models load in, as far as the adapter allows; prints a note where it does not.
    pub fn set_precision(&mut self, models: PrecisionChoice, vae: PrecisionChoice) {
        let (p, note) = models.resolve(&self.caps, &self.info.name);
        let (v, vae_note) = vae.resolve(&self.caps, &self.info.name);
        for n in [note, vae_note.filter(|_| vae != models)].into_iter().flatten() {
            eprintln!("{n}");
        }
        self.precision = p;
        self.vae_precision = v;
    }

    fn open(adapter: wgpu::Adapter, staged_uploads: bool) -> Result<Gpu> {
        let info = adapter.get_info();
        let available = adapter.features();
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::PIPELINE_CACHE
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let mut features = available & wanted;
        // On a CPU adapter all memory is host memory: weights can be written straight into their buffers
        // instead of through wgpu's staging copies (half the copying, no staging memory). On GPUs that
        // would put them in host-visible memory, slower for the kernels, so only there.
        let direct_upload = !staged_uploads
            && info.device_type == wgpu::DeviceType::Cpu
            && available.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        if direct_upload {
            features |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        // Ask for everything the adapter offers: wgpu's defaults (256 MiB buffers, 128 MiB bindings) are
        // smaller than Stable Diffusion's tensors on most GPUs.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgsd"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: if info.device_type == wgpu::DeviceType::Cpu { wgpu::MemoryHints::MemoryUsage } else { wgpu::MemoryHints::Performance },
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu { context: format!(" opening '{}'", info.name), msg: e.to_string() })?;
        let caps = Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        };
        let limits = device.limits();
        let disk_cache = crate::pipeline_cache::DiskPipelineCache::open(&device, &info);
        let cpu_adapter = info.device_type == wgpu::DeviceType::Cpu;
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            caps,
            precision: Precision::F32,
            vae_precision: Precision::F32,
            low_vram: false,
            f16_activations: false,
            gpu_style_kernels: false,
            buffer_reads_only: std::env::var("WGSD_TEXTURE_READS").is_ok_and(|v| v == "off"),
            texture_window: crate::graph::op::TEXTURE_WINDOW_BYTES,
            conv_algorithm: crate::graph::op::ConvAlgorithm::from_env(),
            shared_arena: match std::env::var("WGSD_SHARED_ARENA").as_deref() {
                Ok("on") => true,
                Ok("off") => false,
                _ => cpu_adapter,
            },
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            variants: Mutex::new(HashMap::new()),
            disk_cache,
            direct_upload,
            unflushed_upload: Default::default(),
        })
    }

    /// Saves the compiled pipelines for the next run (also done when the device is dropped).
    pub fn save_pipeline_cache(&self) {
        if let Some(c) = &self.disk_cache {
            c.save();
        }
    }

    /// A one-paragraph description of the adapter for logs and `wgsd devices`.
    pub fn describe(&self) -> String {
        let l = &self.limits;
        format!(
            "{} ({:?}, {:?}, driver {} {})\n  max buffer {} MiB, max storage binding {} MiB, workgroup memory {} KiB, \
             invocations/workgroup {}\n  shader-f16: {}, subgroups: {}, timestamp queries: {} (inside passes: {})\n  \
             precision: {} (VAE {}){}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            yes(self.caps.shader_f16),
            yes(self.caps.subgroups),
            yes(self.caps.timestamp_query),
            yes(self.caps.timestamp_inside_passes),
            self.precision,
            self.vae_precision,
            if self.f16_activations { ", f16 activations where f16" } else { "" },
        )
    }

    fn module(&self, src: &ShaderSource) -> Result<Arc<wgpu::ShaderModule>> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(src.name) {
            return Ok(m.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let m = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(src.name),
            source: wgpu::ShaderSource::Wgsl(src.source.into()),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu { context: format!(" compiling shaders/{}.wgsl", src.name), msg: e.to_string() });
        }
        let m = Arc::new(m);
        modules.insert(src.name, m.clone());
        Ok(m)
    }

    /// `src` derived for `bindings` ([`ShaderSource::writable_bindings`], [`ShaderSource::half_texels`]),
    /// once per shader, derivation and set of bindings.
    fn variant(&self, src: &ShaderSource, derivation: Derivation, bindings: Vec<u32>) -> &'static ShaderSource {
        let mut variants = self.variants.lock().unwrap();
        variants.entry((src.name, derivation, bindings)).or_insert_with_key(|(_, _, b)| {
            Box::leak(Box::new(match derivation {
                Derivation::Writable => src.writable_bindings(b),
                Derivation::HalfTexels => src.half_texels(b),
            }))
        })
    }

    /// The pipeline for `entry` in `src` whose binding 0 is the uniform params and bindings 1.. are bound
    /// as `kinds` says; `constants` sets the shader's `override` values (see [`crate::graph::op::Dispatch`]).
    pub fn pipeline(
        &self,
        src: &ShaderSource,
        entry: &'static str,
        kinds: &[BindKind],
        constants: &[(&'static str, u32)],
    ) -> Result<Arc<Pipeline>> {
        let key = PipelineKey { shader: src.name, entry, kinds: kinds.to_vec(), constants: constants.to_vec() };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        // Inputs bound read-write (they share the output's buffer) need the shader to declare them so.
        let writable: Vec<u32> = (1..=kinds.len() as u32).filter(|&b| kinds[b as usize - 1] == BindKind::Write).collect();
        let promoted = src.read_only_bindings(&writable);
        let src = if promoted.is_empty() { src } else { self.variant(src, Derivation::Writable, promoted) };
        // Texture reads of f16 tensors need the texel format in the shader's declaration.
        let half: Vec<u32> = (1..=kinds.len() as u32).filter(|&b| kinds[b as usize - 1] == BindKind::Texture(Texels::F16)).collect();
        let src = if half.is_empty() { src } else { self.variant(src, Derivation::HalfTexels, half) };
        let module = self.module(src)?;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, kind) in kinds.iter().enumerate() {
            let ty = match kind {
                BindKind::Texture(texels) => wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::ReadOnly,
                    format: texels.format(),
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
                _ => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *kind == BindKind::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            };
            entries.push(wgpu::BindGroupLayoutEntry { binding: i as u32 + 1, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &entries,
        });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let overrides: Vec<(&str, f64)> = constants.iter().map(|&(name, v)| (name, f64::from(v))).collect();
        let pipeline = crate::timing::timed(crate::timing::Phase::Pipelines, || {
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &overrides,
                    // Tile buffers are always written before they are read: zero-filling them is wasted work.
                    zero_initialize_workgroup_memory: false,
                },
                cache: self.disk_cache.as_ref().map(|c| &c.cache),
            })
        });
        if let Some(c) = &self.disk_cache {
            c.touched();
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                context: format!(" building pipeline {}::{entry}", src.name),
                msg: e.to_string(),
            });
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    /// Pipelines created so far (each is created once and cached).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu { context: " waiting for the queue".into(), msg: e.to_string() })
    }

    /// Copies `size` bytes at `offset` of `buffer` back to the host (its own command encoder and submit).
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        let readback = self.encode_readback(&mut enc, buffer, offset, size);
        self.queue.submit([enc.finish()]);
        Ok(self.read_back(&[readback])?.remove(0))
    }

    /// Encodes a copy of `size` bytes (a multiple of 4) at `offset` of `buffer` into a new host-readable
    /// buffer; [`Gpu::read_back`] maps it once the encoder is submitted.
    pub fn encode_readback(&self, enc: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Readback {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        Readback { staging }
    }

    /// Waits for the submitted copies of `readbacks` and returns their bytes, in order.
    pub fn read_back(&self, readbacks: &[Readback]) -> Result<Vec<Vec<u8>>> {
        let failed = |e: &dyn std::fmt::Display| Error::Gpu { context: " reading back".into(), msg: e.to_string() };
        let (tx, rx) = std::sync::mpsc::channel();
        for r in readbacks {
            let tx = tx.clone();
            r.staging.map_async(wgpu::MapMode::Read, .., move |result| {
                let _ = tx.send(result);
            });
        }
        drop(tx);
        self.wait()?;
        // Every callback has run once the queue is idle (a missing one shows as an unmapped buffer below).
        for result in rx.try_iter() {
            result.map_err(|e| failed(&e))?;
        }
        readbacks
            .iter()
            .map(|r| {
                let data = r.staging.slice(..).get_mapped_range().map_err(|e| failed(&e))?.to_vec();
                r.staging.unmap();
                Ok(data)
            })
            .collect()
    }

    /// A host-written buffer holding `data` (a multiple of 4 bytes) for copies to read: the source of an
    /// upload encoded into the caller's command encoder (see [`crate::graph::plan::Plan::write`]), where
    /// `queue.write_buffer` would record it into a command encoder of wgpu's own.
    pub fn staging_upload(&self, data: &[u8]) -> wgpu::Buffer {
        let padded;
        let data = if data.len() < 4 {
            padded = [data, &[0; 4][data.len()..]].concat();
            &padded[..]
        } else {
            data
        };
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: data.len() as u64,
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        buf.slice(..).get_mapped_range_mut().expect("a buffer mapped at creation is writable").copy_from_slice(data);
        buf.unmap();
        buf
    }

    /// A storage buffer filled with `data` (uploaded through a mapped buffer, no extra copy).
    pub fn upload(&self, label: &str, data: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
        crate::timing::timed(crate::timing::Phase::Upload, || self.upload_untimed(label, data, extra))
    }

    fn upload_untimed(&self, label: &str, data: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
        // Whole 16-byte texels, so a texture-read binding of the end of a weight copies whole texels.
        let size = (data.len() as u64).max(4).next_multiple_of(16);
        let mapped = if self.direct_upload { wgpu::BufferUsages::MAP_WRITE } else { wgpu::BufferUsages::empty() };
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | mapped | extra,
            mapped_at_creation: true,
        });
        {
            let mut view = buf.slice(..).get_mapped_range_mut().expect("a buffer mapped at creation is writable");
            // The mapped view is write-only: fill it in one copy, with the few padding bytes appended.
            if data.len() as u64 == size {
                view.copy_from_slice(data);
            } else {
                let mut padded = data.to_vec();
                padded.resize(size as usize, 0);
                view.copy_from_slice(&padded);
            }
        }
        buf.unmap();
        if !self.direct_upload {
            self.flush_uploads_past(size);
        }
        buf
    }

    /// wgpu fills a buffer mapped at creation through a staging copy that lives until the next queue
    /// submission completes, so loading a model without submitting would hold every weight twice. An
    /// empty submission past [`UPLOAD_FLUSH_BYTES`] bounds the staging memory; keeping it small also keeps
    /// staging copies from being interleaved with the weights in the allocator's memory blocks, where the
    /// holes they leave stay resident (measured on lavapipe through this staged path, before CPU adapters
    /// got direct uploads; SD 1.5 UNet phase: 2335 MiB RSS flushing every 128 MiB, 2215 every 32 MiB,
    /// 2093 every 8 MiB). CPU adapters with direct uploads never get here.
    fn flush_uploads_past(&self, added: u64) {
        use std::sync::atomic::Ordering;
        let pending = self.unflushed_upload.fetch_add(added, Ordering::Relaxed) + added;
        if pending >= UPLOAD_FLUSH_BYTES {
            self.unflushed_upload.store(0, Ordering::Relaxed);
            self.queue.submit(std::iter::empty());
            // A failed wait only delays the release of the staging memory; errors surface at the next use.
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
    }
}

/// Upload volume after which the staging copies are flushed (see [`Gpu::flush_uploads_past`]).
const UPLOAD_FLUSH_BYTES: u64 = 8 << 20;

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
