//! Causal self-attention with q/k/v/o projections, no bias, HF head layout: multi-head, or
//! grouped-query with fewer key/value heads (HF's `repeat_kv`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::init::linear;
use crate::lora::{LoraAdapter, Slot, adapted};
use crate::positions::Positions;

/// `self_attn` of an HF LLaMA layer. Query head `n` owns features `n·d .. (n+1)·d` of q and
/// attends with key/value head `n / (num_heads / num_kv_heads)`, which owns the same features
/// of k and v.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    /// LoRA adapters beside the projections (`Llama::with_lora`); `None` in a plain model.
    pub q_proj_lora: Option<LoraAdapter<B>>,
    pub k_proj_lora: Option<LoraAdapter<B>>,
    pub v_proj_lora: Option<LoraAdapter<B>>,
    pub o_proj_lora: Option<LoraAdapter<B>>,
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
            q_proj_lora: None,
            k_proj_lora: None,
            v_proj_lora: None,
            o_proj_lora: None,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.kv_heads(),
        }
    }

    /// `x` `[B, T, H]` → `[B, T, H]`.
    pub fn forward(&self, x: Tensor<B, 3>, positions: &Positions<B>) -> Tensor<B, 3> {
        let (q, k, v) = self.project(x, positions);
        self.attend(q, k, v, positions)
    }

    /// [`SelfAttention::forward`] of new tokens after the positions in `cache`, whose keys and
    /// values it extends with theirs.
    pub fn forward_cached(&self, x: Tensor<B, 3>, positions: &Positions<B>, cache: &mut Option<LayerCache<B>>) -> Tensor<B, 3> {
        let (q, k, v) = self.project(x, positions);
        let (k, v) = match cache.take() {
            Some(past) => (Tensor::cat(vec![past.keys, k], 1), Tensor::cat(vec![past.values, v], 1)),
            None => (k, v),
        };
        *cache = Some(LayerCache { keys: k.clone(), values: v.clone() });
        self.attend(q, k, v, positions)
    }

    /// The rotated queries (scaled by 1/√d, which costs T/d times fewer multiplies than scaling
    /// the scores) `[B, T, heads, d]`, rotated keys and values `[B, T, kv_heads, d]`. RoPE
    /// applies in this layout (contiguous) before the heads move forward for the matmuls.
    fn project(&self, x: Tensor<B, 3>, positions: &Positions<B>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let split = |t: Tensor<B, 3>, heads: usize| t.reshape([batch, seq, heads, head_dim]);
        let q = adapted(&self.q_proj, &self.q_proj_lora, x.clone());
        let q = positions.rope_q.apply(split(q, self.num_heads)) * (1.0 / (head_dim as f64).sqrt());
        let k = positions.rope_kv.apply(split(adapted(&self.k_proj, &self.k_proj_lora, x.clone()), self.num_kv_heads));
        let v = split(adapted(&self.v_proj, &self.v_proj_lora, x), self.num_kv_heads);
        (q, k, v)
    }

    /// `softmax(q kᵀ / √d + causal) v` of queries `[B, T, heads, d]` over keys and values
    /// `[B, S, kv_heads, d]`, projected by `o_proj` to `[B, T, H]`. Written out rather than Burn's
    /// `attention` op: under autodiff that op is differentiated through a decomposition that
    /// masks and clamps the full scores.
    fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, positions: &Positions<B>) -> Tensor<B, 3> {
        let [batch, seq, heads, head_dim] = q.dims();
        let q = q.swap_dims(1, 2);
        let k = self.repeat_kv(k).swap_dims(1, 2);
        let v = self.repeat_kv(v).swap_dims(1, 2);
        let scores = q.matmul(k.swap_dims(2, 3));
        let scores = match &positions.causal {
            Some(causal) => scores + causal.bias.clone(),
            None => scores,
        };
        let context = softmax(scores, 3).matmul(v);
        adapted(&self.o_proj, &self.o_proj_lora, context.swap_dims(1, 2).reshape([batch, seq, heads * head_dim]))
    }

    /// The projections with their adapter slots.
    pub(crate) fn slots(&mut self) -> [Slot<'_, B>; 4] {
        let Self { q_proj, k_proj, v_proj, o_proj, q_proj_lora, k_proj_lora, v_proj_lora, o_proj_lora, .. } = self;
        [("q_proj", q_proj, q_proj_lora), ("k_proj", k_proj, k_proj_lora), ("v_proj", v_proj, v_proj_lora), ("o_proj", o_proj, o_proj_lora)]
    }

    pub(crate) fn adapters(&self) -> [&Option<LoraAdapter<B>>; 4] {
        [&self.q_proj_lora, &self.k_proj_lora, &self.v_proj_lora, &self.o_proj_lora]
    }

    /// Key/value heads `[B, S, kv_heads, d]` repeated for their group of query heads
    /// `[B, S, heads, d]` (HF's `repeat_kv`); the gradient of the repeat sums the group's.
    fn repeat_kv(&self, t: Tensor<B, 4>) -> Tensor<B, 4> {
        let group = self.num_heads / self.num_kv_heads;
        if group == 1 {
            return t;
        }
        let [batch, seq, kv_heads, head_dim] = t.dims();
        let grouped: Tensor<B, 5> = t.reshape([batch, seq, kv_heads, 1, head_dim]);
        grouped.expand([batch, seq, kv_heads, group, head_dim]).reshape([batch, seq, self.num_heads, head_dim])
    }
}

/// The keys (rotated) and values of the positions a layer has seen, `[B, S, kv_heads, d]`: one
/// copy per key/value head, not per query head.
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
}

impl<B: Backend> LayerCache<B> {
    /// The cache of the batch rows `rows` `[n]`, in that order (a row may repeat).
    pub(crate) fn select(self, rows: Tensor<B, 1, Int>) -> Self {
        Self { keys: self.keys.select(0, rows.clone()), values: self.values.select(0, rows) }
    }
}
