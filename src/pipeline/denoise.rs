//! The denoising run every mode shares, in the order of operations (and of random draws) of diffusers'
//! `StableDiffusion{,Img2Img,Inpaint,Depth2Img}Pipeline.__call__`:
//!
//! 1. prompt embeddings, unconditional first (`[uncond; cond]`);
//! 2. timesteps — all of them, or for an init image the last `⌊steps · strength⌋`;
//! 3. starting latents — noise × `init_noise_sigma`, or the encoded image noised to the first timestep;
//! 4. extra UNet channels — 9-channel inpainting: the mask on the latent grid and the masked image's
//!    latents; depth2img: the depth map;
//! 5. each step: the UNet on `[latents; latents]` scaled by the scheduler with the extra channels
//!    appended, `uncond + guidance · (cond − uncond)`, the scheduler step — and for inpainting with a
//!    plain 4-channel UNet, the known region put back (the image noised to the next timestep);
//! 6. latents / `scaling_factor` → VAE decode → `(x / 2 + 0.5).clamp(0, 1)`.

use super::depth2img::depth_condition;
use super::inputs::{check_depth, check_mask, DepthMap, InitImage, Mask};
use super::txt2img::Txt2ImgRequest;
use super::{Network, PooledUNet, StableDiffusion, UNetKey, UNetRunner};
use crate::error::{Error, Result};
use crate::prompt::encode::PromptSet;
use crate::schedulers::{NoiseSource, Scheduler};

/// Where the depth channel of depth2img comes from.
#[derive(Clone, Debug)]
pub enum DepthSource {
    Given(DepthMap),
    /// Predicted from the init image by the model folder's `depth_estimator`.
    Estimated,
}

/// What a run is conditioned on besides the prompts.
#[derive(Clone, Debug)]
pub enum Condition {
    Text,
    /// `strength` in (0, 1]: how much of the schedule to run (1 = start from pure noise).
    Img2Img { image: InitImage, strength: f64 },
    /// 9-channel inpainting UNets take the mask as input; 4-channel ones blend the kept region back each step.
    Inpaint { image: InitImage, mask: Mask, strength: f64 },
    Depth { image: InitImage, depth: DepthSource, strength: f64 },
}

impl Condition {
    pub fn name(&self) -> &'static str {
        match self {
            Condition::Text => "txt2img",
            Condition::Img2Img { .. } => "img2img",
            Condition::Inpaint { .. } => "inpaint",
            Condition::Depth { .. } => "depth2img",
        }
    }

    fn image_and_strength(&self) -> Option<(&InitImage, f64)> {
        match self {
            Condition::Text => None,
            Condition::Img2Img { image, strength } | Condition::Inpaint { image, strength, .. } | Condition::Depth { image, strength, .. } => {
                Some((image, *strength))
            }
        }
    }
}

/// Generated images (NHWC float in [0, 1]) and what happened on the way.
pub struct GenerationOutput {
    pub images: Vec<f32>,
    pub count: usize,
    pub width: usize,
    pub height: usize,
    /// Per prompt: tokens cut to fit the 77-token window.
    pub truncated: Vec<usize>,
    /// Things the user should know about how the prompts were read (printed by the CLI).
    pub notes: Vec<String>,
    /// Seconds: text encoding, each denoising step, VAE decode.
    pub t_text: f64,
    pub t_steps: Vec<f64>,
    pub t_decode: f64,
}

/// A guidance scale far outside what anyone uses (A1111's slider ends at 30) is the likelier cause of overflow.
fn cfg_hint(req: &Txt2ImgRequest) -> String {
    if req.guidance_scale.abs() > 1e3 {
        format!("; --cfg-scale {:e} is extreme (A1111 allows up to 30)", req.guidance_scale)
    } else {
        String::new()
    }
}

fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// Stops the run with `why()` when `values` hold NaN or ±inf, so no black or noise image is saved as if it
/// were a result.
fn check_finite(values: &[f32], why: impl FnOnce() -> String) -> Result<()> {
    if all_finite(values) {
        Ok(())
    } else {
        Err(Error::Numeric(why()))
    }
}

/// Checks the condition against the request and the UNet it will run on.
fn check_condition(req: &Txt2ImgRequest, cond: &Condition, unet_in: usize, latent: usize) -> Result<()> {
    let wanted = match cond {
        Condition::Inpaint { .. } => vec![latent, 2 * latent + 1],
        Condition::Depth { .. } => vec![latent + 1],
        _ => vec![latent],
    };
    if !wanted.contains(&unet_in) {
        let needs = match cond {
            Condition::Inpaint { .. } => format!("a UNet with {latent} or {} input channels", 2 * latent + 1),
            Condition::Depth { .. } => format!("a depth model (a UNet with {} input channels)", latent + 1),
            _ => format!("a UNet with {latent} input channels"),
        };
        let hint = match unet_in {
            n if n == 2 * latent + 1 => ": it is an inpainting model, use inpaint",
            n if n == latent + 1 => ": it is a depth model, use depth2img",
            _ => "",
        };
        return Err(Error::usage(format!("{} needs {needs}; this model's UNet takes {unet_in}{hint}", cond.name())));
    }
    if let Some((image, strength)) = cond.image_and_strength() {
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(Error::usage(format!("strength must be in (0, 1], got {strength}")));
        }
        if (image.width, image.height) != (req.width, req.height) {
            return Err(Error::usage(format!(
                "the init image is {}x{} but {}x{} was requested",
                image.width, image.height, req.width, req.height
            )));
        }
    }
    match cond {
        Condition::Inpaint { image, mask, .. } => check_mask(image, mask, "the mask"),
        Condition::Depth { image, depth: DepthSource::Given(d), .. } => check_depth(image, d, "the depth map"),
        _ => Ok(()),
    }
}

impl StableDiffusion {
    /// Runs one generation. `progress(step, total)` is called after every scheduler step.
    pub fn generate(
        &self,
        req: &Txt2ImgRequest,
        cond: &Condition,
        scheduler: &mut dyn Scheduler,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GenerationOutput> {
        self.generate_until(req, cond, scheduler, noise, progress, &|| false)
    }

    /// [`StableDiffusion::generate`] that ends the denoising early when `stop()` turns true after a step
    /// (A1111's interrupt/skip): the latents reached so far are decoded, so the caller still gets images.
    pub fn generate_until(
        &self,
        req: &Txt2ImgRequest,
        cond: &Condition,
        scheduler: &mut dyn Scheduler,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(usize, usize),
        stop: &dyn Fn() -> bool,
    ) -> Result<GenerationOutput> {
        req.validate()?;
        let latent_ch = self.unet.config.out_channels;
        let unet_in = self.unet.config.in_channels;
        check_condition(req, cond, unet_in, latent_ch)?;
        let (h, w) = (req.height / 8, req.width / 8);
        let n = req.prompts.len() * req.images_per_prompt;
        let cfg = req.guidance_scale > 1.0;
        let t0 = std::time::Instant::now();

        // 1. Embeddings, each prompt repeated images_per_prompt times.
        let context = self.prompt_context(req, cfg)?;
        let t_text = t0.elapsed().as_secs_f64();

        // depth2img estimates depth before anything draws noise.
        let depth = match cond {
            Condition::Depth { depth: DepthSource::Given(d), .. } => Some(d.clone()),
            Condition::Depth { image, depth: DepthSource::Estimated, .. } => Some(self.estimate_depth(image)?),
            _ => None,
        };

        // 2. Timesteps.
        let start = match cond.image_and_strength() {
            None => {
                scheduler.set_timesteps(req.steps)?;
                0
            }
            Some((_, strength)) => scheduler.set_timesteps_img2img(req.steps, strength)?,
        };
        let timesteps = scheduler.timesteps().to_vec();
        // diffusers refuses a run whose ⌊steps · strength⌋ is 0 (PNDM's repeated timestep does not count).
        if start >= timesteps.len() || start / scheduler.order() >= scheduler.num_inference_steps() {
            return Err(Error::usage(format!(
                "strength × steps leaves no step to run ({} steps): raise the strength or the steps",
                req.steps
            )));
        }

        // 3. Starting latents (and the clean image latents the 4-channel inpainting blend needs).
        let one = latent_ch * h * w;
        let latent_len = n * one;
        let legacy_inpaint = matches!(cond, Condition::Inpaint { .. }) && unet_in == latent_ch;
        let mut image_latents = Vec::new();
        let noise0;
        let mut latents = match cond.image_and_strength() {
            None => {
                noise0 = noise.randn(latent_len)?;
                let sigma = scheduler.init_noise_sigma();
                noise0.iter().map(|v| v * sigma).collect::<Vec<f32>>()
            }
            Some((image, strength)) => {
                let from_noise = strength == 1.0 && matches!(cond, Condition::Inpaint { .. });
                if !from_noise || legacy_inpaint {
                    image_latents = self.encode_image(image, noise)?.repeat(n);
                }
                noise0 = noise.randn(latent_len)?;
                if from_noise {
                    let sigma = scheduler.init_noise_sigma();
                    noise0.iter().map(|v| v * sigma).collect()
                } else {
                    scheduler.add_noise(&image_latents, &noise0, start)
                }
            }
        };

        // 4. Extra UNet channels, the same for every image: [extra, h, w].
        let mut extra = Vec::new();
        let mut latent_mask = Vec::new();
        if let Condition::Inpaint { image, mask, .. } = cond {
            latent_mask = mask.to_latent_grid(h, w);
            // diffusers encodes the masked image even for 4-channel UNets (one posterior draw).
            let masked = self.encode_image(&image.masked(mask), noise)?;
            if !legacy_inpaint {
                extra.extend_from_slice(&latent_mask);
                extra.extend_from_slice(&masked);
            }
        }
        if let Some(d) = &depth {
            extra = depth_condition(d, h, w)?;
        }
        let extra_ch = extra.len() / (h * w);
        debug_assert_eq!(latent_ch + extra_ch, unet_in);

        // 5. Denoising loop: one UNet plan, re-run every step.
        // The UNet's pipelines are created while its weights upload (the cond batch's shape: a split run's
        // uncond plan differs only in its context length).
        let joint = context.uncond.is_some() && context.uncond_len == context.cond_len && !self.separate_guidance_batches;
        let batch = if joint { 2 * n } else { n };
        let context_shape = [batch, context.cond_len, self.text_encoder.config.hidden_size];
        self.bring_in_preparing(Network::UNet, || Ok(UNetRunner::graph(self, [n, unet_in, h, w], context_shape)?.0))?;
        let unet = GuidedUNet::new(self, n, [unet_in, h, w], &context, self.separate_guidance_batches)?;
        let mut t_steps = Vec::new();
        let total = timesteps.len() - start;
        for (i, &t) in timesteps.iter().enumerate().skip(start) {
            let ts = std::time::Instant::now();
            let scaled = scheduler.scale_model_input(&latents, i);
            let mut input = Vec::with_capacity(n * unet_in * h * w);
            for item in scaled.chunks(one) {
                input.extend_from_slice(item);
                input.extend_from_slice(&extra);
            }
            let pred = unet.run(&input, t as f32)?;
            let unet_ok = all_finite(&pred);
            let guided: Vec<f32> = if cfg {
                let (u, c) = pred.split_at(latent_len);
                u.iter().zip(c).map(|(u, c)| u + req.guidance_scale * (c - u)).collect()
            } else {
                pred
            };
            latents = scheduler.step(&guided, i, &latents, noise)?;
            check_finite(&latents, || {
                let step = i + 1 - start;
                let cause = if !unet_ok {
                    "the UNet's prediction is not finite: a broken UNet weight file (NaN/inf weights), or f16 overflow".to_string()
                } else if !all_finite(&guided) {
                    "classifier-free guidance overflowed".to_string()
                } else {
                    "the scheduler produced it: check its config (betas, sigmas)".to_string()
                };
                format!("the latents became NaN or infinite at step {step} of {total}: {cause}{}", cfg_hint(req))
            })?;
            if legacy_inpaint {
                // Keep the unmasked region: the clean image latents noised to the next timestep.
                let known = if i + 1 < timesteps.len() { scheduler.add_noise(&image_latents, &noise0, i + 1) } else { image_latents.clone() };
                for (j, l) in latents.iter_mut().enumerate() {
                    let m = latent_mask[j % (h * w)];
                    *l = (1.0 - m) * known[j] + m * *l;
                }
            }
            t_steps.push(ts.elapsed().as_secs_f64());
            progress(i + 1 - start, total);
            if let Some(p) = &self.preview {
                let done = i + 1 - start;
                if p.every > 0 && done % p.every == 0 && done < total {
                    let scale = self.vae.config.scaling_factor as f32;
                    let scaled: Vec<f32> = latents.iter().map(|v| v / scale).collect();
                    (p.sink)(&self.decode_latents(&scaled, [n, latent_ch, h, w])?, done)?;
                }
            }
            if stop() {
                break;
            }
        }

        // The UNet's plans hold its weights: drop them (or put them back for the next run, when the
        // weights stay on the GPU) before the weights leave the GPU.
        drop(unet);
        self.send_out(Network::UNet)?;

        // 6. Decode.
        let td = std::time::Instant::now();
        let scale = self.vae.config.scaling_factor as f32;
        let scaled: Vec<f32> = latents.iter().map(|v| v / scale).collect();
        let images = self.decode_latents(&scaled, [n, latent_ch, h, w])?;
        check_finite(&images, || {
            format!(
                "the VAE decode produced NaN or infinite pixels from finite latents: a broken VAE weight file, or f16 overflow in the VAE (decode it in f32){}",
                cfg_hint(req)
            )
        })?;
        Ok(GenerationOutput {
            images,
            count: n,
            width: req.width,
            height: req.height,
            truncated: context.truncated,
            notes: context.notes,
            t_text,
            t_steps,
            t_decode: td.elapsed().as_secs_f64(),
        })
    }

    /// The text conditioning of a run: prompts and (with guidance) negative prompts, each prompt repeated
    /// `images_per_prompt` times. diffusers applies CLIP skip to the prompt only; A1111 syntax applies it
    /// to the negative prompt too, as A1111 does. Brings the text encoder in for the encoding and sends it
    /// out again (under `--low-vram`).
    fn prompt_context(&self, req: &Txt2ImgRequest, cfg: bool) -> Result<PromptContext> {
        let repeat = |v: &[String]| -> Vec<String> {
            v.iter().flat_map(|p| std::iter::repeat_n(p.clone(), req.images_per_prompt)).collect()
        };
        let len = self.tokenizer.max_len;
        let text_error = || "the text encoder's output is NaN or infinite: a broken text-encoder weight file (NaN/inf weights), or an embedding with huge values".to_string();
        let cond_chunks = self.chunk_prompts(&repeat(&req.prompts))?;
        let uncond_chunks = if cfg {
            let neg = if req.negative_prompts.is_empty() { vec![String::new(); req.prompts.len()] } else { req.negative_prompts.clone() };
            Some(self.chunk_prompts(&repeat(&neg))?)
        } else {
            None
        };
        let uncond_skip = if self.prompt.syntax == crate::prompt::PromptSyntax::A1111 { req.clip_skip } else { 0 };
        let mut sets = vec![PromptSet { prompts: &cond_chunks, skip: req.clip_skip, min_chunks: 1 }];
        if let Some(u) = &uncond_chunks {
            sets.push(PromptSet { prompts: u, skip: uncond_skip, min_chunks: 1 });
        }
        // The text encoder comes in (under --low-vram) while the pipelines of its first run are made: its
        // graph follows from the token ids alone.
        let mut encoded = self.with_network_preparing(Network::TextEncoder, || self.text_graph(&sets), || self.encode_sets(&sets))?.into_iter();
        let cond = encoded.next().ok_or_else(|| Error::usage("no prompt encoded"))?;
        let uncond = encoded.next();
        check_finite(&cond.context, text_error)?;
        if let Some(u) = &uncond {
            check_finite(&u.context, text_error)?;
        }
        let mut notes = Vec::new();
        let not_rescaled = cond.not_rescaled() + uncond.as_ref().map_or(0, |u| u.not_rescaled());
        if not_rescaled > 0 {
            notes.push(format!(
                "{not_rescaled} weighted prompt chunk(s) were not rescaled to their mean: the text encoder's output has mean 0 \
                 there (A1111 would produce NaN); the weights are applied as they are"
            ));
        }
        if let Some(u) = &uncond {
            if let Some(&cut) = u.truncated.iter().max().filter(|&&c| c > 0) {
                notes.push(format!(
                    "the negative prompt is longer than CLIP's 77 tokens; {cut} token(s) at the end were ignored (--prompt-syntax a1111 reads prompts of any length)"
                ));
            }
            if u.chunks != cond.chunks {
                notes.push(format!(
                    "the prompt is {} chunk(s) of 75 tokens and the negative prompt {}: the UNet runs them as separate batches, as A1111 does by default",
                    cond.chunks, u.chunks
                ));
            }
        }
        Ok(PromptContext {
            truncated: cond.truncated.clone(),
            cond_len: cond.chunks * len,
            cond: cond.context,
            uncond_len: uncond.as_ref().map_or(0, |u| u.chunks * len),
            uncond: uncond.map(|u| u.context),
            notes,
        })
    }
}

/// The text conditioning of a run: `[n, 77·k, D]` for the prompts and, with guidance, the negative prompts.
struct PromptContext {
    cond: Vec<f32>,
    cond_len: usize,
    uncond: Option<Vec<f32>>,
    uncond_len: usize,
    truncated: Vec<usize>,
    notes: Vec<String>,
}

/// The UNet for a run: without guidance one batch of prompts; with it one batch `[uncond; cond]` when both
/// contexts have the same length, else two batches (A1111's default when the prompt and the negative prompt
/// need different numbers of chunks: padding the shorter with empty chunks would change the image).
enum GuidedUNet<'a> {
    Unguided(PooledUNet<'a>),
    Joint(PooledUNet<'a>),
    Split { uncond: PooledUNet<'a>, cond: PooledUNet<'a> },
}

impl<'a> GuidedUNet<'a> {
    /// Plans for `n` latents of `[c, h, w]` (kept ones of the same shapes when `sd` has them);
    /// `force_split` runs two batches even when the lengths agree.
    fn new(sd: &'a StableDiffusion, n: usize, chw: [usize; 3], ctx: &PromptContext, force_split: bool) -> Result<Self> {
        let d = sd.text_encoder.config.hidden_size;
        let [c, h, w] = chw;
        // The sample holds the n latents once; a joint batch's context repeats them for uncond and cond.
        let key = |batch: usize, len: usize, slot: usize| UNetKey { sample: [n, c, h, w], context: [batch, len, d], slot };
        Ok(match &ctx.uncond {
            None => GuidedUNet::Unguided(sd.unet_runner(key(n, ctx.cond_len, 0), &ctx.cond)?),
            Some(u) if ctx.uncond_len == ctx.cond_len && !force_split => {
                let both = [u.as_slice(), ctx.cond.as_slice()].concat();
                GuidedUNet::Joint(sd.unet_runner(key(2 * n, ctx.cond_len, 0), &both)?)
            }
            Some(u) => GuidedUNet::Split {
                uncond: sd.unet_runner(key(n, ctx.uncond_len, 0), u)?,
                cond: sd.unet_runner(key(n, ctx.cond_len, 1), &ctx.cond)?,
            },
        })
    }

    /// Noise predictions for `input` (`n` items): `[uncond; cond]` with guidance, else `cond`.
    fn run(&self, input: &[f32], t: f32) -> Result<Vec<f32>> {
        match self {
            GuidedUNet::Unguided(u) => u.run(input, t),
            GuidedUNet::Joint(u) => u.run(input, t),
            GuidedUNet::Split { uncond, cond } => {
                let mut out = uncond.run(input, t)?;
                out.extend(cond.run(input, t)?);
                Ok(out)
            }
        }
    }
}
