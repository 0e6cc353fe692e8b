//! The on-disk pipeline cache: written when a device that compiled pipelines is dropped, read back by the
//! next device, and a corrupt file costs only the warm start. Its own test binary: it sets
//! `XDG_CACHE_HOME` for the process.

use std::sync::Arc;

use wgsd::gpu::{Gpu, GpuOptions};
use wgsd::graph::plan::Plan;
use wgsd::graph::Graph;
use wgsd::tensor::TensorDesc;

/// Builds and runs a small plan (so pipelines are compiled) and returns its output.
fn run_silu(gpu: &Arc<Gpu>) -> Vec<f32> {
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[8]));
    let y = g.silu("y", x).unwrap();
    g.output(y);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    plan.write(x, &[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    plan.run().unwrap();
    plan.read(y).unwrap()
}

#[test]
fn compiled_pipelines_survive_the_process() {
    let home = std::env::temp_dir().join(format!("wgsd-pcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::env::set_var("XDG_CACHE_HOME", &home);
    let gpu = Arc::new(Gpu::new(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("{e}")));
    let supported = gpu.device.features().contains(wgpu::Features::PIPELINE_CACHE);
    let first = run_silu(&gpu);
    drop(gpu);
    let files: Vec<_> = std::fs::read_dir(home.join("wgsd")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    if !supported {
        eprintln!("SKIPPED: this adapter has no pipeline cache (wgpu supports one on Vulkan only); nothing is written");
        assert!(files.is_empty());
        return;
    }
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("wgpu_pipeline_cache_"));
    // Read back by the next device, and the results are the same.
    let gpu = Arc::new(Gpu::new(&GpuOptions::from_env()).unwrap());
    assert_eq!(run_silu(&gpu), first);
    drop(gpu);
    // A corrupt file is ignored.
    std::fs::write(&files[0], b"garbage").unwrap();
    let gpu = Arc::new(Gpu::new(&GpuOptions::from_env()).unwrap());
    assert_eq!(run_silu(&gpu), first);
    let _ = std::fs::remove_dir_all(&home);
}
