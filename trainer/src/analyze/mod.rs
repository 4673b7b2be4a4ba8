//! `fira analyze`: the paper's evidence from a user's own runs.

mod rank_correlation;
mod scaling;
mod scaling_plot;
mod spikes;
mod spikes_plot;

use clap::Subcommand;

use crate::exit::Failure;

#[derive(Subcommand)]
pub enum AnalyzeCommand {
    /// Loss spikes of one or more runs and where they fall relative to the projector refreshes
    /// (the paper's Figures 2 and 4), from each run's `metrics.jsonl`.
    Spikes(spikes::SpikesArgs),
    /// Whether Adam scales the matrices of a low-rank run in the order of a full-rank run's (the
    /// paper's Figure 3 and Tables 7–8): Spearman and Kendall rank correlations of the scaling
    /// factors two runs recorded with `--record-scaling-every`.
    Scaling(scaling::ScalingArgs),
}

pub fn run(command: &AnalyzeCommand) -> Result<(), Failure> {
    match command {
        AnalyzeCommand::Spikes(args) => spikes::run(args),
        AnalyzeCommand::Scaling(args) => scaling::run(args),
    }
}
