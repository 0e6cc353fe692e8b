//! The DPT-hybrid depth estimator (`wgsd::models::dpt`): the `depth.predicted_depth` reference case of the
//! fixture folder (`WGSD_FIXTURES`, default `../shared/fixtures/tiny`; SKIPPED without it), and errors that
//! name what is wrong: unsupported config values, a missing weight file or tensor, a wrong input size.

use std::path::{Path, PathBuf};

use wgsd::fixtures::Fixtures;
use wgsd::models::dpt::{DptConfig, DptForDepthEstimation};
use wgsd::testing::test_gpu;

/// The fixture set and the tiny model's `depth_estimator/`, or None (with SKIPPED printed) when absent.
fn fixture() -> Option<(PathBuf, PathBuf)> {
    let dir = wgsd::fixtures::dir();
    let model = dir.join("sd2-depth").join("depth_estimator");
    if dir.join("cases.json").exists() && model.join("config.json").exists() {
        Some((dir, model))
    } else {
        eprintln!(
            "SKIPPED: no depth fixtures at {} (set {} to the tiny fixture folder to run the depth case)",
            dir.display(),
            wgsd::fixtures::ENV
        );
        None
    }
}

#[test]
fn depth_predicted_depth_matches_transformers() {
    let Some((dir, _)) = fixture() else { return };
    let fx = Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::depth_cases(&test_gpu(), &fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert_eq!(results.len(), 1, "the fixture set has depth tensors but the case did not run");
    assert_eq!(results[0].name, "depth.predicted_depth");
    assert!(results[0].passed, "{}", results[0].line());
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-dpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny config with `edit` applied to its JSON, written to a temporary folder.
fn edited_config(model: &Path, tag: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    edit(&mut v);
    let d = temp_dir(tag);
    std::fs::write(d.join("config.json"), serde_json::to_string(&v).unwrap()).unwrap();
    d
}

#[test]
fn unsupported_config_values_are_named() {
    let Some((_, model)) = fixture() else { return };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("hybrid", Box::new(|v| v["is_hybrid"] = false.into()), "is_hybrid = false"),
        ("readout", Box::new(|v| v["readout_type"] = "add".into()), "readout_type = \"add\""),
        ("proj", Box::new(|v| v["add_projection"] = true.into()), "add_projection = true"),
        ("bn", Box::new(|v| v["use_batch_norm_in_fusion_residual"] = true.into()), "use_batch_norm_in_fusion_residual = true"),
        ("layer", Box::new(|v| v["backbone_config"]["layer_type"] = "preactivation".into()), "layer_type = \"preactivation\""),
        ("pad", Box::new(|v| v["backbone_config"]["global_padding"] = "valid".into()), "global_padding = \"valid\""),
        ("factor", Box::new(|v| v["reassemble_factors"] = serde_json::json!([4, 2, 2, 0.5])), "reassemble_factors[2] = 2"),
        ("ignore", Box::new(|v| v["neck_ignore_stages"] = serde_json::json!([0])), "neck_ignore_stages = [0]"),
        ("stride", Box::new(|v| v["backbone_config"]["output_stride"] = 8.into()), "output_stride = 8"),
        ("act", Box::new(|v| v["backbone_config"]["hidden_act"] = "mish".into()), "hidden_act = \"mish\""),
    ];
    for (tag, edit, want) in cases {
        let d = edited_config(&model, tag, edit);
        let err = DptConfig::from_file(&d.join("config.json")).unwrap_err().to_string();
        println!("{tag}: {err}");
        assert!(err.contains(want) && err.contains("config.json"), "{tag}: {err}");
        std::fs::remove_dir_all(&d).ok();
    }
    // The tiny config itself parses.
    let c = DptConfig::from_file(&model.join("config.json")).unwrap();
    assert_eq!(c.layer_indices(), vec![2, 3]);
}

#[test]
fn missing_weight_file_and_tensor_are_named() {
    let Some((_, model)) = fixture() else { return };
    let gpu = test_gpu();
    let d = edited_config(&model, "weights", |_| {});
    let err = DptForDepthEstimation::load(&gpu, &d).err().expect("no weight file").to_string();
    assert!(err.contains("model.safetensors") && err.contains("not found"), "{err}");
    // A file holding only the stem convolution: the first tensor the model asks for after it is named.
    let w = wgsd::models::weights::WeightFile::open(&model.join("model.safetensors")).unwrap();
    let key = "dpt.embeddings.backbone.bit.embedder.convolution.weight";
    let data = w.read_f32(key).unwrap();
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, w.shape(key).unwrap(), &bytes).unwrap();
    safetensors::serialize_to_file([(key, view)], None, &d.join("model.safetensors")).unwrap();
    let err = DptForDepthEstimation::load(&gpu, &d).err().expect("missing tensors").to_string();
    println!("{err}");
    assert!(err.contains("dpt.embeddings.backbone.bit.embedder.norm.weight") && err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn other_image_sizes_are_refused_as_transformers_does() {
    let Some((_, model)) = fixture() else { return };
    let m = DptForDepthEstimation::load(&test_gpu(), &model).unwrap();
    let err = m.predict(&vec![0.0; 3 * 48 * 64], [1, 3, 48, 64]).unwrap_err().to_string();
    assert!(err.contains("Input image size (48*64) doesn't match model (64*64)"), "{err}");
    let err = m.predict(&[0.0; 10], [1, 3, 64, 64]).unwrap_err().to_string();
    assert!(err.contains("pixel_values") && err.contains("10 values"), "{err}");
}

/// A batch of two (the fixture image and its mirror image) gives each image's single-image depth: the
/// batched cls-token expansion and readout gathers index the right rows.
#[test]
fn batched_images_are_independent() {
    let Some((dir, model)) = fixture() else { return };
    let fx = Fixtures::open(&dir, "cases").unwrap();
    let m = DptForDepthEstimation::load(&test_gpu(), &model).unwrap();
    let x = fx.tensor("depth.pixel_values").unwrap();
    let (h, w) = (64, 64);
    let mirror: Vec<f32> = (0..x.len()).map(|i| x[i - i % w + (w - 1 - i % w)]).collect();
    let single_a = m.predict(&x, [1, 3, h, w]).unwrap();
    let single_b = m.predict(&mirror, [1, 3, h, w]).unwrap();
    let both = m.predict(&[x.clone(), mirror].concat(), [2, 3, h, w]).unwrap();
    let ra = wgsd::testing::rel_l2(&both[..h * w], &single_a);
    let rb = wgsd::testing::rel_l2(&both[h * w..], &single_b);
    println!("batch vs single: {ra:.2e} {rb:.2e}; mirror vs original {:.2e}", wgsd::testing::rel_l2(&single_b, &single_a));
    assert!(ra < 1e-6 && rb < 1e-6, "{ra} {rb}");
    assert!(wgsd::testing::rel_l2(&single_b, &single_a) > 1e-3, "the mirror image should change the depth");
}

/// The real DPT-hybrid layout (Intel/dpt-hybrid-midas: 384×384 input, BiT depths [3, 4, 9], 12 ViT layers
/// read at [2, 5, 8, 11], reassemble factors [1, 1, 1, 0.5]) with narrow channels and seeded random
/// weights: every shape from 384² down to the 24² token grid and back up to the 384² depth map records and
/// runs, giving a finite, non-constant map.
#[test]
fn real_layout_at_384_runs() {
    let Some((_, model)) = fixture() else { return };
    let d = edited_config(&model, "384", |v| {
        v["image_size"] = 384.into();
        v["num_hidden_layers"] = 12.into();
        v["backbone_out_indices"] = serde_json::json!([2, 5, 8, 11]);
        v["backbone_featmap_shape"] = serde_json::json!([1, 96, 24, 24]);
        v["backbone_config"]["depths"] = serde_json::json!([3, 4, 9]);
    });
    let config = DptConfig::from_file(&d.join("config.json")).unwrap();
    std::fs::remove_dir_all(&d).ok();
    let weights = wgsd::models::weights::Weights::random(7);
    let m = DptForDepthEstimation::from_weights(&test_gpu(), config, &weights).unwrap();
    let x = wgsd::testing::Rng::new(3).vec(3 * 384 * 384, 1.0);
    let depth = m.predict(&x, [1, 3, 384, 384]).unwrap();
    assert_eq!(depth.len(), 384 * 384);
    assert!(depth.iter().all(|v| v.is_finite()));
    let (lo, hi) = depth.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    println!("depth range at 384²: {lo} .. {hi}");
    assert!(hi > lo);
}
