//! Adam's moments, shared by the AdamW path, GaLore and Fira (spec steps 3–5).

use burn::record::Record;
use burn::tensor::{Tensor, backend::Backend};

/// First and second moment estimates of one tensor: of the full gradient on the AdamW path,
/// of the projected gradient `R` for GaLore and Fira.
#[derive(Record, Clone)]
pub struct AdaptiveMoments<B: Backend, const D: usize> {
    /// `m`, exponential average of the gradient (`exp_avg`).
    pub first: Tensor<B, D>,
    /// `v`, exponential average of the squared gradient (`exp_avg_sq`).
    pub second: Tensor<B, D>,
}

impl<B: Backend, const D: usize> AdaptiveMoments<B, D> {
    /// Moves both moments to `device`.
    pub fn to_device(self, device: &B::Device) -> Self {
        Self { first: self.first.to_device(device), second: self.second.to_device(device) }
    }

    /// Bytes held by both moments.
    pub fn bytes(&self) -> usize {
        tensor_bytes(&self.first) + tensor_bytes(&self.second)
    }
}

/// Adam's hyper-parameters in the HF / official-GaLore convention: ε is added to the raw `√v`
/// and the bias correction is folded into the step size.
///
/// This is *not* `torch.optim.AdamW` (nor Burn's `AdamW`), which adds ε to the bias-corrected
/// `√v̂`; the two differ in the first steps, see the golden README's `torch_adamw` variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamMomentRule {
    /// β1.
    pub beta_1: f64,
    /// β2.
    pub beta_2: f64,
    /// ε, added to `√v`.
    pub epsilon: f64,
    /// Whether the step size carries the bias correction.
    pub correct_bias: bool,
}

impl AdamMomentRule {
    /// Spec step 3: `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g⊙g`, from zeros on the first step.
    pub fn update<B: Backend, const D: usize>(&self, moments: Option<AdaptiveMoments<B, D>>, grad: Tensor<B, D>) -> AdaptiveMoments<B, D> {
        let first_update = grad.clone().mul_scalar(1.0 - self.beta_1);
        let second_update = grad.square().mul_scalar(1.0 - self.beta_2);
        match moments {
            // β·0 + x == x exactly, so starting from the updates equals starting from zeros.
            None => AdaptiveMoments { first: first_update, second: second_update },
            Some(moments) => AdaptiveMoments {
                first: moments.first.mul_scalar(self.beta_1) + first_update,
                second: moments.second.mul_scalar(self.beta_2) + second_update,
            },
        }
    }

    /// Spec step 4: the normalised direction `N = m ⊘ (√v + ε)`, without bias correction.
    pub fn direction<B: Backend, const D: usize>(&self, moments: &AdaptiveMoments<B, D>) -> Tensor<B, D> {
        moments.first.clone().div(moments.second.clone().sqrt().add_scalar(self.epsilon))
    }

    /// Spec step 5: `η = lr · √(1−β2^t)/(1−β1^t)` on the host in double precision, `t` 1-based.
    pub fn step_size(&self, lr: f64, step: usize) -> f64 {
        if !self.correct_bias {
            return lr;
        }
        let t = step as f64;
        lr * (1.0 - self.beta_2.powf(t)).sqrt() / (1.0 - self.beta_1.powf(t))
    }
}

/// Bytes held by a tensor of the optimizer state.
pub(crate) fn tensor_bytes<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> usize {
    tensor.shape().num_elements() * tensor.dtype().size()
}
