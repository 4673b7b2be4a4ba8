//! Burn data loaders over token rows.
//!
//! LLM runs have no epochs, but Burn's `Learner` validates and checkpoints at the end of each
//! epoch. The trainer therefore makes one Burn "epoch" a *segment* of `--eval-every` optimizer
//! steps: each call to [`TrainBatches::iter`] draws the next segment's batches from one endless
//! [`RowStream`], so validation and checkpoints come every segment and a resumed run picks the
//! stream up where the checkpoint left it.

use std::sync::{Arc, Mutex};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use burn_train::Interrupter;
use llama_burn::LossTargets;

use super::DataError;
use super::rows::{Row, RowStream};
use crate::learn::step_clock::StepClock;

/// A batch of rows `[batch, seq_len]`, which of their targets count in the loss, and how many.
#[derive(Clone, Debug)]
pub struct TokenBatch<B: Backend> {
    pub ids: Tensor<B, 2, Int>,
    /// The rows' targets: all of them for packed rows, else a mask of each row's target range.
    pub loss_targets: LossTargets<B>,
    /// Targets that count in the loss.
    pub targets: usize,
    /// The optimizer step (1-based) a training batch is a micro-batch of; `None` for validation.
    pub step: Option<usize>,
}

impl<B: Backend> TokenBatch<B> {
    pub fn from_rows(rows: &[Row], step: Option<usize>, device: &B::Device) -> Self {
        let seq_len = rows[0].ids.len();
        let ids: Vec<i64> = rows.iter().flat_map(|row| &row.ids).map(|&id| i64::from(id)).collect();
        let ids = Tensor::from_data(TensorData::new(ids, [rows.len(), seq_len]), device);
        let targets = rows.iter().map(|row| row.targets.len()).sum();
        let loss_targets = if rows.iter().all(|row| row.targets == (1..seq_len)) {
            LossTargets::All
        } else {
            let mask: Vec<bool> = rows.iter().flat_map(|row| (0..seq_len).map(|t| row.targets.contains(&t))).collect();
            LossTargets::Mask(Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [rows.len(), seq_len]), device))
        };
        Self { ids, loss_targets, targets, step }
    }
}

/// The shape of a run in micro-batches, shared by the loader, the progress lines and the log.
#[derive(Clone, Copy, Debug)]
pub struct RunShape {
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Data-parallel replicas (devices), each taking a micro-batch per accumulation step.
    pub replicas: usize,
    /// Nodes (`--nodes`), each taking its share of every step's micro-batches.
    pub nodes: usize,
    /// Optimizer steps per segment (Burn epoch).
    pub segment_steps: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// Tokens per row.
    pub seq_len: usize,
}

impl RunShape {
    /// Micro-batches whose gradients one node sums into an optimizer step (the nodes' sums are
    /// then averaged).
    pub fn micro_batches_per_step(&self) -> usize {
        self.grad_accum * self.replicas
    }

    /// Rows of the data stream one optimizer step consumes, over all nodes.
    pub fn rows_per_step(&self) -> usize {
        self.batch_size * self.micro_batches_per_step() * self.nodes
    }

    pub fn segment_batches(&self) -> usize {
        self.segment_steps * self.micro_batches_per_step()
    }

    pub fn total_batches(&self) -> usize {
        self.total_steps * self.micro_batches_per_step()
    }

    /// Number of segments (Burn epochs); the last one may be shorter.
    pub fn segments(&self) -> usize {
        self.total_steps.div_ceil(self.segment_steps)
    }

    /// Optimizer steps completed at the end of segment `segment` (1-based).
    pub fn steps_after_segment(&self, segment: usize) -> usize {
        (segment * self.segment_steps).min(self.total_steps)
    }

    /// Tokens fed per optimizer step, over all nodes.
    pub fn tokens_per_step(&self) -> usize {
        self.rows_per_step() * self.seq_len
    }
}

/// Training batches: the next segment of an endless row stream at each `iter()`. In a `--nodes`
/// run node `node` takes micro-batch `node` of every `nodes` consecutive ones of the stream, so
/// that one step's micro-batches over all nodes are those one process would take in order
/// with `--grad-accum` multiplied by the node count.
pub struct TrainBatches<B: Backend> {
    stream: Arc<Mutex<RowStream>>,
    shape: RunShape,
    node: usize,
    /// Micro-batches already handed out, over the whole run.
    clock: StepClock,
    /// Micro-batches per segment for this loader (less than the run's on a sliced loader).
    segment_batches: usize,
    failure: Arc<Mutex<Option<DataError>>>,
    interrupter: Interrupter,
    device: B::Device,
}

impl<B: Backend> TrainBatches<B> {
    /// A loader claiming its micro-batches from `clock` (which starts after the completed
    /// steps: 0, or a resumed checkpoint's), with the stream already advanced past them. A data
    /// error that happens mid-run stops the run through `interrupter` and is kept in `failure`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: RowStream,
        shape: RunShape,
        node: usize,
        clock: StepClock,
        failure: Arc<Mutex<Option<DataError>>>,
        interrupter: Interrupter,
        device: B::Device,
    ) -> Self {
        let segment_batches = shape.segment_batches();
        Self { stream: Arc::new(Mutex::new(stream)), shape, node, clock, segment_batches, failure, interrupter, device }
    }

    /// This node's next micro-batch: the other nodes' rows around it are skipped.
    fn next_rows(&self) -> Result<Vec<Row>, DataError> {
        let batch = self.shape.batch_size;
        let mut stream = self.stream.lock().expect("the row stream lock is never poisoned");
        stream.skip(self.node * batch)?;
        let rows = (0..batch).map(|_| stream.next_row()).collect::<Result<Vec<_>, _>>()?;
        stream.skip((self.shape.nodes - 1 - self.node) * batch)?;
        Ok(rows)
    }

    fn with(&self, device: B::Device, segment_batches: usize) -> Self {
        Self {
            stream: Arc::clone(&self.stream),
            shape: self.shape,
            node: self.node,
            clock: self.clock.clone(),
            segment_batches,
            failure: Arc::clone(&self.failure),
            interrupter: self.interrupter.clone(),
            device,
        }
    }
}

struct SegmentIter<'a, B: Backend> {
    loader: &'a TrainBatches<B>,
    /// Micro-batches this iterator may still hand out.
    remaining: usize,
    done: usize,
    total: usize,
}

impl<B: Backend> Iterator for SegmentIter<'_, B> {
    type Item = TokenBatch<B>;

    fn next(&mut self) -> Option<TokenBatch<B>> {
        if self.remaining == 0 {
            return None;
        }
        let loader = self.loader;
        // Claim a micro-batch of the run; a data-parallel replica may claim some concurrently.
        let step = loader.clock.claim(loader.shape.total_batches())?;
        match loader.next_rows() {
            Ok(rows) => {
                self.remaining -= 1;
                self.done += 1;
                Some(TokenBatch::from_rows(&rows, Some(step), &loader.device))
            }
            Err(error) => {
                loader.interrupter.stop(Some(&format!("data error: {error}")));
                *loader.failure.lock().expect("the failure slot is never poisoned") = Some(error);
                self.remaining = 0;
                None
            }
        }
    }
}

impl<B: Backend> DataLoaderIterator<TokenBatch<B>> for SegmentIter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.done * self.loader.shape.batch_size, self.total * self.loader.shape.batch_size)
    }
}

impl<B: Backend> DataLoader<B, TokenBatch<B>> for TrainBatches<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<TokenBatch<B>> + 'a> {
        let left = self.shape.total_batches().saturating_sub(self.clock.claimed());
        let total = self.segment_batches.min(left);
        Box::new(SegmentIter { loader: self, remaining: total, done: 0, total })
    }

    fn num_items(&self) -> usize {
        self.segment_batches * self.shape.batch_size
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, TokenBatch<B>>> {
        Arc::new(self.with(device.clone(), self.segment_batches))
    }

    /// A replica's share of each segment (items are rows, as in [`DataLoader::num_items`]):
    /// replicas draw from the same stream, so together they see each batch once.
    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, TokenBatch<B>>> {
        let batches = (end.min(self.num_items()) - start.min(end)).div_ceil(self.shape.batch_size);
        Arc::new(self.with(self.device.clone(), batches))
    }
}

/// A fixed validation set, in order.
pub struct ValidBatches<B: Backend> {
    rows: Arc<Vec<Row>>,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> ValidBatches<B> {
    pub fn new(rows: Vec<Row>, batch_size: usize, device: B::Device) -> Self {
        Self { rows: Arc::new(rows), batch_size, device }
    }
}

struct ValidIter<'a, B: Backend> {
    loader: &'a ValidBatches<B>,
    position: usize,
}

impl<B: Backend> Iterator for ValidIter<'_, B> {
    type Item = TokenBatch<B>;

    fn next(&mut self) -> Option<TokenBatch<B>> {
        let rows = &self.loader.rows;
        if self.position >= rows.len() {
            return None;
        }
        let end = (self.position + self.loader.batch_size).min(rows.len());
        let batch = TokenBatch::from_rows(&rows[self.position..end], None, &self.loader.device);
        self.position = end;
        Some(batch)
    }
}

impl<B: Backend> DataLoaderIterator<TokenBatch<B>> for ValidIter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.position, self.loader.rows.len())
    }
}

impl<B: Backend> DataLoader<B, TokenBatch<B>> for ValidBatches<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<TokenBatch<B>> + 'a> {
        Box::new(ValidIter { loader: self, position: 0 })
    }

    fn num_items(&self) -> usize {
        self.rows.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, TokenBatch<B>>> {
        Arc::new(Self { rows: Arc::clone(&self.rows), batch_size: self.batch_size, device: device.clone() })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, TokenBatch<B>>> {
        let rows = self.rows[start.min(self.rows.len())..end.min(self.rows.len())].to_vec();
        Arc::new(Self::new(rows, self.batch_size, self.device.clone()))
    }
}
