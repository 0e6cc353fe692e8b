//! The device layer: adapter choice by backend and name, and errors that say what to do.

use wgsd::{Gpu, GpuOptions};

#[test]
fn default_adapter_opens_with_its_real_limits() {
    let gpu = wgsd::testing::test_gpu();
    println!("{}", gpu.describe());
    // wgpu's defaults bind 128 MiB and allow 256 MiB buffers; the device must carry the adapter's limits.
    assert!(gpu.limits.max_storage_buffer_binding_size >= 128 << 20);
    assert!(gpu.limits.max_compute_workgroups_per_dimension >= 65535);
}

#[test]
fn unknown_backend_and_adapter_names_are_clear_errors() {
    let e = Gpu::new(&GpuOptions { backend: Some("directx9".into()), adapter: None }).err().unwrap().to_string();
    assert!(e.contains("directx9") && e.contains("vulkan, metal, dx12"), "{e}");
    let e = Gpu::new(&GpuOptions { backend: None, adapter: Some("no-such-gpu-xyz".into()) }).err().unwrap().to_string();
    assert!(e.contains("no-such-gpu-xyz") && e.contains("available"), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_backend_without_adapters_says_what_to_install() {
    // Linux has no DX12: the error must tell the user how to get a driver.
    let e = Gpu::new(&GpuOptions { backend: Some("dx12".into()), adapter: None }).err().unwrap().to_string();
    assert!(e.contains("no GPU adapter") && e.contains("mesa-vulkan-drivers"), "{e}");
}
