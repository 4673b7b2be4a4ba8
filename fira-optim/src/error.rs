//! Typed errors of the optimizer crate.

use thiserror::Error;

/// Everything that can be wrong with a configuration or a parameter selection.
///
/// Raised when an optimizer is built, never in the middle of a training step.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FiraError {
    /// `rank` must be at least 1.
    #[error("rank must be at least 1 (got 0)")]
    ZeroRank,
    /// `update_proj_gap` must be at least 1: the projector is refreshed every T steps.
    #[error("update_proj_gap must be at least 1 (got 0)")]
    ZeroProjectionGap,
    /// `alpha` scales the low-rank update and must be a positive finite number.
    #[error("alpha must be a positive finite number (got {0})")]
    InvalidAlpha(f64),
    /// The norm-growth limiter's `gamma` must be at least 1 (1.01 in the paper).
    #[error("limiter gamma must be a finite number >= 1 (got {0})")]
    InvalidGamma(f64),
    /// Adam's betas must lie in `[0, 1)`.
    #[error("{name} must lie in [0, 1) (got {value})")]
    InvalidBeta {
        /// `beta_1` or `beta_2`.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `epsilon` must be a non-negative finite number.
    #[error("epsilon must be a non-negative finite number (got {0})")]
    InvalidEpsilon(f64),
    /// `weight_decay` must be a non-negative finite number.
    #[error("weight_decay must be a non-negative finite number (got {0})")]
    InvalidWeightDecay(f64),
    /// Fira needs one projection side to define the residual; `full` is GaLore-only.
    #[error("proj_type `full` projects on both sides and is only defined for GaLore, not Fira (spec: the official Fira raises on it)")]
    FullProjectionWithFira,
    /// The randomized solver needs at least one power iteration or some oversampling.
    #[error("randomized solver: oversampling + power_iterations must be > 0 for a useful sketch")]
    DegenerateRandomizedSolver,
    /// A target-module pattern is not a valid regular expression.
    #[error("invalid target-module pattern `{pattern}`: {message}")]
    InvalidTargetPattern {
        /// The rejected pattern.
        pattern: String,
        /// What the regex parser said.
        message: String,
    },
    /// No 2-D parameter of the model matched the target patterns: the run would silently be AdamW.
    #[error(
        "no 2-D parameter matches the target modules {patterns:?}; the optimizer would silently be AdamW. \
         Parameter paths of this model start with: {examples}"
    )]
    NothingSelected {
        /// The target patterns.
        patterns: Vec<String>,
        /// A few parameter paths of the model, to help fix the patterns.
        examples: String,
    },
    /// The scaling probe records every `every` steps and at least one column.
    #[error("scaling probe: {name} must be at least 1 (got 0)")]
    ZeroProbeSetting {
        /// `every` or `columns`.
        name: &'static str,
    },
}
