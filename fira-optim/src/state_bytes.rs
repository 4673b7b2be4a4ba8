//! Optimizer-state bytes of a Burn adaptor record, whatever the rank of the tensor it belongs to:
//! one place that unpacks Burn's nine `AdaptorRecordV1::Rank0..Rank8` variants, for Fira's own
//! records and for Burn's AdamW (which `fira bench` measures next to it).

use burn::optim::record::{AdaptorRecord, AdaptorRecordV1};
use burn::optim::{AdamW, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::optimizer::Fira;

/// A per-tensor optimizer whose state can say how many bytes it holds.
pub trait StateBytes<B: Backend>: SimpleOptimizer<B> {
    /// Bytes held by the state of one parameter of rank `D`.
    fn state_bytes<const D: usize>(state: &Self::State<D>) -> usize;
}

impl<B: Backend> StateBytes<B> for Fira {
    fn state_bytes<const D: usize>(state: &Self::State<D>) -> usize {
        state.bytes()
    }
}

impl<B: Backend> StateBytes<B> for AdamW {
    fn state_bytes<const D: usize>(state: &Self::State<D>) -> usize {
        let momentum = &state.momentum;
        (momentum.moment_1.shape().num_elements() + momentum.moment_2.shape().num_elements()) * momentum.moment_1.dtype().size()
    }
}

/// Bytes held by one parameter's record.
pub fn record_bytes<O, B>(record: &AdaptorRecord<O, B>) -> usize
where
    B: AutodiffBackend,
    O: StateBytes<B::InnerBackend>,
{
    let AdaptorRecord::V1(record) = record;
    match record {
        AdaptorRecordV1::Rank0(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank1(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank2(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank3(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank4(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank5(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank6(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank7(state) => O::state_bytes(state),
        AdaptorRecordV1::Rank8(state) => O::state_bytes(state),
    }
}
