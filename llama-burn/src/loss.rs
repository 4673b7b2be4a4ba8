//! The causal language-modelling loss of the GaLore/Fira scripts (HF `LlamaForCausalLM(labels=…)`),
//! which targets count in it ([`LossTargets`]), and the targets it shares with the loss fused with
//! `lm_head` (`vocab_loss`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, backend::Backend};

/// Which next-token targets of a batch count in the loss: HF's `labels`, where `-100` leaves a
/// target out.
#[derive(Clone, Debug)]
pub enum LossTargets<B: Backend> {
    /// Every position after the first (HF `labels=input_ids`).
    All,
    /// Every target but those equal to this id: the GaLore/Fira scripts' padding turned into
    /// `-100`.
    ExceptId(usize),
    /// `[B, T]`, aligned with the ids: whether `ids[b, t]` counts as a target (column 0 never
    /// does, nothing predicts it). Instruction tuning counts the response only, and padding that
    /// shares its id with a counted end-of-text token is left out here, which no id rule can do.
    Mask(Tensor<B, 2, Bool>),
}

/// Mean next-token cross-entropy: position `t` predicts `ids[:, t+1]`; the targets `targets`
/// leaves out count in neither the sum nor the count (HF's `-100` labels).
///
/// Burn's `CrossEntropyLoss` with `pad_tokens` zeroes padded terms but still divides by every
/// position, which is not HF's mean, hence this function. A batch none of whose targets counts
/// has loss 0 (and zero gradients) instead of NaN.
///
/// # Panics
/// If the sequence is shorter than 2 tokens (there is no target), or a mask is not `[B, T]`.
pub fn causal_lm_loss<B: Backend>(logits: Tensor<B, 3>, input_ids: Tensor<B, 2, Int>, targets: &LossTargets<B>) -> Tensor<B, 1> {
    let (predictions, target_ids) = shifted(logits, input_ids);
    let weights = target_weights(&target_ids, targets);
    (log_softmax(predictions, 1).gather(1, target_ids) * weights).sum().neg()
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

/// Each shifted target's weight in the mean, `[rows, 1]`: `1 / rows` when all count; otherwise 1
/// for a target that counts and 0 for one that does not, over their count, clamped to 1 so that
/// a batch with none has loss 0.
///
/// # Panics
/// If a mask is not the shape of the ids the targets were shifted from.
pub(crate) fn target_weights<B: Backend>(target_ids: &Tensor<B, 2, Int>, targets: &LossTargets<B>) -> Tensor<B, 2> {
    let [rows, _] = target_ids.dims();
    let keep = match targets {
        LossTargets::All => return Tensor::full([rows, 1], 1.0 / rows as f64, &target_ids.device()),
        LossTargets::ExceptId(id) => target_ids.clone().not_equal_elem(*id as i64).float(),
        LossTargets::Mask(mask) => {
            let [batch, seq] = mask.dims();
            assert_eq!(batch * (seq - 1), rows, "a loss mask [{batch}, {seq}] does not fit {rows} shifted targets");
            mask.clone().narrow(1, 1, seq - 1).reshape([rows, 1]).float()
        }
    };
    keep.clone() / keep.sum().clamp_min(1.0).reshape([1, 1])
}
