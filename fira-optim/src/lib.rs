//! Fira and GaLore as [Burn](https://burn.dev) optimizers.
//!
//! * [`Fira`] is a per-tensor [`SimpleOptimizer`](burn::optim::SimpleOptimizer): 2-D tensors take
//!   the low-rank path (GaLore's projected Adam, plus Fira's scaled and limited residual),
//!   every other tensor the HF-style AdamW path.
//! * [`FiraOptimizer`] is the module-level [`Optimizer`](burn::optim::Optimizer) for Burn's
//!   `Learner`: it selects parameters by module path (`attn`, `mlp` by default) once, routes
//!   every step by that selection, reports what it selected and how much state it holds, and saves everything, projectors included.
//!
//! The algorithm follows the official code exactly (`docs/fira-spec.md`); the golden tests replay
//! trajectories recorded from it.
//!
//! ```no_run
//! use burn::optim::{GradientsParams, Optimizer};
//! # use burn::{backend::{Autodiff, NdArray}, module::Module, nn::{Linear, LinearConfig}};
//! # #[derive(Module, Debug)] struct Mlp<B: burn::tensor::backend::Backend> { mlp: Linear<B> }
//! # type B = Autodiff<NdArray>;
//! # let device = Default::default();
//! # let model = Mlp::<B> { mlp: LinearConfig::new(64, 64).init(&device) };
//! use fira_optim::FiraConfig;
//!
//! let mut optimizer = FiraConfig::new().with_rank(16).init(&model)?;
//! println!("{}", optimizer.selection());
//! # let x = burn::tensor::Tensor::<B, 2>::ones([4, 64], &device);
//! let grads = GradientsParams::from_grads(model.mlp.forward(x).sum().backward(), &model);
//! let model = optimizer.step(0.01, model, grads);
//! # Ok::<(), fira_optim::FiraError>(())
//! ```

mod config;
mod error;
mod limiter;
mod memory;
mod module_optimizer;
mod moments;
mod optimizer;
mod projector;
mod residual;
mod scaling;
mod scaling_probe;
mod selection;
mod state_bytes;
pub mod subspace;

pub use config::{Algorithm, FiraConfig, ProjectionType, ResidualForm, ScalingMode, SubspaceSolverConfig, WeightLayout};
pub use error::FiraError;
pub use limiter::{LimiterDecision, NormGrowthLimiter};
pub use memory::{MemoryReport, ParamReport, ParamRoute, SelectionReport};
pub use module_optimizer::{FiraOptimizer, SkippedStep};
pub use moments::{AdamMomentRule, AdaptiveMoments};
pub use optimizer::{AppliedScaling, Fira, FiraState, FiraStep, SkipReason, StepTrace};
pub use projector::{ProjectionSide, Projector};
pub use residual::residual_norm;
pub use scaling::scaling_factors;
pub use scaling_probe::{ScalingProbeConfig, ScalingRecorder, ScalingSample};
pub use selection::TargetModules;
pub use state_bytes::{StateBytes, record_bytes};
