//! [`GradientGuard`]: what happens to the gradients between backward and the optimizer, over
//! all parameters at once: in a `--nodes` run their mean over the nodes first, then the global
//! gradient norm (logged), the stop on a non-finite one, and torch's `clip_grad_norm_` (Burn's
//! built-in clipping is per parameter, not global), for single-device steps and for sharded
//! multi-device steps alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use burn_train::Interrupter;

use super::health::RunHealth;
use super::step_clock::StepClock;
use crate::cluster::NodeGradients;
use crate::cluster::digest::StateDigest;

/// Global gradient norms by the optimizer step they were measured at, for the step log.
#[derive(Clone, Debug, Default)]
pub struct GradNorms(Arc<Mutex<HashMap<usize, f64>>>);

impl GradNorms {
    pub fn record(&self, step: usize, norm: f64) {
        self.0.lock().expect("the norm log is never poisoned").insert(step, norm);
    }

    /// The norm of `step`, if it was measured (a step stopped on a non-finite norm has none).
    pub fn take(&self, step: usize) -> Option<f64> {
        self.0.lock().expect("the norm log is never poisoned").remove(&step)
    }
}

/// The norm of all gradients of `module` taken together (`sqrt(Σ‖g‖²)`), one host read.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) -> f64 {
    struct SquaredNorm<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let squares = grad.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(sum) => sum + squares,
                    None => squares,
                });
            }
        }
    }
    let mut visitor = SquaredNorm::<B> { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum.map_or(0.0, |sum| sum.into_scalar().elem::<f64>().sqrt())
}

/// Scales every gradient of `module` by `factor`.
fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scale { grads, factor });
}

/// Reduces the replicas' gradients of every parameter onto the device Burn assigns to that
/// parameter (`MultiGradientsParams::remove`), keeping them sharded: the result holds each
/// parameter's summed gradient in the shard of its device only, so the optimizer's own
/// reduction finds it there and keeps the same assignment.
fn reduce_shards<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: MultiGradientsParams) -> MultiGradientsParams {
    struct Reduce {
        grads: MultiGradientsParams,
        shards: Vec<(GradientsParams, burn::tensor::backend::DeviceId)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Reduce {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some((grad, device)) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let id = burn::tensor::backend::Device::to_id(&device);
                let shard = self.shards.iter_mut().find(|s| s.1 == id).expect("the device holds a shard");
                shard.0.register(param.id, grad);
            }
        }
    }
    let shards = grads.grads.iter().map(|(_, id)| (GradientsParams::new(), *id)).collect();
    let mut reduce = Reduce { grads, shards };
    module.visit(&mut reduce);
    MultiGradientsParams { grads: reduce.shards }
}

/// Wraps the module optimizer: averages the gradients over the nodes of a `--nodes` run,
/// measures the global gradient norm of each step, stops the run (through the `Learner`'s
/// interrupter, before the update and before any checkpoint of the segment) when it is not
/// finite, and optionally clips it.
#[derive(Clone)]
pub struct GradientGuard<O> {
    inner: O,
    /// `Some` in a `--nodes` run.
    nodes: Option<Arc<NodeGradients>>,
    /// `Some(max)`: scale all gradients by `max / (norm + 1e-6)` when the norm exceeds `max`
    /// (torch's `clip_grad_norm_`).
    clip_norm: Option<f64>,
    norms: GradNorms,
    health: RunHealth,
    interrupter: Interrupter,
    /// The step under way.
    clock: StepClock,
}

impl<O> GradientGuard<O> {
    pub fn new(inner: O, clip_norm: Option<f64>, clock: StepClock, norms: GradNorms, health: RunHealth, interrupter: Interrupter) -> Self {
        Self { inner, nodes: None, clip_norm, norms, health, interrupter, clock }
    }

    /// The same guard over the gradients' mean across the nodes of `nodes`.
    pub fn across_nodes(self, nodes: NodeGradients) -> Self {
        Self { nodes: Some(Arc::new(nodes)), ..self }
    }

    /// The mean over the nodes (the gradients as they are on one node); `None` when the
    /// all-reduce failed, which stops the run.
    fn node_mean<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M, grads: GradientsParams) -> Option<GradientsParams> {
        let Some(nodes) = &self.nodes else { return Some(grads) };
        match nodes.mean(module, grads) {
            Ok(grads) => Some(grads),
            Err(e) => {
                let reason = format!(
                    "the all-reduce of the gradients across the nodes failed at optimizer step {}: {e:?}",
                    self.clock.current_step()
                );
                self.interrupter.stop(Some(&reason));
                self.health.fail(reason);
                None
            }
        }
    }

    /// Records the norm, or stops the run on a non-finite one; the factor to scale the
    /// gradients by when clipping applies.
    fn check(&self, norm: f64) -> Result<Option<f64>, ()> {
        let step = self.clock.current_step();
        if !norm.is_finite() {
            let reason = format!(
                "the gradient norm is {norm} at optimizer step {step} (non-finite loss or gradients): the run stopped before updating the model"
            );
            self.interrupter.stop(Some(&reason));
            self.health.fail(reason);
            return Err(());
        }
        self.norms.record(step, norm);
        Ok(self.clip_norm.filter(|&max| norm > max).map(|max| max / (norm + 1e-6)))
    }
}

impl<M, B, O> Optimizer<M, B> for GradientGuard<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
    O::Record: StateDigest<B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        let Some(mut grads) = self.node_mean(&module, grads) else { return module };
        let Ok(scale) = self.check(global_grad_norm(&module, &grads)) else { return module };
        if let Some(factor) = scale {
            scale_grads(&module, &mut grads, factor);
        }
        let module = self.inner.step(lr, module, grads);
        if let Some(nodes) = &self.nodes {
            nodes.after_step(self.clock.current_step(), &module, || self.inner.to_record());
        }
        module
    }

    /// Sharded steps (Burn's `MultiDeviceOptim::OptimSharded`): each parameter's replicas are
    /// summed on its device first, so the global norm is the root of the sum over the shards
    /// of their squared norms, and clipping scales each shard.
    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        let mut grads = reduce_shards(&module, grads);
        for (shard, _) in &mut grads.grads {
            let Some(mean) = self.node_mean(&module, std::mem::take(shard)) else { return module };
            *shard = mean;
        }
        let squares: f64 = grads.grads.iter().map(|(shard, _)| global_grad_norm(&module, shard).powi(2)).sum();
        let Ok(scale) = self.check(squares.sqrt()) else { return module };
        if let Some(factor) = scale {
            for (shard, _) in &mut grads.grads {
                scale_grads(&module, shard, factor);
            }
        }
        let module = self.inner.step_multi(lr, module, grads);
        if let Some(nodes) = &self.nodes {
            nodes.after_step(self.clock.current_step(), &module, || self.inner.to_record());
        }
        module
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.inner = self.inner.load_record(record);
        self
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::adaptor::OptimizerAdaptor;
    use burn::optim::{Sgd, SgdConfig};
    use burn::tensor::TensorData;
    use burn::tensor::backend::Device;

    use super::*;

    type B = Autodiff<NdArray<f32>>;
    type Inner = <B as AutodiffBackend>::InnerBackend;
    type SgdOnLayer = OptimizerAdaptor<Sgd<Inner>, Linear<B>, B>;

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Inner, D> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    /// A gradient for every parameter of `model`, drawn from `seed` on the host.
    fn grads(model: &Linear<B>, seed: u32) -> GradientsParams {
        let draw = |n: usize, k: u32| (0..n).map(|i| ((i as u32 * 7919 + k * 104729) % 97) as f32 / 24.0 - 2.0).collect::<Vec<_>>();
        let mut grads = GradientsParams::new();
        grads.register(model.weight.id, tensor(draw(12, seed), [4, 3]));
        grads.register(model.bias.as_ref().unwrap().id, tensor(draw(3, seed + 1), [3]));
        grads
    }

    fn values(model: &Linear<B>) -> Vec<f32> {
        let weight = model.weight.val().into_data().to_vec::<f32>().unwrap();
        [weight, model.bias.as_ref().unwrap().val().into_data().to_vec::<f32>().unwrap()].concat()
    }

    /// A small layer, its lazily drawn parameters materialised before it is cloned.
    fn layer() -> Linear<B> {
        let model: Linear<B> = LinearConfig::new(4, 3).init(&Default::default());
        values(&model);
        model
    }

    fn guard(clip: f64) -> (GradientGuard<SgdOnLayer>, GradNorms) {
        let clock = StepClock::new(1, 0);
        clock.claim(1);
        let norms = GradNorms::default();
        let sgd = SgdConfig::new().init::<B, Linear<B>>();
        (GradientGuard::new(sgd, Some(clip), clock, norms.clone(), RunHealth::default(), Interrupter::new()), norms)
    }

    #[test]
    fn a_sharded_step_measures_clips_and_updates_as_the_step_on_the_summed_gradient() {
        let model = layer();
        let (a, b) = (grads(&model, 1), grads(&model, 2));
        let mut summed = GradientsParams::new();
        summed.register(model.weight.id, a.get::<Inner, 2>(model.weight.id).unwrap() + b.get::<Inner, 2>(model.weight.id).unwrap());
        let bias = model.bias.as_ref().unwrap().id;
        summed.register(bias, a.get::<Inner, 1>(bias).unwrap() + b.get::<Inner, 1>(bias).unwrap());
        let expected_norm = global_grad_norm(&model, &summed);

        let (mut single, single_norms) = guard(0.5);
        let once = single.step(0.1, model.clone(), summed);
        let device = Device::to_id(&burn::tensor::Device::<Inner>::default());
        let shards = MultiGradientsParams { grads: vec![(a, device), (b, device)] };
        let (mut sharded, sharded_norms) = guard(0.5);
        let twice = sharded.step_multi(0.1, model.clone(), shards);

        let (x, y) = (single_norms.take(1).unwrap(), sharded_norms.take(1).unwrap());
        assert!(expected_norm > 0.5, "the test must clip: norm {expected_norm}");
        assert!((x - expected_norm).abs() < 1e-9 && (y - expected_norm).abs() < 1e-5 * expected_norm, "{x} {y} {expected_norm}");
        for (p, q) in values(&once).iter().zip(values(&twice)) {
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
        // Clipped: the update is lr·0.5 in norm, not lr·norm.
        let moved: f32 = values(&once).iter().zip(values(&model)).map(|(p, q)| (p - q).powi(2)).sum::<f32>().sqrt();
        assert!((moved - 0.05).abs() < 1e-5, "update norm {moved}");
    }

    #[test]
    fn a_non_finite_sharded_gradient_stops_the_run_without_updating() {
        let model = layer();
        let mut bad = grads(&model, 1);
        bad.register(model.weight.id, tensor(vec![f32::NAN; 12], [4, 3]));
        let device = Device::to_id(&burn::tensor::Device::<Inner>::default());
        let (mut sharded, norms) = guard(0.5);
        let after = sharded.step_multi(0.1, model.clone(), MultiGradientsParams { grads: vec![(bad, device), (grads(&model, 2), device)] });
        assert_eq!(values(&after), values(&model));
        assert!(norms.take(1).is_none());
        assert!(sharded.health.failure().is_some_and(|r| r.contains("optimizer step 1")), "{:?}", sharded.health.failure());
    }
}
