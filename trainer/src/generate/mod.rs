//! `fira generate`: continue prompts with a trained model (a run's latest checkpoint or an HF
//! model directory), greedy or sampled, with a KV cache, on any backend.

pub(crate) mod beam;
pub(crate) mod decode;
pub(crate) mod sampler;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use serde::{Deserialize, Serialize};

use self::decode::{Caching, Completion, Limits, complete};
use self::sampler::{Decoding, Sampling, TokenPicker};
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::options::{BackendChoice, value_name};
use crate::pretrained::{ComputeArgs, Pretrained};

/// `--max-new-tokens` when not given.
const DEFAULT_MAX_NEW_TOKENS: usize = 64;
/// `--temperature` when not given (the distribution as the model gives it).
const DEFAULT_TEMPERATURE: f64 = 1.0;
/// `--seed` when not given.
const DEFAULT_SEED: u64 = 42;

#[derive(Args)]
pub struct GenerateArgs {
    /// The model: a run directory of `fira train` (its latest complete checkpoint) or an HF model
    /// directory (config.json, model.safetensors or its shards, tokenizer.json), such as a run's
    /// `model/` export.
    #[arg(long)]
    model: PathBuf,
    /// The text to continue.
    #[arg(long, required_unless_present = "prompts", conflicts_with = "prompts")]
    prompt: Option<String>,
    /// A file of prompts, continued one after the other: one per line (empty lines skipped), or a
    /// `.jsonl` file of `{"prompt": "…"}` records for prompts with line breaks.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Tokens generated per prompt at most (fewer at an end-of-text token or the model's last
    /// position).
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    max_new_tokens: usize,
    /// Draw each token from the model's distribution (shaped by --temperature, --top-k, --top-p)
    /// instead of taking the most likely one (greedy decoding, the default).
    #[arg(long)]
    sample: bool,
    /// Divides the logits before sampling.
    #[arg(long, requires = "sample", default_value_t = DEFAULT_TEMPERATURE)]
    temperature: f64,
    /// Sample among the k most likely tokens only [default: every token].
    #[arg(long, requires = "sample")]
    top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities sum to p [default: every token].
    #[arg(long, requires = "sample")]
    top_p: Option<f64>,
    /// Seed of the sampling (each prompt starts from it).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Recompute the whole sequence for every new token instead of using the KV cache (slower; the
    /// reference the cache is checked against).
    #[arg(long)]
    no_kv_cache: bool,
    #[command(flatten)]
    compute: ComputeArgs,
    /// Also write the completions (ids, log-probabilities, why each stopped) and the throughput as
    /// JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One prompt and its continuation (`--json`).
#[derive(Serialize)]
struct PromptResult {
    prompt: String,
    prompt_ids: Vec<u32>,
    /// The new text (special tokens left out).
    text: String,
    #[serde(flatten)]
    completion: Completion,
}

/// What `fira generate` produced (`--json`).
#[derive(Serialize)]
struct GenerateResult {
    /// The run and step, or the HF directory, the weights came from.
    model: String,
    backend: BackendChoice,
    decoding: Decoding,
    seed: u64,
    kv_cache: bool,
    completions: Vec<PromptResult>,
    /// New tokens over all prompts, and the seconds they took (prompts included, loading not).
    new_tokens: usize,
    seconds: f64,
    tokens_per_s: f64,
}

struct GeneratePlan {
    model: Pretrained,
    prompts: Vec<(String, Vec<u32>)>,
    decoding: Decoding,
    seed: u64,
    max_new_tokens: usize,
    caching: Caching,
}

pub fn run(args: &GenerateArgs) -> Result<(), Failure> {
    crate::run_dir::check_json_path(args.json.as_deref()).map_err(Failure::Input)?;
    if args.max_new_tokens == 0 {
        return Err(Failure::Input(anyhow::anyhow!("--max-new-tokens 0 generates nothing; at least 1")));
    }
    let decoding = if args.sample {
        let sampling = Sampling { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p };
        sampling.validate().map_err(|e| Failure::Input(anyhow::anyhow!(e)))?;
        Decoding::Sample(sampling)
    } else {
        Decoding::Greedy
    };
    let texts = match (&args.prompt, &args.prompts) {
        (Some(prompt), _) => vec![prompt.clone()],
        (None, Some(file)) => read_prompts(file).input_error(|| format!("--prompts {}", file.display()))?,
        (None, None) => unreachable!("clap requires --prompt or --prompts"),
    };
    let model = Pretrained::open(&args.model).input_error(|| format!("--model {}", args.model.display()))?;
    let (backend, dtype) = args.compute.resolve(&model).map_err(Failure::Input)?;
    let max_positions = model.config.max_position_embeddings;
    let mut prompts = Vec::with_capacity(texts.len());
    for (i, text) in texts.into_iter().enumerate() {
        let ids = model.tokenizer.encode_prompt(&text).input_error(|| format!("prompt {}", i + 1))?;
        if ids.is_empty() {
            return Err(Failure::Input(anyhow::anyhow!("prompt {} is empty: it has no token to continue", i + 1)));
        }
        if ids.len() >= max_positions {
            return Err(Failure::Input(anyhow::anyhow!(
                "prompt {} has {} tokens; the model's {max_positions} positions leave none to generate",
                i + 1,
                ids.len()
            )));
        }
        prompts.push((text, ids));
    }
    let caching = if args.no_kv_cache { Caching::Recompute } else { Caching::KvCache };
    let plan = GeneratePlan { model, prompts, decoding, seed: args.seed, max_new_tokens: args.max_new_tokens, caching };
    let (completions, seconds) = dispatch_backend!(backend, dtype, generate(&plan))?;
    let mut results = Vec::with_capacity(completions.len());
    for ((prompt, prompt_ids), completion) in plan.prompts.into_iter().zip(completions) {
        let text = plan.model.tokenizer.decode(&completion.ids).map_err(|e| Failure::Run(e.into()))?;
        println!("{prompt}{text}\n");
        results.push(PromptResult { prompt, prompt_ids, text, completion });
    }
    let new_tokens: usize = results.iter().map(|r| r.completion.ids.len()).sum();
    let tokens_per_s = new_tokens as f64 / seconds.max(f64::MIN_POSITIVE);
    eprintln!(
        "{new_tokens} new tokens in {seconds:.2} s ({tokens_per_s:.1} tokens/s) from {} on {}{}",
        plan.model.describe(),
        value_name(backend),
        if plan.caching == Caching::KvCache { ", KV cache" } else { ", recomputing every position" }
    );
    if let Some(path) = &args.json {
        let result = GenerateResult {
            model: plan.model.describe(),
            backend,
            decoding: plan.decoding,
            seed: plan.seed,
            kv_cache: plan.caching == Caching::KvCache,
            completions: results,
            new_tokens,
            seconds,
            tokens_per_s,
        };
        let json = serde_json::to_string_pretty(&result).expect("a result serialises");
        crate::run_dir::write_atomically(path, json.as_bytes()).map_err(|e| Failure::Run(e.context("--json")))?;
    }
    Ok(())
}

/// The completions of every prompt, and the seconds they took.
fn generate<B: AutodiffBackend>(device: B::Device, plan: &GeneratePlan) -> Result<(Vec<Completion>, f64), Failure> {
    let model = plan.model.load::<B::InnerBackend>(&device).map_err(|e| Failure::Input(e.context("loading the model")))?;
    let limits = Limits { max_new_tokens: plan.max_new_tokens, stop_ids: &plan.model.stop_ids };
    let started = Instant::now();
    let mut completions = Vec::with_capacity(plan.prompts.len());
    for (i, (_, ids)) in plan.prompts.iter().enumerate() {
        let mut picker = TokenPicker::new(plan.decoding, plan.seed);
        let completion = complete(&model, ids, &limits, &mut picker, plan.caching, &device)
            .ok_or_else(|| Failure::Run(anyhow::anyhow!("prompt {}: the model's logits are NaN (a diverged model?)", i + 1)))?;
        completions.push(completion);
    }
    Ok((completions, started.elapsed().as_secs_f64()))
}

/// A `.jsonl` record of `--prompts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptRecord {
    prompt: String,
}

/// The prompts of `--prompts`: JSON lines of [`PromptRecord`] for a `.jsonl` file, else one per
/// non-empty line.
fn read_prompts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let prompts: Vec<String> = if path.extension().is_some_and(|e| e == "jsonl") {
        lines
            .map(|(n, line)| {
                serde_json::from_str::<PromptRecord>(line)
                    .map(|r| r.prompt)
                    .with_context(|| format!("line {}: not a {{\"prompt\": …}} record", n + 1))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        lines.map(|(_, line)| line.to_owned()).collect()
    };
    anyhow::ensure!(!prompts.is_empty(), "holds no prompt");
    Ok(prompts)
}
