//! Fira's norm-based scaling φ of the residual (spec step 6; paper Eq. 6–7).

use burn::tensor::{Tensor, backend::Backend};

use crate::config::ScalingMode;
use crate::projector::ProjectionSide;
use crate::residual::projection_axis;

/// Fixed denominator guard of the official code (not Adam's ε).
const NORM_GUARD: f64 = 1e-8;

/// The scaling factors φ = ‖N‖ / (‖R‖ + 1e-8), shaped to broadcast over the `m×n` gradient:
/// `[1, n]` (one per column, left projection), `[m, 1]` (one per row, right projection) or
/// `[1, 1]` (matrix mode). `None` means φ = 1.
///
/// `direction` is Adam's low-rank `N = m ⊘ (√v + ε)`, `projected` the low-rank gradient `R`.
///
/// The official code picks the axis from `N`'s shape (fewer rows than columns → per column);
/// for every shape it accepts that is the side rule used here. When `N` is square (effective
/// rank equal to the un-projected dimension) the official rule would apply row norms of `N` as
/// column factors; the side rule keeps one factor per column or row of the gradient.
pub fn scaling_factors<B: Backend>(
    mode: ScalingMode,
    side: ProjectionSide,
    direction: &Tensor<B, 2>,
    projected: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    let ratio = |n: Tensor<B, 2>, r: Tensor<B, 2>| n.sqrt().div(r.sqrt().add_scalar(NORM_GUARD));
    let squares = || (direction.clone().square(), projected.clone().square());
    match mode {
        ScalingMode::None => None,
        ScalingMode::Matrix => {
            let (n, r) = squares();
            Some(ratio(n.sum().reshape([1, 1]), r.sum().reshape([1, 1])))
        }
        ScalingMode::Column => {
            // Left: R is r'×n, norms over its rows give one factor per column of G; right: the reverse.
            let axis = projection_axis(side);
            let (n, r) = squares();
            Some(ratio(n.sum_dim(axis), r.sum_dim(axis)))
        }
    }
}
