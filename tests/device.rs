//! The device layer: adapter choice by backend and name, and errors that say what to do.

use wgsd::{Gpu, GpuOptions};

#[test]
fn default_adapter_opens_with_its_real_limits() {
    let gpu = wgsd::testing::test_gpu();
    println!("{}", gpu.describe());
    // wgpu's defaults (256 MiB buffers, 128 MiB bindings) are smaller than SD's tensors: the device must
    // carry the adapter's own limits.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let adapter = adapters
        .iter()
        .find(|a| a.get_info().name == gpu.info.name && a.get_info().backend == gpu.info.backend)
        .expect("the opened adapter is listed");
    let want = adapter.limits();
    assert_eq!(gpu.limits.max_buffer_size, want.max_buffer_size);
    assert_eq!(gpu.limits.max_storage_buffer_binding_size, want.max_storage_buffer_binding_size);
    assert_eq!(gpu.limits.max_compute_workgroup_storage_size, want.max_compute_workgroup_storage_size);
}

#[test]
fn unknown_backend_and_adapter_names_are_clear_errors() {
    let e = Gpu::new(&GpuOptions { backend: Some("directx9".into()), adapter: None, ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("directx9") && e.contains("vulkan, metal, dx12"), "{e}");
    let e = Gpu::new(&GpuOptions { backend: None, adapter: Some("no-such-gpu-xyz".into()), ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("no-such-gpu-xyz") && e.contains("available"), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_backend_without_adapters_says_what_to_install() {
    // Linux has no DX12: the error must tell the user how to get a driver.
    let e = Gpu::new(&GpuOptions { backend: Some("dx12".into()), adapter: None, ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("no GPU adapter") && e.contains("mesa-vulkan-drivers"), "{e}");
}

/// Weights reach the GPU intact both ways: written straight into mapped buffers (CPU adapters' default)
/// and through wgpu's staging copies (every GPU's path, forced here), across the staging flush threshold.
#[test]
fn uploads_arrive_intact_direct_and_staged() {
    let base = GpuOptions::from_env();
    let mut rng = wgsd::testing::Rng::new(3);
    // 3 × 5 MiB crosses the 8 MiB flush threshold; 13 bytes exercise the padding to whole words.
    let blobs: Vec<Vec<u8>> = [5 << 20, 13, 5 << 20, 5 << 20]
        .iter()
        .map(|&n| rng.vec(n, 1.0).iter().map(|v| (v * 1000.0) as i32 as u8).collect())
        .collect();
    for staged in [false, true] {
        let gpu = Gpu::new(&GpuOptions { staged_uploads: staged, ..base.clone() }).unwrap();
        if staged {
            assert!(!gpu.direct_upload, "staged uploads were asked for");
        }
        let buffers: Vec<wgpu::Buffer> = blobs.iter().map(|b| gpu.upload("blob", b, wgpu::BufferUsages::empty())).collect();
        for (buf, want) in buffers.iter().zip(&blobs) {
            let got = gpu.read_bytes(buf, 0, (want.len() as u64).next_multiple_of(4)).unwrap();
            assert_eq!(&got[..want.len()], &want[..], "staged: {staged}");
            assert!(got[want.len()..].iter().all(|&b| b == 0), "padding is zero");
        }
    }
}
