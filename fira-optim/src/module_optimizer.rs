//! [`FiraOptimizer`]: the module-level optimizer the Burn `Learner` takes. The selection made
//! when it is built (target patterns matched against module paths, once) is the only routing
//! decision: every step looks each parameter up in it, so the [`SelectionReport`] cannot disagree
//! with what runs. Selected 2-D weights get Fira (or GaLore), all else the AdamW path.

use core::marker::PhantomData;
use std::sync::Arc;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::adaptor::GradAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::{Tensor, backend::AutodiffBackend};
use hashbrown::HashMap;

use crate::config::{Algorithm, FiraConfig};
use crate::error::FiraError;
use crate::memory::{MemoryReport, ParamReport, ParamRoute, SelectionReport};
use crate::optimizer::{Fira, SkipReason};
use crate::scaling_probe::{ScalingProbe, ScalingProbeConfig, ScalingRecorder};
use crate::selection::{ModulePath, ParamCollector, TargetModules};
use crate::state_bytes::record_bytes;

/// A parameter step that was skipped, reported to the caller (see [`FiraOptimizer::take_skipped`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedStep {
    /// Dotted module path of the parameter.
    pub path: String,
    /// Its id.
    pub id: ParamId,
    /// Why.
    pub reason: SkipReason,
}

/// The module-level optimizer: Fira/GaLore on the selected 2-D weights, HF-style AdamW on the rest.
///
/// Its record is keyed by [`ParamId`] like Burn's own `OptimizerAdaptor`, and holds everything:
/// step counts, moments, each projector's basis and side, and the limiter norms.
#[derive(Clone)]
pub struct FiraOptimizer<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    fira: Fira,
    /// Module path → index of its entry in `selection`.
    routes: HashMap<String, usize>,
    records: HashMap<ParamId, AdaptorRecord<Fira, B>>,
    selection: SelectionReport,
    /// Per selection entry: a 2-D parameter the target patterns match (projected, or the same
    /// matrix on the AdamW path of a full-rank run): what the scaling probe measures.
    targeted: Vec<bool>,
    probe: Option<ScalingProbe>,
    skipped: Vec<SkippedStep>,
    module: PhantomData<M>,
}

impl FiraConfig {
    /// Builds the module-level optimizer for `model`, validating the config and the selection.
    ///
    /// Selecting no 2-D parameter is an error ([`FiraError::NothingSelected`]) unless the
    /// algorithm is [`Algorithm::AdamW`]: a low-rank run that silently became AdamW would mislead.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self, model: &M) -> Result<FiraOptimizer<M, B>, FiraError> {
        let fira = self.build()?;
        let targets = TargetModules::new(&self.target_modules)?;
        let mut collector = ParamCollector::default();
        model.visit(&mut collector);
        let targeted = collector.params.iter().map(|info| targets.matches(&info.path) && info.shape.len() == 2).collect();

        let params = collector
            .params
            .into_iter()
            .zip(&targeted)
            .map(|(info, &targeted)| {
                let projected = targeted && fira.projects(&info.shape);
                let route = if projected {
                    let (side, rank) = fira.projection_of([info.shape[0], info.shape[1]]);
                    ParamRoute::Projected { side, rank }
                } else {
                    ParamRoute::Dense
                };
                ParamReport {
                    state_bytes: fira.state_elements(&info.shape, projected) * info.element_bytes,
                    path: info.path,
                    id: info.id,
                    shape: info.shape,
                    route,
                }
            })
            .collect();
        let selection = SelectionReport { params };
        if fira.algorithm() != Algorithm::AdamW && selection.projected_count() == 0 {
            let examples: Vec<_> = selection.params.iter().take(6).map(|p| p.path.as_str()).collect();
            return Err(FiraError::NothingSelected { patterns: targets.patterns(), examples: examples.join(", ") });
        }
        let routes = selection.params.iter().enumerate().map(|(index, p)| (p.path.clone(), index)).collect();
        Ok(FiraOptimizer {
            fira,
            routes,
            records: HashMap::new(),
            selection,
            targeted,
            probe: None,
            skipped: Vec::new(),
            module: PhantomData,
        })
    }
}

impl<M, B> FiraOptimizer<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    /// The routing decided at build time, with the planned state of each parameter.
    pub fn selection(&self) -> &SelectionReport {
        &self.selection
    }

    /// The per-tensor optimizer behind this one.
    pub fn fira(&self) -> &Fira {
        &self.fira
    }

    /// Optimizer-state bytes actually held now, per parameter (empty before the first step).
    pub fn memory_report(&self) -> MemoryReport {
        let mut params: Vec<ParamReport> = self
            .records
            .iter()
            .map(|(id, record)| {
                let known = self.selection.params.iter().find(|p| p.id == *id);
                ParamReport {
                    path: known.map_or_else(|| format!("<param {id}>"), |p| p.path.clone()),
                    id: *id,
                    shape: known.map_or_else(Vec::new, |p| p.shape.clone()),
                    route: known.map_or(ParamRoute::Dense, |p| p.route),
                    state_bytes: record_bytes(record),
                }
            })
            .collect();
        let order = |p: &ParamReport| self.selection.params.iter().position(|s| s.id == p.id);
        params.sort_by_key(|p| order(p).unwrap_or(usize::MAX));
        MemoryReport { params }
    }

    /// Records the scaling factor ψ of every targeted matrix into `recorder` as configured (the
    /// evidence of the paper's §4.1; see [`ScalingProbeConfig`]).
    pub fn with_scaling_probe(mut self, config: ScalingProbeConfig, recorder: Arc<dyn ScalingRecorder>) -> Result<Self, FiraError> {
        for (name, value) in [("every", config.every), ("columns", config.columns)] {
            if value == 0 {
                return Err(FiraError::ZeroProbeSetting { name });
            }
        }
        self.probe = Some(ScalingProbe::new(config, recorder));
        Ok(self)
    }

    /// Steps skipped since the last call (non-finite gradient or solver failure at a refresh).
    pub fn take_skipped(&mut self) -> Vec<SkippedStep> {
        std::mem::take(&mut self.skipped)
    }

    fn step_common(&mut self, lr: LearningRate, module: M, mut grads: GradAdaptor) -> M {
        module.map(&mut RoutingMapper::<B> {
            fira: &self.fira,
            routes: &self.routes,
            selection: &mut self.selection,
            targeted: &self.targeted,
            probe: self.probe.as_mut(),
            records: &mut self.records,
            grads: &mut grads,
            skipped: &mut self.skipped,
            path: ModulePath::default(),
            lr,
        })
    }
}

impl<M, B> Optimizer<M, B> for FiraOptimizer<M, B>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    type Record = HashMap<ParamId, AdaptorRecord<Fira, B>>;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        self.step_common(lr, module, grads.into())
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        self.step_common(lr, module, grads.into())
    }

    fn to_record(&self) -> Self::Record {
        self.records.clone()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.records = record;
        self
    }
}

/// Walks the module, tracking the path, and steps each parameter on the route its selection
/// entry gives.
struct RoutingMapper<'a, B: AutodiffBackend> {
    fira: &'a Fira,
    routes: &'a HashMap<String, usize>,
    selection: &'a mut SelectionReport,
    targeted: &'a [bool],
    probe: Option<&'a mut ScalingProbe>,
    records: &'a mut HashMap<ParamId, AdaptorRecord<Fira, B>>,
    grads: &'a mut GradAdaptor,
    skipped: &'a mut Vec<SkippedStep>,
    path: ModulePath,
    lr: LearningRate,
}

impl<B: AutodiffBackend> ModuleMapper<B> for RoutingMapper<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((grad, device)) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let tensor = if tensor.device() != device { tensor.to_device(&device) } else { tensor };
        let state = self
            .records
            .remove(&id)
            .map(|record| <Fira as burn::optim::SimpleOptimizer<B::InnerBackend>>::to_device(record.into_state::<D>(), &device));

        let path = self.path.current();
        let index = self.routes.get(&path).copied();
        let projected = match index {
            Some(index) => {
                let entry = &mut self.selection.params[index];
                // Loading a record (a resumed checkpoint) gives the parameters the ids they were
                // saved with; the selection follows, so reports keep naming them.
                entry.id = id;
                matches!(entry.route, ParamRoute::Projected { .. })
            }
            None => {
                log::warn!("fira: `{path}` is not part of the module this optimizer was built for; it takes the AdamW path");
                false
            }
        };
        // The probe needs the gradient after the step has consumed it: kept (a reference) only
        // on the steps it records.
        let next_step = state.as_ref().map_or(0, |s| s.step) + 1;
        let probed = index.filter(|&i| self.targeted[i] && self.probe.as_ref().is_some_and(|p| p.records_step(next_step)));
        let probe_grad = probed.map(|_| grad.clone());
        let step = self.fira.step_param(self.lr, tensor.inner(), grad, state, projected);
        if let Some(reason) = step.skipped {
            log::warn!("fira: skipped the step of `{path}`: {reason:?}");
            self.skipped.push(SkippedStep { path, id, reason });
        } else if let (Some(index), Some(grad), Some(probe), Some(state)) = (probed, probe_grad, self.probe.as_mut(), &step.state) {
            probe.record(self.fira, index, &path, projected, grad, state);
        }
        if let Some(state) = step.state {
            self.records.insert(id, AdaptorRecord::from_state(state));
        }
        let mut tensor = Tensor::from_inner(step.tensor);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
