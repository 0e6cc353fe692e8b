//! Weights from safetensors files, memory-mapped and read by tensor name.
//!
//! The diffusers key is the weight API: model code asks for `down_blocks.0.resnets.0.conv1.weight` with the
//! shape it expects. Names real checkpoints use instead (legacy VAE attention names, a missing `text_model.`
//! prefix) are tried from one alias table; a `(C, C, 1, 1)` conv-shaped weight is accepted where a `(C, C)`
//! linear one is expected. Anything else — a missing key, another shape, a truncated or corrupt file — is an
//! error naming the file, the key and both shapes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::error::{Error, Result};
use crate::models::single_file::{self, NameMap};
use crate::tensor::DType;

/// One memory-mapped safetensors file.
pub struct WeightFile {
    path: PathBuf,
    mmap: Backing,
    data_start: usize,
    meta: Metadata,
}

/// The file's bytes: memory-mapped, or held (files built in memory, fuzzing).
enum Backing {
    Mapped(Mmap),
    Held(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Held(v) => v,
        }
    }
}

pub(crate) fn shape_str(s: &[usize]) -> String {
    format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

impl WeightFile {
    pub fn open(path: &Path) -> Result<WeightFile> {
        let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only; a file changed underneath us while loading is the user's problem,
        // as with every memory-mapped loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
        Self::parse(path, Backing::Mapped(mmap))
    }

    /// A safetensors file held in memory; `label` names it in errors.
    pub fn from_bytes(label: &Path, bytes: Vec<u8>) -> Result<WeightFile> {
        Self::parse(label, Backing::Held(bytes))
    }

    /// Reads and checks the header: every tensor's bytes must lie inside the file (a truncated download
    /// passes the header check alone and would fail only when a tensor is read).
    fn parse(path: &Path, mmap: Backing) -> Result<WeightFile> {
        let err = |msg: String| Error::Weights { file: path.display().to_string(), msg };
        let (n, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            err(format!("not a valid safetensors file (truncated or corrupt?): {e}"))
        })?;
        let data_start = 8 + n;
        let needed = meta.tensors().values().map(|t| t.data_offsets.1).max().unwrap_or(0);
        let have = mmap.len().saturating_sub(data_start);
        if needed > have {
            return Err(err(format!("truncated: the header describes {needed} bytes of tensor data but the file holds {have}")));
        }
        Ok(WeightFile { path: path.to_path_buf(), mmap, data_start, meta })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> Vec<String> {
        self.meta.tensors().keys().cloned().collect()
    }

    /// Shape of a stored tensor.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.meta.info(key).map(|i| i.shape.clone())
    }

    /// A model weight as f32: like [`WeightFile::read_f32`], but integer tensors are refused (an integer
    /// tensor where a weight belongs is a wrong or damaged file, not something to convert).
    pub fn read_weight(&self, key: &str) -> Result<Vec<f32>> {
        if let Some(info) = self.meta.info(key) {
            if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
                return Err(Error::Weights {
                    file: self.path.display().to_string(),
                    msg: format!("tensor '{key}' has dtype {:?}; weights must be F32, F16 or BF16", info.dtype),
                });
            }
        }
        self.read_f32(key)
    }

    /// A stored tensor as f32 (converted from f16/bf16 when stored so; I64 as well, for fixture ids).
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>> {
        let err = |msg: String| Error::Weights { file: self.path.display().to_string(), msg };
        let info = self.meta.info(key).ok_or_else(|| err(format!("tensor '{key}' not found")))?;
        let (a, b) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + a..self.data_start + b];
        let n: usize = info.shape.iter().product();
        let v: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => return Err(err(format!("tensor '{key}' has dtype {other:?}; weights must be F32, F16 or BF16"))),
        };
        if v.len() != n {
            return Err(err(format!("tensor '{key}': {} values stored for shape {}", v.len(), shape_str(&info.shape))));
        }
        self.release(a, b);
        Ok(v)
    }

    /// Drops the mapped pages of tensor data `a..b` (relative to the data start) from this process once it
    /// has been copied out. The pages stay in the page cache, but no longer count in the process's
    /// resident memory: without this a model's whole file would sit in RSS beside its GPU copy (on a CPU
    /// adapter, where GPU memory is host memory, that doubled the peak).
    ///
    /// The range is widened by [`RELEASE_MARGIN`] each way: the kernel maps a faulting page's neighbours
    /// too (fault-around, 64 KiB by default), so reading one tensor maps the end of the tensor before it,
    /// already released; left alone those edges kept ~19 MiB of the SD 1.5 UNet's file resident.
    fn release(&self, a: usize, b: usize) {
        #[cfg(unix)]
        if let Backing::Mapped(m) = &self.mmap {
            let start = (self.data_start + a).saturating_sub(RELEASE_MARGIN);
            let end = (self.data_start + b + RELEASE_MARGIN).min(m.len());
            // SAFETY: the map is read-only and file-backed, so MADV_DONTNEED discards nothing: a later
            // access (of this range or a neighbour's) faults the same bytes back in from the file.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }
}

/// Bytes around a released tensor's range released with it (see [`WeightFile::release`]).
const RELEASE_MARGIN: usize = 256 << 10;

/// A stored tensor's bytes viewed in its memory-mapped file, without a copy; the process's mapping of them
/// is released when the view is dropped (see [`WeightFile::release`]).
pub struct MappedTensor {
    files: Arc<Vec<WeightFile>>,
    file: usize,
    /// Byte range relative to the file's data start.
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MappedTensor {
    fn as_ref(&self) -> &[u8] {
        let f = &self.files[self.file];
        &f.mmap[f.data_start + self.range.start..f.data_start + self.range.end]
    }
}

impl Drop for MappedTensor {
    fn drop(&mut self) {
        self.files[self.file].release(self.range.start, self.range.end);
    }
}

impl WeightFile {
    /// A stored tensor's dtype and a copy of its bytes as they are in the file.
    pub fn raw(&self, key: &str) -> Option<(Dtype, Vec<u8>)> {
        let info = self.meta.info(key)?;
        let (a, b) = info.data_offsets;
        let bytes = self.mmap[self.data_start + a..self.data_start + b].to_vec();
        self.release(a, b);
        Some((info.dtype, bytes))
    }

    /// A stored tensor as f64 (F64 exactly; F32 / I64 converted), for fixture values that need it.
    pub fn read_f64(&self, key: &str) -> Result<Vec<f64>> {
        let err = |msg: String| Error::Weights { file: self.path.display().to_string(), msg };
        let info = self.meta.info(key).ok_or_else(|| err(format!("tensor '{key}' not found")))?;
        let (a, b) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + a..self.data_start + b];
        match info.dtype {
            Dtype::F64 => Ok(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
            Dtype::I64 => Ok(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()),
            _ => Ok(self.read_f32(key)?.into_iter().map(f64::from).collect()),
        }
    }
}

/// Other names the same weight goes by in real checkpoints, tried in order when the diffusers key is absent.
/// Each entry maps a key fragment to its alternatives.
const ALIASES: &[(&str, &[&str])] = &[
    // SD 2-era VAEs and original exports use the old attention names.
    (".to_q.", &[".query."]),
    (".to_k.", &[".key."]),
    (".to_v.", &[".value."]),
    (".to_out.0.", &[".proj_attn."]),
];

/// Prefixes some exports drop: CLIP text models saved without `text_model.`, safety checkers saved by
/// transformers 5 with one `vision_model.` instead of the published `vision_model.vision_model.`.
const PREFIX_ALIASES: &[(&str, &str)] = &[("text_model.", ""), ("vision_model.vision_model.", "vision_model.")];

/// The candidate names for `key`, the diffusers name first.
pub fn candidates(key: &str) -> Vec<String> {
    let mut out = vec![key.to_string()];
    for (from, tos) in ALIASES {
        if key.contains(from) {
            for to in *tos {
                out.push(key.replacen(from, to, 1));
            }
        }
    }
    for (with, without) in PREFIX_ALIASES {
        let n = out.len();
        for i in 0..n {
            if let Some(rest) = out[i].strip_prefix(with) {
                out.push(format!("{without}{rest}"));
            }
        }
    }
    out
}

/// Whether a tensor stored as `stored` can be used where the model expects `expected`: the same shape, or
/// a `(C, C, 1, 1)` conv weight for a `(C, C)` linear one.
pub(crate) fn shape_accepts(stored: &[usize], expected: &[usize]) -> bool {
    stored == expected || (stored.len() == 4 && stored[2] == 1 && stored[3] == 1 && expected == &stored[..2])
}

/// The weights of one model component, possibly spread over several files (sharded checkpoints), or
/// seeded random values of the right shapes (real-size benchmarks and limit checks without downloads), or
/// one component of an original-LDM single-file checkpoint read through its diffusers → LDM name map.
///
/// Cloning is cheap (the files and tables are shared): a weight keeps a clone to read itself again when
/// `--low-vram` evicts it (see `Param::set_reload`).
#[derive(Clone)]
pub struct Weights {
    files: Arc<Vec<WeightFile>>,
    index: Arc<HashMap<String, usize>>,
    random_seed: Option<u64>,
    single_file: Option<Arc<NameMap>>,
}

impl Weights {
    pub fn open(paths: &[PathBuf]) -> Result<Weights> {
        let files: Vec<WeightFile> = paths.iter().map(|p| WeightFile::open(p)).collect::<Result<_>>()?;
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for n in f.names() {
                index.insert(n, i);
            }
        }
        Ok(Weights { files: Arc::new(files), index: Arc::new(index), random_seed: None, single_file: None })
    }

    /// One component of an LDM single-file checkpoint: diffusers keys are looked up through `map`.
    pub fn single_file(path: &Path, map: NameMap) -> Result<Weights> {
        Ok(Weights {
            files: Arc::new(vec![WeightFile::open(path)?]),
            index: Default::default(),
            random_seed: None,
            single_file: Some(Arc::new(map)),
        })
    }

    /// The single file, when these weights are one component of one.
    pub fn single_file_parts(&self) -> Option<(&NameMap, &WeightFile)> {
        self.single_file.as_deref().map(|m| (m, &self.files[0]))
    }

    /// Random weights for any key asked: uniform in ±1/√fan_in for matrices and kernels, ones (plus a
    /// little noise) for norm scales, small values for biases, so activations stay in a realistic range.
    pub fn random(seed: u64) -> Weights {
        Weights { files: Default::default(), index: Default::default(), random_seed: Some(seed), single_file: None }
    }

    fn random_tensor(seed: u64, key: &str, shape: &[usize]) -> Vec<f32> {
        let h = key.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let mut rng = crate::testing::Rng::new(h);
        let n: usize = shape.iter().product();
        if shape.len() >= 2 {
            let fan_in: usize = shape[1..].iter().product();
            rng.vec(n, 1.0 / (fan_in as f32).sqrt())
        } else if key.ends_with("weight") {
            rng.vec(n, 0.1).into_iter().map(|v| 1.0 + v).collect()
        } else {
            rng.vec(n, 0.02)
        }
    }

    fn file_label(&self) -> String {
        self.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    pub fn contains(&self, key: &str) -> bool {
        if let Some((map, file)) = self.single_file_parts() {
            return single_file::shape(map, file, key).is_some();
        }
        self.random_seed.is_some() || candidates(key).iter().any(|k| self.index.contains_key(k))
    }

    /// Shape stored for `key` (after aliases), if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        if let Some((map, file)) = self.single_file_parts() {
            return single_file::shape(map, file, key);
        }
        candidates(key).iter().find_map(|k| self.index.get(k).and_then(|&i| self.files[i].shape(k)))
    }

    /// The tensor `key` as f16 bytes for upload, shape `expected` as for [`Weights::get`]: a tensor stored
    /// in f16 (an fp16 variant file) is taken as it is; any other is read as f32 and narrowed once, and a
    /// value beyond the f16 range is an error naming the tensor.
    pub fn get_f16(&self, key: &str, expected: &[usize]) -> Result<Vec<u8>> {
        if let Some(view) = self.stored_f16(key, expected) {
            return Ok(view.as_ref().to_vec());
        }
        self.narrowed_f16(key, expected)
    }

    /// [`Weights::get_f16`] without a copy where the file stores the tensor in f16: a view of the mapped
    /// file (what a `--low-vram` bring-in uploads from).
    pub fn get_f16_view(&self, key: &str, expected: &[usize]) -> Result<crate::graph::StoredBytes> {
        match self.stored_f16(key, expected) {
            Some(view) => Ok(Box::new(view)),
            None => Ok(Box::new(self.narrowed_f16(key, expected)?)),
        }
    }

    /// The tensor `key` viewed in its file, when stored in f16 with an accepted shape.
    fn stored_f16(&self, key: &str, expected: &[usize]) -> Option<MappedTensor> {
        if self.random_seed.is_some() || self.single_file.is_some() {
            return None;
        }
        let (name, &fi) = candidates(key).iter().find_map(|k| self.index.get_key_value(k))?;
        let info = self.files[fi].meta.info(name)?;
        if info.dtype != Dtype::F16 || !shape_accepts(&info.shape, expected) {
            return None;
        }
        let (a, b) = info.data_offsets;
        Some(MappedTensor { files: self.files.clone(), file: fi, range: a..b })
    }

    /// Read as f32 and narrowed; a value beyond the f16 range is an error naming the tensor.
    fn narrowed_f16(&self, key: &str, expected: &[usize]) -> Result<Vec<u8>> {
        let data = self.get(key, expected)?;
        crate::precision::narrow_f16(key, &data).map_err(|e| Error::Weights { file: self.file_label(), msg: e.to_string() })
    }

    /// The tensor `key` as f32, which must have shape `expected` (a `(C, C, 1, 1)` tensor is accepted for an
    /// expected `(C, C)`).
    pub fn get(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
        if let Some(seed) = self.random_seed {
            return Ok(Self::random_tensor(seed, key, expected));
        }
        if let Some((map, file)) = self.single_file_parts() {
            return single_file::get(map, file, key, expected);
        }
        let (file, name) = self.locate(key, expected)?;
        file.read_weight(name)
    }

    /// The file and stored name of `key` (after aliases), which must have shape `expected` as for
    /// [`Weights::get`]: what can be checked without reading the tensor's values.
    fn locate(&self, key: &str, expected: &[usize]) -> Result<(&WeightFile, &str)> {
        let names = candidates(key);
        let Some((name, &fi)) = names.iter().find_map(|k| self.index.get_key_value(k)) else {
            let tried = if names.len() > 1 { format!(" (also tried {})", names[1..].join(", ")) } else { String::new() };
            return Err(Error::Weights {
                file: self.file_label(),
                msg: format!("tensor '{key}' of shape {} is missing{tried}", shape_str(expected)),
            });
        };
        let file = &self.files[fi];
        let stored = file.shape(name).unwrap_or_default();
        if !shape_accepts(&stored, expected) {
            return Err(Error::Weights {
                file: file.path.display().to_string(),
                msg: format!(
                    "tensor '{name}' has shape {} but the model expects {}",
                    shape_str(&stored),
                    shape_str(expected)
                ),
            });
        }
        Ok((file, name))
    }

    /// Checks `key` as [`Weights::get`] (`target` f32) or [`Weights::get_f16`] (`target` f16) would, from
    /// the files' headers alone: `Ok(true)` when that is the whole of what a read would check (the tensor
    /// is there, with an accepted shape and a dtype that converts to `target` without fail), `Ok(false)`
    /// when only its values can tell (narrowing to f16 can overflow; random weights have no header), and
    /// the read's error when the header already shows it. `--low-vram` loading skips the read then: the
    /// weight is read when its network is first brought in.
    pub fn check_header(&self, key: &str, expected: &[usize], target: DType) -> Result<bool> {
        if self.random_seed.is_some() {
            return Ok(false);
        }
        let (file, name) = match self.single_file_parts() {
            Some((map, file)) => (file, single_file::locate(map, file, key, expected)?.key),
            None => {
                let (file, name) = self.locate(key, expected)?;
                (file, name.to_string())
            }
        };
        Ok(file.meta.info(&name).is_some_and(|i| converts_safely(i.dtype, target)))
    }
}

/// Whether a tensor stored as `stored` converts to `target` with no possible error: every float type
/// widens to f32 (integers are refused), but only f16 is f16 as it is (f32, bf16 and f64 values can lie
/// beyond the f16 range).
fn converts_safely(stored: Dtype, target: DType) -> bool {
    match target {
        DType::F32 => matches!(stored, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64),
        DType::F16 => stored == Dtype::F16,
    }
}
