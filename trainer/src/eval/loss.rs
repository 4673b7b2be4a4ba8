//! `fira eval --task loss`: validation loss and perplexity of a run's latest checkpoint.

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::backend::AutodiffBackend;
use burn_train::InferenceStep;
use burn_train::metric::ItemLazy;
use llama_burn::LlamaConfig;
use serde::Serialize;

use super::EvalArgs;
use crate::data::documents::{DocumentSource, Split};
use crate::data::loader::ValidBatches;
use crate::data::rows::{Row, RowStream};
use crate::data::tokenizer::TextTokenizer;
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::learn::checkpoints::{latest_checkpoint, load_model};
use crate::learn::health::RunHealth;
use crate::learn::language_model::CausalLm;
use crate::options::TrainOptions;
use crate::prepare::{self, RunData};
use crate::run_dir::RunFiles;

struct EvalPlan {
    files: RunFiles,
    options: TrainOptions,
    model: LlamaConfig,
    rows: Vec<Row>,
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
    if args.data.len() > 1 {
        return Err(Failure::Input(anyhow::anyhow!(
            "--task loss evaluates one --data (a file, directory or glob), got {}",
            args.data.len()
        )));
    }
    let files = RunFiles::new(args.checkpoint.clone());
    let mut options = files.read_options().map_err(Failure::Input)?;
    if let Some(rows) = args.valid_rows {
        options.valid_rows = rows;
    }
    if let Some(backend) = args.compute.backend {
        options.backend = backend;
    }
    options.validate().map_err(Failure::Input)?;
    let segment = latest_checkpoint(&files.dir).map_err(Failure::Input)?;
    let tokenizer = Arc::new(TextTokenizer::load(&files.tokenizer()).input_error(|| "the run's tokenizer".to_owned())?);
    let rows = match args.data.first() {
        Some(spec) => {
            let source = DocumentSource::from_spec(spec, options.data_format).input_error(|| "--data".to_owned())?;
            RowStream::first_rows(source, Split::All, Arc::clone(&tokenizer), options.seq_len, options.row_layout(), options.valid_rows)
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
    let llama = load_model::<B::InnerBackend>(&plan.files.dir, plan.segment, &plan.model, plan.options.lora().as_ref(), &device)
        .map_err(Failure::Input)?;
    let model = CausalLm::new(llama, 1, RunHealth::default());
    let batches = ValidBatches::<B::InnerBackend>::new(plan.rows.clone(), plan.options.batch_size, device);
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
