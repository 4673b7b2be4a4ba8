//! The randomized solver: a range finder with power iterations (Halko, Martinsson & Tropp 2011,
//! Algorithms 4.4 and 5.1), made of matmuls on the device.
//!
//! Only `k×k` matrices (`k = rank + oversampling`) cross to the host: the Gram matrices whose
//! Cholesky factors orthonormalise each sketch, and the final Rayleigh–Ritz eigen-problem.

use burn::tensor::{Tensor, backend::Backend};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Mat, Par, Side};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

use super::{ExactSvd, SubspaceError, SubspaceSolver, projector_from_vectors, to_device, to_host};
use crate::projector::{ProjectionSide, Projector};

/// Diagonal shift of a sketch's Gram matrix, relative to its largest diagonal entry: about the
/// rounding noise of the float32 Gram product (16 ulp).
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
    fn solve(&self, grad: Tensor<B, 2>, rank: usize, side: ProjectionSide) -> Result<Projector<B>, SubspaceError> {
        let [m, n] = grad.dims();
        let rank = rank.min(m).min(n);
        // A sketch of a zero matrix spans nothing; any orthonormal basis is then as good as
        // another, and the exact solver returns one.
        if !has_energy(&grad) {
            let exact = ExactSvd { canonical_signs: self.canonical_signs };
            return exact.solve(grad, rank, side);
        }
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
        let top: Vec<f32> = (0..width * rank).map(|k| vectors[(k / rank, k % rank)] as f32).collect();
        Ok(basis.matmul(to_device::<B>(top, width, rank, &device)))
    }

    fn gaussian(&self, count: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        (0..count).map(|_| StandardNormal.sample(&mut rng)).collect()
    }
}

/// Orthonormal columns spanning `y`'s range by shifted CholeskyQR2 (Fukaya et al. 2020):
/// `YᵀY + sI = L Lᵀ`, `Q = Y L⁻ᵀ`, twice; the second pass repairs the float32 Gram's rounding.
/// The small shift `s` keeps the factorisation defined on rank-deficient sketches: directions
/// with no energy stay small instead of producing NaNs. Cholesky costs `k³/3` on the host,
/// a fraction of an eigen-decomposition.
fn orthonormalize<B: Backend>(y: Tensor<B, 2>) -> Result<Tensor<B, 2>, SubspaceError> {
    let mut q = y;
    for _ in 0..2 {
        let width = q.dims()[1];
        let gram: Vec<f64> = to_host(q.clone().transpose().matmul(q.clone()));
        let scale = (0..width).map(|i| gram[i * width + i]).fold(f64::MIN_POSITIVE, f64::max);
        let inverse = shifted_cholesky_inverse(&gram, width, scale)?;
        // (L⁻¹)ᵀ, row-major.
        let factor: Vec<f32> = (0..width * width).map(|k| inverse[(k % width, k / width)] as f32).collect();
        q = q.clone().matmul(to_device::<B>(factor, width, width, &q.device()));
    }
    Ok(q)
}

/// Whether any entry is non-zero (one scalar read).
fn has_energy<B: Backend>(grad: &Tensor<B, 2>) -> bool {
    let peak: f64 = to_host::<B, f64>(grad.clone().abs().max().reshape([1, 1]))[0];
    peak > 0.0
}

/// `L⁻¹` for `gram + sI = L Lᵀ`, growing the shift if rounding left the Gram indefinite.
fn shifted_cholesky_inverse(gram: &[f64], width: usize, scale: f64) -> Result<Mat<f64>, SubspaceError> {
    for growth in [1.0, 1e2, 1e4] {
        let shift = GRAM_FLOOR * scale * growth;
        let shifted =
            Mat::<f64>::from_fn(width, width, |i, j| 0.5 * (gram[i * width + j] + gram[j * width + i]) + if i == j { shift } else { 0.0 });
        if let Ok(llt) = shifted.llt(Side::Lower) {
            let mut inverse = Mat::<f64>::zeros(width, width);
            invert_lower_triangular(inverse.as_mut(), llt.L(), Par::Seq);
            return Ok(inverse);
        }
    }
    Err(SubspaceError::NoConvergence { rows: width, cols: width })
}

/// Eigen-decomposition of a small symmetric matrix on the host in double precision:
/// eigenvectors as columns and eigenvalues, both in decreasing order of eigenvalue.
fn symmetric_eigen<B: Backend>(gram: Tensor<B, 2>) -> Result<(Mat<f64>, Vec<f64>), SubspaceError> {
    let [k, _] = gram.dims();
    let host: Vec<f64> = to_host(gram);
    let matrix = Mat::<f64>::from_fn(k, k, |i, j| 0.5 * (host[i * k + j] + host[j * k + i]));
    let eigen = matrix.self_adjoint_eigen(Side::Lower).map_err(|_| SubspaceError::NoConvergence { rows: k, cols: k })?;
    let values = eigen.S().column_vector();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let vectors = Mat::from_fn(k, k, |i, j| eigen.U()[(i, order[j])]);
    Ok((vectors, order.iter().map(|&j| values[j]).collect()))
}
