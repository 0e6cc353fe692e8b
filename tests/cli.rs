//! The `wgsd` command line end to end: `generate` on the tiny fixture model (skipped, and said so, without
//! the fixtures), and its refusals of bad input.

use std::path::PathBuf;
use std::process::Command;

fn wgsd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsd"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

fn tiny_sd15() -> Option<PathBuf> {
    let dir = wgsd::fixtures::dir().join("sd15");
    if dir.join("model_index.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no fixture model at {} (set {})", dir.display(), wgsd::fixtures::ENV);
        None
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pixels(path: &std::path::Path) -> Vec<u8> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    buf
}

#[test]
fn generate_writes_a_reproducible_png_with_its_settings_and_never_overwrites() {
    let Some(model) = tiny_sd15() else { return };
    let dir = temp_dir("gen");
    let out = dir.join("x.png");
    let args = ["generate", "--model", model.to_str().unwrap(), "--prompt", "a red fox", "--steps", "4", "--seed", "1", "--out"];
    let run = |extra: &[&str]| wgsd().args(args).arg(&out).args(extra).output().unwrap();

    let first = run(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let params = wgsd::output::read_parameters(&out).unwrap().expect("parameters chunk");
    assert!(params.starts_with("a red fox\nSteps: 4, Sampler: ") && params.contains("Seed: 1, Size: 128x128"), "{params}");
    let px = pixels(&out);
    assert!(px.iter().any(|&v| v != px[0]), "a flat image");

    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(pixels(&out), px, "the refused run must leave the file alone");

    let over = run(&["--overwrite"]);
    assert!(over.status.success(), "{}", String::from_utf8_lossy(&over.stderr));
    assert_eq!(pixels(&out), px, "the same seed must give the same pixels");
}

#[test]
fn generate_refuses_bad_input_with_clear_messages() {
    let dir = temp_dir("bad");
    let model = tiny_sd15().unwrap_or_else(|| PathBuf::from("../shared/fixtures/tiny/sd15"));
    let out = dir.join("y.png");
    let cases: &[(&[&str], &str)] = &[
        (&["--width", "100"], "multiple of 8"),
        (&["--steps", "0"], "at least 1"),
        (&["--sampler", "bogus"], "unknown sampler"),
    ];
    for (extra, want) in cases {
        let o = wgsd()
            .args(["generate", "--model", model.to_str().unwrap(), "--prompt", "x", "--out"])
            .arg(&out)
            .args(*extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = wgsd().args(["generate", "--model"]).arg(&dir).args(["--prompt", "x", "--out"]).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not a diffusers model folder"), "{err}");
    assert!(!out.exists());
}

/// A fixture model folder by name, or None (with a SKIPPED line) when the fixtures are absent.
fn tiny(model: &str) -> Option<PathBuf> {
    let dir = wgsd::fixtures::dir().join(model);
    if dir.join("model_index.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no fixture model at {} (set {})", dir.display(), wgsd::fixtures::ENV);
        None
    }
}

#[test]
fn image_modes_write_pngs_with_their_strength() {
    let (Some(sd15), Some(inpaint), Some(depth)) = (tiny("sd15"), tiny("sd15-inpaint"), tiny("sd2-depth")) else { return };
    let fx = wgsd::fixtures::dir();
    let (image, mask) = (fx.join("init.png"), fx.join("mask.png"));
    if !image.exists() || !mask.exists() {
        eprintln!("SKIPPED: this fixture set has no init.png / mask.png");
        return;
    }
    let dir = temp_dir("modes");
    let runs: Vec<(&str, Vec<PathBuf>, &PathBuf, &str)> = vec![
        ("img2img", vec![], &sd15, "0.6"),
        ("inpaint", vec!["--mask".into(), mask.clone()], &inpaint, "1"),
        ("inpaint", vec!["--mask".into(), mask.clone()], &sd15, "0.8"),
        // Any gray image works as a depth map: only its relative brightness matters.
        ("depth2img", vec!["--depth".into(), mask.clone()], &depth, "0.7"),
    ];
    for (i, (mode, extra, model, strength)) in runs.iter().enumerate() {
        let out = dir.join(format!("{mode}-{i}.png"));
        let o = wgsd()
            .args([*mode, "--model", model.to_str().unwrap(), "--prompt", "a red fox", "--steps", "3", "--seed", "7"])
            .args(["--strength", strength, "--image"])
            .arg(&image)
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{mode}: {}", String::from_utf8_lossy(&o.stderr));
        let params = wgsd::output::read_parameters(&out).unwrap().expect("parameters chunk");
        assert!(params.contains(&format!("Denoising strength: {strength}")), "{params}");
        let px = pixels(&out);
        assert!(px.iter().any(|&v| v != px[0]), "{mode}: a flat image");
    }
}

#[test]
fn image_modes_refuse_inputs_that_do_not_fit() {
    let fx = wgsd::fixtures::dir();
    let (Some(sd15), Some(inpaint)) = (tiny("sd15"), tiny("sd15-inpaint")) else { return };
    let dir = temp_dir("modes-bad");
    let out = dir.join("z.png");


    let init = fx.join("init.png");
    if !init.exists() {
        eprintln!("SKIPPED: this fixture set has no init.png");
        return;
    }
    let (w, h) = image::image_dimensions(&init).unwrap();
    // A mask of another aspect ratio, and an all-black one of the image's size.
    let small = dir.join("small.png");
    image::RgbImage::new(w, h + 8).save(&small).unwrap();
    let black = dir.join("black.png");
    image::GrayImage::new(w, h).save(&black).unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["img2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--strength".into(), "0".into()], "(0, 1]"),
        (vec!["img2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--strength".into(), "1.5".into()], "(0, 1]"),
        (vec!["img2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--width".into(), "100".into()], "multiple of 8"),
        (vec!["img2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--safety-checker".into(), "maybe".into()], "unknown safety checker mode"),
        (vec!["img2img".into(), "--model".into(), s(&inpaint), "--image".into(), s(&init)], "inpainting model, use inpaint"),
        (vec!["img2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--steps".into(), "2".into(), "--strength".into(), "0.3".into()], "no step to run"),
        (vec!["inpaint".into(), "--model".into(), s(&inpaint), "--image".into(), s(&init), "--mask".into(), s(&small)], "same size (or aspect ratio)"),
        (vec!["inpaint".into(), "--model".into(), s(&inpaint), "--image".into(), s(&init), "--mask".into(), s(&black)], "all black"),
        (vec!["depth2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--depth".into(), s(&init)], "needs a depth model"),
        (vec!["depth2img".into(), "--model".into(), s(&sd15), "--image".into(), s(&init), "--depth".into(), s(&small.with_extension("jpg"))], "no such file"),
    ];
    for (args, want) in cases {
        let o = wgsd().args(&args).args(["--prompt", "x", "--out"]).arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists());
    }
}

/// `wgsd train dreambooth` from the command line on the tiny model: a LoRA in both layouts, a checkpoint,
/// and a refusal to overwrite them on a second run.
#[test]
fn train_dreambooth_writes_lora_files_from_the_command_line() {
    let Some(model) = tiny_sd15() else { return };
    let photos = wgsd::fixtures::train_dir();
    if !photos.join("train_instance_0.png").exists() {
        eprintln!("SKIPPED: no training photos at {}", photos.display());
        return;
    }
    let dir = temp_dir("dreambooth");
    let inst = dir.join("photos");
    std::fs::create_dir_all(&inst).unwrap();
    for i in 0..3 {
        std::fs::copy(photos.join(format!("train_instance_{i}.png")), inst.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(inst.join("0.txt"), "a photo of sks toy on a table\n").unwrap();
    let out = dir.join("lora");
    let args = |resolution: &str, extra: &[&str]| {
        let mut c = wgsd();
        c.args(["train", "dreambooth", "--model", model.to_str().unwrap(), "--instance-dir", inst.to_str().unwrap()])
            .args(["--instance-prompt", "a photo of sks toy", "--out", out.to_str().unwrap()])
            .args(["--resolution", resolution, "--steps", "3", "--checkpointing-steps", "2", "--seed", "7"])
            .args(extra);
        c
    };
    let r = args("64", &[]).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("3 instance images (1 with captions)"), "{err}");
    for f in ["pytorch_lora_weights.safetensors", "kohya_lora.safetensors", "checkpoint-2/state.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let again = args("64", &[]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = args("60", &["--overwrite"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("60"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Textual inversion and prompt syntax from the command line: `--embedding` and `--embeddings-dir` load,
/// the run names the embeddings its prompts trigger, a file of the wrong width is refused naming both
/// widths, and `--prompt-syntax` takes only its two values.
#[test]
fn embeddings_and_prompt_syntax_from_the_command_line() {
    let Some(model) = tiny_sd15() else { return };
    let dir = temp_dir("emb");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("text_encoder/config.json")).unwrap()).unwrap();
    let width = config["hidden_size"].as_u64().unwrap() as usize;
    let emb = |name: &str, w: usize| {
        let t = wgsd::train::save::HostTensor { name: "emb_params".into(), shape: vec![2, w], values: vec![0.01; 2 * w] };
        std::fs::create_dir_all(dir.join("embs")).unwrap();
        let path = dir.join("embs").join(format!("{name}.safetensors"));
        std::fs::write(&path, wgsd::train::save::safetensors_bytes(&[t], None).unwrap()).unwrap();
        path
    };
    let good = emb("wgsdfox", width);
    let run = |out: &str, extra: &[&str]| {
        wgsd()
            .args(["generate", "--model", model.to_str().unwrap(), "--steps", "1", "--width", "64", "--height", "64", "--out"])
            .arg(dir.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run("a.png", &["--prompt", "a (wgsdfox:1.2) in snow", "--negative-prompt", "blurry", "--embedding", good.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("embeddings in the prompt: wgsdfox (2 vector(s))"), "{err}");
    assert!(!err.contains("embeddings in the negative prompt"), "{err}");

    emb("other_family", width * 2);
    let o = run("b.png", &["--prompt", "x", "--negative-prompt", "wgsdfox", "--embeddings-dir", dir.join("embs").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("embeddings in the negative prompt: wgsdfox") && err.contains("other_family.safetensors"), "{err}");

    let wide = dir.join("embs/other_family.safetensors");
    let o = run("c.png", &["--prompt", "x", "--embedding", wide.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("{} wide", 2 * width)) && err.contains(&format!("is {width} wide")), "{err}");
    assert!(!dir.join("c.png").exists());

    let o = run("d.png", &["--prompt", "x", "--prompt-syntax", "markdown"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("a1111"));
    let o = run("e.png", &["--prompt", "(x:1.2)", "--prompt-syntax", "plain"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--prompt-file`: one prompt a line, images numbered on and seeds counting on across prompts; each image
/// equals the same prompt run alone with its seed. An empty file, or lines asking for different LoRAs, are
/// refused before loading.
#[test]
fn prompt_files_run_every_line() {
    let Some(model) = tiny_sd15() else { return };
    let dir = temp_dir("pfile");
    std::fs::write(dir.join("p.txt"), "# two prompts\na red fox\n\n(a blue bird:1.2)\n").unwrap();
    let run = |extra: &[&str]| {
        wgsd().args(["generate", "--model", model.to_str().unwrap(), "--steps", "2", "--width", "64", "--height", "64"]).args(extra).output().unwrap()
    };
    let o = run(&["--seed", "7", "--prompt-file", dir.join("p.txt").to_str().unwrap(), "--n-images", "2", "--out", dir.join("x.png").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = (1..=4).map(|i| format!("x-{i}.png")).collect();
    for (i, n) in names.iter().enumerate() {
        let params = wgsd::output::read_parameters(&dir.join(n)).unwrap().unwrap();
        let prompt = if i < 2 { "a red fox" } else { "(a blue bird:1.2)" };
        assert!(params.starts_with(&format!("{prompt}\n")) && params.contains(&format!("Seed: {},", 7 + i)), "{n}: {params}");
    }
    let alone = run(&["--prompt", "(a blue bird:1.2)", "--seed", "10", "--out", dir.join("alone.png").to_str().unwrap()]);
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));
    assert_eq!(pixels(&dir.join("alone.png")), pixels(&dir.join("x-4.png")));

    std::fs::write(dir.join("empty.txt"), "\n# nothing\n").unwrap();
    let o = run(&["--prompt-file", dir.join("empty.txt").to_str().unwrap(), "--out", dir.join("e.png").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no prompt"));
    std::fs::write(dir.join("loras.txt"), "a <lora:a:1> fox\na <lora:b:1> bird\n").unwrap();
    for n in ["a", "b"] {
        std::fs::write(dir.join(format!("{n}.safetensors")), b"x").unwrap();
    }
    let o = run(&["--prompt-file", dir.join("loras.txt").to_str().unwrap(), "--lora-dir", dir.to_str().unwrap(), "--out", dir.join("l.png").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("other LoRAs"), "{}", String::from_utf8_lossy(&o.stderr));
}
