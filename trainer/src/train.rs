//! `fira train`: pre-trains a LLaMA model with Fira (or GaLore, AdamW, an ablation) through
//! Burn's `Learner`, on the embedded corpus or on `--data`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn_train::metric::LearningRateMetric;
use burn_train::{ExecutionStrategy, Interrupter, Learner, MultiDeviceOptim, SupervisedTraining};
use fira_optim::{FiraConfig, ScalingProbeConfig};
use llama_burn::LlamaConfig;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Listening, NodeArgs, NodeGradients, NodeSetup};
use crate::data::loader::{RunShape, TrainBatches, ValidBatches};
use crate::data::rows::{Row, RowStream};
use crate::data::tokenizer::TextTokenizer;
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::learn::checkpoints::{CheckpointRecorder, CheckpointSchedule, SegmentCheckpoints, complete_checkpoints};
use crate::learn::grad_guard::{GradNorms, GradientGuard};
use crate::learn::health::RunHealth;
use crate::learn::language_model::CausalLm;
use crate::learn::metrics::{PerplexityMetric, StepMetric, TokenLossMetric, TokensPerSecondMetric};
use crate::learn::plot::plot_curves;
use crate::learn::progress::ProgressLines;
use crate::learn::scaling_log::ScalingLog;
use crate::learn::schedule::WarmupCosine;
use crate::learn::step_clock::StepClock;
use crate::learn::step_log::{StepLog, StepRecord, read_records, truncate_records};
use crate::options::{OptimizerChoice, TrainArgs, TrainOptions, projection_rank};
use crate::prepare::{self, RunData};
use crate::pretrained::Pretrained;
use crate::run_dir::{self, RunFiles};

/// Training rows used to estimate the unigram baseline.
const UNIGRAM_ROWS: usize = 4096;

/// `fira train`'s command line: the run's options and, for a `--nodes` run, this node's flags.
#[derive(clap::Args)]
pub struct TrainCommand {
    #[command(flatten)]
    pub options: TrainArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Everything a run needs, settled before the backend is chosen.
struct RunPlan {
    options: TrainOptions,
    files: RunFiles,
    /// Where this node writes its own logs: the run directory, or `node-<rank>/` in it for the
    /// nodes but 0 of a `--nodes` run (node 0 writes the run's).
    own: RunFiles,
    /// `Some` in a `--nodes` run.
    cluster: Option<Arc<Cluster>>,
    data: RunData,
    tokenizer: Arc<TextTokenizer>,
    model: LlamaConfig,
    /// The weights a new run starts from (`--init-from`); `None`: drawn from `--seed`, or a
    /// resumed run's checkpoint.
    init_from: Option<Pretrained>,
    /// `--rank` resolved for the model.
    rank: usize,
    optimizer: FiraConfig,
    valid_rows: Vec<Row>,
    shape: RunShape,
    /// Segment of the checkpoint to resume from.
    resume_segment: Option<usize>,
    /// The run directory is created once the model and optimizer are built (the last checks of
    /// the input, `--init-from`'s weights among them).
    new_run: bool,
    unigram_perplexity: f64,
}

/// What a finished run reports (`summary.json` in its directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub optimizer: OptimizerChoice,
    pub rank: usize,
    pub steps: usize,
    pub tokens: usize,
    /// Wall time of training, summed over the invocations of a resumed run.
    pub seconds: f64,
    pub mean_tokens_per_s: f64,
    pub final_valid_loss: Option<f64>,
    pub final_valid_perplexity: Option<f64>,
    pub unigram_perplexity: f64,
    /// Optimizer state bytes, from fira-optim's selection report of the live optimizer.
    pub optimizer_state_bytes: usize,
    /// The step this invocation started after: 0 for a new run, the checkpoint's when resumed.
    pub started_after_step: usize,
}

/// The summary a finished run wrote, `None` if the run has not finished.
pub fn finished_summary(files: &RunFiles) -> Option<RunSummary> {
    std::fs::read_to_string(files.summary()).ok().and_then(|text| serde_json::from_str::<RunSummary>(&text).ok())
}

/// Trains the run of `args` over `base` (the defaults, or `fira compare`'s budget).
pub fn run(base: &TrainOptions, args: &TrainArgs, node: &NodeArgs) -> Result<RunSummary, Failure> {
    let plan = plan(base, args, node)?;
    let started = Instant::now();
    let (backend, dtype) = (plan.options.backend, plan.options.dtype);
    let state_bytes = dispatch_backend!(backend, dtype, train_on(&plan))?;
    summarise(&plan, started.elapsed().as_secs_f64(), state_bytes)
}

fn input<T>(result: anyhow::Result<T>) -> Result<T, Failure> {
    result.map_err(Failure::Input)
}

fn plan(base: &TrainOptions, args: &TrainArgs, node: &NodeArgs) -> Result<RunPlan, Failure> {
    let (options, resumed) = if args.resume {
        let dir = args.run_dir.clone().ok_or_else(|| Failure::Input(anyhow::anyhow!("--resume needs --run-dir (the run to continue)")))?;
        let files = RunFiles::new(dir);
        let saved = input(files.read_options())?;
        let options = input(TrainOptions::resolve(&saved, args))?;
        input(run_dir::check_resume(&saved, &options))?;
        (options, Some(files))
    } else {
        (input(TrainOptions::resolve(base, args))?, None)
    };
    input(options.validate())?;
    let setup = input(NodeSetup::new(options.nodes, node))?;
    let member = setup.as_ref().filter(|s| s.rank > 0);
    // Node 0 listens from the start, so that the others can connect while it prepares.
    let listening = match &setup {
        Some(setup) if setup.rank == 0 => Some(input(Listening::bind(setup))?),
        _ => None,
    };
    let (files, resume_segment) = match (resumed, member) {
        (Some(files), _) => {
            let segment = complete_checkpoints(&files.dir).last().copied();
            (files, segment)
        }
        // Node 0 creates the run directory; the others only read it.
        (None, Some(_)) => (RunFiles::new(options.run_dir.clone().expect("--nodes needs --run-dir (validated)")), None),
        (None, None) => (input(run_dir::new_run(&options))?, None),
    };
    let own = match member {
        Some(setup) => RunFiles::new(files.dir.join(format!("node-{}", setup.rank))),
        None => RunFiles::new(files.dir.clone()),
    };
    input(crate::backend::check(options.backend, options.dtype))?;
    let data = input(RunData::open(&options))?;
    // `--init-from` gives the weights when a run starts (or resumes before its first
    // checkpoint); a resumed run's checkpoint, tokenizer and model are in its directory.
    let init_from = match (&options.init_from, resume_segment) {
        (Some(dir), None) => Some(Pretrained::open(dir).input_error(|| format!("--init-from {}", dir.display()))?),
        _ => None,
    };
    // What the nodes compare: the options, and the checkpoint a resumed run continues from.
    let compared = || {
        let mut compared = crate::cluster::comparable_options(&options);
        compared["resumed_after_step"] = serde_json::json!(resume_segment.map(|s| prepare::run_shape(&options).steps_after_segment(s)));
        compared
    };
    // The other nodes take node 0's tokenizer (a BPE trained on each machine could differ).
    let (tokenizer, cluster) = match member {
        Some(setup) => {
            let (cluster, json) = crate::cluster::join(setup, &compared())?;
            let tokenizer =
                TextTokenizer::from_json(&json).map_err(|e| Failure::Run(anyhow::Error::from(e).context("node 0's tokenizer")))?;
            (tokenizer, Some(cluster))
        }
        None => {
            let tokenizer = if args.resume {
                input(TextTokenizer::load(&files.tokenizer()).map_err(anyhow::Error::from))?
            } else if let Some(pretrained) = &init_from {
                pretrained.tokenizer.clone()
            } else {
                input(prepare::tokenizer(&options, &data))?
            };
            let cluster = match listening {
                Some(listening) => {
                    let json = tokenizer.to_json().map_err(|e| Failure::Run(e.into()))?;
                    Some(listening.admit(&compared(), json)?)
                }
                None => None,
            };
            (tokenizer, cluster)
        }
    };
    let tokenizer = Arc::new(tokenizer);
    let model = match (&options.init_from, &init_from) {
        (Some(_), None) => input(files.read_model())?,
        (_, pretrained) => input(prepare::model_config(&options, &tokenizer, pretrained.as_ref().map(|p| &p.config)))?,
    };
    if args.resume {
        input(files.check_model(&model))?;
    }
    let rank = input(projection_rank(options.rank, &model, options.lora().as_ref()))?;
    let optimizer = prepare::optimizer_config(&options, rank);
    let valid_rows = input(data.valid_rows(&options, &tokenizer))?;
    let layout = options.row_layout();
    let train_sample =
        RowStream::first_rows(data.train.clone(), data.train_split, Arc::clone(&tokenizer), options.seq_len, layout, UNIGRAM_ROWS)
            .input_error(|| "--data".to_owned())?;
    if train_sample.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!(
            "the training data ({}) holds no row of {} tokens",
            data.train.describe(),
            options.seq_len
        )));
    }
    let unigram_perplexity = prepare::unigram_perplexity(&train_sample, &valid_rows, tokenizer.vocab_size());
    let shape = prepare::run_shape(&options);
    Ok(RunPlan {
        options,
        files,
        own,
        cluster,
        data,
        tokenizer,
        model,
        init_from,
        rank,
        optimizer,
        valid_rows,
        shape,
        resume_segment,
        new_run: !args.resume && member.is_none(),
        unigram_perplexity,
    })
}

/// Trains on `B`; returns the optimizer's state bytes.
fn train_on<B: AutodiffBackend>(default_device: B::Device, plan: &RunPlan) -> Result<usize, Failure> {
    let options = &plan.options;
    let devices = crate::backend::devices::<B>(options.devices.as_deref(), default_device);
    let device = devices[0].clone();
    let shape = plan.shape;
    B::seed(&device, options.seed);
    let llama = match &plan.init_from {
        Some(pretrained) => pretrained.load::<B>(&device).input_error(|| format!("--init-from {}", pretrained.describe()))?,
        None => plan.model.init::<B>(options.seed, &device).input_error(|| "--model".to_owned())?,
    };
    // LoRA freezes the model and adds the adapters (a resumed run's checkpoint then replaces
    // their values, keeping them the only trainable parameters).
    let llama = match options.lora() {
        Some(lora) => llama.with_lora(&lora, options.seed).input_error(|| "--lora-rank".to_owned())?,
        None => llama,
    };
    let health = RunHealth::default();
    let model = CausalLm::new(llama, shape.micro_batches_per_step(), health.clone());
    let mut optimizer = plan.optimizer.init::<B, _>(&model).input_error(|| "optimizer options".to_owned())?;
    if plan.new_run {
        plan.files.create(options, &plan.tokenizer, &plan.model).map_err(Failure::Run)?;
    }
    std::fs::create_dir_all(&plan.own.dir).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", plan.own.dir.display())))?;
    let completed_steps = plan.completed_steps();
    if let Some(every) = options.record_scaling_every {
        let path = plan.own.scaling();
        let log = ScalingLog::open(&path, completed_steps).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))?;
        let probe = ScalingProbeConfig { every, columns: options.scaling_columns, seed: options.seed };
        optimizer = optimizer.with_scaling_probe(probe, Arc::new(log)).input_error(|| "--record-scaling-every".to_owned())?;
    }

    let state_bytes = optimizer.selection().total_state_bytes();
    let clock = StepClock::new(shape.micro_batches_per_step(), completed_steps);
    let interrupter = Interrupter::new();
    let norms = GradNorms::default();
    let data_failure = Arc::new(Mutex::new(None));
    let mut optimizer =
        GradientGuard::new(optimizer, options.clip_grad_norm(), clock.clone(), norms.clone(), health.clone(), interrupter.clone());
    let schedule = CheckpointSchedule { every: options.checkpoint_every, total_steps: shape.total_steps };
    if let Some(cluster) = &plan.cluster {
        let dir = plan.files.dir.clone();
        let step = clock.clone();
        cluster.set_context(move || format!(" during optimizer step {}; {}", step.current_step(), kept_checkpoint(&dir, shape)));
        if cluster.is_coordinator() {
            let path = plan.files.nodes();
            cluster.open_board(&path, completed_steps).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", path.display())))?;
        }
        optimizer = optimizer.across_nodes(NodeGradients::new(Arc::clone(cluster), schedule));
    }
    let warmup = (options.warmup_ratio * shape.total_steps as f64).round() as usize;
    let scheduler = WarmupCosine::new(options.lr(), warmup, shape.total_steps, options.min_lr_ratio, clock.clone());

    let mut stream = RowStream::training(
        plan.data.train.clone(),
        plan.data.train_split,
        options.seed,
        Arc::clone(&plan.tokenizer),
        options.seq_len,
        options.row_layout(),
    );
    stream
        .skip(completed_steps * shape.rows_per_step())
        .map_err(|e| Failure::Run(anyhow::Error::from(e).context("resuming the data stream")))?;
    let node = plan.cluster.as_ref().map_or(0, |c| c.rank);
    let train = TrainBatches::<B>::new(stream, shape, node, clock, Arc::clone(&data_failure), interrupter.clone(), device.clone());
    let valid = ValidBatches::<B::InnerBackend>::new(plan.valid_rows.clone(), options.batch_size, device.clone());

    let metrics_path = plan.own.metrics();
    truncate_records(&metrics_path, completed_steps).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", metrics_path.display())))?;
    let step_log = StepLog::open(&metrics_path, shape, completed_steps, norms)
        .map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", metrics_path.display())))?;
    let existing = complete_checkpoints(&plan.files.dir).into_iter().filter(|&s| Some(s) <= plan.resume_segment).collect();

    print_start(plan, completed_steps);
    let mut checkpoints = SegmentCheckpoints::new(shape, options.checkpoint_every, 2, existing, health.clone(), interrupter.clone());
    let writes_run = plan.cluster.as_ref().is_none_or(|c| c.is_coordinator());
    if !writes_run {
        checkpoints = checkpoints.without_saving();
    }
    let mut training = SupervisedTraining::new(&plan.files.dir, Arc::new(train), Arc::new(valid))
        .metric_train_numeric(TokenLossMetric::default())
        .metric_valid_numeric(TokenLossMetric::default())
        .metric_train_numeric(PerplexityMetric::default())
        .metric_valid_numeric(PerplexityMetric::default())
        .metric_train_numeric(TokensPerSecondMetric::new(&shape))
        .metric_train_numeric(StepMetric::default())
        .metric_train_numeric(LearningRateMetric::new())
        .with_metric_logger(step_log)
        .with_file_checkpointer(CheckpointRecorder::default())
        .with_checkpointing_strategy(checkpoints)
        .num_epochs(shape.segments())
        .grads_accumulation(shape.grad_accum)
        .with_interrupter(interrupter);
    if !std::io::stdout().is_terminal() {
        training = training.renderer(ProgressLines::new(shape, options.log_every, completed_steps));
    }
    if let Some(segment) = plan.resume_segment {
        training = training.checkpoint(segment);
    }
    if !writes_run {
        // Burn's experiment.log is node 0's.
        training = training.with_application_logger(None);
    }
    if devices.len() > 1 {
        // Data parallel: each device runs the step on its own micro-batch; the gradients are
        // summed on the first device, where the one optimizer steps (so the projector refreshes
        // from the reduced gradient and there is a single optimizer state).
        training = training.with_training_strategy(ExecutionStrategy::MultiDevice(devices, MultiDeviceOptim::OptimMainDevice).into());
    }
    let result = training.launch(Learner::new(model, optimizer, scheduler));
    if let Some(cluster) = &plan.cluster {
        cluster.finish();
    }

    if let Some(error) = data_failure.lock().expect("the failure slot is never poisoned").take() {
        return Err(Failure::Run(anyhow::Error::from(error).context("reading the training data")));
    }
    if let Some(reason) = health.failure() {
        return Err(Failure::Run(anyhow::anyhow!("{reason}; {}", kept_checkpoint(&plan.files.dir, shape))));
    }
    if writes_run {
        export_model::<B>(&result.model, plan).map_err(Failure::Run)?;
    }
    Ok(state_bytes)
}

/// What a stopped run left: its last complete checkpoint, if any.
fn kept_checkpoint(dir: &std::path::Path, shape: RunShape) -> String {
    complete_checkpoints(dir).last().map_or("no checkpoint was written".to_owned(), |&s| {
        format!(
            "the last good checkpoint (step {}) is intact; `fira eval --checkpoint {}` reads it",
            shape.steps_after_segment(s),
            dir.display()
        )
    })
}

impl RunPlan {
    /// Optimizer steps already taken: those of the checkpoint resumed from.
    fn completed_steps(&self) -> usize {
        self.resume_segment.map_or(0, |s| self.shape.steps_after_segment(s))
    }
}

fn print_start(plan: &RunPlan, completed_steps: usize) {
    let options = &plan.options;
    let count = plan.model.parameter_count().total();
    println!(
        "fira train: {:?} on {:?}, model {} ({:.2}M parameters, vocab {}), rank {}, {} steps x {} tokens",
        options.optimizer,
        options.backend,
        options.model_name(),
        count as f64 / 1e6,
        plan.model.vocab_size,
        plan.rank,
        plan.shape.total_steps,
        plan.shape.tokens_per_step()
    );
    println!(
        "data: {}; validation: {} rows of {}; unigram perplexity of the validation text: {:.1}",
        plan.data.train.describe(),
        plan.valid_rows.len(),
        options.seq_len,
        plan.unigram_perplexity
    );
    if let Some(devices) = options.devices.as_ref().filter(|d| d.len() > 1) {
        println!(
            "data parallel on devices {devices:?}: each takes {} rows per micro-batch; gradients summed on device {} where the optimizer steps",
            options.batch_size, devices[0]
        );
    }
    if let Some(cluster) = &plan.cluster {
        println!(
            "node {} of {}: takes micro-batch {} of every {} of the data stream; gradients averaged over the nodes{}",
            cluster.rank,
            cluster.nodes,
            cluster.rank,
            cluster.nodes,
            if cluster.is_coordinator() { "; this node writes the run directory" } else { "" }
        );
    }
    if completed_steps > 0 {
        println!("resuming after step {completed_steps} from {}", plan.files.dir.display());
    }
    if let Some(lora) = options.lora() {
        let trainable = lora.adapter_parameters(&plan.model);
        println!(
            "LoRA rank {} (alpha {}, dropout {}) on {}: {trainable} trainable parameters, {:.3} % of {count}",
            lora.rank,
            lora.alpha,
            lora.dropout,
            lora.targets.join(","),
            100.0 * trainable as f64 / count as f64
        );
    }
    println!("run directory: {}", plan.files.dir.display());
}

/// Writes the final model as an HF directory (config.json, model.safetensors, tokenizer.json).
fn export_model<B: AutodiffBackend>(model: &<CausalLm<B> as AutodiffModule<B>>::InnerModule, plan: &RunPlan) -> anyhow::Result<()> {
    let dir = plan.files.final_model();
    // With LoRA the export holds the merged weights, and the adapters alone go beside it.
    model.llama.save_hf_dir(&plan.model, &dir)?;
    plan.tokenizer.save(&dir.join("tokenizer.json"))?;
    if let Some(lora) = plan.options.lora() {
        model.llama.save_lora_adapter(&lora, &plan.options.model_name(), plan.files.adapter())?;
    }
    Ok(())
}

fn summarise(plan: &RunPlan, seconds: f64, optimizer_state_bytes: usize) -> Result<RunSummary, Failure> {
    let records = read_records(&plan.own.metrics()).map_err(|e| Failure::Run(e.into()))?;
    let last_valid = records.iter().rev().find_map(|r| match r {
        StepRecord::Valid { step, loss, perplexity, .. } => Some((*step, *loss, *perplexity)),
        _ => None,
    });
    let rates: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            StepRecord::Train { tokens_per_s, .. } => *tokens_per_s,
            _ => None,
        })
        .collect();
    let mean_rate = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let plot = plan.own.dir.join("curves.svg");
    let title = format!("{:?}, {} on {:?}", plan.options.optimizer, plan.options.model_name(), plan.options.backend);
    let plotted = plot_curves(&records, &title, &plot);
    println!("done in {seconds:.0} s; mean training throughput {mean_rate:.0} tokens/s");
    if let Some((step, loss, perplexity)) = last_valid {
        println!(
            "validation at step {step}: loss {loss:.4}, perplexity {perplexity:.2} (unigram perplexity {:.1})",
            plan.unigram_perplexity
        );
    }
    match plotted {
        Ok(()) => println!("metrics: {}; curves: {}", plan.own.metrics().display(), plot.display()),
        Err(e) => eprintln!("warning: no plot: {e}"),
    }
    if plan.cluster.as_ref().is_none_or(|c| c.is_coordinator()) {
        println!("final model (HF format): {}", plan.files.final_model().display());
    }
    let earlier = finished_summary(&plan.own).map_or(0.0, |s| s.seconds);
    let summary = RunSummary {
        optimizer: plan.options.optimizer,
        rank: plan.rank,
        steps: plan.shape.total_steps,
        tokens: plan.shape.total_steps * plan.shape.tokens_per_step(),
        seconds: earlier + seconds,
        mean_tokens_per_s: mean_rate,
        final_valid_loss: last_valid.map(|v| v.1),
        final_valid_perplexity: last_valid.map(|v| v.2),
        unigram_perplexity: plan.unigram_perplexity,
        optimizer_state_bytes,
        started_after_step: plan.completed_steps(),
    };
    let json = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    crate::run_dir::write_atomically(&plan.own.summary(), json.as_bytes()).map_err(Failure::Run)?;
    Ok(summary)
}
