//! `fira analyze spikes`: a step spikes when its training loss exceeds the median of the
//! `--window` steps before it by `--factor`; each spike is placed relative to the projector
//! refreshes, at steps 1, T+1, 2T+1, … (spec step 1), to show whether the spikes come with the
//! refreshes as the paper reports for GaLore and GaLore-add (Figure 2) and for Fira without its
//! limiter (Figure 4).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::spikes_plot::plot_spikes;
use super::{run_name, write_report};
use crate::exit::{Failure, InputContext};
use crate::learn::step_log::{StepRecord, read_records};
use crate::options::{OptimizerChoice, value_name};
use crate::run_dir::RunFiles;
use crate::stats::median;

#[derive(Args)]
pub struct SpikesArgs {
    /// Run directories of `fira train` (or of `fira compare`'s runs), analysed and plotted together.
    #[arg(long = "run", required = true)]
    runs: Vec<PathBuf>,
    /// A step spikes when its training loss exceeds the median of the previous `--window` steps
    /// by this factor (> 1).
    #[arg(long, default_value_t = 1.1)]
    factor: f64,
    /// Steps in the running median; the first `--window` steps of a run are never spikes.
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// A spike at most this many steps after a refresh counts as at the refresh.
    #[arg(long, default_value_t = 5)]
    near: usize,
    /// Where `spikes.json`, `spikes.md` and `spikes.svg` go.
    #[arg(long)]
    out_dir: PathBuf,
}

/// One spike.
#[derive(Debug, PartialEq, Serialize)]
pub struct Spike {
    pub step: usize,
    pub loss: f64,
    /// The median of the `window` losses before it.
    pub median: f64,
    pub grad_norm: Option<f64>,
    /// Steps since the latest refresh (0: the refresh step itself); `None` for AdamW.
    pub after_refresh: Option<usize>,
}

/// One run's training curve, as the analysis and the plot read it.
pub struct RunCurve {
    pub name: String,
    pub optimizer: OptimizerChoice,
    /// The refresh gap T, `None` where nothing is projected (AdamW).
    pub update_proj_gap: Option<usize>,
    /// `(step, loss, gradient norm)` of every training step.
    pub steps: Vec<(usize, f64, Option<f64>)>,
}

#[derive(Serialize)]
struct RunSpikes<'a> {
    run: &'a str,
    optimizer: String,
    update_proj_gap: Option<usize>,
    steps: usize,
    refreshes: usize,
    spikes: Vec<Spike>,
    /// Spikes at most `near` steps after a refresh.
    near_refresh: usize,
}

#[derive(Serialize)]
struct SpikesReport<'a> {
    factor: f64,
    window: usize,
    near: usize,
    runs: Vec<RunSpikes<'a>>,
}

pub fn run(args: &SpikesArgs) -> Result<(), Failure> {
    if !(args.factor.is_finite() && args.factor > 1.0) || args.window == 0 {
        return Err(Failure::Input(anyhow::anyhow!("--factor must be above 1 and --window at least 1")));
    }
    let curves = args.runs.iter().map(|dir| read_curve(dir)).collect::<Result<Vec<_>, _>>()?;
    let runs: Vec<RunSpikes> = curves
        .iter()
        .map(|curve| {
            let spikes = find_spikes(curve, args.factor, args.window);
            let near_refresh = spikes.iter().filter(|s| s.after_refresh.is_some_and(|a| a <= args.near)).count();
            let refreshes =
                curve.update_proj_gap.map_or(0, |gap| curve.steps.iter().filter(|s| steps_since_refresh(s.0, gap) == 0).count());
            RunSpikes {
                run: &curve.name,
                optimizer: value_name(curve.optimizer),
                update_proj_gap: curve.update_proj_gap,
                steps: curve.steps.len(),
                refreshes,
                spikes,
                near_refresh,
            }
        })
        .collect();
    let report = SpikesReport { factor: args.factor, window: args.window, near: args.near, runs };

    write_report(&args.out_dir, "spikes", &markdown(&report), &report)?;
    let spikes: Vec<&[Spike]> = report.runs.iter().map(|r| r.spikes.as_slice()).collect();
    plot_spikes(&curves, &spikes, &args.out_dir.join("spikes.svg")).map_err(|e| Failure::Run(anyhow::anyhow!(e)))?;
    println!("written: {}", args.out_dir.join("spikes.{md,json,svg}").display());
    Ok(())
}

/// A run's training steps and refresh gap; a directory without options or training steps is
/// refused (exit 2) before anything is written.
fn read_curve(dir: &Path) -> Result<RunCurve, Failure> {
    let files = RunFiles::new(dir.to_path_buf());
    let options = files.read_options().map_err(Failure::Input)?;
    let records = read_records(&files.metrics()).input_error(|| format!("cannot read {}", files.metrics().display()))?;
    let steps: Vec<_> = records
        .into_iter()
        .filter_map(|r| match r {
            StepRecord::Train { step, loss, grad_norm, .. } => Some((step, loss, grad_norm)),
            StepRecord::Valid { .. } => None,
        })
        .collect();
    if steps.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!("{} logged no training step", files.metrics().display())));
    }
    if steps.iter().any(|s| s.0 == 0) {
        return Err(Failure::Input(anyhow::anyhow!("{}: a training step 0 (steps count from 1)", files.metrics().display())));
    }
    Ok(RunCurve {
        name: run_name(dir),
        optimizer: options.optimizer,
        update_proj_gap: options.optimizer.projects().then_some(options.update_proj_gap),
        steps,
    })
}

/// Steps since the latest projector refresh, which happen at steps 1, T+1, 2T+1, … (0: `step` is a
/// refresh); steps count from 1 (`read_curve` refuses a step 0).
pub fn steps_since_refresh(step: usize, gap: usize) -> usize {
    (step - 1) % gap
}

/// The spikes of `curve`: steps whose loss exceeds `factor` × the median of the `window` finite
/// losses before them (a non-finite loss is a spike of its own: a run that diverged).
pub fn find_spikes(curve: &RunCurve, factor: f64, window: usize) -> Vec<Spike> {
    let mut spikes = Vec::new();
    let mut recent: Vec<f64> = Vec::new();
    for &(step, loss, grad_norm) in &curve.steps {
        if recent.len() == window {
            let median = median(&recent);
            if !loss.is_finite() || loss > factor * median {
                let after_refresh = curve.update_proj_gap.map(|gap| steps_since_refresh(step, gap));
                spikes.push(Spike { step, loss, median, grad_norm, after_refresh });
            }
        }
        if loss.is_finite() {
            if recent.len() == window {
                recent.remove(0);
            }
            recent.push(loss);
        }
    }
    spikes
}

fn markdown(report: &SpikesReport) -> String {
    let mut lines = vec![
        format!(
            "Loss spikes (loss > {} × the median of the {} steps before), and those at most {} steps after a projector refresh",
            report.factor, report.window, report.near
        ),
        String::new(),
        "| run | optimizer | T | steps | refreshes | spikes | at a refresh | spike steps (steps after the refresh) |".to_owned(),
        "|---|---|--:|--:|--:|--:|--:|---|".to_owned(),
    ];
    for run in &report.runs {
        let steps: Vec<String> = run
            .spikes
            .iter()
            .map(|s| match s.after_refresh {
                Some(after) => format!("{} (+{after})", s.step),
                None => s.step.to_string(),
            })
            .collect();
        let gap = run.update_proj_gap.map_or("-".to_owned(), |t| t.to_string());
        lines.push(format!(
            "| {} | {} | {gap} | {} | {} | {} | {} | {} |",
            run.run,
            run.optimizer,
            run.steps,
            run.refreshes,
            run.spikes.len(),
            run.near_refresh,
            steps.join(", ")
        ));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(losses: &[f64], gap: Option<usize>) -> RunCurve {
        let steps = losses.iter().enumerate().map(|(i, &l)| (i + 1, l, Some(1.0))).collect();
        RunCurve { name: "run".to_owned(), optimizer: OptimizerChoice::Galore, update_proj_gap: gap, steps }
    }

    #[test]
    fn planted_spikes_are_found_at_their_steps_and_placed_after_the_refresh() {
        // A slowly falling loss with spikes planted at steps 21 and 41 (refreshes, T = 20) and 30.
        let mut losses: Vec<f64> = (0..60).map(|i| 5.0 - 0.01 * i as f64).collect();
        for (step, factor) in [(21, 1.5), (30, 1.2), (41, 2.0)] {
            losses[step - 1] *= factor;
        }
        let spikes = find_spikes(&curve(&losses, Some(20)), 1.1, 8);
        let found: Vec<(usize, Option<usize>)> = spikes.iter().map(|s| (s.step, s.after_refresh)).collect();
        assert_eq!(found, [(21, Some(0)), (30, Some(9)), (41, Some(0))]);
        // The median before step 30 is that of steps 22-29 (the spike at 21 has left the window).
        let expected = (losses[24] + losses[25]) / 2.0;
        assert!((spikes[1].median - expected).abs() < 1e-12, "{} vs {expected}", spikes[1].median);
        // Below the factor nothing spikes; AdamW has no refreshes to place a spike against.
        assert!(find_spikes(&curve(&losses, None), 2.5, 8).is_empty());
        assert_eq!(find_spikes(&curve(&losses, None), 1.1, 8)[0].after_refresh, None);
    }

    #[test]
    fn a_non_finite_loss_is_a_spike_and_stays_out_of_the_median() {
        let mut losses = vec![3.0; 12];
        losses[5] = f64::NAN;
        let spikes = find_spikes(&curve(&losses, Some(4)), 1.1, 4);
        assert_eq!(spikes.len(), 1);
        assert_eq!((spikes[0].step, spikes[0].median, spikes[0].after_refresh), (6, 3.0, Some(1)));
    }
}
