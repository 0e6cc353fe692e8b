//! PNG output: the parameters chunk round-trips, numbered names, no overwriting unasked.

use wgsd::output::{check_writable, numbered_paths, read_parameters, to_rgb8, write_png, Parameters};

#[test]
fn png_carries_a1111_parameters_and_is_not_overwritten() {
    let dir = std::env::temp_dir().join(format!("wgsd-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.png");
    let _ = std::fs::remove_file(&path);
    let p = Parameters {
        prompt: "a red fox".into(),
        negative_prompt: "blurry".into(),
        steps: 4,
        sampler: "PNDM".into(),
        cfg_scale: 7.5,
        seed: 1,
        width: 8,
        height: 4,
        model: "sd15".into(),
        extra: vec![("Clip skip".into(), "2".into())],
    };
    let text = p.a1111_text();
    assert!(text.starts_with("a red fox\nNegative prompt: blurry\nSteps: 4, Sampler: PNDM, CFG scale: 7.5, Seed: 1, Size: 8x4, Model: sd15, Clip skip: 2"), "{text}");
    let rgb = to_rgb8(&vec![0.5; 8 * 4 * 3]);
    assert_eq!(rgb[0], 128);
    write_png(&path, 8, 4, &rgb, &text, false).unwrap();
    assert_eq!(read_parameters(&path).unwrap().as_deref(), Some(text.as_str()));
    let err = write_png(&path, 8, 4, &rgb, "other", false).unwrap_err().to_string();
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    assert_eq!(read_parameters(&path).unwrap().as_deref(), Some(text.as_str()), "the first file must be intact");
    assert!(check_writable(&[path.clone()], false).is_err());
    write_png(&path, 8, 4, &rgb, "replaced", true).unwrap();
    assert_eq!(read_parameters(&path).unwrap().as_deref(), Some("replaced"));
}

#[test]
fn several_images_get_numbered_names() {
    let one = numbered_paths(std::path::Path::new("out/fox.png"), 1);
    assert_eq!(one, vec![std::path::PathBuf::from("out/fox.png")]);
    let three = numbered_paths(std::path::Path::new("out/fox.png"), 3);
    assert_eq!(three[2], std::path::PathBuf::from("out/fox-3.png"));
}
