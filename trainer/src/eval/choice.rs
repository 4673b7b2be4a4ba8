//! `fira eval --task choice`: accuracy on records with an `answer`, by LLM-Adapters'
//! commonsense protocol (`commonsense_evaluate.py`): each record's instruction in the training
//! template, the model's greedy continuation, the first label word in it as the prediction, a
//! text without one counted wrong; or by the likelihood of each label's response. One table row
//! per file, and the average of their accuracies (the paper's Table 3 "Avg.").

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use llama_burn::Llama;
use serde::Serialize;

use super::labels::{LabelSet, label_set};
use super::{DEFAULT_MAX_NEW_TOKENS, DEFAULT_SCORING, EvalArgs, Scoring};
use crate::data::instructions::read_records;
use crate::dispatch_backend;
use crate::exit::{Failure, InputContext};
use crate::generate::beam::beam_search;
use crate::generate::decode::{Caching, Limits, complete};
use crate::generate::sampler::{Decoding, TokenPicker};
use crate::options::{BackendChoice, value_name};
use crate::pretrained::Pretrained;

/// One record, encoded.
struct Item {
    prompt: Vec<u32>,
    answer: &'static str,
    /// The prompt and response of each label for `--scoring likelihood` (the record's `output`
    /// with its answer replaced by the label, or the label alone), encoded as one text as in
    /// training, and where the response's ids start.
    candidates: Vec<(Vec<u32>, usize)>,
}

/// One file of records.
struct TaskFile {
    path: PathBuf,
    task: String,
    labels: LabelSet,
    items: Vec<Item>,
}

/// The prediction for one record (`--json`).
#[derive(Serialize)]
struct Prediction {
    answer: &'static str,
    /// The label chosen; `None` when the generated text holds none.
    prediction: Option<&'static str>,
    correct: bool,
    /// The generated text (`--scoring generate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Each label's log-probability, in the label set's order (`--scoring likelihood`).
    #[serde(skip_serializing_if = "Option::is_none")]
    log_likelihoods: Option<Vec<f64>>,
}

/// One file's accuracy (`--json`).
#[derive(Serialize)]
struct TaskResult {
    file: PathBuf,
    task: String,
    labels: String,
    records: usize,
    correct: usize,
    accuracy: f64,
    /// The accuracy of a uniform guess among the labels.
    chance: f64,
    predictions: Vec<Prediction>,
}

/// What `fira eval --task choice` measured (`--json`).
#[derive(Serialize)]
struct ChoiceResult {
    model: String,
    backend: BackendChoice,
    scoring: Scoring,
    /// Beam search's beams (`--scoring generate`); `None`: greedy.
    beams: Option<usize>,
    tasks: Vec<TaskResult>,
    /// The mean of the tasks' accuracies.
    average_accuracy: f64,
    seconds: f64,
}

struct ChoicePlan {
    model: Pretrained,
    files: Vec<TaskFile>,
    scoring: Scoring,
    max_new_tokens: usize,
    /// Beam search's beams; `None`: greedy.
    beams: Option<usize>,
}

pub fn run(args: &EvalArgs) -> Result<(), Failure> {
    if args.data.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!("--task choice needs --data: a .json or .jsonl file of records with `answer`")));
    }
    if args.limit == Some(0) || args.max_new_tokens == Some(0) || args.beams == Some(0) {
        return Err(Failure::Input(anyhow::anyhow!("--limit, --max-new-tokens and --beams must be at least 1")));
    }
    let scoring = args.scoring.unwrap_or(DEFAULT_SCORING);
    let model = Pretrained::open(&args.checkpoint).input_error(|| format!("--model {}", args.checkpoint.display()))?;
    let (backend, dtype) = args.compute.resolve(&model).map_err(Failure::Input)?;
    let mut files = Vec::with_capacity(args.data.len());
    for spec in &args.data {
        let path = PathBuf::from(spec);
        files.push(task_file(&path, &model, args.limit).input_error(|| format!("--data {spec}"))?);
    }
    let max_new_tokens = args.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    let plan = ChoicePlan { model, files, scoring, max_new_tokens, beams: args.beams };
    let started = Instant::now();
    let tasks = dispatch_backend!(backend, dtype, evaluate(&plan))?;
    let seconds = started.elapsed().as_secs_f64();
    let average_accuracy = tasks.iter().map(|t| t.accuracy).sum::<f64>() / tasks.len() as f64;
    print!("{}", markdown(&tasks, average_accuracy));
    eprintln!(
        "{} records in {seconds:.1} s from {} on {}",
        plan.files.iter().map(|f| f.items.len()).sum::<usize>(),
        plan.model.describe(),
        value_name(backend)
    );
    if let Some(path) = &args.json {
        let result = ChoiceResult { model: plan.model.describe(), backend, scoring, beams: plan.beams, tasks, average_accuracy, seconds };
        let json = serde_json::to_string_pretty(&result).expect("a result serialises");
        crate::run_dir::write_atomically(path, json.as_bytes()).map_err(|e| Failure::Run(e.context("--json")))?;
    }
    Ok(())
}

/// The records of `path` (the first `limit`), their label set and their ids; a prompt (with a
/// candidate response) must leave the model a position to answer in.
fn task_file(path: &Path, model: &Pretrained, limit: Option<usize>) -> anyhow::Result<TaskFile> {
    let mut records = read_records(path, false)?;
    records.truncate(limit.unwrap_or(records.len()));
    let labels = label_set(path, &records).map_err(anyhow::Error::msg)?;
    let positions = model.config.max_position_embeddings;
    let tokenizer = &model.tokenizer;
    let mut items = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let prompt_text = record.prompt();
        let prompt = tokenizer.encode_prompt(&prompt_text)?;
        let answer =
            record.answer.as_deref().and_then(|a| labels.labels.iter().find(|&&l| l == a)).expect("label_set checked every answer");
        let mut candidates = Vec::with_capacity(labels.labels.len());
        for label in labels.labels {
            let response = match record.output.as_deref().and_then(|output| output.rfind(answer).map(|at| (output, at))) {
                Some((output, at)) => format!("{}{label}{}", &output[..at], &output[at + answer.len()..]),
                None => (*label).to_owned(),
            };
            let (ids, start) = tokenizer.encode_prompt_and_response(&prompt_text, &response)?;
            anyhow::ensure!(start > 0 && start < ids.len(), "record {}: the label `{label}` encodes to no token after the prompt", i + 1);
            candidates.push((ids, start));
        }
        let longest = candidates.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0).max(prompt.len() + 1);
        anyhow::ensure!(
            longest < positions,
            "record {}: its prompt and a response take {longest} tokens; the model has {positions} positions",
            i + 1
        );
        items.push(Item { prompt, answer, candidates });
    }
    Ok(TaskFile { path: path.to_owned(), task: task_name(path), labels, items })
}

/// The task a file is of: its directory for LLM-Adapters' `dataset/<task>/test.json`, else its
/// name.
fn task_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match path.parent().and_then(Path::file_name) {
        Some(dir) if stem == "test" => dir.to_string_lossy().into_owned(),
        _ => stem,
    }
}

fn evaluate<B: AutodiffBackend>(device: B::Device, plan: &ChoicePlan) -> Result<Vec<TaskResult>, Failure> {
    let model = plan.model.load::<B::InnerBackend>(&device).map_err(|e| Failure::Input(e.context("loading the model")))?;
    let limits = Limits { max_new_tokens: plan.max_new_tokens, stop_ids: &plan.model.stop_ids };
    let mut tasks = Vec::with_capacity(plan.files.len());
    for file in &plan.files {
        let mut predictions = Vec::with_capacity(file.items.len());
        for (i, item) in file.items.iter().enumerate() {
            let nan = || {
                Failure::Run(anyhow::anyhow!("{} record {}: the model's logits are NaN (a diverged model?)", file.path.display(), i + 1))
            };
            let prediction = match plan.scoring {
                Scoring::Generate => {
                    let completion = match plan.beams {
                        Some(beams) => beam_search(&model, &item.prompt, &limits, beams, &device),
                        None => {
                            complete(&model, &item.prompt, &limits, &mut TokenPicker::new(Decoding::Greedy, 0), Caching::KvCache, &device)
                        }
                    }
                    .ok_or_else(nan)?;
                    let text = plan.model.tokenizer.decode(&completion.ids).map_err(|e| Failure::Run(e.into()))?;
                    let chosen = file.labels.first_match(&text);
                    Prediction {
                        answer: item.answer,
                        prediction: chosen,
                        correct: chosen == Some(item.answer),
                        text: Some(text),
                        log_likelihoods: None,
                    }
                }
                Scoring::Likelihood => {
                    let scores: Vec<f64> =
                        item.candidates.iter().map(|(ids, start)| log_likelihood(&model, ids, *start, &device)).collect();
                    if scores.iter().any(|s| s.is_nan()) {
                        return Err(nan());
                    }
                    // The first of equal scores, as an argmax.
                    let best = scores.iter().enumerate().fold(0, |best, (j, &s)| if s > scores[best] { j } else { best });
                    let chosen = file.labels.labels[best];
                    Prediction {
                        answer: item.answer,
                        prediction: Some(chosen),
                        correct: chosen == item.answer,
                        text: None,
                        log_likelihoods: Some(scores),
                    }
                }
            };
            predictions.push(prediction);
        }
        let correct = predictions.iter().filter(|p| p.correct).count();
        tasks.push(TaskResult {
            file: file.path.clone(),
            task: file.task.clone(),
            labels: file.labels.describe(),
            records: predictions.len(),
            correct,
            accuracy: correct as f64 / predictions.len().max(1) as f64,
            chance: 1.0 / file.labels.labels.len() as f64,
            predictions,
        });
    }
    Ok(tasks)
}

/// `Σ log p(ids[t] | ids[..t])` over the response's ids `ids[start..]` (`start ≥ 1`), from one
/// forward pass.
fn log_likelihood<B: Backend>(model: &Llama<B>, ids: &[u32], start: usize, device: &B::Device) -> f64 {
    let len = ids.len();
    let input: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [1, len]), device);
    let logits = model.forward(input).expect("task_file checked the length against the model's positions");
    // Positions start - 1 … len - 2 predict the response's ids.
    let response = &ids[start..];
    let predicting = logits.narrow(1, start - 1, response.len());
    let targets: Vec<i64> = response.iter().map(|&id| i64::from(id)).collect();
    let targets = Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [1, response.len(), 1]), device);
    let chosen = log_softmax(predicting, 2).gather(2, targets);
    chosen.sum().into_data().convert::<f64>().to_vec::<f64>().expect("a scalar")[0]
}

/// The accuracies as a markdown table, one row per file and their average.
fn markdown(tasks: &[TaskResult], average: f64) -> String {
    let mut table = String::from("| task | records | correct | accuracy | chance |\n|---|--:|--:|--:|--:|\n");
    for task in tasks {
        table += &format!(
            "| {} | {} | {} | {:.2} % | {:.2} % |\n",
            task.task,
            task.records,
            task.correct,
            100.0 * task.accuracy,
            100.0 * task.chance
        );
    }
    let records: usize = tasks.iter().map(|t| t.records).sum();
    let correct: usize = tasks.iter().map(|t| t.correct).sum();
    table += &format!("| average | {records} | {correct} | {:.2} % | |\n", 100.0 * average);
    table
}
