//! `fira bench train`: full training steps (forward, loss, backward, optimizer) on random token
//! ids, per optimizer: tokens/s, the split between the model and the optimizer, and peak memory.
//!
//! Each optimizer runs in a fresh child process (this binary, with `--in-process`): a peak
//! resident set or a device memory pool never shrinks back within a process, so measuring the
//! optimizers one after the other in one process would charge the second with the first's peak.

use std::process::Command;
use std::time::Instant;

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};
use clap::Args;
use llama_burn::{Llama, LlamaConfig, LossTargets};
use serde::{Deserialize, Serialize};

use super::memory::{device_reserved_bytes, peak_resident_bytes};
use super::{BenchTarget, write_report};
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::options::{OptimizerChoice, TrainOptions, projection_rank, value_name};
use crate::prepare::optimizer_config;
use crate::stats::median;
use crate::units::mib;

/// Marks the child's result line on its stdout.
const RESULT_PREFIX: &str = "fira-bench-train-result: ";

#[derive(Args)]
pub struct TrainBenchArgs {
    #[command(flatten)]
    target: BenchTarget,
    /// Optimizers to compare, each configured as `fira train --optimizer` would.
    #[arg(long, value_delimiter = ',', default_value = "adamw,fira")]
    optimizers: Vec<OptimizerChoice>,
    /// Rank of the projection [default: as `fira train --rank`].
    #[arg(long)]
    rank: Option<usize>,
    /// Rows per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed steps after one warm-up step (which also refreshes the projectors); the median is
    /// reported.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Measure the listed optimizers in this process and print one result line each (what the
    /// parent process runs in its children).
    #[arg(long, hide = true)]
    in_process: bool,
}

/// One optimizer's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainTiming {
    optimizer: OptimizerChoice,
    /// Median full step.
    step_ms: f64,
    /// Median forward, loss and backward.
    forward_backward_ms: f64,
    /// Median optimizer step.
    optimizer_ms: f64,
    /// The warm-up step, refresh included.
    first_step_ms: f64,
    tokens_per_s: f64,
    /// Peak resident set of the process that trained (model, activations, gradients, state).
    peak_resident_bytes: Option<u64>,
    /// Peak of the device memory pool (WGPU, CUDA).
    peak_device_bytes: Option<u64>,
    /// Optimizer-state bytes held by the live optimizer.
    state_bytes: u64,
}

#[derive(Serialize)]
struct TrainReport {
    model: String,
    vocab_size: usize,
    backend: String,
    dtype: String,
    parameters: u64,
    rank: usize,
    batch_size: usize,
    seq_len: usize,
    steps: usize,
    optimizers: Vec<TrainTiming>,
}

pub fn run(args: &TrainBenchArgs) -> Result<(), Failure> {
    args.target.check()?;
    let config = args.target.model_config()?;
    if args.batch_size == 0 || args.steps == 0 || args.seq_len < 2 || args.optimizers.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!(
            "--batch-size and --steps must be at least 1, --seq-len at least 2, --optimizers not empty"
        )));
    }
    if args.seq_len > config.max_position_embeddings {
        return Err(Failure::Input(anyhow::anyhow!(
            "--seq-len {} exceeds the model's max_position_embeddings {}",
            args.seq_len,
            config.max_position_embeddings
        )));
    }
    let rank = projection_rank(args.rank, &config, None).map_err(Failure::Input)?;

    if args.in_process {
        for &optimizer in &args.optimizers {
            let timing = dispatch_backend!(args.target.backend, args.target.dtype, measure(args, &config, optimizer, rank))?;
            println!("{RESULT_PREFIX}{}", serde_json::to_string(&timing).expect("a timing serialises"));
        }
        return Ok(());
    }

    let optimizers = args.optimizers.iter().map(|&o| in_child(args, o, rank)).collect::<Result<Vec<_>, _>>()?;
    let report = TrainReport {
        model: args.target.model.clone(),
        vocab_size: config.vocab_size,
        backend: value_name(args.target.backend),
        dtype: value_name(args.target.dtype),
        parameters: config.parameter_count().total(),
        rank,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        steps: args.steps,
        optimizers,
    };
    let baseline = &report.optimizers[0];
    let optional_mib = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{:.0}", mib(b)));
    let mut lines = vec![
        format!(
            "fira bench train: {} (vocab {}, {:.1}M parameters) on {} {}, rank {}, batch {} x {} tokens, median of {} steps",
            report.model,
            report.vocab_size,
            report.parameters as f64 / 1e6,
            report.backend,
            report.dtype,
            rank,
            args.batch_size,
            args.seq_len,
            args.steps
        ),
        String::new(),
        format!(
            "| optimizer | step ms | fwd+bwd ms | optimizer ms | first step ms | tokens/s | × {} tokens/s | peak resident MiB | peak device MiB | state MiB |",
            value_name(baseline.optimizer)
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|".to_owned(),
    ];
    for t in &report.optimizers {
        lines.push(format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {:.1} |",
            value_name(t.optimizer),
            t.step_ms,
            t.forward_backward_ms,
            t.optimizer_ms,
            t.first_step_ms,
            t.tokens_per_s,
            t.tokens_per_s / baseline.tokens_per_s,
            optional_mib(t.peak_resident_bytes),
            optional_mib(t.peak_device_bytes),
            mib(t.state_bytes)
        ));
    }
    write_report(&lines, &report, args.target.json.as_deref())
}

/// Runs one optimizer's measurement in a fresh process of this binary and reads its result.
fn in_child(args: &TrainBenchArgs, optimizer: OptimizerChoice, rank: usize) -> Result<TrainTiming, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::Run(anyhow::anyhow!("locating this program to run the measurement: {e}")))?;
    let flags = [
        ("--model", args.target.model.clone()),
        ("--backend", value_name(args.target.backend)),
        ("--dtype", value_name(args.target.dtype)),
        ("--optimizers", value_name(optimizer)),
        ("--rank", rank.to_string()),
        ("--batch-size", args.batch_size.to_string()),
        ("--seq-len", args.seq_len.to_string()),
        ("--steps", args.steps.to_string()),
    ];
    let mut command = Command::new(exe);
    command.args(["bench", "train", "--in-process"]);
    for (flag, value) in flags {
        command.args([flag, &value]);
    }
    if let Some(vocab_size) = args.target.vocab_size {
        command.args(["--vocab-size", &vocab_size.to_string()]);
    }
    println!("measuring {} ...", value_name(optimizer));
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Failure::Run(anyhow::anyhow!("starting the measurement: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX));
    match (output.status.success(), result) {
        (true, Some(line)) => serde_json::from_str(line)
            .map_err(|e| Failure::Run(anyhow::anyhow!("reading the measurement of {}: {e}", value_name(optimizer)))),
        _ => Err(Failure::Run(anyhow::anyhow!("the measurement of {} failed ({}):\n{stdout}", value_name(optimizer), output.status))),
    }
}

/// Trains `steps + 1` steps on `B` with `optimizer` and measures them.
fn measure<B: AutodiffBackend>(
    device: B::Device,
    args: &TrainBenchArgs,
    config: &LlamaConfig,
    optimizer: OptimizerChoice,
    rank: usize,
) -> Result<TrainTiming, Failure> {
    B::seed(&device, super::SEED);
    let mut model: Llama<B> = config.init(super::SEED, &device).input_error(|| "--model".to_owned())?;
    let options = TrainOptions { model: Some(args.target.model.clone()), optimizer, ..TrainOptions::default() };
    let mut fira = optimizer_config(&options, rank).init::<B, _>(&model).input_error(|| "--rank".to_owned())?;
    let ids = Tensor::<B, 2, Int>::random([args.batch_size, args.seq_len], Distribution::Uniform(0.0, config.vocab_size as f64), &device);
    let sync = || B::sync(&device).map_err(|e| Failure::Run(anyhow::anyhow!("device sync: {e:?}")));

    let (mut model_ms, mut optimizer_ms) = (Vec::new(), Vec::new());
    let mut peak_device = None;
    for _ in 0..=args.steps {
        let start = Instant::now();
        let loss = model.training_loss(ids.clone(), &LossTargets::All).map_err(|e| Failure::Run(e.into()))?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        sync()?;
        let backward_done = Instant::now();
        model = fira.step(1e-3, model, grads);
        sync()?;
        model_ms.push((backward_done - start).as_secs_f64() * 1e3);
        optimizer_ms.push(backward_done.elapsed().as_secs_f64() * 1e3);
        peak_device = peak_device.max(device_reserved_bytes(args.target.backend));
    }
    let totals: Vec<f64> = model_ms.iter().zip(&optimizer_ms).map(|(a, b)| a + b).collect();
    let first_step_ms = totals[0];
    let step_ms = median(&totals[1..]);
    Ok(TrainTiming {
        optimizer,
        step_ms,
        forward_backward_ms: median(&model_ms[1..]),
        optimizer_ms: median(&optimizer_ms[1..]),
        first_step_ms,
        tokens_per_s: (args.batch_size * args.seq_len) as f64 / step_ms * 1e3,
        peak_resident_bytes: peak_resident_bytes(),
        peak_device_bytes: peak_device,
        state_bytes: fira.memory_report().total_state_bytes() as u64,
    })
}
