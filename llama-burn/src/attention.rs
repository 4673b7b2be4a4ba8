//! Causal self-attention with q/k/v/o projections, no bias, HF head layout: multi-head, or
//! grouped-query with fewer key/value heads (HF's `repeat_kv`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, backend::Backend};

use crate::causal_bias::CausalBias;
use crate::config::LlamaConfig;
use crate::init::linear;
use crate::rope::RotaryEmbedding;

/// `self_attn` of an HF LLaMA layer. Query head `n` owns features `n·d .. (n+1)·d` of q and
/// attends with key/value head `n / (num_heads / num_kv_heads)`, which owns the same features
/// of k and v.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    pub(crate) fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let (h, kv) = (config.hidden_size, config.kv_heads() * config.head_dim());
        let project = |d_out| linear(LinearConfig::new(h, d_out), device);
        Self {
            q_proj: project(h),
            k_proj: project(kv),
            v_proj: project(kv),
            o_proj: project(h),
            num_heads: config.num_attention_heads,
            num_kv_heads: config.kv_heads(),
        }
    }

    /// `x` `[B, T, H]` → `[B, T, H]`.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RotaryEmbedding<B>, causal: &CausalBias<B>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        // `[B, T, heads, head_dim]`: RoPE applies in this layout (contiguous), then the heads move
        // forward for the per-head matmuls.
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq, self.num_heads, head_dim]);
        // Key/value heads repeated for their group of query heads; the gradient of the repeat
        // sums the group's.
        let (kv_heads, group) = (self.num_kv_heads, self.num_heads / self.num_kv_heads);
        let split_kv = |t: Tensor<B, 3>| {
            let t = t.reshape([batch, seq, kv_heads, head_dim]);
            if group == 1 {
                return t;
            }
            let grouped: Tensor<B, 5> = t.reshape([batch, seq, kv_heads, 1, head_dim]);
            grouped.expand([batch, seq, kv_heads, group, head_dim]).reshape([batch, seq, self.num_heads, head_dim])
        };
        // softmax(q kᵀ / √d + causal) v, the scale applied to q (T/d times fewer elements than
        // the scores). Written out rather than Burn's `attention` op: under autodiff that op is
        // differentiated through a decomposition that masks and clamps the full scores.
        let q = (rope.apply(split(self.q_proj.forward(x.clone()))) * (1.0 / (head_dim as f64).sqrt())).swap_dims(1, 2);
        let k = rope.apply(split_kv(self.k_proj.forward(x.clone()))).swap_dims(1, 2);
        let v = split_kv(self.v_proj.forward(x)).swap_dims(1, 2);
        let scores = q.matmul(k.swap_dims(2, 3)) + causal.bias.clone();
        let context = softmax(scores, 3).matmul(v);
        self.o_proj.forward(context.swap_dims(1, 2).reshape([batch, seq, hidden]))
    }
}
