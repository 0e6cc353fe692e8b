//! The safety checker and the image processors against the reference fixtures (`WGSD_FIXTURES`), plus
//! error cases.


fn fixtures() -> Option<wgsd::fixtures::Fixtures> {
    let dir = wgsd::fixtures::dir();
    if !dir.join("cases.json").exists() {
        eprintln!("SKIPPED: no fixtures at {}", dir.display());
        return None;
    }
    Some(wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap())
}

#[test]
fn safety_and_depth_cases_pass() {
    let Some(fx) = fixtures() else { return };
    let gpu = wgsd::testing::test_gpu();
    let results = wgsd::verify::safety_cases(&gpu, &fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

/// The whole public path: PNG files → `RgbImage` → `SafetyChecker::check` (feature extractor + model +
/// scores) gives the fixture's flags, and its embeddings equal those from the fixture's pixel_values.
#[test]
fn check_on_image_files_gives_the_reference_flags() {
    let Some(fx) = fixtures() else { return };
    let Some(names) = fx.meta["safety"]["images"].as_array() else { return };
    let Some(model) = fx.meta["models"].as_array().unwrap().iter().map(|m| fx.dir.join(m.as_str().unwrap())).find(|d| d.join("safety_checker").is_dir())
    else {
        return;
    };
    let gpu = wgsd::testing::test_gpu();
    let checker = wgsd::models::safety_checker::SafetyChecker::load_pipeline(&gpu, &model).unwrap();
    let images: Vec<_> = names.iter().map(|n| wgsd::imageproc::RgbImage::open(&fx.dir.join(n.as_str().unwrap())).unwrap()).collect();
    let results = checker.check(&images).unwrap();
    let want: Vec<bool> = fx.meta["safety"]["has_nsfw"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    let got: Vec<bool> = results.iter().map(|r| r.has_nsfw).collect();
    assert_eq!(got, want);
    let embeds: Vec<f32> = results.iter().flat_map(|r| r.image_embeds.clone()).collect();
    let r = wgsd::testing::rel_l2(&embeds, &fx.tensor("safety.image_embeds").unwrap());
    assert!(r < 1e-4, "image_embeds rel l2 {r}");
    for r in &results {
        assert!(!r.concept_scores.is_empty() && !r.special_scores.is_empty());
        assert_eq!(r.has_nsfw, r.concept_scores.iter().any(|&s| s > 0.0));
    }
}

fn checker_dir(fx: &wgsd::fixtures::Fixtures) -> Option<std::path::PathBuf> {
    fx.meta["models"].as_array()?.iter().map(|m| fx.dir.join(m.as_str().unwrap()).join("safety_checker")).find(|d| d.is_dir())
}

/// A copy of the checker folder whose weight file lacks `drop`.
fn checker_without(src: &std::path::Path, drop: &str, tag: &str) -> std::path::PathBuf {
    use safetensors::tensor::{serialize, TensorView};
    let d = std::env::temp_dir().join(format!("wgsd-safety-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, TensorView)> = st.tensors().into_iter().filter(|(k, _)| k != drop).collect();
    std::fs::write(d.join("model.safetensors"), serialize(kept, None).unwrap()).unwrap();
    d
}

#[test]
fn missing_checker_weights_are_named() {
    let Some(fx) = fixtures() else { return };
    let Some(src) = checker_dir(&fx) else { return };
    let gpu = wgsd::testing::test_gpu();
    for (i, key) in ["concept_embeds", "special_care_embeds_weights", "visual_projection.weight", "vision_model.vision_model.pre_layrnorm.bias"]
        .iter()
        .enumerate()
    {
        let d = checker_without(&src, key, &i.to_string());
        let e = wgsd::models::safety_checker::SafetyChecker::load(&gpu, &d).err().expect("loading must fail").to_string();
        println!("{e}");
        assert!(e.contains(key) && e.contains("model.safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
    let e = wgsd::models::safety_checker::SafetyChecker::load(&gpu, &fx.dir.join("no_such_dir")).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn pixel_values_of_the_wrong_size_are_refused() {
    let Some(fx) = fixtures() else { return };
    let Some(src) = checker_dir(&fx) else { return };
    let gpu = wgsd::testing::test_gpu();
    let checker = wgsd::models::safety_checker::SafetyChecker::load(&gpu, &src).unwrap();
    let s = checker.vision_config.image_size + 1;
    let pv = wgsd::imageproc::PixelValues { shape: [1, 3, s, s], data: vec![0.0; 3 * s * s] };
    let e = checker.image_embeds(&pv).unwrap_err().to_string();
    assert!(e.contains("pixel_values"), "{e}");
    // No feature extractor loaded: check() says so.
    let img = wgsd::imageproc::RgbImage::new(2, 2, vec![0; 12]).unwrap();
    assert!(checker.check(&[img]).unwrap_err().to_string().contains("feature extractor"));
}

/// The released checker's shapes (ViT-L/14: width 1024, 16 heads of 64, 257 tokens at 224²), one layer
/// with random weights: the graph builds and runs, and the embedding has the projection width.
#[test]
fn real_size_vision_layer_runs() {
    use wgsd::models::clip_vision::ClipVisionConfig;
    let path = wgsd::fixtures::dir().join("../configs/sd15/safety_checker/config.json");
    let mut v: serde_json::Value = if path.exists() {
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    } else {
        serde_json::json!({"projection_dim": 768, "vision_config": {"hidden_size": 1024, "intermediate_size": 4096,
            "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14}})
    };
    v["vision_config"]["num_hidden_layers"] = 1.into();
    let config = ClipVisionConfig::from_value("config.json", &v["vision_config"]).unwrap();
    assert_eq!((config.hidden_size, config.image_size, config.num_positions()), (1024, 224, 257));
    let p = v["projection_dim"].as_u64().unwrap() as usize;
    let gpu = wgsd::testing::test_gpu();
    let weights = wgsd::models::weights::Weights::random(7);
    let checker = wgsd::models::safety_checker::SafetyChecker::from_weights(&gpu, config, p, &weights).unwrap();
    let pv = wgsd::imageproc::PixelValues { shape: [1, 3, 224, 224], data: (0..3 * 224 * 224).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect() };
    let res = checker.check_pixel_values(&pv).unwrap();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].image_embeds.len(), p);
    assert!(res[0].image_embeds.iter().all(|v| v.is_finite()));
    assert_eq!(res[0].concept_scores.len(), 17);
}

/// The pipeline's own images (`pipe.*.images`, NHWC floats in [0, 1]) rounded to u8 as diffusers does
/// (`numpy_to_pil`) and checked: the flags agree with `pipelines.<case>.nsfw` for every image the pipeline
/// let through (a flagged image is stored black, so only unflagged ones can be re-checked).
#[test]
fn pipeline_images_get_the_pipeline_flags() {
    let Some(fx) = fixtures() else { return };
    let Some(cases) = fx.meta["pipelines"].as_object() else { return };
    let gpu = wgsd::testing::test_gpu();
    let mut checked = 0;
    for (name, case) in cases {
        let Some(flags) = case["nsfw"].as_array() else { continue };
        let key = format!("pipe.{name}.images");
        let (Some(model), true) = (case["model"].as_str(), fx.has(&key)) else { continue };
        let dir = fx.dir.join(model);
        if !dir.join("safety_checker").is_dir() {
            continue;
        }
        let checker = wgsd::models::safety_checker::SafetyChecker::load_pipeline(&gpu, &dir).unwrap();
        let shape = fx.shape(&key).unwrap();
        let data = fx.tensor(&key).unwrap();
        let (h, w) = (shape[1], shape[2]);
        let images: Vec<_> =
            data.chunks(h * w * 3).map(|c| wgsd::imageproc::RgbImage::from_unit_floats(w, h, c).unwrap()).collect();
        let results = checker.check(&images).unwrap();
        for (i, (r, want)) in results.iter().zip(flags).enumerate() {
            if want.as_bool() == Some(false) {
                assert!(!r.has_nsfw, "{name} image {i}: flagged here, not by the pipeline (scores {:?})", r.concept_scores);
                checked += 1;
            }
        }
    }
    println!("{checked} pipeline images re-checked");
}

/// The pipeline step: flagged images are blacked out (`black`), kept (`warn`), or nothing is checked
/// (`off`); unflagged images are never touched.
#[test]
fn flagged_images_are_blacked_out_kept_or_unchecked() {
    use wgsd::pipeline::safety::SafetyMode;
    let Some(fx) = fixtures() else { return };
    let Some(dir) = checker_dir(&fx) else { return };
    let names = fx.meta["safety"]["images"].as_array().unwrap();
    let want: Vec<bool> = fx.meta["safety"]["has_nsfw"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    if !want.contains(&true) || !want.contains(&false) {
        eprintln!("SKIPPED: this fixture set needs flagged and unflagged safety images");
        return;
    }
    let images: Vec<_> = names.iter().map(|n| wgsd::imageproc::RgbImage::open(&fx.dir.join(n.as_str().unwrap())).unwrap()).collect();
    let (w, h) = (images[0].width, images[0].height);
    let floats: Vec<f32> = images.iter().flat_map(|i| i.data.iter().map(|&v| v as f32 / 255.0)).collect();
    let sd = wgsd::pipeline::StableDiffusion::load(wgsd::testing::test_gpu(), dir.parent().unwrap(), None).unwrap();
    let len = w * h * 3;
    for mode in [SafetyMode::Black, SafetyMode::Warn, SafetyMode::Off] {
        let mut out = floats.clone();
        let flags = sd.run_safety_checker(&mut out, images.len(), w, h, mode).unwrap();
        let expected = if mode == SafetyMode::Off { vec![false; want.len()] } else { want.clone() };
        assert_eq!(flags, expected, "{mode:?}");
        for (i, (got, orig)) in out.chunks(len).zip(floats.chunks(len)).enumerate() {
            if mode == SafetyMode::Black && want[i] {
                assert!(got.iter().all(|&v| v == 0.0), "{mode:?}: image {i} should be black");
            } else {
                assert_eq!(got, orig, "{mode:?}: image {i} must be unchanged");
            }
        }
    }
}
