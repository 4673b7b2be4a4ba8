//! [`GradientGuard`]: what happens to the gradients between backward and the optimizer, over
//! all parameters at once: the global gradient norm (logged), the stop on a non-finite one, and
//! torch's `clip_grad_norm_` (Burn's built-in clipping is per parameter, not global).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use burn_train::Interrupter;

use super::health::RunHealth;

/// Global gradient norms of the optimizer steps, in order, for the step log to pick up.
pub type GradNormLog = Arc<Mutex<VecDeque<f64>>>;

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

/// Wraps the module optimizer: measures the global gradient norm of each step, stops the run
/// (through the `Learner`'s interrupter, before the update and before any checkpoint of the
/// segment) when it is not finite, and optionally clips it.
#[derive(Clone)]
pub struct GradientGuard<O> {
    inner: O,
    /// `Some(max)`: scale all gradients by `max / (norm + 1e-6)` when the norm exceeds `max`
    /// (torch's `clip_grad_norm_`).
    clip_norm: Option<f64>,
    norms: GradNormLog,
    health: RunHealth,
    interrupter: Interrupter,
    /// Optimizer steps taken so far (for the message).
    steps: usize,
}

impl<O> GradientGuard<O> {
    pub fn new(inner: O, clip_norm: Option<f64>, completed_steps: usize, norms: GradNormLog, health: RunHealth, interrupter: Interrupter) -> Self {
        Self { inner, clip_norm, norms, health, interrupter, steps: completed_steps }
    }
}

impl<M, B, O> Optimizer<M, B> for GradientGuard<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, mut grads: GradientsParams) -> M {
        let norm = global_grad_norm(&module, &grads);
        self.steps += 1;
        if !norm.is_finite() {
            let reason = format!(
                "the gradient norm is {norm} at optimizer step {} (non-finite loss or gradients): the run stopped before updating the model",
                self.steps
            );
            self.interrupter.stop(Some(&reason));
            self.health.fail(reason);
            return module;
        }
        self.norms.lock().expect("the norm log is never poisoned").push_back(norm);
        if let Some(max) = self.clip_norm
            && norm > max
        {
            scale_grads(&module, &mut grads, max / (norm + 1e-6));
        }
        self.inner.step(lr, module, grads)
    }

    /// Multi-device steps go straight to the optimizer: the per-device gradients are only
    /// reduced inside it, so neither the global norm nor clipping is available here.
    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        self.steps += 1;
        self.inner.step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.inner = self.inner.load_record(record);
        self
    }
}
