//! Progress people can read when the output is not a terminal (CI logs, `| tee`): one line per
//! interval with step, loss, learning rate, tokens/s and ETA, and one per validation. On a
//! terminal the trainer uses Burn's TUI instead.

use std::collections::HashMap;
use std::time::Instant;

use burn_train::metric::{MetricDefinition, MetricId};
use burn_train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation, MetricsRendererTraining, ProgressType,
    TrainingProgress,
};

use super::metrics::{LEARNING_RATE, LOSS, STEP, TOKENS_PER_SECOND, weighted_value};
use super::step_clock::StepTally;
use crate::data::loader::RunShape;

/// Burn `MetricsRenderer` printing concise lines to stdout.
pub struct ProgressLines {
    shape: RunShape,
    /// Print every this many optimizer steps.
    every: usize,
    names: HashMap<MetricId, String>,
    started: Option<(Instant, usize)>,
    tally: StepTally,
    /// The step of the latest training item, and the newest step all of whose micro-batches
    /// were seen (what a validation follows).
    step: Option<usize>,
    last_complete: usize,
    loss: f64,
    lr: f64,
    rate: f64,
    valid_weighted: f64,
    valid_weight: usize,
}

impl ProgressLines {
    /// Lines every `every` steps of a run that starts after `completed_steps`.
    pub fn new(shape: RunShape, every: usize, completed_steps: usize) -> Self {
        Self {
            shape,
            every,
            names: HashMap::new(),
            started: None,
            tally: StepTally::new(shape.micro_batches_per_step()),
            step: None,
            last_complete: completed_steps,
            loss: f64::NAN,
            lr: f64::NAN,
            rate: f64::NAN,
            valid_weighted: 0.0,
            valid_weight: 0,
        }
    }

    fn numeric<'a>(&'a self, state: &'a MetricState) -> Option<(&'a str, f64, usize)> {
        let MetricState::Numeric(entry, numeric) = state else { return None };
        let (value, weight) = weighted_value(numeric);
        Some((self.names.get(&entry.metric_id)?.as_str(), value, weight))
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s / 60 % 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

impl MetricsRendererTraining for ProgressLines {
    fn update_train(&mut self, state: MetricState) {
        if let Some((name, value, _)) = self.numeric(&state) {
            match name {
                LOSS => self.loss = value,
                STEP if value.is_finite() => self.step = Some(value as usize),
                LEARNING_RATE => self.lr = value,
                TOKENS_PER_SECOND if value.is_finite() => self.rate = value,
                _ => {}
            }
        }
    }

    fn update_valid(&mut self, state: MetricState) {
        if let Some((LOSS, value, weight)) = self.numeric(&state) {
            self.valid_weighted += value * weight as f64;
            self.valid_weight += weight;
        }
    }

    fn render_train(&mut self, _item: TrainingProgress, _indicators: Vec<ProgressType>) {
        let Some(step) = self.step.take() else { return };
        if !self.tally.count(step) {
            return;
        }
        self.last_complete = self.last_complete.max(step);
        let (started, first) = *self.started.get_or_insert((Instant::now(), step));
        let total = self.shape.total_steps;
        if step % self.every != 0 && step != total {
            return;
        }
        let done = step.saturating_sub(first);
        let eta = if done > 0 { duration(started.elapsed().as_secs_f64() / done as f64 * (total - step) as f64) } else { "-".to_owned() };
        println!("step {step:>6}/{total}  loss {:.4}  lr {:.3e}  {:.0} tok/s  eta {eta}", self.loss, self.lr, self.rate);
    }

    fn render_valid(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        let Some(progress) = item.progress else { return };
        if progress.items_processed < progress.items_total || self.valid_weight == 0 {
            return;
        }
        let loss = self.valid_weighted / self.valid_weight as f64;
        let step = self.last_complete;
        println!("valid  step {step:>6}  loss {loss:.4}  perplexity {:.2}", loss.exp());
        self.valid_weighted = 0.0;
        self.valid_weight = 0;
    }

    fn on_train_end(&mut self, _summary: Option<burn_train::LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        // The trainer prints its own summary from metrics.jsonl.
        Ok(())
    }
}

/// Evaluation goes through `fira eval`'s own loop; Burn's evaluator never drives this renderer.
impl MetricsRendererEvaluation for ProgressLines {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn render_test(&mut self, _item: EvaluationProgress, _indicators: Vec<ProgressType>) {}
}

impl MetricsRenderer for ProgressLines {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
