//! The driver's compiled pipelines kept on disk between runs (wgpu's `PipelineCache`, Vulkan only): a
//! driver that compiles every shader when first used (lavapipe JIT-compiles each kernel with LLVM) then
//! starts warm. The file lives in `$XDG_CACHE_HOME/wgsd` (else `~/.cache/wgsd`), one per adapter and
//! driver (wgpu's key); `WGSD_PIPELINE_CACHE=off` disables it. A stale or corrupt file is ignored by the
//! driver (wgpu validates its header against the device), and the file is written atomically.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// An open pipeline cache and where it is saved.
pub struct DiskPipelineCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Set when a pipeline was created through the cache since it was loaded or saved.
    dirty: AtomicBool,
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("wgsd"))
}

impl DiskPipelineCache {
    /// The cache for this device, when the adapter supports one and it is not disabled.
    pub fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<DiskPipelineCache> {
        if std::env::var("WGSD_PIPELINE_CACHE").is_ok_and(|v| v == "off" || v == "0") {
            return None;
        }
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let path = cache_dir()?.join(wgpu::util::pipeline_cache_key(info)?);
        let data = std::fs::read(&path).ok();
        // SAFETY: the data is only ever what `get_data` wrote for a device with the same key; wgpu checks
        // its header (vendor, device, driver, size) and `fallback` makes a mismatch start an empty cache.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor { label: Some("wgsd"), data: data.as_deref(), fallback: true })
        };
        Some(DiskPipelineCache { cache, path, dirty: AtomicBool::new(false) })
    }

    /// Notes that a pipeline went through the cache (so it is worth saving).
    pub fn touched(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache if pipelines were added; failures only cost the next run its warm start.
    pub fn save(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let Some(data) = self.cache.get_data() else { return };
        let Some(dir) = self.path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &data).is_ok() && std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
