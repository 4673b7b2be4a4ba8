//! Fira's residual `S = φ ⊙ (G − a·back(R))` (spec step 7), handled without forming it.
//!
//! φ scales whole columns (left projection) or rows (right), so it commutes with the
//! back-projection, `φ ⊙ back(X) = back(φ ⊙ X)`: the update needs one low-rank back-projection
//! (see `Fira::projected_step`), and the limiter only needs `‖S‖_F`, which the orthonormality of
//! the basis gives per column/row as `‖g − a·P r‖² = ‖g‖² − (2a − a²)‖r‖²` with `r = Pᵀ g`.

use burn::tensor::{Tensor, backend::Backend};

use crate::projector::ProjectionSide;

/// The axis along which one column (left) or row (right) of `G` meets its projection.
pub(crate) fn projection_axis(side: ProjectionSide) -> usize {
    match side {
        ProjectionSide::Left => 0,
        ProjectionSide::Right => 1,
        ProjectionSide::Both => unreachable!("Fira is validated never to project on both sides"),
    }
}

/// `‖φ ⊙ (G − a·back(R))‖_F` from `G` (PyTorch orientation), `R = project(G)` and φ
/// (broadcastable, `None` = 1), with `a = α` (official residual) or 1 (paper's).
///
/// Rounding can make a column's difference slightly negative when the residual is pure
/// noise (`r' = min(m, n)`, `a = 1`); those are clamped to 0.
pub fn residual_norm<B: Backend>(
    side: ProjectionSide,
    grad: &Tensor<B, 2>,
    projected: &Tensor<B, 2>,
    scaling: Option<&Tensor<B, 2>>,
    a: f64,
) -> Tensor<B, 1> {
    let axis = projection_axis(side);
    let full = grad.clone().square().sum_dim(axis);
    let captured = projected.clone().square().sum_dim(axis);
    let per_line = (full - captured.mul_scalar(2.0 * a - a * a)).clamp_min(0.0);
    let per_line = match scaling {
        Some(phi) => per_line * phi.clone().square(),
        None => per_line,
    };
    per_line.sum().sqrt()
}
