//! The init image, mask and depth map inputs: Pillow-compatible conversions, diffusers' mask binarisation
//! and downsampling, and the refusals of inputs that do not fit together. No GPU needed.

use image::{DynamicImage, GrayAlphaImage, LumaA, Rgb, RgbImage, Rgba, RgbaImage};
use wgsd::pipeline::depth2img::depth_condition;
use wgsd::pipeline::inputs::{check_depth, check_mask, load_rgb, rgb_to_luma, DepthMap, InitImage, Mask};

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn images_become_rgb_in_minus_one_to_one() {
    let img = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 255]));
    let init = InitImage::from_rgb8(&img);
    assert_eq!(init.chw.len(), 3 * 64);
    assert_eq!(init.chw[0], -1.0); // red of (0, 0)
    assert_eq!(init.chw[2 * 64], 1.0); // blue
    assert!((init.chw[7] - (2.0 * 210.0 / 255.0 - 1.0)).abs() < 1e-7);
}

#[test]
fn gray_and_rgba_files_load_as_rgb_like_pillow() {
    let gray = temp("gray.png");
    DynamicImage::ImageLumaA8(GrayAlphaImage::from_pixel(8, 8, LumaA([77, 10]))).save(&gray).unwrap();
    let rgb = load_rgb(&gray).unwrap();
    assert!(rgb.pixels().all(|p| p.0 == [77, 77, 77]));
    let rgba = temp("rgba.png");
    DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, Rgba([10, 20, 30, 0]))).save(&rgba).unwrap();
    assert!(load_rgb(&rgba).unwrap().pixels().all(|p| p.0 == [10, 20, 30]), "alpha is dropped, not composited");
}

#[test]
fn unreadable_files_are_named() {
    let bad = temp("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let e = load_rgb(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.png") && e.contains("not a readable"), "{e}");
    let e = load_rgb(&temp("missing.png")).unwrap_err().to_string();
    assert!(e.contains("missing.png") && e.contains("no such file"), "{e}");
}

#[test]
fn masks_are_gray_binarised_at_half() {
    // Pillow's convert("L") weights, then v/255 < 0.5 → keep.
    let img = RgbImage::from_fn(4, 1, |x, _| match x {
        0 => Rgb([127, 127, 127]),
        1 => Rgb([128, 128, 128]),
        2 => Rgb([255, 0, 0]), // L = 76: keep
        _ => Rgb([0, 255, 0]), // L = 150: repaint
    });
    assert_eq!(rgb_to_luma(&img), vec![127, 128, 76, 150]);
    assert_eq!(Mask::from_rgb8(&img).data, vec![0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn masks_downsample_by_nearest_and_blank_the_masked_image() {
    let img = RgbImage::from_fn(16, 16, |x, y| if x >= 8 && y < 8 { Rgb([255; 3]) } else { Rgb([0; 3]) });
    let mask = Mask::from_rgb8(&img);
    assert_eq!(mask.to_latent_grid(2, 2), vec![0.0, 1.0, 0.0, 0.0]);
    let init = InitImage::from_rgb8(&RgbImage::from_pixel(16, 16, Rgb([255; 3])));
    let masked = init.masked(&mask);
    assert_eq!(masked.chw[15], 0.0, "repainted pixels are mid-gray");
    assert_eq!(masked.chw[16 * 15], 1.0, "kept pixels are unchanged");
}

#[test]
fn masks_and_depth_maps_that_do_not_fit_the_image_are_refused() {
    let init = InitImage::from_rgb8(&RgbImage::new(16, 8));
    let mask = Mask { width: 8, height: 8, data: vec![1.0; 64] };
    let e = check_mask(&init, &mask, "m.png").unwrap_err().to_string();
    assert!(e.contains("m.png") && e.contains("8x8") && e.contains("16x8"), "{e}");
    let black = Mask { width: 16, height: 8, data: vec![0.0; 128] };
    assert!(check_mask(&init, &black, "m.png").unwrap_err().to_string().contains("all black"));
    let white = Mask { width: 16, height: 8, data: vec![1.0; 128] };
    assert!(check_mask(&init, &white, "m.png").is_ok(), "an all-white mask repaints everything");

    let half = DepthMap { width: 8, height: 4, data: (0..32).map(|v| v as f32).collect() };
    assert!(check_depth(&init, &half, "d.png").is_ok(), "same aspect ratio, lower resolution");
    let square = DepthMap { width: 8, height: 8, data: vec![0.0; 64] };
    let e = check_depth(&init, &square, "d.png").unwrap_err().to_string();
    assert!(e.contains("d.png") && e.contains("8x8"), "{e}");
    let flat = DepthMap { width: 16, height: 8, data: vec![2.0; 128] };
    assert!(depth_condition(&flat, 1, 2).unwrap_err().to_string().contains("flat"));
    let c = depth_condition(&half, 1, 2).unwrap();
    assert!(c.iter().all(|v| (-1.0..=1.0).contains(v)));
}
