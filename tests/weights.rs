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
