//! Fira's norm-growth limiter (spec step 8; paper Eq. 10).

use burn::tensor::{Tensor, backend::Backend};

/// Fixed denominator guard of the official code.
const NORM_GUARD: f64 = 1e-8;

/// Caps the relative growth of the residual's Frobenius norm between steps at `gamma`.
///
/// The stored norm stays on the device as a one-element tensor, so the limiter never forces a
/// device-to-host synchronisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGrowthLimiter {
    /// Largest allowed ratio `‖S_t‖ / ‖S_{t−1}‖` (1.01 in the official code).
    pub gamma: f64,
    /// Skip the limiter while the stored norm is exactly 0: after an all-zero residual the
    /// official rule divides by 1e-8 and shrinks the residual to ~1e-8 for hundreds of steps.
    pub zero_norm_guard: bool,
}

/// What the limiter decided for one step.
pub struct LimiterDecision<B: Backend> {
    /// The divisor `λ` to apply to the residual (1 when the limiter did not trigger).
    pub divisor: Tensor<B, 1>,
    /// The norm to store for the next step, `‖S‖ / λ`.
    pub norm: Tensor<B, 1>,
}

impl NormGrowthLimiter {
    /// From the residual's norm `‖S‖` and the stored norm: on the first step `λ = 1` and `‖S‖`
    /// is stored; later `λ = max(‖S‖/(prev+1e-8), γ)/γ` and `‖S‖/λ` is stored.
    /// Projector refreshes do not reset the stored norm.
    pub fn decide<B: Backend>(&self, norm: Tensor<B, 1>, previous: Option<Tensor<B, 1>>) -> LimiterDecision<B> {
        let Some(previous) = previous else {
            return LimiterDecision { divisor: norm.ones_like(), norm };
        };
        let growth = norm.clone().div(previous.clone().add_scalar(NORM_GUARD));
        let mut divisor = growth.clamp_min(self.gamma).div_scalar(self.gamma);
        if self.zero_norm_guard {
            divisor = divisor.clone().mask_where(previous.equal_elem(0.0), divisor.ones_like());
        }
        LimiterDecision { norm: norm.div(divisor.clone()), divisor }
    }
}
