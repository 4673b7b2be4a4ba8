//! The exact solver: a float32 thin SVD on the host, as the official code (`torch.linalg.svd`).

use burn::tensor::{Tensor, backend::Backend};
use faer::Mat;

use super::{SubspaceError, SubspaceSolver, projector_from_vectors, to_device, to_host};
use crate::projector::{ProjectionSide, Projector};

/// Thin SVD of the gradient in float32 on the host with `faer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactSvd {
    /// Apply [`canonical_column_signs`](super::canonical_column_signs) to the kept vectors.
    pub canonical_signs: bool,
}

impl<B: Backend> SubspaceSolver<B> for ExactSvd {
    fn solve(&self, grad: Tensor<B, 2>, rank: usize, side: ProjectionSide) -> Result<Projector<B>, SubspaceError> {
        let [m, n] = grad.dims();
        let device = grad.device();
        let host: Vec<f32> = to_host(grad);
        let matrix = Mat::<f32>::from_fn(m, n, |i, j| host[i * n + j]);
        let svd = matrix.thin_svd().map_err(|_| SubspaceError::NoConvergence { rows: m, cols: n })?;

        // Keep the `rank` largest singular values, whatever order the library returns them in.
        let singular = svd.S().column_vector();
        let mut order: Vec<usize> = (0..m.min(n)).collect();
        order.sort_by(|&a, &b| singular[b].total_cmp(&singular[a]));
        order.truncate(rank.min(m).min(n));
        let r = order.len();

        let (u, v) = (svd.U(), svd.V());
        let gather = |rows: usize, column_of: &dyn Fn(usize, usize) -> f32| {
            let values = (0..rows * r).map(|k| column_of(k / r, order[k % r])).collect();
            to_device::<B>(values, rows, r, &device)
        };
        Ok(projector_from_vectors(side, || gather(m, &|i, j| u[(i, j)]), || gather(n, &|i, j| v[(i, j)]), self.canonical_signs))
    }
}
