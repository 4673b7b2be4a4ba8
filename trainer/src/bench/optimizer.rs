//! `fira bench optimizer`: one optimizer step over a model's real parameters (no forward
//! pass) for Burn's AdamW, fira-optim's AdamW path, GaLore and Fira (exact and randomized
//! solver): the median step, the refresh step's extra cost, and both amortised over the gap `T`;
//! then the refresh alone, every projected gradient through each solver.

use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use fira_optim::subspace::{ExactSvd, RandomizedRangeFinder, SubspaceSolver};
use fira_optim::{Algorithm, FiraConfig, ParamRoute, SubspaceSolverConfig};
use llama_burn::{Llama, LlamaConfig};
use serde::Serialize;

use super::{BenchTarget, write_report};
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::options::{projection_rank, value_name};
use crate::stats::median;

#[derive(Args)]
pub struct OptimizerBenchArgs {
    #[command(flatten)]
    target: BenchTarget,
    /// Rank of the projection [default: as `fira train --rank`].
    #[arg(long)]
    rank: Option<usize>,
    /// Timed steps per optimizer after the first (refresh) step; the median is reported.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Steps between projector refreshes (T), for the amortised figures.
    #[arg(long, default_value_t = 200)]
    update_proj_gap: usize,
}

/// One optimizer's figures.
#[derive(Serialize)]
struct OptimizerTiming {
    optimizer: &'static str,
    /// Median of the steps after the first.
    step_ms: f64,
    /// The first step's time above the median: the projector refresh (SVD of every projected
    /// gradient) and the state allocation.
    refresh_ms: f64,
    /// `step_ms + refresh_ms / T`.
    amortised_ms: f64,
    /// Amortised time over Burn's AdamW's.
    ratio_to_adamw: f64,
    /// Optimizer-state bytes held by the live optimizer after the steps.
    state_bytes: u64,
}

/// The refresh alone: every projected gradient through one solver.
#[derive(Serialize)]
struct SolverTiming {
    solver: &'static str,
    refresh_ms: f64,
}

#[derive(Serialize)]
struct OptimizerReport {
    model: String,
    vocab_size: usize,
    backend: String,
    parameters: u64,
    projected_matrices: usize,
    rank: usize,
    update_proj_gap: usize,
    steps: usize,
    optimizers: Vec<OptimizerTiming>,
    solvers: Vec<SolverTiming>,
}

pub fn run(args: &OptimizerBenchArgs) -> Result<(), Failure> {
    args.target.check()?;
    let config = args.target.model_config()?;
    if args.steps == 0 || args.update_proj_gap == 0 {
        return Err(Failure::Input(anyhow::anyhow!("--steps and --update-proj-gap must be at least 1")));
    }
    let rank = projection_rank(args.rank, &config, None).map_err(Failure::Input)?;
    let report = dispatch_backend!(args.target.backend, args.target.dtype, bench_on(args, &config, rank))?;

    let mut lines = vec![
        format!(
            "fira bench optimizer: {} (vocab {}, {:.1}M parameters, {} projected matrices) on {}, rank {}, T {}, median of {} steps",
            report.model,
            report.vocab_size,
            report.parameters as f64 / 1e6,
            report.projected_matrices,
            report.backend,
            rank,
            args.update_proj_gap,
            args.steps
        ),
        String::new(),
        "| optimizer | step ms | refresh ms | amortised ms | × burn AdamW | state MiB |".to_owned(),
        "|---|--:|--:|--:|--:|--:|".to_owned(),
    ];
    for t in &report.optimizers {
        lines.push(format!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.2} | {:.1} |",
            t.optimizer,
            t.step_ms,
            t.refresh_ms,
            t.amortised_ms,
            t.ratio_to_adamw,
            crate::units::mib(t.state_bytes)
        ));
    }
    lines.push(String::new());
    lines.push(format!("| solver | refresh of all {} projected matrices, ms |", report.projected_matrices));
    lines.push("|---|--:|".to_owned());
    lines.extend(report.solvers.iter().map(|s| format!("| {} | {:.0} |", s.solver, s.refresh_ms)));
    write_report(&lines, &report, args.target.json.as_deref())
}

/// The optimizers compared, by the names of the table.
fn fira_variants(rank: usize, gap: usize) -> Vec<(&'static str, FiraConfig)> {
    let config = FiraConfig::new().with_rank(rank).with_update_proj_gap(gap);
    let randomized = SubspaceSolverConfig::Randomized { oversampling: 8, power_iterations: 2, seed: 0 };
    vec![
        ("adamw (fira-optim path)", config.clone().with_algorithm(Algorithm::AdamW)),
        ("galore (exact svd)", config.clone().with_algorithm(Algorithm::GaLore)),
        ("fira (exact svd)", config.clone()),
        ("fira (randomized)", config.with_solver(randomized)),
    ]
}

/// A refresh solver and its name in the table.
type NamedSolver<B> = (&'static str, Box<dyn SubspaceSolver<<B as AutodiffBackend>::InnerBackend>>);

fn bench_on<B: AutodiffBackend>(
    device: B::Device,
    args: &OptimizerBenchArgs,
    config: &LlamaConfig,
    rank: usize,
) -> Result<OptimizerReport, Failure> {
    B::seed(&device, super::SEED);
    let model: Llama<B> = config.init(super::SEED, &device).input_error(|| "--model".to_owned())?;
    let grads = RandomGradients::of(&model);
    let (steps, gap) = (args.steps, args.update_proj_gap);

    let mut adamw: OptimizerAdaptor<AdamW, Llama<B>, B> = AdamWConfig::new().with_weight_decay(0.0).init();
    let times = time_steps(&mut adamw, &model, &grads, steps, &device);
    let mut optimizers = vec![timing("burn AdamW", times, gap, adamw_state_bytes(&adamw))];
    let mut projected = Vec::new();
    for (name, fira) in fira_variants(rank, gap) {
        let mut optimizer = fira.init::<B, _>(&model).input_error(|| "--rank".to_owned())?;
        let times = time_steps(&mut optimizer, &model, &grads, steps, &device);
        optimizers.push(timing(name, times, gap, optimizer.memory_report().total_state_bytes() as u64));
        projected = optimizer
            .selection()
            .params
            .iter()
            .filter_map(|p| match p.route {
                ParamRoute::Projected { side, rank } => Some((p.id, side, rank)),
                ParamRoute::Dense => None,
            })
            .collect();
    }
    let baseline = optimizers[0].amortised_ms;
    for t in &mut optimizers {
        t.ratio_to_adamw = t.amortised_ms / baseline;
    }

    let randomized = |power_iterations| RandomizedRangeFinder { oversampling: 8, power_iterations, seed: 0, canonical_signs: true };
    let solvers: [NamedSolver<B>; 3] = [
        ("exact svd (faer, host)", Box::new(ExactSvd { canonical_signs: true })),
        ("randomized (p 8, q 2)", Box::new(randomized(2))),
        ("randomized (p 8, q 1)", Box::new(randomized(1))),
    ];
    let mut solver_timings = Vec::new();
    for (name, solver) in solvers {
        let start = Instant::now();
        for (id, side, rank) in &projected {
            // The optimizer solves on the PyTorch-oriented gradient, the transpose of Burn's.
            let grad = grads.params.get::<B::InnerBackend, 2>(*id).expect("every parameter has a gradient").transpose();
            solver.solve(grad, *rank, *side).map_err(|e| Failure::Run(anyhow::anyhow!("{name}: {e}")))?;
        }
        B::sync(&device).map_err(|e| Failure::Run(anyhow::anyhow!("device sync: {e:?}")))?;
        solver_timings.push(SolverTiming { solver: name, refresh_ms: start.elapsed().as_secs_f64() * 1e3 });
    }

    Ok(OptimizerReport {
        model: args.target.model.clone(),
        vocab_size: config.vocab_size,
        backend: value_name(args.target.backend),
        parameters: config.parameter_count().total(),
        projected_matrices: projected.len(),
        rank,
        update_proj_gap: gap,
        steps,
        optimizers,
        solvers: solver_timings,
    })
}

fn timing(optimizer: &'static str, mut times: Vec<f64>, gap: usize, state_bytes: u64) -> OptimizerTiming {
    let first = times.remove(0);
    let step_ms = median(&times);
    let refresh_ms = (first - step_ms).max(0.0);
    OptimizerTiming { optimizer, step_ms, refresh_ms, amortised_ms: step_ms + refresh_ms / gap as f64, ratio_to_adamw: 1.0, state_bytes }
}

/// Milliseconds of `steps + 1` optimizer steps on a copy of `model` (the first one refreshes the
/// projectors), each synchronised with the device.
fn time_steps<B: AutodiffBackend, M: AutodiffModule<B>>(
    optimizer: &mut impl Optimizer<M, B>,
    model: &M,
    grads: &RandomGradients,
    steps: usize,
    device: &B::Device,
) -> Vec<f64> {
    let mut model = model.clone();
    let mut times = Vec::with_capacity(steps + 1);
    for _ in 0..=steps {
        let step_grads = grads.copy_for(&model);
        let start = Instant::now();
        model = optimizer.step(1e-3, model, step_grads);
        B::sync(device).expect("device sync");
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times
}

/// A fixed random gradient for every parameter (normal, std 1e-3, as a trained model's).
struct RandomGradients {
    params: GradientsParams,
}

impl RandomGradients {
    fn of<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M) -> Self {
        struct Draw<'a>(&'a mut GradientsParams);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Draw<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let value = param.val();
                let grad = Tensor::<B::InnerBackend, D>::random(value.shape(), Distribution::Normal(0.0, 1e-3), &value.device());
                self.0.register(param.id, grad);
            }
        }
        let mut params = GradientsParams::new();
        model.visit(&mut Draw(&mut params));
        Self { params }
    }

    /// A `GradientsParams` holding the same tensors (the optimizer consumes it).
    fn copy_for<B: AutodiffBackend, M: AutodiffModule<B>>(&self, model: &M) -> GradientsParams {
        struct Copy<'a>(&'a GradientsParams, GradientsParams);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Copy<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(grad) = self.0.get::<B::InnerBackend, D>(param.id) {
                    self.1.register(param.id, grad);
                }
            }
        }
        let mut copy = Copy(&self.params, GradientsParams::new());
        model.visit(&mut copy);
        copy.1
    }
}

/// Bytes of Burn's AdamW state (both moments of every parameter), read from its live record.
fn adamw_state_bytes<B: AutodiffBackend, M: AutodiffModule<B>>(optimizer: &OptimizerAdaptor<AdamW, M, B>) -> u64 {
    optimizer.to_record().values().map(|r| fira_optim::record_bytes(r) as u64).sum()
}
