//! What shows that the nodes hold the same model: a digest of the weights and one of the
//! optimizer state, taken by every node after each checkpointed step and collected by node 0
//! into `nodes.jsonl` (one line per step, every node's digests and whether they agree).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::learn::jsonl::{append_line, append_to, retain_lines};

/// One node's digests after optimizer step `step` (FNV-1a 64, hexadecimal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDigest {
    pub node: usize,
    pub step: usize,
    /// Over every parameter's values, in module order.
    pub weights: String,
    /// Over every parameter's optimizer state, in module order (the state's keys, random
    /// parameter ids, left out).
    pub optimizer_state: String,
}

/// One line of `nodes.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDigests {
    pub step: usize,
    pub nodes: Vec<NodeDigest>,
    /// Whether every node's weights and optimizer state digests are the same.
    pub identical: bool,
}

/// FNV-1a, 64 bits: stable across processes and builds (std's hasher promises neither).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The parameter ids of `module` in visiting order (the same on every node).
fn param_ids<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// Digest of the values of every float parameter of `module`.
pub fn weights_digest<B: Backend, M: Module<B>>(module: &M) -> String {
    struct Values(Fnv);
    impl<B: Backend> ModuleVisitor<B> for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.write(&param.val().into_data().bytes);
        }
    }
    let mut values = Values(Fnv::new());
    module.visit(&mut values);
    values.0.hex()
}

/// An optimizer record keyed by parameter id (Burn's `OptimizerAdaptor` and fira-optim's
/// `FiraOptimizer` both are), digested in the module's parameter order.
pub trait StateDigest<B: Backend> {
    fn digest(&self, order: &[ParamId]) -> String;
}

impl<B: Backend, R: Record<B> + Clone> StateDigest<B> for HashMap<ParamId, R> {
    fn digest(&self, order: &[ParamId]) -> String {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let mut hash = Fnv::new();
        for state in order.iter().filter_map(|id| self.get(id)) {
            let bytes: Vec<u8> = Recorder::<B>::record(&recorder, state.clone(), ()).expect("an in-memory record serialises");
            hash.write(&bytes);
        }
        hash.hex()
    }
}

/// This node's digests of `module` and of its optimizer `record` after `step`.
pub fn node_digest<B: Backend, M: Module<B>, S: StateDigest<B>>(node: usize, step: usize, module: &M, record: &S) -> NodeDigest {
    NodeDigest { node, step, weights: weights_digest(module), optimizer_state: record.digest(&param_ids(module)) }
}

/// Node 0's collection: a step's line is written once every node's digest of it has arrived.
pub struct DigestBoard {
    nodes: usize,
    path: PathBuf,
    state: Mutex<(File, BTreeMap<usize, Vec<NodeDigest>>)>,
}

impl DigestBoard {
    /// Appends to `path`, first dropping the lines after `completed_steps` (a resumed run redoes them).
    pub fn open(path: &Path, nodes: usize, completed_steps: usize) -> std::io::Result<Self> {
        retain_lines(path, |line: &StepDigests| line.step <= completed_steps)?;
        let file = append_to(path)?;
        Ok(Self { nodes, path: path.to_owned(), state: Mutex::new((file, BTreeMap::new())) })
    }

    pub fn add(&self, digest: NodeDigest) {
        let mut state = self.state.lock().expect("the digest board is never poisoned");
        let (file, pending) = &mut *state;
        let step = digest.step;
        let digests = pending.entry(step).or_default();
        digests.push(digest);
        if digests.len() < self.nodes {
            return;
        }
        let mut nodes = pending.remove(&step).expect("the step is pending");
        nodes.sort_by_key(|d| d.node);
        let identical = nodes.iter().all(|d| d.weights == nodes[0].weights && d.optimizer_state == nodes[0].optimizer_state);
        if !identical {
            eprintln!("warning: the nodes' weights or optimizer state differ after step {step} ({}): {nodes:?}", self.path.display());
        }
        if let Err(e) = append_line(file, &StepDigests { step, nodes, identical }) {
            log::error!("{}: cannot append the node digests: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    use super::*;

    type B = NdArray<f32>;

    fn layer(weights: Vec<f32>) -> Linear<B> {
        let mut layer: Linear<B> = LinearConfig::new(2, 2).with_bias(false).init(&Default::default());
        layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(weights, [2, 2]), &Default::default()));
        layer
    }

    #[test]
    fn the_weights_digest_follows_the_values_not_the_parameter_ids() {
        let a = layer(vec![1.0, 2.0, 3.0, 4.0]);
        let b = layer(vec![1.0, 2.0, 3.0, 4.0]);
        assert_ne!(a.weight.id, b.weight.id);
        assert_eq!(weights_digest(&a), weights_digest(&b));
        // One ulp apart.
        let c = layer(vec![1.0, 2.0, 3.0, f32::from_bits(4.0f32.to_bits() + 1)]);
        assert_ne!(weights_digest(&a), weights_digest(&c));
        // FNV-1a 64 of no bytes is its offset basis.
        assert_eq!(Fnv::new().hex(), "cbf29ce484222325");
    }
}
