//! The DreamBooth data pipeline (`wgsd::train::data`): the fixture batches of diffusers' training scripts
//! (`WGSD_TRAIN_FIXTURES`, default `../shared/fixtures/train`; SKIPPED without it), captions, every bad input,
//! reproducible random crops and flips, and odd image sizes. No GPU needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::ImageEncoder;
use wgsd::imageproc::{Filter, RgbImage};
use wgsd::testing::Rng;
use wgsd::train::data::{
    augment, caption_for, center_crop_offset, list_images, load_resized, parse_interpolation, prepare_image, resized_size, shuffled, tokenize_prompts,
    ClassImages, DreamBoothDataset, Preprocess,
};

/// A fresh empty folder under the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("wgsd-train-data-{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An RGB image whose pixels encode their position: R = x, G = y, B = a per-image tag.
fn coded(width: usize, height: usize, tag: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            v.extend_from_slice(&[x as u8, y as u8, tag]);
        }
    }
    v
}

fn save_png(path: &Path, width: usize, height: usize, data: &[u8]) {
    image::save_buffer(path, data, width as u32, height as u32, image::ExtendedColorType::Rgb8).unwrap();
}

fn pp(resolution: usize, center_crop: bool, random_flip: bool) -> Preprocess {
    Preprocess { resolution, filter: Filter::Lanczos, center_crop, random_flip }
}

/// Pixel value in [−1, 1] back to the u8 it came from.
fn to_u8(v: f32) -> u8 {
    ((v * 0.5 + 0.5) * 255.0).round() as u8
}


/// Every `train.*` case's batches: pixel values identical to torchvision + Pillow's, token ids exact.
#[test]
fn fixture_batches_match_diffusers() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::train_data_cases(&fx).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "the training fixture set holds no train.* cases");
    assert!(results.iter().any(|r| r.name.ends_with(".pixels")) && results.iter().any(|r| r.name.ends_with(".ids")));
    let bad: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(bad.is_empty(), "failing cases:\n{}", bad.join("\n"));
}

/// The fixture's lanczos and bilinear cases would not both pass if the filter were ignored: the two filters
/// give different pixels for the same fixture image (144×144, so it is resized to 128).
#[test]
fn interpolation_changes_the_pixels() {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let img = dir.join("train_instance_2.png");
    let mut rng = Rng::new(0);
    let a = prepare_image(&img, &Preprocess { filter: Filter::Lanczos, ..pp(128, true, false) }, &mut rng).unwrap();
    let b = prepare_image(&img, &Preprocess { filter: Filter::Bilinear, ..pp(128, true, false) }, &mut rng).unwrap();
    assert_eq!(a.len(), 3 * 128 * 128);
    assert!(a != b, "lanczos and bilinear gave the same pixels");
    assert_eq!(parse_interpolation("LANCZOS").unwrap(), Filter::Lanczos);
    assert_eq!(parse_interpolation("bilinear").unwrap(), Filter::Bilinear);
    assert!(parse_interpolation("nearest").unwrap_err().to_string().contains("nearest"));
}

#[test]
fn captions_replace_the_prompt() {
    let inst = TempDir::new("captions");
    let cls = TempDir::new("captions-class");
    for (i, name) in ["b.png", "a.png", "c.png"].iter().enumerate() {
        save_png(&inst.path().join(name), 16, 16, &coded(16, 16, i as u8));
    }
    std::fs::write(inst.path().join("b.txt"), "  a photo of sks dog on the moon \n").unwrap();
    std::fs::write(inst.path().join("notes.md"), "not an image").unwrap();
    save_png(&cls.path().join("x.png"), 16, 16, &coded(16, 16, 9));
    let ds = DreamBoothDataset::open(inst.path(), "a photo of sks dog", Some(ClassImages { dir: cls.path(), prompt: "a photo of a dog", limit: None }), pp(16, true, false)).unwrap();
    let names: Vec<String> = ds.instance.iter().map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a.png", "b.png", "c.png"], "images are sorted by file name, other files skipped");
    let prompts: Vec<&str> = ds.instance.iter().map(|s| s.prompt.as_str()).collect();
    assert_eq!(prompts, ["a photo of sks dog", "a photo of sks dog on the moon", "a photo of sks dog"]);
    assert_eq!(ds.instance.iter().map(|s| s.captioned).collect::<Vec<_>>(), [false, true, false]);
    assert_eq!(ds.class[0].prompt, "a photo of a dog");
    assert_eq!(ds.len(), 3);
    // The batch: instance rows, then class rows, with their prompts.
    let b = ds.batch(&[1, 2], &mut Rng::new(1)).unwrap();
    assert_eq!(b.shape, [4, 3, 16, 16]);
    assert_eq!(b.n_class, 2);
    assert_eq!(b.prompts, ["a photo of sks dog on the moon", "a photo of sks dog", "a photo of a dog", "a photo of a dog"]);
    let plane = 16 * 16;
    let tag = |row: usize| to_u8(b.pixel_values[row * 3 * plane + 2 * plane]);
    assert_eq!([tag(0), tag(1), tag(2), tag(3)], [0, 2, 9, 9], "rows hold b.png (tag 0), c.png (2), then the class image");
    assert_eq!(caption_for(&inst.path().join("a.png")).unwrap(), None);
}

/// Every bad input is an error that names the file or folder (and the limit), raised when the dataset opens.
#[test]
fn bad_inputs_are_clear_errors() {
    let open = |dir: &Path, p: Preprocess| DreamBoothDataset::open(dir, "a photo of sks dog", None, p).map(|_| ()).unwrap_err().to_string();

    let missing = std::env::temp_dir().join("wgsd-train-data-no-such-folder");
    let e = open(&missing, pp(16, true, false));
    assert!(e.contains("wgsd-train-data-no-such-folder") && e.contains("no such folder"), "{e}");

    let empty = TempDir::new("empty");
    std::fs::write(empty.path().join("readme.txt"), "captions only").unwrap();
    let e = open(empty.path(), pp(16, true, false));
    assert!(e.contains(&empty.path().display().to_string()) && e.contains("no instance images"), "{e}");

    let corrupt = TempDir::new("corrupt");
    save_png(&corrupt.path().join("good.png"), 16, 16, &coded(16, 16, 0));
    std::fs::write(corrupt.path().join("broken.png"), b"\x89PNG\r\n\x1a\n this is not a png").unwrap();
    let e = open(corrupt.path(), pp(16, true, false));
    assert!(e.contains("broken.png"), "{e}");

    let truncated = TempDir::new("truncated");
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(&coded(32, 32, 0), 32, 32, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(truncated.path().join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    let e = open(truncated.path(), pp(16, true, false));
    assert!(e.contains("cut.png"), "{e}");

    let gif = TempDir::new("gif");
    save_png(&gif.path().join("ok.png"), 16, 16, &coded(16, 16, 0));
    std::fs::write(gif.path().join("anim.gif"), b"GIF89a").unwrap();
    let e = open(gif.path(), pp(16, true, false));
    assert!(e.contains("anim.gif") && e.contains("GIF"), "{e}");

    let caption = TempDir::new("caption");
    save_png(&caption.path().join("dog.png"), 16, 16, &coded(16, 16, 0));
    std::fs::write(caption.path().join("dog.txt"), " \n ").unwrap();
    let e = open(caption.path(), pp(16, true, false));
    assert!(e.contains("dog.txt") && e.contains("empty"), "{e}");

    let ok = TempDir::new("resolution");
    save_png(&ok.path().join("dog.png"), 16, 16, &coded(16, 16, 0));
    for r in [0, 12, 500] {
        let e = open(ok.path(), pp(r, true, false));
        assert!(e.contains(&format!("resolution {r}")) && e.contains("multiple of 8"), "{e}");
    }
    let e = DreamBoothDataset::open(ok.path(), "p", Some(ClassImages { dir: &missing, prompt: "q", limit: None }), pp(16, true, false)).unwrap_err().to_string();
    assert!(e.contains("wgsd-train-data-no-such-folder"), "class folder: {e}");

    let thin = TempDir::new("thin");
    save_png(&thin.path().join("strip.png"), 200, 4, &coded(200, 4, 0));
    let e = open(thin.path(), pp(16, true, false));
    assert!(e.contains("strip.png") && e.contains("elongated"), "{e}");

    let file = ok.path().join("dog.png");
    let e = list_images(&file).unwrap_err().to_string();
    assert!(e.contains("dog.png") && e.contains("not a folder"), "{e}");
}

/// Random crops and flips: the same seed gives the same pixels, different seeds reach different windows,
/// and every output is a window of the image, mirrored or not.
#[test]
fn random_crop_and_flip_are_seeded_and_inside_the_image() {
    let dir = TempDir::new("random");
    // 40×24 with resolution 24: no resize, so the output must be an exact 24×24 window.
    let (w, h, r) = (40, 24, 24);
    save_png(&dir.path().join("wide.png"), w, h, &coded(w, h, 7));
    let ds = DreamBoothDataset::open(dir.path(), "p", None, pp(r, false, true)).unwrap();
    let run = |seed: u64| {
        let mut rng = Rng::new(seed);
        (0..8).map(|i| ds.batch(&[i], &mut rng).unwrap().pixel_values).collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3), "same seed, same batches");
    let mut lefts = std::collections::BTreeSet::new();
    let mut flips = [0usize; 2];
    let mut rng = Rng::new(11);
    for _ in 0..64 {
        let px = ds.batch(&[0], &mut rng).unwrap().pixel_values;
        let plane = r * r;
        let (rr, gg, bb) = (&px[..plane], &px[plane..2 * plane], &px[2 * plane..]);
        assert!(bb.iter().all(|&v| to_u8(v) == 7));
        // Rows are the image's rows (the crop is full height); columns are consecutive x, ascending or not.
        for y in 0..r {
            assert!((0..r).all(|x| to_u8(gg[y * r + x]) as usize == y));
        }
        let row: Vec<usize> = (0..r).map(|x| to_u8(rr[x]) as usize).collect();
        let flipped = row[0] > row[r - 1];
        let left = *row.iter().min().unwrap();
        assert!(left + r <= w, "window at x = {left} leaves the image");
        for (x, &got) in row.iter().enumerate() {
            let want = if flipped { left + r - 1 - x } else { left + x };
            assert_eq!(got, want);
        }
        for y in 1..r {
            assert_eq!(&rr[y * r..(y + 1) * r], &rr[..r], "every row is the same x range");
        }
        lefts.insert(left);
        flips[flipped as usize] += 1;
    }
    assert!(lefts.len() > 5, "random crops should reach many offsets, got {lefts:?}");
    assert!(flips[0] > 10 && flips[1] > 10, "flips {flips:?}");
    assert!(run(3) != run(4), "different seeds, different crops");

    // A permutation, reproducible per seed.
    let p = shuffled(10, &mut Rng::new(5));
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(p, shuffled(10, &mut Rng::new(5)));
}

/// Non-square and small images: resized on the shortest side as torchvision computes it, then cropped.
#[test]
fn non_square_and_small_images() {
    // torchvision: short side = resolution, long side int(resolution · long / short).
    for (w, h, r) in [(160, 128, 128), (128, 176, 128), (200, 128, 128), (10, 6, 16), (7, 3, 8), (512, 341, 64), (33, 33, 8)] {
        let (nw, nh) = resized_size(w, h, r);
        let (short, long) = (w.min(h), w.max(h));
        let new_long = (r * long) / short; // exact integer floor equals Python's int() of the true quotient here
        if w <= h {
            assert_eq!((nw, nh), (r, new_long), "{w}×{h} → {r}");
        } else {
            assert_eq!((nw, nh), (new_long, r), "{w}×{h} → {r}");
        }
    }
    // Python rounds half to even: an odd margin of 5 splits as 2 | 3.
    assert_eq!(center_crop_offset(29, 24, 24), (0, 2));
    assert_eq!(center_crop_offset(24, 31, 24), (4, 0));
    assert_eq!(center_crop_offset(24, 27, 24), (2, 0));

    let dir = TempDir::new("small");
    save_png(&dir.path().join("tiny.png"), 10, 6, &coded(10, 6, 200));
    // A grayscale image with alpha: converted to RGB by dropping alpha and replicating gray.
    let gray = image::GrayAlphaImage::from_fn(6, 9, |x, y| image::LumaA([(x * 20 + y) as u8, 10]));
    gray.save(dir.path().join("gray.png")).unwrap();
    let img = load_resized(&dir.path().join("tiny.png"), 16, Filter::Lanczos).unwrap();
    assert_eq!((img.width, img.height), (26, 16));
    let ds = DreamBoothDataset::open(dir.path(), "p", None, pp(16, true, true)).unwrap();
    let b = ds.batch(&[0, 1], &mut Rng::new(2)).unwrap();
    assert_eq!(b.shape, [2, 3, 16, 16]);
    assert!(b.pixel_values.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
    // gray.png (first by name): R = G = B.
    let plane = 256;
    assert!((0..plane).all(|i| b.pixel_values[i] == b.pixel_values[plane + i] && b.pixel_values[i] == b.pixel_values[2 * plane + i]));
    // tiny.png: a flat blue channel survives resampling exactly.
    assert!(b.pixel_values[3 * plane + 2 * plane..6 * plane].iter().all(|&v| to_u8(v) == 200));
}

/// PNG, JPEG and WebP all load; a lossless WebP equals the PNG of the same pixels; EXIF orientation is
/// applied (a phone photo stored sideways comes out upright).
#[test]
fn formats_and_exif_orientation() {
    let dir = TempDir::new("formats");
    let (w, h) = (24, 16);
    let data = coded(w, h, 50);
    save_png(&dir.path().join("a.png"), w, h, &data);
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp).write_image(&data, w as u32, h as u32, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(dir.path().join("b.WEBP"), &webp).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).write_image(&data, w as u32, h as u32, image::ExtendedColorType::Rgb8).unwrap();
    std::fs::write(dir.path().join("c.jpg"), &jpeg).unwrap();
    let names: Vec<String> = list_images(dir.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a.png", "b.WEBP", "c.jpg"]);
    let png = RgbImage::open_upright(&dir.path().join("a.png")).unwrap();
    assert_eq!(png.data, data);
    assert_eq!(RgbImage::open_upright(&dir.path().join("b.WEBP")).unwrap(), png);
    let jpg = RgbImage::open_upright(&dir.path().join("c.jpg")).unwrap();
    assert_eq!((jpg.width, jpg.height), (w, h));

    // EXIF orientation 6: the stored image must be turned 90° clockwise to view it.
    let mut exif = b"II*\0\x08\0\0\0\x01\0".to_vec();
    exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    exif.extend_from_slice(&[0, 0, 0, 0]);
    let mut bytes = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(&data, w as u32, h as u32, image::ExtendedColorType::Rgb8).unwrap();
    let rotated = dir.path().join("phone.png");
    std::fs::write(&rotated, &bytes).unwrap();
    let up = RgbImage::open_upright(&rotated).unwrap();
    assert_eq!((up.width, up.height), (h, w));
    // Clockwise: the stored top-left corner ends at the top right, the bottom-left at the top left.
    assert_eq!(&up.data[(h - 1) * 3..h * 3], &data[..3]);
    assert_eq!(&up.data[..3], &data[(h - 1) * w * 3..(h - 1) * w * 3 + 3]);
}

/// Prompts become `[B, 77]` ids: start token, prompt, end token, padding, as the scripts tokenize them.
#[test]
fn prompts_tokenize_to_fixed_length() {
    let tok_dir = PathBuf::from("../shared/fixtures/tiny/sd15/tokenizer");
    if !tok_dir.exists() {
        eprintln!("SKIPPED: no tokenizer at {}", tok_dir.display());
        return;
    }
    let tok = wgsd::models::tokenizer::ClipTokenizer::from_folder(&tok_dir).unwrap();
    let prompts = vec!["a photo of sks dog".to_string(), "dog ".repeat(100)];
    let ids = tokenize_prompts(&tok, &prompts).unwrap();
    assert_eq!(ids.len(), 2 * tok.max_len);
    for row in ids.chunks(tok.max_len) {
        assert_eq!(row[0], tok.bos_id as f32);
    }
    let first = &ids[..tok.max_len];
    let end = first.iter().position(|&v| v == tok.eos_id as f32).unwrap();
    let raw = tok.encode_raw("a photo of sks dog").unwrap();
    assert_eq!(end, raw.len() + 1);
    assert!(first[end + 1..].iter().all(|&v| v == tok.pad_id as f32));
    // The long prompt is truncated and still ends with the end token.
    assert_eq!(ids[2 * tok.max_len - 1], tok.eos_id as f32);
}

#[test]
fn center_crop_without_draws() {
    // A centre crop without flips draws nothing: the generator is untouched.
    let img = RgbImage::new(30, 20, coded(30, 20, 1)).unwrap();
    let mut rng = Rng::new(9);
    let px = augment(&img, &pp(16, true, false), &mut rng).unwrap();
    assert_eq!(rng.next_u64(), Rng::new(9).next_u64());
    // Offsets round((30−16)/2) = 7 and round((20−16)/2) = 2.
    assert_eq!(to_u8(px[0]), 7);
    assert_eq!(to_u8(px[256]), 2);
}
