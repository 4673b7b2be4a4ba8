//! The LLaMA of the GaLore and Fira experiments (HF `LlamaForCausalLM` as their scripts configure
//! it) on Burn, generic over the backend: presets 9M–7B, HF `config.json` and safetensors
//! import/export, training forward and the scripts' causal-LM loss (also fused with `lm_head`),
//! and incremental decoding with a KV cache.
//!
//! ```no_run
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::{Int, Tensor};
//! use llama_burn::{LlamaConfig, LossTargets};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let config = LlamaConfig::preset("20m").unwrap();
//! let model = config.init::<B>(42, &device).unwrap();
//! let ids = Tensor::<B, 2, Int>::zeros([2, 64], &device);
//! // The loss fused with lm_head (no full logits); `model.forward(ids)` gives the logits and
//! // `causal_lm_loss` their loss, the same value. Padding targets are left out as HF's -100 labels.
//! let targets = config.pad_token_id.map_or(LossTargets::All, LossTargets::ExceptId);
//! let loss = model.training_loss(ids, &targets).unwrap();
//! let grads = loss.backward();
//! ```
//!
//! Parameter paths (`layers.3.attn.q_proj.weight`, `layers.3.mlp.down_proj.weight`) contain
//! `attn` / `mlp`, so fira-optim's default target modules select exactly the paper's matrices.

mod attention;
mod causal_bias;
mod config;
mod error;
mod hf_config;
mod init;
mod kv_cache;
mod lora;
mod loss;
mod mlp;
mod model;
mod positions;
mod rope;
mod vocab_loss;
mod weights;

pub use attention::{LayerCache, SelfAttention};
pub use causal_bias::CausalBias;
pub use config::{LlamaConfig, ModelSpec, PRESETS, ParameterCount};
pub use error::LlamaError;
pub use kv_cache::KvCache;
pub use lora::{LORA_TARGETS, LoraAdapter, LoraConfig};
pub use loss::{LossTargets, causal_lm_loss};
pub use mlp::SwiGluMlp;
pub use model::{DecoderLayer, Llama};
pub use positions::{AttentionShape, Positions};
pub use rope::{RotaryEmbedding, RotaryTables};
pub use vocab_loss::{fused_causal_lm_loss, fused_causal_lm_training_loss};
pub use weights::hf_name;
