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
