//! `--precision`: what an adapter with or without SHADER_F16 gets, how weights are stored in f16 (fp16
//! files as they are, f32 files narrowed once, overflow named), and which tensors stay f32.

use std::path::PathBuf;

use safetensors::tensor::{Dtype, TensorView};
use wgsd::gpu::{Capabilities, Gpu, GpuOptions};
use wgsd::models::nn::Loader;
use wgsd::models::weights::{WeightFile, Weights};
use wgsd::precision::{narrow_f16, Precision, PrecisionChoice};
use wgsd::DType;

fn caps(shader_f16: bool) -> Capabilities {
    Capabilities { shader_f16, subgroups: true, timestamp_query: false, timestamp_inside_passes: false }
}

fn gpu() -> Gpu {
    Gpu::new(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e}"))
}

#[test]
fn choices_parse_and_resolve_against_the_adapter() {
    for (s, c) in [("auto", PrecisionChoice::Auto), ("F32", PrecisionChoice::F32), ("fp16", PrecisionChoice::F16)] {
        assert_eq!(s.parse::<PrecisionChoice>().unwrap(), c);
    }
    assert!("f8".parse::<PrecisionChoice>().unwrap_err().contains("auto, f32 or f16"));
    let with = caps(true);
    let without = caps(false);
    assert_eq!(PrecisionChoice::Auto.resolve(&with, "gpu"), (Precision::F16, None));
    assert_eq!(PrecisionChoice::F16.resolve(&with, "gpu"), (Precision::F16, None));
    assert_eq!(PrecisionChoice::F32.resolve(&with, "gpu"), (Precision::F32, None));
    assert_eq!(PrecisionChoice::F32.resolve(&without, "gpu"), (Precision::F32, None));
    for c in [PrecisionChoice::Auto, PrecisionChoice::F16] {
        let (p, note) = c.resolve(&without, "old-gpu");
        assert_eq!(p, Precision::F32, "{c} without SHADER_F16");
        let note = note.expect("a fallback says so");
        assert!(note.contains("old-gpu") && note.contains("SHADER_F16") && note.contains("f32"), "{note}");
    }
}

/// An adapter without SHADER_F16 (this one with the feature masked off) loads every weight in f32 even
/// when f16 is asked for, and the model runs.
#[test]
fn an_adapter_without_f16_falls_back_to_f32() {
    let mut gpu = gpu();
    gpu.caps.shader_f16 = false;
    gpu.set_precision(PrecisionChoice::F16, PrecisionChoice::Auto);
    assert_eq!((gpu.precision, gpu.vae_precision), (Precision::F32, Precision::F32));
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let weights = Weights::open(&[dir.join("unet/diffusion_pytorch_model.safetensors")]).unwrap();
    let w = Loader::new(&gpu, &weights).pp("conv_in").matrix("weight", &[32, 4, 3, 3]).unwrap();
    assert_eq!(w.desc.dtype, DType::F32);
}

/// With f16 asked for on an adapter that has it: Linear/Conv2d weights are f16 (an fp16 file's bytes
/// exactly as stored), biases and norm scales f32, and the VAE f32 unless asked.
#[test]
fn f16_weights_are_the_file_halves_and_small_tensors_stay_f32() {
    let mut gpu = gpu();
    if !gpu.caps.shader_f16 {
        eprintln!("SKIPPED: adapter {} has no SHADER_F16", gpu.info.name);
        return;
    }
    gpu.set_precision(PrecisionChoice::Auto, PrecisionChoice::F32);
    assert_eq!((gpu.precision, gpu.vae_precision), (Precision::F16, Precision::F32));
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let file = dir.join("unet/diffusion_pytorch_model.fp16.safetensors");
    let weights = Weights::open(std::slice::from_ref(&file)).unwrap();
    let l = Loader::new(&gpu, &weights).pp("conv_in");
    let w = l.matrix("weight", &[32, 4, 3, 3]).unwrap();
    assert_eq!(w.desc.dtype, DType::F16);
    let (dtype, bytes) = WeightFile::open(&file).unwrap().raw("conv_in.weight").map(|(d, b)| (d, b.to_vec())).unwrap();
    assert_eq!(dtype, Dtype::F16);
    let buf = w.buffer().unwrap();
    let on_gpu = gpu.read_bytes(&buf, 0, buf.size()).unwrap();
    assert_eq!(&on_gpu[..bytes.len()], &bytes[..], "fp16 weights are uploaded as stored");
    assert_eq!(l.tensor("bias", &[32]).unwrap().desc.dtype, DType::F32);
    // A whole model: its VAE in f32 by default, its UNet's conv weights in f16.
    let vae = wgsd::models::vae::AutoencoderKL::load(&gpu, &dir.join("vae"), None);
    assert!(vae.is_ok());
    let vl = Loader::new(&gpu, &weights).with_precision(gpu.vae_precision).pp("conv_in");
    assert_eq!(vl.matrix("weight", &[32, 4, 3, 3]).unwrap().desc.dtype, DType::F32);
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgsd-precision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An f32 weight is narrowed once (round to nearest) and a value beyond the f16 range is an error that
/// names the file and the tensor.
#[test]
fn narrowing_rounds_and_names_the_tensor_that_overflows() {
    let bytes = narrow_f16("w", &[1.0, 1.0 / 3.0, 65504.0, -0.0]).unwrap();
    let back: Vec<f32> = bytes.chunks(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
    assert_eq!(back, vec![1.0, half::f16::from_f32(1.0 / 3.0).to_f32(), 65504.0, -0.0]);
    let e = narrow_f16("down.weight", &[0.5, -7.0e4]).unwrap_err().to_string();
    assert!(e.contains("down.weight") && e.contains("element 1") && e.contains("f16"), "{e}");

    let mut gpu = gpu();
    gpu.set_precision(PrecisionChoice::F16, PrecisionChoice::F32);
    if gpu.precision != Precision::F16 {
        eprintln!("SKIPPED: adapter {} has no SHADER_F16", gpu.info.name);
        return;
    }
    let path = temp("big.safetensors");
    let data: Vec<u8> = [0.25f32, 7.0e4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![("proj.weight".to_string(), TensorView::new(Dtype::F32, vec![1, 2], &data).unwrap())];
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let weights = Weights::open(std::slice::from_ref(&path)).unwrap();
    let e = Loader::new(&gpu, &weights).pp("proj").matrix("weight", &[1, 2]).err().expect("overflow refused").to_string();
    assert!(e.contains("big.safetensors") && e.contains("proj.weight") && e.contains("--precision f32"), "{e}");
    // The same file loads in f32.
    let w = Loader::new(&gpu, &weights).with_precision(Precision::F32).pp("proj").matrix("weight", &[1, 2]).unwrap();
    assert_eq!(w.read(&gpu).unwrap(), vec![0.25, 7.0e4]);
}

/// Writes every tensor of `src` to `dst` rounded to f16, as f16 (`as_f16`) or as the same values in f32.
fn rounded_copy(src: &std::path::Path, dst: &std::path::Path, as_f16: bool) {
    let file = WeightFile::open(src).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in file.names() {
        let halves: Vec<half::f16> = file.read_f32(&name).unwrap().iter().map(|&v| half::f16::from_f32(v)).collect();
        let bytes: Vec<u8> = if as_f16 {
            halves.iter().flat_map(|h| h.to_le_bytes()).collect()
        } else {
            halves.iter().flat_map(|h| h.to_f32().to_le_bytes()).collect()
        };
        data.push((name.clone(), file.shape(&name).unwrap(), bytes));
    }
    let dtype = if as_f16 { Dtype::F16 } else { Dtype::F32 };
    let views: Vec<(String, TensorView)> =
        data.iter().map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, dst).unwrap();
}

/// A VAE in f32 keeps the weights of an fp16 file in f16 (the kernels widen them exactly and accumulate
/// in f32), so it decodes what the same values stored in f32 decode, from half the weight memory. The
/// UNet loader does not (LoRAs merge into its weights), and neither does an f32 file.
#[test]
fn an_f32_vae_keeps_fp16_file_weights_in_f16_and_decodes_the_same() {
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let mut gpu = gpu();
    gpu.set_precision(PrecisionChoice::F32, PrecisionChoice::F32);
    assert_eq!((gpu.precision, gpu.vae_precision), (Precision::F32, Precision::F32));
    let gpu = std::sync::Arc::new(gpu);
    let mut decoded = Vec::new();
    for as_f16 in [true, false] {
        let vae_dir = temp(if as_f16 { "vae16" } else { "vae32" });
        std::fs::create_dir_all(&vae_dir).unwrap();
        std::fs::copy(dir.join("vae/config.json"), vae_dir.join("config.json")).unwrap();
        let file = vae_dir.join("diffusion_pytorch_model.safetensors");
        rounded_copy(&dir.join("vae/diffusion_pytorch_model.safetensors"), &file, as_f16);
        let weights = Weights::open(std::slice::from_ref(&file)).unwrap();
        let kept = Loader::new(&gpu, &weights).keeping_stored_f16().pp("decoder.conv_in");
        let want = if as_f16 { DType::F16 } else { DType::F32 };
        let shape = WeightFile::open(&file).unwrap().shape("decoder.conv_in.weight").unwrap();
        assert_eq!(kept.matrix("weight", &shape).unwrap().desc.dtype, want);
        assert_eq!(Loader::new(&gpu, &weights).pp("decoder.conv_in").matrix("weight", &shape).unwrap().desc.dtype, DType::F32);

        let vae = wgsd::models::vae::AutoencoderKL::load(&gpu, &vae_dir, None).unwrap();
        let mut g = wgsd::Graph::new();
        let z = g.input("latent", wgsd::TensorDesc::f32(&[1, 4, 12, 16]));
        let y = vae.decode(&mut g, z).unwrap();
        g.output(y);
        let plan = wgsd::Plan::new(gpu.clone(), g).unwrap();
        plan.write(z, &wgsd::testing::Rng::new(5).vec(4 * 12 * 16, 1.0)).unwrap();
        plan.run().unwrap();
        decoded.push((plan.read(y).unwrap(), plan.memory().params));
    }
    let ((a, mem16), (b, mem32)) = (&decoded[0], &decoded[1]);
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!("f16-stored vs f32-stored VAE weights (same values): max |diff| {worst:e}, weights {mem16} vs {mem32} B");
    assert!(a.iter().all(|v| v.is_finite()));
    assert!(worst <= 1e-5 * b.iter().map(|v| v.abs()).fold(0f32, f32::max), "decodes differ by {worst}");
    assert!(*mem16 < mem32 * 6 / 10, "f16-stored weights take {mem16} B against {mem32} B");
}

/// `--f16-activations`: in f16 precision every resnet GroupNorm hands the convolution after it an f16
/// output (and nothing does without the flag, or in f32); the UNet stays within the f16 module bar.
#[test]
fn f16_activations_hand_resnet_norms_to_their_convs_in_f16() {
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let fx_dir = dir.parent().unwrap().to_path_buf();
    let fx = wgsd::fixtures::Fixtures::open(&fx_dir, "cases").unwrap();
    let case = "unet.sd15.t500";
    let (ss, cs) = (fx.shape(&format!("{case}.sample")).unwrap(), fx.shape(&format!("{case}.encoder_hidden_states")).unwrap());
    let mut outs = Vec::new();
    for (choice, flag) in [(PrecisionChoice::F16, true), (PrecisionChoice::F16, false), (PrecisionChoice::F32, true)] {
        let mut gpu = gpu();
        gpu.set_precision(choice, PrecisionChoice::F32);
        if choice == PrecisionChoice::F16 && gpu.precision != Precision::F16 {
            eprintln!("SKIPPED: adapter {} has no SHADER_F16", gpu.info.name);
            return;
        }
        gpu.f16_activations = flag;
        let gpu = std::sync::Arc::new(gpu);
        let unet = wgsd::models::unet::UNet2DConditionModel::load(&gpu, &dir.join("unet"), None).unwrap();
        let mut g = wgsd::Graph::new();
        let s = g.input("sample", wgsd::TensorDesc::f32(&ss));
        let t = g.input("timestep", wgsd::TensorDesc::f32(&[ss[0]]));
        let c = g.input("context", wgsd::TensorDesc::f32(&cs));
        let o = unet.forward(&mut g, s, t, c).unwrap();
        g.output(o);
        let norms: Vec<_> = g.nodes().iter().filter(|n| n.name.contains("resnets.") && (n.name.ends_with(".norm1") || n.name.ends_with(".norm2"))).collect();
        let half = norms.iter().filter(|n| g.desc(n.output).dtype == DType::F16).count();
        let want = if flag && choice == PrecisionChoice::F16 { norms.len() } else { 0 };
        assert!(!norms.is_empty() && half == want, "{choice} flag {flag}: {half} of {} resnet norms in f16", norms.len());
        let plan = wgsd::Plan::new(gpu, g).unwrap();
        plan.write(s, &fx.tensor(&format!("{case}.sample")).unwrap()).unwrap();
        plan.write(t, &vec![500.0; ss[0]]).unwrap();
        plan.write(c, &fx.tensor(&format!("{case}.encoder_hidden_states")).unwrap()).unwrap();
        plan.run().unwrap();
        outs.push(plan.read(o).unwrap());
    }
    let reference = fx.tensor(&format!("{case}.out")).unwrap();
    let errs: Vec<f64> = outs.iter().map(|o| wgsd::testing::rel_l2(o, &reference)).collect();
    println!("rel_l2 to the f32 reference: f16 + f16 activations {:.3e}, f16 {:.3e}, f32 {:.3e}", errs[0], errs[1], errs[2]);
    assert!(errs[0] < 1e-2 && errs[0] != errs[1], "f16 activations: {:.3e} (f16 weights alone {:.3e})", errs[0], errs[1]);
    assert!(errs[2] < 1e-4, "the flag must not touch f32: {:.3e}", errs[2]);
}
