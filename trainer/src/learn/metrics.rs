//! The run's metrics for Burn's metric system: token-weighted loss, perplexity and throughput.
//! Burn's own `LossMetric` weights batches by rows; with padded rows that is not the mean over
//! targets the model is trained and compared on, hence these.

use std::sync::Arc;
use std::time::Instant;

use burn_train::metric::state::{FormatOptions, NumericMetricState};
use burn_train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};

use super::language_model::LmLoss;
use super::step_clock::StepTally;
use crate::data::loader::RunShape;

/// Metric names, shared with the step log and the progress lines.
pub const LOSS: &str = "Loss";
/// The optimizer step of the batch ([`StepMetric`]).
pub const STEP: &str = "Step";
pub const PERPLEXITY: &str = "Perplexity";
pub const TOKENS_PER_SECOND: &str = "Tokens/s";
/// Burn's `LearningRateMetric`'s name.
pub const LEARNING_RATE: &str = "Learning Rate";

impl Adaptor<LmLoss> for LmLoss {
    fn adapt(&self) -> LmLoss {
        *self
    }
}

/// A numeric entry as (value, weight): what the step log and the progress lines read.
pub fn weighted_value(entry: &NumericEntry) -> (f64, usize) {
    match entry {
        NumericEntry::Value(v) => (*v, 1),
        NumericEntry::Aggregated { aggregated_value, count } => (*aggregated_value, *count),
    }
}

fn lower_is_better() -> MetricAttributes {
    NumericAttributes { unit: None, higher_is_better: false }.into()
}

/// Mean loss per target.
#[derive(Clone)]
pub struct TokenLossMetric {
    name: MetricName,
    state: NumericMetricState,
}

impl Default for TokenLossMetric {
    fn default() -> Self {
        Self { name: Arc::new(LOSS.to_owned()), state: NumericMetricState::new() }
    }
}

impl Metric for TokenLossMetric {
    type Input = LmLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        lower_is_better()
    }

    fn update(&mut self, item: &LmLoss, _metadata: &MetricMetadata) -> SerializedEntry {
        self.state.update(item.loss, item.targets.max(1), FormatOptions::new(self.name()).precision(4))
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for TokenLossMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// `exp` of the mean loss per target; the running value is over the whole segment, the way
/// validation perplexity is reported.
#[derive(Clone)]
pub struct PerplexityMetric {
    name: MetricName,
    current: f64,
    nll: f64,
    targets: usize,
}

impl Default for PerplexityMetric {
    fn default() -> Self {
        Self { name: Arc::new(PERPLEXITY.to_owned()), current: f64::NAN, nll: 0.0, targets: 0 }
    }
}

impl PerplexityMetric {
    fn running(&self) -> f64 {
        (self.nll / self.targets.max(1) as f64).exp()
    }
}

impl Metric for PerplexityMetric {
    type Input = LmLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        lower_is_better()
    }

    fn update(&mut self, item: &LmLoss, _metadata: &MetricMetadata) -> SerializedEntry {
        self.current = item.loss.exp();
        self.nll += item.loss * item.targets as f64;
        self.targets += item.targets;
        SerializedEntry::new(format!("{PERPLEXITY} {:.2} (running {:.2})", self.current, self.running()), self.current.to_string())
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Numeric for PerplexityMetric {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Value(self.running())
    }
}

/// The optimizer step a training batch belongs to, so that the step log and the progress lines
/// (which run behind the learner, on Burn's event thread) label each value with its own step.
#[derive(Clone)]
pub struct StepMetric {
    name: MetricName,
    step: Option<usize>,
}

impl Default for StepMetric {
    fn default() -> Self {
        Self { name: Arc::new(STEP.to_owned()), step: None }
    }
}

impl StepMetric {
    fn entry(&self) -> NumericEntry {
        NumericEntry::Value(self.step.map_or(f64::NAN, |s| s as f64))
    }
}

impl Metric for StepMetric {
    type Input = LmLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: true }.into()
    }

    fn update(&mut self, item: &LmLoss, _metadata: &MetricMetadata) -> SerializedEntry {
        self.step = item.step;
        let text = self.step.map_or_else(|| "-".to_owned(), |s| s.to_string());
        SerializedEntry::new(format!("{STEP} {text}"), text)
    }

    fn clear(&mut self) {
        self.step = None;
    }
}

impl Numeric for StepMetric {
    fn value(&self) -> NumericEntry {
        self.entry()
    }

    fn running_value(&self) -> NumericEntry {
        self.entry()
    }
}

/// Tokens fed per second of wall time, measured per optimizer step: the tokens of its
/// micro-batches over the time since the previous step ended. The first step of each segment has
/// no measurement, so validation and checkpointing are not counted. Per step rather than per
/// micro-batch because data-parallel replicas hand their micro-batches over at the same instant.
/// In a `--nodes` run the nodes step in lockstep, each feeding as many tokens as this one, so the
/// run's rate is this node's times the node count.
#[derive(Clone)]
pub struct TokensPerSecondMetric {
    name: MetricName,
    state: NumericMetricState,
    /// Micro-batches seen of the steps under way, and their tokens.
    tally: StepTally,
    tokens: usize,
    previous_step_end: Option<Instant>,
    nodes: usize,
}

impl TokensPerSecondMetric {
    pub fn new(shape: &RunShape) -> Self {
        Self {
            name: Arc::new(TOKENS_PER_SECOND.to_owned()),
            state: NumericMetricState::new(),
            tally: StepTally::new(shape.micro_batches_per_step()),
            tokens: 0,
            previous_step_end: None,
            nodes: shape.nodes,
        }
    }
}

impl Metric for TokensPerSecondMetric {
    type Input = LmLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: Some("tok/s".to_owned()), higher_is_better: true }.into()
    }

    fn update(&mut self, item: &LmLoss, _metadata: &MetricMetadata) -> SerializedEntry {
        self.tokens += item.tokens;
        let completes = item.step.is_some_and(|step| self.tally.count(step));
        let rate = if completes {
            let now = Instant::now();
            let elapsed = self.previous_step_end.map_or(f64::NAN, |end| now.duration_since(end).as_secs_f64());
            let rate = (self.tokens * self.nodes) as f64 / elapsed;
            (self.previous_step_end, self.tokens) = (Some(now), 0);
            rate
        } else {
            f64::NAN
        };
        if rate.is_finite() {
            self.state.update(rate, 1, FormatOptions::new(self.name()).precision(0))
        } else {
            SerializedEntry::new(format!("{TOKENS_PER_SECOND} -"), "NaN".to_owned())
        }
    }

    fn clear(&mut self) {
        self.state.reset();
        self.tally.clear();
        (self.previous_step_end, self.tokens) = (None, 0);
    }
}

impl Numeric for TokensPerSecondMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}
