//! Tiled VAE (diffusers' `enable_tiling()`) and TAESD: the `vae/` fixture cases (folder from
//! `WGSD_VAE_FIXTURES`, default `../shared/fixtures/vae`), and fixture-free checks of the tile geometry,
//! the blending, the tiling policy and TAESD's loading errors.

use std::path::PathBuf;

use wgsd::graph::op::DeviceLimits;
use wgsd::graph::plan::Plan;
use wgsd::models::config::VaeConfig;
use wgsd::models::taesd::AutoencoderTiny;
use wgsd::models::vae::AutoencoderKL;
use wgsd::models::vae_tiling::{
    blend_h, blend_tiles, blend_v, decoder_activations, decoder_winograd_bytes, tile_starts, Tile, TileSizes, VaeTiling, AUTO_ACTIVATION_BUDGET,
};
use wgsd::testing::{test_gpu, tiny_model, Rng};
use wgsd::{Graph, TensorDesc};

const ENV: &str = "WGSD_VAE_FIXTURES";

fn vae_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os(ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/fixtures/vae"));
    if dir.join("cases.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no VAE fixtures at {} (set {ENV})", dir.display());
        None
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-vae-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A VAE config from JSON (no weights needed for geometry and policy).
fn vae_config(block_out: &[usize], sample_size: usize) -> VaeConfig {
    let n = block_out.len();
    let list = |s: &str| vec![format!("\"{s}\""); n].join(", ");
    let json = format!(
        r#"{{"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": {block_out:?}, "layers_per_block": 2,
            "down_block_types": [{}], "up_block_types": [{}], "sample_size": {sample_size}}}"#,
        list("DownEncoderBlock2D"),
        list("UpDecoderBlock2D")
    );
    let d = temp_dir(&format!("config-{}-{sample_size}", block_out.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("_")));
    std::fs::write(d.join("config.json"), json).unwrap();
    let c = VaeConfig::from_file(&d.join("config.json")).unwrap();
    std::fs::remove_dir_all(&d).ok();
    c
}

fn sd15() -> VaeConfig {
    vae_config(&[128, 256, 512, 512], 512)
}

/// lavapipe's limits (2047 MiB buffers, 128 MiB bindings).
fn lavapipe_limits() -> wgpu::Limits {
    wgpu::Limits { max_buffer_size: 2047 << 20, max_storage_buffer_binding_size: 128 << 20, ..Default::default() }
}

#[test]
fn fixture_cases_match_diffusers() {
    let Some(dir) = vae_fixtures() else { return };
    let gpu = test_gpu();
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let mut results = wgsd::verify::vae_tiling_cases(&gpu, &fx).unwrap();
    results.extend(wgsd::verify::taesd_cases(&gpu, &fx).unwrap());
    for r in &results {
        println!("{}", r.line());
    }
    for family in ["vae.tiled_decode.", "vae.tiled_encode", "taesd.decode", "taesd.encode"] {
        if !fx.keys_with_prefix(family).is_empty() {
            assert!(results.iter().any(|r| r.name.starts_with(family)), "the fixtures have {family} cases but none ran");
        }
    }
    assert!(!results.is_empty(), "no cases ran");
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------
// Blending against a plain f64 reference of diffusers' loops.

fn random_tile(rng: &mut Rng, c: usize, h: usize, w: usize) -> Tile {
    Tile::new(c, h, w, rng.vec(c * h * w, 1.0)).unwrap()
}

#[test]
fn blend_v_and_blend_h_match_the_formula() {
    let mut rng = Rng::new(7);
    // (a height, b height, extent): extent cut to the smaller tile, or used as is.
    for (ha, hb, extent) in [(9, 7, 4), (3, 8, 5), (6, 2, 5), (5, 5, 5), (4, 6, 0)] {
        let (c, w) = (2, 5);
        let a = random_tile(&mut rng, c, ha, w);
        let b0 = random_tile(&mut rng, c, hb, w);
        let mut b = b0.clone();
        blend_v(&a, &mut b, extent).unwrap();
        let e = extent.min(ha).min(hb);
        for ch in 0..c {
            for y in 0..hb {
                for x in 0..w {
                    let at = |t: &Tile, y: usize| t.data[(ch * t.height + y) * w + x] as f64;
                    let want = if y < e { at(&a, ha - e + y) * (1.0 - y as f64 / e as f64) + at(&b0, y) * (y as f64 / e as f64) } else { at(&b0, y) };
                    assert!((at(&b, y) - want).abs() < 1e-6, "blend_v {ha}/{hb}/{extent} at c{ch} y{y} x{x}: {} vs {want}", at(&b, y));
                }
            }
        }
        // blend_h is blend_v on transposed tiles.
        let tr = |t: &Tile| {
            let mut d = Vec::new();
            for ch in 0..t.channels {
                for x in 0..t.width {
                    for y in 0..t.height {
                        d.push(t.data[(ch * t.height + y) * t.width + x]);
                    }
                }
            }
            Tile::new(t.channels, t.width, t.height, d).unwrap()
        };
        let mut bh = tr(&b0);
        blend_h(&tr(&a), &mut bh, extent).unwrap();
        assert_eq!(tr(&bh), b, "blend_h({ha}, {hb}, {extent}) differs from blend_v on the transpose");
    }
    // Tiles of different widths cannot be blended vertically: an error, not a panic.
    let (a, mut b) = (random_tile(&mut rng, 1, 4, 3), random_tile(&mut rng, 1, 4, 5));
    assert!(blend_v(&a, &mut b, 2).is_err());
}

/// diffusers' `tiled_decode` result assembly on nested f64 vectors: `tiles[i][j][c][y][x]`.
fn reference_assembly(tiles: &[Vec<Tile>], blend: usize, keep: usize) -> Vec<f64> {
    type T = Vec<Vec<Vec<f64>>>;
    let to = |t: &Tile| -> T {
        (0..t.channels).map(|c| (0..t.height).map(|y| (0..t.width).map(|x| t.data[(c * t.height + y) * t.width + x] as f64).collect()).collect()).collect()
    };
    let mut g: Vec<Vec<T>> = tiles.iter().map(|r| r.iter().map(to).collect()).collect();
    for i in 0..g.len() {
        for j in 0..g[i].len() {
            if i > 0 {
                let a = g[i - 1][j].clone();
                let b = &mut g[i][j];
                let e = blend.min(a[0].len()).min(b[0].len());
                for (c, plane) in b.iter_mut().enumerate() {
                    for y in 0..e {
                        for x in 0..plane[y].len() {
                            plane[y][x] = a[c][a[c].len() - e + y][x] * (1.0 - y as f64 / e as f64) + plane[y][x] * (y as f64 / e as f64);
                        }
                    }
                }
            }
            if j > 0 {
                let a = g[i][j - 1].clone();
                let b = &mut g[i][j];
                let e = blend.min(a[0][0].len()).min(b[0][0].len());
                for (c, plane) in b.iter_mut().enumerate() {
                    for (y, row) in plane.iter_mut().enumerate() {
                        for x in 0..e {
                            row[x] = a[c][y][a[c][y].len() - e + x] * (1.0 - x as f64 / e as f64) + row[x] * (x as f64 / e as f64);
                        }
                    }
                }
            }
        }
    }
    // Crop to `keep` and concatenate along width, then height: out[c][Y][X].
    let ch = g[0][0].len();
    let mut out: Vec<Vec<Vec<f64>>> = vec![Vec::new(); ch];
    for row in &g {
        let h = row[0][0].len().min(keep);
        for (c, plane) in out.iter_mut().enumerate() {
            for y in 0..h {
                let mut line = Vec::new();
                for t in row {
                    line.extend_from_slice(&t[c][y][..t[c][y].len().min(keep)]);
                }
                plane.push(line);
            }
        }
    }
    out.into_iter().flatten().flatten().collect()
}

#[test]
fn blended_grid_matches_diffusers_assembly() {
    let mut rng = Rng::new(11);
    // Decoded tiles of a 40×29 latent with the tiny VAE's geometry (tiles of 16 latent rows, ×8).
    let sizes = TileSizes { sample: 128, latent: 16, overlap: 0.25 };
    let t = sizes.decode_tiling(40, 29);
    let grid: Vec<Vec<Tile>> = t.rows.iter().map(|&(_, h)| t.cols.iter().map(|&(_, w)| random_tile(&mut rng, 3, 8 * h, 8 * w)).collect()).collect();
    let want = reference_assembly(&grid, t.blend, t.keep);
    let got = blend_tiles(grid, t.blend, t.keep).unwrap();
    assert_eq!((got.channels, got.height, got.width), (3, 320, 232));
    let worst = got.data.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(worst < 2e-6, "blend_tiles differs from the reference by {worst}");
}

// ---------------------------------------------------------------------------------------------------------
// Geometry and policy (no GPU).

#[test]
fn tile_geometry_follows_diffusers() {
    let tiny = TileSizes::of(&vae_config(&[32, 64, 64, 64], 128));
    assert_eq!(tiny, TileSizes { sample: 128, latent: 16, overlap: 0.25 });
    // A multiple of the tile step, a side that is not, one a tile long, and one just over.
    let d = tiny.decode_tiling(32, 40);
    assert_eq!(d.rows, vec![(0, 16), (12, 16), (24, 8)]);
    assert_eq!(d.cols, vec![(0, 16), (12, 16), (24, 16), (36, 4)]);
    assert_eq!((d.blend, d.keep), (32, 96));
    assert_eq!(d.shapes(), vec![(16, 16), (16, 4), (8, 16), (8, 4)]);
    assert_eq!(tile_starts(16, 16, 12), vec![(0, 16), (12, 4)]);
    assert_eq!(tile_starts(13, 16, 12), vec![(0, 13), (12, 1)]);
    let e = tiny.encode_tiling(256, 320);
    assert_eq!(e.rows, vec![(0, 128), (96, 128), (192, 64)]);
    assert_eq!(e.cols, vec![(0, 128), (96, 128), (192, 128), (288, 32)]);
    assert_eq!((e.blend, e.keep), (4, 12));
    // Whatever the size, the kept parts add up to the untiled output size.
    for sizes in [tiny, TileSizes::of(&sd15()), TileSizes::of(&vae_config(&[128, 256, 512, 512], 768))] {
        for len in 1..=3 * sizes.latent + 5 {
            let t = sizes.decode_tiling(len, len);
            let out: usize = t.rows.iter().map(|&(_, n)| (8 * n).min(t.keep)).sum();
            assert_eq!(out, 8 * len, "decode of {len} latent rows with {sizes:?}");
            let t = sizes.encode_tiling(8 * len, 8 * len);
            let out: usize = t.rows.iter().map(|&(_, n)| (n / 8).min(t.keep)).sum();
            assert_eq!(out, len, "encode of {} image rows with {sizes:?}", 8 * len);
        }
    }
    // SD 1.5 at 2048²: 6 × 6 tiles of at most 64² latents, four tile shapes (so four plans).
    let t = TileSizes::of(&sd15()).decode_tiling(256, 256);
    assert_eq!((t.count(), t.shapes().len()), (36, 4));
    assert_eq!(t.rows.last(), Some(&(240, 16)));
}

#[test]
fn policy_tiles_only_what_would_not_fit() {
    let (c, limits) = (sd15(), lavapipe_limits());
    // lavapipe's kernel choices (Winograd convs, whose transforms add to the activations).
    let device = DeviceLimits { cpu: true, subgroup_min_size: 8, ..DeviceLimits::from_wgpu(&limits) };
    assert!(decoder_winograd_bytes(&c, 64, 64, &device) > 0);
    assert_eq!(decoder_winograd_bytes(&c, 64, 64, &DeviceLimits::from_wgpu(&limits)), 0, "GPUs: direct convs");
    let device = &device;
    // 2048²: one 256-channel activation alone is 4 GiB, over any buffer lavapipe allows.
    assert!(decoder_activations(&c, 256, 256).largest > limits.max_buffer_size);
    assert!(VaeTiling::Auto.tile_decode(&c, 256, 256, &limits, device));
    assert!(VaeTiling::On.tile_decode(&c, 256, 256, &limits, device));
    assert!(!VaeTiling::Off.tile_decode(&c, 256, 256, &limits, device));
    assert!(VaeTiling::Auto.tile_encode(&c, 2048, 2048, &limits, device));
    // 512² is one tile: never tiled, whatever the policy (diffusers does not tile it either).
    for p in [VaeTiling::On, VaeTiling::Auto, VaeTiling::Off] {
        assert!(!p.tile_decode(&c, 64, 64, &limits, device), "{p}");
        assert!(!p.tile_encode(&c, 512, 512, &limits, device), "{p}");
    }
    // Over one tile but small: On tiles, Auto does not.
    let tiny = vae_config(&[32, 64, 64, 64], 128);
    assert!(VaeTiling::On.tile_decode(&tiny, 32, 48, &limits, device));
    assert!(!VaeTiling::Auto.tile_decode(&tiny, 32, 48, &limits, device));
    assert!(!VaeTiling::Auto.tile_encode(&tiny, 256, 320, &limits, device));
    // A tile of the 2048² decode (512²) fits the budget Auto holds untiled passes to, Winograd included.
    assert!(decoder_activations(&c, 64, 64).live + decoder_winograd_bytes(&c, 64, 64, device) <= AUTO_ACTIVATION_BUDGET);
    assert_eq!("auto".parse::<VaeTiling>().unwrap(), VaeTiling::Auto);
    assert!("sometimes".parse::<VaeTiling>().is_err());
}

// ---------------------------------------------------------------------------------------------------------
// On the GPU with the tiny fixture VAE (WGSD_FIXTURES).

#[test]
fn one_tile_equals_the_untiled_pass_bit_for_bit() {
    let Some(model) = tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let vae = AutoencoderKL::load(&gpu, &model.join("vae"), None).unwrap();
    // 12 latent rows decode to 96 = the kept part of a tile: one tile, nothing blended or cut.
    let mut rng = Rng::new(5);
    let latent = rng.vec(2 * 4 * 12 * 12, 1.0);
    let (tiled, run) = vae.decode_tiled(&gpu, &latent, [2, 4, 12, 12]).unwrap();
    assert_eq!((run.tiles, run.plans), (1, 1));
    assert!(tiled == vae.decode_untiled(&gpu, &latent, [2, 4, 12, 12]).unwrap(), "one-tile decode differs from the untiled one");
    let image = rng.vec(3 * 96 * 96, 1.0);
    let (tiled, _) = vae.encode_tiled(&gpu, &image, [1, 3, 96, 96]).unwrap();
    assert!(tiled == vae.encode_untiled(&gpu, &image, [1, 3, 96, 96]).unwrap(), "one-tile encode differs from the untiled one");
    // Several tiles of different shapes: each tile is the untiled decode of its latent crop.
    let latent = rng.vec(4 * 20 * 14, 1.0);
    let (tiled, run) = vae.decode_tiled(&gpu, &latent, [1, 4, 20, 14]).unwrap();
    assert_eq!((run.tiles, run.plans), (4, 4));
    let crop = Tile::new(4, 20, 14, latent.clone()).unwrap().crop(0, 16, 0, 14);
    let first = Tile::new(3, 128, 112, vae.decode_untiled(&gpu, &crop.data, [1, 4, 16, 14]).unwrap()).unwrap();
    // Rows 0..96 and columns 0..96 of the result come from the first tile only, unblended.
    let got = Tile::new(3, 160, 112, tiled).unwrap();
    assert!(got.crop(0, 96, 0, 96) == first.crop(0, 96, 0, 96), "the top-left tile's unblended part differs");
}

/// The pipeline's decode: `Auto` leaves a small image untiled (bit-identical to one plain decoder plan),
/// `On` tiles it (and then differs, as random weights make tiles disagree).
#[test]
fn pipeline_decode_follows_the_policy() {
    let Some(model) = tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let mut sd = wgsd::pipeline::StableDiffusion::load(gpu.clone(), &model, None).unwrap();
    assert_eq!(sd.vae_tiling, VaeTiling::Auto);
    let latent = Rng::new(9).vec(4 * 20 * 24, 1.0);
    // The untiled decode as the pipeline always did it: one plan, then (x / 2 + 0.5).clamp(0, 1) to NHWC.
    let mut g = Graph::new();
    let z = g.input("latent", TensorDesc::f32(&[1, 4, 20, 24]));
    let img = sd.vae.decode(&mut g, z).unwrap();
    g.output(img);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    plan.write(z, &latent).unwrap();
    plan.run().unwrap();
    let plain = wgsd::pipeline::vae::to_nhwc_unit(&plan.read(img).unwrap(), 1, 160 * 192);
    assert!(sd.decode_latents(&latent, [1, 4, 20, 24]).unwrap() == plain, "Auto changed a small decode");
    sd.vae_tiling = VaeTiling::On;
    let tiled = sd.decode_latents(&latent, [1, 4, 20, 24]).unwrap();
    assert_eq!(tiled.len(), plain.len());
    assert!(tiled != plain, "On did not tile a latent larger than one tile");
}

#[test]
fn activation_estimate_covers_the_planned_peak() {
    let Some(model) = tiny_model("sd15") else { return };
    let gpu = test_gpu();
    let vae = AutoencoderKL::load(&gpu, &model.join("vae"), None).unwrap();
    for (h, w) in [(16, 16), (32, 48)] {
        let mut g = Graph::new();
        let z = g.input("latent", TensorDesc::f32(&[1, 4, h, w]));
        let y = vae.decode(&mut g, z).unwrap();
        g.output(y);
        let plan = Plan::new(gpu.clone(), g).unwrap();
        let mut est = decoder_activations(&vae.config, h, w);
        est.live += decoder_winograd_bytes(&vae.config, h, w, &DeviceLimits::from_gpu(&gpu));
        let m = plan.memory();
        println!("decode {h}×{w}: planned live peak {} B, estimate {} B (largest {} B)", m.intermediates_live_peak, est.live, est.largest);
        assert!(m.intermediates_live_peak <= est.live, "estimate {} below the planned live peak {}", est.live, m.intermediates_live_peak);
    }
}

/// A 2048² SD 1.5 decode in tiles: each tile plan's activations (planned, not run) stay under 2 GB.
#[test]
fn real_size_2048_tiled_decode_activations_under_2gb() {
    let gpu = test_gpu();
    let c = sd15();
    let vae = AutoencoderKL::from_weights(&gpu, c.clone(), &wgsd::models::weights::Weights::random(1)).unwrap();
    let tiling = TileSizes::of(&c).decode_tiling(256, 256);
    let mut peak = 0;
    for (h, w) in tiling.shapes() {
        let mut g = Graph::new();
        let z = g.input("latent", TensorDesc::f32(&[1, 4, h, w]));
        let y = vae.decode(&mut g, z).unwrap();
        g.output(y);
        let plan = Plan::new(gpu.clone(), g).unwrap();
        let m = plan.memory();
        println!("tile {h}×{w}: {m}; estimate {:?}", decoder_activations(&c, h, w));
        peak = peak.max(m.intermediates + m.inputs_outputs);
    }
    println!("2048² tiled decode: {} tiles, activation peak {:.1} MiB", tiling.count(), peak as f64 / (1 << 20) as f64);
    assert!(peak < 2_000_000_000, "tile activations {peak} B");
}

// ---------------------------------------------------------------------------------------------------------
// TAESD loading errors.

const TAESD_CONFIG: &str = r#"{"_class_name": "AutoencoderTiny", "act_fn": "relu", "encoder_block_out_channels": [8, 8],
    "decoder_block_out_channels": [8, 8], "num_encoder_blocks": [1, 1], "num_decoder_blocks": [1, 1], "latent_channels": 4}"#;

#[test]
fn bad_taesd_folders_are_named() {
    let gpu = test_gpu();
    let d = temp_dir("taesd");
    let err = AutoencoderTiny::load(&gpu, &d).err().expect("no config").to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(d.join("config.json"), TAESD_CONFIG.replace("AutoencoderTiny", "AutoencoderKL")).unwrap();
    let err = AutoencoderTiny::load(&gpu, &d).err().expect("wrong class").to_string();
    assert!(err.contains("AutoencoderKL") && err.contains("AutoencoderTiny"), "{err}");
    std::fs::write(d.join("config.json"), TAESD_CONFIG).unwrap();
    let err = AutoencoderTiny::load(&gpu, &d).err().expect("no weights").to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors") && err.contains("not found"), "{err}");
    // Only the first conv's weight: its bias is the first tensor missing.
    let bytes: Vec<u8> = vec![0.0f32; 8 * 3 * 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 3, 3, 3], &bytes).unwrap();
    safetensors::serialize_to_file([("encoder.layers.0.weight", view)], None, &d.join("diffusion_pytorch_model.safetensors")).unwrap();
    let err = AutoencoderTiny::load(&gpu, &d).err().expect("missing tensor").to_string();
    println!("{err}");
    assert!(err.contains("encoder.layers.0.bias") && err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
