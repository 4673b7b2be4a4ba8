//! `fira analyze`: the paper's evidence from a user's own runs.

mod spikes;
mod spikes_plot;

use clap::Subcommand;

use crate::exit::Failure;

#[derive(Subcommand)]
pub enum AnalyzeCommand {
    /// Loss spikes of one or more runs and where they fall relative to the projector refreshes
    /// (the paper's Figures 2 and 4), from each run's `metrics.jsonl`.
    Spikes(spikes::SpikesArgs),
}

pub fn run(command: &AnalyzeCommand) -> Result<(), Failure> {
    match command {
        AnalyzeCommand::Spikes(args) => spikes::run(args),
    }
}
