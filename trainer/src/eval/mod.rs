//! `fira eval`: a model's validation loss (`--task loss`, [`loss`]) or its accuracy on
//! multiple-choice records with the LLM-Adapters commonsense protocol (`--task choice`,
//! [`choice`]).

mod choice;
mod labels;
mod loss;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::exit::Failure;
use crate::options::{given_flags, value_name};
use crate::pretrained::ComputeArgs;

/// `--max-new-tokens` of `--scoring generate` when not given: LLM-Adapters' `max_new_tokens`.
const DEFAULT_MAX_NEW_TOKENS: usize = 32;
/// `--scoring` when not given: the paper's protocol.
const DEFAULT_SCORING: Scoring = Scoring::Generate;

/// `--task`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Mean next-token loss and perplexity of a run's latest checkpoint.
    Loss,
    /// Accuracy on instruction records with an `answer` (LLM-Adapters' commonsense sets).
    Choice,
}

/// `--scoring` of `--task choice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// Greedy generation from the prompt; the answer is the first label word of the text (the
    /// paper's protocol; a text without one counts as wrong).
    Generate,
    /// Each label's response scored by the model's log-probability after the prompt; the most
    /// likely is the answer (cheaper; lm-evaluation-harness' multiple-choice scoring).
    Likelihood,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The model: a run directory of `fira train` (its latest complete checkpoint); for --task
    /// choice also an HF model directory (config.json, weights, tokenizer.json).
    #[arg(long, visible_alias = "model")]
    checkpoint: PathBuf,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Task::Loss)]
    task: Task,
    /// --task loss: data of the run's --data-format (a file, directory or glob) [default: the
    /// run's validation data]. --task choice: a .json or .jsonl file of records with `answer`
    /// (LLM-Adapters' dataset/<task>/test.json); repeat the flag for several tasks.
    #[arg(long)]
    data: Vec<String>,
    /// --task loss: rows evaluated [default: the run's --valid-rows].
    #[arg(long)]
    valid_rows: Option<usize>,
    /// --task choice: records evaluated per file, the first ones [default: all].
    #[arg(long)]
    limit: Option<usize>,
    /// --task choice: how an answer is chosen.
    #[arg(long, value_enum, help = format!("--task choice: how an answer is chosen [default: {}]", value_name(DEFAULT_SCORING)))]
    scoring: Option<Scoring>,
    /// --scoring generate: beam search with this many beams (the official script uses 4)
    /// instead of greedy decoding.
    #[arg(
        long,
        help = "--scoring generate: decode with beam search of this many beams, as HF's num_beams (the official script \
                        uses 4) [default: greedy decoding]"
    )]
    beams: Option<usize>,
    /// --scoring generate: tokens generated per record at most.
    #[arg(long, help = format!("--scoring generate: tokens generated per record at most [default: {DEFAULT_MAX_NEW_TOKENS}, LLM-Adapters']"))]
    max_new_tokens: Option<usize>,
    /// --backend, and for --task choice --dtype.
    #[command(flatten)]
    compute: ComputeArgs,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> Result<(), Failure> {
    crate::run_dir::check_json_path(args.json.as_deref()).map_err(Failure::Input)?;
    let likelihood = args.scoring == Some(Scoring::Likelihood);
    let foreign = match args.task {
        Task::Loss => given_flags(&[
            ("--limit", args.limit.is_some()),
            ("--scoring", args.scoring.is_some()),
            ("--max-new-tokens", args.max_new_tokens.is_some()),
            ("--beams", args.beams.is_some()),
            ("--dtype", args.compute.dtype.is_some()),
        ]),
        Task::Choice => given_flags(&[
            ("--valid-rows", args.valid_rows.is_some()),
            ("--max-new-tokens", likelihood && args.max_new_tokens.is_some()),
            ("--beams", likelihood && args.beams.is_some()),
        ]),
    };
    if !foreign.is_empty() {
        let task = value_name(args.task);
        let scoring = if likelihood { " --scoring likelihood" } else { "" };
        return Err(Failure::Input(anyhow::anyhow!("--task {task}{scoring} does not use {}", foreign.join(", "))));
    }
    match args.task {
        Task::Loss => loss::run(args),
        Task::Choice => choice::run(args),
    }
}
