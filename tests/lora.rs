//! LoRA files for generation: the `lora.*` fixture cases (diffusers' `load_lora_weights` at a multiplier;
//! `WGSD_TRAIN_FIXTURES`, default `../shared/fixtures/train`), the merge against a CPU computation on the
//! tiny models, every key applied or warned about, the layouts (kohya, LoCon, missing alpha, diffusers,
//! peft, old attention-processor names, SD 2's OpenCLIP names, 9-channel conv_in), A1111 prompt tags and
//! `--lora` arguments, and bad files. Without the fixture folders the tests that need them print SKIPPED.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wgsd::fixtures::Fixtures;
use wgsd::generate::open_model;
use wgsd::pipeline::lora::{
    a1111_prompt, extract_lora_tags, lora_delta, merge_lora, merge_loras, parse_lora_arg, resolve_loras, LoraTag, LoraUse, WeightIndex,
};
use wgsd::pipeline::{StableDiffusion, TrainingHooks};
use wgsd::testing::{test_gpu, Rng};
use wgsd::train::lora_file::{read_lora_file_lenient, LoraLayout};
use wgsd::train::save::{safetensors_bytes, HostTensor};



fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-lora-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn t(name: &str, shape: &[usize], values: Vec<f32>) -> HostTensor {
    HostTensor { name: name.into(), shape: shape.to_vec(), values }
}

fn rand(rng: &mut Rng, name: &str, shape: &[usize]) -> HostTensor {
    t(name, shape, rng.vec(shape.iter().product(), 1.0))
}

fn write(path: &Path, tensors: &[HostTensor]) {
    std::fs::write(path, safetensors_bytes(tensors, None).unwrap()).unwrap();
}

fn load(gpu: &std::sync::Arc<wgsd::gpu::Gpu>, dir: &Path) -> (TrainingHooks, StableDiffusion) {
    let hooks = WeightIndex::hooks();
    let (_, sd) = open_model(gpu, &dir.to_string_lossy(), None, None, &[], Some(&hooks)).unwrap();
    (hooks, sd)
}

/// Every weight of the UNet and text encoder by `unet.<key>` / `text_encoder.<key>`, read from the GPU.
fn all_weights(gpu: &wgsd::gpu::Gpu, hooks: &TrainingHooks) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut m = HashMap::new();
    for (prefix, h) in [("unet.", &hooks.unet), ("text_encoder.", &hooks.text_encoder)] {
        for p in h.weights() {
            m.insert(format!("{prefix}{}", p.name), (p.desc.shape.clone(), p.read(gpu).unwrap()));
        }
    }
    m
}

#[test]
fn fixture_cases_match_diffusers() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let gpu = test_gpu();
    let fx = Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::lora_cases(&gpu, &fx).unwrap();
    assert!(results.len() >= 2, "expected the lora.* cases, got {}", results.len());
    for r in &results {
        println!("{}", r.line());
        assert!(r.passed, "{}", r.line());
    }
    // The LoRA changes the image far beyond the tolerance: the cases could not pass without merging it.
    let (a, b) = (fx.tensor("lora.sd15.scale0.0.images").unwrap(), fx.tensor("lora.sd15.scale0.7.images").unwrap());
    let d = wgsd::testing::max_abs(&a, &b);
    println!("reference images with and without the LoRA differ by {d:.3e} max-abs");
    assert!(d > 1e-2, "{d}");
}

#[test]
fn fixture_file_maps_every_key() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let f = read_lora_file_lenient(&dir.join("lora_sd15.safetensors")).unwrap();
    assert_eq!(f.layout, LoraLayout::Kohya);
    assert!(f.skipped.is_empty(), "{:?}", f.skipped);
    let modules: Vec<&String> = f.sources.keys().collect();
    for part in ["proj_in", "attn1.to_q", "to_out.0", "ff.net.0.proj", "ff.net.2", "resnets.0.conv1", "self_attn.out_proj", "mlp.fc2"] {
        assert!(modules.iter().any(|m| m.contains(part)), "no module with {part}");
    }
}

/// The merge against a CPU computation: a known delta changes exactly the targeted weights.
#[test]
fn merge_matches_cpu_and_touches_only_targets() {
    let Some(model) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let before = all_weights(&gpu, &hooks);
    let mut rng = Rng::new(7);
    let q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let pin = "lora_unet_down_blocks_1_attentions_0_proj_in";
    let conv = "lora_unet_down_blocks_0_resnets_0_conv1";
    let te = "lora_te_text_model_encoder_layers_1_self_attn_v_proj";
    let tensors = vec![
        rand(&mut rng, &format!("{q}.lora_down.weight"), &[2, 32]),
        rand(&mut rng, &format!("{q}.lora_up.weight"), &[32, 2]),
        t(&format!("{q}.alpha"), &[], vec![1.0]),
        rand(&mut rng, &format!("{pin}.lora_down.weight"), &[3, 64, 1, 1]),
        rand(&mut rng, &format!("{pin}.lora_up.weight"), &[64, 3, 1, 1]),
        t(&format!("{pin}.alpha"), &[], vec![1.5]),
        // No alpha: alpha = rank.
        rand(&mut rng, &format!("{conv}.lora_down.weight"), &[2, 32, 3, 3]),
        rand(&mut rng, &format!("{conv}.lora_up.weight"), &[32, 2, 1, 1]),
        rand(&mut rng, &format!("{te}.lora_down.weight"), &[2, 32]),
        rand(&mut rng, &format!("{te}.lora_up.weight"), &[32, 2]),
        t(&format!("{te}.alpha"), &[], vec![4.0]),
    ];
    let dir = temp("merge");
    let path = dir.join("l.safetensors");
    write(&path, &tensors);
    let (te_mult, unet_mult) = (0.5f32, 2.0f32);
    let reports = merge_loras(&gpu, &hooks, &[LoraUse { path, te: te_mult, unet: unet_mult }]).unwrap();
    assert_eq!((reports[0].unet_modules, reports[0].te_modules), (3, 1));
    assert!(reports[0].warnings.is_empty(), "{:?}", reports[0].warnings);
    let after = all_weights(&gpu, &hooks);
    let get = |n: &str| tensors.iter().find(|x| x.name == n).unwrap();
    // (kohya module, weight key, scale)
    let targets = [
        (q, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", unet_mult * 1.0 / 2.0),
        (pin, "unet.down_blocks.1.attentions.0.proj_in.weight", unet_mult * 1.5 / 3.0),
        (conv, "unet.down_blocks.0.resnets.0.conv1.weight", unet_mult),
        (te, "text_encoder.text_model.encoder.layers.1.self_attn.v_proj.weight", te_mult * 4.0 / 2.0),
    ];
    for (k, w, s) in targets {
        let (down, up) = (get(&format!("{k}.lora_down.weight")), get(&format!("{k}.lora_up.weight")));
        let (out, r) = (up.shape[0], up.shape[1]);
        let cols = down.values.len() / r;
        let (shape, b) = &before[w];
        assert_eq!(shape.iter().product::<usize>(), out * cols, "{w}");
        let a = &after[w].1;
        let mut worst = 0f64;
        for o in 0..out {
            for c in 0..cols {
                let mut d = 0f64;
                for j in 0..r {
                    d += up.values[o * r + j] as f64 * down.values[j * cols + c] as f64;
                }
                let want = b[o * cols + c] as f64 + s as f64 * d;
                worst = worst.max((a[o * cols + c] as f64 - want).abs());
            }
        }
        println!("{w}: max |merged − CPU| = {worst:.2e}");
        assert!(worst < 1e-5, "{w}: {worst}");
        assert!(wgsd::testing::max_abs(a, b) > 1e-3, "{w} did not change");
    }
    let changed: Vec<&String> = before.keys().filter(|k| before[*k].1 != after[*k].1).collect();
    assert_eq!(changed.len(), 4, "changed: {changed:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lora_delta_shapes() {
    let down = t("d", &[2, 3, 1, 1], vec![1., 2., 3., 4., 5., 6.]);
    let up = t("u", &[2, 2, 1, 1], vec![1., 0., 0., 2.]);
    let (shape, v) = lora_delta(&down, &up).unwrap();
    assert_eq!(shape, vec![2, 3, 1, 1]);
    assert_eq!(v, vec![1., 2., 3., 8., 10., 12.]);
    assert!(lora_delta(&down, &t("u", &[2, 3], vec![0.; 6])).is_err());
}

/// Every key of a file is applied or named in a warning.
#[test]
fn every_key_applied_or_warned() {
    let Some(model) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let mut rng = Rng::new(3);
    let ok = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    let tensors = vec![
        rand(&mut rng, &format!("{ok}.lora_down.weight"), &[2, 32]),
        rand(&mut rng, &format!("{ok}.lora_up.weight"), &[32, 2]),
        t(&format!("{ok}.alpha"), &[], vec![2.0]),
        // A module the model lacks.
        rand(&mut rng, "lora_unet_down_blocks_7_resnets_0_conv1.lora_down.weight", &[2, 32, 3, 3]),
        rand(&mut rng, "lora_unet_down_blocks_7_resnets_0_conv1.lora_up.weight", &[32, 2, 1, 1]),
        // LoCon Tucker: the whole module is skipped.
        rand(&mut rng, "lora_unet_down_blocks_0_resnets_0_conv2.lora_down.weight", &[2, 32, 1, 1]),
        rand(&mut rng, "lora_unet_down_blocks_0_resnets_0_conv2.lora_mid.weight", &[2, 2, 3, 3]),
        rand(&mut rng, "lora_unet_down_blocks_0_resnets_0_conv2.lora_up.weight", &[32, 2, 1, 1]),
        // LoHa, a lone half, SDXL's second text encoder.
        rand(&mut rng, "lora_unet_down_blocks_0_resnets_1_conv1.hada_w1_a", &[32, 2]),
        rand(&mut rng, "lora_unet_down_blocks_0_resnets_1_conv2.lora_down.weight", &[2, 32, 3, 3]),
        rand(&mut rng, "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", &[2, 32]),
    ];
    let dir = temp("warn");
    let path = dir.join("w.safetensors");
    write(&path, &tensors);
    let before = all_weights(&gpu, &hooks);
    let r = &merge_loras(&gpu, &hooks, &[LoraUse { path, te: 1.0, unet: 1.0 }]).unwrap()[0];
    assert_eq!((r.unet_modules, r.te_modules), (1, 0));
    for x in &tensors[3..] {
        assert!(r.warnings.iter().any(|w| w.contains(&x.name)), "{} not warned about: {:?}", x.name, r.warnings);
    }
    for x in &tensors[..3] {
        assert!(!r.warnings.iter().any(|w| w.contains(&x.name)), "{} applied yet warned", x.name);
    }
    println!("warnings:\n  {}", r.warnings.join("\n  "));
    let after = all_weights(&gpu, &hooks);
    let changed: Vec<&String> = before.keys().filter(|k| before[*k].1 != after[*k].1).collect();
    assert_eq!(changed, vec!["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// diffusers, peft, old attention-processor and OpenCLIP names all reach the same modules; a packed
/// OpenCLIP in_proj updates q, k and v.
#[test]
fn other_layouts_map_and_merge() {
    let Some(model) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let index = WeightIndex::from_hooks(&hooks);
    let mut rng = Rng::new(11);
    let dir = temp("layouts");
    let cases: Vec<(&str, Vec<HostTensor>, Vec<&str>)> = vec![
        (
            "diffusers",
            vec![
                rand(&mut rng, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight", &[2, 32]),
                rand(&mut rng, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight", &[32, 2]),
                rand(&mut rng, "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight", &[2, 32]),
                rand(&mut rng, "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight", &[32, 2]),
            ],
            vec!["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.weight"],
        ),
        (
            "peft",
            vec![
                rand(&mut rng, "unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight", &[2, 256]),
                rand(&mut rng, "unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora_B.weight", &[64, 2]),
            ],
            vec!["unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight"],
        ),
        (
            "attn_processor",
            vec![
                rand(&mut rng, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight", &[2, 32]),
                rand(&mut rng, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight", &[32, 2]),
                rand(&mut rng, "text_encoder.text_model.encoder.layers.1.self_attn.to_q_lora.down.weight", &[2, 32]),
                rand(&mut rng, "text_encoder.text_model.encoder.layers.1.self_attn.to_q_lora.up.weight", &[32, 2]),
            ],
            vec!["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.weight", "text_encoder.text_model.encoder.layers.1.self_attn.q_proj.weight"],
        ),
        (
            "openclip",
            vec![
                rand(&mut rng, "lora_te_model_transformer_resblocks_2_mlp_c_fc.lora_down.weight", &[2, 32]),
                rand(&mut rng, "lora_te_model_transformer_resblocks_2_mlp_c_fc.lora_up.weight", &[133, 2]),
                rand(&mut rng, "lora_te_wrapped_model_transformer_resblocks_0_attn_in_proj.lora_down.weight", &[2, 32]),
                rand(&mut rng, "lora_te_wrapped_model_transformer_resblocks_0_attn_in_proj.lora_up.weight", &[96, 2]),
            ],
            vec![
                "text_encoder.text_model.encoder.layers.2.mlp.fc1.weight",
                "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight",
                "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.weight",
                "text_encoder.text_model.encoder.layers.0.self_attn.v_proj.weight",
            ],
        ),
    ];
    for (name, tensors, targets) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        write(&path, &tensors);
        let file = read_lora_file_lenient(&path).unwrap();
        assert!(file.skipped.is_empty(), "{name}: {:?}", file.skipped);
        let before: Vec<Vec<f32>> = targets.iter().map(|k| index.get(k).unwrap_or_else(|| panic!("{k}")).read(&gpu).unwrap()).collect();
        let r = merge_lora(&gpu, &index, &file, name, 1.0, 1.0).unwrap();
        assert!(r.warnings.is_empty(), "{name}: {:?}", r.warnings);
        for (k, b) in targets.iter().zip(&before) {
            let a = index.get(k).unwrap().read(&gpu).unwrap();
            assert!(wgsd::testing::max_abs(&a, b) > 1e-3, "{name}: {k} unchanged");
        }
        println!("{name}: {} modules merged", r.unet_modules + r.te_modules);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A 4-channel conv_in LoRA on a 9-channel inpainting UNet is zero-padded (A1111).
#[test]
fn inpainting_conv_in_is_zero_padded() {
    let Some(model) = wgsd::testing::tiny_model("sd15-inpaint") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let index = WeightIndex::from_hooks(&hooks);
    let mut rng = Rng::new(5);
    let dir = temp("inpaint");
    let path = dir.join("c.safetensors");
    let (down, up) = (rand(&mut rng, "lora_unet_conv_in.lora_down.weight", &[2, 4, 3, 3]), rand(&mut rng, "lora_unet_conv_in.lora_up.weight", &[32, 2, 1, 1]));
    write(&path, &[down.clone(), up.clone()]);
    let w = index.get("unet.conv_in.weight").unwrap();
    assert_eq!(w.desc.shape, vec![32, 9, 3, 3]);
    let before = w.read(&gpu).unwrap();
    merge_lora(&gpu, &index, &read_lora_file_lenient(&path).unwrap(), "c", 1.0, 1.0).unwrap();
    let after = w.read(&gpu).unwrap();
    let (_, delta) = lora_delta(&down, &up).unwrap();
    for o in 0..32 {
        for c in 0..9 {
            for k in 0..9 {
                let i = (o * 9 + c) * 9 + k;
                let want = before[i] + if c < 4 { delta[(o * 4 + c) * 9 + k] } else { 0.0 };
                assert!((after[i] - want).abs() < 1e-6, "o {o} c {c} k {k}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_files_are_errors() {
    let Some(model) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let index = WeightIndex::from_hooks(&hooks);
    let dir = temp("bad");
    let mut rng = Rng::new(9);
    let m = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let good = [rand(&mut rng, &format!("{m}.lora_down.weight"), &[2, 32]), rand(&mut rng, &format!("{m}.lora_up.weight"), &[32, 2])];
    // Truncated.
    let bytes = safetensors_bytes(&good, None).unwrap();
    let trunc = dir.join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() - 10]).unwrap();
    let e = read_lora_file_lenient(&trunc).unwrap_err().to_string();
    assert!(e.contains("trunc.safetensors"), "{e}");
    // Not safetensors at all; no tensors.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(read_lora_file_lenient(&junk).is_err());
    let empty = dir.join("empty.safetensors");
    write(&empty, &[]);
    assert!(read_lora_file_lenient(&empty).unwrap_err().to_string().contains("no tensors"));
    // Wrong shapes for this model (an SD 2 / SDXL width): an error naming the module and both shapes,
    // and nothing is written.
    let wide = dir.join("wide.safetensors");
    write(&wide, &[good[0].clone(), good[1].clone(), rand(&mut rng, "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", &[2, 320, 3, 3]), rand(&mut rng, "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", &[320, 2, 1, 1])]);
    let q = index.get("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight").unwrap();
    let before = q.read(&gpu).unwrap();
    let e = merge_lora(&gpu, &index, &read_lora_file_lenient(&wide).unwrap(), "wide", 1.0, 1.0).unwrap_err().to_string();
    assert!(e.contains("down_blocks.0.resnets.0.conv1") && e.contains("[320, 320, 3, 3]") && e.contains("[32, 32, 3, 3]"), "{e}");
    assert_eq!(q.read(&gpu).unwrap(), before, "a failed merge must not change the model");
    // A LoRA for another family (SDXL's two text encoders and LDM UNet names): nothing applies → error.
    let xl = dir.join("xl.safetensors");
    write(&xl, &[rand(&mut rng, "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", &[2, 32]), rand(&mut rng, "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", &[133, 2]), rand(&mut rng, "lora_unet_input_blocks_4_1_proj_in.lora_down.weight", &[2, 32]), rand(&mut rng, "lora_unet_input_blocks_4_1_proj_in.lora_up.weight", &[32, 2])]);
    let e = merge_lora(&gpu, &index, &read_lora_file_lenient(&xl).unwrap(), "xl", 1.0, 1.0).unwrap_err().to_string();
    assert!(e.contains("another model family"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn prompt_tags_a1111_forms() {
    let tag = |name: &str, te: f32, unet: f32| LoraTag { name: name.into(), te, unet };
    let (p, tags) = extract_lora_tags("a cat <lora:style:0.8>, <lora:detail>, photo <lora:mix:0.5:1.2> end").unwrap();
    assert_eq!(p, "a cat , , photo  end");
    assert_eq!(tags, vec![tag("style", 0.8, 0.8), tag("detail", 1.0, 1.0), tag("mix", 0.5, 1.2)]);
    let (_, tags) = extract_lora_tags("<lora:a:te=0.3:unet=0.9><lora:b:0.4:unet=2>").unwrap();
    assert_eq!(tags, vec![tag("a", 0.3, 0.9), tag("b", 0.4, 2.0)]);
    // Negative multipliers, other extra networks left alone, no tags.
    let (p, tags) = extract_lora_tags("x <hypernet:h:1> <lora:neg:-1>").unwrap();
    assert_eq!((p.as_str(), tags), ("x <hypernet:h:1> ", vec![tag("neg", -1.0, -1.0)]));
    assert_eq!(extract_lora_tags("plain (text:1.2)").unwrap(), ("plain (text:1.2)".to_string(), vec![]));
    // An unclosed tag stays text.
    assert_eq!(extract_lora_tags("a <lora:x:1").unwrap().1, vec![]);
    for bad in ["<lora::1>", "<lora:x:abc>", "<lora:x:1:2:3>", "<lora:x:dyn=4>"] {
        assert!(extract_lora_tags(bad).is_err(), "{bad}");
    }
}

#[test]
fn lora_arguments_and_resolution() {
    assert_eq!(parse_lora_arg("a/b.safetensors").unwrap(), LoraUse { path: "a/b.safetensors".into(), te: 1.0, unet: 1.0 });
    assert_eq!(parse_lora_arg("a/b.safetensors:0.6").unwrap(), LoraUse { path: "a/b.safetensors".into(), te: 0.6, unet: 0.6 });
    assert_eq!(parse_lora_arg("C:\\loras\\b.safetensors").unwrap().path, PathBuf::from("C:\\loras\\b.safetensors"));
    assert!(parse_lora_arg("b.safetensors:strong").is_err());
    let dir = temp("resolve");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut rng = Rng::new(1);
    let m = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let ts = [rand(&mut rng, &format!("{m}.lora_down.weight"), &[2, 32]), rand(&mut rng, &format!("{m}.lora_up.weight"), &[32, 2])];
    write(&dir.join("sub/deep.safetensors"), &ts);
    write(&dir.join("top.safetensors"), &ts);
    let arg = format!("{}:0.25", dir.join("top.safetensors").display());
    let (clean, uses) = resolve_loras(std::slice::from_ref(&arg), Some(&dir), "x <lora:deep:0.5:0.75> y").unwrap();
    assert_eq!(clean, "x  y");
    assert_eq!(uses[1], LoraUse { path: dir.join("sub/deep.safetensors"), te: 0.5, unet: 0.75 });
    assert_eq!(uses[0].te, 0.25);
    let e = resolve_loras(&[], Some(&dir), "<lora:missing:1>").unwrap_err().to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    assert!(resolve_loras(&[], None, "<lora:deep:1>").unwrap_err().to_string().contains("--lora-dir"));
    let e = resolve_loras(&[dir.join("nope.safetensors").display().to_string()], None, "x").unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(resolve_loras(&["old.pt".to_string()], None, "x").unwrap_err().to_string().contains("pickle"));
    assert_eq!(a1111_prompt("cat <lora:deep:1>", &uses[..1]), "cat <lora:deep:1> <lora:top:0.25>");
    let _ = std::fs::remove_dir_all(dir);
}

/// The module set LCM-LoRA trains (latent-consistency/lcm-lora-sdv1-5: attention, proj_in/out, both
/// feed-forward layers, resnet convs, 1×1 conv_shortcut, time_emb_proj, down/upsampler convs), in the kohya
/// names A1111 users download and in peft's `base_model.model.` names: every pair is applied, none warned.
#[test]
fn lcm_lora_module_set_applies_in_full() {
    let Some(model) = wgsd::testing::tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let (hooks, _sd) = load(&gpu, &model);
    let modules: [(&str, &[usize], &[usize]); 9] = [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", &[2, 32], &[32, 2]),
        ("down_blocks.0.attentions.0.proj_in", &[2, 32], &[32, 2]),
        ("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj", &[2, 32], &[256, 2]),
        ("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2", &[2, 128], &[32, 2]),
        ("down_blocks.0.resnets.0.conv1", &[2, 32, 3, 3], &[32, 2, 1, 1]),
        ("down_blocks.1.resnets.0.conv_shortcut", &[2, 32, 1, 1], &[64, 2, 1, 1]),
        ("down_blocks.0.resnets.0.time_emb_proj", &[2, 128], &[32, 2]),
        ("down_blocks.0.downsamplers.0.conv", &[2, 32, 3, 3], &[32, 2, 1, 1]),
        ("up_blocks.0.upsamplers.0.conv", &[2, 64, 3, 3], &[64, 2, 1, 1]),
    ];
    let mut rng = Rng::new(11);
    let kohya: Vec<HostTensor> = modules
        .iter()
        .flat_map(|(m, down, up)| {
            let k = format!("lora_unet_{}", m.replace('.', "_"));
            vec![rand(&mut rng, &format!("{k}.lora_down.weight"), down), rand(&mut rng, &format!("{k}.lora_up.weight"), up), t(&format!("{k}.alpha"), &[], vec![1.0])]
        })
        .collect();
    let peft: Vec<HostTensor> = modules
        .iter()
        .flat_map(|(m, down, up)| {
            vec![rand(&mut rng, &format!("base_model.model.{m}.lora_A.weight"), down), rand(&mut rng, &format!("base_model.model.{m}.lora_B.weight"), up)]
        })
        .collect();
    let dir = temp("lcm");
    for (name, tensors) in [("kohya", &kohya), ("peft", &peft)] {
        let path = dir.join(format!("{name}.safetensors"));
        write(&path, tensors);
        let before = all_weights(&gpu, &hooks);
        let r = &merge_loras(&gpu, &hooks, &[LoraUse { path, te: 1.0, unet: 1.0 }]).unwrap()[0];
        assert!(r.warnings.is_empty(), "{name}: {:?}", r.warnings);
        assert_eq!(r.unet_modules, modules.len(), "{name}");
        let after = all_weights(&gpu, &hooks);
        for (m, _, _) in &modules {
            let k = format!("unet.{m}.weight");
            assert_ne!(before[&k].1, after[&k].1, "{name}: {m} unchanged");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
