//! `fira analyze`: the paper's evidence from a user's own runs.

mod rank_correlation;
mod scaling;
mod scaling_plot;
mod spikes;
mod spikes_plot;

use std::path::Path;

use clap::Subcommand;
use serde::Serialize;

use crate::exit::{Failure, InputContext};
use crate::run_dir::write_atomically;

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

/// A run's name in reports: its directory's last component.
fn run_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Creates `out_dir`, prints `table` and writes it as `<stem>.md` and `report` as `<stem>.json`
/// (the plot, `<stem>.svg`, is the caller's).
fn write_report(out_dir: &Path, stem: &str, table: &str, report: &impl Serialize) -> Result<(), Failure> {
    std::fs::create_dir_all(out_dir).input_error(|| format!("cannot create {}", out_dir.display()))?;
    println!("{table}");
    let write = |name: String, text: &str| write_atomically(&out_dir.join(name), text.as_bytes()).map_err(Failure::Run);
    write(format!("{stem}.md"), table)?;
    write(format!("{stem}.json"), &(serde_json::to_string_pretty(report).expect("a report serialises") + "\n"))
}
