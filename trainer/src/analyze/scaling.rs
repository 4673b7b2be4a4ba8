//! `fira analyze scaling`: does Adam scale the matrices of a low-rank run in the same order as
//! those of a full-rank run (the paper's §4.1, Figure 3, Tables 7–8)? Both runs recorded ψ with
//! `--record-scaling-every`; each matrix's ψ (and each sampled column's) is averaged over the
//! steps both runs recorded, and the two orderings are compared by Spearman's ρ and Kendall's τ,
//! as the official similarity script does (mean over the logged steps, then `spearmanr` and
//! `kendalltau`, the columns of all matrices pooled).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use fira_optim::ScalingSample;
use serde::Serialize;

use super::rank_correlation::{Correlation, kendall, spearman};
use super::scaling_plot::plot_scaling;
use super::{run_name, write_report};
use crate::exit::{Failure, InputContext};
use crate::learn::scaling_log::read_samples;
use crate::options::{OptimizerChoice, TrainOptions, projection_rank, value_name};
use crate::run_dir::RunFiles;

#[derive(Args)]
pub struct ScalingArgs {
    /// A run of `--optimizer adamw` trained with `--record-scaling-every`.
    #[arg(long)]
    full_rank: PathBuf,
    /// A run of a low-rank optimizer (galore, fira, …) of the same model, data and seed, trained
    /// with `--record-scaling-every`.
    #[arg(long)]
    low_rank: PathBuf,
    /// Average over the recorded steps up to this one only (early training).
    #[arg(long)]
    up_to_step: Option<usize>,
    /// Where `scaling.json`, `scaling.md` and `scaling.svg` go.
    #[arg(long)]
    out_dir: PathBuf,
}

/// Options that must agree for the two runs to train one model on the same rows.
const SAME_RUN: [&str; 14] = [
    "model",
    "seed",
    "data",
    "tokenizer",
    "vocab_size",
    "batch_size",
    "grad_accum",
    "seq_len",
    "packing",
    "data_format",
    "loss_on",
    "init_from",
    "target_modules",
    "scaling_columns",
];

/// One run's recorded ψ.
struct RecordedRun {
    name: String,
    options: TrainOptions,
    samples: Vec<ScalingSample>,
}

/// A matrix's ψ averaged over the common steps, in both runs.
#[derive(Serialize)]
pub struct MatrixScaling {
    pub path: String,
    /// ‖N‖/‖R‖, full-rank and low-rank.
    pub full_rank: f64,
    pub low_rank: f64,
    /// The mean of the column factors, full-rank and low-rank.
    pub full_rank_column_mean: f64,
    pub low_rank_column_mean: f64,
    /// The sampled columns and their mean factors in both runs.
    pub columns: Vec<usize>,
    pub full_rank_columns: Vec<f64>,
    pub low_rank_columns: Vec<f64>,
}

/// Both rank correlations over `pairs` pairs.
#[derive(Serialize)]
struct Similarity {
    level: &'static str,
    pairs: usize,
    spearman: Correlation,
    kendall: Correlation,
}

#[derive(Serialize)]
struct ScalingReport {
    full_rank_run: String,
    low_rank_run: String,
    low_rank_optimizer: String,
    rank: usize,
    /// The steps averaged over.
    steps: Vec<usize>,
    similarity: Vec<Similarity>,
    matrices: Vec<MatrixScaling>,
}

pub fn run(args: &ScalingArgs) -> Result<(), Failure> {
    let full = read_run(&args.full_rank, "--full-rank")?;
    let low = read_run(&args.low_rank, "--low-rank")?;
    if full.options.optimizer.projects() {
        return Err(input(format!(
            "--full-rank {}: trained with {}; give a run of --optimizer adamw",
            args.full_rank.display(),
            value_name(full.options.optimizer)
        )));
    }
    if !low.options.optimizer.projects() {
        return Err(input(format!("--low-rank {}: trained with adamw; give a run of a low-rank optimizer", args.low_rank.display())));
    }
    check_same_run(&full.options, &low.options)?;
    let model = RunFiles::new(args.low_rank.clone()).read_model().map_err(|e| Failure::Input(e.context("--low-rank")))?;
    let rank =
        projection_rank(low.options.rank, &model, low.options.lora().as_ref()).map_err(|e| Failure::Input(e.context("--low-rank")))?;
    let steps = common_steps(&full, &low, args.up_to_step)?;
    let matrices = average(&full, &low, &steps)?;
    let similarity = similarities(&matrices)?;
    let report = ScalingReport {
        full_rank_run: full.name,
        low_rank_run: low.name,
        low_rank_optimizer: value_name(low.options.optimizer),
        rank,
        steps: steps.into_iter().collect(),
        similarity,
        matrices,
    };

    write_report(&args.out_dir, "scaling", &markdown(&report), &report)?;
    let series = format!("low-rank ({})", report.low_rank_optimizer);
    plot_scaling(&report.matrices, &series, &args.out_dir.join("scaling.svg")).map_err(|e| Failure::Run(anyhow::anyhow!(e)))?;
    println!("written: {}", args.out_dir.join("scaling.{md,json,svg}").display());
    Ok(())
}

fn input(message: String) -> Failure {
    Failure::Input(anyhow::anyhow!(message))
}

/// A run's options and samples; a directory that is no run, was trained without the probe or
/// recorded nothing is refused (exit 2).
fn read_run(dir: &Path, flag: &str) -> Result<RecordedRun, Failure> {
    let files = RunFiles::new(dir.to_path_buf());
    let options = files.read_options().map_err(|e| Failure::Input(e.context(flag.to_owned())))?;
    if options.record_scaling_every.is_none() {
        return Err(input(format!("{flag} {}: trained without --record-scaling-every, so it recorded no scaling factor", dir.display())));
    }
    let samples = read_samples(&files.scaling()).input_error(|| format!("{flag}: cannot read {}", files.scaling().display()))?;
    if samples.is_empty() {
        return Err(input(format!(
            "{flag}: {} holds no scaling sample (the run ended before its first record?)",
            files.scaling().display()
        )));
    }
    Ok(RecordedRun { name: run_name(dir), options, samples })
}

fn check_same_run(full: &TrainOptions, low: &TrainOptions) -> Result<(), Failure> {
    let (a, b) = (serde_json::to_value(full).expect("options serialise"), serde_json::to_value(low).expect("options serialise"));
    for name in SAME_RUN {
        if a[name] != b[name] {
            return Err(input(format!(
                "the runs differ in --{} ({} vs {}): the analysis compares one model trained on the same rows from the same seed",
                name.replace('_', "-"),
                a[name],
                b[name]
            )));
        }
    }
    Ok(())
}

/// The steps both runs recorded (up to `up_to_step`).
fn common_steps(full: &RecordedRun, low: &RecordedRun, up_to_step: Option<usize>) -> Result<BTreeSet<usize>, Failure> {
    let steps = |run: &RecordedRun| -> BTreeSet<usize> {
        run.samples.iter().map(|s| s.step).filter(|&s| up_to_step.is_none_or(|last| s <= last)).collect()
    };
    let common: BTreeSet<usize> = steps(full).intersection(&steps(low)).copied().collect();
    if common.is_empty() {
        let limit = up_to_step.map_or(String::new(), |s| format!(" up to step {s}"));
        return Err(input(format!("the runs recorded no step in common{limit} (check --record-scaling-every of both)")));
    }
    Ok(common)
}

/// Per matrix (in the full-rank run's order), the mean over `steps` of its ψ in both runs.
fn average(full: &RecordedRun, low: &RecordedRun, steps: &BTreeSet<usize>) -> Result<Vec<MatrixScaling>, Failure> {
    let paths = |run: &RecordedRun| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for sample in &run.samples {
            if !seen.contains(&sample.path) {
                seen.push(sample.path.clone());
            }
        }
        seen
    };
    let order = paths(full);
    let mut low_paths = paths(low);
    low_paths.sort();
    let mut sorted = order.clone();
    sorted.sort();
    if sorted != low_paths {
        return Err(input("the runs recorded different matrices (different --target-modules or model)".to_owned()));
    }
    order
        .into_iter()
        .map(|path| {
            let (a, b) = (mean_of(full, &path, steps)?, mean_of(low, &path, steps)?);
            if a.2 != b.2 {
                return Err(input(format!("{path}: the runs sampled different columns (different --seed or --scaling-columns)")));
            }
            Ok(MatrixScaling {
                path,
                full_rank: a.0,
                low_rank: b.0,
                full_rank_column_mean: a.1,
                low_rank_column_mean: b.1,
                columns: a.2,
                full_rank_columns: a.3,
                low_rank_columns: b.3,
            })
        })
        .collect()
}

/// `(ψ, mean column ψ, columns, per-column ψ)` of `path` averaged over `steps`.
fn mean_of(run: &RecordedRun, path: &str, steps: &BTreeSet<usize>) -> Result<(f64, f64, Vec<usize>, Vec<f64>), Failure> {
    let samples: Vec<&ScalingSample> = run.samples.iter().filter(|s| s.path == path && steps.contains(&s.step)).collect();
    if samples.len() != steps.len() {
        return Err(input(format!("{}: {path} was recorded at {} of the {} common steps", run.name, samples.len(), steps.len())));
    }
    let columns = samples[0].columns.clone();
    if samples.iter().any(|s| s.columns != columns || s.column_factors.len() != columns.len()) {
        return Err(input(format!("{}: {path} changed its sampled columns within the run", run.name)));
    }
    let count = samples.len() as f64;
    let mean = |value: &dyn Fn(&ScalingSample) -> f64| samples.iter().map(|s| value(s)).sum::<f64>() / count;
    let per_column = (0..columns.len()).map(|k| mean(&|s| s.column_factors[k])).collect();
    Ok((mean(&|s| s.matrix), mean(&|s| s.column_mean), columns, per_column))
}

fn similarities(matrices: &[MatrixScaling]) -> Result<Vec<Similarity>, Failure> {
    let compare = |level: &'static str, full: Vec<f64>, low: Vec<f64>| -> Result<Similarity, Failure> {
        let failed = |e| input(format!("{level}: {e}"));
        Ok(Similarity {
            level,
            pairs: full.len(),
            spearman: spearman(&full, &low).map_err(failed)?,
            kendall: kendall(&full, &low).map_err(failed)?,
        })
    };
    let both = |f: fn(&MatrixScaling) -> (f64, f64)| -> (Vec<f64>, Vec<f64>) { matrices.iter().map(f).unzip() };
    let (full, low) = both(|m| (m.full_rank, m.low_rank));
    let (full_mean, low_mean) = both(|m| (m.full_rank_column_mean, m.low_rank_column_mean));
    let columns = |pick: fn(&MatrixScaling) -> &Vec<f64>| matrices.iter().flat_map(|m| pick(m).iter().copied()).collect::<Vec<f64>>();
    Ok(vec![
        compare("matrix: ‖N‖/‖R‖", full, low)?,
        compare("matrix: mean of its column ψ (the official script's)", full_mean, low_mean)?,
        compare(
            "column: the sampled columns of every matrix, pooled",
            columns(|m| &m.full_rank_columns),
            columns(|m| &m.low_rank_columns),
        )?,
    ])
}

fn markdown(report: &ScalingReport) -> String {
    let steps = &report.steps;
    let mut lines = vec![
        format!(
            "Scaling-factor similarity, {} (full-rank {}) vs {} ({}, rank {}): ψ averaged over {} recorded steps ({}–{})",
            report.full_rank_run,
            value_name(OptimizerChoice::Adamw),
            report.low_rank_run,
            report.low_rank_optimizer,
            report.rank,
            steps.len(),
            steps[0],
            steps[steps.len() - 1]
        ),
        String::new(),
        "| level | pairs | Spearman ρ | p-value | Kendall τ | p-value |".to_owned(),
        "|---|--:|--:|--:|--:|--:|".to_owned(),
    ];
    for s in &report.similarity {
        lines.push(format!(
            "| {} | {} | {:.4} | {} | {:.4} | {} |",
            s.level,
            s.pairs,
            s.spearman.coefficient,
            p_text(s.spearman.p_value),
            s.kendall.coefficient,
            p_text(s.kendall.p_value)
        ));
    }
    lines.extend([String::new(), "| matrix | ψ full-rank | ψ low-rank |".to_owned(), "|---|--:|--:|".to_owned()]);
    lines.extend(report.matrices.iter().map(|m| format!("| {} | {:.4e} | {:.4e} |", m.path, m.full_rank, m.low_rank)));
    lines.join("\n") + "\n"
}

/// A p-value as the table shows it; one below the smallest normal double reads as such.
fn p_text(p: f64) -> String {
    if p < f64::MIN_POSITIVE { format!("< {:.1e}", f64::MIN_POSITIVE) } else { format!("{p:.2e}") }
}
