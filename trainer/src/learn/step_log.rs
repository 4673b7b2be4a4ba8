//! `metrics.jsonl`: one line per optimizer step (step, tokens, loss, lr, global gradient norm,
//! tokens/s) and one per validation, written by a Burn `MetricLogger` as the run goes, flushed
//! line by line so that a killed run keeps what it logged. Every value is filed under the step
//! it carries (the `Step` metric of its batch, the step the gradient guard measured a norm at),
//! so the order in which Burn delivers events cannot mislabel a record.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn_train::logger::MetricLogger;
use burn_train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn_train::metric::{MetricDefinition, MetricId, NumericEntry};
use serde::{Deserialize, Serialize};

use super::grad_guard::GradNorms;
use super::jsonl::{append_line, append_to, read_lines, retain_lines};
use super::metrics::{LEARNING_RATE, LOSS, STEP, TOKENS_PER_SECOND, weighted_value};
use super::step_clock::StepTally;
use crate::data::loader::RunShape;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "split", rename_all = "lowercase")]
pub enum StepRecord {
    Train { step: usize, tokens: usize, loss: f64, lr: f64, grad_norm: Option<f64>, tokens_per_s: Option<f64> },
    Valid { step: usize, tokens: usize, loss: f64, perplexity: f64 },
}

impl StepRecord {
    pub fn step(&self) -> usize {
        match self {
            Self::Train { step, .. } | Self::Valid { step, .. } => *step,
        }
    }
}

/// Reads `metrics.jsonl` (see [`read_lines`]).
pub fn read_records(path: &Path) -> std::io::Result<Vec<StepRecord>> {
    read_lines(path)
}

/// Keeps the records up to `step` (see [`retain_lines`]).
pub fn truncate_records(path: &Path, step: usize) -> std::io::Result<()> {
    retain_lines(path, |r: &StepRecord| r.step() <= step)
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

/// What is known of a step whose micro-batches are not all logged yet.
#[derive(Default)]
struct PendingStep {
    loss: Mean,
    rate: Option<f64>,
    lr: f64,
}

/// The Burn `MetricLogger` writing `metrics.jsonl`.
pub struct StepLog {
    path: PathBuf,
    file: File,
    shape: RunShape,
    names: HashMap<MetricId, String>,
    norms: GradNorms,
    pending: HashMap<usize, PendingStep>,
    tally: StepTally,
    /// The newest step written (a resumed run starts at its checkpoint's): validations follow it.
    last_step: usize,
    valid: Mean,
}

impl StepLog {
    /// Appends to `path` after `completed_steps` optimizer steps.
    pub fn open(path: &Path, shape: RunShape, completed_steps: usize, norms: GradNorms) -> std::io::Result<Self> {
        let file = append_to(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            shape,
            names: HashMap::new(),
            norms,
            pending: HashMap::new(),
            tally: StepTally::new(shape.micro_batches_per_step()),
            last_step: completed_steps,
            valid: Mean::default(),
        })
    }

    fn write(&mut self, record: &StepRecord) {
        if let Err(e) = append_line(&mut self.file, record) {
            log::error!("{}: cannot append the step record: {e}", self.path.display());
        }
    }
}

impl MetricLogger for StepLog {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        let (mut loss, mut step, mut rate, mut lr) = (None, None, None, None);
        for numeric in &update.entries_numeric {
            let entry = weighted_value(&numeric.numeric_entry);
            match self.names.get(&numeric.entry.metric_id).map(String::as_str) {
                Some(LOSS) => loss = Some(entry),
                Some(STEP) if entry.0.is_finite() => step = Some(entry.0 as usize),
                Some(TOKENS_PER_SECOND) if entry.0.is_finite() => rate = Some(entry.0),
                Some(LEARNING_RATE) => lr = Some(entry.0),
                _ => {}
            }
        }
        let Some(loss) = loss else { return };
        match split {
            Split::Valid => self.valid.add(loss),
            Split::Train => {
                let Some(step) = step else { return };
                let pending = self.pending.entry(step).or_default();
                pending.loss.add(loss);
                pending.rate = rate.or(pending.rate);
                pending.lr = lr.unwrap_or(pending.lr);
                if self.tally.count(step) {
                    let mut done = self.pending.remove(&step).expect("the step is pending");
                    let record = StepRecord::Train {
                        step,
                        tokens: step * self.shape.tokens_per_step(),
                        loss: done.loss.take(),
                        lr: done.lr,
                        grad_norm: self.norms.take(step),
                        tokens_per_s: done.rate,
                    };
                    self.write(&record);
                    self.last_step = self.last_step.max(step);
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
            let step = self.last_step;
            let loss = self.valid.take();
            let record = StepRecord::Valid { step, tokens: step * self.shape.tokens_per_step(), loss, perplexity: loss.exp() };
            self.write(&record);
        }
    }
}
