//! Running the VAEs on host tensors, one image at a time: `AutoencoderKL` decode and encode whole or in
//! diffusers' tiles (geometry and blending in `models::vae_tiling`), and TAESD (`AutoencoderTiny`).
//!
//! Tiled passes build one plan per distinct tile shape (edge tiles may be smaller) and re-run it for every
//! tile of that shape; only one tile plan exists at a time, so GPU memory is that of one tile whatever the
//! image size. The tile outputs wait on the host until all are done, then are blended as diffusers does.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::models::taesd::AutoencoderTiny;
use crate::models::vae::AutoencoderKL;
use crate::models::vae_tiling::{blend_tiles, Tile, TileSizes, Tiling};
use crate::tensor::TensorDesc;

/// What a tiled pass did, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TiledRun {
    /// Tiles per image.
    pub tiles: usize,
    /// Plans built (one per distinct tile shape).
    pub plans: usize,
    /// The largest plan's pooled intermediates (bytes): the activation memory of the pass.
    pub peak_intermediates: u64,
}

/// A pass over one image: records the network from an input tensor to its output.
type Record<'a> = &'a dyn Fn(&mut Graph, TensorId) -> Result<TensorId>;

/// Runs `record` on every image of `input` (`[N, C, H, W]`) with one plan; returns the outputs, concatenated.
fn run_whole(gpu: &Arc<Gpu>, input: &[f32], shape: [usize; 4], record: Record) -> Result<(Vec<f32>, Vec<usize>)> {
    let [n, c, h, w] = shape;
    check_len(input, shape)?;
    let (g, x, y) = one_image_graph(shape, record)?;
    let plan = Plan::new(gpu.clone(), g)?;
    let out_shape = plan.graph().shape(y).to_vec();
    let mut out = Vec::with_capacity(n * out_shape.iter().product::<usize>());
    for item in input.chunks_exact(c * h * w) {
        plan.write(x, item)?;
        out.extend(plan.run_and_read(&[y])?.remove(0));
    }
    Ok((out, out_shape))
}

/// `record` on one image of a batch of `shape`: the graph, its input and its output.
fn one_image_graph(shape: [usize; 4], record: Record) -> Result<(Graph, TensorId, TensorId)> {
    let [_, c, h, w] = shape;
    let mut g = Graph::new();
    let x = g.input("input", TensorDesc::f32(&[1, c, h, w]));
    let y = record(&mut g, x)?;
    g.output(y);
    Ok((g, x, y))
}

fn check_len(input: &[f32], shape: [usize; 4]) -> Result<()> {
    if input.len() != shape.iter().product::<usize>() || shape.contains(&0) {
        return Err(Error::usage(format!("VAE input of shape {shape:?} given {} values", input.len())));
    }
    Ok(())
}

/// Runs `record` on every tile of every image and blends each image's tiles. Returns the images
/// (`[N, C', H', W']`, concatenated) and their `(C', H', W')`.
fn run_tiled(gpu: &Arc<Gpu>, input: &[f32], shape: [usize; 4], tiling: &Tiling, record: Record) -> Result<(Vec<f32>, [usize; 3], TiledRun)> {
    let [n, c, h, w] = shape;
    check_len(input, shape)?;
    let images: Vec<Tile> = input.chunks_exact(c * h * w).map(|d| Tile::new(c, h, w, d.to_vec())).collect::<Result<_>>()?;
    let (rows, cols) = (tiling.rows.len(), tiling.cols.len());
    // grids[b][i][j]: image b's output for tile (i, j).
    let mut grids: Vec<Vec<Vec<Option<Tile>>>> = vec![vec![vec![None; cols]; rows]; n];
    let mut stats = TiledRun { tiles: tiling.count(), ..Default::default() };
    for (th, tw) in tiling.shapes() {
        let mut g = Graph::new();
        let x = g.input("tile", TensorDesc::f32(&[1, c, th, tw]));
        let y = record(&mut g, x)?;
        g.output(y);
        let plan = Plan::new(gpu.clone(), g)?;
        stats.plans += 1;
        stats.peak_intermediates = stats.peak_intermediates.max(plan.memory().intermediates);
        let ys = plan.graph().shape(y).to_vec();
        for (b, image) in images.iter().enumerate() {
            for (i, &(r0, rh)) in tiling.rows.iter().enumerate() {
                for (j, &(c0, cw)) in tiling.cols.iter().enumerate() {
                    if (rh, cw) != (th, tw) {
                        continue;
                    }
                    plan.write(x, &image.crop(r0, rh, c0, cw).data)?;
                    grids[b][i][j] = Some(Tile::new(ys[1], ys[2], ys[3], plan.run_and_read(&[y])?.remove(0))?);
                }
            }
        }
        // The plan (and its intermediates) is dropped here, before the next shape's is built.
    }
    let mut out = Vec::new();
    let mut dims = [0; 3];
    for grid in grids {
        let grid: Vec<Vec<Tile>> = grid.into_iter().map(|r| r.into_iter().map(|t| t.expect("every tile ran")).collect()).collect();
        let t = blend_tiles(grid, tiling.blend, tiling.keep)?;
        dims = [t.channels, t.height, t.width];
        out.extend(t.data);
    }
    Ok((out, dims, stats))
}

/// Checks a tiled result has the size the untiled pass would give (diffusers' geometry only guarantees it
/// for tile sizes that are multiples of 32, as every published config's are).
fn check_size(what: &str, sizes: &TileSizes, got: [usize; 3], want: (usize, usize)) -> Result<()> {
    if (got[1], got[2]) != want {
        return Err(Error::usage(format!(
            "tiled VAE {what}: tiles of {} pixels give a {}×{} result instead of {}×{}; the VAE config's sample_size must be a multiple of 32 for tiling",
            sizes.sample, got[1], got[2], want.0, want.1
        )));
    }
    Ok(())
}

impl AutoencoderKL {
    /// Decodes latents `[N, C, h, w]` (already divided by the scaling factor) in one pass per image:
    /// images `[N, 3, 8h, 8w]`.
    pub fn decode_untiled(&self, gpu: &Arc<Gpu>, latents: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        Ok(run_whole(gpu, latents, shape, &|g, z| self.decode(g, z))?.0)
    }

    /// The graph [`AutoencoderKL::decode_untiled`] plans for latents of `shape`.
    pub fn decode_graph(&self, shape: [usize; 4]) -> Result<Graph> {
        Ok(one_image_graph(shape, &|g, z| self.decode(g, z))?.0)
    }

    /// diffusers' `tiled_decode` (always tiles, even a latent that fits one tile; `VaeTiling` decides when
    /// to call it): images `[N, 3, 8h, 8w]`.
    pub fn decode_tiled(&self, gpu: &Arc<Gpu>, latents: &[f32], shape: [usize; 4]) -> Result<(Vec<f32>, TiledRun)> {
        let sizes = TileSizes::of(&self.config);
        let tiling = sizes.decode_tiling(shape[2], shape[3]);
        let (out, dims, run) = run_tiled(gpu, latents, shape, &tiling, &|g, z| self.decode(g, z))?;
        let f = sizes.factor();
        check_size("decode", &sizes, dims, (f * shape[2], f * shape[3]))?;
        Ok((out, run))
    }

    /// Encodes images `[N, 3, H, W]` in [-1, 1] in one pass per image: moments `[N, 2L, H/8, W/8]`.
    pub fn encode_untiled(&self, gpu: &Arc<Gpu>, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        Ok(run_whole(gpu, images, shape, &|g, x| self.encode(g, x))?.0)
    }

    /// diffusers' `_tiled_encode` (quant_conv per tile, the moments blended): moments `[N, 2L, H/8, W/8]`.
    pub fn encode_tiled(&self, gpu: &Arc<Gpu>, images: &[f32], shape: [usize; 4]) -> Result<(Vec<f32>, TiledRun)> {
        let sizes = TileSizes::of(&self.config);
        let tiling = sizes.encode_tiling(shape[2], shape[3]);
        let (out, dims, run) = run_tiled(gpu, images, shape, &tiling, &|g, x| self.encode(g, x))?;
        let f = sizes.factor();
        check_size("encode", &sizes, dims, (shape[2] / f, shape[3] / f))?;
        Ok((out, run))
    }
}

impl AutoencoderTiny {
    /// `decode(latents).sample` for latents `[N, L, h, w]`: images `[N, 3, 8h, 8w]`.
    pub fn decode_latents(&self, gpu: &Arc<Gpu>, latents: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        Ok(run_whole(gpu, latents, shape, &|g, z| self.decode(g, z))?.0)
    }

    /// `encode(images).latents` for images `[N, 3, H, W]` in [-1, 1]: latents `[N, L, H/8, W/8]`.
    pub fn encode_images(&self, gpu: &Arc<Gpu>, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        Ok(run_whole(gpu, images, shape, &|g, x| self.encode(g, x))?.0)
    }
}

/// Decoder output `[N, 3, H, W]` in about [-1, 1] → NHWC in [0, 1]: `(x / 2 + 0.5).clamp(0, 1)`, as
/// diffusers' image processor does. `pixels` = H·W.
pub fn to_nhwc_unit(chw: &[f32], n: usize, pixels: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * pixels * 3);
    for image in chw.chunks_exact(3 * pixels).take(n) {
        for p in 0..pixels {
            for ch in 0..3 {
                out.push((image[ch * pixels + p] / 2.0 + 0.5).clamp(0.0, 1.0));
            }
        }
    }
    out
}

impl crate::pipeline::StableDiffusion {
    /// Uses the VAE in the diffusers folder `dir` instead of the model's own: an `AutoencoderKL` (a
    /// fine-tuned VAE) replaces it; a TAESD (`AutoencoderTiny`) decodes and encodes in its place, as in a
    /// diffusers pipeline given `vae=AutoencoderTiny(...)`, and decodes the previews. Returns the class.
    pub fn load_vae(&mut self, dir: &std::path::Path) -> Result<&'static str> {
        let config = dir.join("config.json");
        let class = crate::pipeline::read_json(&config)?["_class_name"].as_str().unwrap_or("AutoencoderKL").to_string();
        match class.as_str() {
            "AutoencoderTiny" => {
                self.tiny_vae = Some(AutoencoderTiny::load(&self.gpu, dir)?);
                Ok("AutoencoderTiny")
            }
            "AutoencoderKL" => {
                self.vae = AutoencoderKL::load(&self.gpu, dir, None)?;
                self.tiny_vae = None;
                Ok("AutoencoderKL")
            }
            other => Err(Error::Config {
                file: config.display().to_string(),
                msg: format!("a {other} is not a VAE wgsd can use (AutoencoderKL or AutoencoderTiny)"),
            }),
        }
    }
}
