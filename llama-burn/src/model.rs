//! [`Llama`]: token embedding, pre-norm decoder layers, final norm and `lm_head` (or the tied
//! embedding).

use burn::module::Module;
use burn::nn::{Embedding, Linear, LinearConfig, RmsNorm};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

use crate::attention::{LayerCache, SelfAttention};
use crate::config::LlamaConfig;
use crate::error::LlamaError;
use crate::init::{embedding, linear, rms_norm, seeded_normal};
use crate::lora::{LoraAdapter, Slot};
use crate::loss::LossTargets;
use crate::mlp::SwiGluMlp;
use crate::positions::{AttentionShape, Positions};
use crate::vocab_loss::{fused_causal_lm_loss, fused_causal_lm_training_loss};

/// One pre-norm decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
///
/// Field names give the parameter paths `layers.N.attn.q_proj.weight` and
/// `layers.N.mlp.down_proj.weight` that the paper's selection rule (`attn`, `mlp`) matches.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub attn: SelfAttention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: SwiGluMlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let norm = || rms_norm(config.hidden_size, config.rms_norm_eps, device);
        Self {
            input_layernorm: norm(),
            attn: SelfAttention::new(config, device),
            post_attention_layernorm: norm(),
            mlp: SwiGluMlp::new(config, device),
        }
    }

    /// `x` `[B, T, H]` → `[B, T, H]`, the residual stream after this layer.
    pub fn forward(&self, x: Tensor<B, 3>, positions: &Positions<B>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.input_layernorm.forward(x), positions);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }

    /// [`DecoderLayer::forward`] of new tokens after the positions of the layer's `cache`.
    pub fn forward_cached(&self, x: Tensor<B, 3>, positions: &Positions<B>, cache: &mut Option<LayerCache<B>>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward_cached(self.input_layernorm.forward(x), positions, cache);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }

    /// Every adaptable projection with its adapter slot, and the module (`attn`, `mlp`) it is in.
    pub(crate) fn projection_slots(&mut self) -> Vec<(&'static str, Slot<'_, B>)> {
        let attn = self.attn.slots().into_iter().map(|slot| ("attn", slot));
        attn.chain(self.mlp.slots().into_iter().map(|slot| ("mlp", slot))).collect()
    }

    /// The adapter slots of the layer's projections.
    pub(crate) fn adapters(&self) -> Vec<&Option<LoraAdapter<B>>> {
        self.attn.adapters().into_iter().chain(self.mlp.adapters()).collect()
    }
}

/// HF `LlamaForCausalLM` (see [`LlamaConfig`]), generic over the Burn backend.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// The output projection; `None` when it is the transposed embedding (tied).
    pub lm_head: Option<Linear<B>>,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
}

impl LlamaConfig {
    /// A freshly initialised model, the same for one `seed` on every backend (linear and
    /// embedding weights drawn on the host per parameter path, see `init.rs`); fails on an
    /// invalid configuration. The draws happen at first use, so a model whose weights are then
    /// loaded from a file never makes them.
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> Result<Llama<B>, LlamaError> {
        self.validate()?;
        let model = Llama {
            embed_tokens: embedding(self.vocab_size, self.hidden_size, device),
            layers: (0..self.num_hidden_layers).map(|_| DecoderLayer::new(self, device)).collect(),
            norm: rms_norm(self.hidden_size, self.rms_norm_eps, device),
            lm_head: (!self.tie_word_embeddings).then(|| linear(LinearConfig::new(self.hidden_size, self.vocab_size), device)),
            head_dim: self.head_dim(),
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
        };
        Ok(seeded_normal(model, seed, self.initializer_range))
    }
}

impl<B: Backend> Llama<B> {
    /// Logits `[B, T, V]` of the token ids `[B, T]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, LlamaError> {
        Ok(self.logits(self.hidden_states(input_ids, self.layers.len())?))
    }

    /// Logits `[B, T, V]` of the residual stream after the last layer: final norm, then the
    /// output projection.
    pub(crate) fn logits(&self, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.norm.forward(residual).matmul(self.output_weight().unsqueeze())
    }

    /// The output projection `[H, V]` (Burn's `Linear` layout): `lm_head`'s weight, or the
    /// transposed embedding of a tied model, whose gradient then reaches the embedding.
    pub fn output_weight(&self) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(lm_head) => lm_head.weight.val(),
            None => self.embed_tokens.weight.val().transpose(),
        }
    }

    /// The mean next-token loss of `input_ids` `[B, T]` ([`causal_lm_loss`](crate::causal_lm_loss)
    /// of the logits), computed with `lm_head` chunk by chunk so that the logits of the whole
    /// batch never exist: for evaluation (see [`Llama::training_loss`]).
    pub fn loss(&self, input_ids: Tensor<B, 2, Int>, targets: &LossTargets<B>) -> Result<Tensor<B, 1>, LlamaError> {
        Ok(fused_causal_lm_loss(self.final_hidden(input_ids.clone())?, self.output_weight(), input_ids, targets))
    }

    /// The normed residual stream after the last layer, `lm_head`'s input `[B, T, H]`.
    fn final_hidden(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, LlamaError> {
        Ok(self.norm.forward(self.hidden_states(input_ids, self.layers.len())?))
    }

    /// The residual stream after the first `layers` decoder layers (0 = the embeddings), not
    /// normed: HF's `hidden_states[layers]`, for debugging against a reference.
    pub fn hidden_states(&self, input_ids: Tensor<B, 2, Int>, layers: usize) -> Result<Tensor<B, 3>, LlamaError> {
        let [batch, seq] = input_ids.dims();
        let positions = self.positions(batch, 0, seq, &input_ids.device())?;
        let x = self.embed_tokens.forward(input_ids);
        Ok(self.layers.iter().take(layers).fold(x, |x, layer| layer.forward(x, &positions)))
    }

    /// The positions of `new` tokens per row after `past` ones; an error past
    /// `max_position_embeddings`.
    pub(crate) fn positions(&self, batch: usize, past: usize, new: usize, device: &B::Device) -> Result<Positions<B>, LlamaError> {
        if past + new > self.max_position_embeddings {
            return Err(LlamaError::SequenceTooLong { len: past + new, max: self.max_position_embeddings });
        }
        let heads = self.embed_tokens.weight.dims()[1] / self.head_dim;
        let kv_heads = self.layers.first().map_or(heads, |layer| layer.attn.num_kv_heads);
        let shape = AttentionShape { batch, heads, kv_heads, head_dim: self.head_dim };
        Ok(Positions::new(shape, past, new, self.rope_theta, device))
    }
}

impl<B: AutodiffBackend> Llama<B> {
    /// [`Llama::loss`] for training: the gradients of the loss with respect to `lm_head` and the
    /// final hidden states are computed chunk by chunk in this forward pass
    /// ([`fused_causal_lm_training_loss`]), the rest of the model's by autodiff.
    pub fn training_loss(&self, input_ids: Tensor<B, 2, Int>, targets: &LossTargets<B>) -> Result<Tensor<B, 1>, LlamaError> {
        let hidden = self.final_hidden(input_ids.clone())?;
        Ok(fused_causal_lm_training_loss(hidden, self.output_weight(), input_ids, targets))
    }
}
