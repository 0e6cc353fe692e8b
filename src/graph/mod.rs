//! Record → plan → run. Model code records ops on a [`Graph`]; nothing touches the GPU until a
//! [`Plan`](plan::Plan) is built from it. The graph also evaluates itself on the CPU through each op's CPU
//! twin, which is how the tests check every kernel and how a wrong layer is found by name.

pub mod autodiff;
pub mod op;
pub mod plan;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{DType, TensorDesc};
use op::Op;

/// Handle to a tensor of one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub(crate) usize);

impl TensorId {
    /// Position in the graph's tensor list (the index of `Graph::eval_cpu`'s result).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A weight already on the GPU. Uploaded once and shared by every plan that uses it. Under `--low-vram`
/// a model's weights are moved to host memory between uses ([`Param::offload`]) and put back
/// ([`Param::restore`]) before a plan that needs them is built.
pub struct Param {
    pub name: String,
    pub desc: TensorDesc,
    /// The GPU copy; None while offloaded.
    buffer: RwLock<Option<wgpu::Buffer>>,
    /// The bytes while offloaded.
    offloaded: Mutex<Option<Vec<u8>>>,
    /// How to read the weight's bytes again from its file, while they are what the file holds: an
    /// offload then simply drops the GPU copy (no host copy at all) and a restore reads the file again
    /// (from the page cache, usually). Cleared by any write.
    reload: Mutex<Option<Reload>>,
    /// Host copy, kept only when asked (tests evaluate the graph on the CPU with it).
    pub host: Option<Vec<f32>>,
}

/// Reads a weight's stored bytes again (see [`Param::set_reload`]).
pub type Reload = Box<dyn Fn() -> Result<StoredBytes> + Send + Sync>;

/// A weight's stored bytes read again: a copy, or a view of its memory-mapped file where the file holds
/// them as stored (an f16 weight in an fp16 file), which spares each `--low-vram` bring-in a copy of the
/// network (and the page faults of fresh memory for it).
pub type StoredBytes = Box<dyn AsRef<[u8]> + Send>;

thread_local! {
    /// Params uploaded on this thread inside [`record_params`] (innermost call last).
    static RECORDERS: RefCell<Vec<Vec<Arc<Param>>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (a model's loading) and returns, with its result, every weight uploaded on this thread
/// meanwhile: what `--low-vram` moves in and out as one component.
pub fn record_params<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<Arc<Param>>)> {
    RECORDERS.with(|r| r.borrow_mut().push(Vec::new()));
    let out = f();
    let params = RECORDERS.with(|r| r.borrow_mut().pop()).unwrap_or_default();
    out.map(|t| (t, params))
}

/// Whether a [`record_params`] call is running on this thread (a network loading as one `--low-vram` unit).
pub fn recording_params() -> bool {
    RECORDERS.with(|r| !r.borrow().is_empty())
}

impl Param {
    /// Uploads f32 data, stored as `desc.dtype`.
    pub fn upload(gpu: &Gpu, name: &str, desc: TensorDesc, data: &[f32], keep_host: bool) -> Result<Arc<Param>> {
        if data.len() != desc.numel() {
            return Err(Error::usage(format!(
                "weight '{name}': {} values given for shape {desc}",
                data.len()
            )));
        }
        let bytes = encode_checked(name, desc.dtype, data)?;
        // The host copy holds what the GPU holds: f16-rounded values for f16 storage.
        let host = keep_host.then(|| if desc.dtype == DType::F32 { data.to_vec() } else { decode(desc.dtype, &bytes) });
        Ok(Self::upload_bytes(gpu, name, desc, &bytes, host))
    }

    /// Uploads data already encoded as `desc.dtype` (an f16 weight file read as it is stored).
    pub fn upload_bytes(gpu: &Gpu, name: &str, desc: TensorDesc, bytes: &[u8], host: Option<Vec<f32>>) -> Arc<Param> {
        debug_assert_eq!(bytes.len() as u64, desc.bytes());
        let buffer = gpu.upload(name, bytes, wgpu::BufferUsages::empty());
        let p = Arc::new(Param {
            name: name.to_string(),
            desc,
            buffer: RwLock::new(Some(buffer)),
            offloaded: Mutex::new(None),
            reload: Mutex::new(None),
            host,
        });
        Self::record(&p);
        p
    }

    /// A weight that starts off the GPU (`--low-vram` loading): `reload` gives its bytes when its network
    /// is first brought in.
    pub fn off_gpu(name: &str, desc: TensorDesc, reload: Reload) -> Arc<Param> {
        let p = Arc::new(Param {
            name: name.to_string(),
            desc,
            buffer: RwLock::new(None),
            offloaded: Mutex::new(None),
            reload: Mutex::new(Some(reload)),
            host: None,
        });
        Self::record(&p);
        p
    }

    /// Adds `p` to the innermost [`record_params`] call on this thread, if any.
    fn record(p: &Arc<Param>) {
        RECORDERS.with(|r| {
            if let Some(top) = r.borrow_mut().last_mut() {
                top.push(p.clone());
            }
        });
    }

    /// The GPU buffer (a cheap handle). An error while the weight is offloaded: a plan was built for a
    /// component `--low-vram` had not put back.
    pub fn buffer(&self) -> Result<wgpu::Buffer> {
        self.buffer
            .read()
            .map_err(|_| Error::usage("a weight's lock was poisoned"))?
            .clone()
            .ok_or_else(|| Error::usage(format!("weight '{}' is off the GPU (--low-vram) and was not brought back before use", self.name)))
    }

    /// Lets [`Param::offload`] drop the GPU copy outright: `reload` reads the same bytes from the weight's
    /// file. Only for weights nothing writes on the GPU (not for training, whose optimizer updates them
    /// in place); [`Param::write`] forgets it.
    pub fn set_reload(&self, reload: Reload) {
        if let Ok(mut r) = self.reload.lock() {
            *r = Some(reload);
        }
    }

    /// Releases the GPU buffer (freed once no plan holds it), keeping a host copy unless the weight can be
    /// read again from its file.
    pub fn offload(&self, gpu: &Gpu) -> Result<()> {
        let mut slot = self.buffer.write().map_err(|_| Error::usage("a weight's lock was poisoned"))?;
        if let Some(buf) = slot.as_ref() {
            let from_file = self.reload.lock().map_err(|_| Error::usage("a weight's lock was poisoned"))?.is_some();
            if !from_file {
                let bytes = gpu.read_bytes(buf, 0, self.desc.bytes().max(4).next_multiple_of(4))?;
                *self.offloaded.lock().map_err(|_| Error::usage("a weight's lock was poisoned"))? = Some(bytes);
            }
            *slot = None;
        }
        Ok(())
    }

    /// Uploads an offloaded weight again (from its host copy or its file); nothing to do when it is on
    /// the GPU.
    pub fn restore(&self, gpu: &Gpu) -> Result<()> {
        let mut slot = self.buffer.write().map_err(|_| Error::usage("a weight's lock was poisoned"))?;
        if slot.is_none() {
            let bytes = self.bytes_off_gpu(true)?;
            *slot = Some(gpu.upload(&self.name, (*bytes).as_ref(), wgpu::BufferUsages::empty()));
        }
        Ok(())
    }

    /// The stored bytes of an offloaded weight: its host copy (taken when `take`), else read from its file.
    fn bytes_off_gpu(&self, take: bool) -> Result<StoredBytes> {
        let poisoned = || Error::usage("a weight's lock was poisoned");
        let mut held = self.offloaded.lock().map_err(|_| poisoned())?;
        let copy = if take { held.take() } else { held.clone() };
        if let Some(bytes) = copy {
            return Ok(Box::new(bytes));
        }
        match self.reload.lock().map_err(|_| poisoned())?.as_ref() {
            Some(reload) => reload(),
            None => Err(Error::usage(format!("weight '{}' has neither a GPU nor a host copy", self.name))),
        }
    }

    /// Bytes of the host copy kept while offloaded (0 when on the GPU, or evicted and read again from its
    /// file when needed).
    pub fn host_copy_bytes(&self) -> usize {
        self.offloaded.lock().map(|o| o.as_ref().map_or(0, |b| b.len())).unwrap_or(0)
    }

    /// Whether the weight is on the GPU.
    pub fn resident(&self) -> bool {
        self.buffer.read().map(|b| b.is_some()).unwrap_or(false)
    }
}

impl Param {
    /// Overwrites the weight's values (a training run restoring or setting parameters, a LoRA merge); an
    /// offloaded weight has its host copy overwritten.
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.desc.numel() {
            return Err(Error::usage(format!("weight '{}': {} values given for shape {}", self.name, data.len(), self.desc)));
        }
        let mut bytes = encode_checked(&self.name, self.desc.dtype, data)?;
        bytes.resize(bytes.len().next_multiple_of(4), 0); // writes are whole words
        // The weight no longer matches its file: an offload must keep its bytes from now on.
        *self.reload.lock().map_err(|_| Error::usage("a weight's lock was poisoned"))? = None;
        let slot = self.buffer.read().map_err(|_| Error::usage("a weight's lock was poisoned"))?;
        match slot.as_ref() {
            Some(buf) => gpu.queue.write_buffer(buf, 0, &bytes),
            None => *self.offloaded.lock().map_err(|_| Error::usage("a weight's lock was poisoned"))? = Some(bytes),
        }
        Ok(())
    }

    /// Reads the weight's current values back.
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = self.desc.bytes();
        let raw: StoredBytes = match self.buffer.read().map_err(|_| Error::usage("a weight's lock was poisoned"))?.as_ref() {
            Some(buf) => Box::new(gpu.read_bytes(buf, 0, bytes.max(4).next_multiple_of(4))?),
            None => self.bytes_off_gpu(false)?,
        };
        let raw = (*raw).as_ref();
        if (raw.len() as u64) < bytes {
            return Err(Error::usage(format!("weight '{}' has neither a GPU nor a host copy", self.name)));
        }
        Ok(decode(self.desc.dtype, &raw[..bytes as usize]))
    }
}

impl Param {
    /// Rows `rows` of a 2-D weight as f32 (`[rows.len(), cols]`). Off the GPU only those rows are decoded,
    /// from the weight's host copy or its file (a view of an f16 file touches just their pages); on the
    /// GPU the whole weight is read back.
    pub fn read_rows(&self, gpu: &Gpu, rows: &[usize]) -> Result<Vec<f32>> {
        let (n, cols) = match self.desc.shape[..] {
            [n, cols] => (n, cols),
            _ => return Err(Error::usage(format!("weight '{}' of shape {} has no rows to read", self.name, self.desc))),
        };
        if let Some(&r) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::usage(format!("row {r} of weight '{}', which has {n}", self.name)));
        }
        if self.resident() {
            let all = self.read(gpu)?;
            return Ok(rows.iter().flat_map(|&r| all[r * cols..(r + 1) * cols].iter().copied()).collect());
        }
        let row_bytes = cols * self.desc.dtype.size_bytes() as usize;
        let pick = |bytes: &[u8]| -> Result<Vec<f32>> {
            if bytes.len() < n * row_bytes {
                return Err(Error::usage(format!("weight '{}' has neither a GPU nor a host copy", self.name)));
            }
            Ok(rows.iter().flat_map(|&r| decode(self.desc.dtype, &bytes[r * row_bytes..(r + 1) * row_bytes])).collect())
        };
        // The host copy is read in place (bytes_off_gpu would copy all of it).
        if let Some(held) = self.offloaded.lock().map_err(|_| Error::usage("a weight's lock was poisoned"))?.as_deref() {
            return pick(held);
        }
        let stored = self.bytes_off_gpu(false)?;
        pick((*stored).as_ref())
    }
}

/// f32 host values → bytes of `dtype`.
pub fn encode(dtype: DType, data: &[f32]) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(data).to_vec(),
        DType::F16 => data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
    }
}

/// f32 host values → bytes of `dtype`; a value beyond the f16 range is an error naming weight `name`.
pub fn encode_checked(name: &str, dtype: DType, data: &[f32]) -> Result<Vec<u8>> {
    match dtype {
        DType::F32 => Ok(encode(dtype, data)),
        DType::F16 => crate::precision::narrow_f16(name, data),
    }
}

/// Bytes of `dtype` → f32 host values.
pub fn decode(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(bytes),
        DType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
    }
}

pub(crate) enum Source {
    /// Written by the user before each run.
    Input,
    /// A weight uploaded beforehand.
    Param(Arc<Param>),
    /// A small table known at record time (frequencies, masks), uploaded when the plan is built.
    Constant(Arc<Vec<f32>>),
    /// The output of a node.
    Node,
    /// Another tensor's storage seen with a different shape.
    View(TensorId),
}

pub(crate) struct TensorInfo {
    pub name: String,
    pub desc: TensorDesc,
    pub source: Source,
}

pub struct Node {
    pub name: String,
    /// Shared so backward rules can record new nodes while holding their op.
    pub op: Arc<dyn Op>,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

#[derive(Default)]
pub struct Graph {
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<TensorId>,
    /// Recomputable node ranges for gradient checkpointing (see `autodiff`).
    pub(crate) segments: Vec<std::ops::Range<usize>>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, name: &str, desc: TensorDesc, source: Source) -> TensorId {
        self.tensors.push(TensorInfo { name: name.to_string(), desc, source });
        TensorId(self.tensors.len() - 1)
    }

    /// A tensor the user fills before each run (`Plan::write`).
    pub fn input(&mut self, name: &str, desc: TensorDesc) -> TensorId {
        self.push(name, desc, Source::Input)
    }

    /// A weight already uploaded to the GPU.
    pub fn param(&mut self, p: &Arc<Param>) -> TensorId {
        self.push(&p.name, p.desc.clone(), Source::Param(p.clone()))
    }

    /// Every tensor of this graph that reads weight `p` (a layer called twice reads it twice).
    pub fn param_uses(&self, p: &Arc<Param>) -> Vec<TensorId> {
        (0..self.tensors.len())
            .filter(|&i| matches!(&self.tensors[i].source, Source::Param(q) if Arc::ptr_eq(p, q)))
            .map(TensorId)
            .collect()
    }

    /// A small constant known at record time (uploaded with the plan).
    pub fn constant(&mut self, name: &str, desc: TensorDesc, data: Vec<f32>) -> Result<TensorId> {
        if data.len() != desc.numel() {
            return Err(Error::usage(format!("constant '{name}': {} values given for shape {desc}", data.len())));
        }
        Ok(self.push(name, desc, Source::Constant(Arc::new(data))))
    }

    /// Marks a tensor as a result: it keeps its own buffer and can be read after a run.
    pub fn output(&mut self, t: TensorId) {
        if !self.outputs.contains(&t) {
            self.outputs.push(t);
        }
    }

    pub fn desc(&self, t: TensorId) -> &TensorDesc {
        &self.tensors[t.0].desc
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t.0].desc.shape
    }

    pub fn name(&self, t: TensorId) -> &str {
        &self.tensors[t.0].name
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The same storage with another shape of equal element count (no copy).
    pub fn reshape(&mut self, t: TensorId, shape: &[usize]) -> Result<TensorId> {
        let d = self.desc(t).clone();
        let n: usize = shape.iter().product();
        if n != d.numel() {
            return Err(Error::shape("reshape", format!("cannot view {d} as {shape:?}: element counts differ")));
        }
        let name = format!("{}.view", self.name(t));
        Ok(self.push(&name, TensorDesc::new(shape, d.dtype), Source::View(self.root(t))))
    }

    /// The tensor that owns the storage behind `t` (itself unless `t` is a view).
    pub(crate) fn root(&self, mut t: TensorId) -> TensorId {
        while let Source::View(r) = self.tensors[t.0].source {
            t = r;
        }
        t
    }

    /// Records `op` applied to `inputs` under the node name `name` (diffusers' module path, ideally).
    /// The op checks its inputs now, so a mistake surfaces here with the op, node and shapes named.
    pub fn op(&mut self, name: &str, op: impl Op + 'static, inputs: &[TensorId]) -> Result<TensorId> {
        for &t in inputs {
            if t.0 >= self.tensors.len() {
                return Err(Error::usage(format!("{name}: tensor id {} is not from this graph", t.0)));
            }
        }
        let descs: Vec<&TensorDesc> = inputs.iter().map(|t| self.desc(*t)).collect();
        let out = op.infer(&descs).map_err(|e| match e {
            Error::Shape { op, msg } => Error::Shape { op: format!("{op} '{name}'"), msg },
            Error::DType { op, msg } => Error::DType { op: format!("{op} '{name}'"), msg },
            other => other,
        })?;
        let id = self.push(name, out, Source::Node);
        self.nodes.push(Node { name: name.to_string(), op: Arc::new(op), inputs: inputs.to_vec(), output: id });
        Ok(id)
    }

    /// This graph with every node whose op [expands](crate::graph::op::Op::expand) on this device replaced,
    /// in place, by the nodes of its expansion. Tensor ids stay valid: the expansion's new tensors are
    /// appended and its last node writes the replaced node's output tensor.
    pub(crate) fn expanded(mut self, limits: &crate::graph::op::DeviceLimits) -> Result<Graph> {
        let mut folds = crate::kernels::winograd::norm_folds(&self, limits);
        let old = std::mem::take(&mut self.nodes);
        // First new node of each old node (and the end), to carry checkpoint segments over.
        let mut start = Vec::with_capacity(old.len() + 1);
        let mut folded_norms = std::collections::HashMap::new();
        for (i, node) in old.into_iter().enumerate() {
            start.push(self.nodes.len());
            if let Some((conv, norm)) = folds.remove(&i) {
                // A GroupNorm that conv node `conv` applies as it loads: not computed on its own.
                folded_norms.insert(conv, (norm, node.inputs));
                continue;
            }
            let expansion = match folded_norms.remove(&i) {
                Some((norm, norm_inputs)) => {
                    let fold = crate::kernels::winograd::FoldedNorm { norm, inputs: &norm_inputs };
                    Some(crate::kernels::winograd::expand_normed_conv(&*node.op, &mut self, &node.name, &node.inputs, limits, fold)?)
                }
                None => node.op.expand(&mut self, &node.name, &node.inputs, limits)?,
            };
            let Some(t) = expansion else {
                self.nodes.push(node);
                continue;
            };
            let last = self.nodes.len() - 1;
            let mine = self.nodes.len() > start[start.len() - 1] && self.nodes[last].output == t && t.0 == self.tensors.len() - 1;
            if !mine || self.desc(t) != self.desc(node.output) {
                return Err(Error::usage(format!(
                    "{} '{}': its expansion does not end in a node writing {}",
                    node.op.kind(),
                    node.name,
                    self.desc(node.output)
                )));
            }
            // The last node writes the original output; its own output tensor (the newest) is dropped.
            self.nodes[last].output = node.output;
            self.tensors.pop();
        }
        start.push(self.nodes.len());
        for seg in &mut self.segments {
            *seg = start[seg.start]..start[seg.end];
        }
        Ok(self)
    }

    /// Evaluates the graph with the CPU twins. `inputs` gives the values of the graph inputs; params use
    /// their host copies. Returns the value of every tensor (views included), indexed by `TensorId`.
    pub fn eval_cpu(&self, inputs: &[(TensorId, &[f32])]) -> Result<Vec<Option<Vec<f32>>>> {
        let mut vals: Vec<Option<Vec<f32>>> = vec![None; self.tensors.len()];
        for (t, data) in inputs {
            if data.len() != self.desc(*t).numel() {
                return Err(Error::usage(format!(
                    "input '{}': {} values given for shape {}",
                    self.name(*t),
                    data.len(),
                    self.desc(*t)
                )));
            }
            vals[t.0] = Some(data.to_vec());
        }
        for (i, info) in self.tensors.iter().enumerate() {
            if let Source::Constant(c) = &info.source {
                vals[i] = Some(c.as_ref().clone());
            }
            if let Source::Param(p) = &info.source {
                let host = p.host.as_ref().ok_or_else(|| {
                    Error::usage(format!("weight '{}' has no host copy for CPU evaluation", p.name))
                })?;
                vals[i] = Some(host.clone());
            }
        }
        // Views created before their root has a value are filled lazily.
        let value = |vals: &Vec<Option<Vec<f32>>>, t: TensorId| -> Result<Vec<f32>> {
            vals[self.root(t).0]
                .clone()
                .ok_or_else(|| Error::usage(format!("tensor '{}' has no value (input not given?)", self.name(t))))
        };
        for node in &self.nodes {
            let ins: Vec<Vec<f32>> = node.inputs.iter().map(|t| value(&vals, *t)).collect::<Result<_>>()?;
            let refs: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
            let descs: Vec<&TensorDesc> = node.inputs.iter().map(|t| self.desc(*t)).collect();
            vals[node.output.0] = Some(node.op.cpu(&refs, &descs, self.desc(node.output)));
        }
        for (i, info) in self.tensors.iter().enumerate() {
            if let Source::View(_) = info.source {
                vals[i] = vals[self.root(TensorId(i)).0].clone();
            }
        }
        Ok(vals)
    }
}
