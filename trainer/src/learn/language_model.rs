//! The training and validation steps of a causal language model: [`Llama`] behind Burn's
//! `TrainStep`/`InferenceStep`, with its loss.

use burn::module::Module;
use burn::tensor::ElementConversion;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_train::metric::ItemLazy;
use burn_train::{InferenceStep, TrainOutput, TrainStep};
use llama_burn::Llama;

use super::health::RunHealth;
use crate::data::loader::TokenBatch;

const SEQUENCE_CHECKED: &str = "sequence length checked before the run";

/// A [`Llama`] trained on next-token prediction.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub llama: Llama<B>,
    /// Micro-batches summed into one optimizer step (accumulation × data-parallel devices): Burn
    /// sums their gradients, so each loss is divided by it to get the gradient of the mean, as
    /// the PyTorch scripts' `loss / accum` and DDP's averaging do.
    #[module(skip)]
    pub micro_batches: usize,
    /// Where a non-finite validation loss is reported, so that the model is not checkpointed.
    #[module(skip)]
    pub health: RunHealth,
}

impl<B: Backend> CausalLm<B> {
    pub fn new(llama: Llama<B>, micro_batches: usize, health: RunHealth) -> Self {
        Self { llama, micro_batches, health }
    }

    /// Mean next-token loss of a batch, for validation. The sequence length was checked against
    /// the model's `max_position_embeddings` before the run, so the forward cannot fail here.
    pub fn loss(&self, batch: &TokenBatch<B>) -> burn::tensor::Tensor<B, 1> {
        self.llama.loss(batch.ids.clone(), &batch.loss_targets).expect(SEQUENCE_CHECKED)
    }
}

/// The loss of one batch, read back to the host once for the metrics.
#[derive(Clone, Debug)]
pub struct LmOutput<B: Backend> {
    pub loss: burn::tensor::Tensor<B, 1>,
    /// Targets that count in the loss.
    pub targets: usize,
    /// Tokens fed (rows × sequence length), for throughput.
    pub tokens: usize,
    /// The optimizer step of a training batch (`TokenBatch::step`).
    pub step: Option<usize>,
}

/// [`LmOutput`] on the host.
#[derive(Clone, Copy, Debug)]
pub struct LmLoss {
    pub loss: f64,
    pub targets: usize,
    pub tokens: usize,
    pub step: Option<usize>,
}

impl<B: Backend> ItemLazy for LmOutput<B> {
    type ItemSync = LmLoss;

    fn sync(self) -> LmLoss {
        LmLoss { loss: self.loss.into_scalar().elem(), targets: self.targets, tokens: self.tokens, step: self.step }
    }
}

fn output<B: Backend>(loss: burn::tensor::Tensor<B, 1>, batch: &TokenBatch<B>) -> LmOutput<B> {
    let [rows, seq_len] = batch.ids.dims();
    LmOutput { loss, targets: batch.targets, tokens: rows * seq_len, step: batch.step }
}

impl<B: AutodiffBackend> TrainStep for CausalLm<B> {
    type Input = TokenBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: TokenBatch<B>) -> TrainOutput<LmOutput<B>> {
        let loss = self.llama.training_loss(batch.ids.clone(), &batch.loss_targets).expect(SEQUENCE_CHECKED);
        let grads = (loss.clone() / self.micro_batches as f64).backward();
        TrainOutput::new(self, grads, output(loss.detach(), &batch))
    }
}

impl<B: Backend> InferenceStep for CausalLm<B> {
    type Input = TokenBatch<B>;
    type Output = LmOutput<B>;

    fn step(&self, batch: TokenBatch<B>) -> LmOutput<B> {
        let loss = self.loss(&batch);
        let value: f64 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            self.health.fail(format!("the validation loss is {value}: the model diverged (lower --lr?); it was not checkpointed"));
        }
        output(loss, &batch)
    }
}
