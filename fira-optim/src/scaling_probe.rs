//! The scaling-factor probe of [`FiraOptimizer`](crate::FiraOptimizer): ψ of every targeted
//! matrix, recorded every few steps for the paper's similarity analysis (§4.1, Figure 3,
//! Appendix A.5–A.6, Tables 7–8). A full-rank AdamW run and a low-rank run of the same model
//! both record it, and `fira analyze scaling` compares the two orderings.
//!
//! The official analysis (`similarity/` of the Fira repository) logs every 20 steps the mean of
//! a matrix's column factors and the factors of 100 columns drawn once with replacement from the
//! first `min(m, n)` indices, the same draw for every matrix. Here each matrix gets its own
//! seeded draw without replacement from all of its columns (no duplicated pair inflates the
//! column-level correlation), and the Frobenius ratio ‖N‖/‖R‖ of the paper's definition is
//! recorded next to the column mean.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use hashbrown::HashMap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::optimizer::{Fira, FiraState};

/// What the probe records: every `every` steps of each matrix (its own step count, as the
/// official `state["step"] % 20`), the factors of `columns` sampled columns, drawn from `seed`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalingProbeConfig {
    /// Record at steps `every`, `2·every`, …
    pub every: usize,
    /// Columns (rows, for a right projection) sampled per matrix; all of them when it has fewer.
    pub columns: usize,
    /// Seed of the column draw; with the matrix's place in the model it fixes the columns, so
    /// two runs of one model with the same seed sample the same ones.
    pub seed: u64,
}

/// ψ of one matrix at one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingSample {
    /// The parameter's completed steps, this one included.
    pub step: usize,
    /// Dotted module path.
    pub path: String,
    /// Whether the matrix took the low-rank path (false: full-rank AdamW).
    pub projected: bool,
    /// ‖N‖_F / (‖R‖_F + 1e-8): the matrix-level factor as the paper defines it.
    pub matrix: f64,
    /// The mean of the column factors: the matrix-level value of the official analysis.
    pub column_mean: f64,
    /// Indices of the sampled columns, ascending.
    pub columns: Vec<usize>,
    /// Their factors, in the same order.
    pub column_factors: Vec<f64>,
}

/// Where the samples go (a file in the trainer, a vector in tests).
pub trait ScalingRecorder: Send + Sync {
    fn record(&self, sample: ScalingSample);
}

/// The probe attached to a module optimizer.
#[derive(Clone)]
pub(crate) struct ScalingProbe {
    config: ScalingProbeConfig,
    recorder: Arc<dyn ScalingRecorder>,
    /// The columns drawn for each matrix (by its index in the selection), on its first record.
    drawn: HashMap<usize, Vec<usize>>,
}

impl ScalingProbe {
    pub(crate) fn new(config: ScalingProbeConfig, recorder: Arc<dyn ScalingRecorder>) -> Self {
        Self { config, recorder, drawn: HashMap::new() }
    }

    /// Whether a parameter's step with this number (1-based) is recorded.
    pub(crate) fn records_step(&self, step: usize) -> bool {
        step.is_multiple_of(self.config.every)
    }

    /// Measures and records ψ of the step that turned `grad` into `state`; nothing for tensors
    /// that are not 2-D. One host read per matrix.
    pub(crate) fn record<B: Backend, const D: usize>(
        &mut self,
        fira: &Fira,
        index: usize,
        path: &str,
        projected: bool,
        grad: Tensor<B, D>,
        state: &FiraState<B, D>,
    ) {
        let Some(applied) = fira.applied_scaling(grad, state) else { return };
        let len = applied.columns.dims()[0];
        let config = self.config;
        let columns = self.drawn.entry(index).or_insert_with(|| draw_columns(config.seed, index, len, config.columns)).clone();
        let device = applied.columns.device();
        let indices: Vec<i64> = columns.iter().map(|&c| c as i64).collect();
        let indices = Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [columns.len()]), &device);
        let mean = applied.columns.clone().mean();
        let picked = applied.columns.select(0, indices);
        let values: Vec<f64> = Tensor::cat(vec![applied.matrix, mean, picked], 0).into_data().iter::<f64>().collect();
        self.recorder.record(ScalingSample {
            step: state.step,
            path: path.to_owned(),
            projected,
            matrix: values[0],
            column_mean: values[1],
            columns,
            column_factors: values[2..].to_vec(),
        });
    }
}

/// `amount` distinct indices below `len`, ascending, from the seed and the matrix's index alone.
fn draw_columns(seed: u64, index: usize, len: usize, amount: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(index as u64));
    let mut columns = rand::seq::index::sample(&mut rng, len, amount.min(len)).into_vec();
    columns.sort_unstable();
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_depends_on_seed_and_matrix_only_and_never_repeats_a_column() {
        let a = draw_columns(42, 3, 256, 100);
        assert_eq!(a, draw_columns(42, 3, 256, 100));
        assert_ne!(a, draw_columns(43, 3, 256, 100));
        assert_ne!(a, draw_columns(42, 4, 256, 100));
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[99] < 256, "{a:?}");
        assert_eq!(draw_columns(1, 0, 5, 100), [0, 1, 2, 3, 4]);
    }
}
