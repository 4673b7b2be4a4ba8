//! The options of `fira train`: command-line flags over an optional `--config` JSON file over
//! a base (the defaults, `fira compare`'s budget, or a resumed run's options), resolved into one
//! [`TrainOptions`] that is written into the run directory.
//!
//! Every option is declared once, in [`train_options!`], with its default: a value, or for the
//! options whose default depends on others (`--rank`, `--lr`, `--steps`, `--clip-grad-norm`, …)
//! "not given" (`None`) and the rule that [`TrainOptions`]' accessors apply. The help text of
//! each flag is generated from that value or rule, so the two cannot drift.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use llama_burn::{LlamaConfig, LoraConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::documents::DataFormat;
use crate::data::rows::{LossOn, RowLayout, RowPacking};

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
    /// Pure bf16 parameters, activations and optimizer state, as the paper trains (flex and cuda;
    /// not ndarray or wgpu).
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
    /// GaLore plus the raw residual G − PPᵀG, unscaled and unlimited (the paper's Eq. 8 ablation,
    /// Figure 2: it spikes at every projector refresh).
    GaloreAdd,
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
    /// Whether the optimizer projects the selected matrices (every choice but full-rank AdamW), so
    /// that a rank and projector refreshes mean something for its run.
    pub fn projects(self) -> bool {
        self != Self::Adamw
    }

    /// The paper's learning rate for this method: 0.01 for the low-rank methods (all model
    /// sizes up to 1B), 0.001 for full-rank AdamW (GaLore's baseline).
    pub fn default_lr(self) -> f64 {
        match self {
            Self::Adamw => 1e-3,
            _ => 1e-2,
        }
    }
}

/// How a default value reads in the help text: as it is written on the command line.
pub trait HelpValue {
    fn help_value(&self) -> String;
}

macro_rules! help_value_by_display {
    ($($ty:ty),*) => {$(
        impl HelpValue for $ty {
            fn help_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
help_value_by_display!(usize, u64, f64, String);

macro_rules! help_value_by_name {
    ($($ty:ty),*) => {$(
        impl HelpValue for $ty {
            fn help_value(&self) -> String {
                value_name(*self)
            }
        }
    )*};
}
help_value_by_name!(BackendChoice, DType, OptimizerChoice, RowPacking, DataFormat, LossOn);

impl<T: HelpValue> HelpValue for Vec<T> {
    fn help_value(&self) -> String {
        self.iter().map(HelpValue::help_value).collect::<Vec<_>>().join(",")
    }
}

impl HelpValue for PathBuf {
    fn help_value(&self) -> String {
        self.display().to_string()
    }
}

/// The flags of `flags` that were given (`(flag, given)` pairs), for a message that names them.
pub fn given_flags(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
    flags.iter().filter(|(_, given)| *given).map(|(flag, _)| *flag).collect()
}

/// A flag's help: its documentation and its default.
fn help_text(doc: &[&str], default: &str) -> String {
    let text: Vec<&str> = doc.iter().map(|line| line.trim()).collect();
    format!("{} [default: {default}]", text.join(" "))
}

/// `snake_case` option name → its flag (`--batch-size`).
fn flag(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// One option's value from JSON, the option named in the error.
fn parse_value<T: DeserializeOwned>(name: &str, value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| flag(name))
}

macro_rules! train_options {
    (
        defaults {
            $( $(#[doc = $doc:literal])+ $(#[arg($($arg:tt)*)])? $field:ident : $ty:ty = $default:expr, )*
        }
        rules {
            $( $(#[doc = $rdoc:literal])+ $(#[arg($($rarg:tt)*)])? $rfield:ident : $rty:ty => $rule:expr, )*
        }
    ) => {
        /// `fira train`'s flags. Every one is optional: unset flags come from `--config`, then
        /// from the base (the defaults shown).
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
                #[arg(long, help = help_text(&[$($doc),+], &<$ty as HelpValue>::help_value(&$default)) $(, $($arg)*)?)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
            $(
                #[arg(long, help = help_text(&[$($rdoc),+], &$rule) $(, $($rarg)*)?)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $rfield: Option<$rty>,
            )*
        }

        /// The resolved options of a run (`options.json` in its directory). An option whose
        /// default follows a rule is `None` when not given; its accessor applies the rule.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct TrainOptions {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
            $( $(#[doc = $rdoc])+ pub $rfield: Option<$rty>, )*
        }

        impl Default for TrainOptions {
            fn default() -> Self {
                Self { $( $field: $default, )* $( $rfield: None, )* }
            }
        }

        impl TrainOptions {
            /// Options from a JSON object of any of them; the option at fault is named.
            fn from_object(object: Map<String, Value>) -> anyhow::Result<Self> {
                let mut options = Self::default();
                for (name, value) in object {
                    match name.as_str() {
                        $( stringify!($field) => options.$field = parse_value(&name, value)?, )*
                        $( stringify!($rfield) => options.$rfield = parse_value(&name, value)?, )*
                        _ => anyhow::bail!("unknown option `{}`", flag(&name)),
                    }
                }
                Ok(options)
            }

            /// The help text of every flag with these options as its defaults (`fira compare`
            /// shows its own budget this way).
            pub fn help_texts(&self) -> Vec<(&'static str, String)> {
                vec![
                    $( (stringify!($field), help_text(&[$($doc),+], &self.$field.help_value())), )*
                    $( (stringify!($rfield), help_text(&[$($rdoc),+], &self.$rfield.as_ref().map_or_else(|| $rule, HelpValue::help_value))), )*
                ]
            }
        }
    };
}

/// `--model` when neither it nor `--init-from` is given.
pub const DEFAULT_MODEL: &str = "9m";
/// `--steps` when neither it nor `--max-tokens` is given: the embedded corpus in under 5 minutes
/// on 2 cores.
pub const DEFAULT_STEPS: usize = 140;
/// `--packing` of text data when not given: every position trains.
pub const DEFAULT_PACKING: RowPacking = RowPacking::Pack;
/// `--loss-on` of instruction data when not given.
pub const DEFAULT_LOSS_ON: LossOn = LossOn::Response;
/// `--clip-grad-norm` of `--optimizer fira-clip` when not given (the paper's Table 4).
pub const FIRA_CLIP_NORM: f64 = 1.0;

/// `--lora-alpha` per unit of `--lora-rank` when not given: the paper's α 64 at rank 32.
pub const LORA_ALPHA_PER_RANK: f64 = 2.0;
/// `--lora-dropout` when not given: LLM-Adapters' `lora_dropout`.
pub const DEFAULT_LORA_DROPOUT: f64 = 0.05;
/// `--lora-targets` when not given: the paper's fine-tuning (`ft_fira.sh`).
pub const DEFAULT_LORA_TARGETS: [&str; 5] = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"];

/// The default of `--rank` as the help texts state it (the rule is [`projection_rank`]'s).
pub fn rank_rule() -> String {
    "a quarter of the hidden size, the paper's 60M/1B ratio; with --lora-rank, half of it (the paper's 16 at LoRA rank 32)".to_owned()
}

fn lr_rule() -> String {
    format!("{} for Fira, GaLore and the ablations, {} for AdamW", OptimizerChoice::Fira.default_lr(), OptimizerChoice::Adamw.default_lr())
}

train_options! {
    defaults {
    /// Compute backend.
    backend: BackendChoice = BackendChoice::Flex,
    /// Optimizer.
    optimizer: OptimizerChoice = OptimizerChoice::Fira,
    /// Steps between projector refreshes (T).
    update_proj_gap: usize = 200,
    /// Scale of the low-rank update (α), positive.
    #[arg(allow_negative_numbers = true)]
    alpha: f64 = 0.25,
    /// Norm-growth limit of the limiter (γ), at least 1.
    #[arg(allow_negative_numbers = true)]
    gamma: f64 = 1.01,
    /// Module-path patterns whose 2-D weights get the low-rank optimizer.
    #[arg(value_delimiter = ',')]
    target_modules: Vec<String> = vec!["attn".to_owned(), "mlp".to_owned()],
    /// Fraction of the steps spent in linear warm-up.
    #[arg(allow_negative_numbers = true)]
    warmup_ratio: f64 = 0.1,
    /// Final learning rate of the cosine decay, as a fraction of the peak.
    #[arg(allow_negative_numbers = true)]
    min_lr_ratio: f64 = 0.1,
    /// Decoupled weight decay.
    #[arg(allow_negative_numbers = true)]
    weight_decay: f64 = 0.0,
    /// Rows per micro-batch.
    batch_size: usize = 16,
    /// Micro-batches per optimizer step (per node and device).
    grad_accum: usize = 1,
    /// Machines (node processes) training together, data parallel: start `fira train` on each
    /// with the same options, --run-dir, its --node-rank and the --coordinator; each takes every
    /// --nodes-th micro-batch of the one data stream and the step averages all nodes' gradients.
    nodes: usize = 1,
    /// Tokens per row.
    seq_len: usize = 256,
    /// Seed of the model initialisation and the data order.
    seed: u64 = 42,
    /// Parameter dtype: f32, or bf16 as the paper (flex and cuda; the SVD stays in f32).
    dtype: DType = DType::F32,
    /// Rows of validation data evaluated.
    valid_rows: usize = 128,
    /// What the files of --data and --valid-data hold.
    data_format: DataFormat = DataFormat::Text,
    /// Vocabulary of the trained BPE.
    vocab_size: usize = 4096,
    /// Validate every this many optimizer steps.
    eval_every: usize = 35,
    /// Checkpoint every this many optimizer steps, a multiple of --eval-every.
    checkpoint_every: usize = 70,
    /// Progress line every this many steps when stdout is not a terminal.
    log_every: usize = 10,
    /// Columns (rows, for a right projection) per matrix whose scaling factor
    /// --record-scaling-every records, drawn from --seed (the paper samples 100).
    scaling_columns: usize = 100,
    }
    rules {
    /// Model: a preset (9m, 20m, …, 7b; its vocabulary follows the tokenizer) or an HF/GaLore
    /// config.json (its vocab_size must match the tokenizer), with random weights from --seed.
    model: String => format!("{DEFAULT_MODEL}, or the model of --init-from"),
    /// Start from a trained model's weights, model config and tokenizer: a run directory of fira
    /// train (its latest checkpoint) or an HF model directory (config.json, model.safetensors or
    /// its shards, tokenizer.json). Fine-tunes all parameters; --model and --tokenizer conflict.
    init_from: PathBuf => "random weights (--model)".to_owned(),
    /// Rank of the projection.
    rank: usize => rank_rule(),
    /// Peak learning rate.
    #[arg(allow_negative_numbers = true)]
    lr: f64 => lr_rule(),
    /// Optimizer steps.
    steps: usize => format!("{DEFAULT_STEPS} (the embedded corpus in under 5 minutes on 2 cores), or from --max-tokens"),
    /// Token budget instead of --steps (rounded up to whole steps).
    max_tokens: usize => "none: --steps sets the budget".to_owned(),
    /// Clip the global gradient norm (all parameters, torch's clip_grad_norm_) to this.
    #[arg(allow_negative_numbers = true)]
    clip_grad_norm: f64 => format!("off, or {FIRA_CLIP_NORM} with --optimizer fira-clip"),
    /// Train data-parallel on these devices (Burn's multi-device strategy): CUDA device or WGPU
    /// discrete-GPU indices, e.g. `0,1,2,3`. Each device takes --batch-size rows per
    /// micro-batch; their gradients are summed on the first device, where the optimizer and its
    /// state live. On the CPU backends every index is the one CPU (replicas that test the
    /// data-parallel path, no speed-up).
    #[arg(value_delimiter = ',')]
    devices: Vec<usize> => "the backend's default device".to_owned(),
    /// LoRA (the paper's fine-tuning): freeze the model and train rank-r adapters beside the
    /// --lora-targets projections, with --optimizer on the adapter matrices; the HF export merges
    /// them into the weights and adapter/ holds them alone (PEFT's layout).
    lora_rank: usize => "off: every parameter trains".to_owned(),
    /// LoRA's α: the adapters' update is scaled by α / --lora-rank.
    #[arg(allow_negative_numbers = true)]
    lora_alpha: f64 => format!("{LORA_ALPHA_PER_RANK} × --lora-rank (the paper's 64 at rank 32)"),
    /// Dropout on the adapters' input while training.
    #[arg(allow_negative_numbers = true)]
    lora_dropout: f64 => format!("{DEFAULT_LORA_DROPOUT} (LLM-Adapters')"),
    /// The projections of every layer that get adapters (q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj).
    #[arg(value_delimiter = ',')]
    lora_targets: Vec<String> => format!("{} (the paper's)", DEFAULT_LORA_TARGETS.join(",")),
    /// Training data: a file, a directory or a glob (C4 shards) of --data-format: text in
    /// .txt/.jsonl/.json.gz files, or instruction records in .json/.jsonl files.
    data: String => "the embedded Austen corpus".to_owned(),
    /// How text documents become rows (instruction records are always one per row).
    packing: RowPacking => format!("{} for --data-format text", value_name(DEFAULT_PACKING)),
    /// Which tokens of an instruction row the loss is on: the response (and its end-of-text) or
    /// the whole row, prompt included (LLM-Adapters' train_on_inputs).
    loss_on: LossOn => format!(
        "{} for --data-format instructions: the model is to learn the answers, not the prompts",
        value_name(DEFAULT_LOSS_ON)
    ),
    /// Validation data (same forms).
    valid_data: String => "every 20th document of the training data, held out".to_owned(),
    /// A tokenizer.json (e.g. T5's for C4).
    tokenizer: PathBuf => "a byte-level BPE trained on the data".to_owned(),
    /// Run directory: options, tokenizer, checkpoints, metrics, plot, final model.
    run_dir: PathBuf => "runs/<optimizer>-<model>-s<seed>".to_owned(),
    /// Record the scaling factor ψ = ‖Adam(G)‖/‖G‖ of every --target-modules matrix (per matrix
    /// and per sampled column) every this many steps into scaling.jsonl, for `fira analyze
    /// scaling`; with --optimizer adamw the same matrices are measured at full rank.
    record_scaling_every: usize => "off".to_owned(),
    }
}

/// The two budget options: a layer that gives one replaces the other from the layers below.
const BUDGET: [&str; 2] = ["steps", "max_tokens"];

/// Merges the options of `later` (a JSON object; `-` and `_` in keys are the same) over
/// `earlier`; `what` names the layer in errors.
fn overlay(earlier: &mut Map<String, Value>, later: Map<String, Value>, what: &str) -> anyhow::Result<()> {
    let later: Map<String, Value> = later.into_iter().map(|(key, value)| (key.replace('-', "_"), value)).collect();
    let given = |name: &str| later.get(name).is_some_and(|v| !v.is_null());
    anyhow::ensure!(!BUDGET.iter().all(|b| given(b)), "{what}: give --steps or --max-tokens, not both");
    for (name, other) in [(BUDGET[0], BUDGET[1]), (BUDGET[1], BUDGET[0])] {
        if given(name) {
            earlier.insert(other.to_owned(), Value::Null);
        }
    }
    earlier.extend(later);
    Ok(())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("options serialise to an object"),
    }
}

impl TrainOptions {
    /// `base` (the defaults, `fira compare`'s budget, or a resumed run's options) overlaid with
    /// `--config` and then the flags.
    pub fn resolve(base: &TrainOptions, args: &TrainArgs) -> anyhow::Result<Self> {
        let mut merged = object(serde_json::to_value(base)?);
        if let Some(path) = &args.config {
            let what = format!("--config {}", path.display());
            let text = std::fs::read_to_string(path).with_context(|| what.clone())?;
            let file: Value = serde_json::from_str(&text).with_context(|| format!("{what}: not JSON"))?;
            let Value::Object(file) = file else { anyhow::bail!("{what}: expected a JSON object of options") };
            overlay(&mut merged, file, &what)?;
            // Name the option at fault within the file.
            Self::from_object(merged.clone()).with_context(|| what.clone())?;
        }
        overlay(&mut merged, object(serde_json::to_value(args)?), "the command line")?;
        Self::from_object(merged)
    }

    /// Reads `options.json` of a run.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        match serde_json::from_str(text)? {
            Value::Object(object) => Self::from_object(object),
            _ => anyhow::bail!("expected a JSON object of options"),
        }
    }

    /// `--model`, or the default preset (not used with `--init-from`, which brings its own).
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    /// What the run trains, for names and titles: the `--init-from` directory or `--model`.
    pub fn model_name(&self) -> String {
        match &self.init_from {
            Some(dir) => dir.file_name().map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned()),
            None => std::path::Path::new(self.model()).file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_owned(),
        }
    }

    /// How documents become rows: `--packing` for text, `--loss-on` for instruction records
    /// (`validate` refuses the one that does not apply).
    pub fn row_layout(&self) -> RowLayout {
        match self.data_format {
            DataFormat::Text => RowLayout::Text(self.packing.unwrap_or(DEFAULT_PACKING)),
            DataFormat::Instructions => RowLayout::Instructions(self.loss_on.unwrap_or(DEFAULT_LOSS_ON)),
        }
    }

    /// The adapters of `--lora-rank` with the other LoRA options or their defaults; `None`:
    /// full fine-tuning.
    pub fn lora(&self) -> Option<LoraConfig> {
        let rank = self.lora_rank?;
        let targets = self.lora_targets.clone().unwrap_or_else(|| DEFAULT_LORA_TARGETS.map(String::from).to_vec());
        Some(LoraConfig::new(
            rank,
            self.lora_alpha.unwrap_or(LORA_ALPHA_PER_RANK * rank as f64),
            self.lora_dropout.unwrap_or(DEFAULT_LORA_DROPOUT),
            targets,
        ))
    }

    /// `--lr`, or the paper's rate for the optimizer.
    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or(self.optimizer.default_lr())
    }

    /// `--clip-grad-norm`, or [`FIRA_CLIP_NORM`] for `fira-clip`; `None`: no clipping.
    pub fn clip_grad_norm(&self) -> Option<f64> {
        self.clip_grad_norm.or((self.optimizer == OptimizerChoice::FiraClip).then_some(FIRA_CLIP_NORM))
    }

    /// Data-parallel replicas: the devices listed, or the one default device.
    pub fn replicas(&self) -> usize {
        self.devices.as_ref().map_or(1, Vec::len)
    }

    /// Optimizer steps of the run: `--steps`, `--max-tokens` in whole steps of
    /// `tokens_per_step`, or [`DEFAULT_STEPS`].
    pub fn total_steps(&self, tokens_per_step: usize) -> usize {
        match (self.steps, self.max_tokens) {
            (Some(steps), _) => steps,
            (None, Some(tokens)) => tokens.div_ceil(tokens_per_step),
            (None, None) => DEFAULT_STEPS,
        }
    }

    /// Checks what can be checked without the data or the model.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--batch-size", Some(self.batch_size)),
            ("--grad-accum", Some(self.grad_accum)),
            ("--nodes", Some(self.nodes)),
            ("--eval-every", Some(self.eval_every)),
            ("--checkpoint-every", Some(self.checkpoint_every)),
            ("--valid-rows", Some(self.valid_rows)),
            ("--log-every", Some(self.log_every)),
            ("--scaling-columns", Some(self.scaling_columns)),
            ("--record-scaling-every", self.record_scaling_every),
            ("--steps", self.steps),
            ("--max-tokens", self.max_tokens),
        ];
        for (flag, value) in positive {
            anyhow::ensure!(value != Some(0), "{flag} must be at least 1 (got 0)");
        }
        if let Some(devices) = &self.devices {
            anyhow::ensure!(!devices.is_empty(), "--devices: give at least one device index");
            anyhow::ensure!(devices.iter().all(|&d| d <= usize::from(u16::MAX)), "--devices: device indices must be below 65536");
        }
        anyhow::ensure!(
            self.nodes == 1 || self.run_dir.is_some(),
            "--nodes {} needs --run-dir: every node names the same run (node 0 writes it, the others read it when resuming)",
            self.nodes
        );
        if let Some(dir) = &self.init_from {
            let conflicting = given_flags(&[("--model", self.model.is_some()), ("--tokenizer", self.tokenizer.is_some())]);
            anyhow::ensure!(
                conflicting.is_empty(),
                "--init-from {} brings its model and tokenizer; {} cannot be given with it",
                dir.display(),
                conflicting.join(" and ")
            );
        }
        match self.lora() {
            Some(lora) => lora.validate().map_err(|e| anyhow::anyhow!("--lora-rank: {e}"))?,
            None => {
                let given = given_flags(&[
                    ("--lora-alpha", self.lora_alpha.is_some()),
                    ("--lora-dropout", self.lora_dropout.is_some()),
                    ("--lora-targets", self.lora_targets.is_some()),
                ]);
                anyhow::ensure!(given.is_empty(), "{} apply with --lora-rank (LoRA is off without it)", given.join(", "));
            }
        }
        match self.data_format {
            DataFormat::Text => {
                anyhow::ensure!(self.loss_on.is_none(), "--loss-on applies to --data-format instructions; text has no prompt to leave out")
            }
            DataFormat::Instructions => {
                anyhow::ensure!(
                    self.packing.is_none(),
                    "--packing applies to --data-format text; instruction records are always one per row"
                );
                anyhow::ensure!(
                    self.data.is_some(),
                    "--data-format instructions needs --data (the embedded corpus is text): .json or .jsonl files of records"
                );
            }
        }
        anyhow::ensure!(self.seq_len >= 2, "--seq-len must be at least 2 (a row needs a target), got {}", self.seq_len);
        anyhow::ensure!(self.steps.is_none() || self.max_tokens.is_none(), "give --steps or --max-tokens, not both");
        anyhow::ensure!(
            self.checkpoint_every.is_multiple_of(self.eval_every),
            "--checkpoint-every ({}) must be a multiple of --eval-every ({}): checkpoints are taken after a validation",
            self.checkpoint_every,
            self.eval_every
        );
        if let Some(lr) = self.lr {
            anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number (got {lr})");
        }
        anyhow::ensure!((0.0..1.0).contains(&self.warmup_ratio), "--warmup-ratio must be in [0, 1) (got {})", self.warmup_ratio);
        anyhow::ensure!((0.0..=1.0).contains(&self.min_lr_ratio), "--min-lr-ratio must be in [0, 1] (got {})", self.min_lr_ratio);
        if let Some(norm) = self.clip_grad_norm {
            anyhow::ensure!(
                norm.is_finite() && norm > 0.0,
                "--clip-grad-norm must be a positive number (got {norm}); leave it out for no clipping"
            );
        }
        // --update-proj-gap, --alpha, --gamma, --weight-decay, --target-modules: fira-optim's
        // rules; --rank: `projection_rank`, once the model is known.
        crate::prepare::check_optimizer_flags(self)
    }
}

/// `--rank`, or a quarter of the hidden size (the paper's ratio), for `model`; with LoRA the
/// optimizer projects the adapter matrices, whose smaller side is the LoRA rank, and the default
/// is half of it (the paper's fine-tuning: 16 at rank 32). A rank above the smaller side of the
/// matrices it projects would be clamped silently by the optimizer, so it is refused.
pub fn projection_rank(given: Option<usize>, model: &LlamaConfig, lora: Option<&LoraConfig>) -> anyhow::Result<usize> {
    let (default, smallest, what) = match lora {
        Some(lora) => (lora.rank / 2, lora.rank, "--lora-rank"),
        None => (model.hidden_size / 4, model.hidden_size.min(model.intermediate_size), "their smaller side"),
    };
    let rank = given.unwrap_or(default.max(1));
    anyhow::ensure!(rank > 0, "--rank must be at least 1 (got 0)");
    anyhow::ensure!(rank <= smallest, "--rank {rank} is larger than the matrices it projects ({what} is {smallest})");
    Ok(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(options: &TrainOptions, name: &str) -> String {
        options.help_texts().into_iter().find(|(id, _)| *id == name).unwrap_or_else(|| panic!("no option {name}")).1
    }

    fn args(flags: &[&str]) -> TrainArgs {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            args: TrainArgs,
        }
        <Command as clap::Parser>::try_parse_from(std::iter::once("fira").chain(flags.iter().copied())).unwrap().args
    }

    #[test]
    fn help_shows_the_value_or_rule_each_base_resolves_to() {
        let defaults = TrainOptions::default();
        assert!(help(&defaults, "batch_size").ends_with("[default: 16]"));
        assert!(help(&defaults, "target_modules").ends_with("[default: attn,mlp]"));
        assert!(help(&defaults, "optimizer").ends_with("[default: fira]"));
        assert!(help(&defaults, "lr").ends_with("[default: 0.01 for Fira, GaLore and the ablations, 0.001 for AdamW]"));
        assert!(help(&defaults, "steps").contains(&format!("[default: {DEFAULT_STEPS} ")));
        let budget = TrainOptions { steps: Some(2400), seq_len: 64, ..TrainOptions::default() };
        assert!(help(&budget, "steps").ends_with("[default: 2400]"));
        assert!(help(&budget, "seq_len").ends_with("[default: 64]"));
        // Every option has its help, and the flags are exactly the options.
        let names: Vec<&str> = defaults.help_texts().iter().map(|(name, _)| *name).collect();
        let fields = object(serde_json::to_value(&defaults).unwrap());
        assert_eq!(names.len(), fields.len());
        assert!(fields.keys().all(|k| names.contains(&k.as_str())), "{names:?}");
    }

    #[test]
    fn rules_apply_only_to_what_is_not_given() {
        let fira = TrainOptions::default();
        assert_eq!((fira.lr(), fira.clip_grad_norm(), fira.replicas()), (0.01, None, 1));
        let clip = TrainOptions { optimizer: OptimizerChoice::FiraClip, ..TrainOptions::default() };
        assert_eq!(clip.clip_grad_norm(), Some(FIRA_CLIP_NORM));
        let given = TrainOptions { lr: Some(3e-4), clip_grad_norm: Some(0.5), devices: Some(vec![0, 1]), ..clip };
        assert_eq!((given.lr(), given.clip_grad_norm(), given.replicas()), (3e-4, Some(0.5), 2));
        let adamw = TrainOptions { optimizer: OptimizerChoice::Adamw, ..TrainOptions::default() };
        assert_eq!(adamw.lr(), 0.001);
        assert_eq!(TrainOptions { max_tokens: Some(1000), ..TrainOptions::default() }.total_steps(256), 4);
        assert_eq!(TrainOptions::default().total_steps(256), DEFAULT_STEPS);
        let model = LlamaConfig::preset("60m").unwrap();
        assert_eq!(projection_rank(None, &model, None).unwrap(), 128);
        assert_eq!(projection_rank(Some(64), &model, None).unwrap(), 64);
        assert!(projection_rank(Some(0), &model, None).is_err() && projection_rank(Some(513), &model, None).is_err());
        let lora = TrainOptions { lora_rank: Some(32), ..TrainOptions::default() }.lora().unwrap();
        assert_eq!((lora.alpha, lora.dropout, lora.targets.len()), (64.0, DEFAULT_LORA_DROPOUT, 5));
        assert_eq!(projection_rank(None, &model, Some(&lora)).unwrap(), 16);
        assert!(projection_rank(Some(33), &model, Some(&lora)).unwrap_err().to_string().contains("--lora-rank is 32"));
        assert!(TrainOptions { lora_alpha: Some(8.0), ..TrainOptions::default() }.validate().is_err());
    }

    #[test]
    fn layers_resolve_in_order_and_a_budget_replaces_the_other() {
        let base = TrainOptions { steps: Some(2400), batch_size: 16, ..TrainOptions::default() };
        let resolved = TrainOptions::resolve(&base, &args(&["--seq-len", "32"])).unwrap();
        assert_eq!((resolved.steps, resolved.batch_size, resolved.seq_len), (Some(2400), 16, 32));
        let by_tokens = TrainOptions::resolve(&base, &args(&["--max-tokens", "5000"])).unwrap();
        assert_eq!((by_tokens.steps, by_tokens.max_tokens), (None, Some(5000)));
        let both = TrainOptions::resolve(&base, &args(&["--steps", "3", "--max-tokens", "5000"]));
        assert!(both.unwrap_err().to_string().contains("give --steps or --max-tokens, not both"));
        // options.json round trip: what is not given stays not given.
        let text = serde_json::to_string(&resolved).unwrap();
        assert_eq!(TrainOptions::from_json(&text).unwrap(), resolved);
        assert!(TrainOptions::from_json(r#"{"rank": "four"}"#).unwrap_err().to_string().contains("--rank"));
    }
}
