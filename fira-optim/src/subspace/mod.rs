//! Subspace solvers: the top singular vectors that a projector refresh keeps (spec, "Projector").
//!
//! Burn 0.21 has no SVD, so [`ExactSvd`] copies the gradient to the host and uses `faer`;
//! [`RandomizedRangeFinder`] stays on the device except for `k×k` eigen-problems.

mod exact;
mod randomized;

pub use exact::ExactSvd;
pub use randomized::RandomizedRangeFinder;

use burn::tensor::{DType, Element, Tensor, TensorData, backend::Backend};
use thiserror::Error;

use crate::projector::{ProjectionSide, Projector};

/// Why a solver could not produce a basis.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SubspaceError {
    /// The dense decomposition did not converge.
    #[error("singular value decomposition of a {rows}x{cols} matrix did not converge")]
    NoConvergence {
        /// Rows of the decomposed matrix.
        rows: usize,
        /// Columns of the decomposed matrix.
        cols: usize,
    },
    /// A solver that replays recorded bases has none for this refresh.
    #[error("no basis available for this refresh: {0}")]
    Unavailable(String),
}

/// Computes the basis of a projector refresh.
///
/// Implement it to plug another solver (or recorded bases, as the golden tests do) into
/// [`Fira::step_with_solver`](crate::Fira::step_with_solver).
pub trait SubspaceSolver<B: Backend> {
    /// The top-`rank` singular vectors of `grad` (`m×n`, PyTorch orientation, finite) on `side`:
    /// left vectors as the columns of `P` (`m×rank`), right vectors as the rows of `Q` (`rank×n`).
    fn solve(&self, grad: Tensor<B, 2>, rank: usize, side: ProjectionSide) -> Result<Projector<B>, SubspaceError>;
}

/// The canonical sign rule: flip each column so that its entry of largest magnitude is positive.
///
/// The official code keeps moments across refreshes in the old coordinates, so the sign a
/// solver happens to pick changes the trajectory; a fixed rule makes runs agree across
/// backends and solvers.
pub fn canonical_column_signs<B: Backend>(basis: Tensor<B, 2>) -> Tensor<B, 2> {
    let pivot_rows = basis.clone().abs().argmax(0);
    let pivots = basis.clone().gather(0, pivot_rows);
    // A column whose largest entry is 0 is all zeros: any sign is fine, keep it.
    // (A fill, not an added `bool.float()`, which would take the device's default dtype.)
    let signs = pivots.clone().sign().mask_fill(pivots.equal_elem(0.0), 1.0);
    basis * signs
}

/// Assembles a projector from column-wise left vectors `u` (`m×r`) and column-wise right
/// vectors `v` (`n×r`), keeping only the factors `side` needs.
fn projector_from_vectors<B: Backend>(
    side: ProjectionSide,
    u: impl FnOnce() -> Tensor<B, 2>,
    v: impl FnOnce() -> Tensor<B, 2>,
    canonical_signs: bool,
) -> Projector<B> {
    let orient = |t: Tensor<B, 2>| if canonical_signs { canonical_column_signs(t) } else { t };
    match side {
        ProjectionSide::Left => Projector::left(orient(u())),
        ProjectionSide::Right => Projector::right(orient(v()).transpose()),
        ProjectionSide::Both => Projector::both(orient(u()), orient(v()).transpose()),
    }
}

/// Copies a 2-D tensor to the host, row-major, converting to `E`.
fn to_host<B: Backend, E: Element>(tensor: Tensor<B, 2>) -> Vec<E> {
    tensor.into_data().iter::<E>().collect()
}

/// Uploads a row-major host matrix to `device` as f32 (the solvers compute in f32 whatever the
/// device's default float dtype).
fn to_device<B: Backend>(values: Vec<f32>, rows: usize, cols: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), (device, DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray<f32>;

    #[test]
    fn canonical_signs_make_the_largest_entry_of_each_column_positive() {
        let device = Default::default();
        let basis = Tensor::<B, 2>::from_floats([[0.6, -0.1, 0.0], [-0.8, 0.3, 0.0], [0.0, -0.9, 0.0]], &device);
        let signed: Vec<f32> = canonical_column_signs(basis).into_data().iter::<f32>().collect();
        // Column 0 flips (its largest entry is -0.8), column 1 flips (-0.9), the zero column stays.
        assert_eq!(signed, vec![-0.6, 0.1, 0.0, 0.8, -0.3, 0.0, 0.0, 0.9, 0.0]);
    }
}
