//! The causal language-modelling loss of the GaLore/Fira scripts (HF `LlamaForCausalLM(labels=ids)`),
//! and the targets it shares with the loss fused with `lm_head` (`vocab_loss`).

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
    let (predictions, targets) = shifted(logits, input_ids);
    let weights = target_weights(&targets, pad_token_id);
    (log_softmax(predictions, 1).gather(1, targets) * weights).sum().neg()
}

/// The rows that predict (`x[:, :-1]`, `[B·(T−1), W]`, of logits or hidden states) and their
/// targets (`ids[:, 1:]`, `[B·(T−1), 1]`).
///
/// # Panics
/// If the sequence is shorter than 2 tokens (there is no target).
pub(crate) fn shifted<B: Backend>(x: Tensor<B, 3>, input_ids: Tensor<B, 2, Int>) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let [batch, seq, width] = x.dims();
    assert!(seq >= 2, "a causal LM loss needs sequences of at least 2 tokens, got {seq}");
    let rows = batch * (seq - 1);
    (x.narrow(1, 0, seq - 1).reshape([rows, width]), input_ids.narrow(1, 1, seq - 1).reshape([rows, 1]))
}

/// Each target's weight in the mean, `[rows, 1]`: `1 / rows` without padding; with it, 1 for a
/// target that counts and 0 for padding, over their count, clamped to 1 so that an all-padding
/// batch has loss 0.
pub(crate) fn target_weights<B: Backend>(targets: &Tensor<B, 2, Int>, pad_token_id: Option<usize>) -> Tensor<B, 2> {
    let [rows, _] = targets.dims();
    match pad_token_id {
        None => Tensor::full([rows, 1], 1.0 / rows as f64, &targets.device()),
        Some(pad) => {
            let keep = targets.clone().not_equal_elem(pad as i64).float();
            keep.clone() / keep.sum().clamp_min(1.0).reshape([1, 1])
        }
    }
}
