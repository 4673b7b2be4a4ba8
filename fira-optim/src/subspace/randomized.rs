//! The randomized solver: a range finder with power iterations (Halko, Martinsson & Tropp 2011,
//! Algorithms 4.4 and 5.1), made of matmuls on the device.
//!
//! Only `k×k` matrices (`k = rank + oversampling`) cross to the host: the Gram matrices that
//! orthonormalise each sketch and the final Rayleigh–Ritz problem.

use burn::tensor::{Tensor, backend::Backend};
use faer::{Mat, Side};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

use super::{SubspaceError, SubspaceSolver, projector_from_vectors, to_device, to_host};
use crate::projector::{ProjectionSide, Projector};

/// Eigenvalues of a sketch's Gram matrix below this fraction of the largest are treated as
/// rounding noise of the float32 Gram product (about 16 ulp) and floored, not inverted.
const GRAM_FLOOR: f64 = 16.0 * f32::EPSILON as f64;

/// Randomized range finder with `power_iterations` subspace iterations and a Gaussian sketch of
/// `rank + oversampling` columns, drawn on the host from `seed` so every backend sketches alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomizedRangeFinder {
    /// Extra sketch columns beyond the rank.
    pub oversampling: usize,
    /// Subspace iterations, each re-orthonormalised.
    pub power_iterations: usize,
    /// Seed of the Gaussian sketch.
    pub seed: u64,
    /// Apply [`canonical_column_signs`](super::canonical_column_signs) to the kept vectors.
    pub canonical_signs: bool,
}

impl<B: Backend> SubspaceSolver<B> for RandomizedRangeFinder {
    fn solve(
        &self,
        grad: Tensor<B, 2>,
        rank: usize,
        side: ProjectionSide,
    ) -> Result<Projector<B>, SubspaceError> {
        let [m, n] = grad.dims();
        let rank = rank.min(m).min(n);
        // Right singular vectors of G are the left singular vectors of Gᵀ.
        let u = match side {
            ProjectionSide::Right => None,
            _ => Some(self.top_left_vectors(grad.clone(), rank)?),
        };
        let v = match side {
            ProjectionSide::Left => None,
            _ => Some(self.top_left_vectors(grad.transpose(), rank)?),
        };
        Ok(projector_from_vectors(
            side,
            || u.expect("left vectors are computed for left and two-sided projections"),
            || v.expect("right vectors are computed for right and two-sided projections"),
            self.canonical_signs,
        ))
    }
}

impl RandomizedRangeFinder {
    /// The top-`rank` left singular vectors of `a` as orthonormal columns.
    fn top_left_vectors<B: Backend>(&self, a: Tensor<B, 2>, rank: usize) -> Result<Tensor<B, 2>, SubspaceError> {
        let [rows, cols] = a.dims();
        let width = (rank + self.oversampling).min(rows).min(cols);
        let device = a.device();

        let sketch = to_device::<B>(self.gaussian(cols * width), cols, width, &device);
        let mut basis = orthonormalize(a.clone().matmul(sketch))?;
        for _ in 0..self.power_iterations {
            let co_basis = orthonormalize(a.clone().transpose().matmul(basis))?;
            basis = orthonormalize(a.clone().matmul(co_basis))?;
        }

        // Rayleigh–Ritz: with B = Qᵀa, the top eigenvectors W of B Bᵀ give a's vectors Q W.
        let reduced = basis.clone().transpose().matmul(a);
        let (vectors, _) = symmetric_eigen(reduced.clone().matmul(reduced.transpose()))?;
        let top: Vec<f32> = (0..width * rank)
            .map(|k| vectors[(k / rank, k % rank)] as f32)
            .collect();
        Ok(basis.matmul(to_device::<B>(top, width, rank, &device)))
    }

    fn gaussian(&self, count: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        (0..count).map(|_| StandardNormal.sample(&mut rng)).collect()
    }
}

/// Orthonormal columns spanning `y`'s range: `Q = Y V Λ^{-1/2}` from the eigen-decomposition
/// `YᵀY = V Λ Vᵀ`, twice (the second pass repairs the float32 Gram's rounding, as CholeskyQR2).
/// Unlike Cholesky it cannot fail on a rank-deficient sketch: directions with no energy are
/// floored and stay small instead of producing NaNs.
fn orthonormalize<B: Backend>(y: Tensor<B, 2>) -> Result<Tensor<B, 2>, SubspaceError> {
    let mut q = y;
    for _ in 0..2 {
        let width = q.dims()[1];
        let (vectors, values) = symmetric_eigen(q.clone().transpose().matmul(q.clone()))?;
        let floor = values[0].max(f64::MIN_POSITIVE) * GRAM_FLOOR;
        let whitening: Vec<f32> = (0..width * width)
            .map(|k| (vectors[(k / width, k % width)] / values[k % width].max(floor).sqrt()) as f32)
            .collect();
        q = q.clone().matmul(to_device::<B>(whitening, width, width, &q.device()));
    }
    Ok(q)
}

/// Eigen-decomposition of a small symmetric matrix on the host in double precision:
/// eigenvectors as columns and eigenvalues, both in decreasing order of eigenvalue.
fn symmetric_eigen<B: Backend>(gram: Tensor<B, 2>) -> Result<(Mat<f64>, Vec<f64>), SubspaceError> {
    let [k, _] = gram.dims();
    let host: Vec<f64> = to_host(gram);
    let matrix = Mat::<f64>::from_fn(k, k, |i, j| 0.5 * (host[i * k + j] + host[j * k + i]));
    let eigen = matrix
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| SubspaceError::NoConvergence { rows: k, cols: k })?;
    let values = eigen.S().column_vector();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let vectors = Mat::from_fn(k, k, |i, j| eigen.U()[(i, order[j])]);
    Ok((vectors, order.iter().map(|&j| values[j]).collect()))
}
