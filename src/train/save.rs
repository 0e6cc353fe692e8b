//! Writing training outputs so that a crash never leaves a half-written file where a good one was: each
//! file is written under a temporary name in its own folder, flushed to disk, and only then moved to its
//! name — renamed over the old file when overwriting is asked for, hard-linked into place otherwise (which
//! fails if the name was taken meanwhile, so an existing file is never replaced unasked). Tensors are
//! serialised with the `safetensors` crate; large files are streamed one tensor at a time.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, TensorView, View};

use crate::error::{Error, Result};

/// A named f32 tensor held on the host (trained parameters read back from the GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    pub fn new(name: impl Into<String>, shape: &[usize], values: Vec<f32>) -> Self {
        HostTensor { name: name.into(), shape: shape.to_vec(), values }
    }

    /// Errors when the values do not fill the shape, naming the tensor.
    pub fn check(&self) -> Result<()> {
        let n: usize = self.shape.iter().product();
        if n != self.values.len() {
            return Err(Error::usage(format!(
                "tensor '{}': {} values for shape {:?} ({n} expected)",
                self.name,
                self.values.len(),
                self.shape
            )));
        }
        Ok(())
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::usage(format!("cannot {what} {}: {e}", path.display()))
}

/// The error for a file that exists and may not be replaced.
pub fn exists_error(path: &Path) -> Error {
    Error::usage(format!("{} already exists; pass --overwrite to replace it", path.display()))
}

/// A temporary name beside `path`, unique in this process (hidden, so a half-written file is never
/// mistaken for an output).
fn temp_path(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.wgsd-tmp-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Flushes a written file's data to disk (a read-only handle suffices on Unix; elsewhere a writable one).
fn sync_file(path: &Path) -> Result<()> {
    let f = OpenOptions::new().write(true).open(path).or_else(|_| File::open(path)).map_err(|e| io_err(path, "open", e))?;
    f.sync_all().map_err(|e| io_err(path, "flush", e))
}

/// Makes a rename durable (Unix; some file systems refuse to sync folders, which is harmless here).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Writes `path` atomically: `write` fills a temporary file (given its path) in the same folder, which is
/// then synced and moved to `path`. Without `overwrite` an existing `path` is an error (checked before
/// `write` runs, so no work is wasted, and again when moving). On any error the temporary file is removed
/// and `path` is untouched.
pub fn write_atomic_with(path: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(exists_error(path));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::usage(format!("cannot write {}: the folder {} does not exist", path.display(), dir.display())));
    }
    let tmp = temp_path(path);
    let result = (|| {
        write(&tmp)?;
        sync_file(&tmp)?;
        if overwrite {
            fs::rename(&tmp, path).map_err(|e| io_err(path, "write", e))?;
        } else {
            match fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists_error(path)),
                // File systems without hard links: check, then rename (a small window, but no better exists).
                Err(_) => {
                    if fs::symlink_metadata(path).is_ok() {
                        return Err(exists_error(path));
                    }
                    fs::rename(&tmp, path).map_err(|e| io_err(path, "write", e))?;
                }
            }
        }
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    write_atomic_with(path, overwrite, |tmp| fs::write(tmp, bytes).map_err(|e| io_err(tmp, "write", e)))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A safetensors file of f32 tensors in memory (small files: adapters).
pub fn safetensors_bytes(tensors: &[HostTensor], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.check().map(|_| f32_bytes(&t.values))).collect::<Result<_>>()?;
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::usage(format!("tensor '{}': {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| Error::usage(format!("cannot serialise safetensors: {e}")))?;
    Ok(sorted_header(bytes))
}

/// The same file with its JSON header's keys in sorted order: the `safetensors` crate writes the metadata
/// map in hash order, which would make two runs that trained identical tensors write different bytes.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes[8..8 + n]) else { return bytes };
    // serde_json's maps are ordered by key; the data offsets inside are relative, so they stay valid.
    let mut json = serde_json::to_vec(&header).expect("a JSON value serialises");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Reads one tensor's f32 values when the file is written.
pub type ReadValues<'a> = Box<dyn Fn() -> Result<Vec<f32>> + 'a>;

/// A tensor whose values are read only when it is written, so a multi-GiB file never sits in memory.
/// A read error cannot pass through `View::data`; it is kept and reported after serialisation.
struct LazyF32<'a> {
    name: String,
    shape: Vec<usize>,
    read: ReadValues<'a>,
    error: &'a RefCell<Option<Error>>,
}

impl View for LazyF32<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let n = self.data_len();
        match (self.read)() {
            Ok(v) if v.len() * 4 == n => Cow::Owned(f32_bytes(&v)),
            other => {
                let mut slot = self.error.borrow_mut();
                if slot.is_none() {
                    *slot = Some(match other {
                        Err(e) => e,
                        Ok(v) => Error::usage(format!("tensor '{}': {} values for shape {:?}", self.name, v.len(), self.shape)),
                    });
                }
                Cow::Owned(vec![0; n])
            }
        }
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

/// Writes a safetensors file of f32 tensors atomically, reading each tensor's values only when it is
/// written. Any read error aborts the write (the temporary file is removed, `path` untouched).
pub fn write_safetensors_streamed(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, ReadValues<'_>)>,
    metadata: Option<HashMap<String, String>>,
    overwrite: bool,
) -> Result<()> {
    let error = RefCell::new(None);
    write_atomic_with(path, overwrite, |tmp| {
        let views: Vec<(String, LazyF32)> =
            tensors.into_iter().map(|(name, shape, read)| (name.clone(), LazyF32 { name, shape, read, error: &error })).collect();
        safetensors::serialize_to_file(views, metadata, tmp).map_err(|e| Error::usage(format!("cannot write {}: {e}", path.display())))?;
        // The crate writes through a private temporary file (mode 0600); outputs are ordinary files.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o644));
        }
        match error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}
