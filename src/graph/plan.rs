//! Turning a recorded [`Graph`] into something the GPU runs, once:
//!
//! 1. **Liveness.** Every intermediate tensor lives from the node that writes it to the last node that
//!    reads it (or any view of it). Intermediates are packed at byte offsets into a few large arenas, largest
//!    first into the smallest gap that no tensor alive at the same time uses, so memory is reused as soon as
//!    a tensor is dead; graph inputs and outputs keep buffers of their own.
//! 2. **Lowering.** Each op becomes dispatches; every binding is checked against the device limits and every
//!    pipeline and bind group is built here. All uniform parameters share one buffer.
//! 3. **Running.** [`Plan::run`] encodes the whole graph into one command encoder and one compute pass
//!    (a new pass after each dispatch's texture copies, where kernels read inputs through textures:
//!    [`crate::graph::op::Bind::texture`]). Running again after [`Plan::write`] reuses everything; nothing
//!    is rebuilt.
//!
//! [`Plan::run_debug`] runs node by node and reads every output back, so a wrong layer can be found by name;
//! [`Plan::profile`] times every node with GPU timestamps.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use super::op::{DeviceLimits, Lowering, Slot};
use super::{decode, encode, Graph, Source, TensorId};
use crate::error::{Error, Result};
use crate::gpu::{BindKind, Gpu, Pipeline, Readback, Texels};
use crate::kernels::weight_storage::TEXEL_ROW;
use crate::tensor::TensorDesc;

enum Storage {
    /// Index into `Plan::buffers`.
    Owned(usize),
    /// `size` bytes at `offset` of the arena `Plan::buffers[buffer]`.
    Pooled { buffer: usize, offset: u64, size: u64 },
    /// A weight's buffer (a handle: the plan keeps it alive, even if `--low-vram` moves the weight out).
    Param(wgpu::Buffer),
}

impl Storage {
    /// The buffer, the tensor's byte offset in it, and the bytes it may use from there.
    fn resolve<'a>(&'a self, buffers: &'a [wgpu::Buffer]) -> (&'a wgpu::Buffer, u64, u64) {
        match self {
            Storage::Owned(i) => (&buffers[*i], 0, buffers[*i].size()),
            Storage::Pooled { buffer, offset, size } => (&buffers[*buffer], *offset, *size),
            Storage::Param(b) => (b, 0, b.size()),
        }
    }
}

struct PlannedDispatch {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Buffer ranges to copy into the textures this dispatch reads, before it runs.
    copies: Vec<TextureCopy>,
}

/// `bytes` of `buffer` from `offset` into the start of `texture`, [`TEXEL_ROW`] texels of `texel` bytes a row.
struct TextureCopy {
    buffer: wgpu::Buffer,
    offset: u64,
    bytes: u64,
    texel: u64,
    texture: wgpu::Texture,
}

impl TextureCopy {
    fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        let row_bytes = TEXEL_ROW as u64 * self.texel;
        let texels = self.bytes / self.texel;
        let (rows, rest) = (texels / TEXEL_ROW as u64, texels % TEXEL_ROW as u64);
        let mut copy = |offset: u64, y: u32, width: u64, height: u64| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffer,
                    layout: wgpu::TexelCopyBufferLayout { offset, bytes_per_row: Some(row_bytes as u32), rows_per_image: None },
                },
                wgpu::TexelCopyTextureInfo { texture: &self.texture, mip_level: 0, origin: wgpu::Origin3d { x: 0, y, z: 0 }, aspect: wgpu::TextureAspect::All },
                wgpu::Extent3d { width: width as u32, height: height as u32, depth_or_array_layers: 1 },
            );
        };
        if rows > 0 {
            copy(self.offset, 0, TEXEL_ROW as u64, rows);
        }
        if rest > 0 {
            copy(self.offset + rows * row_bytes, rows as u32, rest, 1);
        }
    }
}

struct PlannedNode {
    dispatches: Vec<PlannedDispatch>,
}

/// GPU memory a plan holds, in bytes.
#[derive(Clone, Debug, Default)]
pub struct MemoryReport {
    /// The shared pool of intermediate buffers after liveness packing.
    pub intermediates: u64,
    /// What the intermediates would take with one buffer each (no reuse), for comparison.
    pub intermediates_unshared: u64,
    /// The most intermediate bytes alive at once: what a perfect packing would need.
    pub intermediates_live_peak: u64,
    /// Graph inputs and outputs.
    pub inputs_outputs: u64,
    /// Weights referenced by the plan (shared with other plans, so counted apart).
    pub params: u64,
    /// The uniform parameter buffer.
    pub uniforms: u64,
    /// Scratch textures of texture-read bindings (CPU adapters).
    pub textures: u64,
    /// Number of pooled buffers.
    pub pool_buffers: usize,
}

impl MemoryReport {
    /// Peak GPU memory while the plan runs, weights included.
    pub fn peak(&self) -> u64 {
        self.intermediates + self.inputs_outputs + self.params + self.uniforms + self.textures
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        write!(
            f,
            "peak {:.1} MiB = intermediates {:.1} MiB in {} buffers (live at most {:.1} MiB, unshared {:.1} MiB) + \
             inputs/outputs {:.1} MiB + weights {:.1} MiB + uniforms {:.2} MiB + textures {:.1} MiB",
            mib(self.peak()),
            mib(self.intermediates),
            self.pool_buffers,
            mib(self.intermediates_live_peak),
            mib(self.intermediates_unshared),
            mib(self.inputs_outputs),
            mib(self.params),
            mib(self.uniforms),
            mib(self.textures)
        )
    }
}

/// One node's output as read back by [`Plan::run_debug`].
pub struct NodeDump {
    pub name: String,
    pub kind: &'static str,
    pub desc: TensorDesc,
    pub values: Vec<f32>,
}

/// Largest arena of pooled intermediates (smaller when the device's buffers are): big enough to pack well,
/// small enough for every allocator.
const ARENA_BYTES: u64 = 1 << 30;

pub struct Plan {
    gpu: Arc<Gpu>,
    graph: Graph,
    /// Indexed by tensor id; views point at their root's storage.
    storage: Vec<Option<Storage>>,
    buffers: Vec<wgpu::Buffer>,
    nodes: Vec<PlannedNode>,
    _uniforms: wgpu::Buffer,
    memory: MemoryReport,
    /// Input writes waiting for the next encoder (see [`Plan::write`]).
    pending_writes: std::sync::Mutex<Vec<PendingWrite>>,
}

/// A graph input's new contents, copied from `staging` at the start of the plan's next command encoder.
struct PendingWrite {
    staging: wgpu::Buffer,
    target: wgpu::Buffer,
    offset: u64,
    size: u64,
}

/// Where the liveness packer put the intermediates: per tensor, `(arena, byte offset)`; the arenas' sizes;
/// and the most bytes alive at once (what a perfect packing would need).
struct Packing {
    place: Vec<Option<(usize, u64)>>,
    arena_sizes: Vec<u64>,
    live_peak: u64,
}

/// How dispatch `d` of `node` binds each of its bindings: through a scratch texture; read-write when the
/// dispatch writes it or it lies in the arena the node's output is written to (a shared arena, see
/// [`pack`]); else read-only. `place` is the packer's arena and offset per tensor.
fn binding_kinds(graph: &Graph, place: &[Option<(usize, u64)>], node: &super::Node, d: &super::op::Dispatch) -> Vec<BindKind> {
    let arena = |t: TensorId| place[graph.root(t).0].map(|(a, _)| a);
    let out_arena = arena(node.output);
    let shares_output_arena = |slot: Slot| match slot {
        Slot::Input(i) => out_arena.is_some() && arena(node.inputs[i]) == out_arena,
        Slot::Output => false,
    };
    d.bindings
        .iter()
        .map(|b| {
            if b.texture {
                let Slot::Input(i) = b.slot else { unreachable!("an output is never read through a texture") };
                BindKind::Texture(Texels::of(graph.desc(node.inputs[i]).dtype))
            } else if b.writable || shares_output_arena(b.slot) {
                BindKind::Write
            } else {
                BindKind::Read
            }
        })
        .collect()
}

/// Packs the intermediate tensors into arenas of at most `cap` bytes by liveness: a tensor lives from the
/// node that writes it to the last node that reads it (or any view of it), and two tensors whose lives
/// overlap never share bytes. Tensors are placed largest first, each into the smallest gap left by the
/// overlapping tensors already placed (greedy by size), in the first arena that holds none of the tensors
/// its writer reads or its readers write (a dispatch may not bind one buffer read-only and read-write) —
/// unless `shared`, where that rule is dropped and the executor binds a node's inputs that share its
/// output's arena read-write instead ([`Gpu::shared_arena`](crate::gpu::Gpu::shared_arena)). A training
/// step with thousands of intermediates of very different sizes then needs little more than its live
/// peak, where a pool of whole buffers wasted half.
fn pack(graph: &Graph, cap: u64, shared: bool) -> Packing {
    let n = graph.tensors.len();
    let mut last_use = vec![None::<usize>; n];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &t in &node.inputs {
            last_use[graph.root(t).0] = Some(i);
        }
    }
    let kept: std::collections::HashSet<usize> = graph.outputs.iter().map(|t| graph.root(*t).0).collect();
    // (tensor, bytes, first node, last node)
    let mut items: Vec<(usize, u64, usize, usize)> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let t = node.output.0;
        if matches!(graph.tensors[t].source, Source::Node) && !kept.contains(&t) {
            let size = graph.tensors[t].desc.bytes().max(4).next_multiple_of(256);
            items.push((t, size, i, last_use[t].unwrap_or(i).max(i)));
        }
    }
    // The live peak: bytes allocated at each node's start minus those released after their last reader.
    let mut delta = vec![0i64; graph.nodes.len() + 1];
    for &(_, size, first, last) in &items {
        delta[first] += size as i64;
        delta[last + 1] -= size as i64;
    }
    let (mut live, mut live_peak) = (0i64, 0i64);
    for d in &delta {
        live += d;
        live_peak = live_peak.max(live);
    }

    // Separate arenas: wgpu tracks usage per buffer within a dispatch, and inputs stay read-only, so a
    // tensor never shares an arena with the inputs of the node that writes it.
    let mut adjacent: Vec<Vec<usize>> = vec![Vec::new(); n];
    if !shared {
        for node in &graph.nodes {
            let out = node.output.0;
            for &t in &node.inputs {
                let r = graph.root(t).0;
                if r != out {
                    adjacent[out].push(r);
                    adjacent[r].push(out);
                }
            }
        }
    }
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let mut place: Vec<Option<(usize, u64)>> = vec![None; n];
    // Per arena: (offset, size, first, last) of what it holds.
    let mut arenas: Vec<Vec<(u64, u64, usize, usize)>> = Vec::new();
    let mut arena_sizes: Vec<u64> = Vec::new();
    for &(t, size, first, last) in &items {
        let mut chosen = None;
        for (a, held) in arenas.iter().enumerate() {
            if adjacent[t].iter().any(|&u| place[u].is_some_and(|(ua, _)| ua == a)) {
                continue;
            }
            let mut busy: Vec<(u64, u64)> =
                held.iter().filter(|h| h.2 <= last && first <= h.3).map(|h| (h.0, h.0 + h.1)).collect();
            busy.sort_unstable();
            let (mut end, mut best): (u64, Option<(u64, u64)>) = (0, None);
            for (s, e) in busy {
                if s >= end + size && best.is_none_or(|(gap, _)| s - end < gap) {
                    best = Some((s - end, end));
                }
                end = end.max(e);
            }
            let offset = best.map_or(end, |(_, o)| o);
            if offset + size <= cap.max(size) {
                chosen = Some((a, offset));
                break;
            }
        }
        let (a, offset) = chosen.unwrap_or_else(|| {
            arenas.push(Vec::new());
            arena_sizes.push(0);
            (arenas.len() - 1, 0)
        });
        arenas[a].push((offset, size, first, last));
        arena_sizes[a] = arena_sizes[a].max(offset + size);
        place[t] = Some((a, offset));
    }
    Packing { place, arena_sizes, live_peak: live_peak as u64 }
}

impl Plan {
    /// Plans `graph` for `gpu`: assigns buffers, builds every pipeline and bind group.
    pub fn new(gpu: Arc<Gpu>, graph: Graph) -> Result<Plan> {
        crate::timing::timed(crate::timing::Phase::PlanBuild, || Self::build(gpu, graph))
    }

    /// Creates the pipelines a plan of `graph` will use, without buffers or weights: `gpu` caches them, and
    /// [`Plan::new`] finds them there. Run while weights upload on another thread (one core's page
    /// faults on a CPU adapter), it takes pipeline creation — 1.5 s of lavapipe's shader compilation for
    /// the SD 1.5 UNet — off the critical path.
    pub fn prepare_pipelines(gpu: &Gpu, graph: Graph) -> Result<()> {
        let limits = DeviceLimits::from_gpu(gpu);
        let graph = graph.expanded(&limits)?;
        let packing = pack(&graph, gpu.limits.max_buffer_size.min(ARENA_BYTES), gpu.shared_arena);
        for node in &graph.nodes {
            let ins: Vec<TensorDesc> = node.inputs.iter().map(|t| graph.desc(*t).clone()).collect();
            let out = graph.desc(node.output).clone();
            for d in node.op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits })? {
                gpu.pipeline(d.shader, d.entry, &binding_kinds(&graph, &packing.place, node, &d), &d.constants)?;
            }
        }
        Ok(())
    }

    fn build(gpu: Arc<Gpu>, graph: Graph) -> Result<Plan> {
        let limits = DeviceLimits::from_gpu(&gpu);
        let graph = graph.expanded(&limits)?;
        let device = &gpu.device;
        let packing = pack(&graph, gpu.limits.max_buffer_size.min(ARENA_BYTES), gpu.shared_arena);

        let mut memory = MemoryReport { intermediates_live_peak: packing.live_peak, ..Default::default() };
        let mut buffers = Vec::new();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let too_big = |what: String, op: String, needed: u64| Error::Limit {
            op,
            what,
            needed,
            limit_name: "max_buffer_size",
            limit: gpu.limits.max_buffer_size,
            hint: " and a tensor cannot be split across buffers".into(),
        };
        for node in &graph.nodes {
            let d = graph.desc(node.output);
            if packing.place[node.output.0].is_some() && d.bytes() > gpu.limits.max_buffer_size {
                return Err(too_big(format!("output {d}"), format!("{} '{}'", node.op.kind(), node.name), d.bytes()));
            }
        }
        for &size in &packing.arena_sizes {
            buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pool"),
                size,
                usage,
                mapped_at_creation: false,
            }));
            memory.intermediates += size;
        }
        memory.pool_buffers = packing.arena_sizes.len();

        let mut storage: Vec<Option<Storage>> = (0..graph.tensors.len()).map(|_| None).collect();
        // A weight recorded more than once (a chunked feed-forward's runs) is one buffer: count it once.
        let mut counted = std::collections::HashSet::new();
        let written: std::collections::HashSet<usize> = graph.nodes.iter().map(|n| n.output.0).collect();
        for (i, info) in graph.tensors.iter().enumerate() {
            match &info.source {
                // A node's result that nothing computes any more: its node was folded into its only reader
                // (see `Graph::expanded`).
                Source::Node if !written.contains(&i) => {}
                Source::Param(p) => {
                    if counted.insert(Arc::as_ptr(p)) {
                        memory.params += p.desc.bytes();
                    }
                    storage[i] = Some(Storage::Param(p.buffer()?));
                }
                Source::Node | Source::Input => {
                    if let Some((arena, offset)) = packing.place[i] {
                        memory.intermediates_unshared += info.desc.bytes();
                        let size = info.desc.bytes().max(4).next_multiple_of(256);
                        storage[i] = Some(Storage::Pooled { buffer: arena, offset, size });
                    } else {
                        // Whole 16-byte texels, so a texture-read binding of its end copies whole texels.
                        let bytes = info.desc.bytes().max(4).next_multiple_of(16);
                        if bytes > gpu.limits.max_buffer_size {
                            return Err(too_big(format!("tensor {}", info.desc), format!("'{}'", info.name), bytes));
                        }
                        buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&info.name),
                            size: bytes,
                            usage,
                            mapped_at_creation: false,
                        }));
                        memory.inputs_outputs += bytes;
                        storage[i] = Some(Storage::Owned(buffers.len() - 1));
                    }
                }
                Source::Constant(data) => {
                    let buf = gpu.upload(&info.name, &encode(info.desc.dtype, data), wgpu::BufferUsages::empty());
                    memory.inputs_outputs += buf.size();
                    buffers.push(buf);
                    storage[i] = Some(Storage::Owned(buffers.len() - 1));
                }
                Source::View(_) => {}
            }
        }

        // Lower every node; collect uniform data.
        let ualign = gpu.limits.min_uniform_buffer_offset_alignment as usize;
        let mut uniform_data: Vec<u8> = Vec::new();
        let mut lowered = Vec::new();
        // Texture-read bindings share one scratch texture per (binding index, format), as tall as the
        // largest range copied into it: dispatches run one after another, each after its copies.
        let mut scratch_rows: std::collections::BTreeMap<(usize, Texels), u64> = Default::default();
        for node in &graph.nodes {
            let ins: Vec<TensorDesc> = node.inputs.iter().map(|t| graph.desc(*t).clone()).collect();
            let out = graph.desc(node.output).clone();
            let what = || {
                let shapes: Vec<String> = ins.iter().map(|d| d.to_string()).collect();
                format!("{} '{}' (inputs {} → {})", node.op.kind(), node.name, shapes.join(", "), out)
            };
            let dispatches = node.op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits })?;
            let mut planned = Vec::new();
            for d in dispatches {
                for b in &d.bindings {
                    if b.size > limits.max_binding {
                        return Err(Error::Limit {
                            op: what(),
                            what: format!("binding {:?}", b.slot),
                            needed: b.size,
                            limit_name: "max_storage_buffer_binding_size",
                            limit: limits.max_binding,
                            hint: " and this op does not split its bindings".into(),
                        });
                    }
                }
                let off = uniform_data.len().next_multiple_of(ualign);
                uniform_data.resize(off, 0);
                uniform_data.extend_from_slice(&d.params);
                let len = d.params.len().max(16).next_multiple_of(16);
                uniform_data.resize(off + len, 0);
                for (k, b) in d.bindings.iter().enumerate().filter(|(_, b)| b.texture) {
                    let Slot::Input(i) = b.slot else { unreachable!("an output is never read through a texture") };
                    let texels = Texels::of(ins[i].dtype);
                    let rows = b.size.div_ceil(texels.bytes()).div_ceil(TEXEL_ROW as u64);
                    let held = scratch_rows.entry((k, texels)).or_default();
                    *held = (*held).max(rows);
                }
                let kinds = binding_kinds(&graph, &packing.place, node, &d);
                let pipeline = gpu.pipeline(d.shader, d.entry, &kinds, &d.constants)?;
                planned.push((pipeline, off as u64, len as u64, d));
            }
            lowered.push(planned);
        }
        uniform_data.resize(uniform_data.len().max(16), 0);
        let uniforms = gpu.upload("uniforms", &uniform_data, wgpu::BufferUsages::UNIFORM);
        memory.uniforms = uniform_data.len() as u64;

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut scratch = std::collections::BTreeMap::new();
        for (&(k, texels), &rows) in &scratch_rows {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("texture reads"),
                size: wgpu::Extent3d { width: TEXEL_ROW, height: rows as u32, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: texels.format(),
                usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            memory.textures += TEXEL_ROW as u64 * rows * texels.bytes();
            let view = texture.create_view(&Default::default());
            scratch.insert((k, texels), (texture, view));
        }
        let mut nodes = Vec::new();
        for (node, planned) in graph.nodes.iter().zip(lowered) {
            let mut dispatches = Vec::new();
            for (pipeline, off, len, d) in planned {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: off,
                        size: NonZeroU64::new(len),
                    }),
                }];
                let mut copies = Vec::new();
                for (k, b) in d.bindings.iter().enumerate() {
                    let t = match b.slot {
                        Slot::Input(i) => node.inputs[i],
                        Slot::Output => node.output,
                    };
                    let (buffer, base, avail) = storage[graph.root(t).0].as_ref().expect("storage assigned").resolve(&buffers);
                    if b.texture {
                        let texels = Texels::of(graph.desc(t).dtype);
                        let texel = texels.bytes();
                        let (texture, view) = &scratch[&(k, texels)];
                        // Buffers end on whole texels (see their allocation), so the last one is whole.
                        let bytes = b.size.next_multiple_of(texel).min(avail - b.offset);
                        copies.push(TextureCopy { buffer: buffer.clone(), offset: base + b.offset, bytes, texel, texture: texture.clone() });
                        entries.push(wgpu::BindGroupEntry { binding: k as u32 + 1, resource: wgpu::BindingResource::TextureView(view) });
                        continue;
                    }
                    let size = b.size.max(4).next_multiple_of(4).min(avail - b.offset);
                    entries.push(wgpu::BindGroupEntry {
                        binding: k as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer,
                            offset: base + b.offset,
                            size: NonZeroU64::new(size),
                        }),
                    });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&node.name),
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                dispatches.push(PlannedDispatch { pipeline, bind_group, workgroups: d.workgroups, copies });
            }
            nodes.push(PlannedNode { dispatches });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu { context: " building bind groups".into(), msg: e.to_string() });
        }
        Ok(Plan { gpu, graph, storage, buffers, nodes, _uniforms: uniforms, memory, pending_writes: Default::default() })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn memory(&self) -> &MemoryReport {
        &self.memory
    }

    /// The buffer holding graph input, output or weight `t` (whole: they have buffers of their own), for
    /// work encoded after the graph by [`Plan::run_with`]. Errors for an intermediate (it lives inside a
    /// shared arena and is overwritten).
    pub fn buffer_of(&self, t: TensorId) -> Result<&wgpu::Buffer> {
        match self.storage[self.graph.root(t).0].as_ref() {
            Some(Storage::Pooled { .. }) | None => Err(Error::usage(format!("'{}' is an intermediate: mark it with Graph::output", self.graph.name(t)))),
            Some(s) => Ok(s.resolve(&self.buffers).0),
        }
    }

    /// The buffer holding `t` and the tensor's byte offset in it.
    fn buffer(&self, t: TensorId) -> (&wgpu::Buffer, u64) {
        let (b, offset, _) = self.storage[self.graph.root(t).0].as_ref().expect("storage assigned").resolve(&self.buffers);
        (b, offset)
    }

    /// Fills graph input `t` with `data` (converted to the input's dtype) before the plan's next run or read.
    ///
    /// The bytes are copied by the plan's own next command encoder, not by `queue.write_buffer`: wgpu
    /// records those into an encoder of its own, and every encoder that ever records a whole plan keeps its
    /// command buffers (one or two per compute pass: ~19 MiB for the SD 1.5 UNet on lavapipe) in wgpu's
    /// encoder pool for good. With one encoder per run, the pool hands the same encoder back every step;
    /// with three (writes, run, readback) they rotate and each comes to hold the UNet's recording.
    pub fn write(&self, t: TensorId, data: &[f32]) -> Result<()> {
        let info = self.graph.tensors.get(t.0).ok_or_else(|| Error::usage("unknown tensor id"))?;
        if !matches!(info.source, Source::Input) {
            return Err(Error::usage(format!("'{}' is not a graph input", info.name)));
        }
        if data.len() != info.desc.numel() {
            return Err(Error::usage(format!(
                "input '{}': {} values given for shape {}",
                info.name,
                data.len(),
                info.desc
            )));
        }
        let mut bytes = encode(info.desc.dtype, data);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        let (buffer, offset) = self.buffer(t);
        self.write_buffer(buffer, offset, &bytes);
        Ok(())
    }

    /// Writes `bytes` (a multiple of 4) at `offset` of `target`, a buffer outside the graph that the next
    /// run uses (an optimizer's scalars), in the same way as [`Plan::write`].
    pub fn write_buffer(&self, target: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        let write = PendingWrite { staging: self.gpu.staging_upload(bytes), target: target.clone(), offset, size: bytes.len() as u64 };
        self.pending_writes.lock().expect("no panics while holding it").push(write);
    }

    /// A command encoder that starts with the pending input writes.
    fn encoder(&self) -> wgpu::CommandEncoder {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        for w in self.pending_writes.lock().expect("no panics while holding it").drain(..) {
            enc.copy_buffer_to_buffer(&w.staging, 0, &w.target, w.offset, w.size);
        }
        enc
    }

    /// Where graph output (or input, or weight) `t` can be read: its buffer, byte offset and byte size.
    fn readable(&self, t: TensorId) -> Result<(&wgpu::Buffer, u64, u64)> {
        let info = self.graph.tensors.get(t.0).ok_or_else(|| Error::usage("unknown tensor id"))?;
        let root = self.graph.root(t);
        let readable = !matches!(self.graph.tensors[root.0].source, Source::Node)
            || self.graph.outputs.iter().any(|o| self.graph.root(*o) == root);
        if !readable {
            return Err(Error::usage(format!(
                "'{}' is an intermediate whose buffer is reused: mark it with Graph::output to read it, or use run_debug",
                info.name
            )));
        }
        let (buffer, offset) = self.buffer(t);
        Ok((buffer, offset, info.desc.bytes()))
    }

    /// Reads a graph output (or input, or weight) back as f32.
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>> {
        let mut enc = self.encoder();
        let readback = self.encode_read(&mut enc, t)?;
        self.submit(enc)?;
        self.finish_reads(&[t], &[readback]).map(|mut v| v.remove(0))
    }

    /// Runs the whole graph and reads `outputs` back, all in one command encoder: what a loop that runs a
    /// plan again and again (denoising steps, training steps) should call (see [`Plan::write`] for why).
    pub fn run_and_read(&self, outputs: &[TensorId]) -> Result<Vec<Vec<f32>>> {
        let mut enc = self.encoder();
        self.encode_nodes(&mut enc, 0..self.nodes.len(), None);
        self.submit_reading(enc, outputs)
    }

    /// Encodes reads of `outputs` at the end of `enc`, submits it and returns their values.
    fn submit_reading(&self, mut enc: wgpu::CommandEncoder, outputs: &[TensorId]) -> Result<Vec<Vec<f32>>> {
        let readbacks = outputs.iter().map(|&t| self.encode_read(&mut enc, t)).collect::<Result<Vec<_>>>()?;
        self.submit(enc)?;
        self.finish_reads(outputs, &readbacks)
    }

    fn encode_read(&self, enc: &mut wgpu::CommandEncoder, t: TensorId) -> Result<Readback> {
        let (buffer, offset, bytes) = self.readable(t)?;
        Ok(self.gpu.encode_readback(enc, buffer, offset, bytes.max(4).next_multiple_of(4)))
    }

    fn finish_reads(&self, tensors: &[TensorId], readbacks: &[Readback]) -> Result<Vec<Vec<f32>>> {
        let raw = self.gpu.read_back(readbacks)?;
        Ok(tensors
            .iter()
            .zip(raw)
            .map(|(&t, raw)| {
                let desc = self.graph.desc(t);
                decode(desc.dtype, &raw[..desc.bytes() as usize])
            })
            .collect())
    }

    /// Encodes the dispatches of nodes `range` into compute passes on `enc`: one pass, plus a new one after
    /// each dispatch's texture copies (copies cannot sit inside a pass). With `timestamps` (query set,
    /// index), the first pass writes the start time at `index` and the last the end time at `index + 1`.
    fn encode_nodes(&self, enc: &mut wgpu::CommandEncoder, range: std::ops::Range<usize>, timestamps: Option<(&wgpu::QuerySet, u32)>) {
        let dispatches: Vec<&PlannedDispatch> = self.nodes[range].iter().flat_map(|n| &n.dispatches).collect();
        // Each pass starts at a dispatch with copies (or the first).
        let mut starts: Vec<usize> = (1..dispatches.len()).filter(|&i| !dispatches[i].copies.is_empty()).collect();
        starts.insert(0, 0);
        for (j, &start) in starts.iter().enumerate() {
            let end = starts.get(j + 1).copied().unwrap_or(dispatches.len());
            for c in dispatches.get(start).map_or(&[][..], |d| &d.copies[..]) {
                c.encode(enc);
            }
            // Passes between the first and the last write no timestamps (wgpu refuses a write with neither).
            let (first, last) = (j == 0, j + 1 == starts.len());
            let timestamp_writes = timestamps.filter(|_| first || last).map(|(query_set, index)| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: first.then_some(index),
                end_of_pass_write_index: last.then_some(index + 1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("graph"), timestamp_writes });
            for d in dispatches.get(start..end).unwrap_or_default() {
                pass.set_pipeline(&d.pipeline.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
            }
        }
    }

    fn submit(&self, enc: wgpu::CommandEncoder) -> Result<()> {
        let scope = self.gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.gpu.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu { context: " running plan".into(), msg: e.to_string() });
        }
        Ok(())
    }

    /// Runs the whole graph: one encoder, one compute pass, one submit. Returns without waiting; `read`
    /// waits for the results.
    pub fn run(&self) -> Result<()> {
        let mut enc = self.encoder();
        self.encode_nodes(&mut enc, 0..self.nodes.len(), None);
        self.submit(enc)
    }

    /// [`Plan::run`], then `extra` encodes more dispatches into the same compute pass (a training step's
    /// optimizer update) and `after` more commands after the pass (buffer copies), then `reads` are read
    /// back: one encoder, one submit.
    pub fn run_with(&self, extra: &dyn Fn(&mut wgpu::ComputePass), after: &dyn Fn(&mut wgpu::CommandEncoder), reads: &[TensorId]) -> Result<Vec<Vec<f32>>> {
        let mut enc = self.encoder();
        self.encode_nodes(&mut enc, 0..self.nodes.len(), None);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("graph extra"), timestamp_writes: None });
            extra(&mut pass);
        }
        after(&mut enc);
        self.submit_reading(enc, reads)
    }

    /// Runs node by node and reads every node's output back, in order.
    pub fn run_debug(&self) -> Result<Vec<NodeDump>> {
        let mut dumps = Vec::new();
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let mut enc = self.encoder();
            self.encode_nodes(&mut enc, i..i + 1, None);
            let desc = self.graph.desc(node.output).clone();
            let (buffer, offset) = self.buffer(node.output);
            let readback = self.gpu.encode_readback(&mut enc, buffer, offset, desc.bytes().max(4).next_multiple_of(4));
            self.submit(enc)?;
            let raw = self.gpu.read_back(&[readback])?.remove(0);
            let values = decode(desc.dtype, &raw[..desc.bytes() as usize]);
            dumps.push(NodeDump { name: node.name.clone(), kind: node.op.kind(), desc, values });
        }
        Ok(dumps)
    }

    /// Runs the graph once with every node in its own pass and returns each node's GPU time in seconds,
    /// from timestamp queries when the adapter has them, else from the host clock around a wait per node.
    pub fn profile(&self) -> Result<Vec<f64>> {
        let n = self.nodes.len();
        if !self.gpu.caps.timestamp_query || n == 0 {
            let mut times = Vec::new();
            for i in 0..n {
                let t0 = std::time::Instant::now();
                let mut enc = self.encoder();
                self.encode_nodes(&mut enc, i..i + 1, None);
                self.submit(enc)?;
                self.gpu.wait()?;
                times.push(t0.elapsed().as_secs_f64());
            }
            return Ok(times);
        }
        // A query set holds at most 4096 timestamps: time the nodes in chunks (a training step has thousands).
        const NODES_PER_SET: usize = 2048;
        let period = self.gpu.queue.get_timestamp_period() as f64 * 1e-9;
        let mut times = Vec::with_capacity(n);
        for first in (0..n).step_by(NODES_PER_SET) {
            let m = NODES_PER_SET.min(n - first);
            let count = 2 * m as u32;
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 8 * count as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut enc = self.encoder();
            for i in 0..m {
                // A node's time leaves out the texture copies before its first dispatch (they precede the pass).
                self.encode_nodes(&mut enc, first + i..first + i + 1, Some((&qs, 2 * i as u32)));
            }
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            let readback = self.gpu.encode_readback(&mut enc, &resolve, 0, 8 * count as u64);
            self.submit(enc)?;
            let raw = self.gpu.read_back(&[readback])?.remove(0);
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            times.extend((0..m).map(|i| ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period));
        }
        Ok(times)
    }
}
