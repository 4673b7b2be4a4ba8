//! `metrics.jsonl`: one line per optimizer step (step, tokens, loss, lr, global gradient norm,
//! tokens/s) and one per validation, written by a Burn `MetricLogger` as the run goes, flushed
//! line by line so that a killed run keeps what it logged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use burn_train::logger::MetricLogger;
use burn_train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn_train::metric::{MetricDefinition, MetricId, NumericEntry};
use serde::{Deserialize, Serialize};

use super::grad_guard::GradNormLog;
use super::metrics::{LEARNING_RATE, LOSS, TOKENS_PER_SECOND};
use crate::data::loader::RunShape;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "split", rename_all = "lowercase")]
pub enum StepRecord {
    Train {
        step: usize,
        tokens: usize,
        loss: f64,
        lr: f64,
        grad_norm: Option<f64>,
        tokens_per_s: Option<f64>,
    },
    Valid {
        step: usize,
        tokens: usize,
        loss: f64,
        perplexity: f64,
    },
}

impl StepRecord {
    pub fn step(&self) -> usize {
        match self {
            Self::Train { step, .. } | Self::Valid { step, .. } => *step,
        }
    }
}

/// Reads `metrics.jsonl`. A torn last line (the process was killed mid-write) is dropped.
pub fn read_records(path: &Path) -> std::io::Result<Vec<StepRecord>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        match serde_json::from_str(&line?) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
    }
    Ok(records)
}

/// Keeps the records up to `step` (a resumed run continues from its checkpoint, and the steps
/// logged after it are redone), rewriting the file atomically.
pub fn truncate_records(path: &Path, step: usize) -> std::io::Result<()> {
    let kept: Vec<String> = read_records(path)?
        .into_iter()
        .filter(|r| r.step() <= step)
        .map(|r| serde_json::to_string(&r).expect("records serialise"))
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    std::fs::rename(tmp, path)
}

fn value(entry: &NumericEntry) -> (f64, usize) {
    match entry {
        NumericEntry::Value(v) => (*v, 1),
        NumericEntry::Aggregated { aggregated_value, count } => (*aggregated_value, *count),
    }
}

/// Sums over the micro-batches of one optimizer step, or over one validation.
#[derive(Default)]
struct Mean {
    weighted: f64,
    weight: usize,
}

impl Mean {
    fn add(&mut self, (v, w): (f64, usize)) {
        self.weighted += v * w as f64;
        self.weight += w;
    }

    fn take(&mut self) -> f64 {
        let mean = self.weighted / self.weight.max(1) as f64;
        *self = Self::default();
        mean
    }
}

/// The Burn `MetricLogger` writing `metrics.jsonl`.
pub struct StepLog {
    path: PathBuf,
    file: File,
    shape: RunShape,
    names: HashMap<MetricId, String>,
    norms: GradNormLog,
    /// Micro-batches logged over the whole run (a resumed run starts at its checkpoint's).
    micro_batches: usize,
    loss: Mean,
    rates: Mean,
    lr: f64,
    valid: Mean,
}

impl StepLog {
    /// Appends to `path` after `completed_steps` optimizer steps.
    pub fn open(path: &Path, shape: RunShape, completed_steps: usize, norms: GradNormLog) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            shape,
            names: HashMap::new(),
            norms,
            micro_batches: completed_steps * shape.micro_batches_per_step(),
            loss: Mean::default(),
            rates: Mean::default(),
            lr: f64::NAN,
            valid: Mean::default(),
        })
    }

    fn write(&mut self, record: &StepRecord) {
        let line = serde_json::to_string(record).expect("records serialise");
        if let Err(e) = writeln!(self.file, "{line}").and_then(|()| self.file.flush()) {
            log::error!("{}: cannot append the step record: {e}", self.path.display());
        }
    }

    fn step(&self) -> usize {
        self.micro_batches / self.shape.micro_batches_per_step()
    }
}

impl MetricLogger for StepLog {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        let mut loss = None;
        for numeric in &update.entries_numeric {
            let entry = value(&numeric.numeric_entry);
            match (self.names.get(&numeric.entry.metric_id).map(String::as_str), split) {
                (Some(LOSS), _) => loss = Some(entry),
                (Some(TOKENS_PER_SECOND), Split::Train) if entry.0.is_finite() => self.rates.add((entry.0, 1)),
                (Some(LEARNING_RATE), Split::Train) => self.lr = entry.0,
                _ => {}
            }
        }
        let Some(loss) = loss else { return };
        match split {
            Split::Valid => self.valid.add(loss),
            Split::Train => {
                self.loss.add(loss);
                self.micro_batches += 1;
                if self.micro_batches.is_multiple_of(self.shape.micro_batches_per_step()) {
                    let step = self.step();
                    let rate = (self.rates.weight > 0).then(|| self.rates.take());
                    let record = StepRecord::Train {
                        step,
                        tokens: step * self.shape.tokens_per_step(),
                        loss: self.loss.take(),
                        lr: self.lr,
                        grad_norm: self.norms.lock().expect("the norm log is never poisoned").pop_front(),
                        tokens_per_s: rate,
                    };
                    self.write(&record);
                }
            }
            Split::Test(_) => {}
        }
    }

    fn read_numeric(&mut self, name: &str, epoch: usize, _split: &Split) -> Result<Vec<NumericEntry>, String> {
        Err(format!("the step log does not keep `{name}` per epoch ({epoch}); see metrics.jsonl"))
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if summary.split == Split::Valid && self.valid.weight > 0 {
            let step = self.step();
            let loss = self.valid.take();
            let record = StepRecord::Valid { step, tokens: step * self.shape.tokens_per_step(), loss, perplexity: loss.exp() };
            self.write(&record);
        }
    }
}
