//! The causal language-modelling loss of the GaLore/Fira scripts (HF `LlamaForCausalLM(labels=ids)`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, backend::Backend};

/// Mean next-token cross-entropy: position `t` predicts `ids[:, t+1]`; targets equal to
/// `pad_token_id` are left out of both the sum and the count (HF's `-100` labels).
///
/// Burn's `CrossEntropyLoss` with `pad_tokens` zeroes padded terms but still divides by every
/// position, which is not HF's mean, hence this function. A batch whose targets are all padding
/// has loss 0 (and zero gradients) instead of NaN.
///
/// # Panics
/// If the sequence is shorter than 2 tokens (there is no target).
pub fn causal_lm_loss<B: Backend>(logits: Tensor<B, 3>, input_ids: Tensor<B, 2, Int>, pad_token_id: Option<usize>) -> Tensor<B, 1> {
    let [batch, seq, vocab] = logits.dims();
    assert!(seq >= 2, "a causal LM loss needs sequences of at least 2 tokens, got {seq}");
    let rows = batch * (seq - 1);
    let predictions = logits.narrow(1, 0, seq - 1).reshape([rows, vocab]);
    let targets = input_ids.narrow(1, 1, seq - 1).reshape([rows, 1]);
    let log_likelihood = log_softmax(predictions, 1).gather(1, targets.clone()).reshape([rows]);
    match pad_token_id {
        None => log_likelihood.mean().neg(),
        Some(pad) => {
            let keep = targets.reshape([rows]).not_equal_elem(pad as i64).float();
            let count = keep.clone().sum().clamp_min(1.0);
            (log_likelihood * keep).sum().neg() / count
        }
    }
}
