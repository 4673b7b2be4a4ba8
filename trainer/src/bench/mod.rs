//! `fira bench`: what each optimizer costs, measured on the user's own backend and model.
//! `optimizer` times the optimizer step alone over the model's parameters; `train` times full
//! training steps and their peak memory. Both print a markdown table and can write JSON.

mod memory;
mod optimizer;
mod training;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use llama_burn::LlamaConfig;
use serde::Serialize;

use crate::exit::{Failure, InputContext};
use crate::options::{BackendChoice, DType};

/// The seed of the benchmarked model's weights and of the random inputs and gradients.
const SEED: u64 = 0;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Median time of one optimizer step over the model's parameters (no forward pass) for AdamW,
    /// GaLore and Fira, the refresh separately and amortised, and the live optimizer state.
    Optimizer(optimizer::OptimizerBenchArgs),
    /// Tokens/s and peak memory of full training steps (forward, backward, optimizer), one fresh
    /// process per optimizer so that each peak is its own.
    Train(training::TrainBenchArgs),
}

pub fn run(command: &BenchCommand) -> Result<(), Failure> {
    match command {
        BenchCommand::Optimizer(args) => optimizer::run(args),
        BenchCommand::Train(args) => training::run(args),
    }
}

/// What is benchmarked, where, and where the JSON goes.
#[derive(Args, Clone)]
struct BenchTarget {
    /// Model: a preset (9m, 20m, 60m, 130m, 350m, 1b, …, with the paper's 32000-id vocabulary) or
    /// the path of an HF/GaLore config.json.
    #[arg(long, default_value = "60m")]
    model: String,
    /// Vocabulary size in place of the model's (e.g. 4096, the default run's BPE) [default: the
    /// model's].
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendChoice,
    /// Parameter dtype (bf16: flex and cuda).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DType,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl BenchTarget {
    /// Refuses what would fail only after the measurement: a backend not compiled in, a JSON
    /// path whose directory does not exist.
    fn check(&self) -> Result<(), Failure> {
        crate::backend::check(self.backend, self.dtype).map_err(Failure::Input)?;
        crate::run_dir::check_json_path(self.json.as_deref()).map_err(Failure::Input)
    }

    fn model_config(&self) -> Result<LlamaConfig, Failure> {
        let mut config = LlamaConfig::from_preset_or_file(&self.model).input_error(|| "--model".to_owned())?;
        if let Some(vocab_size) = self.vocab_size {
            config.vocab_size = vocab_size;
            config.validate().input_error(|| "--vocab-size".to_owned())?;
        }
        Ok(config)
    }
}

/// Prints the table and writes the JSON report if asked.
fn write_report(lines: &[String], report: &impl Serialize, json: Option<&Path>) -> Result<(), Failure> {
    println!("{}", lines.join("\n"));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).expect("a report serialises");
        crate::run_dir::write_atomically(path, text.as_bytes()).map_err(Failure::Run)?;
        println!("JSON: {}", path.display());
    }
    Ok(())
}
