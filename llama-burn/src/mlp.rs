//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::init::normal_linear;

/// `mlp` of an HF LLaMA layer.
#[derive(Module, Debug)]
pub struct SwiGluMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> SwiGluMlp<B> {
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let (h, i, std) = (config.hidden_size, config.intermediate_size, config.initializer_range);
        Self {
            gate_proj: normal_linear(LinearConfig::new(h, i), std, device),
            up_proj: normal_linear(LinearConfig::new(h, i), std, device),
            down_proj: normal_linear(LinearConfig::new(i, h), std, device),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
