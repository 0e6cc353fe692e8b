//! A seeded mutation fuzzer on stable Rust over `wgsd::fuzz`'s targets (safetensors header and weight
//! loader, LoRA files, config.json, image decoders, prompt syntax, tokenizer): valid seed inputs are
//! mutated (bit flips, interesting bytes, truncation, insertion, duplication, splicing) for a fixed time per
//! target, and any panic fails the test with the input that caused it (written to the temp folder for
//! replay). Executions per target are printed. `WGSD_FUZZ_SECONDS` sets the budget per target (default 4);
//! the cargo-fuzz targets in `fuzz/` run the same functions under libFuzzer for longer runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use wgsd::testing::Rng;
use wgsd::train::save::{safetensors_bytes, HostTensor};

fn budget() -> Duration {
    Duration::from_secs_f64(std::env::var("WGSD_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0))
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One random mutation of `input` (splicing from `corpus`).
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + below(rng, 4);
    for _ in 0..rounds {
        let n = v.len();
        match below(rng, 8) {
            0 if n > 0 => {
                let i = below(rng, n);
                v[i] ^= 1 << below(rng, 8);
            }
            1 if n > 0 => {
                let i = below(rng, n);
                v[i] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'9', b'-', b'('][below(rng, 10)];
            }
            2 if n > 0 => v.truncate(below(rng, n)),
            3 => {
                let i = below(rng, n + 1);
                let k = 1 + below(rng, 16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next_u64() as u8).collect();
                v.splice(i..i, bytes);
            }
            4 if n > 1 => {
                let a = below(rng, n);
                let b = (a + 1 + below(rng, 64)).min(n);
                let chunk = v[a..b].to_vec();
                let at = below(rng, n + 1);
                v.splice(at..at, chunk);
            }
            5 if n >= 8 => {
                // Numbers are where parsers break: overwrite 8 bytes with a large or odd integer.
                let i = below(rng, n - 7);
                let x: u64 = [u64::MAX, 1 << 40, 1 << 31, 0, 7][below(rng, 5)];
                v[i..i + 8].copy_from_slice(&x.to_le_bytes());
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[below(rng, corpus.len())];
                let cut = below(rng, n + 1);
                let from = below(rng, other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ if n > 0 => {
                let i = below(rng, n);
                v.remove(i);
            }
            _ => v.push(rng.next_u64() as u8),
        }
    }
    v
}

/// Runs `target` on the seeds and on mutations of them until the budget is spent; panics with the
/// offending input's file if any run panicked. Returns the number of executions.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, target: impl Fn(&[u8])) -> usize {
    let mut rng = Rng::new(0x5eed ^ name.len() as u64);
    let deadline = Instant::now() + budget();
    let mut corpus = seeds.clone();
    let mut runs = 0;
    let mut queue: Vec<Vec<u8>> = seeds;
    while Instant::now() < deadline || !queue.is_empty() {
        let input = match queue.pop() {
            Some(s) => s,
            None => {
                let base = corpus[below(&mut rng, corpus.len())].clone();
                mutate(&mut rng, &base, &corpus)
            }
        };
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("wgsd-fuzz-{name}-crash.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!("fuzz target {name} panicked after {runs} runs on the input saved at {}", path.display());
        }
        // Keep some mutants as new bases so the search wanders beyond one mutation from the seeds.
        if runs % 16 == 0 && corpus.len() < 256 {
            corpus.push(input);
        }
    }
    println!("fuzz {name}: {runs} executions, no panic");
    runs
}

/// Panics are caught and reported per input: keep the default hook from printing each one.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

fn tensors_file() -> Vec<u8> {
    let mut rng = Rng::new(1);
    let t = |name: &str, shape: &[usize], rng: &mut Rng| HostTensor { name: name.into(), shape: shape.to_vec(), values: rng.vec(shape.iter().product(), 1.0) };
    safetensors_bytes(
        &[
            t("conv_in.weight", &[4, 2, 3, 3], &mut rng),
            t("conv_in.bias", &[4], &mut rng),
            t("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", &[2, 4], &mut rng),
            t("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", &[4, 2], &mut rng),
            t("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", &[], &mut rng),
        ],
        None,
    )
    .unwrap()
}

#[test]
fn weight_files_never_panic() {
    quiet_panics();
    let mut seeds = vec![tensors_file(), Vec::new(), b"{}".to_vec()];
    // A header length larger than the file, and one that overflows when added to 8.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    seeds.push(huge);
    let runs = fuzz("safetensors", seeds, wgsd::fuzz::safetensors);
    assert!(runs > 100, "only {runs} executions");
}

#[test]
fn configs_never_panic() {
    quiet_panics();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let dir = wgsd::fixtures::dir();
    for part in ["sd15/unet", "sd15/vae", "sd15/text_encoder", "sd2/unet"] {
        if let Ok(b) = std::fs::read(dir.join(part).join("config.json")) {
            seeds.push(b);
        }
    }
    if seeds.is_empty() {
        eprintln!("note: no fixture configs at {} (set {}); fuzzing from a built-in config only", dir.display(), wgsd::fixtures::ENV);
    }
    seeds.push(
        br#"{"in_channels":4,"out_channels":4,"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D","DownBlock2D"],"up_block_types":["UpBlock2D","CrossAttnUpBlock2D"],"layers_per_block":1,"cross_attention_dim":32,"attention_head_dim":8,"norm_num_groups":32,"latent_channels":4,"hidden_size":32,"intermediate_size":37,"num_attention_heads":4,"num_hidden_layers":2,"hidden_act":"quick_gelu"}"#.to_vec(),
    );
    let runs = fuzz("config", seeds, wgsd::fuzz::config);
    assert!(runs > 100, "only {runs} executions");
}

#[test]
fn image_decoders_never_panic() {
    quiet_panics();
    let mut seeds = Vec::new();
    let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, 7]));
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut buf, format).unwrap();
        seeds.push(buf.into_inner());
    }
    let gray = image::GrayAlphaImage::from_fn(5, 5, |x, _| image::LumaA([x as u8 * 40, 128]));
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLumaA8(gray).write_to(&mut buf, image::ImageFormat::Png).unwrap();
    seeds.push(buf.into_inner());
    let runs = fuzz("image", seeds, wgsd::fuzz::image);
    assert!(runs > 50, "only {runs} executions");
}

/// A PNG whose header claims 100 000 × 100 000 pixels is refused by the decoder's limits, not allocated.
#[test]
fn decompression_bombs_are_refused() {
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::new(1, 1)).write_to(&mut buf, image::ImageFormat::Png).unwrap();
    let mut png = buf.into_inner();
    // IHDR's width and height sit at bytes 16..24; the chunk CRC follows and must be fixed up.
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = wgsd::imageproc::decode_bytes("bomb.png", &png).err().expect("a 100000² image was decoded").to_string();
    assert!(e.contains("bomb.png") && (e.contains("limit") || e.contains("Limit")), "{e}");
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn prompts_never_panic() {
    quiet_panics();
    let seeds: Vec<Vec<u8>> = [
        "a (red:1.3) fox in the [snow], ((detailed fur)), \\(photo\\)",
        "castle BREAK (sky:0.7), <lora:style:0.8> <lora:x:0.5:1.2>, [[[haze]]]",
        "(((((((((((((((((((((((((((((deep", "(x:1e309) (y:-inf) [z:]] \\",
        "猫 🐈 — “quoted”",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let runs = fuzz("prompt_syntax", seeds.clone(), wgsd::fuzz::prompt_syntax);
    assert!(runs > 100, "only {runs} executions");
    let dir = wgsd::fixtures::dir().join("sd15/tokenizer");
    if !dir.exists() {
        eprintln!("SKIPPED: the tokenizer target needs a tokenizer at {} (set {})", dir.display(), wgsd::fixtures::ENV);
        return;
    }
    let tok = wgsd::models::tokenizer::ClipTokenizer::from_folder(&dir).unwrap();
    let runs = fuzz("tokenize", seeds, |b| wgsd::fuzz::tokenize(&tok, b));
    assert!(runs > 50, "only {runs} executions");
}
