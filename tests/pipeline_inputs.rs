//! The init image, mask and depth map inputs: Pillow-compatible conversions, diffusers' mask binarisation
//! and downsampling, and the refusals of inputs that do not fit together. No GPU needed.

use image::{DynamicImage, GrayAlphaImage, LumaA, Rgba, RgbaImage};
use wgsd::imageproc::RgbImage;
use wgsd::pipeline::depth2img::depth_condition;
use wgsd::pipeline::inputs::{check_depth, check_mask, read_init_image, read_mask, rgb_to_luma, DepthMap, InitImage, Mask};

/// An image from a function of (x, y) giving RGB.
fn rgb(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> RgbImage {
    let data = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| f(x, y)).collect();
    RgbImage::new(w, h, data).unwrap()
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn images_become_rgb_in_minus_one_to_one() {
    let img = rgb(8, 8, |x, y| [(x * 30) as u8, (y * 30) as u8, 255]);
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
    let rgb = RgbImage::open(&gray).unwrap();
    assert!(rgb.data.iter().all(|&v| v == 77));
    let rgba = temp("rgba.png");
    DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, Rgba([10, 20, 30, 0]))).save(&rgba).unwrap();
    assert!(RgbImage::open(&rgba).unwrap().data.chunks(3).all(|p| p == [10, 20, 30]), "alpha is dropped, not composited");
}

#[test]
fn unreadable_files_are_named() {
    let bad = temp("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let e = RgbImage::open(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.png") && e.contains("cannot decode"), "{e}");
    let e = RgbImage::open(&temp("missing.png")).unwrap_err().to_string();
    assert!(e.contains("missing.png") && e.contains("no such file"), "{e}");
}

#[test]
fn masks_are_gray_binarised_at_half() {
    // Pillow's convert("L") weights, then v/255 < 0.5 → keep.
    let img = rgb(4, 1, |x, _| match x {
        0 => [127, 127, 127],
        1 => [128, 128, 128],
        2 => [255, 0, 0], // L = 76: keep
        _ => [0, 255, 0], // L = 150: repaint
    });
    assert_eq!(rgb_to_luma(&img), vec![127, 128, 76, 150]);
    assert_eq!(Mask::from_rgb8(&img).data, vec![0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn masks_downsample_by_nearest_and_blank_the_masked_image() {
    let img = rgb(16, 16, |x, y| if x >= 8 && y < 8 { [255; 3] } else { [0; 3] });
    let mask = Mask::from_rgb8(&img);
    assert_eq!(mask.to_latent_grid(2, 2), vec![0.0, 1.0, 0.0, 0.0]);
    let init = InitImage::from_rgb8(&rgb(16, 16, |_, _| [255; 3]));
    let masked = init.masked(&mask);
    assert_eq!(masked.chw[15], 0.0, "repainted pixels are mid-gray");
    assert_eq!(masked.chw[16 * 15], 1.0, "kept pixels are unchanged");
}

#[test]
fn masks_and_depth_maps_that_do_not_fit_the_image_are_refused() {
    let init = InitImage::from_rgb8(&rgb(16, 8, |_, _| [0; 3]));
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

#[test]
fn odd_sized_images_and_same_shaped_masks_are_resized_like_diffusers() {
    let path = temp("odd.png");
    image::RgbImage::from_fn(100, 50, |x, y| image::Rgb([(x * 2) as u8, (y * 4) as u8, 9])).save(&path).unwrap();
    let init = read_init_image(&path, None, None).unwrap();
    assert_eq!((init.width, init.height), (96, 48), "rounded down to multiples of 8");
    let init = read_init_image(&path, Some(64), Some(32)).unwrap();
    assert_eq!((init.width, init.height, init.chw.len()), (64, 32, 3 * 64 * 32));

    // A half-size mask of the same aspect ratio is scaled up; another aspect ratio is refused.
    let mask_path = temp("half-mask.png");
    image::GrayImage::from_fn(50, 25, |x, _| image::Luma([if x < 25 { 0 } else { 255 }])).save(&mask_path).unwrap();
    let mask = read_mask(&mask_path, &init, (100, 50)).unwrap();
    assert_eq!((mask.width, mask.height), (64, 32));
    assert_eq!((mask.data[0], mask.data[63]), (0.0, 1.0));
    let square = temp("square-mask.png");
    image::GrayImage::from_pixel(50, 50, image::Luma([255])).save(&square).unwrap();
    let e = read_mask(&square, &init, (100, 50)).unwrap_err().to_string();
    assert!(e.contains("square-mask.png") && e.contains("aspect ratio"), "{e}");
}
