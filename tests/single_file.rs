//! Original-LDM single-file checkpoints. GPU-free: the diffusers → LDM name maps on known pairs (written
//! from diffusers' `convert_ldm_*` converters), for SD 1.5's layout and for another one derived from its
//! config, and the errors for missing and mis-shaped tensors. With the single files of the tiny fixture
//! models (`WGSD_SINGLE_FILE_DIR`, default /tmp/wgsd-single-files, made by tools/make_single_file.py; else
//! written by this test from the fixture folders): every
//! tensor read through the map equals the diffusers folder's, and the loaded pipeline's text encoder, UNet,
//! VAE and a txt2img run give exactly the folder-loaded outputs.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use wgsd::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
use wgsd::models::single_file::{NameMap, Source};
use wgsd::models::weights::{WeightFile, Weights};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgsd-single-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_json(name: &str, text: &str) -> PathBuf {
    let p = temp(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn sd15_unet() -> UNetConfig {
    UNetConfig::from_file(&write_json(
        "unet.json",
        r#"{"in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": 8, "cross_attention_dim": 768}"#,
    ))
    .unwrap()
}

fn sd15_vae() -> VaeConfig {
    VaeConfig::from_file(&write_json(
        "vae.json",
        r#"{"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2, "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
    ))
    .unwrap()
}

fn sd2_text() -> ClipTextConfig {
    ClipTextConfig::from_file(&write_json(
        "text.json",
        r#"{"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23, "hidden_act": "gelu"}"#,
    ))
    .unwrap()
}

fn whole(key: &str) -> Option<Source> {
    Some(Source { key: key.to_string(), rows: None })
}

fn assert_pairs(map: &NameMap, pairs: &[(&str, &str)]) {
    for (ldm, diffusers) in pairs {
        assert_eq!(map.ldm(diffusers), whole(ldm), "diffusers {diffusers}");
    }
}

#[test]
fn unet_map_matches_diffusers_converter_on_sd15_layout() {
    let map = NameMap::unet(&sd15_unet());
    let p = "model.diffusion_model.";
    let pairs = [
        ("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
        ("input_blocks.1.0.in_layers.2.bias", "down_blocks.0.resnets.0.conv1.bias"),
        ("input_blocks.2.0.emb_layers.1.weight", "down_blocks.0.resnets.1.time_emb_proj.weight"),
        ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
        ("input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"),
        ("input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"),
        ("input_blocks.8.1.proj_out.bias", "down_blocks.2.attentions.1.proj_out.bias"),
        ("input_blocks.9.0.op.bias", "down_blocks.2.downsamplers.0.conv.bias"),
        ("input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"),
        ("middle_block.0.out_layers.0.weight", "mid_block.resnets.0.norm2.weight"),
        ("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight"),
        ("middle_block.1.transformer_blocks.0.norm3.bias", "mid_block.attentions.0.transformer_blocks.0.norm3.bias"),
        ("middle_block.2.emb_layers.1.weight", "mid_block.resnets.1.time_emb_proj.weight"),
        ("output_blocks.0.0.out_layers.3.weight", "up_blocks.0.resnets.0.conv2.weight"),
        ("output_blocks.2.0.skip_connection.bias", "up_blocks.0.resnets.2.conv_shortcut.bias"),
        ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
        ("output_blocks.3.1.norm.weight", "up_blocks.1.attentions.0.norm.weight"),
        ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
        ("output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"),
        ("output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight", "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"),
        ("output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.bias", "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0.bias"),
        ("input_blocks.0.0.weight", "conv_in.weight"),
        ("time_embed.0.weight", "time_embedding.linear_1.weight"),
        ("time_embed.2.bias", "time_embedding.linear_2.bias"),
        ("out.0.weight", "conv_norm_out.weight"),
        ("out.2.bias", "conv_out.bias"),
    ];
    let full: Vec<(String, &str)> = pairs.iter().map(|(l, d)| (format!("{p}{l}"), *d)).collect();
    assert_pairs(&map, &full.iter().map(|(l, d)| (l.as_str(), *d)).collect::<Vec<_>>());
    // The last down block has no downsampler, the last up block no upsampler.
    assert_eq!(map.ldm("down_blocks.3.downsamplers.0.conv.weight"), None);
    assert_eq!(map.ldm("up_blocks.3.upsamplers.0.conv.weight"), None);
    assert_eq!(map.ldm("add_embedding.linear_1.weight"), None);
}

#[test]
fn unet_map_follows_the_config_layout() {
    // One resnet per block and three blocks, attention in the first up block: indices move with the config
    // as diffusers' converter computes them (block = (i - 1) // (layers + 1) for input blocks).
    let mut c = sd15_unet();
    c.block_out_channels = vec![32, 64, 64];
    c.layers_per_block = 1;
    c.down_block_types = vec!["DownBlock2D".into(), "CrossAttnDownBlock2D".into(), "CrossAttnDownBlock2D".into()];
    c.up_block_types = vec!["CrossAttnUpBlock2D".into(), "UpBlock2D".into(), "UpBlock2D".into()];
    let map = NameMap::unet(&c);
    let p = "model.diffusion_model.";
    for (ldm, d) in [
        ("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
        ("input_blocks.2.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
        ("input_blocks.3.0.in_layers.0.weight", "down_blocks.1.resnets.0.norm1.weight"),
        ("input_blocks.3.1.proj_in.weight", "down_blocks.1.attentions.0.proj_in.weight"),
        ("input_blocks.4.0.op.weight", "down_blocks.1.downsamplers.0.conv.weight"),
        ("input_blocks.5.0.in_layers.0.weight", "down_blocks.2.resnets.0.norm1.weight"),
        ("output_blocks.1.1.proj_out.weight", "up_blocks.0.attentions.1.proj_out.weight"),
        ("output_blocks.1.2.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
        ("output_blocks.2.0.in_layers.0.weight", "up_blocks.1.resnets.0.norm1.weight"),
        ("output_blocks.3.1.conv.weight", "up_blocks.1.upsamplers.0.conv.weight"),
        ("output_blocks.5.0.out_layers.3.bias", "up_blocks.2.resnets.1.conv2.bias"),
    ] {
        assert_eq!(map.ldm(d), whole(&format!("{p}{ldm}")), "diffusers {d}");
    }
    assert_eq!(map.ldm("up_blocks.2.upsamplers.0.conv.weight"), None);
}

#[test]
fn vae_map_matches_diffusers_converter() {
    let map = NameMap::vae(&sd15_vae());
    let p = "first_stage_model.";
    for (ldm, d) in [
        ("encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight"),
        ("encoder.mid.attn_1.k.bias", "encoder.mid_block.attentions.0.to_k.bias"),
        ("decoder.mid.attn_1.v.weight", "decoder.mid_block.attentions.0.to_v.weight"),
        ("decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.to_out.0.bias"),
        ("decoder.mid.attn_1.norm.weight", "decoder.mid_block.attentions.0.group_norm.weight"),
        ("encoder.mid.block_1.conv1.weight", "encoder.mid_block.resnets.0.conv1.weight"),
        ("encoder.mid.block_2.norm2.bias", "encoder.mid_block.resnets.1.norm2.bias"),
        ("encoder.down.0.block.1.norm1.weight", "encoder.down_blocks.0.resnets.1.norm1.weight"),
        ("encoder.down.1.block.0.nin_shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
        ("encoder.down.1.downsample.conv.weight", "encoder.down_blocks.1.downsamplers.0.conv.weight"),
        ("decoder.up.3.block.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"),
        ("decoder.up.3.block.2.conv2.bias", "decoder.up_blocks.0.resnets.2.conv2.bias"),
        ("decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"),
        ("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"),
        ("decoder.up.0.block.0.nin_shortcut.bias", "decoder.up_blocks.3.resnets.0.conv_shortcut.bias"),
        ("encoder.norm_out.weight", "encoder.conv_norm_out.weight"),
        ("decoder.norm_out.bias", "decoder.conv_norm_out.bias"),
        ("encoder.conv_in.weight", "encoder.conv_in.weight"),
        ("decoder.conv_out.bias", "decoder.conv_out.bias"),
        ("quant_conv.weight", "quant_conv.weight"),
        ("post_quant_conv.bias", "post_quant_conv.bias"),
    ] {
        assert_eq!(map.ldm(d), whole(&format!("{p}{ldm}")), "diffusers {d}");
    }
    assert_eq!(map.ldm("encoder.down_blocks.0.resnets.2.conv1.weight"), None, "the encoder has layers_per_block resnets");
    assert_eq!(map.ldm("encoder.down_blocks.3.downsamplers.0.conv.weight").map(|s| s.key), Some(format!("{p}encoder.down.3.downsample.conv.weight")));
}

#[test]
fn text_encoder_maps_sd1_clip_and_sd2_open_clip() {
    let clip = NameMap::clip("cond_stage_model.transformer.", true);
    assert_eq!(
        clip.ldm("text_model.encoder.layers.11.mlp.fc2.weight"),
        whole("cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight")
    );
    let old = NameMap::clip("cond_stage_model.transformer.", false);
    assert_eq!(old.ldm("text_model.final_layer_norm.bias"), whole("cond_stage_model.transformer.final_layer_norm.bias"));

    let open = NameMap::open_clip(&sd2_text());
    let p = "cond_stage_model.model.";
    let fused = |k: &str, r: std::ops::Range<usize>| Some(Source { key: format!("{p}{k}"), rows: Some(r) });
    assert_eq!(open.ldm("text_model.encoder.layers.5.self_attn.q_proj.weight"), fused("transformer.resblocks.5.attn.in_proj_weight", 0..1024));
    assert_eq!(open.ldm("text_model.encoder.layers.5.self_attn.k_proj.weight"), fused("transformer.resblocks.5.attn.in_proj_weight", 1024..2048));
    assert_eq!(open.ldm("text_model.encoder.layers.0.self_attn.v_proj.bias"), fused("transformer.resblocks.0.attn.in_proj_bias", 2048..3072));
    for (ldm, d) in [
        ("transformer.resblocks.22.attn.out_proj.weight", "text_model.encoder.layers.22.self_attn.out_proj.weight"),
        ("transformer.resblocks.3.ln_1.bias", "text_model.encoder.layers.3.layer_norm1.bias"),
        ("transformer.resblocks.3.ln_2.weight", "text_model.encoder.layers.3.layer_norm2.weight"),
        ("transformer.resblocks.7.mlp.c_fc.weight", "text_model.encoder.layers.7.mlp.fc1.weight"),
        ("transformer.resblocks.7.mlp.c_proj.bias", "text_model.encoder.layers.7.mlp.fc2.bias"),
        ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
        ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
        ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ] {
        assert_eq!(open.ldm(d), whole(&format!("{p}{ldm}")), "diffusers {d}");
    }
    // SD 2 conditions on the penultimate layer: diffusers keeps 23 of OpenCLIP's 24 resblocks.
    assert_eq!(open.ldm("text_model.encoder.layers.23.layer_norm1.weight"), None);
}

fn write(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| (0..s.iter().product::<usize>()).flat_map(|i| (i as f32).to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> =
        tensors.iter().zip(&bytes).map(|((n, s), b)| (n.to_string(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn errors_name_the_ldm_and_the_diffusers_key() {
    let p = temp("errors.safetensors");
    write(
        &p,
        &[
            ("model.diffusion_model.input_blocks.0.0.weight", vec![320, 4, 3, 3]),
            ("model.diffusion_model.middle_block.1.proj_in.weight", vec![1280, 1280, 1, 1]),
            ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", vec![6, 2]),
            ("model_ema.decay", vec![1]),
        ],
    );
    let unet = Weights::single_file(&p, NameMap::unet(&sd15_unet())).unwrap();
    let e = unet.get("conv_in.bias", &[320]).unwrap_err().to_string();
    assert!(e.contains("model.diffusion_model.input_blocks.0.0.bias") && e.contains("'conv_in.bias'") && e.contains("missing") && e.contains("(320)"), "{e}");
    let e = unet.get("conv_in.weight", &[320, 9, 3, 3]).unwrap_err().to_string();
    assert!(
        e.contains("model.diffusion_model.input_blocks.0.0.weight") && e.contains("'conv_in.weight'") && e.contains("(320, 4, 3, 3)") && e.contains("(320, 9, 3, 3)"),
        "{e}"
    );
    let e = unet.get("add_embedding.linear_1.weight", &[2, 2]).unwrap_err().to_string();
    assert!(e.contains("no LDM name") && e.contains("add_embedding.linear_1.weight"), "{e}");
    // A 1×1 conv is read where a linear weight is expected (SD 1's proj_in).
    assert_eq!(unet.get("mid_block.attentions.0.proj_in.weight", &[1280, 1280]).unwrap().len(), 1280 * 1280);
    assert_eq!(unet.get("conv_in.weight", &[320, 4, 3, 3]).unwrap()[5], 5.0);

    // Fused q/k/v: rows sliced; a stored tensor too small for the slice names the rows.
    let mut c = sd2_text();
    c.hidden_size = 2;
    let text = Weights::single_file(&p, NameMap::open_clip(&c)).unwrap();
    assert_eq!(text.get("text_model.encoder.layers.0.self_attn.k_proj.weight", &[2, 2]).unwrap(), vec![4.0, 5.0, 6.0, 7.0]);
    assert_eq!(text.shape("text_model.encoder.layers.0.self_attn.v_proj.weight"), Some(vec![2, 2]));
    c.hidden_size = 4;
    let text = Weights::single_file(&p, NameMap::open_clip(&c)).unwrap();
    let e = text.get("text_model.encoder.layers.0.self_attn.v_proj.weight", &[4, 4]).unwrap_err().to_string();
    assert!(e.contains("in_proj_weight' rows 8..12") && e.contains("v_proj.weight") && e.contains("(6, 2)"), "{e}");

    // A file with no text encoder says what it expected.
    let only_unet = WeightFile::open(&p).unwrap();
    let sdxl = temp("sdxl.safetensors");
    write(&sdxl, &[("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", vec![2])]);
    let e = NameMap::text_encoder(&c, &WeightFile::open(&sdxl).unwrap()).err().unwrap().to_string();
    assert!(e.contains("SDXL") && e.contains("cond_stage_model.model."), "{e}");
    assert!(NameMap::text_encoder(&c, &only_unet).is_ok());
    // An OpenCLIP checkpoint with an SD 1 (quick_gelu) config asks for an SD 2 config.
    c.hidden_act = "quick_gelu".into();
    let e = NameMap::text_encoder(&c, &only_unet).err().unwrap().to_string();
    assert!(e.contains("OpenCLIP") && e.contains("--config"), "{e}");
}

// ---- With the tiny fixture models' single files ----

/// The fixture models whose single files the tests read (`<model>.safetensors`).
const MODELS: [&str; 4] = ["sd15", "sd2", "sd15-inpaint", "sd2-depth"];

/// Writes a single file from a diffusers folder with the crate's own maps, run backwards
/// (`wgsd::train::save_model::write_single_file`, what `--save-single-file` uses): every tensor under its
/// LDM name, q/k/v rows gathered into OpenCLIP's fused `in_proj`. The maps themselves are held to
/// diffusers' converters by the pair tests above and by tools/make_single_file.py; files made this way
/// check everything after the names (reading, row slicing, component detection, the loaders).
fn write_single_file(folder: &Path, out: &Path) {
    wgsd::train::save_model::write_single_file(folder, out, true).unwrap();
}

/// The single files of the fixture models: from `WGSD_SINGLE_FILE_DIR` (default /tmp/wgsd-single-files,
/// made by tools/make_single_file.py and proved against diffusers' converters) when present, else written
/// here by [`write_single_file`].
fn single_file_dir() -> Option<(PathBuf, PathBuf)> {
    let fixtures = wgsd::fixtures::dir();
    if !fixtures.join("sd15").exists() {
        eprintln!("SKIPPED: no fixtures at {} (set {})", fixtures.display(), wgsd::fixtures::ENV);
        return None;
    }
    let dir = std::env::var("WGSD_SINGLE_FILE_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/tmp/wgsd-single-files"));
    if dir.join("sd15.safetensors").exists() {
        println!("single files from {} (tools/make_single_file.py)", dir.display());
        return Some((dir, fixtures));
    }
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("wgsd-single-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for m in MODELS {
            if fixtures.join(m).join("model_index.json").exists() {
                write_single_file(&fixtures.join(m), &d.join(format!("{m}.safetensors")));
            }
        }
        d
    });
    println!("single files written from the fixture folders into {} (no {} here)", made.display(), dir.display());
    Some((made.clone(), fixtures))
}

#[test]
fn every_tensor_read_through_the_map_equals_the_folders() {
    let Some((dir, fx)) = single_file_dir() else { return };
    for m in MODELS {
        let ckpt = dir.join(format!("{m}.safetensors"));
        if !ckpt.exists() {
            eprintln!("SKIPPED: {} missing", ckpt.display());
            continue;
        }
        let folder = fx.join(m);
        let file = WeightFile::open(&ckpt).unwrap();
        let text_config = ClipTextConfig::from_file(&folder.join("text_encoder/config.json")).unwrap();
        let parts = [
            ("unet", "diffusion_pytorch_model.safetensors", NameMap::unet(&UNetConfig::from_file(&folder.join("unet/config.json")).unwrap())),
            ("vae", "diffusion_pytorch_model.safetensors", NameMap::vae(&VaeConfig::from_file(&folder.join("vae/config.json")).unwrap())),
            ("text_encoder", "model.safetensors", NameMap::text_encoder(&text_config, &file).unwrap()),
        ];
        let mut read = 0;
        for (comp, name, map) in parts {
            let orig_path = folder.join(comp).join(name);
            let orig_file = WeightFile::open(&orig_path).unwrap();
            let orig = Weights::open(&[orig_path]).unwrap();
            let single = Weights::single_file(&ckpt, map).unwrap();
            for key in orig_file.names() {
                // The folder's own name may be a legacy alias (SD 2's VAE `query`); ask by the current name.
                let current = key.replace(".query.", ".to_q.").replace(".key.", ".to_k.").replace(".value.", ".to_v.").replace(".proj_attn.", ".to_out.0.");
                let shape = orig_file.shape(&key).unwrap();
                let want = orig.get(&current, &shape).unwrap();
                let got = single.get(&current, &shape).unwrap_or_else(|e| panic!("{m} {comp}: {e}"));
                assert!(want == got, "{m} {comp} {current}: values differ");
                read += 1;
            }
        }
        println!("{m}: {read} tensors equal through the single-file map");
    }
}

#[test]
fn single_file_pipeline_matches_folder_pipeline_exactly() {
    use wgsd::graph::plan::Plan;
    use wgsd::graph::Graph;
    use wgsd::pipeline::denoise::Condition;
    use wgsd::pipeline::txt2img::Txt2ImgRequest;
    use wgsd::pipeline::StableDiffusion;
    use wgsd::tensor::TensorDesc;
    let Some((dir, fx_dir)) = single_file_dir() else { return };
    let gpu = wgsd::testing::test_gpu();
    let fx = wgsd::fixtures::Fixtures::open(&fx_dir, "cases").unwrap();
    for m in MODELS {
        let ckpt = dir.join(format!("{m}.safetensors"));
        if !ckpt.exists() {
            eprintln!("SKIPPED: {} missing", ckpt.display());
            continue;
        }
        let folder = fx_dir.join(m);
        let a = StableDiffusion::load(gpu.clone(), &folder, None).unwrap();
        let b = StableDiffusion::load_single_file(gpu.clone(), &ckpt, &folder).unwrap();

        // Text encoder on the fixture ids (SD 1.5's for the inpainting model): last and penultimate hidden states.
        let tm = if fx.has(&format!("text.{m}.ids")) { m } else if m.starts_with("sd15") { "sd15" } else { "sd2" };
        let ids_shape = fx.shape(&format!("text.{tm}.ids")).unwrap();
        let ids = fx.tensor(&format!("text.{tm}.ids")).unwrap();
        let text = |sd: &StableDiffusion| {
            let mut g = Graph::new();
            let t = g.input("input_ids", TensorDesc::f32(&ids_shape));
            let o = sd.text_encoder.forward(&mut g, t).unwrap();
            g.output(o.last_hidden_state);
            g.output(o.penultimate);
            let plan = Plan::new(gpu.clone(), g).unwrap();
            plan.write(t, &ids).unwrap();
            plan.run().unwrap();
            (plan.read(o.last_hidden_state).unwrap(), plan.read(o.penultimate).unwrap())
        };
        let (ta, tb) = (text(&a), text(&b));
        assert!(ta == tb, "{m}: text encoder outputs differ");
        println!("{m} text encoder: identical to the folder load");
        if tm == m {
            let rel = wgsd::testing::rel_l2(&tb.0, &fx.tensor(&format!("text.{m}.last_hidden_state")).unwrap());
            println!("{m} text encoder: rel L2 to diffusers {rel:.1e}");
            assert!(rel < 1e-4);
        }

        // UNet on every fixture timestep case of this model.
        let cases: Vec<String> = fx.keys_with_prefix(&format!("unet.{m}.t")).into_iter().filter_map(|k| k.strip_suffix(".sample").map(str::to_string)).collect();
        assert!(!cases.is_empty());
        for case in &cases {
            let t: f32 = case.rsplit('.').next().unwrap().trim_start_matches('t').parse().unwrap();
            let ss = fx.shape(&format!("{case}.sample")).unwrap();
            let cs = fx.shape(&format!("{case}.encoder_hidden_states")).unwrap();
            let run = |sd: &StableDiffusion| {
                let ctx = fx.tensor(&format!("{case}.encoder_hidden_states")).unwrap();
                let r = wgsd::pipeline::UNetRunner::new(sd, [ss[0], ss[1], ss[2], ss[3]], &ctx, [cs[0], cs[1], cs[2]]).unwrap();
                r.run(&fx.tensor(&format!("{case}.sample")).unwrap(), t).unwrap()
            };
            let (ua, ub) = (run(&a), run(&b));
            assert!(ua == ub, "{case}: UNet outputs differ");
            let rel = wgsd::testing::rel_l2(&ub, &fx.tensor(&format!("{case}.out")).unwrap());
            println!("{case}: identical to the folder load; rel L2 to diffusers {rel:.1e}");
            assert!(rel < 1e-4);
        }

        // VAE: encode and decode the fixture inputs.
        if fx.has("vae.decode.latent") {
            let mut shape = fx.shape("vae.decode.latent").unwrap();
            shape[0] = 1; // the first latent of the batch
            let lat = fx.tensor("vae.decode.latent").unwrap();
            let dec = |sd: &StableDiffusion| {
                let mut g = Graph::new();
                let z = g.input("latent", TensorDesc::f32(&shape));
                let img = sd.vae.decode(&mut g, z).unwrap();
                let x = g.input("image", TensorDesc::f32(&[1, 3, 8 * shape[2], 8 * shape[3]]));
                let mom = sd.vae.encode(&mut g, x).unwrap();
                g.output(img);
                g.output(mom);
                let plan = Plan::new(gpu.clone(), g).unwrap();
                plan.write(z, &lat[..shape[1] * shape[2] * shape[3]]).unwrap();
                let n = 3 * 64 * shape[2] * shape[3];
                plan.write(x, &(0..n).map(|i| ((i as f32) * 0.37).sin()).collect::<Vec<_>>()).unwrap();
                plan.run().unwrap();
                (plan.read(img).unwrap(), plan.read(mom).unwrap())
            };
            let (va, vb) = (dec(&a), dec(&b));
            assert!(va == vb, "{m}: VAE outputs differ");
            println!("{m} VAE encode + decode: identical to the folder load");
        }

        // A short txt2img run end to end (the 4-channel models).
        if a.unet.config.in_channels != 4 {
            continue;
        }
        let req = Txt2ImgRequest {
            prompts: vec!["a photo of a cat".into()],
            negative_prompts: vec![],
            images_per_prompt: 1,
            width: 64,
            height: 64,
            steps: 3,
            guidance_scale: 7.5,
            clip_skip: 0,
        };
        let gen = |sd: &StableDiffusion| {
            let class = sd.scheduler_config["_class_name"].as_str().unwrap().to_string();
            let mut s = wgsd::schedulers::from_config(&class, &sd.scheduler_config, "scheduler").unwrap();
            let mut noise = wgsd::schedulers::TorchCpuGenerator::new(7);
            sd.generate(&req, &Condition::Text, s.as_mut(), &mut noise, &mut |_, _| {}).unwrap().images
        };
        let (ia, ib) = (gen(&a), gen(&b));
        assert!(ia == ib, "{m}: txt2img images differ");
        println!("{m} txt2img (3 steps, 64×64): identical images");
    }
}
