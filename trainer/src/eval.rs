//! `fira eval`: validation loss and perplexity of a run's latest checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::backend::AutodiffBackend;
use burn_train::InferenceStep;
use burn_train::metric::ItemLazy;
use clap::Args;
use llama_burn::LlamaConfig;
use serde::Serialize;

use crate::data::documents::{DocumentSource, Split};
use crate::data::loader::ValidBatches;
use crate::data::rows::RowStream;
use crate::data::tokenizer::TextTokenizer;
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::learn::checkpoints::{latest_checkpoint, load_model};
use crate::learn::health::RunHealth;
use crate::learn::language_model::CausalLm;
use crate::options::{BackendChoice, TrainOptions};
use crate::prepare::{self, RunData};
use crate::run_dir::RunFiles;

#[derive(Args)]
pub struct EvalArgs {
    /// The run directory of `fira train` (its latest checkpoint is evaluated).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data to evaluate on (a .txt/.jsonl/.json.gz file, directory or glob) [default: the run's
    /// validation data].
    #[arg(long)]
    data: Option<String>,
    /// Rows evaluated [default: the run's --valid-rows].
    #[arg(long)]
    valid_rows: Option<usize>,
    /// Compute backend [default: the run's].
    #[arg(long)]
    backend: Option<BackendChoice>,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct EvalPlan {
    files: RunFiles,
    options: TrainOptions,
    model: LlamaConfig,
    rows: Vec<Vec<u32>>,
    segment: usize,
}

/// What `fira eval` measured (`--json`).
#[derive(Serialize)]
struct EvalResult {
    /// Optimizer steps of the checkpoint evaluated.
    step: usize,
    loss: f64,
    perplexity: f64,
    /// Targets the loss is the mean over.
    targets: usize,
    rows: usize,
}

pub fn run(args: &EvalArgs) -> Result<(), Failure> {
    crate::run_dir::check_json_path(args.json.as_deref()).map_err(Failure::Input)?;
    let files = RunFiles::new(args.checkpoint.clone());
    let mut options = files.read_options().map_err(Failure::Input)?;
    if let Some(rows) = args.valid_rows {
        options.valid_rows = rows;
    }
    if let Some(backend) = args.backend {
        options.backend = backend;
    }
    options.validate().map_err(Failure::Input)?;
    let segment = latest_checkpoint(&files.dir).map_err(Failure::Input)?;
    let tokenizer = Arc::new(TextTokenizer::load(&files.tokenizer()).input_error(|| "the run's tokenizer".to_owned())?);
    let rows = match &args.data {
        Some(spec) => {
            let source = DocumentSource::from_spec(spec).input_error(|| "--data".to_owned())?;
            RowStream::first_rows(source, Split::All, Arc::clone(&tokenizer), options.seq_len, options.packing, options.valid_rows)
                .input_error(|| "--data".to_owned())?
        }
        None => {
            let data = RunData::open(&options).map_err(Failure::Input)?;
            data.valid_rows(&options, &tokenizer).map_err(Failure::Input)?
        }
    };
    if rows.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!("the data holds no row of {} tokens", options.seq_len)));
    }
    let model = files.read_model().map_err(Failure::Input)?;
    let plan = EvalPlan { files, options, model, rows, segment };
    let (backend, dtype) = (plan.options.backend, plan.options.dtype);
    let result = dispatch_backend!(backend, dtype, evaluate(&plan))?;
    println!(
        "checkpoint after step {} of {}: validation loss {:.4}, perplexity {:.2} over {} tokens ({} rows)",
        result.step,
        plan.files.dir.display(),
        result.loss,
        result.perplexity,
        result.targets,
        result.rows
    );
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&result).expect("a result serialises");
        crate::run_dir::write_atomically(path, json.as_bytes()).map_err(|e| Failure::Run(e.context("--json")))?;
    }
    Ok(())
}

fn evaluate<B: AutodiffBackend>(device: B::Device, plan: &EvalPlan) -> Result<EvalResult, Failure> {
    let padding = prepare::loss_padding(&plan.options, &plan.model);
    let llama = load_model::<B::InnerBackend>(&plan.files.dir, plan.segment, &plan.model, &device).map_err(Failure::Input)?;
    let model = CausalLm::new(llama, padding.map(|p| p as usize), 1, RunHealth::default());
    let batches = ValidBatches::<B::InnerBackend>::new(plan.rows.clone(), plan.options.batch_size, padding, device);
    let (mut nll, mut targets) = (0.0, 0usize);
    let mut iter = batches.iter();
    for batch in &mut iter {
        let loss = model.step(batch).sync();
        nll += loss.loss * loss.targets as f64;
        targets += loss.targets;
    }
    let loss = nll / targets.max(1) as f64;
    let step = prepare::run_shape(&plan.options).steps_after_segment(plan.segment);
    Ok(EvalResult { step, loss, perplexity: loss.exp(), targets, rows: plan.rows.len() })
}
