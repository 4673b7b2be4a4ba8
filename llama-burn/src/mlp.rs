//! The SwiGLU MLP: `down(silu(gate(x)) · up(x))`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::init::linear;
use crate::lora::{LoraAdapter, Slot, adapted};

/// `mlp` of an HF LLaMA layer.
#[derive(Module, Debug)]
pub struct SwiGluMlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
    /// LoRA adapters beside the projections (`Llama::with_lora`); `None` in a plain model.
    pub gate_proj_lora: Option<LoraAdapter<B>>,
    pub up_proj_lora: Option<LoraAdapter<B>>,
    pub down_proj_lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> SwiGluMlp<B> {
    pub(crate) fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Self {
            gate_proj: linear(LinearConfig::new(h, i), device),
            up_proj: linear(LinearConfig::new(h, i), device),
            down_proj: linear(LinearConfig::new(i, h), device),
            gate_proj_lora: None,
            up_proj_lora: None,
            down_proj_lora: None,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gate = silu(adapted(&self.gate_proj, &self.gate_proj_lora, x.clone()));
        adapted(&self.down_proj, &self.down_proj_lora, gate * adapted(&self.up_proj, &self.up_proj_lora, x))
    }

    /// The projections with their adapter slots.
    pub(crate) fn slots(&mut self) -> [Slot<'_, B>; 3] {
        let Self { gate_proj, up_proj, down_proj, gate_proj_lora, up_proj_lora, down_proj_lora } = self;
        [("gate_proj", gate_proj, gate_proj_lora), ("up_proj", up_proj, up_proj_lora), ("down_proj", down_proj, down_proj_lora)]
    }

    pub(crate) fn adapters(&self) -> [&Option<LoraAdapter<B>>; 3] {
        [&self.gate_proj_lora, &self.up_proj_lora, &self.down_proj_lora]
    }
}
