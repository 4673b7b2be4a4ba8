//! The causal-LM loss fused with `lm_head`, computed over chunks of rows.
//!
//! [`causal_lm_loss`](crate::causal_lm_loss) takes the logits of the whole batch: at 16 × 256
//! tokens and a 32000-id vocabulary they are 500 MiB, and autodiff keeps their log-softmax and
//! the intermediates of its backward besides, several times that. Here each chunk of rows gets its
//! logits, their softmax (computed once, for the loss and for its gradient), the loss terms and the
//! gradients of the chunk's hidden states and of `lm_head`, and is dropped before the next: the
//! largest temporary is one chunk's logits.
//!
//! Training gets those gradients into Burn's autodiff without a custom backward op, so it runs on
//! every `AutodiffBackend`: the returned loss is `loss + s − detach(s)` with the surrogate
//! `s = Σ hidden ⊙ G_hidden + Σ W ⊙ G_W`, whose value adds 0 and whose gradients with respect to
//! the hidden states and `W` are exactly the precomputed `G_hidden` and `G_W` (scaled by whatever
//! gradient flows into the loss, as any other loss's would be).

use burn::tensor::IndexingUpdateOp;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

use crate::loss::{LossTargets, shifted, target_weights};

/// Logit elements of one chunk: 8 Mi f32 (32 MiB) keeps the chunk's matmuls large enough to run
/// at the kernels' full speed (rows per chunk: 256 at a 32000-id vocabulary) and the working set
/// small (docs/benchmarks.md, "the fused loss").
const CHUNK_ELEMENTS: usize = 1 << 23;

/// The mean next-token loss of the normed final hidden states `[B, T, H]` through `lm_head`
/// weights `[H, V]` (Burn's `Linear` layout), counting the targets of `targets`, as
/// [`causal_lm_loss`](crate::causal_lm_loss) of the logits: the value only, for evaluation.
/// On an autodiff backend its gradients are right but tracked chunk by chunk; train with
/// [`fused_causal_lm_training_loss`].
pub fn fused_causal_lm_loss<B: Backend>(
    hidden: Tensor<B, 3>,
    lm_head: Tensor<B, 2>,
    input_ids: Tensor<B, 2, Int>,
    targets: &LossTargets<B>,
) -> Tensor<B, 1> {
    let (rows, target_ids) = shifted(hidden, input_ids);
    let weights = target_weights(&target_ids, targets);
    let chunk = chunk_rows(&lm_head);
    vocab_pass(rows, lm_head, target_ids, weights, chunk, false).loss
}

/// [`fused_causal_lm_loss`] for training: its gradients with respect to the hidden states and
/// `lm_head` are computed in the forward pass, chunk by chunk, and reach autodiff through the
/// surrogate of the module documentation.
pub fn fused_causal_lm_training_loss<B: AutodiffBackend>(
    hidden: Tensor<B, 3>,
    lm_head: Tensor<B, 2>,
    input_ids: Tensor<B, 2, Int>,
    targets: &LossTargets<B>,
) -> Tensor<B, 1> {
    let chunk = chunk_rows(&lm_head);
    training_loss(hidden, lm_head, input_ids, targets, chunk)
}

fn training_loss<B: AutodiffBackend>(
    hidden: Tensor<B, 3>,
    lm_head: Tensor<B, 2>,
    input_ids: Tensor<B, 2, Int>,
    targets: &LossTargets<B>,
    chunk: usize,
) -> Tensor<B, 1> {
    let (rows, target_ids) = shifted(hidden, input_ids);
    let weights = target_weights(&target_ids, targets).inner();
    let pass = vocab_pass(rows.clone().inner(), lm_head.clone().inner(), target_ids.inner(), weights, chunk, true);
    let (d_rows, d_lm_head) = pass.gradients.expect("the pass was asked for gradients");
    let surrogate = (rows * Tensor::from_inner(d_rows)).sum() + (lm_head * Tensor::from_inner(d_lm_head)).sum();
    Tensor::from_inner(pass.loss) + surrogate.clone() - surrogate.detach()
}

fn chunk_rows<B: Backend>(lm_head: &Tensor<B, 2>) -> usize {
    (CHUNK_ELEMENTS / lm_head.dims()[1]).max(1)
}

/// The loss of one pass, and the gradients `(d rows, d lm_head)` if they were asked for.
struct VocabPass<B: Backend> {
    loss: Tensor<B, 1>,
    gradients: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
}

/// Per chunk of `chunk` rows: `logits = rows · W`, `lse = log Σ exp(logits)` (max-shifted), the
/// loss terms `lse − logits[target]`, and with `gradients` the logits' gradient
/// `(softmax − onehot(target)) · weight` (`weights`: `target_weights`), back through the matmul.
fn vocab_pass<B: Backend>(
    rows: Tensor<B, 2>,
    lm_head: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
    chunk: usize,
    gradients: bool,
) -> VocabPass<B> {
    let [row_count, _] = rows.dims();
    let mut loss: Option<Tensor<B, 1>> = None;
    let (mut d_rows, mut d_lm_head): (Vec<Tensor<B, 2>>, Option<Tensor<B, 2>>) = (Vec::new(), None);
    for start in (0..row_count).step_by(chunk) {
        let len = chunk.min(row_count - start);
        let x = rows.clone().narrow(0, start, len);
        let target = targets.clone().narrow(0, start, len);
        let weight = weights.clone().narrow(0, start, len);
        let logits = x.clone().matmul(lm_head.clone());
        let max = logits.clone().max_dim(1);
        let exp = (logits.clone() - max.clone()).exp();
        let total = exp.clone().sum_dim(1);
        let terms = (total.clone().log() + max - logits.gather(1, target.clone())) * weight.clone();
        let chunk_loss = terms.sum();
        loss = Some(match loss {
            Some(sum) => sum + chunk_loss,
            None => chunk_loss,
        });
        if gradients {
            let d_logits = (exp * (weight.clone() / total)).scatter(1, target, weight.neg(), IndexingUpdateOp::Add);
            d_rows.push(d_logits.clone().matmul(lm_head.clone().transpose()));
            let d_chunk = x.transpose().matmul(d_logits);
            d_lm_head = Some(match d_lm_head {
                Some(sum) => sum + d_chunk,
                None => d_chunk,
            });
        }
    }
    let loss = loss.expect("a batch has at least one target row");
    let gradients = d_lm_head.map(|d_lm_head| (Tensor::cat(d_rows, 0), d_lm_head));
    VocabPass { loss, gradients }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal_lm_loss;
    use burn::backend::Autodiff;
    use burn::tensor::{Bool, Distribution, TensorData, Tolerance};
    use burn_ndarray::NdArray;

    type B = Autodiff<NdArray>;

    /// Chunked in 4-row pieces (the last one short), the fused loss and its gradients equal
    /// `causal_lm_loss` of the full logits differentiated by autodiff, for every kind of `LossTargets`
    /// (an independent computation; f32, tolerance 1e-6 relative to each tensor's scale).
    #[test]
    fn chunked_loss_and_gradients_match_the_loss_of_the_logits() {
        let device = Default::default();
        let (batch, seq, width, vocab) = (2, 7, 5, 11);
        let ids_values: Vec<i64> = (0..batch * seq).map(|i| ((i * 7 + 3) % vocab) as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids_values, [batch, seq]), &device);
        let hidden = Tensor::<B, 3>::random([batch, seq, width], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let lm_head = Tensor::<B, 2>::random([width, vocab], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let alternate: Vec<bool> = (0..batch * seq).map(|i| i % 3 != 1).collect();
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(alternate, [batch, seq]), &device);
        for targets in [LossTargets::All, LossTargets::ExceptId(3), LossTargets::Mask(mask)] {
            let reference = causal_lm_loss(hidden.clone().matmul(lm_head.clone().unsqueeze()), ids.clone(), &targets);
            let fused = training_loss(hidden.clone(), lm_head.clone(), ids.clone(), &targets, 4);
            let scalar = |t: &Tensor<B, 1>| t.clone().into_scalar();
            assert!((scalar(&fused) - scalar(&reference)).abs() <= 1e-6 * scalar(&reference).abs(), "{targets:?}");
            let value_only = fused_causal_lm_loss(hidden.clone(), lm_head.clone(), ids.clone(), &targets);
            assert!((scalar(&value_only) - scalar(&reference)).abs() <= 1e-6 * scalar(&reference).abs(), "{targets:?}");

            let (expected, ours) = (reference.backward(), fused.backward());
            let scale = |t: TensorData| t.iter::<f32>().fold(0f32, |m, v| m.max(v.abs()));
            let hidden_expected = hidden.grad(&expected).unwrap().into_data();
            let tolerance = Tolerance::absolute(1e-6 * scale(hidden_expected.clone()));
            hidden.grad(&ours).unwrap().into_data().assert_approx_eq::<f32>(&hidden_expected, tolerance);
            let head_expected = lm_head.grad(&expected).unwrap().into_data();
            let tolerance = Tolerance::absolute(1e-6 * scale(head_expected.clone()));
            lm_head.grad(&ours).unwrap().into_data().assert_approx_eq::<f32>(&head_expected, tolerance);
        }
    }
}
