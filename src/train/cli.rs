//! The command line of `wgsd train dreambooth`: flags named as in diffusers' DreamBooth scripts (dashes for
//! underscores), with their defaults unless a user would expect otherwise (noted per flag).

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::train::data::parse_interpolation;
use crate::train::dreambooth::DreamBoothOptions;
use crate::train::lr::LrSchedule;
use crate::train::optimizer::AdamWConfig;

#[derive(Args, Clone, Debug)]
pub struct DreamBoothArgs {
    /// Base model: a diffusers folder, a Hugging Face repo id, or a single-file .safetensors (with --config).
    #[arg(long)]
    pub model: String,
    /// For a single-file checkpoint: the diffusers folder or repo id giving its configs.
    #[arg(long)]
    pub config: Option<String>,
    /// Weight-file variant of the model folder (e.g. fp16).
    #[arg(long)]
    pub variant: Option<String>,
    /// Folder of 3–20 photos of the subject (PNG, JPEG, WebP); `photo.txt` beside `photo.png` is its caption.
    #[arg(long)]
    pub instance_dir: PathBuf,
    /// Prompt naming the subject, e.g. "a photo of sks dog".
    #[arg(long)]
    pub instance_prompt: String,
    /// Where the trained LoRA (or model), checkpoints and validation images go.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the outputs of an earlier run in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Full fine-tuning instead of LoRA.
    #[arg(long)]
    pub full: bool,
    /// Also train the text encoder (LoRA on its attention projections, or all of it with --full).
    #[arg(long)]
    pub train_text_encoder: bool,
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    pub rank: usize,
    /// LoRA alpha (scale alpha/rank); default: the rank.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// UNet module-name suffixes that get a LoRA (default: to_q,to_k,to_v,to_out.0; add e.g. proj_in,proj_out,
    /// ff.net.0.proj,ff.net.2 for the transformer blocks' other linears, conv1,conv2 for LoCon 3×3 convs).
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Prior preservation: also train on generated images of the class, weighted by --prior-loss-weight.
    #[arg(long)]
    pub with_prior_preservation: bool,
    /// Prompt of the class, e.g. "a photo of a dog".
    #[arg(long)]
    pub class_prompt: Option<String>,
    /// Folder of class images; missing ones are generated there with --class-prompt.
    #[arg(long)]
    pub class_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub num_class_images: usize,
    #[arg(long, default_value_t = 1.0)]
    pub prior_loss_weight: f64,
    /// Sampling steps for generated class images.
    #[arg(long, default_value_t = 50)]
    pub class_steps: usize,
    /// Training resolution (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    pub resolution: usize,
    /// Centre crop (default: a random crop, as the scripts).
    #[arg(long)]
    pub center_crop: bool,
    /// Mirror images at random.
    #[arg(long)]
    pub random_flip: bool,
    /// Resampling: lanczos (the LoRA script's default), bilinear (the full script's), bicubic.
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Instance images per step (and as many class images with prior preservation).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Optimizer steps (the scripts' max_train_steps; their READMEs use 400–800).
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
    /// Learning rate (default 1e-4 for LoRA, as diffusers' LoRA README; 5e-6 for --full).
    #[arg(long)]
    pub lr: Option<f64>,
    /// constant, constant_with_warmup, linear or cosine.
    #[arg(long, default_value = "constant")]
    pub lr_scheduler: String,
    #[arg(long, default_value_t = 0)]
    pub lr_warmup_steps: usize,
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    pub adam_epsilon: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub adam_weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Min-SNR loss weighting γ (5 is the paper's choice).
    #[arg(long)]
    pub snr_gamma: Option<f64>,
    /// Recompute resnets and transformer blocks in the backward pass: far less memory, ~30% more time.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a checkpoint every N steps (Ctrl-C always writes one).
    #[arg(long)]
    pub checkpointing_steps: Option<usize>,
    /// Continue from `latest` (the newest checkpoint in --out) or a checkpoint folder.
    #[arg(long)]
    pub resume: Option<String>,
    /// Render this prompt at step 0, every --validation-steps and at the end (into <out>/validation/).
    #[arg(long)]
    pub validation_prompt: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub validation_steps: usize,
    #[arg(long, default_value_t = 2)]
    pub num_validation_images: usize,
    /// With --full: also write an LDM single-file checkpoint (<out>/dreambooth.safetensors) for A1111 and ComfyUI.
    #[arg(long)]
    pub save_single_file: bool,
}

impl DreamBoothArgs {
    pub fn into_options(self) -> Result<DreamBoothOptions> {
        let interpolation = self.interpolation.as_deref().map(parse_interpolation).transpose()?;
        let lora_targets = if self.lora_targets.is_empty() {
            ["to_q", "to_k", "to_v", "to_out.0"].map(String::from).to_vec()
        } else {
            self.lora_targets
        };
        Ok(DreamBoothOptions {
            model: self.model,
            config: self.config,
            variant: self.variant,
            instance_dir: self.instance_dir,
            instance_prompt: self.instance_prompt,
            prior_preservation: self.with_prior_preservation,
            class_dir: self.class_dir,
            class_prompt: self.class_prompt,
            num_class_images: self.num_class_images,
            prior_loss_weight: self.prior_loss_weight,
            class_steps: self.class_steps,
            out: self.out,
            overwrite: self.overwrite,
            full: self.full,
            train_text_encoder: self.train_text_encoder,
            rank: self.rank,
            alpha: self.alpha.unwrap_or(self.rank as f64),
            lora_targets,
            resolution: self.resolution,
            center_crop: self.center_crop,
            random_flip: self.random_flip,
            interpolation,
            batch: self.batch,
            grad_accum: self.grad_accum,
            steps: self.steps,
            lr: self.lr,
            lr_schedule: LrSchedule::parse(&self.lr_scheduler)?,
            lr_warmup_steps: self.lr_warmup_steps,
            adam: AdamWConfig { beta1: self.adam_beta1, beta2: self.adam_beta2, eps: self.adam_epsilon, weight_decay: self.adam_weight_decay },
            max_grad_norm: self.max_grad_norm,
            snr_gamma: self.snr_gamma,
            gradient_checkpointing: self.gradient_checkpointing,
            seed: self.seed,
            checkpointing_steps: self.checkpointing_steps,
            resume: self.resume,
            validation_prompt: self.validation_prompt,
            validation_steps: self.validation_steps,
            num_validation_images: self.num_validation_images,
            save_single_file: self.save_single_file,
        })
    }
}
