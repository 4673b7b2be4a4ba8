//! [`NodeGradients`]: the mean of every node's gradients, one exchange per optimizer step (all
//! gradients flattened into one vector, in module order, which is the same on every node), and
//! the digests after the checkpointed steps.

use std::sync::Arc;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use super::Cluster;
use super::digest::{StateDigest, node_digest};
use crate::learn::checkpoints::CheckpointSchedule;

/// This node's part in the all-reduce of the gradients.
pub struct NodeGradients {
    cluster: Arc<Cluster>,
    checkpoints: CheckpointSchedule,
}

impl NodeGradients {
    pub fn new(cluster: Arc<Cluster>, checkpoints: CheckpointSchedule) -> Self {
        Self { cluster, checkpoints }
    }

    /// Every node's gradients of `module` averaged (each node's are already the mean over its
    /// own micro-batches, so this is the mean over all of the step's micro-batches).
    pub fn mean<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
    ) -> std::io::Result<GradientsParams> {
        struct Flatten<'a, B: AutodiffBackend> {
            grads: &'a mut GradientsParams,
            parts: Vec<Tensor<B::InnerBackend, 1>>,
            ids: Vec<ParamId>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                    self.parts.push(grad.reshape([-1]));
                    self.ids.push(param.id);
                }
            }
        }
        let mut flatten = Flatten::<B> { grads: &mut grads, parts: Vec::new(), ids: Vec::new() };
        module.visit(&mut flatten);
        let Flatten { parts, ids, .. } = flatten;
        if parts.is_empty() {
            return Ok(grads);
        }
        let flat = Tensor::cat(parts, 0);
        let (dtype, device) = (flat.dtype(), flat.device());
        let values = flat.into_data().convert::<f32>().into_vec::<f32>().expect("converted to f32");
        let count = values.len();
        let mean = self.cluster.exchange_mean(values)?;
        let reduced = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(mean, [count]).convert_dtype(dtype), &device);

        struct Unflatten<'a, B: AutodiffBackend> {
            grads: &'a mut GradientsParams,
            reduced: Tensor<B::InnerBackend, 1>,
            offset: usize,
            ids: &'a [ParamId],
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.ids.contains(&param.id) {
                    let shape = param.shape();
                    let end = self.offset + shape.num_elements();
                    self.grads.register::<B::InnerBackend, D>(param.id, self.reduced.clone().slice(self.offset..end).reshape(shape));
                    self.offset = end;
                }
            }
        }
        module.visit(&mut Unflatten::<B> { grads: &mut grads, reduced, offset: 0, ids: &ids });
        Ok(grads)
    }

    /// After optimizer step `step`: when it is checkpointed, this node's digests of the updated
    /// `module` and of the optimizer `record` go to node 0's `nodes.jsonl`.
    pub fn after_step<B: AutodiffBackend, M: AutodiffModule<B>, S: StateDigest<B>>(
        &self,
        step: usize,
        module: &M,
        record: impl FnOnce() -> S,
    ) {
        if self.checkpoints.after(step) {
            self.cluster.report(node_digest(self.cluster.rank, step, module, &record()));
        }
    }
}
