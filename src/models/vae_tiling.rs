//! The host side of diffusers' `AutoencoderKL.enable_tiling()`: where the tiles are, how the decoded (or
//! encoded) tiles are blended and cropped back into one tensor, and when tiling is worth it. Nothing here
//! touches the GPU; `pipeline::vae` runs the tiles.
//!
//! diffusers' scheme, per axis: input tiles of `tile` rows start every `⌊tile · (1 − overlap)⌋` rows (the
//! last ones may be shorter); each tile's output is blended linearly over `⌊tile_out · overlap⌋` rows with
//! the tile above and the tile to its left (already blended: the blend runs in place, in raster order),
//! then only its first `tile_out − blend` rows and columns are kept.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::graph::op::DeviceLimits;
use crate::kernels::conv2d::{Conv2dOpts, ConvShape};
use crate::kernels::winograd;
use crate::models::config::VaeConfig;
use crate::tensor::DType;

/// Whether the VAE decodes and encodes in tiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VaeTiling {
    /// Tile whenever the input is larger than one tile (diffusers after `enable_tiling()`).
    On,
    /// Never tile (diffusers' default).
    Off,
    /// Tile only where the untiled activations would not fit (see [`VaeTiling::tile_decode`]); sizes up to
    /// one tile are never tiled, so small images come out exactly as untiled.
    #[default]
    Auto,
}

impl FromStr for VaeTiling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "on" => Ok(VaeTiling::On),
            "off" => Ok(VaeTiling::Off),
            "auto" => Ok(VaeTiling::Auto),
            other => Err(Error::usage(format!("VAE tiling '{other}': expected on, off or auto"))),
        }
    }
}

impl fmt::Display for VaeTiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VaeTiling::On => "on",
            VaeTiling::Off => "off",
            VaeTiling::Auto => "auto",
        })
    }
}

/// Live intermediates of a VAE pass as a multiple of its largest activation: a resnet holds its input, the
/// normalised input and the conv output at once. The planner measures 2.5× for the SD 1.5 decoder at 512²
/// (640 MiB live, packed into 768 MiB) and for the tiny test VAE; tests/vae_tiling.rs checks the bound.
pub const LIVE_TENSORS: u64 = 3;

/// `Auto` tiles when the untiled pass would keep more activation bytes than this alive at once. wgpu does not
/// report a device's memory size; 2 GiB of activations (beside ~330 MB of VAE weights) fits the GPUs SD runs
/// on, and a real-size tile (512² for SD 1.x) needs about half of it.
pub const AUTO_ACTIVATION_BUDGET: u64 = 2 << 30;

/// The tile geometry of one VAE, named as in diffusers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileSizes {
    /// `tile_sample_min_size`: the config's `sample_size` (image pixels).
    pub sample: usize,
    /// `tile_latent_min_size`: `sample / 2^(blocks − 1)` (latent pixels).
    pub latent: usize,
    /// `tile_overlap_factor`.
    pub overlap: f64,
}

/// The tiles of one pass: input tiles as `(start, length)` per axis, and what is kept of their outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub rows: Vec<(usize, usize)>,
    pub cols: Vec<(usize, usize)>,
    /// Output rows (and columns) blended with the previous tile (`blend_extent`, before the min with the
    /// two tiles' sizes).
    pub blend: usize,
    /// Output rows (and columns) kept of each tile (`row_limit`).
    pub keep: usize,
}

impl Tiling {
    /// Input tile shapes `(rows, cols)` in first-use order, each once: one plan per shape.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for &(_, h) in &self.rows {
            for &(_, w) in &self.cols {
                if !out.contains(&(h, w)) {
                    out.push((h, w));
                }
            }
        }
        out
    }

    pub fn count(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
}

/// `range(0, len, step)` with the tile at each start cut to what is left of the axis.
pub fn tile_starts(len: usize, tile: usize, step: usize) -> Vec<(usize, usize)> {
    (0..len).step_by(step.max(1)).map(|s| (s, tile.min(len - s))).collect()
}

impl TileSizes {
    pub fn of(c: &VaeConfig) -> TileSizes {
        let sample = match &c.sample_size {
            crate::models::config::PerBlock::One(v) => *v,
            crate::models::config::PerBlock::Many(v) => v.first().copied().unwrap_or(32),
        };
        let down = 1usize << c.block_out_channels.len().saturating_sub(1);
        TileSizes { sample, latent: (sample as f64 / down as f64) as usize, overlap: 0.25 }
    }

    /// The latent-to-image scale of the decoder (and image-to-latent of the encoder).
    pub fn factor(&self) -> usize {
        (self.sample / self.latent.max(1)).max(1)
    }

    /// diffusers' `tiled_decode` for a latent of `h × w`.
    pub fn decode_tiling(&self, h: usize, w: usize) -> Tiling {
        let step = (self.latent as f64 * (1.0 - self.overlap)) as usize;
        let blend = (self.sample as f64 * self.overlap) as usize;
        Tiling { rows: tile_starts(h, self.latent, step), cols: tile_starts(w, self.latent, step), blend, keep: self.sample - blend }
    }

    /// diffusers' `tiled_encode` for an image of `h × w`.
    pub fn encode_tiling(&self, h: usize, w: usize) -> Tiling {
        let step = (self.sample as f64 * (1.0 - self.overlap)) as usize;
        let blend = (self.latent as f64 * self.overlap) as usize;
        Tiling { rows: tile_starts(h, self.sample, step), cols: tile_starts(w, self.sample, step), blend, keep: self.latent - blend }
    }

    /// diffusers tiles a decode only when the latent is larger than one tile on some side.
    pub fn decode_exceeds_tile(&self, h: usize, w: usize) -> bool {
        h > self.latent || w > self.latent
    }

    pub fn encode_exceeds_tile(&self, h: usize, w: usize) -> bool {
        h > self.sample || w > self.sample
    }
}

/// Activation memory of an untiled VAE pass, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivationEstimate {
    /// The largest single activation (it must fit one buffer).
    pub largest: u64,
    /// Estimated live intermediates at the peak: `largest × LIVE_TENSORS`.
    pub live: u64,
}

impl ActivationEstimate {
    fn from_largest(elements: u64) -> Self {
        let largest = elements * 4;
        ActivationEstimate { largest, live: largest * LIVE_TENSORS }
    }
}

/// Bytes the largest Winograd conv of the decoder at latent `h × w` adds on a device with `device`'s
/// limits (0 where its convs run direct, as on GPUs today): the 3×3 convs of up block i read `reversed[i
/// − 1]` or `reversed[i]` channels at `2^i` times the latent size (`conv_in` the latent channels).
pub fn decoder_winograd_bytes(c: &VaeConfig, h: usize, w: usize, device: &DeviceLimits) -> u64 {
    let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
    let mut convs = vec![(c.latent_channels, rev[0], h, w)];
    for i in 0..rev.len() {
        let cin = if i == 0 { rev[0] } else { rev[i - 1] };
        convs.extend([(cin, rev[i], h << i, w << i), (rev[i], rev[i], h << i, w << i)]);
    }
    largest_winograd_bytes(convs, device)
}

/// The encoder's counterpart of [`decoder_winograd_bytes`]: down block i's 3×3 convs at `2^−i` of the image
/// size, reading `channels[i − 1]` or `channels[i]` (`conv_in` the image channels).
pub fn encoder_winograd_bytes(c: &VaeConfig, h: usize, w: usize, device: &DeviceLimits) -> u64 {
    let ch = &c.block_out_channels;
    let mut convs = vec![(c.in_channels, ch[0], h, w)];
    for i in 0..ch.len() {
        let cin = if i == 0 { ch[0] } else { ch[i - 1] };
        convs.extend([(cin, ch[i], h >> i, w >> i), (ch[i], ch[i], h >> i, w >> i)]);
    }
    largest_winograd_bytes(convs, device)
}

/// The largest [`winograd::transient_bytes`] of single-image 3×3 convs `(cin, cout, h, w)`.
fn largest_winograd_bytes(convs: Vec<(usize, usize, usize, usize)>, device: &DeviceLimits) -> u64 {
    let o = Conv2dOpts::new(1, 1);
    convs
        .into_iter()
        .filter_map(|(cin, cout, hh, ww)| ConvShape::new(&[1, cin, hh, ww], &[cout, cin, 3, 3], &o))
        .map(|s| winograd::transient_bytes(&s, &o, DType::F32, device))
        .max()
        .unwrap_or(0)
}

/// The decoder at latent `h × w`: up block i works at `2^i` times the latent size with `reversed[i]`
/// channels (its first resnet reads `reversed[i − 1]`), and its upsampler doubles the size once more.
pub fn decoder_activations(c: &VaeConfig, h: usize, w: usize) -> ActivationEstimate {
    let rev: Vec<u64> = c.block_out_channels.iter().rev().map(|&v| v as u64).collect();
    let mut largest = 0u64;
    for i in 0..rev.len() {
        let area = (h as u64 * w as u64) << (2 * i);
        let cin = if i == 0 { rev[0] } else { rev[i - 1] };
        largest = largest.max(cin.max(rev[i]) * area);
        if i + 1 < rev.len() {
            largest = largest.max(rev[i] * area * 4);
        }
    }
    ActivationEstimate::from_largest(largest)
}

/// The encoder at image `h × w`: down block i works at `2^−i` of the image size with `channels[i]`
/// (its first resnet reads `channels[i − 1]`).
pub fn encoder_activations(c: &VaeConfig, h: usize, w: usize) -> ActivationEstimate {
    let ch: Vec<u64> = c.block_out_channels.iter().map(|&v| v as u64).collect();
    let mut largest = 0u64;
    for i in 0..ch.len() {
        let area = (h as u64 >> i) * (w as u64 >> i);
        let cin = if i == 0 { ch[0] } else { ch[i - 1] };
        largest = largest.max(cin.max(ch[i]) * area);
    }
    ActivationEstimate::from_largest(largest)
}

impl VaeTiling {
    fn decide(self, exceeds_tile: bool, untiled: ActivationEstimate, limits: &wgpu::Limits) -> bool {
        exceeds_tile
            && match self {
                VaeTiling::On => true,
                VaeTiling::Off => false,
                VaeTiling::Auto => untiled.largest > limits.max_buffer_size || untiled.live > AUTO_ACTIVATION_BUDGET,
            }
    }

    /// Whether a decode of latent `h × w` runs in tiles on a device with `limits` (`device`: its kernel
    /// choices, for the Winograd convs' transient memory).
    pub fn tile_decode(self, c: &VaeConfig, h: usize, w: usize, limits: &wgpu::Limits, device: &DeviceLimits) -> bool {
        let mut untiled = decoder_activations(c, h, w);
        untiled.live += decoder_winograd_bytes(c, h, w, device);
        self.decide(TileSizes::of(c).decode_exceeds_tile(h, w), untiled, limits)
    }

    /// Whether an encode of image `h × w` runs in tiles on a device with `limits` (`device` as for
    /// [`VaeTiling::tile_decode`]).
    pub fn tile_encode(self, c: &VaeConfig, h: usize, w: usize, limits: &wgpu::Limits, device: &DeviceLimits) -> bool {
        let mut untiled = encoder_activations(c, h, w);
        untiled.live += encoder_winograd_bytes(c, h, w, device);
        self.decide(TileSizes::of(c).encode_exceeds_tile(h, w), untiled, limits)
    }
}

/// One image's tensor `[C, H, W]` on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Tile {
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Tile> {
        if data.len() != channels * height * width {
            return Err(Error::usage(format!("tile of {channels}×{height}×{width} given {} values", data.len())));
        }
        Ok(Tile { channels, height, width, data })
    }

    /// Rows `[r0, r0 + h)` and columns `[c0, c0 + w)` of this tile.
    pub fn crop(&self, r0: usize, h: usize, c0: usize, w: usize) -> Tile {
        let mut data = Vec::with_capacity(self.channels * h * w);
        for c in 0..self.channels {
            for y in r0..r0 + h {
                let row = (c * self.height + y) * self.width;
                data.extend_from_slice(&self.data[row + c0..row + c0 + w]);
            }
        }
        Tile { channels: self.channels, height: h, width: w, data }
    }

    fn at(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.height + y) * self.width + x
    }
}

/// The two blend weights of row `y` of `extent`, rounded to f32 as PyTorch rounds a Python-float factor.
fn weights(y: usize, extent: usize) -> (f32, f32) {
    let t = y as f64 / extent as f64;
    ((1.0 - t) as f32, t as f32)
}

/// diffusers' `blend_v`: the first `extent` rows of `b` fade in from the last `extent` rows of `a` (the tile
/// above). `extent` is first cut to both tiles' heights.
pub fn blend_v(a: &Tile, b: &mut Tile, extent: usize) -> Result<()> {
    if a.width != b.width || a.channels != b.channels {
        return Err(Error::shape("blend_v", format!("tiles {}×{}×{} and {}×{}×{} differ in width or channels", a.channels, a.height, a.width, b.channels, b.height, b.width)));
    }
    let e = extent.min(a.height).min(b.height);
    for y in 0..e {
        let (wa, wb) = weights(y, e);
        for c in 0..b.channels {
            let (ia, ib) = (a.at(c, a.height - e + y, 0), b.at(c, y, 0));
            for x in 0..b.width {
                b.data[ib + x] = a.data[ia + x] * wa + b.data[ib + x] * wb;
            }
        }
    }
    Ok(())
}

/// diffusers' `blend_h`: the first `extent` columns of `b` fade in from the last `extent` columns of `a`
/// (the tile to the left).
pub fn blend_h(a: &Tile, b: &mut Tile, extent: usize) -> Result<()> {
    if a.height != b.height || a.channels != b.channels {
        return Err(Error::shape("blend_h", format!("tiles {}×{}×{} and {}×{}×{} differ in height or channels", a.channels, a.height, a.width, b.channels, b.height, b.width)));
    }
    let e = extent.min(a.width).min(b.width);
    for x in 0..e {
        let (wa, wb) = weights(x, e);
        for c in 0..b.channels {
            for y in 0..b.height {
                let (ia, ib) = (a.at(c, y, a.width - e + x), b.at(c, y, x));
                b.data[ib] = a.data[ia] * wa + b.data[ib] * wb;
            }
        }
    }
    Ok(())
}

/// Blends a grid of tile outputs (`grid[row][col]`) in place in raster order, each with the tile above and
/// then the tile to its left, keeps the first `keep` rows and columns of each and joins them.
pub fn blend_tiles(mut grid: Vec<Vec<Tile>>, blend: usize, keep: usize) -> Result<Tile> {
    let (rows, cols) = (grid.len(), grid.first().map_or(0, Vec::len));
    if rows == 0 || cols == 0 || grid.iter().any(|r| r.len() != cols) {
        return Err(Error::usage("blend_tiles needs a full, non-empty grid of tiles"));
    }
    for i in 0..rows {
        for j in 0..cols {
            if i > 0 {
                let (above, rest) = grid.split_at_mut(i);
                blend_v(&above[i - 1][j], &mut rest[0][j], blend)?;
            }
            if j > 0 {
                let (left, rest) = grid[i].split_at_mut(j);
                blend_h(&left[j - 1], &mut rest[0], blend)?;
            }
        }
    }
    let heights: Vec<usize> = grid.iter().map(|r| r[0].height.min(keep)).collect();
    let widths: Vec<usize> = grid[0].iter().map(|t| t.width.min(keep)).collect();
    let (h, w, ch) = (heights.iter().sum::<usize>(), widths.iter().sum::<usize>(), grid[0][0].channels);
    let mut out = vec![0.0f32; ch * h * w];
    let mut y0 = 0;
    for (i, row) in grid.iter().enumerate() {
        let mut x0 = 0;
        for (j, t) in row.iter().enumerate() {
            for c in 0..ch {
                for y in 0..heights[i] {
                    let src = t.at(c, y, 0);
                    let dst = (c * h + y0 + y) * w + x0;
                    out[dst..dst + widths[j]].copy_from_slice(&t.data[src..src + widths[j]]);
                }
            }
            x0 += widths[j];
        }
        y0 += heights[i];
    }
    Tile::new(ch, h, w, out)
}
