//! Every case of the reference fixture folder (`WGSD_FIXTURES`, default `../shared/fixtures/tiny`), through
//! the same code as `wgsd verify`. Without the folder the test prints SKIPPED and why, and passes nothing
//! else: every case found must pass.

use std::path::PathBuf;

fn fixture_dir() -> Option<PathBuf> {
    let dir = wgsd::fixtures::dir();
    if dir.join("cases.json").exists() || dir.join("blocks.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no fixtures at {} (set {} to a diffusers fixture folder to run the reference cases)",
            dir.display(),
            wgsd::fixtures::ENV
        );
        None
    }
}

#[test]
fn tokenizer_cases_match_reference_ids() {
    let Some(dir) = fixture_dir() else { return };
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::tokenizer_cases(&fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "the fixture set has tokenizer cases but none ran");
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

#[test]
fn every_model_config_parses() {
    use wgsd::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
    let Some(dir) = fixture_dir() else { return };
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("model_index.json").exists()).collect();
    // The published SD 1.5 / 2.1 configs, where present beside the fixture set.
    for real in ["sd15", "sd21"] {
        let p = dir.join("../configs").join(real);
        if p.exists() {
            folders.push(p);
        }
    }
    assert!(!folders.is_empty());
    for f in folders {
        let u = UNetConfig::from_file(&f.join("unet/config.json")).unwrap();
        let v = VaeConfig::from_file(&f.join("vae/config.json")).unwrap();
        let t = ClipTextConfig::from_file(&f.join("text_encoder/config.json")).unwrap();
        println!("{}: unet {:?} heads {:?}, vae {:?}, clip {}×{}", f.display(), u.block_out_channels, (0..u.block_out_channels.len()).map(|i| u.heads(i)).collect::<Vec<_>>(), v.block_out_channels, t.num_hidden_layers, t.hidden_size);
    }
}

#[test]
fn unsupported_config_values_are_named() {
    let dir = std::env::temp_dir().join(format!("wgsd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config.json");
    std::fs::write(&p, r#"{"in_channels": 4, "out_channels": 4, "block_out_channels": [32], "down_block_types": ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"], "layers_per_block": 1, "cross_attention_dim": 32, "time_cond_proj_dim": 256}"#).unwrap();
    let e = wgsd::models::config::UNetConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("time_cond_proj_dim") && e.contains("256") && e.contains("config.json"), "{e}");
    std::fs::write(&p, r#"{"in_channels": 4, "out_channels": 4, "block_out_channels": [32], "down_block_types": ["SimpleDown"],
        "up_block_types": ["UpBlock2D"], "layers_per_block": 1, "cross_attention_dim": 32}"#).unwrap();
    let e = wgsd::models::config::UNetConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("SimpleDown"), "{e}");
}

/// Every case of the fixture set (tokenizer, schedulers, text encoder, UNet, VAE; blocks when the folder is
/// a blocks set), exactly as `wgsd verify` runs them.
#[test]
fn every_fixture_case_passes() {
    let Some(dir) = fixture_dir() else { return };
    let gpu = wgsd::testing::test_gpu();
    let results = wgsd::verify::run_all(&dir, &gpu).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "the fixture folder {} holds no cases", dir.display());
    // A SKIP is a reference that cannot be compared (NaN in the fixture): printed above, never a pass.
    let failed: Vec<String> = results.iter().filter(|r| !r.passed && r.unchecked.is_none()).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), results.len(), failed.join("\n"));
    assert!(results.iter().any(|r| r.passed), "no case passed");
}

/// The real-size block fixtures (`WGSD_BLOCK_FIXTURES`, default `../shared/fixtures/blocks`): SD 1.5 blocks at
/// their true sizes, among them a VAE up block whose 256 MiB input exceeds one storage binding. Slow on a CPU
/// driver (minutes), but it is the proof that real sizes work.
#[test]
fn real_size_block_cases_pass() {
    let dir = std::env::var_os("WGSD_BLOCK_FIXTURES").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/fixtures/blocks"));
    if !dir.join("blocks.json").exists() {
        eprintln!("SKIPPED: no block fixtures at {} (set WGSD_BLOCK_FIXTURES)", dir.display());
        return;
    }
    let gpu = wgsd::testing::test_gpu();
    let fx = wgsd::fixtures::Fixtures::open(&dir, "blocks").unwrap();
    let results = wgsd::verify::block_cases(&gpu, &fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "blocks.json lists no blocks");
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed blocks:\n{}", failed.join("\n"));
}

/// The `fp16` variant file loads (f16 on disk, widened to f32) and computes what the f32 weights compute, up
/// to f16 rounding of the weights (about 1e-3 relative; the f32 files give ~1e-6).
#[test]
fn fp16_variant_weights_load_and_match() {
    let Some(dir) = fixture_dir() else { return };
    let unet_dir = dir.join("sd15/unet");
    if !unet_dir.join("diffusion_pytorch_model.fp16.safetensors").exists() {
        eprintln!("SKIPPED: no fp16 variant in {}", unet_dir.display());
        return;
    }
    let gpu = wgsd::testing::test_gpu();
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let unet = wgsd::models::unet::UNet2DConditionModel::load(&gpu, &unet_dir, Some("fp16")).unwrap();
    let case = "unet.sd15.t500";
    let (ss, cs) = (fx.shape(&format!("{case}.sample")).unwrap(), fx.shape(&format!("{case}.encoder_hidden_states")).unwrap());
    let mut g = wgsd::Graph::new();
    let s = g.input("sample", wgsd::TensorDesc::f32(&ss));
    let t = g.input("timestep", wgsd::TensorDesc::f32(&[ss[0]]));
    let c = g.input("context", wgsd::TensorDesc::f32(&cs));
    let o = unet.forward(&mut g, s, t, c).unwrap();
    g.output(o);
    let plan = wgsd::Plan::new(gpu, g).unwrap();
    plan.write(s, &fx.tensor(&format!("{case}.sample")).unwrap()).unwrap();
    plan.write(t, &vec![500.0; ss[0]]).unwrap();
    plan.write(c, &fx.tensor(&format!("{case}.encoder_hidden_states")).unwrap()).unwrap();
    plan.run().unwrap();
    let err = wgsd::testing::rel_l2(&plan.read(o).unwrap(), &fx.tensor(&format!("{case}.out")).unwrap());
    println!("fp16 weights: rel_l2 {err:.3e}");
    // Above the f32 files' ~1e-6: the f16 file was really read.
    assert!(err < 1e-2 && err > 1e-5, "fp16-weight UNet rel L2 {err:.3e}");
}

/// A prompt longer than 77 tokens is cut to fit (start + 75 + end) and the cut is reported, which
/// `wgsd generate` turns into a warning, as diffusers does.
#[test]
fn long_prompts_are_truncated_and_reported() {
    let Some(dir) = fixture_dir() else { return };
    let tok = wgsd::models::tokenizer::ClipTokenizer::from_folder(&dir.join("sd15/tokenizer")).unwrap();
    let long = "a photo of a red fox ".repeat(30);
    let t = tok.encode(&long).unwrap();
    assert_eq!(t.ids.len(), 77);
    assert_eq!(t.ids[76], tok.eos_id);
    assert_eq!(t.truncated, tok.encode_raw(&long).unwrap().len() - 75);
    assert!(t.truncated > 0);
    assert_eq!(tok.encode("a red fox").unwrap().truncated, 0);
}
