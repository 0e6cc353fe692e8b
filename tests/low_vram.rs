//! `--low-vram`: one network on the GPU at a time gives the same pixels as keeping all three loaded; while
//! the UNet denoises, the text encoder and the VAE are off the GPU, with no host copy of weights that can
//! be read again from their files; a LoRA merges into offloaded weights (which then keep a host copy); a
//! weight that was not brought back is an error, not a crash; `auto` is on for CPU adapters only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wgsd::gpu::{Gpu, GpuOptions, LowVramChoice};
use wgsd::pipeline::denoise::Condition;
use wgsd::pipeline::txt2img::Txt2ImgRequest;
use wgsd::pipeline::{Network, Preview, StableDiffusion};
use wgsd::schedulers::{self, TorchCpuGenerator};

fn request() -> Txt2ImgRequest {
    wgsd::testing::small_request("a red fox in the snow", "blurry", 3)
}

fn generate(sd: &StableDiffusion) -> Vec<f32> {
    let mut sched = schedulers::from_config("EulerAncestralDiscreteScheduler", &sd.scheduler_config, "test").unwrap();
    sd.generate(&request(), &Condition::Text, sched.as_mut(), &mut TorchCpuGenerator::new(5), &mut |_, _| {}).unwrap().images
}

#[test]
fn one_network_at_a_time_gives_the_same_image() {
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let plain = StableDiffusion::load(wgsd::testing::test_gpu(), &dir, None).unwrap();
    assert!(plain.low_vram.is_none());
    let want = generate(&plain);

    let gpu = Arc::new(Gpu::new(&GpuOptions { low_vram: Some(wgsd::gpu::LowVramChoice::On), ..GpuOptions::from_env() }).unwrap());
    let mut sd = StableDiffusion::load(gpu, &dir, None).unwrap();
    let lv = sd.low_vram.as_ref().expect("low_vram set on the device");
    assert!(!lv.text_encoder.is_empty() && !lv.unet.is_empty() && !lv.vae.is_empty());
    let all_out = |ps: &[Arc<wgsd::graph::Param>]| ps.iter().all(|p| !p.resident());
    let all_in = |ps: &[Arc<wgsd::graph::Param>]| ps.iter().all(|p| p.resident());
    assert!(all_out(&lv.text_encoder) && all_out(&lv.unet) && all_out(&lv.vae), "loaded networks wait off the GPU");
    let no_host_copy = |ps: &[Arc<wgsd::graph::Param>]| ps.iter().all(|p| p.host_copy_bytes() == 0);
    assert!(
        no_host_copy(&lv.text_encoder) && no_host_copy(&lv.unet) && no_host_copy(&lv.vae),
        "weights as their files hold them are read again, not copied to host memory"
    );

    // During denoising (the preview callback runs after each step): only the UNet is on the GPU.
    let (te, unet, vae) = (lv.text_encoder.clone(), lv.unet.clone(), lv.vae.clone());
    let checked = Arc::new(AtomicUsize::new(0));
    let c = checked.clone();
    sd.preview = Some(Preview {
        every: 1,
        sink: Box::new(move |_, _| {
            assert!(all_in(&unet), "the UNet is on the GPU while it denoises");
            assert!(all_out(&te) && all_out(&vae), "text encoder and VAE wait off the GPU");
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    });
    let got = generate(&sd);
    assert!(checked.load(Ordering::Relaxed) > 0, "the residency check never ran");
    assert_eq!(got, want, "the same pixels with and without --low-vram");
    let lv = sd.low_vram.as_ref().unwrap();
    assert!(all_out(&lv.text_encoder) && all_out(&lv.unet) && all_out(&lv.vae), "everything leaves the GPU after the run");

    // Weights read and written while offloaded (a LoRA merge does this) keep their values.
    let p = &lv.unet[0];
    let before = p.read(&sd.gpu).unwrap();
    let changed: Vec<f32> = before.iter().map(|v| v + 0.25).collect();
    p.write(&sd.gpu, &changed).unwrap();
    assert_eq!(p.read(&sd.gpu).unwrap(), changed);
    sd.bring_in(Network::UNet).unwrap();
    assert_eq!(p.read(&sd.gpu).unwrap(), changed);
    sd.send_out(Network::UNet).unwrap();
    assert!(p.host_copy_bytes() > 0, "a weight changed since loading keeps a host copy when offloaded");
    assert_eq!(p.read(&sd.gpu).unwrap(), changed);
    sd.bring_in(Network::UNet).unwrap();
    assert_eq!(p.read(&sd.gpu).unwrap(), changed, "not read again from the file after a write");
    sd.send_out(Network::UNet).unwrap();

    // A plan built for a network left in host memory is an error naming the weight.
    let mut g = wgsd::graph::Graph::new();
    let x = g.input("x", wgsd::tensor::TensorDesc::f32(&p.desc.shape));
    let w = g.param(p);
    let y = g.add("y", x, w).unwrap();
    g.output(y);
    let e = wgsd::graph::plan::Plan::new(sd.gpu.clone(), g).err().expect("a plan on offloaded weights").to_string();
    assert!(e.contains(&p.name) && e.contains("--low-vram"), "{e}");
}

/// Loading under `--low-vram` reads a weight only where the read checks more than the file's header
/// (`Weights::check_header`): the others are read when their network is first brought in, with the values
/// a plain load gives; an f32 weight beyond the f16 range and a mis-shaped tensor still fail the load.
#[test]
fn loading_reads_only_what_the_header_cannot_check() {
    use wgsd::models::nn::Loader;
    use wgsd::models::weights::Weights;
    use wgsd::precision::Precision;
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::On), ..GpuOptions::from_env() }).unwrap();
    let fp16 = Weights::open(&[dir.join("unet/diffusion_pytorch_model.fp16.safetensors")]).unwrap();
    let fp32 = Weights::open(&[dir.join("unet/diffusion_pytorch_model.safetensors")]).unwrap();
    let conv_in = |w: &Weights, p: Precision, shape: &[usize]| {
        wgsd::graph::record_params(|| Loader::new(&gpu, w).with_precision(p).pp("conv_in").matrix("weight", shape)).map(|r| r.0)
    };
    for (w, p) in [(&fp16, Precision::F16), (&fp16, Precision::F32), (&fp32, Precision::F32), (&fp32, Precision::F16)] {
        let lazy = conv_in(w, p, &[32, 4, 3, 3]).unwrap();
        assert!(!lazy.resident());
        lazy.restore(&gpu).unwrap();
        let plain = Loader::new(&gpu, w).with_precision(p).pp("conv_in").matrix("weight", &[32, 4, 3, 3]).unwrap();
        assert_eq!(lazy.read(&gpu).unwrap(), plain.read(&gpu).unwrap(), "{p:?}");
    }
    let e = conv_in(&fp16, Precision::F16, &[4, 4, 3, 3]).err().unwrap().to_string();
    assert!(e.contains("conv_in.weight") && e.contains("(32, 4, 3, 3)"), "{e}");

    let path = std::env::temp_dir().join(format!("wgsd-low-vram-{}.safetensors", std::process::id()));
    let big: Vec<u8> = [1.0f32, 1e6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, vec![2, 1], &big).unwrap();
    safetensors::serialize_to_file([("conv_in.weight".to_string(), view)], None, &path).unwrap();
    let w = Weights::open(std::slice::from_ref(&path)).unwrap();
    assert!(conv_in(&w, Precision::F32, &[2, 1]).is_ok());
    let e = conv_in(&w, Precision::F16, &[2, 1]).err().unwrap().to_string();
    assert!(e.contains("conv_in.weight") && e.contains("f16"), "{e}");
    let _ = std::fs::remove_file(&path);
}

/// The token table stays off the GPU under `--low-vram` (prompts gather their rows on the host): its rows
/// read from the file, from a host copy after a write, and from the GPU all agree.
#[test]
fn token_table_rows_read_from_wherever_the_table_is() {
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = Arc::new(Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::On), ..GpuOptions::from_env() }).unwrap());
    let sd = StableDiffusion::load(gpu.clone(), &dir, None).unwrap();
    sd.bring_in(Network::TextEncoder).unwrap();
    let table = sd.text_encoder.token_table();
    assert!(!table.resident(), "the token table is not brought in");
    let lv = sd.low_vram.as_ref().unwrap();
    assert!(lv.text_encoder.iter().all(|p| p.resident()) && !lv.text_encoder.iter().any(|p| Arc::ptr_eq(p, table)));
    let (n, d) = (table.desc.shape[0], table.desc.shape[1]);
    let rows = [n - 1, 0, 7, 7];
    let pick = |all: &[f32]| -> Vec<f32> { rows.iter().flat_map(|&r| all[r * d..(r + 1) * d].to_vec()).collect() };
    let all = table.read(&gpu).unwrap();
    assert_eq!(table.read_rows(&gpu, &rows).unwrap(), pick(&all), "from the file");
    let changed: Vec<f32> = all.iter().map(|v| v * 0.5).collect();
    table.write(&gpu, &changed).unwrap();
    assert_eq!(table.read_rows(&gpu, &rows).unwrap(), pick(&changed), "from the host copy");
    table.restore(&gpu).unwrap();
    assert_eq!(table.read_rows(&gpu, &rows).unwrap(), pick(&changed), "from the GPU");
    assert!(table.read_rows(&gpu, &[n]).unwrap_err().to_string().contains(&format!("row {n}")));
}

#[test]
fn auto_is_on_for_cpu_adapters_only() {
    assert!(LowVramChoice::Auto.resolve(wgpu::DeviceType::Cpu));
    for t in [wgpu::DeviceType::DiscreteGpu, wgpu::DeviceType::IntegratedGpu, wgpu::DeviceType::VirtualGpu] {
        assert!(!LowVramChoice::Auto.resolve(t), "{t:?}");
    }
    assert!(LowVramChoice::On.resolve(wgpu::DeviceType::DiscreteGpu));
    assert!(!LowVramChoice::Off.resolve(wgpu::DeviceType::Cpu));
    assert_eq!("auto".parse::<LowVramChoice>(), Ok(LowVramChoice::Auto));
    assert!("sometimes".parse::<LowVramChoice>().unwrap_err().contains("on, off or auto"));
}

/// Under `--low-vram` the text encoder's pipelines are made while its weights upload, from the graph
/// `text_graph` builds out of the token ids: it must be the graph `encode_sets` then plans (two chunks
/// through `min_chunks`, a set encoded once), so that encoding creates no pipeline of its own.
#[test]
fn text_encoder_pipelines_are_prepared_from_the_token_ids() {
    use wgsd::prompt::encode::PromptSet;
    let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = Arc::new(Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::On), ..GpuOptions::from_env() }).unwrap());
    let sd = StableDiffusion::load(gpu.clone(), &dir, None).unwrap();
    let cond = sd.chunk_prompts(&["a red fox in the snow".to_string(), "a cat".to_string()]).unwrap();
    let uncond = sd.chunk_prompts(&["blurry".to_string(), "blurry".to_string()]).unwrap();
    let sets = [PromptSet { prompts: &cond, skip: 0, min_chunks: 1 }, PromptSet { prompts: &uncond, skip: 0, min_chunks: 2 }];
    let before = gpu.pipeline_count();
    sd.bring_in_preparing(Network::TextEncoder, || sd.text_graph(&sets)).unwrap();
    let prepared = gpu.pipeline_count();
    assert!(prepared > before, "no pipeline was prepared");
    assert!(sd.low_vram.as_ref().unwrap().text_encoder.iter().all(|p| p.resident()), "the weights came in meanwhile");
    let encoded = sd.encode_sets(&sets).unwrap();
    assert_eq!((encoded[0].chunks, encoded[1].chunks), (1, 2));
    assert_eq!(gpu.pipeline_count(), prepared, "encoding created pipelines that were not prepared");
    sd.send_out(Network::TextEncoder).unwrap();
}
