//! The `fira` command line as a library, so the workspace's end-to-end tests can run the same
//! entry point ([`run_cli`]) as the binary.
//!
//! Exit status: 0 on success, 2 when the input is at fault (flags, configs, files: nothing is
//! written), 1 when a run fails on its own.

mod allocator;
mod analyze;
pub mod backend;
mod bench;
mod broken_pipe;
mod cluster;
mod compare;
pub mod data;
mod eval;
mod exit;
mod generate;
mod info;
pub mod learn;
pub mod options;
mod prepare;
mod pretrained;
mod run_dir;
mod stats;
mod train;
mod units;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use crate::exit::Failure;

#[derive(Parser)]
#[command(name = "fira", version, about = "Full-rank training of LLaMA under low-rank optimizer memory (Fira) on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pre-train a LLaMA model (default: Fira on the embedded corpus, on the CPU).
    Train(Box<train::TrainCommand>),
    /// Train the same model with every optimizer and ablation; print and save the table and curves.
    Compare(Box<compare::CompareArgs>),
    /// Validation loss and perplexity of a run's latest checkpoint.
    Eval(eval::EvalArgs),
    /// Continue prompts with a trained model (a run or an HF directory): greedy or sampled, with a
    /// KV cache.
    Generate(Box<generate::GenerateArgs>),
    /// Measure what each optimizer costs: `fira bench optimizer` (the step alone), `fira bench
    /// train` (full training steps, peak memory).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The paper's evidence from your own runs: `fira analyze spikes` (loss spikes against the
    /// projector refreshes), `fira analyze scaling` (scaling-factor similarity of low-rank and
    /// full-rank training).
    Analyze {
        #[command(subcommand)]
        command: analyze::AnalyzeCommand,
    },
    /// Parameter counts of a model and the optimizer's selection and state memory, without training.
    Info(info::InfoArgs),
}

/// Parses the process arguments, runs the command and returns the exit status; errors are
/// printed to stderr with their context.
pub fn run_cli() -> i32 {
    allocator::keep_freed_pages();
    broken_pipe::end_quietly_on_closed_pipe();
    let command = Cli::command().mut_subcommand("compare", compare::with_budget_help);
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    let outcome = match cli.command {
        Command::Train(command) => train::run(&options::TrainOptions::default(), &command.options, &command.node).map(drop),
        Command::Compare(args) => compare::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Bench { command } => bench::run(&command),
        Command::Analyze { command } => analyze::run(&command),
        Command::Info(args) => info::run(&args),
    };
    match outcome {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error());
            failure.exit_code()
        }
    }
}
