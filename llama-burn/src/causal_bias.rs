//! The causal mask of self-attention as an additive bias on the scores.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// `[B, heads, T, P + T]` for `T` queries after `P` cached positions: 0 where key `j ≤ P + i`
/// (query `i`'s own position), −∞ after it, added to the attention scores.
///
/// An additive bias is one element-wise add whose backward passes the gradient through unchanged;
/// Burn's `is_causal` decomposition masks with a boolean tensor expanded to the scores' full shape,
/// copied in the forward and again in the backward. The bias has the scores' full shape, built
/// once per forward and shared by every layer, because Flex adds a broadcast operand element by
/// element through a strided iterator, 6 % of a training step (docs/benchmarks.md, "attention").
/// Every row keeps its diagonal, so its maximum is finite and the softmax of a masked entry is
/// exactly 0, as with HF's mask.
#[derive(Clone, Debug)]
pub struct CausalBias<B: Backend> {
    pub bias: Tensor<B, 4>,
}

impl<B: Backend> CausalBias<B> {
    pub fn new(batch: usize, heads: usize, queries: usize, past: usize, device: &B::Device) -> Self {
        let keys = past + queries;
        let values: Vec<f32> =
            (0..queries).flat_map(|query| (0..keys).map(move |key| if key <= past + query { 0.0 } else { f32::NEG_INFINITY })).collect();
        let bias = Tensor::<B, 4>::from_data(TensorData::new(values, [1, 1, queries, keys]), device);
        Self { bias: bias.repeat(&[batch, heads, 1, 1]) }
    }
}
