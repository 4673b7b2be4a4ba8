//! [`Fira`]: the per-tensor optimizer (Burn's `SimpleOptimizer`) for Fira, GaLore and AdamW.

use burn::optim::{LearningRate, SimpleOptimizer};
use burn::record::Record;
use burn::tensor::{FloatDType, Tensor, backend::Backend};

use crate::config::{Algorithm, FiraConfig, ProjectionType, ResidualForm, ScalingMode, SubspaceSolverConfig, WeightLayout};
use crate::error::FiraError;
use crate::limiter::NormGrowthLimiter;
use crate::moments::{AdamMomentRule, AdaptiveMoments, tensor_bytes};
use crate::projector::{ProjectionSide, Projector};
use crate::residual::residual_norm;
use crate::scaling::scaling_factors;
use crate::subspace::{ExactSvd, RandomizedRangeFinder, SubspaceError, SubspaceSolver};

/// Fira / GaLore / HF-style AdamW for one tensor at a time.
///
/// 2-D tensors are projected (unless the algorithm is [`Algorithm::AdamW`]); tensors of any
/// other rank take the AdamW path. Use [`FiraConfig::init`] to route a whole model by module path.
///
/// See:
/// - [Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?](https://arxiv.org/abs/2410.01623)
/// - [GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection](https://arxiv.org/abs/2403.03507)
#[derive(Clone, Debug)]
pub struct Fira {
    algorithm: Algorithm,
    rank: usize,
    update_proj_gap: usize,
    alpha: f64,
    proj_type: ProjectionType,
    moments: AdamMomentRule,
    weight_decay: f64,
    scaling: ScalingMode,
    limiter: Option<NormGrowthLimiter>,
    residual: ResidualForm,
    transport_moments: bool,
    solver: ConfiguredSolver,
    layout: WeightLayout,
}

/// State of one parameter.
#[derive(Record, Clone)]
pub struct FiraState<B: Backend, const D: usize> {
    /// Completed steps of this parameter (`t0` of the spec).
    pub step: usize,
    /// Adam moments: of the projected gradient (PyTorch orientation) or of the full gradient.
    pub moments: AdaptiveMoments<B, D>,
    /// The projector in effect, with its side; `None` on the AdamW path.
    pub projector: Option<Projector<B>>,
    /// The limiter's stored residual norm; `None` on the AdamW path, for GaLore and without limiter.
    pub limiter_norm: Option<Tensor<B, 1>>,
}

impl<B: Backend, const D: usize> FiraState<B, D> {
    /// Bytes of optimizer state actually held for this parameter (moments, basis, limiter norm).
    pub fn bytes(&self) -> usize {
        self.moments.bytes() + self.projector.as_ref().map_or(0, Projector::bytes) + self.limiter_norm.as_ref().map_or(0, tensor_bytes)
    }

    /// Moves the state, consuming it, as Burn's `SimpleOptimizer::to_device` and
    /// `Module::to_device` do.
    #[allow(clippy::wrong_self_convention, reason = "named after Burn's to_device, which consumes")]
    fn to_device(self, device: &B::Device) -> Self {
        Self {
            step: self.step,
            moments: self.moments.to_device(device),
            projector: self.projector.map(|p| p.to_device(device)),
            limiter_norm: self.limiter_norm.map(|n| n.to_device(device)),
        }
    }
}

/// Why a parameter's step was skipped (weights, moments, basis and step count left unchanged;
/// the refresh is retried on the next step).
#[derive(Clone, Debug, PartialEq)]
pub enum SkipReason {
    /// The gradient held NaN or ±inf at a projector refresh; it never reached the solver.
    NonFiniteGradient,
    /// The subspace solver failed.
    SolverFailed(SubspaceError),
}

/// Intermediate values of a projected step, in PyTorch orientation, for diagnostics and tests.
#[derive(Clone, Default)]
pub struct StepTrace<B: Backend> {
    /// `R`, the projected gradient.
    pub projected_grad: Option<Tensor<B, 2>>,
    /// φ, broadcastable over the gradient (`None`: φ = 1 or not Fira).
    pub scaling: Option<Tensor<B, 2>>,
    /// `‖S‖_F` of the residual before the limiter (Fira with limiter only).
    pub residual_norm: Option<Tensor<B, 1>>,
    /// The limiter's divisor λ (Fira with limiter only).
    pub limiter_divisor: Option<Tensor<B, 1>>,
}

/// Everything one step produces.
pub struct FiraStep<B: Backend, const D: usize> {
    /// The updated parameter.
    pub tensor: Tensor<B, D>,
    /// The new state (`None` only when the very first step was skipped).
    pub state: Option<FiraState<B, D>>,
    /// Set when the step was skipped.
    pub skipped: Option<SkipReason>,
    /// Intermediate values of a projected step.
    pub trace: StepTrace<B>,
}

/// The solver chosen in the config.
#[derive(Clone, Copy, Debug)]
enum ConfiguredSolver {
    Exact(ExactSvd),
    Randomized(RandomizedRangeFinder),
}

impl<B: Backend> SubspaceSolver<B> for ConfiguredSolver {
    /// In f32 whatever the parameters' dtype (the paper trains in bf16 with the SVD in f32), the
    /// basis then kept in the gradient's dtype, as the official code casts it back (`.to(dtype)`).
    fn solve(&self, grad: Tensor<B, 2>, rank: usize, side: ProjectionSide) -> Result<Projector<B>, SubspaceError> {
        let dtype = grad.dtype();
        let grad = grad.cast(FloatDType::F32);
        let projector = match self {
            Self::Exact(solver) => solver.solve(grad, rank, side),
            Self::Randomized(solver) => solver.solve(grad, rank, side),
        }?;
        Ok(projector.cast(dtype))
    }
}

impl FiraConfig {
    /// Builds the per-tensor optimizer after validating the config.
    pub fn build(&self) -> Result<Fira, FiraError> {
        self.validate()?;
        let solver = match self.solver {
            SubspaceSolverConfig::Exact => ConfiguredSolver::Exact(ExactSvd { canonical_signs: self.canonical_signs }),
            SubspaceSolverConfig::Randomized { oversampling, power_iterations, seed } => {
                ConfiguredSolver::Randomized(RandomizedRangeFinder {
                    oversampling,
                    power_iterations,
                    seed,
                    canonical_signs: self.canonical_signs,
                })
            }
        };
        let limiter = match self.algorithm {
            Algorithm::Fira => self.limiter.map(|gamma| NormGrowthLimiter { gamma, zero_norm_guard: self.zero_norm_guard }),
            Algorithm::GaLore | Algorithm::GaLoreAdd | Algorithm::AdamW => None,
        };
        Ok(Fira {
            algorithm: self.algorithm,
            rank: self.rank,
            update_proj_gap: self.update_proj_gap,
            alpha: self.alpha,
            proj_type: self.proj_type,
            moments: AdamMomentRule {
                beta_1: self.betas[0],
                beta_2: self.betas[1],
                epsilon: self.epsilon,
                correct_bias: self.correct_bias,
            },
            weight_decay: self.weight_decay,
            scaling: self.scaling,
            limiter,
            residual: self.residual,
            transport_moments: self.transport_moments,
            solver,
            layout: self.layout,
        })
    }
}

impl Fira {
    /// The update rule of projected parameters.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether a parameter of this shape is projected when selected: 2-D and not plain AdamW.
    pub fn projects(&self, shape: &[usize]) -> bool {
        shape.len() == 2 && self.algorithm != Algorithm::AdamW
    }

    /// Side and effective rank of the projection of a 2-D parameter of `shape` (stored layout),
    /// with the side expressed for the PyTorch-oriented `[out, in]` matrix.
    pub fn projection_of(&self, shape: [usize; 2]) -> (ProjectionSide, usize) {
        let [m, n] = self.pytorch_dims(shape);
        (ProjectionSide::for_shape(self.proj_type, m, n), self.rank.min(m).min(n))
    }

    /// Optimizer-state elements a parameter of `shape` will hold (moments, basis, limiter norm).
    pub fn state_elements(&self, shape: &[usize], projected: bool) -> usize {
        let numel: usize = shape.iter().product();
        if !(projected && self.projects(shape)) {
            return 2 * numel;
        }
        let [m, n] = self.pytorch_dims([shape[0], shape[1]]);
        let (side, rank) = self.projection_of([shape[0], shape[1]]);
        let [a, b] = side.projected_shape(m, n, rank);
        2 * a * b + side.basis_elements(m, n, rank) + usize::from(self.limiter.is_some())
    }

    fn pytorch_dims(&self, [rows, cols]: [usize; 2]) -> [usize; 2] {
        match self.layout {
            WeightLayout::PyTorch => [rows, cols],
            WeightLayout::Burn => [cols, rows],
        }
    }

    /// Brings a stored 2-D tensor to PyTorch orientation and back (a transpose is an involution).
    fn orient<B: Backend>(&self, tensor: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.layout {
            WeightLayout::PyTorch => tensor,
            WeightLayout::Burn => tensor.transpose(),
        }
    }

    /// One step of one parameter with an explicit subspace solver; `projected` selects the
    /// low-rank path for 2-D tensors (the module-level optimizer passes its routing decision).
    pub fn step_with_solver<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<FiraState<B, D>>,
        projected: bool,
        solver: &impl SubspaceSolver<B>,
    ) -> FiraStep<B, D> {
        if projected && self.projects(&tensor.dims()) {
            self.projected_step(lr, tensor, grad, state, solver)
        } else {
            self.dense_step(lr, tensor, grad, state)
        }
    }

    /// One step with the configured solver.
    pub fn step_param<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<FiraState<B, D>>,
        projected: bool,
    ) -> FiraStep<B, D> {
        self.step_with_solver(lr, tensor, grad, state, projected, &self.solver)
    }

    /// The HF-style AdamW path (spec, "Non-projected parameters").
    fn dense_step<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<FiraState<B, D>>,
    ) -> FiraStep<B, D> {
        let step = state.as_ref().map_or(0, |s| s.step) + 1;
        let moments = self.moments.update(state.map(|s| s.moments), grad);
        let update = self.moments.direction(&moments);
        let eta = self.moments.step_size(lr, step);
        FiraStep {
            tensor: self.decay(lr, tensor - update.mul_scalar(eta)),
            state: Some(FiraState { step, moments, projector: None, limiter_norm: None }),
            skipped: None,
            trace: StepTrace::default(),
        }
    }

    /// Spec step 10: decoupled weight decay after the update, with the raw learning rate.
    fn decay<B: Backend, const D: usize>(&self, lr: LearningRate, tensor: Tensor<B, D>) -> Tensor<B, D> {
        if self.weight_decay == 0.0 { tensor } else { tensor.mul_scalar(1.0 - lr * self.weight_decay) }
    }

    /// Spec steps 1–10 on a 2-D parameter.
    fn projected_step<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<FiraState<B, D>>,
        solver: &impl SubspaceSolver<B>,
    ) -> FiraStep<B, D> {
        let grad_pt = self.orient(cast_rank::<B, D, 2>(grad));
        let [m, n] = grad_pt.dims();
        let side = ProjectionSide::for_shape(self.proj_type, m, n);
        let rank = self.rank.min(m).min(n);
        let completed = state.as_ref().map_or(0, |s| s.step);
        let (mut moments, mut projector, limiter_norm) = match state.clone() {
            Some(s) => (Some(cast_moments::<B, D, 2>(s.moments)), s.projector, s.limiter_norm),
            None => (None, None, None),
        };

        // Step 1: refresh at steps 1, T+1, 2T+1, ... (before the counter moves).
        if projector.is_none() || completed.is_multiple_of(self.update_proj_gap) {
            let fresh = if all_finite(&grad_pt) {
                solver.solve(grad_pt.clone(), rank, side).map_err(SkipReason::SolverFailed)
            } else {
                Err(SkipReason::NonFiniteGradient)
            };
            match fresh {
                Ok(fresh) => {
                    if let (true, Some(old), Some(m)) = (self.transport_moments, &projector, moments.as_mut()) {
                        m.first = fresh.transport_from(old, m.first.clone());
                    }
                    projector = Some(fresh);
                }
                Err(reason) => {
                    return FiraStep { tensor, state, skipped: Some(reason), trace: StepTrace::default() };
                }
            }
        }
        let projector = projector.expect("a projector exists after a successful refresh");

        // Steps 2–5.
        let projected_grad = projector.project(grad_pt.clone());
        let moments = self.moments.update(moments, projected_grad.clone());
        let direction = self.moments.direction(&moments);
        let eta = self.moments.step_size(lr, completed + 1);

        let mut trace = StepTrace { projected_grad: Some(projected_grad.clone()), ..StepTrace::default() };
        // W ← W − η U. Every scalar factor goes into the small low-rank tensors, so the full
        // matrix sees one back-projection and at most one scaled copy of G.
        let (update, limiter_norm) = match self.algorithm {
            Algorithm::Fira => {
                // Steps 6–9 in fused form (see `residual`): with c = φ/λ,
                // official: U = c⊙G + back(α(N − c⊙R));  paper: U = α·c⊙G + back(α(N − c⊙R)).
                let scaling = scaling_factors(self.scaling, projector.side(), &direction, &projected_grad);
                let (in_residual, outside) = match self.residual {
                    ResidualForm::Official => (self.alpha, 1.0),
                    ResidualForm::Paper => (1.0, self.alpha),
                };
                let (divisor, limiter_norm) = match &self.limiter {
                    Some(limiter) => {
                        let norm = residual_norm(projector.side(), &grad_pt, &projected_grad, scaling.as_ref(), in_residual);
                        trace.residual_norm = Some(norm.clone());
                        let decision = limiter.decide(norm, limiter_norm);
                        trace.limiter_divisor = Some(decision.divisor.clone());
                        (Some(decision.divisor.reshape([1, 1])), Some(decision.norm))
                    }
                    None => (None, None),
                };
                trace.scaling = scaling.clone();
                let coefficient = match (scaling, divisor) {
                    (Some(phi), Some(divisor)) => phi / divisor,
                    (Some(phi), None) => phi,
                    (None, Some(divisor)) => divisor.recip(),
                    (None, None) => Tensor::ones([1, 1], &grad_pt.device()),
                };
                let low_rank = (direction - projected_grad * coefficient.clone()).mul_scalar(self.alpha * eta);
                let update = grad_pt * coefficient.mul_scalar(outside * eta) + projector.back(low_rank);
                (update, limiter_norm)
            }
            // U = α·back(N) + G − back(R) = G + back(αN − R): one back-projection, as above.
            Algorithm::GaLoreAdd => {
                let low_rank = (direction.mul_scalar(self.alpha) - projected_grad).mul_scalar(eta);
                (grad_pt.mul_scalar(eta) + projector.back(low_rank), None)
            }
            Algorithm::GaLore | Algorithm::AdamW => (projector.back(direction.mul_scalar(self.alpha * eta)), None),
        };

        let update = cast_rank::<B, 2, D>(self.orient(update));
        FiraStep {
            tensor: self.decay(lr, tensor - update),
            state: Some(FiraState { step: completed + 1, moments: cast_moments(moments), projector: Some(projector), limiter_norm }),
            skipped: None,
            trace,
        }
    }
}

/// The scaling factor ψ = ‖N‖ / (‖R‖ + 1e-8) Adam applied to a 2-D parameter (paper §4.1, the
/// quantity of its Figure 3 and Tables 7–8), see [`Fira::applied_scaling`].
pub struct AppliedScaling<B: Backend> {
    /// One factor per column of the `[out, in]` gradient for a left projection, per row for a
    /// right one: the axis of Fira's column-level scaling (spec step 6).
    pub columns: Tensor<B, 1>,
    /// One factor for the whole matrix (Frobenius norms), shape `[1]`.
    pub matrix: Tensor<B, 1>,
}

impl Fira {
    /// ψ of the step that turned `grad` into `state` (the state this step returned).
    ///
    /// Projected path: `N` and `R` are the low-rank direction and the gradient projected with
    /// the state's projector (the low-rank training of the paper). Dense path (full-rank AdamW):
    /// Adam's full direction and the gradient itself, on the axis this matrix would be projected
    /// along, so that a full-rank and a low-rank run measure the same columns. `N` is
    /// `m ⊘ (√v + ε)` without bias correction in both, as Fira's scaling uses it. `None` for
    /// tensors that are not 2-D.
    pub fn applied_scaling<B: Backend, const D: usize>(&self, grad: Tensor<B, D>, state: &FiraState<B, D>) -> Option<AppliedScaling<B>> {
        if D != 2 {
            return None;
        }
        let grad = self.orient(cast_rank::<B, D, 2>(grad));
        let direction = self.moments.direction(&cast_moments::<B, D, 2>(state.moments.clone()));
        let (side, direction, reference) = match &state.projector {
            Some(projector) => (projector.side(), direction, projector.project(grad)),
            None => {
                let [m, n] = grad.dims();
                (ProjectionSide::for_shape(self.proj_type, m, n), self.orient(direction), grad)
            }
        };
        let factors = |mode| scaling_factors(mode, side, &direction, &reference).expect("column and matrix modes give factors");
        let columns = factors(ScalingMode::Column);
        let len = columns.dims().iter().product::<usize>();
        Some(AppliedScaling { columns: columns.reshape([len]), matrix: factors(ScalingMode::Matrix).reshape([1]) })
    }
}

/// Re-types a tensor between const ranks when its actual rank is both (a free reshape):
/// `SimpleOptimizer` is generic over `D`, the projected path works on `D == 2` matrices.
fn cast_rank<B: Backend, const FROM: usize, const TO: usize>(tensor: Tensor<B, FROM>) -> Tensor<B, TO> {
    let shape = tensor.shape();
    tensor.reshape(shape)
}

fn cast_moments<B: Backend, const FROM: usize, const TO: usize>(moments: AdaptiveMoments<B, FROM>) -> AdaptiveMoments<B, TO> {
    AdaptiveMoments { first: cast_rank(moments.first), second: cast_rank(moments.second) }
}

/// Whether every entry is finite (one device-to-host read; only done at refreshes).
fn all_finite<B: Backend>(tensor: &Tensor<B, 2>) -> bool {
    tensor.clone().is_finite().all().into_data().iter::<bool>().all(|finite| finite)
}

impl<B: Backend> SimpleOptimizer<B> for Fira {
    type State<const D: usize> = FiraState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let step = self.step_param(lr, tensor, grad, state, true);
        if let Some(reason) = &step.skipped {
            log::warn!("fira: skipped the step of a {D}-D parameter: {reason:?}");
        }
        (step.tensor, step.state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.to_device(device)
    }
}
