//! Prompts as A1111 users write them: emphasis weighting (the "Original" rescale and its undefined case),
//! 75-token chunking (long prompts, the comma backtrack, BREAK, SD 2 padding), textual-inversion
//! embeddings (every layout, bad files, triggers, positions) and the pipeline around them (A1111 syntax
//! equals diffusers' on plain prompts; separate guidance batches equal one). The parser's own rules are
//! unit tests in `src/prompt/parse.rs`. Tests that need the tiny fixture models print SKIPPED without them.

use std::path::{Path, PathBuf};

use wgsd::models::tokenizer::ClipTokenizer;
use wgsd::prompt::embeddings::{load_embedding, EmbeddingSet};
use wgsd::prompt::encode::{apply_emphasis, sd2_pad, Chunker, Emphasis};
use wgsd::prompt::PromptSyntax;
use wgsd::testing::Rng;
use wgsd::train::save::{safetensors_bytes, HostTensor};

/// CLIP's vocabulary: embedding ids follow it.
const VOCAB: usize = 49408;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-prompts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, tensors: &[(&str, &[usize])]) {
    let mut rng = Rng::new(7);
    let t: Vec<HostTensor> = tensors
        .iter()
        .map(|(name, shape)| HostTensor { name: name.to_string(), shape: shape.to_vec(), values: rng.vec(shape.iter().product(), 0.5) })
        .collect();
    std::fs::write(path, safetensors_bytes(&t, None).unwrap()).unwrap();
}

fn tokenizer(model: &str) -> Option<ClipTokenizer> {
    let dir = wgsd::fixtures::dir().join(model).join("tokenizer");
    if !dir.exists() {
        eprintln!("SKIPPED: no tokenizer at {} (set {})", dir.display(), wgsd::fixtures::ENV);
        return None;
    }
    Some(ClipTokenizer::from_folder(&dir).unwrap())
}

fn mean(z: &[f32]) -> f64 {
    z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64
}

#[test]
fn emphasis_weights_tokens_then_restores_the_mean() {
    let (tokens, width) = (5, 4);
    let mut rng = Rng::new(1);
    let z0: Vec<f32> = rng.vec(tokens * width, 1.0).iter().map(|v| v + 0.3).collect();

    let mut z = z0.clone();
    assert_eq!(apply_emphasis(&mut z, &[1.0; 5], width), Emphasis::Unweighted);
    assert_eq!(z, z0, "all-one multipliers leave the chunk alone");

    let m = [1.0, 1.3, 0.9, 1.0, 2.0];
    let mut z = z0.clone();
    assert_eq!(apply_emphasis(&mut z, &m, width), Emphasis::Rescaled);
    assert!((mean(&z) - mean(&z0)).abs() < 1e-6 * mean(&z0).abs(), "mean {} → {}", mean(&z0), mean(&z));
    // One factor for the whole chunk on top of the per-token weights.
    let k = z[0] as f64 / z0[0] as f64;
    for t in 0..tokens {
        for d in 0..width {
            let want = z0[t * width + d] as f64 * m[t] as f64 * k;
            assert!((z[t * width + d] as f64 - want).abs() < 1e-5, "token {t} dim {d}");
        }
    }
    assert!((k - 1.0).abs() > 1e-3, "the rescale did something");
}

/// A chunk whose mean is zero (a text encoder whose final LayerNorm has no bias) has no A1111 rescale:
/// the weights are applied as they are, never turned into NaN or noise.
#[test]
fn emphasis_on_a_zero_mean_chunk_is_not_rescaled() {
    let width = 4;
    // Every token's vector has mean exactly 0, as a bias-free LayerNorm makes it.
    let z0: Vec<f32> = (0..3).flat_map(|t| [1.0 + t as f32, -1.0 - t as f32, 0.5, -0.5]).collect();
    let m = [1.2, 1.0, 0.8];
    let mut z = z0.clone();
    assert_eq!(apply_emphasis(&mut z, &m, width), Emphasis::NotRescaled);
    for (i, v) in z.iter().enumerate() {
        assert_eq!(*v, z0[i] * m[i / width]);
    }
    // A mean that only the weighting makes zero: A1111 would divide by 0.
    let z0 = [1.0f32, 1.0, -2.0, -2.0];
    let mut z = z0.to_vec();
    assert_eq!(apply_emphasis(&mut z, &[2.0, 1.0], 2), Emphasis::NotRescaled);
    assert_eq!(z, [2.0, 2.0, -2.0, -2.0]);
    assert!(z.iter().all(|v| v.is_finite()));
}

#[test]
fn short_plain_prompts_chunk_as_diffusers_tokenizes_them() {
    let Some(tok) = tokenizer("sd15") else { return };
    let emb = EmbeddingSet::default();
    let c = Chunker::new(&tok, &emb, VOCAB).unwrap();
    let text = "a photo of an astronaut riding a horse";
    let a = c.chunk(text, PromptSyntax::A1111).unwrap();
    let p = c.chunk(text, PromptSyntax::Plain).unwrap();
    assert_eq!(a.chunks.len(), 1);
    assert_eq!(a.chunks, p.chunks);
    assert_eq!(a.chunks[0].ids, tok.encode(text).unwrap().ids);
    assert!(a.chunks[0].multipliers.iter().all(|&m| m == 1.0));
    // Escaped brackets are the characters themselves.
    let esc = c.chunk("a \\(photo\\)", PromptSyntax::A1111).unwrap();
    assert_eq!(esc.chunks[0].ids, tok.encode("a (photo)").unwrap().ids);
}

#[test]
fn emphasis_lands_on_the_tokens_of_its_text() {
    let Some(tok) = tokenizer("sd15") else { return };
    let emb = EmbeddingSet::default();
    let c = Chunker::new(&tok, &emb, VOCAB).unwrap();
    let ch = &c.chunk("a (red:1.3) fox [in snow]", PromptSyntax::A1111).unwrap().chunks[0];
    let n = |s: &str| tok.encode_raw(s).unwrap().len();
    let (a, red, fox, snow) = (n("a"), n("red"), n("fox"), n("in snow"));
    let mut want = vec![1.0f32];
    want.extend(std::iter::repeat_n(1.0, a));
    want.extend(std::iter::repeat_n(1.3, red));
    want.extend(std::iter::repeat_n(1.0, fox));
    want.extend(std::iter::repeat_n((1.0 / 1.1f64) as f32, snow));
    want.resize(77, 1.0);
    assert_eq!(ch.multipliers, want);
    assert_eq!(ch.ids.len(), 77);
}

#[test]
fn long_prompts_fill_chunks_of_75_with_bos_eos_and_padding() {
    let Some(tok) = tokenizer("sd15") else { return };
    let emb = EmbeddingSet::default();
    let c = Chunker::new(&tok, &emb, VOCAB).unwrap();
    let text = "quiet harbour town at night ".repeat(32);
    let raw = tok.encode_raw(&text).unwrap();
    assert!(raw.len() > 150, "{} tokens", raw.len());
    let a = c.chunk(&text, PromptSyntax::A1111).unwrap();
    assert_eq!(a.truncated, 0);
    assert_eq!(a.chunks.len(), raw.len().div_ceil(75));
    let mut inner = Vec::new();
    for ch in &a.chunks {
        assert_eq!(ch.ids.len(), 77);
        assert_eq!((ch.ids[0], ch.ids[76]), (tok.bos_id, tok.eos_id));
        inner.extend(ch.ids[1..76].iter().copied().filter(|&t| t != tok.eos_id));
    }
    assert_eq!(inner, raw, "no token lost or repeated across chunks");
    // Plain syntax cuts at one window and says how much it cut.
    let p = c.chunk(&text, PromptSyntax::Plain).unwrap();
    assert_eq!((p.chunks.len(), p.truncated), (1, raw.len() - 75));
}

/// A chunk that fills up within 20 tokens after a comma moves the text after the comma on.
#[test]
fn a_full_chunk_breaks_at_a_recent_comma() {
    let Some(tok) = tokenizer("sd15") else { return };
    let emb = EmbeddingSet::default();
    let c = Chunker::new(&tok, &emb, VOCAB).unwrap();
    let comma = tok.encode_raw(",").unwrap()[0];
    let word = tok.encode_raw("cat").unwrap();
    assert_eq!(word.len(), 1);
    // 65 words, a comma (position 65), then 20 words: the chunk fills 9 tokens after the comma.
    let text = format!("{}, {}", "cat ".repeat(65).trim_end(), "dog ".repeat(20).trim_end());
    let a = c.chunk(&text, PromptSyntax::A1111).unwrap();
    assert_eq!(a.chunks.len(), 2);
    let first = &a.chunks[0].ids;
    assert_eq!(first[66], comma, "the comma ends the first chunk");
    assert!(first[67..].iter().all(|&t| t == tok.eos_id), "the rest of the first chunk is padding");
    let dog = tok.encode_raw("dog").unwrap()[0];
    assert_eq!(a.chunks[1].ids[1..21], [dog; 20], "all 20 words after the comma moved on");
    // A comma more than 20 tokens back does not move anything.
    let text = format!("{}, {}", "cat ".repeat(40).trim_end(), "dog ".repeat(45).trim_end());
    let a = c.chunk(&text, PromptSyntax::A1111).unwrap();
    assert_eq!(a.chunks[0].ids[76], tok.eos_id);
    assert_eq!(a.chunks[0].ids[75], dog, "the first chunk is full");
}

#[test]
fn break_starts_a_new_chunk() {
    let Some(tok) = tokenizer("sd15") else { return };
    let emb = EmbeddingSet::default();
    let c = Chunker::new(&tok, &emb, VOCAB).unwrap();
    let a = c.chunk("a castle BREAK a dragon", PromptSyntax::A1111).unwrap();
    assert_eq!(a.chunks.len(), 2);
    assert_eq!(a.chunks[0].ids, tok.encode("a castle").unwrap().ids);
    assert_eq!(a.chunks[1].ids, tok.encode("a dragon").unwrap().ids);
    // "BREAK" inside another word is text.
    assert_eq!(c.chunk("BREAKFAST", PromptSyntax::A1111).unwrap().chunks.len(), 1);
}

#[test]
fn sd2_pads_after_the_first_eos_with_its_pad_id() {
    let mut ids = vec![49406, 320, 1125, 49407, 49407, 49407];
    sd2_pad(&mut ids, 49407, 0);
    assert_eq!(ids, [49406, 320, 1125, 49407, 0, 0]);
    // SD 1's pad id is EOS itself: nothing changes.
    let mut ids1 = vec![49406, 320, 49407, 49407];
    sd2_pad(&mut ids1, 49407, 49407);
    assert_eq!(ids1, [49406, 320, 49407, 49407]);
}

#[test]
fn embedding_layouts_load() {
    let d = temp("layouts");
    let cases: [(&str, &[(&str, &[usize])], usize, Vec<String>); 5] = [
        ("a1111.safetensors", &[("emb_params", &[2, 32])], 2, vec![]),
        ("one.safetensors", &[("emb_params", &[32])], 1, vec![]),
        ("ti.safetensors", &[("string_to_param.*", &[3, 32])], 3, vec![]),
        ("diffusers.safetensors", &[("<cat-toy>", &[32])], 1, vec!["<cat-toy>".into()]),
        ("batched.safetensors", &[("whatever", &[1, 4, 32])], 4, vec!["whatever".into()]),
    ];
    for (file, tensors, count, tokens) in cases {
        write(&d.join(file), tensors);
        let e = load_embedding(&d.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((e.count, e.width, &e.tokens), (count, 32, &tokens), "{file}");
        assert_eq!(e.vectors.len(), count * 32);
        assert_eq!(e.name, file.trim_end_matches(".safetensors"));
    }
}

#[test]
fn bad_embedding_files_are_clear_errors() {
    let d = temp("bad");
    let err = |p: &Path| load_embedding(p).unwrap_err().to_string();
    // A pickle is refused without being read (the bytes are not even a pickle).
    std::fs::write(d.join("neg.pt"), b"not a pickle at all").unwrap();
    let e = err(&d.join("neg.pt"));
    assert!(e.contains("neg.pt") && e.contains("not read") && e.contains("safetensors"), "{e}");
    write(&d.join("xl.safetensors"), &[("clip_l", &[2, 768]), ("clip_g", &[2, 1280])]);
    assert!(err(&d.join("xl.safetensors")).contains("SDXL"));
    write(&d.join("many.safetensors"), &[("a", &[2, 32]), ("b", &[2, 32])]);
    let e = err(&d.join("many.safetensors"));
    assert!(e.contains("many.safetensors") && e.contains("2 keys"), "{e}");
    write(&d.join("cube.safetensors"), &[("emb_params", &[2, 2, 2, 32])]);
    assert!(err(&d.join("cube.safetensors")).contains("[vectors, width]"));
    let bytes = std::fs::read(d.join("cube.safetensors")).unwrap();
    std::fs::write(d.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(err(&d.join("cut.safetensors")).contains("cut.safetensors"));
    let nan = HostTensor { name: "emb_params".into(), shape: vec![1, 4], values: vec![0.0, f32::NAN, 1.0, 2.0] };
    std::fs::write(d.join("nan.safetensors"), safetensors_bytes(&[nan], None).unwrap()).unwrap();
    assert!(err(&d.join("nan.safetensors")).contains("non-finite"));
    // A width that is not the model's names both.
    let mut set = EmbeddingSet::default();
    write(&d.join("wide.safetensors"), &[("emb_params", &[1, 1024])]);
    let e = set.add_file(&d.join("wide.safetensors"), 768).unwrap_err().to_string();
    assert!(e.contains("1024") && e.contains("768") && e.contains("wide.safetensors"), "{e}");
}

#[test]
fn an_embeddings_folder_skips_other_families_and_refuses_duplicates() {
    let d = temp("dir");
    std::fs::create_dir_all(d.join("sd2")).unwrap();
    write(&d.join("good.safetensors"), &[("emb_params", &[2, 32])]);
    write(&d.join("sd2/other.safetensors"), &[("emb_params", &[1, 64])]);
    std::fs::write(d.join("old.pt"), b"x").unwrap();
    std::fs::write(d.join("notes.txt"), b"x").unwrap();
    let mut set = EmbeddingSet::default();
    let skipped = set.add_dir(&d, 32).unwrap();
    assert_eq!(skipped, ["other.safetensors"]);
    assert_eq!(set.list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["good"]);
    assert_eq!((set.rows(), set.table().len()), (2, 64));
    let e = set.add_file(&d.join("good.safetensors"), 32).unwrap_err().to_string();
    assert!(e.contains("two embeddings are named 'good'"), "{e}");
    assert!(set.add_dir(&d.join("missing"), 32).unwrap_err().to_string().contains("missing"));
}

/// Embedding ids follow the vocabulary, one position per vector; A1111 triggers on the file stem,
/// diffusers on `<stem>`; an embedding never straddles two chunks.
#[test]
fn embeddings_take_one_position_per_vector_and_never_split() {
    let Some(tok) = tokenizer("sd15") else { return };
    let d = temp("positions");
    write(&d.join("first.safetensors"), &[("emb_params", &[1, 32])]);
    write(&d.join("wgsdstyle.safetensors"), &[("emb_params", &[3, 32])]);
    let mut set = EmbeddingSet::default();
    set.add_file(&d.join("first.safetensors"), 32).unwrap();
    set.add_file(&d.join("wgsdstyle.safetensors"), 32).unwrap();
    let c = Chunker::new(&tok, &set, VOCAB).unwrap();
    let ids = |n: usize| -> Vec<u32> { (0..n as u32).map(|k| VOCAB as u32 + 1 + k).collect() };

    let a = c.chunk("a cat, wgsdstyle", PromptSyntax::A1111).unwrap();
    let body = &a.chunks[0].ids[1..];
    let cat = tok.encode_raw("a cat,").unwrap();
    assert_eq!(&body[..cat.len()], cat.as_slice());
    assert_eq!(&body[cat.len()..cat.len() + 3], ids(3).as_slice());
    assert_eq!(c.embeddings_used("a cat, wgsdstyle", PromptSyntax::A1111).unwrap(), [1]);
    // Emphasis weights every vector.
    let w = c.chunk("(wgsdstyle:1.5)", PromptSyntax::A1111).unwrap();
    assert_eq!(&w.chunks[0].multipliers[1..4], &[1.5; 3]);
    // The diffusers form works in both syntaxes; the bare stem only in A1111's.
    for syntax in [PromptSyntax::A1111, PromptSyntax::Plain] {
        let p = c.chunk("a <wgsdstyle> cat", syntax).unwrap();
        assert!(p.chunks[0].ids.windows(3).any(|win| win == ids(3).as_slice()), "{syntax:?}");
    }
    assert!(c.embeddings_used("wgsdstyle", PromptSyntax::Plain).unwrap().is_empty());

    // 74 tokens, then the 3-vector embedding: it moves whole to the next chunk.
    let text = format!("{} wgsdstyle", "cat ".repeat(74).trim_end());
    let a = c.chunk(&text, PromptSyntax::A1111).unwrap();
    assert_eq!(a.chunks.len(), 2);
    assert_eq!(a.chunks[0].ids[75], tok.eos_id, "the first chunk is closed after 74 tokens");
    assert_eq!(&a.chunks[1].ids[1..4], ids(3).as_slice());
}

mod pipeline {
    use super::*;
    use wgsd::prompt::encode::PromptSet;
    use wgsd::pipeline::denoise::Condition;
    use wgsd::pipeline::StableDiffusion;
    use wgsd::schedulers::{self, TorchCpuGenerator};

    fn run(sd: &StableDiffusion, prompt: &str, negative: &str) -> (Vec<f32>, Vec<String>) {
        let req = wgsd::testing::small_request(prompt, negative, 2);
        let mut sched = schedulers::from_config("EulerDiscreteScheduler", &sd.scheduler_config, "test").unwrap();
        let out = sd.generate(&req, &Condition::Text, sched.as_mut(), &mut TorchCpuGenerator::new(3), &mut |_, _| {}).unwrap();
        (out.images, out.notes)
    }

    /// A1111 syntax reads a prompt without emphasis exactly as diffusers does; emphasis changes the image;
    /// guidance in two batches equals guidance in one; different chunk counts run as two batches.
    #[test]
    fn a1111_prompts_in_the_pipeline() {
        let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
        let mut sd = StableDiffusion::load(wgsd::testing::test_gpu(), &dir, None).unwrap();
        let (plain, _) = run(&sd, "a red fox in the snow", "blurry");
        sd.prompt.syntax = PromptSyntax::A1111;
        let (a1111, notes) = run(&sd, "a red fox in the snow", "blurry");
        assert_eq!(plain, a1111, "no emphasis: the same conditioning as diffusers");
        assert!(notes.is_empty(), "{notes:?}");
        let (weighted, _) = run(&sd, "a (red:1.6) fox in the snow", "blurry");
        assert!(wgsd::testing::max_abs(&weighted, &plain) > 1e-4, "emphasis changed nothing");
        assert!(weighted.iter().all(|v| v.is_finite()));

        sd.separate_guidance_batches = true;
        let (split, _) = run(&sd, "a red fox in the snow", "blurry");
        let diff = wgsd::testing::max_abs(&split, &plain);
        assert!(diff < 1e-5, "two guidance batches differ from one by {diff:e}");
        sd.separate_guidance_batches = false;

        let long = "quiet harbour town at night, ".repeat(20);
        let (img, notes) = run(&sd, &long, "blurry");
        assert!(img.iter().all(|v| v.is_finite()));
        assert!(notes.iter().any(|n| n.contains("separate batches")), "{notes:?}");
    }

    /// Under `--low-vram` the token table stays off the GPU and the rows a run uses are gathered on the
    /// host: the same conditioning as the table on the GPU, with textual-inversion vectors and two chunks.
    #[test]
    fn token_rows_gathered_on_the_host_equal_the_gpu_table() {
        use wgsd::gpu::{Gpu, GpuOptions, LowVramChoice};
        use wgsd::pipeline::Network;
        let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
        let d = temp("host-rows");
        write(&d.join("wgsdstyle.safetensors"), &[("emb_params", &[3, 32])]);
        let low = std::sync::Arc::new(Gpu::new(&GpuOptions { low_vram: Some(LowVramChoice::On), ..GpuOptions::from_env() }).unwrap());
        let mut out = Vec::new();
        for gpu in [wgsd::testing::test_gpu(), low] {
            let mut sd = StableDiffusion::load(gpu, &dir, None).unwrap();
            sd.prompt.syntax = PromptSyntax::A1111;
            sd.prompt.embeddings.add_file(&d.join("wgsdstyle.safetensors"), 32).unwrap();
            let cond = sd.chunk_prompts(&[format!("{} a (wgsdstyle:1.2) fox", "snow, ".repeat(40))]).unwrap();
            let uncond = sd.chunk_prompts(&["blurry wgsdstyle".to_string()]).unwrap();
            assert_eq!(cond[0].chunks.len(), 2);
            sd.bring_in(Network::TextEncoder).unwrap();
            assert_eq!(sd.text_encoder.token_table().resident(), sd.low_vram.is_none());
            let sets = [PromptSet { prompts: &cond, skip: 0, min_chunks: 1 }, PromptSet { prompts: &uncond, skip: 1, min_chunks: 1 }];
            out.push(sd.encode_sets(&sets).unwrap().into_iter().map(|e| e.context).collect::<Vec<_>>());
            sd.send_out(Network::TextEncoder).unwrap();
        }
        for (gpu_table, host_rows) in out[0].iter().zip(&out[1]) {
            assert_eq!(gpu_table, host_rows);
        }
    }

    /// The prompts and negative prompts of a run in one text-encoder run (a set of equal prompts encoded
    /// once) equal each prompt encoded on its own (the negative prompts are unweighted: a weighted set is
    /// rescaled to its own mean, which A1111 takes over the whole set).
    #[test]
    fn sets_encode_as_their_prompts_alone() {
        let Some(dir) = wgsd::testing::tiny_model("sd15") else { return };
        let mut sd = StableDiffusion::load(wgsd::testing::test_gpu(), &dir, None).unwrap();
        sd.prompt.syntax = PromptSyntax::A1111;
        let cond = sd.chunk_prompts(&vec!["a (red:1.2) fox, ".repeat(20); 3]).unwrap();
        let uncond = sd.chunk_prompts(&["blurry".to_string(), "dark".to_string(), "blurry".to_string()]).unwrap();
        let both = sd
            .encode_sets(&[PromptSet { prompts: &cond, skip: 1, min_chunks: 1 }, PromptSet { prompts: &uncond, skip: 1, min_chunks: 1 }])
            .unwrap();
        assert_eq!((both[0].chunks, both[1].chunks), (cond[0].chunks.len(), 1));
        for (set, chunks) in [(&both[0], &cond), (&both[1], &uncond)] {
            for (i, p) in chunks.iter().enumerate() {
                let alone = sd.encode_chunked(std::slice::from_ref(p), 1, 1).unwrap().context;
                let n = alone.len();
                let diff = wgsd::testing::max_abs(&set.context[i * n..(i + 1) * n], &alone);
                assert!(diff < 1e-6, "prompt {i}: {diff:e}");
            }
        }
    }
}
