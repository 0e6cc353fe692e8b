//! Hub repo ids resolved through a Hugging Face cache laid out like the real one (`models--org--name/
//! refs/main`, `snapshots/<rev>/…`), offline: which files a run needs, optional components included.
//! Environment variables are process-wide, so everything is one test in its own binary.

use std::path::{Path, PathBuf};

use wgsd::hub::resolve;

/// Links every file of `src` into `dst` (recursively).
fn link_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            link_tree(&e.path(), &to);
        } else {
            std::os::unix::fs::symlink(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn repo_ids_resolve_from_the_cache_with_the_components_the_run_needs() {
    let model = wgsd::fixtures::dir().join("sd15");
    if !model.join("safety_checker").exists() {
        eprintln!("SKIPPED: no fixture model with a safety checker at {} (set {})", model.display(), wgsd::fixtures::ENV);
        return;
    }
    let home = std::env::temp_dir().join(format!("wgsd-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let repo = home.join("hub").join("models--wgsd-test--tiny-sd15");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let snapshot = repo.join("snapshots/0123abcd");
    link_tree(&model.canonicalize().unwrap(), &snapshot);
    std::env::set_var("HF_HOME", &home);
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let extras = ["safety_checker", "feature_extractor"];
    assert_eq!(resolve("wgsd-test/tiny-sd15", None, &extras).unwrap(), snapshot);
    // A listed component missing from the cache must be fetched, which offline mode forbids.
    std::fs::remove_file(snapshot.join("safety_checker/model.safetensors")).unwrap();
    let e = resolve("wgsd-test/tiny-sd15", None, &extras).unwrap_err().to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    // ...unless the run does not need it.
    assert_eq!(resolve("wgsd-test/tiny-sd15", None, &[]).unwrap(), snapshot);
    // A variant whose files are not cached.
    let e = resolve("wgsd-test/tiny-sd15", Some("bf16"), &[]).unwrap_err().to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    // HF_HUB_CACHE wins over HF_HOME.
    std::env::set_var("HF_HUB_CACHE", home.join("elsewhere"));
    assert!(resolve("wgsd-test/tiny-sd15", None, &[]).is_err());
    std::env::set_var("HF_HUB_CACHE", home.join("hub"));
    let dir: PathBuf = resolve("wgsd-test/tiny-sd15", None, &[]).unwrap();
    assert!(dir.join("unet/config.json").exists());
    // Local folders are used as they are; a missing one is named.
    assert_eq!(resolve(model.to_str().unwrap(), None, &extras).unwrap(), model);
    let e = resolve("./no/such/folder", None, &[]).unwrap_err().to_string();
    assert!(e.contains("no/such/folder"), "{e}");
    // One slash but not a repo id (a space, `..`): a missing folder, not a download attempt.
    for bad in ["my models/sd 15", "../sd15", "org/..", "org/na:me"] {
        let e = resolve(bad, None, &[]).unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{bad}: {e}");
    }
    // A single file's --config repo needs only configs, tokenizer and scheduler: no network without weights.
    for f in ["unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"] {
        std::fs::remove_file(snapshot.join(f)).unwrap();
    }
    assert!(resolve("wgsd-test/tiny-sd15", None, &[]).is_err());
    assert_eq!(wgsd::hub::resolve_config("wgsd-test/tiny-sd15", &[]).unwrap(), snapshot);
    let _ = std::fs::remove_dir_all(&home);
}
