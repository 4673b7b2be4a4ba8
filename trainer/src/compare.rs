//! `fira compare`: the same model, data, seed, schedule and budget trained with each optimizer
//! (the paper's Table 2 methods and Table 4 ablations, optionally a Fira rank sweep as its
//! Figure 6), one run directory each, then a markdown table and the validation curves. Runs are
//! resumable one by one: a finished run is read back, an interrupted one continues from its
//! checkpoint.

mod side_by_side;

use std::path::PathBuf;

use clap::Args;

use crate::cluster::NodeArgs;
use crate::exit::Failure;
use crate::learn::plot::plot_comparison;
use crate::learn::step_log::{StepRecord, read_records};
use crate::options::{OptimizerChoice, TrainArgs, TrainOptions, value_name};
use crate::run_dir::{RunFiles, write_atomically};
use crate::train::{self, RunSummary, finished_summary};
use crate::units::mib;

#[derive(Args)]
pub struct CompareArgs {
    /// Optimizers to train.
    #[arg(long, value_delimiter = ',', default_value = "adamw,galore,fira,fira-matrix,fira-no-scaling,fira-no-limiter,fira-clip")]
    optimizers: Vec<OptimizerChoice>,
    /// Also train Fira at these ranks (the paper's Figure 6), e.g. `4,16,64`.
    #[arg(long, value_delimiter = ',')]
    ranks: Vec<usize>,
    /// Runs trained side by side, each in its own process (one training on a CPU backend keeps
    /// about one core busy, so `--jobs 2` nearly halves the time on two cores).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Directory of the runs, the table (`results.md`) and the plot (`validation.svg`).
    #[arg(long, default_value = "compare")]
    out_dir: PathBuf,
    /// Settings shared by every run (`fira train`'s flags over [`budget`]).
    #[command(flatten)]
    train: TrainArgs,
}

/// The comparison's own defaults, under the flags as `fira train`'s defaults are: 2400 steps of
/// 16 rows × 64 tokens, validation every 200 steps. GaLore leads Fira for the first ~1000 steps
/// of this budget; with 4-row batches (256 tokens a step) the gradient noise kept Fira behind
/// for all 2400 steps (docs/results.md). `fira compare --help` shows these as the defaults.
pub fn budget() -> TrainOptions {
    TrainOptions {
        steps: Some(2400),
        batch_size: 16,
        seq_len: 64,
        eval_every: 200,
        checkpoint_every: 400,
        log_every: 200,
        ..TrainOptions::default()
    }
}

/// `fira compare`'s command with the help of the shared flags showing [`budget`]'s defaults.
pub fn with_budget_help(command: clap::Command) -> clap::Command {
    budget().help_texts().into_iter().fold(command, |command, (id, help)| command.mut_arg(id, |arg| arg.help(help)))
}

/// One row of `results.json`: a run's name and its summary.
#[derive(serde::Serialize)]
struct ResultRow<'a> {
    name: &'a str,
    #[serde(flatten)]
    summary: &'a RunSummary,
}

/// One run of the comparison.
struct Entry {
    name: String,
    args: TrainArgs,
}

fn entries(args: &CompareArgs) -> Result<Vec<Entry>, Failure> {
    if args.train.optimizer.is_some() || args.train.run_dir.is_some() || args.train.resume {
        return Err(Failure::Input(anyhow::anyhow!(
            "fira compare chooses --optimizer, --run-dir and --resume itself: use --optimizers and --out-dir"
        )));
    }
    let shared = &args.train;
    let run = |name: String, optimizer: OptimizerChoice, rank: Option<usize>| {
        let mut args = shared.clone();
        args.optimizer = Some(optimizer);
        args.rank = rank.or(args.rank);
        Entry { name, args }
    };
    let mut entries: Vec<Entry> = args.optimizers.iter().map(|&o| run(value_name(o), o, None)).collect();
    entries.extend(args.ranks.iter().map(|&r| run(format!("fira-r{r}"), OptimizerChoice::Fira, Some(r))));
    Ok(entries)
}

pub fn run(args: &CompareArgs) -> Result<(), Failure> {
    let entries = entries(args)?;
    if args.jobs == 0 {
        return Err(Failure::Input(anyhow::anyhow!("--jobs must be at least 1")));
    }
    if args.jobs > 1 {
        side_by_side::train(&entries, &args.out_dir, args.jobs)?;
    }
    let mut results: Vec<(String, RunSummary, Vec<StepRecord>)> = Vec::new();
    for mut entry in entries {
        let files = RunFiles::new(args.out_dir.join(&entry.name));
        let summary = match finished_summary(&files) {
            Some(summary) => {
                println!("== {}: finished earlier, read from {}", entry.name, files.dir.display());
                summary
            }
            None => {
                entry.args.resume = files.options().is_file();
                entry.args.run_dir = Some(files.dir.clone());
                println!("== {}{}", entry.name, if entry.args.resume { " (continuing)" } else { "" });
                train::run(&budget(), &entry.args, &NodeArgs::default())?
            }
        };
        let records = read_records(&files.metrics()).map_err(|e| Failure::Run(e.into()))?;
        results.push((entry.name, summary, records));
    }

    let mut table = vec![
        "| optimizer | rank | final validation perplexity | optimizer state (MiB) | tokens/s | wall time (s) |".to_owned(),
        "|---|--:|--:|--:|--:|--:|".to_owned(),
    ];
    for (name, s, _) in &results {
        let ppl = s.final_valid_perplexity.map_or("-".to_owned(), |p| format!("{p:.2}"));
        let rank = if s.optimizer.projects() { s.rank.to_string() } else { "-".to_owned() };
        table.push(format!(
            "| {name} | {rank} | {ppl} | {:.2} | {:.0} | {:.0} |",
            mib(s.optimizer_state_bytes as u64),
            s.mean_tokens_per_s,
            s.seconds
        ));
    }
    let first = &results[0].1;
    let command: Vec<String> = std::env::args().collect();
    let text = format!(
        "# fira compare\n\nCommand: `{}`\n\n{} steps, {} tokens per run; unigram perplexity of the validation text {:.1}.\n\n{}\n\nCurves: `validation.svg`; runs: one directory per optimizer.\n",
        command.join(" "),
        first.steps,
        first.tokens,
        first.unigram_perplexity,
        table.join("\n")
    );
    println!("\n{}", table.join("\n"));
    write_atomically(&args.out_dir.join("results.md"), text.as_bytes()).map_err(Failure::Run)?;
    let rows: Vec<ResultRow> = results.iter().map(|(name, summary, _)| ResultRow { name, summary }).collect();
    let json = serde_json::to_string_pretty(&rows).expect("summaries serialise");
    write_atomically(&args.out_dir.join("results.json"), json.as_bytes()).map_err(Failure::Run)?;
    let curves: Vec<(String, Vec<StepRecord>)> = results.into_iter().map(|(name, _, records)| (name, records)).collect();
    if let Err(e) = plot_comparison(&curves, &args.out_dir.join("validation.svg")) {
        eprintln!("warning: no plot: {e}");
    }
    println!("table: {}; curves: {}", args.out_dir.join("results.md").display(), args.out_dir.join("validation.svg").display());
    Ok(())
}
