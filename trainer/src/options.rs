//! The options of `fira train`: command-line flags over an optional `--config` JSON file over
//! the defaults, resolved into one [`TrainOptions`] that is written into the run directory.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::data::rows::RowPacking;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Burn's Flex CPU backend (SIMD, threaded): the fastest CPU backend measured here.
    Flex,
    /// Burn's NdArray CPU backend (threaded).
    Ndarray,
    /// WGPU (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
    /// CUDA; needs the `cuda` cargo feature.
    Cuda,
}

/// The name a value takes on the command line (`fira-no-limiter`, `flex`, `f32`), also used for
/// run directory names.
pub fn value_name(value: impl ValueEnum) -> String {
    value.to_possible_value().expect("no variant is skipped").get_name().to_owned()
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    /// Pure bf16 parameters and activations, as the paper trains (CUDA only).
    Bf16,
}

/// `--optimizer`: the paper's methods and its Table 4 ablations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerChoice {
    /// Fira: low-rank Adam plus the scaled residual and the norm-growth limiter.
    Fira,
    /// GaLore: low-rank Adam only.
    Galore,
    /// Full-rank AdamW on every parameter.
    Adamw,
    /// Fira with one scaling factor per matrix instead of per column.
    FiraMatrix,
    /// Fira without the norm-growth limiter.
    FiraNoLimiter,
    /// Fira without scaling (the residual gets factor 1).
    FiraNoScaling,
    /// Fira with global-norm gradient clipping instead of the limiter.
    FiraClip,
}

impl OptimizerChoice {
    /// The paper's learning rate for this method: 0.01 for the low-rank methods (all model
    /// sizes up to 1B), 0.001 for full-rank AdamW (GaLore's baseline).
    pub fn default_lr(self) -> f64 {
        match self {
            Self::Adamw => 1e-3,
            _ => 1e-2,
        }
    }
}

macro_rules! train_options {
    (
        required {
            $( $(#[doc = $doc:literal])* $(#[arg($($arg:tt)*)])? $field:ident : $ty:ty = $default:expr, )*
        }
        optional {
            $( $(#[doc = $odoc:literal])* $ofield:ident : $oty:ty, )*
        }
    ) => {
        /// `fira train`'s flags. Every one is optional: unset flags come from `--config`, then
        /// from the defaults shown.
        #[derive(Args, Clone, Debug, Default, Serialize)]
        pub struct TrainArgs {
            /// JSON file holding any of these options (by their long names, `-` or `_`);
            /// flags given on the command line override it.
            #[arg(long)]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            /// Continue the run in `--run-dir` from its latest checkpoint, with its saved options
            /// (flags given now override them, e.g. a larger `--steps`).
            #[arg(long)]
            #[serde(skip)]
            pub resume: bool,
            $(
                $(#[doc = $doc])*
                #[arg(long $(, $($arg)*)?)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
            $(
                $(#[doc = $odoc])*
                #[arg(long)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $ofield: Option<$oty>,
            )*
        }

        /// The resolved options of a run (`options.json` in its directory).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct TrainOptions {
            $( pub $field: $ty, )*
            $( pub $ofield: Option<$oty>, )*
        }

        impl Default for TrainOptions {
            fn default() -> Self {
                Self { $( $field: $default, )* $( $ofield: None, )* }
            }
        }
    };
}

train_options! {
    required {
    /// Compute backend [default: flex].
    backend: BackendChoice = BackendChoice::Flex,
    /// Model: a preset (9m, 20m, …, 7b; its vocabulary follows the tokenizer) or an HF/GaLore
    /// config.json (its vocab_size must match the tokenizer) [default: 9m].
    model: String = "9m".to_owned(),
    /// Optimizer [default: fira].
    optimizer: OptimizerChoice = OptimizerChoice::Fira,
    /// Rank of the projection [default: a quarter of the hidden size, the paper's 60M/1B ratio].
    rank: usize = 0,
    /// Steps between projector refreshes (T) [default: 200].
    update_proj_gap: usize = 200,
    /// Scale of the low-rank update (α) [default: 0.25].
    alpha: f64 = 0.25,
    /// Norm-growth limit of the limiter (γ) [default: 1.01].
    gamma: f64 = 1.01,
    /// Module-path patterns whose 2-D weights get the low-rank optimizer [default: attn,mlp].
    #[arg(value_delimiter = ',')]
    target_modules: Vec<String> = vec!["attn".to_owned(), "mlp".to_owned()],
    /// Peak learning rate [default: 0.01 for Fira/GaLore, 0.001 for AdamW].
    lr: f64 = 0.0,
    /// Fraction of the steps spent in linear warm-up [default: 0.1].
    warmup_ratio: f64 = 0.1,
    /// Final learning rate of the cosine decay, as a fraction of the peak [default: 0.1].
    min_lr_ratio: f64 = 0.1,
    /// Decoupled weight decay [default: 0].
    weight_decay: f64 = 0.0,
    /// Optimizer steps [default: 140 (the embedded corpus in under 5 minutes on 2 cores), or from --max-tokens].
    steps: usize = 0,
    /// Token budget instead of --steps (rounded up to whole steps).
    max_tokens: usize = 0,
    /// Rows per micro-batch [default: 16].
    batch_size: usize = 16,
    /// Micro-batches per optimizer step [default: 1].
    grad_accum: usize = 1,
    /// Train data-parallel on these devices (Burn's multi-device strategy): CUDA device or WGPU
    /// discrete-GPU indices, e.g. `0,1,2,3`. Each device takes --batch-size rows per
    /// micro-batch; their gradients are summed on the first device, where the optimizer and its
    /// state live. On the CPU backends every index is the one CPU (replicas that test the
    /// data-parallel path, no speed-up) [default: the backend's default device].
    #[arg(value_delimiter = ',')]
    devices: Vec<usize> = Vec::new(),
    /// Tokens per row [default: 256].
    seq_len: usize = 256,
    /// Clip the global gradient norm (all parameters, torch's clip_grad_norm_) to this; 0 = off
    /// [default: 0, or 1.0 with --optimizer fira-clip].
    clip_grad_norm: f64 = 0.0,
    /// Seed of the model initialisation and the data order [default: 42].
    seed: u64 = 42,
    /// Parameter dtype: f32, or bf16 as the paper (CUDA only; the SVD stays in f32) [default: f32].
    dtype: DType = DType::F32,
    /// Rows of validation data evaluated [default: 128].
    valid_rows: usize = 128,
    /// How documents become rows [default: pack].
    packing: RowPacking = RowPacking::Pack,
    /// Vocabulary of the trained BPE [default: 4096].
    vocab_size: usize = 4096,
    /// Validate every this many optimizer steps [default: 35].
    eval_every: usize = 35,
    /// Checkpoint every this many optimizer steps, a multiple of --eval-every [default: 70].
    checkpoint_every: usize = 70,
    /// Progress line every this many steps when stdout is not a terminal [default: 10].
    log_every: usize = 10,
    }
    optional {
        /// Training data: a .txt/.jsonl/.json.gz file, a directory or a glob (C4 shards)
        /// [default: the embedded Austen corpus].
        data: String,
        /// Validation data (same forms) [default: every 20th document of the training data, held out].
        valid_data: String,
        /// A tokenizer.json (e.g. T5's for C4) [default: a byte-level BPE trained on the data].
        tokenizer: PathBuf,
        /// Run directory: options, tokenizer, checkpoints, metrics, plot, final model
        /// [default: runs/<optimizer>-<model>-<seed>].
        run_dir: PathBuf,
    }
}

/// Merges `later` over `earlier` (JSON objects; `-` and `_` in keys are the same).
fn overlay(earlier: &mut serde_json::Map<String, serde_json::Value>, later: serde_json::Value) {
    if let serde_json::Value::Object(map) = later {
        for (key, value) in map {
            earlier.insert(key.replace('-', "_"), value);
        }
    }
}

impl TrainOptions {
    /// `base` (defaults, or a resumed run's options) overlaid with `--config` and then the flags.
    pub fn resolve(base: &TrainOptions, args: &TrainArgs) -> anyhow::Result<Self> {
        let mut merged = match serde_json::to_value(base)? {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("options serialise to an object"),
        };
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?;
            let file: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--config {}: not JSON: {e}", path.display()))?;
            if !file.is_object() {
                anyhow::bail!("--config {}: expected a JSON object of options", path.display());
            }
            overlay(&mut merged, file);
        }
        overlay(&mut merged, serde_json::to_value(args)?);
        let mut options: TrainOptions = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.as_ref().map_or("options".to_owned(), |p| p.display().to_string())))?;
        if options.lr == 0.0 {
            options.lr = options.optimizer.default_lr();
        }
        if options.clip_grad_norm == 0.0 && options.optimizer == OptimizerChoice::FiraClip {
            options.clip_grad_norm = 1.0;
        }
        Ok(options)
    }

    /// Optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        match (self.steps, self.max_tokens) {
            (0, 0) => 140,
            (0, tokens) => tokens.div_ceil(self.batch_size * self.grad_accum * self.seq_len),
            (steps, _) => steps,
        }
    }

    /// Checks what can be checked without the data or the model.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--eval-every", self.eval_every),
            ("--checkpoint-every", self.checkpoint_every),
            ("--update-proj-gap", self.update_proj_gap),
            ("--valid-rows", self.valid_rows),
            ("--log-every", self.log_every),
        ];
        for (flag, value) in positive {
            anyhow::ensure!(value > 0, "{flag} must be at least 1");
        }
        anyhow::ensure!(self.devices.iter().all(|&d| d <= usize::from(u16::MAX)), "--devices: device indices must be below 65536");
        anyhow::ensure!(self.seq_len >= 2, "--seq-len must be at least 2 (a row needs a target)");
        anyhow::ensure!(self.steps == 0 || self.max_tokens == 0, "give --steps or --max-tokens, not both");
        anyhow::ensure!(
            self.checkpoint_every.is_multiple_of(self.eval_every),
            "--checkpoint-every ({}) must be a multiple of --eval-every ({}): checkpoints are taken after a validation",
            self.checkpoint_every,
            self.eval_every
        );
        anyhow::ensure!(self.lr.is_finite() && self.lr > 0.0, "--lr must be a positive number");
        anyhow::ensure!((0.0..1.0).contains(&self.warmup_ratio), "--warmup-ratio must be in [0, 1)");
        anyhow::ensure!((0.0..=1.0).contains(&self.min_lr_ratio), "--min-lr-ratio must be in [0, 1]");
        anyhow::ensure!(self.clip_grad_norm >= 0.0 && self.clip_grad_norm.is_finite(), "--clip-grad-norm must be 0 (off) or positive");
        Ok(())
    }
}
