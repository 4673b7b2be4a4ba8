//! Incremental decoding: [`KvCache`] and [`Llama::forward_cached`], so that each generated token
//! costs one position instead of the whole sequence again.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::attention::LayerCache;
use crate::error::LlamaError;
use crate::model::Llama;

/// The keys and values every layer has computed for the positions seen so far (HF's
/// `past_key_values`), for one batch of sequences that grow together.
#[derive(Clone, Debug, Default)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache: the next forward starts at position 0.
    pub fn new() -> Self {
        Self { layers: Vec::new(), len: 0 }
    }

    /// Positions cached, i.e. the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the cached sequences `rows` of the batch, in that order, repeating a row that is
    /// listed twice (HF's `_reorder_cache`): beam search continues each beam from the sequence
    /// it extends.
    ///
    /// # Panics
    /// If a row is not in the batch.
    pub fn select_rows(&mut self, rows: &[usize], device: &B::Device) {
        let indices: Vec<i64> = rows.iter().map(|&row| row as i64).collect();
        let indices = Tensor::<B, 1, Int>::from_data(burn::tensor::TensorData::new(indices, [rows.len()]), device);
        for layer in &mut self.layers {
            *layer = layer.take().map(|cache| cache.select(indices.clone()));
        }
    }
}

impl<B: Backend> Llama<B> {
    /// Logits `[B, T, V]` of `input_ids` `[B, T]`, the tokens that follow the `cache.len()`
    /// positions of `cache` (an empty cache: the prompt), which then holds theirs too. The same
    /// logits as [`Llama::forward`] of the whole sequence at those positions, within float
    /// rounding (the attention sums over the same keys in another blocking). A sequence past
    /// `max_position_embeddings` is an error and leaves the cache as it was.
    pub fn forward_cached(&self, input_ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>, LlamaError> {
        let [batch, new] = input_ids.dims();
        let positions = self.positions(batch, cache.len, new, &input_ids.device())?;
        cache.layers.resize(self.layers.len(), None);
        let x = self.embed_tokens.forward(input_ids);
        let x = self.layers.iter().zip(&mut cache.layers).fold(x, |x, (layer, past)| layer.forward_cached(x, &positions, past));
        cache.len += new;
        Ok(self.logits(x))
    }
}
