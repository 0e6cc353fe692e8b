//! `wgsd train dreambooth` end to end on the tiny SD 1.5 model (`WGSD_FIXTURES`, default
//! `../shared/fixtures/tiny`) with the training fixture's photos: a run interrupted and resumed ends
//! bit-identical to one that never stopped; gradient accumulation; class images are generated once and
//! reused; every bad input is refused before any work starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use wgsd::testing::test_gpu;
use wgsd::train::cli::DreamBoothArgs;
use wgsd::train::dreambooth::{run_until, DreamBoothOptions};

fn model() -> Option<PathBuf> {
    let m = wgsd::testing::tiny_model("sd15")?;
    let photos = wgsd::fixtures::train_dir();
    if photos.join("train_instance_0.png").exists() {
        Some(m)
    } else {
        eprintln!("SKIPPED: needs the training fixture photos in {}", photos.display());
        None
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-db-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A folder with the fixture's instance photos.
fn photos(root: &Path) -> PathBuf {
    let d = root.join("photos");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..4 {
        std::fs::copy(wgsd::fixtures::train_dir().join(format!("train_instance_{i}.png")), d.join(format!("p{i}.png"))).unwrap();
    }
    d
}

fn options(model: &Path, instance: &Path, out: &Path, extra: &[&str]) -> DreamBoothOptions {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: DreamBoothArgs,
    }
    let mut argv: Vec<String> = vec!["t".into()];
    for (k, v) in [("--model", model), ("--instance-dir", instance), ("--out", out)] {
        argv.push(k.into());
        argv.push(v.display().to_string());
    }
    argv.extend(["--instance-prompt", "a photo of sks toy", "--seed", "3"].map(String::from));
    for (k, v) in [("--resolution", "64"), ("--steps", "4")] {
        if !extra.contains(&k) {
            argv.extend([k.to_string(), v.to_string()]);
        }
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::parse_from(argv).a.into_options().unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    let Some(m) = model() else { return };
    let gpu = test_gpu();
    let root = scratch("resume");
    let inst = photos(&root);
    let extra = ["--random-flip", "--lr", "1e-3", "--train-text-encoder"];
    // Same folder names (the kohya metadata records the output name).
    let a = root.join("a/lora");
    let straight = run_until(gpu.clone(), &options(&m, &inst, &a, &extra), &AtomicBool::new(false)).unwrap();
    assert!(!straight.interrupted && straight.losses.len() == 4);
    // Interrupted after its first step (as Ctrl-C would), then resumed from the checkpoint it wrote.
    let b = root.join("b/lora");
    let first = run_until(gpu.clone(), &options(&m, &inst, &b, &extra), &AtomicBool::new(true)).unwrap();
    assert!(first.interrupted && first.losses.len() == 1 && first.files.is_empty());
    assert!(b.join("checkpoint-1/state.json").exists());
    let mut resumed_opts = options(&m, &inst, &b, &extra);
    resumed_opts.resume = Some("latest".into());
    let rest = run_until(gpu.clone(), &resumed_opts, &AtomicBool::new(false)).unwrap();
    assert_eq!(rest.losses.len(), 3);
    assert_eq!(straight.losses[..1], first.losses[..]);
    assert_eq!(straight.losses[1..], rest.losses[..], "losses after resuming");
    for f in ["pytorch_lora_weights.safetensors", "kohya_lora.safetensors"] {
        assert!(read(&a.join(f)) == read(&b.join(f)), "{f} differs after resuming");
    }
    // The trained LoRA moved away from its start (B starts at zero).
    let lora = wgsd::train::lora_file::read_lora_file(&a.join("pytorch_lora_weights.safetensors")).unwrap();
    assert!(lora.tensors.iter().any(|t| t.name.contains("lora_B") && t.values.iter().any(|v| *v != 0.0)));
    assert!(lora.tensors.iter().any(|t| t.name.starts_with("text_encoder.")));
    // A finished run's outputs are not replaced unasked.
    let again = run_until(gpu, &options(&m, &inst, &a, &extra), &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(again.contains("already exists") && again.contains("--overwrite"), "{again}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn class_images_are_generated_once_and_prior_preservation_trains() {
    let Some(m) = model() else { return };
    let gpu = test_gpu();
    let root = scratch("class");
    let inst = photos(&root);
    let class = root.join("class");
    let extra = ["--with-prior-preservation", "--class-prompt", "a photo of a toy", "--class-dir", class.to_str().unwrap(), "--num-class-images", "2", "--class-steps", "2", "--steps", "2", "--full"];
    let r = run_until(gpu.clone(), &options(&m, &inst, &root.join("out"), &extra), &AtomicBool::new(false)).unwrap();
    assert_eq!(r.losses.len(), 2);
    let made = wgsd::train::data::list_images(&class).unwrap();
    assert_eq!(made.len(), 2, "{made:?}");
    let stamp: Vec<_> = made.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    // Full fine-tuning wrote a diffusers folder that loads.
    assert!(root.join("out/model_index.json").exists());
    wgsd::pipeline::StableDiffusion::load(gpu.clone(), &root.join("out"), None).unwrap();
    // A second run reuses the class images.
    run_until(gpu, &options(&m, &inst, &root.join("out2"), &extra), &AtomicBool::new(false)).unwrap();
    let again: Vec<_> = made.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    assert_eq!(stamp, again);
    assert_eq!(wgsd::train::data::list_images(&class).unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn gradient_accumulation_runs_and_differs_from_one_micro_batch() {
    let Some(m) = model() else { return };
    let gpu = test_gpu();
    let root = scratch("accum");
    let inst = photos(&root);
    let one = run_until(gpu.clone(), &options(&m, &inst, &root.join("one"), &["--steps", "2"]), &AtomicBool::new(false)).unwrap();
    let two = run_until(gpu, &options(&m, &inst, &root.join("two"), &["--steps", "2", "--grad-accum", "2"]), &AtomicBool::new(false)).unwrap();
    assert!(one.losses.iter().chain(&two.losses).all(|l| l.is_finite() && *l > 0.0));
    assert_ne!(read(&root.join("one/kohya_lora.safetensors")), read(&root.join("two/kohya_lora.safetensors")));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_inputs_are_refused_before_any_work() {
    let Some(m) = model() else { return };
    let gpu = test_gpu();
    let root = scratch("bad");
    let inst = photos(&root);
    let out = root.join("out");
    let err = |o: DreamBoothOptions| run_until(gpu.clone(), &o, &AtomicBool::new(false)).unwrap_err().to_string();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err(options(&m, &empty, &out, &[]));
    assert!(e.contains("empty") || e.contains("no instance images"), "{e}");
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("x.png"), b"not a png").unwrap();
    assert!(err(options(&m, &broken, &out, &[])).contains("x.png"));
    assert!(err(options(&m, &inst, &out, &["--resolution", "100"])).contains("100"));
    assert!(err(options(&m, &inst, &out, &["--with-prior-preservation"])).contains("--class-prompt"));
    assert!(err(options(&m, &inst, &out, &["--save-single-file"])).contains("--full"));
    let mut single = options(&m, &inst, &out, &["--full"]);
    single.model = "model.safetensors".into();
    assert!(err(single).contains("single-file"));
    let inpaint = m.parent().unwrap().join("sd15-inpaint");
    if inpaint.exists() {
        let e = err(options(&inpaint, &inst, &out, &[]));
        assert!(e.contains("9 input channels") || e.contains("inpainting"), "{e}");
    }
    assert!(err(options(&m, &inst, &root.join("none"), &["--resume", "latest"])).contains("no checkpoint"));
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(), "nothing written for refused runs");
    let _ = std::fs::remove_dir_all(&root);
}
