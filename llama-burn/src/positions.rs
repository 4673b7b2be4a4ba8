//! [`Positions`]: where the tokens of one forward pass sit, shared by every layer.

use burn::tensor::backend::Backend;

use crate::causal_bias::CausalBias;
use crate::rope::{RotaryEmbedding, RotaryTables};

/// The rotary tables and the causal mask of `new` tokens that follow `past` positions already
/// seen (0 in training; the KV cache's length when generating).
#[derive(Clone, Debug)]
pub struct Positions<B: Backend> {
    /// The rotation of the query heads.
    pub rope_q: RotaryEmbedding<B>,
    /// The rotation of the key heads, fewer than the query heads under grouped-query attention:
    /// keys are rotated before they are repeated for their group (and cached unrepeated).
    pub rope_kv: RotaryEmbedding<B>,
    /// `None` for a single new token, which attends to every position before it.
    pub causal: Option<CausalBias<B>>,
}

/// The shape of the attention of one forward pass.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> Positions<B> {
    pub fn new(shape: AttentionShape, past: usize, new: usize, rope_theta: f64, device: &B::Device) -> Self {
        let AttentionShape { batch, heads, kv_heads, head_dim } = shape;
        let tables = RotaryTables::positions(past, new, head_dim, rope_theta, device);
        let rope_q = tables.for_heads(batch, heads);
        let rope_kv = if kv_heads == heads { rope_q.clone() } else { tables.for_heads(batch, kv_heads) };
        let causal = (new > 1).then(|| CausalBias::new(batch, heads, new, past, device));
        Self { rope_q, rope_kv, causal }
    }
}
