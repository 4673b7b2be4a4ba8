//! The training loop's parts that plug into Burn's `Learner`: the model step, the optimizer
//! guard, the schedule, the metrics, the step and scaling logs, progress lines, checkpoints and the plot.

pub mod checkpoints;
pub mod grad_guard;
pub mod health;
pub mod jsonl;
pub mod language_model;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod scaling_log;
pub mod schedule;
pub mod step_clock;
pub mod step_log;
