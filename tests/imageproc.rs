//! Image preprocessing: Pillow-exact resizing (reference hashes made with Pillow 13 `Image.resize`), the
//! torch uint8 backend against Pillow, torch's float bicubic `interpolate`, RGB conversion, processor
//! configs and their errors. The fixture-based processor cases are in tests/safety.rs.

use std::path::PathBuf;

use wgsd::imageproc::clip_processor::{ClipImageProcessor, ClipResize};
use wgsd::imageproc::dpt_processor::DptImageProcessor;
use wgsd::imageproc::{interpolate_bicubic, resize_u8, Backend, Filter, RgbImage};

/// The synthetic test image the reference script also builds: sharp edges, stripes and wrap-arounds.
fn pattern(w: usize, h: usize, c: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * c);
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                v.push(((x * 37 + y * 101 + ch * 53 + (x * y % 7) * 19 + ((x / 3 + y / 2) % 2) * 120) % 256) as u8);
            }
        }
    }
    v
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &v| (h ^ v as u64).wrapping_mul(0x100_0000_01b3))
}

/// (w, h, channels, new_w, new_h, filter, FNV-1a of Pillow's output bytes, their sum). Made by:
/// `np.asarray(Image.fromarray(pattern(w, h, c), "L" or "RGB").resize((new_w, new_h), filter))`.
type Case = (usize, usize, usize, usize, usize, Filter, u64, u64);
const PILLOW: &[Case] = &[
    (37, 23, 1, 16, 11, Filter::Bilinear, 0x7d9be9f44116e14b, 22364),
    (37, 23, 1, 16, 11, Filter::Bicubic, 0xe31286f1da6840ca, 22347),
    (37, 23, 1, 16, 11, Filter::Lanczos, 0x24e4a0c558b361eb, 22372),
    (37, 23, 3, 16, 11, Filter::Bilinear, 0xaafb3c63ad3e3b0f, 67718),
    (37, 23, 3, 16, 11, Filter::Bicubic, 0x3b5f0e6293389066, 67717),
    (37, 23, 3, 16, 11, Filter::Lanczos, 0x49cfbb56f94f6e52, 67747),
    (7, 5, 1, 19, 13, Filter::Bilinear, 0x61a470ab9f211523, 34344),
    (7, 5, 1, 19, 13, Filter::Bicubic, 0x9c1830c17a41c546, 34345),
    (7, 5, 1, 19, 13, Filter::Lanczos, 0x10c6b6f8b25485ef, 34454),
    (7, 5, 3, 19, 13, Filter::Bilinear, 0x9eaf418ad8bf6f00, 93601),
    (7, 5, 3, 19, 13, Filter::Bicubic, 0x59685603de9d0286, 93439),
    (7, 5, 3, 19, 13, Filter::Lanczos, 0xb9448b389ef3dc9f, 93568),
    (40, 9, 1, 13, 20, Filter::Bilinear, 0x233e57e890bd5a2a, 33337),
    (40, 9, 1, 13, 20, Filter::Bicubic, 0x1e6c0763d4895834, 33349),
    (40, 9, 1, 13, 20, Filter::Lanczos, 0x9f7f60661d366e99, 33358),
    (40, 9, 3, 13, 20, Filter::Bilinear, 0x5b58bd5233ea2723, 100702),
    (40, 9, 3, 13, 20, Filter::Bicubic, 0xff5cfa4795eab7ba, 100713),
    (40, 9, 3, 13, 20, Filter::Lanczos, 0xd5858564c5c97422, 100695),
    (128, 128, 1, 32, 32, Filter::Bilinear, 0x32e469c7a04b664e, 131309),
    (128, 128, 1, 32, 32, Filter::Bicubic, 0x2992ed0b650f5994, 131255),
    (128, 128, 1, 32, 32, Filter::Lanczos, 0x9fa9fd4737af22a5, 131256),
    (128, 128, 3, 32, 32, Filter::Bilinear, 0x2835bf978644a2a4, 392573),
    (128, 128, 3, 32, 32, Filter::Bicubic, 0x091fd29feccb69c9, 392422),
    (128, 128, 3, 32, 32, Filter::Lanczos, 0x13bd99de0f7e9ba5, 392402),
    (64, 48, 1, 64, 17, Filter::Bilinear, 0x9019bc71f06e67bd, 137958),
    (64, 48, 1, 64, 17, Filter::Bicubic, 0xe2cf57a902412eac, 137907),
    (64, 48, 1, 64, 17, Filter::Lanczos, 0xc167dc7376b8471c, 137953),
    (64, 48, 3, 64, 17, Filter::Bilinear, 0x3b970ea1157dad01, 413228),
    (64, 48, 3, 64, 17, Filter::Bicubic, 0xf9f7305384b87ea1, 413190),
    (64, 48, 3, 64, 17, Filter::Lanczos, 0xd1c66b5cefcff595, 413220),
];

#[test]
fn pillow_backend_matches_pillow_bit_exactly() {
    let mut bad = Vec::new();
    for &(w, h, c, nw, nh, f, hash, sum) in PILLOW {
        let out = resize_u8(&pattern(w, h, c), (w, h), c, (nw, nh), f, Backend::Pillow).unwrap();
        let got_sum: u64 = out.iter().map(|&v| v as u64).sum();
        if fnv(&out) != hash {
            bad.push(format!("{w}x{h}x{c} -> {nw}x{nh} {f:?}: sum {got_sum}, Pillow {sum}"));
        }
    }
    assert!(bad.is_empty(), "differs from Pillow:\n{}", bad.join("\n"));
}

#[test]
fn torch_backend_is_within_one_of_pillow() {
    for &(w, h, c, nw, nh, f, _, _) in PILLOW.iter().filter(|c| c.5 != Filter::Lanczos) {
        let src = pattern(w, h, c);
        let a = resize_u8(&src, (w, h), c, (nw, nh), f, Backend::Pillow).unwrap();
        let b = resize_u8(&src, (w, h), c, (nw, nh), f, Backend::TorchU8).unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(worst <= 1, "{w}x{h}x{c} -> {nw}x{nh} {f:?}: torch and Pillow differ by {worst}");
    }
    let err = resize_u8(&pattern(4, 4, 3), (4, 4), 3, (2, 2), Filter::Lanczos, Backend::TorchU8).unwrap_err();
    assert!(err.to_string().contains("LANCZOS"), "{err}");
}

#[test]
fn resize_keeps_constant_images_and_skips_unchanged_axes() {
    for f in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
        for b in [Backend::Pillow, Backend::TorchU8] {
            if b == Backend::TorchU8 && f == Filter::Lanczos {
                continue;
            }
            let out = resize_u8(&[77u8; 13 * 9 * 3], (13, 9), 3, (5, 21), f, b).unwrap();
            assert!(out.iter().all(|&v| v == 77), "{f:?} {b:?}");
        }
    }
    let src = pattern(6, 5, 3);
    assert_eq!(resize_u8(&src, (6, 5), 3, (6, 5), Filter::Bicubic, Backend::Pillow).unwrap(), src);
    assert!(resize_u8(&src, (6, 5), 3, (0, 5), Filter::Bicubic, Backend::Pillow).is_err());
    assert!(resize_u8(&src[1..], (6, 5), 3, (3, 5), Filter::Bicubic, Backend::Pillow).is_err());
}

/// torch: `F.interpolate(torch.tensor([[1., 2.], [3., 4.]])[None, None], size=(4, 4), mode="bicubic",
/// align_corners=False)` = 1 + f(x) + 2·f(y) with f = [−0.10546875, 0.2265625, 0.7734375, 1.10546875]
/// (Keys a = −0.75 weights at t = 0.75 / 0.25 with clamped borders; torch prints 0.6836, 1.0156, 1.5625, 1.8945
/// on the first row).
#[test]
fn interpolate_bicubic_matches_torch_on_a_ramp() {
    let f = [-0.10546875f64, 0.2265625, 0.7734375, 1.10546875];
    let out = interpolate_bicubic(&[1.0, 2.0, 3.0, 4.0], 2, 2, 4, 4).unwrap();
    for y in 0..4 {
        for x in 0..4 {
            let want = 1.0 + f[x] + 2.0 * f[y];
            assert!((out[y * 4 + x] as f64 - want).abs() < 1e-6, "({y},{x}): {} vs {want}", out[y * 4 + x]);
        }
    }
    assert!((out[0] - 0.68359375).abs() < 1e-6);
}

/// A float64 reference written independently (per output: the four taps as a 4×4 weighted sum).
fn bicubic_ref(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let k = |x: f64| {
        let a = -0.75;
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
        } else if x < 2.0 {
            a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    let axis = |n: usize, on: usize, i: usize| -> Vec<(usize, f64)> {
        let real = (i as f64 + 0.5) * n as f64 / on as f64 - 0.5;
        let i0 = real.floor();
        let t = real - i0;
        (-1i64..=2).map(|d| (((i0 as i64) + d).clamp(0, n as i64 - 1) as usize, k(t - d as f64))).collect()
    };
    let mut out = Vec::new();
    for oy in 0..oh {
        for ox in 0..ow {
            let mut s = 0.0;
            for (yy, wy) in axis(h, oh, oy) {
                for (xx, wx) in axis(w, ow, ox) {
                    s += wy * wx * src[yy * w + xx] as f64;
                }
            }
            out.push(s);
        }
    }
    out
}

#[test]
fn interpolate_bicubic_matches_a_float64_reference() {
    for &(h, w, oh, ow) in &[(7usize, 5usize, 16usize, 16usize), (64, 64, 16, 16), (13, 17, 5, 29), (1, 3, 4, 2)] {
        let src: Vec<f32> = (0..h * w).map(|i| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * 3.0).collect();
        let got = interpolate_bicubic(&src, h, w, oh, ow).unwrap();
        let want = bicubic_ref(&src, h, w, oh, ow);
        let num: f64 = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
        let den: f64 = want.iter().map(|b| b * b).sum();
        // torch computes the source positions in f32 (scale = in/out as f32): ~1e-6 from float64.
        assert!((num / den).sqrt() < 1e-5, "{h}x{w} -> {oh}x{ow}: rel l2 {}", (num / den).sqrt());
    }
    assert!(interpolate_bicubic(&[0.0; 5], 2, 3, 4, 4).is_err());
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-imageproc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn files_convert_to_rgb_like_pil() {
    let d = temp_dir("rgb");
    // Grayscale + alpha: gray replicated; alpha dropped (convert("RGB")) or composited onto white.
    let la = image::GrayAlphaImage::from_raw(2, 1, vec![100, 255, 100, 0]).unwrap();
    la.save(d.join("la.png")).unwrap();
    let rgb = RgbImage::open(&d.join("la.png")).unwrap();
    assert_eq!(rgb.data, vec![100, 100, 100, 100, 100, 100]);
    let white = RgbImage::open_over_white(&d.join("la.png")).unwrap();
    assert_eq!(white.data, vec![100, 100, 100, 255, 255, 255]);
    // RGBA: PIL alpha_composite onto white, every (value, alpha) pair (hash from PIL).
    let mut px = Vec::new();
    for c in 0..=255u8 {
        for a in 0..=255u8 {
            px.extend_from_slice(&[c, c, c, a]);
        }
    }
    image::RgbaImage::from_raw(256, 256, px).unwrap().save(d.join("rgba.png")).unwrap();
    let white = RgbImage::open_over_white(&d.join("rgba.png")).unwrap();
    let red: Vec<u8> = white.data.chunks(3).map(|p| p[0]).collect();
    assert_eq!(fnv(&red), 0xb134228c6f37913f, "differs from PIL's alpha_composite");
    let dropped = RgbImage::open(&d.join("rgba.png")).unwrap();
    assert_eq!(&dropped.data[..6], &[0, 0, 0, 0, 0, 0]);
    // Errors name the file.
    std::fs::write(d.join("not_an_image.png"), b"hello").unwrap();
    for name in ["not_an_image.png", "missing.png"] {
        let e = RgbImage::open(&d.join(name)).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn from_unit_floats_rounds_like_numpy() {
    let img = RgbImage::from_unit_floats(1, 1, &[1.5 / 255.0, 1.0, 0.0]).unwrap();
    // 1.5 rounds to 2 (ties to even), 255, 0.
    assert_eq!(img.data, vec![2, 255, 0]);
}

#[test]
fn clip_processor_reads_configs_and_names_missing_keys() {
    let d = temp_dir("clipcfg");
    let p = d.join("preprocessor_config.json");
    // The published SD 1.5 feature extractor uses bare integers.
    std::fs::write(&p, r#"{"crop_size": 224, "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true,
        "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#).unwrap();
    let c = ClipImageProcessor::load(&d).unwrap();
    assert_eq!(c.size, ClipResize::ShortestEdge(224));
    assert_eq!(c.crop_size, (224, 224));
    assert_eq!(c.resized_size(512, 768), (224, 336));
    assert_eq!(c.resized_size(640, 480), (298, 224));
    let img = RgbImage::new(40, 30, pattern(40, 30, 3)).unwrap();
    let pv = c.preprocess(&[img.clone(), img]).unwrap();
    assert_eq!(pv.shape, [2, 3, 224, 224]);
    for (key, text) in [
        ("size", r#"{"crop_size": 224, "image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5]}"#),
        ("crop_size", r#"{"size": 224, "image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5]}"#),
        ("image_std", r#"{"size": 224, "crop_size": 224, "image_mean": [0.5,0.5,0.5]}"#),
        ("resample", r#"{"size": 224, "crop_size": 224, "image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5], "resample": 0}"#),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = ClipImageProcessor::load(&d).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("preprocessor_config.json"), "{e}");
    }
    let e = ClipImageProcessor::load(&d.join("nowhere")).unwrap_err().to_string();
    assert!(e.contains("preprocessor_config.json"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn clip_center_crop_pads_small_images_with_zero() {
    let d = temp_dir("clippad");
    std::fs::write(d.join("preprocessor_config.json"), r#"{"do_resize": false, "crop_size": {"height": 4, "width": 5},
        "do_normalize": false, "do_rescale": false}"#).unwrap();
    let c = ClipImageProcessor::load(&d).unwrap();
    let img = RgbImage::new(2, 2, vec![9; 12]).unwrap();
    let pv = c.preprocess(&[img]).unwrap();
    assert_eq!(pv.shape, [1, 3, 4, 5]);
    // Padding (5-2)/2 = 1 left, (4-2)/2 = 1 top.
    let plane: Vec<f32> = pv.data[..20].to_vec();
    let want = [0., 0., 0., 0., 0., 0., 9., 9., 0., 0., 0., 9., 9., 0., 0., 0., 0., 0., 0., 0.];
    assert_eq!(plane, want);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn dpt_processor_sizes_and_settings() {
    let d = temp_dir("dptcfg");
    let p = d.join("preprocessor_config.json");
    std::fs::write(&p, r#"{"do_normalize": true, "do_pad": false, "do_rescale": true, "do_resize": true, "ensure_multiple_of": 32,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "keep_aspect_ratio": true, "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 384}}"#).unwrap();
    let c = DptImageProcessor::load(&d).unwrap();
    // Scale as little as possible: 640×480 → height 384 (scale 0.8), width 512.
    assert_eq!(c.resized_size(640, 480), (512, 384));
    assert_eq!(c.resized_size(100, 300), (128, 384));
    // Padding to a multiple (after normalising, zeros).
    std::fs::write(&p, r#"{"do_pad": true, "size_divisor": 8, "do_resize": false, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}"#).unwrap();
    let c = DptImageProcessor::load(&d).unwrap();
    let pv = c.preprocess(&[RgbImage::new(5, 3, vec![255; 45]).unwrap()]).unwrap();
    assert_eq!(pv.shape, [1, 3, 8, 8]);
    assert_eq!(pv.data[0], 0.0);
    assert!((pv.data[2 * 8 + 1] - 1.0).abs() < 1e-6);
    std::fs::write(&p, r#"{"do_pad": true, "size": {"height": 64, "width": 64}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#).unwrap();
    let e = DptImageProcessor::load(&d).unwrap_err().to_string();
    assert!(e.contains("do_pad") && e.contains("size_divisor"), "{e}");
    std::fs::write(&p, r#"{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#).unwrap();
    let e = DptImageProcessor::load(&d).unwrap_err().to_string();
    assert!(e.contains("'size'"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
