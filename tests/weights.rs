//! Weight loading: names, aliases, dtypes, and clear errors for missing, mis-shaped, truncated or corrupt
//! files. Builds its own small safetensors files, so it needs neither fixtures nor a GPU.

use std::path::PathBuf;

use safetensors::tensor::{Dtype, TensorView};
use wgsd::models::weights::{WeightFile, Weights};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgsd-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(path: &PathBuf, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn reads_f32_f16_bf16_and_resolves_aliases() {
    let p = temp("ok.safetensors");
    let h: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
    let b: Vec<u8> = [0.25f32, 8.0].iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect();
    write(
        &p,
        &[
            ("a.weight", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
            ("h", Dtype::F16, vec![2], h),
            ("b", Dtype::BF16, vec![2], b),
            // Legacy VAE attention: `query` for `to_q`, conv-shaped (C, C, 1, 1).
            ("decoder.mid_block.attentions.0.query.weight", Dtype::F32, vec![2, 2, 1, 1], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            // CLIP saved without the text_model. prefix.
            ("encoder.layers.0.mlp.fc1.bias", Dtype::F32, vec![1], f32_bytes(&[7.0])),
        ],
    );
    let w = Weights::open(&[p]).unwrap();
    assert_eq!(w.get("a.weight", &[2]).unwrap(), vec![1.0, 2.0]);
    assert_eq!(w.get("h", &[2]).unwrap(), vec![1.5, -2.0]);
    assert_eq!(w.get("b", &[2]).unwrap(), vec![0.25, 8.0]);
    assert_eq!(w.get("decoder.mid_block.attentions.0.to_q.weight", &[2, 2]).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(w.get("text_model.encoder.layers.0.mlp.fc1.bias", &[1]).unwrap(), vec![7.0]);
}

#[test]
fn missing_and_misshaped_tensors_name_file_key_and_shapes() {
    let p = temp("shapes.safetensors");
    write(&p, &[("conv.weight", Dtype::F32, vec![2, 3], f32_bytes(&[0.0; 6]))]);
    let w = Weights::open(&[p.clone()]).unwrap();
    let e = w.get("conv.weight", &[3, 2]).unwrap_err().to_string();
    assert!(e.contains("shapes.safetensors") && e.contains("conv.weight") && e.contains("(2, 3)") && e.contains("(3, 2)"), "{e}");
    let e = w.get("conv.bias", &[3]).unwrap_err().to_string();
    assert!(e.contains("shapes.safetensors") && e.contains("conv.bias") && e.contains("missing") && e.contains("(3)"), "{e}");
}

/// `--low-vram` loading checks a weight from the header alone where a read would check nothing more: any
/// float dtype read as f32 and f16 kept as f16; narrowing to f16 (which can overflow) and integer tensors
/// (refused by the read) need the read; a missing or mis-shaped tensor is the read's error already.
#[test]
fn header_checks_stand_in_for_reads_only_where_a_read_checks_nothing_more() {
    use wgsd::DType;
    let p = temp("header.safetensors");
    let h: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
    let b: Vec<u8> = [0.25f32, 8.0].iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect();
    write(
        &p,
        &[
            ("f", Dtype::F32, vec![2], f32_bytes(&[1.0, 1e6])),
            ("h", Dtype::F16, vec![2], h),
            ("b", Dtype::BF16, vec![2], b),
            ("i", Dtype::I64, vec![1], 3i64.to_le_bytes().to_vec()),
            ("decoder.mid_block.attentions.0.query.weight", Dtype::F16, vec![1, 1, 1, 1], half::f16::ONE.to_le_bytes().to_vec()),
        ],
    );
    let w = Weights::open(&[p]).unwrap();
    for (key, to_f32, to_f16) in [("f", true, false), ("h", true, true), ("b", true, false), ("i", false, false)] {
        let shape: &[usize] = if key == "i" { &[1] } else { &[2] };
        assert_eq!(w.check_header(key, shape, DType::F32).unwrap(), to_f32, "{key} as f32");
        assert_eq!(w.check_header(key, shape, DType::F16).unwrap(), to_f16, "{key} as f16");
    }
    // Aliases and conv-shaped linear weights as the reads accept them.
    assert!(w.check_header("decoder.mid_block.attentions.0.to_q.weight", &[1, 1], DType::F16).unwrap());
    for (key, shape) in [("h", &[3][..]), ("missing", &[2][..])] {
        let want = w.get(key, shape).unwrap_err().to_string();
        assert_eq!(w.check_header(key, shape, DType::F16).unwrap_err().to_string(), want);
    }
    assert!(!Weights::random(1).check_header("x", &[2], DType::F32).unwrap(), "random weights have no header");
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    let p = temp("full.safetensors");
    write(&p, &[("x", Dtype::F32, vec![64], f32_bytes(&[1.0; 64]))]);
    let bytes = std::fs::read(&p).unwrap();

    let t = temp("truncated.safetensors");
    std::fs::write(&t, &bytes[..bytes.len() - 10]).unwrap();
    let e = WeightFile::open(&t).err().expect("truncated file must fail").to_string();
    assert!(e.contains("truncated.safetensors") && e.contains("truncated or corrupt"), "{e}");

    let c = temp("corrupt.safetensors");
    let mut bad = bytes.clone();
    bad[8] = b'#'; // the header no longer starts a JSON object
    std::fs::write(&c, &bad).unwrap();
    let e = WeightFile::open(&c).err().expect("corrupt file must fail").to_string();
    assert!(e.contains("corrupt.safetensors"), "{e}");

    let e = WeightFile::open(&temp("absent.safetensors")).err().unwrap().to_string();
    assert!(e.contains("absent.safetensors") && e.contains("cannot open"), "{e}");
}

/// Corrupted copies of a real fixture VAE: truncated, a renamed tensor, a tensor of the wrong shape. Each
/// load fails with an error naming the file and the tensor, never a panic.
#[test]
fn corrupted_fixture_copies_give_clear_errors() {
    let src = wgsd::fixtures::dir().join("sd15/vae");
    if !src.join("config.json").exists() {
        eprintln!("SKIPPED: no fixture VAE at {} (set {})", src.display(), wgsd::fixtures::ENV);
        return;
    }
    let gpu = wgsd::testing::test_gpu();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let load = |name: &str, file_bytes: &[u8]| -> String {
        let dir = temp(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        std::fs::write(dir.join("diffusion_pytorch_model.safetensors"), file_bytes).unwrap();
        match wgsd::models::vae::AutoencoderKL::load(&gpu, &dir, None) {
            Ok(_) => panic!("{name}: a corrupted VAE loaded"),
            Err(e) => e.to_string(),
        }
    };
    // Rewrites the file with `edit` applied to the list of (name, dtype, shape, data).
    let rewrite = |edit: &dyn Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)| -> Vec<u8> {
        let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
            st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
        edit(&mut ts);
        let views: Vec<(String, TensorView)> =
            ts.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, None).unwrap()
    };

    let e = load("vae-truncated", &bytes[..bytes.len() / 2]);
    assert!(e.contains("diffusion_pytorch_model.safetensors") && e.contains("truncated or corrupt"), "{e}");

    let key = "decoder.conv_in.weight";
    let renamed = rewrite(&|ts| ts.iter_mut().filter(|t| t.0 == key).for_each(|t| t.0 = "decoder.conv_in.weights".into()));
    let e = load("vae-renamed", &renamed);
    assert!(e.contains(key) && e.contains("missing"), "{e}");

    let reshaped = rewrite(&|ts| {
        for t in ts.iter_mut().filter(|t| t.0 == key) {
            let n: usize = t.2.iter().product();
            t.2 = vec![n];
        }
    });
    let e = load("vae-reshaped", &reshaped);
    assert!(e.contains(key) && e.contains("model expects"), "{e}");
}

#[test]
fn prefix_aliases_only_drop_known_prefixes() {
    use wgsd::models::weights::candidates;
    assert_eq!(candidates("text_model.final_layer_norm.weight"), ["text_model.final_layer_norm.weight", "final_layer_norm.weight"]);
    assert_eq!(
        candidates("vision_model.vision_model.pre_layrnorm.bias"),
        ["vision_model.vision_model.pre_layrnorm.bias", "vision_model.pre_layrnorm.bias"]
    );
    // Keys without an aliased prefix are looked up as they are (no made-up `text_model.` names).
    assert_eq!(candidates("concept_embeds"), ["concept_embeds"]);
}
