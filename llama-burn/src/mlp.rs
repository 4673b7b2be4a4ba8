//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::init::linear;

/// `mlp` of an HF LLaMA layer.
#[derive(Module, Debug)]
pub struct SwiGluMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> SwiGluMlp<B> {
    pub(crate) fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Self {
            gate_proj: linear(LinearConfig::new(h, i), device),
            up_proj: linear(LinearConfig::new(h, i), device),
            down_proj: linear(LinearConfig::new(i, h), device),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
