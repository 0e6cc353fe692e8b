//! What DreamBooth training writes: the LoRA files against the ones diffusers' script wrote for the training
//! fixtures (`WGSD_TRAIN_FIXTURES`, default `../shared/fixtures/train`, through `wgsd verify`'s
//! `train_saved_cases`), the kohya name conversion on every module of the tiny models, reading both layouts
//! back, atomic writes that never replace a file unasked, and the full fine-tuning outputs (a diffusers
//! folder and an LDM single file) loaded back with wgsd's loaders. Without the fixture folders the tests
//! that need them print SKIPPED and why.

use std::path::{Path, PathBuf};

use wgsd::models::weights::{WeightFile, Weights};
use wgsd::train::lora_file::{
    diffusers_key, kohya_module, peft_module_from_kohya, read_lora_file, save_lora, KohyaInfo, LoraLayout, DIFFUSERS_FILE, KOHYA_FILE,
};
use wgsd::train::save::{write_atomic, write_atomic_with, write_safetensors_streamed, HostTensor, ReadValues};
use wgsd::train::save_model::{save_diffusers_folder, save_full, write_single_file};



/// A fresh, empty folder of this test process.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-train-save-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Names in `dir` other than `keep` (leftover temporary files).
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn saved_lora_files_match_the_fixture_files() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::train_saved_cases(&fx).unwrap();
    assert!(results.len() >= 3, "expected the three LoRA cases, got {}", results.len());
    for r in &results {
        println!("{}", r.line());
    }
    for r in &results {
        assert!(r.passed, "{}", r.line());
    }
}

#[test]
fn fixture_files_read_back_under_the_trained_names() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    for (name, case) in fx.meta["cases"].as_object().unwrap().iter().filter(|(_, c)| c["saved"].is_object()) {
        let mut trainable: Vec<String> = case["trainable"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        trainable.sort();
        let last = case["steps"].as_u64().unwrap() - 1;
        for (key, layout) in [("diffusers", LoraLayout::Diffusers), ("kohya", LoraLayout::Kohya)] {
            let f = read_lora_file(&dir.join(case["saved"][key].as_str().unwrap())).unwrap();
            assert_eq!(f.layout, layout);
            let names: Vec<String> = f.tensors.iter().map(|t| t.name.clone()).collect();
            assert_eq!(names, trainable, "{name} {key}: names read back differ from the trained ones");
            for t in &f.tensors {
                assert_eq!(t.values, fx.tensor(&format!("{name}.param.step{last}.{}", t.name)).unwrap(), "{name} {key} {}", t.name);
            }
            assert_eq!(f.rank(), case["lora"]["rank"].as_u64().map(|r| r as usize));
            if layout == LoraLayout::Kohya {
                assert_eq!(f.alpha(), case["lora"]["alpha"].as_f64(), "{name}: kohya alpha");
            }
        }
        println!("{name}: both fixture files read back as the {} trained tensors", trainable.len());
    }
}

/// Module paths (keys without `.weight` / `.bias`) of a weight file.
fn modules(path: &Path) -> Vec<String> {
    let mut m: Vec<String> = WeightFile::open(path)
        .unwrap()
        .names()
        .into_iter()
        .filter_map(|k| k.strip_suffix(".weight").or_else(|| k.strip_suffix(".bias")).map(String::from))
        .collect();
    m.sort();
    m.dedup();
    m
}

#[test]
fn kohya_names_convert_exactly_for_every_unet_and_clip_module() {
    let mut checked = 0;
    for model in ["sd15", "sd2"] {
        let Some(dir) = wgsd::testing::tiny_model(model) else { return };
        for (prefix, file) in [("unet.", "unet/diffusion_pytorch_model.safetensors"), ("text_encoder.", "text_encoder/model.safetensors")] {
            for m in modules(&dir.join(file)) {
                let peft = format!("{prefix}{m}");
                let k = kohya_module(&peft).unwrap();
                assert!(!k.contains('.'), "{k}");
                assert_eq!(peft_module_from_kohya(&k).as_deref(), Some(peft.as_str()), "kohya name {k}");
                checked += 1;
            }
        }
    }
    println!("{checked} module names: peft → kohya → peft is the identity");
    // A kohya LoRA over attention, proj_in/out, feed-forward, resnet convs and CLIP's MLP (made by the
    // fixture generator): every module maps to one the model has.
    let (Some(dir), Some(model)) = (wgsd::testing::train_fixtures(), wgsd::testing::tiny_model("sd15")) else { return };
    let path = dir.join("lora_sd15.safetensors");
    if !path.exists() {
        eprintln!("SKIPPED: {} missing", path.display());
        return;
    }
    let f = read_lora_file(&path).unwrap();
    assert_eq!(f.layout, LoraLayout::Kohya);
    let unet = modules(&model.join("unet/diffusion_pytorch_model.safetensors"));
    let text = modules(&model.join("text_encoder/model.safetensors"));
    for t in &f.tensors {
        let module = t.name.rsplit_once(".lora_").unwrap().0;
        let known = match module.split_once('.').unwrap() {
            ("unet", m) => unet.iter().any(|u| u == m),
            ("text_encoder", m) => text.iter().any(|u| u == m),
            _ => false,
        };
        assert!(known, "{} maps to no module of the model", t.name);
    }
    println!("{}: {} tensors map to modules of the tiny SD 1.5", path.display(), f.tensors.len());
}

#[test]
fn diffusers_keys_follow_diffusers_conversion() {
    let cases = [
        ("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight", "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora.down.weight"),
        ("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight", "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora.up.weight"),
        ("text_encoder.text_model.encoder.layers.3.self_attn.out_proj.lora_A.weight", "text_encoder.text_model.encoder.layers.3.self_attn.out_proj.lora_linear_layer.down.weight"),
        // Modules diffusers' table does not list keep peft's names.
        ("unet.down_blocks.0.resnets.0.conv1.lora_A.weight", "unet.down_blocks.0.resnets.0.conv1.lora_A.weight"),
        ("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight", "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight"),
    ];
    for (peft, want) in cases {
        assert_eq!(diffusers_key(peft), want);
    }
}

/// Adapters over every kind of module: UNet attention, a 3×3 conv (LoCon), CLIP attention and MLP.
fn synthetic(rank: usize) -> Vec<HostTensor> {
    let mut rng = wgsd::testing::Rng::new(3);
    let mut out = Vec::new();
    let modules: [(&str, &[usize], &[usize]); 4] = [
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", &[rank, 32], &[32, rank]),
        ("unet.down_blocks.0.resnets.0.conv1", &[rank, 32, 3, 3], &[64, rank, 1, 1]),
        ("text_encoder.text_model.encoder.layers.1.self_attn.q_proj", &[rank, 32], &[32, rank]),
        ("text_encoder.text_model.encoder.layers.1.mlp.fc2", &[rank, 37], &[32, rank]),
    ];
    for (m, a, b) in modules {
        for (half, shape) in [("lora_A", a), ("lora_B", b)] {
            let n = shape.iter().product();
            out.push(HostTensor::new(format!("{m}.{half}.weight"), shape, rng.vec(n, 1.0)));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[test]
fn both_layouts_round_trip_and_kohya_carries_alpha_and_metadata() {
    let dir = temp("roundtrip");
    let tensors = synthetic(4);
    let info = KohyaInfo { v2: true, v_prediction: true, extra: vec![("ss_steps".into(), "400".into())] };
    let paths = save_lora(&dir, &tensors, 4, 8.0, &info, false).unwrap();
    assert_eq!(paths.diffusers, dir.join(DIFFUSERS_FILE));
    for (path, layout) in [(&paths.diffusers, LoraLayout::Diffusers), (&paths.kohya, LoraLayout::Kohya)] {
        let f = read_lora_file(path).unwrap();
        assert_eq!(f.layout, layout);
        assert_eq!(f.tensors, tensors, "{layout:?}: tensors read back differ");
        assert_eq!(f.rank(), Some(4));
    }
    let k = read_lora_file(&paths.kohya).unwrap();
    assert_eq!(k.alpha(), Some(8.0));
    assert_eq!(k.alphas.len(), 4);
    let m = &k.metadata;
    for (key, want) in [
        ("ss_network_module", "networks.lora"),
        ("ss_network_dim", "4"),
        ("ss_network_alpha", "8.0"),
        ("ss_base_model_version", "sd_v2_v"),
        ("ss_v2", "True"),
        ("ss_steps", "400"),
    ] {
        assert_eq!(m.get(key).map(String::as_str), Some(want), "metadata {key}");
    }
    assert!(m["ss_network_args"].contains("conv_dim"), "a 3×3 conv adapter records conv_dim");
    assert!(read_lora_file(&paths.diffusers).unwrap().metadata.is_empty(), "diffusers' file has no metadata");
    // Kohya's keys for the conv pair.
    let names = WeightFile::open(&paths.kohya).unwrap().names();
    assert!(names.contains(&"lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight".to_string()));
    assert!(names.contains(&"lora_te_text_model_encoder_layers_1_mlp_fc2.alpha".to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_adapter_tensors_are_refused_with_their_names_and_nothing_is_written() {
    let dir = temp("bad");
    let mut t = synthetic(4);
    t.retain(|x| !x.name.ends_with("conv1.lora_B.weight"));
    let e = save_lora(&dir, &t, 4, 4.0, &KohyaInfo::default(), false).unwrap_err().to_string();
    assert!(e.contains("conv1") && e.contains("lora_B"), "{e}");
    let e = save_lora(&dir, &synthetic(4), 8, 8.0, &KohyaInfo::default(), false).unwrap_err().to_string();
    assert!(e.contains("rank-8"), "{e}");
    let mut t = synthetic(4);
    t[0].values.pop();
    let e = save_lora(&dir, &t, 4, 4.0, &KohyaInfo::default(), false).unwrap_err().to_string();
    assert!(e.contains(&t[0].name), "{e}");
    assert!(leftovers(&dir, &[]).is_empty(), "files left: {:?}", leftovers(&dir, &[]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn existing_files_are_never_replaced_unasked() {
    let dir = temp("overwrite");
    let p = dir.join("a.bin");
    write_atomic(&p, b"first", false).unwrap();
    let e = write_atomic(&p, b"second", false).unwrap_err().to_string();
    assert!(e.contains("a.bin") && e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"first");
    write_atomic(&p, b"second", true).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    // Both adapter files: refused as a pair, replaced when asked.
    save_lora(&dir, &synthetic(4), 4, 4.0, &KohyaInfo::default(), false).unwrap();
    let before = std::fs::read(dir.join(KOHYA_FILE)).unwrap();
    let e = save_lora(&dir, &synthetic(2), 2, 2.0, &KohyaInfo::default(), false).unwrap_err().to_string();
    assert!(e.contains(DIFFUSERS_FILE), "{e}");
    assert_eq!(std::fs::read(dir.join(KOHYA_FILE)).unwrap(), before);
    save_lora(&dir, &synthetic(2), 2, 2.0, &KohyaInfo::default(), true).unwrap();
    assert_eq!(read_lora_file(&dir.join(KOHYA_FILE)).unwrap().rank(), Some(2));
    assert!(leftovers(&dir, &["a.bin", DIFFUSERS_FILE, KOHYA_FILE]).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
    let dir = temp("atomic");
    let p = dir.join("model.safetensors");
    write_atomic(&p, b"good", false).unwrap();
    // The writer fails halfway through, with overwriting allowed: the good file stays.
    let e = write_atomic_with(&p, true, |tmp| {
        std::fs::write(tmp, b"half").unwrap();
        Err(wgsd::Error::usage("disk full (simulated)"))
    })
    .unwrap_err();
    assert!(e.to_string().contains("simulated"));
    assert_eq!(std::fs::read(&p).unwrap(), b"good");
    assert!(leftovers(&dir, &["model.safetensors"]).is_empty(), "left: {:?}", leftovers(&dir, &["model.safetensors"]));
    // A streamed tensor that cannot be read aborts the file the same way.
    let tensors: Vec<(String, Vec<usize>, ReadValues)> = vec![
        ("a".into(), vec![2], Box::new(|| Ok(vec![1.0, 2.0]))),
        ("b".into(), vec![3], Box::new(|| Err(wgsd::Error::usage("tensor b unreadable")))),
    ];
    let e = write_safetensors_streamed(&p, tensors, None, true).unwrap_err();
    assert!(e.to_string().contains("tensor b"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"good");
    assert!(leftovers(&dir, &["model.safetensors"]).is_empty(), "left: {:?}", leftovers(&dir, &["model.safetensors"]));
    // And a streamed file that succeeds is a valid safetensors file.
    let q = dir.join("ok.safetensors");
    let tensors: Vec<(String, Vec<usize>, ReadValues)> = vec![("a".into(), vec![2, 1], Box::new(|| Ok(vec![1.0, 2.0])))];
    write_safetensors_streamed(&q, tensors, None, false).unwrap();
    assert_eq!(WeightFile::open(&q).unwrap().read_f32("a").unwrap(), vec![1.0, 2.0]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every tensor of a component, changed by a deterministic amount (as training would).
fn trained(file: &Path) -> Vec<HostTensor> {
    let f = WeightFile::open(file).unwrap();
    let mut names = f.names();
    names.sort();
    names
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let v = f.read_f32(&k).unwrap().into_iter().enumerate().map(|(j, x)| x + 1e-3 * ((i + j) % 7) as f32).collect();
            HostTensor::new(k.clone(), &f.shape(&k).unwrap(), v)
        })
        .collect()
}

#[test]
fn full_fine_tuning_folder_and_single_file_load_back_identically() {
    let Some(src) = wgsd::testing::tiny_model("sd15") else { return };
    let dir = temp("full");
    let out = dir.join("model");
    let unet = trained(&src.join("unet/diffusion_pytorch_model.safetensors"));
    let text = trained(&src.join("text_encoder/model.safetensors"));
    let changed = vec![("unet".to_string(), unet.clone()), ("text_encoder".to_string(), text.clone())];
    let single = dir.join("model.safetensors");
    save_full(&src, &out, &changed, Some(&single), false).unwrap();

    // The trained components hold the trained values under the same keys, in f32; the stale fp16 UNet is gone.
    for (component, file, tensors) in [("unet", "diffusion_pytorch_model.safetensors", &unet), ("text_encoder", "model.safetensors", &text)] {
        let path = out.join(component).join(file);
        let (w, f) = (Weights::open(std::slice::from_ref(&path)).unwrap(), WeightFile::open(&path).unwrap());
        assert_eq!(f.names().len(), tensors.len(), "{component}: key count");
        for t in tensors {
            assert_eq!(w.get(&t.name, &t.shape).unwrap(), t.values, "{component} {}", t.name);
        }
        println!("{component}: {} trained tensors read back identical", tensors.len());
    }
    assert!(!out.join("unet/diffusion_pytorch_model.fp16.safetensors").exists(), "stale fp16 weights copied");
    // Untrained components and every config are copies.
    for rel in ["model_index.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json", "safety_checker/model.safetensors"] {
        assert_eq!(std::fs::read(out.join(rel)).unwrap(), std::fs::read(src.join(rel)).unwrap(), "{rel}");
    }
    // The folder loads with wgsd's pipeline loader.
    let gpu = wgsd::testing::test_gpu();
    wgsd::pipeline::StableDiffusion::load(gpu.clone(), &out, None).unwrap();

    // The single file: every folder tensor through the single-file maps, and the single-file loader.
    let file = WeightFile::open(&single).unwrap();
    let text_config = wgsd::models::config::ClipTextConfig::from_file(&out.join("text_encoder/config.json")).unwrap();
    let maps = [
        ("unet", "diffusion_pytorch_model.safetensors", wgsd::models::single_file::NameMap::unet(&wgsd::models::config::UNetConfig::from_file(&out.join("unet/config.json")).unwrap())),
        ("vae", "diffusion_pytorch_model.safetensors", wgsd::models::single_file::NameMap::vae(&wgsd::models::config::VaeConfig::from_file(&out.join("vae/config.json")).unwrap())),
        ("text_encoder", "model.safetensors", wgsd::models::single_file::NameMap::text_encoder(&text_config, &file).unwrap()),
    ];
    let mut n = 0;
    for (component, name, map) in maps {
        let folder = Weights::open(&[out.join(component).join(name)]).unwrap();
        let keys = WeightFile::open(&out.join(component).join(name)).unwrap().names();
        let single_w = Weights::single_file(&single, map).unwrap();
        for k in keys {
            let shape = folder.shape(&k).unwrap();
            assert_eq!(single_w.get(&k, &shape).unwrap(), folder.get(&k, &shape).unwrap(), "single file {component} {k}");
            n += 1;
        }
    }
    println!("single file: {n} tensors identical to the written folder");
    assert_eq!(file.shape("first_stage_model.decoder.mid.attn_1.q.weight").map(|s| s.len()), Some(4), "LDM stores VAE attention as 1×1 convs");
    wgsd::pipeline::StableDiffusion::load_single_file(gpu, &single, &out).unwrap();

    // A second save refuses the existing folder and file.
    let e = save_diffusers_folder(&src, &out, &changed, false).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let e = write_single_file(&out, &single, false).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trained_tensor_the_model_file_lacks_is_an_error() {
    let Some(src) = wgsd::testing::tiny_model("sd15") else { return };
    let dir = temp("unknown");
    let changed = vec![("unet".to_string(), vec![HostTensor::new("down_blocks.9.nothing.weight", &[1], vec![0.0])])];
    let e = save_diffusers_folder(&src, &dir.join("m"), &changed, false).unwrap_err().to_string();
    assert!(e.contains("down_blocks.9.nothing.weight"), "{e}");
    let e = save_diffusers_folder(&dir, &dir.join("m2"), &[], false).unwrap_err().to_string();
    assert!(e.contains("model_index.json"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
