//! Initialisation of the GaLore/Fira scripts (HF `_init_weights`): linear and embedding weights
//! `N(0, initializer_range)`, no biases, RMSNorm weights 1.

use burn::module::Initializer;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::backend::Backend;

fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// A bias-free linear layer drawn from `N(0, std)`.
pub(crate) fn normal_linear<B: Backend>(config: LinearConfig, std: f64, device: &B::Device) -> Linear<B> {
    config.with_bias(false).with_initializer(normal(std)).init(device)
}

/// An embedding drawn from `N(0, std)`.
pub(crate) fn normal_embedding<B: Backend>(vocab: usize, hidden: usize, std: f64, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(vocab, hidden).with_initializer(normal(std)).init(device)
}

/// RMSNorm with weights 1 and the model's epsilon (Burn's default 1e-5 is not HF's 1e-6).
pub(crate) fn rms_norm<B: Backend>(hidden: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
    RmsNormConfig::new(hidden).with_epsilon(eps).init(device)
}
