//! [`FiraConfig`]: every hyper-parameter and option of Fira, GaLore and the AdamW path.
//!
//! Defaults are those of the official code (`fira==1.0.2`), see `docs/fira-spec.md`.

use burn::config::Config;

use crate::error::FiraError;

/// Which update rule projected parameters follow.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Algorithm {
    /// Fira: GaLore's low-rank Adam plus the norm-scaled, norm-limited residual
    /// ([arXiv 2410.01623](https://arxiv.org/abs/2410.01623), Algorithm 1).
    Fira,
    /// GaLore: low-rank Adam only, the residual is dropped
    /// ([arXiv 2403.03507](https://arxiv.org/abs/2403.03507)).
    GaLore,
    /// GaLore plus the raw residual `G − back(Pᵀ G)`, neither scaled nor limited: the ablation of
    /// the paper's Eq. 8 and Figure 2 (`U = α·back(N) + G − back(R)`), which spikes at every
    /// projector refresh and motivates Fira's scaling and limiter.
    GaLoreAdd,
    /// No projection at all: every parameter takes the HF-style AdamW path.
    AdamW,
}

/// How the side of the projection is chosen (`proj_type` of the official code).
///
/// Sides are meant for the matrix in PyTorch layout `[out, in]`; see [`WeightLayout`].
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum ProjectionType {
    /// Right if `m >= n`, else left: always the smaller optimizer state (square counts as tall).
    Std,
    /// The opposite of [`ProjectionType::Std`].
    ReverseStd,
    /// Always project on the left: `R = Pᵀ G`.
    Left,
    /// Always project on the right: `R = G Qᵀ`.
    Right,
    /// Both sides, `R = Pᵀ G Qᵀ` (GaLore only).
    Full,
}

/// Fira's norm-based scaling φ of the residual (spec step 6 and the options table).
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum ScalingMode {
    /// One factor per column or row of the low-rank update (official default).
    Column,
    /// One factor for the whole matrix, `‖N‖_F / ‖R‖_F` (paper's "Fira-matrix").
    Matrix,
    /// φ = 1 (paper's "Fira w.o. scaling").
    None,
}

/// Where α enters the residual (spec step 7 and the options table).
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum ResidualForm {
    /// Official code: `S = (G − α·back(R)) ⊙ φ`, `U = α·back(N) + S`.
    Official,
    /// Paper's Algorithm 1: `S = φ ⊙ (G − back(R))`, `U = α·(back(N) + S)`.
    Paper,
}

/// How the projector's basis is computed at a refresh.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum SubspaceSolverConfig {
    /// Thin SVD of the gradient in float32 on the host (Burn 0.21 has no SVD), as the official code.
    Exact,
    /// Randomized range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4): matmuls on the device,
    /// orthonormalised on the device, only `k×k` problems (`k = r + oversampling`) on the host.
    Randomized {
        /// Extra sketch columns beyond the rank.
        oversampling: usize,
        /// Subspace (power) iterations; each sharpens the spectrum by another power of two.
        power_iterations: usize,
        /// Seed of the Gaussian sketch; the sketch is drawn on the host so every backend sees the same.
        seed: u64,
    },
}

/// The memory layout of 2-D parameters.
///
/// It decides which side "left" and "right" mean, which only matters for square matrices
/// under [`ProjectionType::Std`] and for explicit sides (spec, "Layout in Burn").
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum WeightLayout {
    /// `[in, out]`, the layout of Burn's `Linear` (the transpose of PyTorch's).
    Burn,
    /// `[out, in]`, the layout of PyTorch's `nn.Linear` and of the golden files.
    PyTorch,
}

/// Configuration of [`Fira`](crate::Fira) and of the module-level [`FiraOptimizer`](crate::FiraOptimizer).
///
/// Defaults reproduce the official `FiraAdamW` (arXiv 2410.01623) with the paper's LLaMA-60M
/// hyper-parameters (rank 128, T = 200, α = 0.25), on a Burn model (`layout = Burn`).
#[derive(Config, Debug)]
pub struct FiraConfig {
    /// Update rule of projected parameters.
    #[config(default = "Algorithm::Fira")]
    pub algorithm: Algorithm,
    /// Rank `r` of the projection; the effective rank is `min(r, m, n)`.
    #[config(default = 128)]
    pub rank: usize,
    /// Refresh gap `T`: the projector is recomputed at steps 1, T+1, 2T+1, ...
    #[config(default = 200)]
    pub update_proj_gap: usize,
    /// Scale α of the low-rank update (GaLore's `scale`).
    #[config(default = 0.25)]
    pub alpha: f64,
    /// Side of the projection.
    #[config(default = "ProjectionType::Std")]
    pub proj_type: ProjectionType,
    /// Adam's `(β1, β2)`.
    #[config(default = "[0.9, 0.999]")]
    pub betas: [f64; 2],
    /// Added to `√v` (not to the bias-corrected `√v̂`, as the official code does).
    #[config(default = 1e-6)]
    pub epsilon: f64,
    /// Decoupled weight decay, applied after the update with the raw learning rate.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Adam bias correction `√(1−β2^t)/(1−β1^t)` folded into the step size.
    #[config(default = true)]
    pub correct_bias: bool,
    /// Norm-based scaling of the residual (Fira only).
    #[config(default = "ScalingMode::Column")]
    pub scaling: ScalingMode,
    /// Norm-growth limiter γ (Fira only); `None` disables it (paper's "w.o. limiter").
    #[config(default = "Some(1.01)")]
    pub limiter: Option<f64>,
    /// Where α enters the residual (Fira only).
    #[config(default = "ResidualForm::Official")]
    pub residual: ResidualForm,
    /// Skip the limiter while its stored norm is exactly 0, instead of locking the residual
    /// to ~1e-8 for hundreds of steps after an all-zero gradient (spec, options table).
    #[config(default = false)]
    pub zero_norm_guard: bool,
    /// At a refresh, rotate the first moment into the new basis (`m ← P_newᵀ P_old m`)
    /// instead of keeping it in stale coordinates as the official code does.
    #[config(default = false)]
    pub transport_moments: bool,
    /// How the projector's basis is computed.
    #[config(default = "SubspaceSolverConfig::Exact")]
    pub solver: SubspaceSolverConfig,
    /// Flip each kept singular vector so that its largest-magnitude entry is positive,
    /// which makes runs reproducible across backends and solvers (spec, "Projector").
    #[config(default = true)]
    pub canonical_signs: bool,
    /// Memory layout of 2-D parameters.
    #[config(default = "WeightLayout::Burn")]
    pub layout: WeightLayout,
    /// Module-path patterns (regular expressions, matched anywhere in the path) that select the
    /// 2-D weights to project, as the paper's `target_modules_list` and HF's `optim_target_modules`.
    #[config(default = "vec![String::from(\"attn\"), String::from(\"mlp\")]")]
    pub target_modules: Vec<String>,
}

impl FiraConfig {
    /// Checks every hyper-parameter; [`build`](Self::build) and [`init`](Self::init) call it.
    pub fn validate(&self) -> Result<(), FiraError> {
        if self.algorithm != Algorithm::AdamW {
            if self.rank == 0 {
                return Err(FiraError::ZeroRank);
            }
            if self.update_proj_gap == 0 {
                return Err(FiraError::ZeroProjectionGap);
            }
            if !(self.alpha.is_finite() && self.alpha > 0.0) {
                return Err(FiraError::InvalidAlpha(self.alpha));
            }
        }
        if self.algorithm == Algorithm::Fira && self.proj_type == ProjectionType::Full {
            return Err(FiraError::FullProjectionWithFira);
        }
        if let Some(gamma) = self.limiter
            && !(gamma.is_finite() && gamma >= 1.0)
        {
            return Err(FiraError::InvalidGamma(gamma));
        }
        for (name, value) in [("beta_1", self.betas[0]), ("beta_2", self.betas[1])] {
            if !(0.0..1.0).contains(&value) {
                return Err(FiraError::InvalidBeta { name, value });
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(FiraError::InvalidEpsilon(self.epsilon));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(FiraError::InvalidWeightDecay(self.weight_decay));
        }
        if let SubspaceSolverConfig::Randomized { oversampling: 0, power_iterations: 0, .. } = self.solver {
            return Err(FiraError::DegenerateRandomizedSolver);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_official_hyper_parameters() {
        let config = FiraConfig::new();
        assert_eq!(config.algorithm, Algorithm::Fira);
        assert_eq!((config.rank, config.update_proj_gap, config.alpha), (128, 200, 0.25));
        assert_eq!(config.betas, [0.9, 0.999]);
        assert_eq!((config.epsilon, config.weight_decay), (1e-6, 0.0));
        assert_eq!(config.limiter, Some(1.01));
        assert_eq!(config.target_modules, vec!["attn".to_owned(), "mlp".to_owned()]);
        assert!(config.correct_bias && config.canonical_signs && !config.zero_norm_guard);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn invalid_hyper_parameters_are_rejected_with_their_own_error() {
        let base = FiraConfig::new;
        let cases = [
            (base().with_rank(0), FiraError::ZeroRank),
            (base().with_update_proj_gap(0), FiraError::ZeroProjectionGap),
            (base().with_alpha(0.0), FiraError::InvalidAlpha(0.0)),
            (base().with_alpha(-1.0), FiraError::InvalidAlpha(-1.0)),
            (base().with_limiter(Some(0.99)), FiraError::InvalidGamma(0.99)),
            (base().with_betas([1.0, 0.999]), FiraError::InvalidBeta { name: "beta_1", value: 1.0 }),
            (base().with_betas([0.9, -0.1]), FiraError::InvalidBeta { name: "beta_2", value: -0.1 }),
            (base().with_epsilon(-1e-8), FiraError::InvalidEpsilon(-1e-8)),
            (base().with_weight_decay(-0.1), FiraError::InvalidWeightDecay(-0.1)),
            (base().with_proj_type(ProjectionType::Full), FiraError::FullProjectionWithFira),
            (
                base().with_solver(SubspaceSolverConfig::Randomized { oversampling: 0, power_iterations: 0, seed: 0 }),
                FiraError::DegenerateRandomizedSolver,
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected.clone()));
            assert!(config.build().is_err(), "{expected}");
        }
        // GaLore may project on both sides; AdamW ignores the low-rank settings.
        let galore = base().with_algorithm(Algorithm::GaLore).with_proj_type(ProjectionType::Full);
        assert_eq!(galore.validate(), Ok(()));
        assert_eq!(base().with_algorithm(Algorithm::AdamW).with_rank(0).validate(), Ok(()));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = FiraConfig::new().with_rank(64).with_limiter(None).with_solver(SubspaceSolverConfig::Randomized {
            oversampling: 8,
            power_iterations: 2,
            seed: 5,
        });
        let restored: FiraConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(restored.rank, 64);
        assert_eq!(restored.limiter, None);
        assert_eq!(restored.solver, config.solver);
    }
}
