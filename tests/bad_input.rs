//! Bad input and the output it must never cost: each case runs the real `wgsd` binary and asserts a non-zero
//! exit with a message naming the culprit, no panic, no file left behind and no existing file changed —
//! or, for inputs that are fine but unusual (a Japanese prompt with an emoji), that the image and its
//! settings survive intact. Cases that need the tiny fixture model print SKIPPED without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wgsd::models::weights::WeightFile;
use wgsd::output::{read_parameters, write_png};
use wgsd::train::save::{safetensors_bytes, HostTensor};

fn wgsd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsd"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny_sd15() -> Option<PathBuf> {
    wgsd::testing::tiny_model("sd15")
}

/// Files in `dir` (names), to prove nothing was left behind.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

/// A failed run: non-zero exit, no panic, and the message contains `want`.
fn assert_refused(o: &Output, want: &str, case: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{case}: succeeded; stderr: {err}");
    assert!(!err.contains("panicked"), "{case}: panicked: {err}");
    assert!(err.contains(want), "{case}: expected {want:?} in: {err}");
}

fn generate(model: &Path, out: &Path, extra: &[&str]) -> Output {
    wgsd()
        .args(["generate", "--model", model.to_str().unwrap(), "--steps", "1", "--width", "64", "--height", "64", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Output names and folders are checked before any model is loaded (the model here does not exist, so a
/// message about the output proves the order).
#[test]
fn output_paths_are_checked_before_loading() {
    let dir = temp("out");
    let nowhere = dir.join("no-model");
    let cases: &[(&str, PathBuf, &str)] = &[
        ("jpeg name", dir.join("x.jpg"), "writes PNG files"),
        ("no extension", dir.join("x"), "writes PNG files"),
        ("missing folder", dir.join("sub/x.png"), "does not exist"),
        ("a folder", dir.join("d.png"), "is a folder"),
    ];
    std::fs::create_dir_all(dir.join("d.png")).unwrap();
    for (case, out, want) in cases {
        let o = wgsd().args(["generate", "--model"]).arg(&nowhere).args(["--prompt", "x", "--out"]).arg(out).output().unwrap();
        assert_refused(&o, want, case);
    }
    std::fs::write(dir.join("old.png"), b"precious").unwrap();
    let o = wgsd().args(["generate", "--model"]).arg(&nowhere).args(["--prompt", "x", "--out"]).arg(dir.join("old.png")).output().unwrap();
    assert_refused(&o, "already exists", "existing file");
    assert_eq!(std::fs::read(dir.join("old.png")).unwrap(), b"precious");
    assert_eq!(files(&dir), ["d.png", "old.png"], "nothing left behind");
}

#[test]
fn seeds_follow_a1111() {
    let dir = temp("seed");
    let o = wgsd().args(["generate", "--prompt", "x", "--seed", "-5", "--out"]).arg(dir.join("a.png")).output().unwrap();
    assert_refused(&o, "-1 = random", "seed -5");
    let Some(model) = tiny_sd15() else { return };
    let o = generate(&model, &dir.join("r.png"), &["--prompt", "x", "--seed", "-1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let seed: u64 = err.lines().find_map(|l| l.strip_prefix("seed ").and_then(|r| r.strip_suffix(" (random)"))).expect(&err).parse().unwrap();
    let params = read_parameters(&dir.join("r.png")).unwrap().unwrap();
    assert!(params.contains(&format!("Seed: {seed},")), "{params}");
    // The model is named, not the local path; the sampler as A1111 names it.
    assert!(params.contains("Model: sd15") && !params.contains(model.to_str().unwrap()), "{params}");
    assert!(!params.contains("Scheduler,"), "{params}");
    let o = generate(&model, &dir.join("w.png"), &["--prompt", "x", "--seed", &u64::MAX.to_string()]);
    assert!(!o.status.success());
    let o = generate(&model, &dir.join("w.png"), &["--prompt", "x", "--seed", &(i64::MAX).to_string(), "--n-images", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A prompt that Latin-1 cannot hold goes into a UTF-8 iTXt chunk and reads back intact.
#[test]
fn non_latin1_prompts_keep_their_image_and_text() {
    let dir = temp("utf8");
    let text = "東京の夜景、ネオン 🌃 — “quoted” café\nSteps: 1";
    let rgb = vec![7u8; 4 * 4 * 3];
    write_png(&dir.join("u.png"), 4, 4, &rgb, text, false).unwrap();
    assert_eq!(read_parameters(&dir.join("u.png")).unwrap().as_deref(), Some(text));
    write_png(&dir.join("l.png"), 4, 4, &rgb, "café, naïve", false).unwrap();
    assert_eq!(read_parameters(&dir.join("l.png")).unwrap().as_deref(), Some("café, naïve"));
    assert_eq!(files(&dir), ["l.png", "u.png"]);
    // Pillow, which A1111 reads PNG info with, sees the same text (where Python and Pillow are installed).
    let pillow = Command::new("python3")
        .args(["-c", "import sys; from PIL import Image; sys.stdout.buffer.write(Image.open(sys.argv[1]).info['parameters'].encode())"])
        .arg(dir.join("u.png"))
        .output();
    match pillow {
        Ok(o) if o.status.success() => assert_eq!(String::from_utf8_lossy(&o.stdout), text),
        _ => eprintln!("SKIPPED: the Pillow read-back needs python3 with Pillow (pip install pillow)"),
    }

    let Some(model) = tiny_sd15() else { return };
    let prompt = "桜の木の下の猫 🐈, (masterpiece:1.2)";
    let o = generate(&model, &dir.join("cat.png"), &["--prompt", prompt, "--negative-prompt", "ぼやけた", "--seed", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let params = read_parameters(&dir.join("cat.png")).unwrap().unwrap();
    assert!(params.starts_with(&format!("{prompt}\nNegative prompt: ぼやけた\n")), "{params}");
}

/// A failed write leaves the old file as it was and no temporary file behind.
#[test]
fn failed_writes_change_nothing() {
    let dir = temp("atomic");
    let old = dir.join("old.png");
    write_png(&old, 2, 2, &[1u8; 12], "first", false).unwrap();
    let before = std::fs::read(&old).unwrap();
    // Wrong data length, with and without --overwrite; an existing name without it.
    assert!(write_png(&old, 2, 2, &[1u8; 11], "second", true).is_err());
    let e = write_png(&old, 2, 2, &[2u8; 12], "second", false).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&old).unwrap(), before);
    assert_eq!(files(&dir), ["old.png"]);
    write_png(&old, 2, 2, &[2u8; 12], "second", true).unwrap();
    assert_eq!(read_parameters(&old).unwrap().as_deref(), Some("second"));
    assert_eq!(files(&dir), ["old.png"]);
}

/// A copy of the tiny model whose UNet has one weight tensor replaced by NaN.
fn model_with_nan_unet(dir: &Path, model: &Path) -> PathBuf {
    let copy = dir.join("nan-model");
    for entry in walk(model) {
        let rel = entry.strip_prefix(model).unwrap();
        std::fs::create_dir_all(copy.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&entry, copy.join(rel)).unwrap();
    }
    let file = copy.join("unet/diffusion_pytorch_model.safetensors");
    let w = WeightFile::open(&file).unwrap();
    let tensors: Vec<HostTensor> = w
        .names()
        .into_iter()
        .map(|name| {
            let mut values = w.read_f32(&name).unwrap();
            if name == "conv_in.weight" {
                values.iter_mut().for_each(|v| *v = f32::NAN);
            }
            HostTensor { shape: w.shape(&name).unwrap(), name, values }
        })
        .collect();
    drop(w);
    std::fs::write(&file, safetensors_bytes(&tensors, None).unwrap()).unwrap();
    copy
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// NaN never becomes a black PNG with exit code 0: the run stops, names the step and the likely cause.
#[test]
fn nan_stops_the_run_without_an_image() {
    let Some(model) = tiny_sd15() else { return };
    let dir = temp("nan");
    let broken = model_with_nan_unet(&dir, &model);
    let o = generate(&broken, &dir.join("a.png"), &["--prompt", "x", "--seed", "1"]);
    assert_refused(&o, "at step 1 of 1", "NaN UNet weights");
    assert_refused(&o, "weight file", "NaN UNet weights");
    let o = generate(&model, &dir.join("b.png"), &["--prompt", "x", "--seed", "1", "--cfg-scale", "1e38"]);
    assert_refused(&o, "--cfg-scale", "cfg 1e38");
    assert!(!dir.join("a.png").exists() && !dir.join("b.png").exists());
    assert_eq!(files(&dir), ["nan-model"]);
}

/// Every config value that would crash or silently mislead is refused, naming the file and the value.
#[test]
fn nonsense_config_values_are_refused() {
    use serde_json::{json, Value};
    use wgsd::models::config::{ClipTextConfig, UNetConfig, VaeConfig};
    let Some(model) = tiny_sd15() else { return };
    let dir = temp("configs");
    let read = |part: &str| -> Value {
        let file = if part == "scheduler" { "scheduler_config.json" } else { "config.json" };
        serde_json::from_str(&std::fs::read_to_string(model.join(part).join(file)).unwrap()).unwrap()
    };
    let cases: &[(&str, &str, Value, &str)] = &[
        ("unet", "norm_num_groups", json!(0), "norm_num_groups is 0"),
        ("unet", "norm_num_groups", json!(7), "multiples of norm_num_groups 7"),
        ("unet", "block_out_channels", json!([]), "empty"),
        ("unet", "attention_head_dim", json!(0), "attention heads"),
        ("unet", "attention_head_dim", json!(7), "attention heads"),
        ("unet", "layers_per_block", json!(0), "layers_per_block"),
        ("unet", "down_block_types", json!(["DownBlock2D"]), "block types"),
        ("vae", "norm_num_groups", json!(0), "norm_num_groups is 0"),
        ("vae", "block_out_channels", json!([]), "differ in length"),
        ("vae", "scaling_factor", json!(-1.0), "scaling_factor"),
        ("text_encoder", "num_attention_heads", json!(0), "at least 1"),
        ("text_encoder", "eos_token_id", json!(1_000_000), "outside the vocabulary"),
    ];
    for (i, (part, key, value, want)) in cases.iter().enumerate() {
        let mut cfg = read(part);
        cfg[*key] = value.clone();
        let path = dir.join(format!("{i}-{part}.json"));
        std::fs::write(&path, cfg.to_string()).unwrap();
        let err = match *part {
            "unet" => UNetConfig::from_file(&path).err(),
            "vae" => VaeConfig::from_file(&path).err(),
            _ => ClipTextConfig::from_file(&path).err(),
        }
        .unwrap_or_else(|| panic!("{part}.{key} = {value} was accepted"))
        .to_string();
        assert!(err.contains(want) && err.contains(&format!("{i}-{part}.json")), "{part}.{key} = {value}: {err}");
    }

    let sched = read("scheduler");
    let class = sched["_class_name"].as_str().unwrap().to_string();
    let bad_sched: &[(&str, Value, &str)] = &[
        ("beta_start", json!(-0.1), "in (0, 1)"),
        ("beta_end", json!(1.5), "in (0, 1)"),
        ("beta_start", json!(0.5), "must not decrease"),
        ("trained_betas", json!([0.1, 0.2]), "num_train_timesteps"),
        ("num_train_timesteps", json!(0), "num_train_timesteps"),
        ("num_train_timesteps", json!(10_000_000_000u64), "num_train_timesteps"),
    ];
    for (key, value, want) in bad_sched {
        let mut cfg = sched.clone();
        cfg[*key] = value.clone();
        let err = wgsd::schedulers::from_config(&class, &cfg, "scheduler_config.json").err().unwrap_or_else(|| panic!("{key} = {value} accepted")).to_string();
        assert!(err.contains(want) && err.contains("scheduler_config.json"), "{key} = {value}: {err}");
    }
}

/// Out-of-range arguments: refused with the bound, before anything is loaded or written; a size the GPU
/// cannot hold says so in a sentence.
#[test]
fn out_of_range_arguments_are_refused() {
    let dir = temp("args");
    let model = tiny_sd15().unwrap_or_else(|| PathBuf::from("../shared/fixtures/tiny/sd15"));
    let cases: &[(&[&str], &str)] = &[
        (&["--n-images", "100000"], "at most"),
        (&["--batch", "1000"], "at most"),
        (&["--steps", "5000"], "at most 1000"),
        (&["--width", "20000"], "above 16384"),
        (&["--cfg-scale", "nan"], "cfg"),
        (&["--clip-skip", "0"], "counts from 1"),
        (&["--prompt-syntax", "latex"], "a1111"),
        (&["--vae-tiling", "sometimes"], "auto"),
    ];
    for (extra, want) in cases {
        let o = wgsd().args(["generate", "--model"]).arg(&model).args(["--prompt", "x", "--out"]).arg(dir.join("a.png")).args(*extra).output().unwrap();
        assert_refused(&o, want, &format!("{extra:?}"));
    }
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    if tiny_sd15().is_none() {
        return;
    }
    // Checked once the model's scheduler config is known.
    let o = wgsd().args(["generate", "--model"]).arg(&model).args(["--prompt", "x", "--sampler", "warp_drive", "--out"]).arg(dir.join("a.png")).output().unwrap();
    assert_refused(&o, "unknown sampler", "--sampler warp_drive");
    let o = wgsd()
        .args(["generate", "--model", model.to_str().unwrap(), "--steps", "1", "--prompt", "x", "--width", "8192", "--height", "8192", "--out"])
        .arg(dir.join("big.png"))
        .output()
        .unwrap();
    assert_refused(&o, "this GPU allows", "8192²");
    assert!(files(&dir).is_empty());
}

/// Broken files and unknown devices: each refused naming the culprit, nothing written.
#[test]
fn broken_files_and_unknown_devices_are_named() {
    let dir = temp("files");
    let Some(model) = tiny_sd15() else { return };
    let out = dir.join("o.png");
    let run = |args: &[&str], model: &Path| {
        wgsd().args(args).args(["--model"]).arg(model).args(["--prompt", "x", "--steps", "1", "--out"]).arg(&out).output().unwrap()
    };
    assert_refused(&run(&["--backend", "glide", "generate"], &model), "glide", "unknown backend");
    assert_refused(&run(&["--adapter", "NoSuchGPU9000", "generate"], &model), "NoSuchGPU9000", "unknown adapter");

    std::fs::write(dir.join("notes.png"), b"this is text, not a PNG").unwrap();
    let bad_image = dir.join("notes.png");
    let o = run(&["img2img", "--image", bad_image.to_str().unwrap()], &model);
    assert_refused(&o, "notes.png", "an image that is not one");
    let o = run(&["img2img", "--image", dir.join("missing.png").to_str().unwrap()], &model);
    assert_refused(&o, "missing.png", "a missing image");

    // A copy of the model with its UNet weights cut short, then with a tensor missing.
    let copy = dir.join("model");
    for entry in walk(&model) {
        let rel = entry.strip_prefix(&model).unwrap();
        std::fs::create_dir_all(copy.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&entry, copy.join(rel)).unwrap();
    }
    let unet = copy.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&unet).unwrap();
    std::fs::write(&unet, &bytes[..bytes.len() - 1000]).unwrap();
    let o = run(&["generate"], &copy);
    assert_refused(&o, "diffusion_pytorch_model.safetensors", "truncated weights");
    assert_refused(&o, "truncated", "truncated weights");
    let w = WeightFile::from_bytes(&unet, bytes).unwrap();
    let kept: Vec<HostTensor> = w
        .names()
        .into_iter()
        .filter(|n| n != "conv_out.weight")
        .map(|n| HostTensor { shape: w.shape(&n).unwrap(), values: w.read_f32(&n).unwrap(), name: n })
        .collect();
    std::fs::write(&unet, safetensors_bytes(&kept, None).unwrap()).unwrap();
    let o = run(&["generate"], &copy);
    assert_refused(&o, "conv_out.weight", "missing tensor");
    assert!(!out.exists());
}

/// A broken tokenizer folder names the file and what is wrong with it, rather than failing inside the
/// tokenizers crate or later at the first prompt.
#[test]
fn broken_tokenizer_files_are_named() {
    use wgsd::models::tokenizer::ClipTokenizer;
    let Some(model) = tiny_sd15() else { return };
    let src = model.join("tokenizer");
    let fresh = |name: &str| {
        let d = temp(&format!("tok-{name}"));
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
        }
        d
    };
    let intact = ClipTokenizer::from_folder(&fresh("intact")).expect("a copy of the fixture's tokenizer loads");
    let ids = intact.encode("a photo of a cat").unwrap().ids;
    assert_eq!((ids[0], ids.len()), (intact.bos_id, intact.max_len));

    let vocab = std::fs::read_to_string(src.join("vocab.json")).unwrap();
    let merges = std::fs::read_to_string(src.join("merges.txt")).unwrap();
    let cases: &[(&str, &str, String, &[&str])] = &[
        ("cut", "vocab.json", vocab[..vocab.len() / 2].to_string(), &["vocab.json", "token → id"]),
        ("no-eos", "vocab.json", vocab.replace("\"<|endoftext|>\"", "\"<|gone|>\""), &["vocab.json", "<|endoftext|>", "not in the vocabulary"]),
        ("bad-merge", "merges.txt", format!("{merges}\nthree parts here\n"), &["merges.txt", "line", "three parts here"]),
    ];
    for (name, file, text, want) in cases {
        let d = fresh(name);
        std::fs::write(d.join(file), text).unwrap();
        let err = ClipTokenizer::from_folder(&d).err().unwrap_or_else(|| panic!("{name}: a broken {file} was accepted")).to_string();
        for w in *want {
            assert!(err.contains(w), "{name}: expected {w:?} in: {err}");
        }
    }
}
