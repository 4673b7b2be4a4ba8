//! Replays every trajectory of the golden files (official `fira==1.0.2` / `galore-torch==1.0`)
//! within the tolerance of their README, on the backend named by `FIRA_TEST_DEVICE`.
//!
//! Non-`_canon` variants inject the recorded LAPACK projector at each refresh (isolates
//! everything but the SVD); `_canon` variants run our own SVD with canonical signs.
//!
//! `FIRA_GOLDEN_DIR=<dir> cargo test --release -p fira-optim --test golden -- --nocapture`
//!
//! `FIRA_GOLDEN_ONLY=<case>` or `FIRA_GOLDEN_ONLY=<case>/<variant>` replays one case or one
//! trajectory (e.g. `FIRA_GOLDEN_ONLY=fira_std_64x32/fira_std_nolim`); a filter that selects
//! nothing fails and lists the cases.

mod common;

use std::cell::Cell;

use burn::optim::{AdamWConfig, SimpleOptimizer};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use common::{GoldenCase, HostTensor, golden_cases, max_abs, max_abs_diff, ulp, with_test_backend};
use fira_optim::subspace::{SubspaceError, SubspaceSolver};
use fira_optim::{Algorithm, FiraConfig, FiraState, ProjectionSide, ProjectionType, Projector, WeightLayout};

/// What a variant name means.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// `hf_adamw`: the non-projected path of both packages.
    HfAdamW,
    /// `torch_adamw`: `torch.optim.AdamW`, which Burn's own `AdamW` implements.
    TorchAdamW,
    /// `fira_<ptype>[_nolim][_canon]` or `galore_<ptype>[_canon]`.
    Projected { algorithm: Algorithm, proj_type: ProjectionType, proj_name: &'static str, limiter: bool, canon: bool },
}

fn parse_variant(name: &str) -> Result<Variant, String> {
    match name {
        "hf_adamw" => return Ok(Variant::HfAdamW),
        "torch_adamw" => return Ok(Variant::TorchAdamW),
        _ => {}
    }
    let (algorithm, rest) = if let Some(rest) = name.strip_prefix("fira_") {
        (Algorithm::Fira, rest)
    } else if let Some(rest) = name.strip_prefix("galore_") {
        (Algorithm::GaLore, rest)
    } else {
        return Err(format!("unknown variant `{name}`"));
    };
    let (rest, canon) = rest.strip_suffix("_canon").map_or((rest, false), |r| (r, true));
    let (rest, nolim) = rest.strip_suffix("_nolim").map_or((rest, false), |r| (r, true));
    let (proj_type, proj_name) = match rest {
        "std" => (ProjectionType::Std, "std"),
        "reverse_std" => (ProjectionType::ReverseStd, "reverse_std"),
        "left" => (ProjectionType::Left, "left"),
        "right" => (ProjectionType::Right, "right"),
        "full" => (ProjectionType::Full, "full"),
        _ => return Err(format!("unknown projection type in variant `{name}`")),
    };
    if nolim && algorithm != Algorithm::Fira {
        return Err(format!("unknown variant `{name}`: only Fira has a limiter"));
    }
    Ok(Variant::Projected { algorithm, proj_type, proj_name, limiter: !nolim, canon })
}

/// Replays recorded projectors: the basis in effect during step `k` is `proj_*/native[k-1]`.
struct RecordedBases<B: Backend> {
    left: Option<HostTensor>,
    right: Option<HostTensor>,
    step_index: Cell<usize>,
    device: B::Device,
}

impl<B: Backend> SubspaceSolver<B> for RecordedBases<B> {
    fn solve(&self, _grad: Tensor<B, 2>, _rank: usize, side: ProjectionSide) -> Result<Projector<B>, SubspaceError> {
        let k = self.step_index.get();
        let take = |t: &Option<HostTensor>| {
            t.as_ref()
                .map(|t| to_tensor::<B, 2>(&t.index(k), &self.device))
                .ok_or_else(|| SubspaceError::Unavailable(format!("no recorded {side:?} basis")))
        };
        Ok(match side {
            ProjectionSide::Left => Projector::left(take(&self.left)?),
            ProjectionSide::Right => Projector::right(take(&self.right)?),
            ProjectionSide::Both => Projector::both(take(&self.left)?, take(&self.right)?),
        })
    }
}

fn to_tensor<B: Backend, const D: usize>(t: &HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.values.clone(), t.shape.clone()), device)
}

fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.to_data().iter::<f32>().collect()
}

/// Worst error/tolerance ratio of one trajectory and the first failures.
#[derive(Default)]
struct Comparison {
    worst: f32,
    worst_field: String,
    failures: Vec<String>,
}

impl Comparison {
    fn check(&mut self, what: &str, step: usize, actual: &[f32], gold: &[f32], tolerance: f32) {
        if actual.len() != gold.len() {
            self.failures.push(format!("step {step} {what}: {} values, golden has {}", actual.len(), gold.len()));
            return;
        }
        let error = max_abs_diff(actual, gold);
        let ratio = if tolerance > 0.0 {
            error / tolerance
        } else if error == 0.0 {
            0.0
        } else {
            f32::INFINITY
        };
        if !ratio.is_finite() || ratio > 1.0 {
            self.failures.push(format!("step {step} {what}: error {error:.3e} > tolerance {tolerance:.3e}"));
        }
        let ratio = if ratio.is_finite() { ratio } else { f32::INFINITY };
        if ratio > self.worst {
            self.worst = ratio;
            self.worst_field = format!("{what} at step {step}");
        }
    }

    /// Moments and projected gradients: relative error ≤ 2e-5 of their max.
    fn check_relative(&mut self, what: &str, step: usize, actual: &[f32], gold: &[f32], relative: f32) {
        self.check(what, step, actual, gold, relative * max_abs(gold));
    }
}

fn config_for(case: &GoldenCase, variant: Variant) -> FiraConfig {
    let betas = case.config["betas"].as_array().expect("betas");
    let base = FiraConfig::new()
        .with_betas([betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap()])
        .with_epsilon(case.f64("eps"))
        .with_weight_decay(case.f64("weight_decay"))
        .with_correct_bias(case.config["correct_bias"].as_bool().expect("correct_bias"))
        .with_layout(WeightLayout::PyTorch);
    match variant {
        Variant::HfAdamW | Variant::TorchAdamW => base.with_algorithm(Algorithm::AdamW),
        Variant::Projected { algorithm, proj_type, limiter, .. } => base
            .with_algorithm(algorithm)
            .with_rank(case.usize("rank"))
            .with_update_proj_gap(case.usize("update_proj_gap"))
            .with_alpha(case.f64("alpha"))
            .with_proj_type(proj_type)
            .with_limiter(limiter.then(|| case.f64("gamma"))),
    }
}

/// Replays one variant on `D`-dimensional parameters and compares every recorded field.
fn replay<B: Backend, const D: usize>(case: &GoldenCase, name: &str, variant: Variant, device: &B::Device) -> Comparison {
    let steps = case.usize("K");
    let gold_w = case.tensor(&format!("{name}/W"));
    let w0 = case.tensor("W0");
    let grads = case.tensor("grads");

    // |W − W_gold| ≤ c · max_k |W_k − W_{k−1}| + 32 ulp(max |W_k|), c = 2e-4 (5e-3 for `full`).
    let mut max_delta = 0.0f32;
    let mut previous = w0.values.clone();
    for k in 0..steps {
        let current = gold_w.index(k).values;
        max_delta = max_delta.max(max_abs_diff(&current, &previous));
        previous = current;
    }
    let delta_factor = match variant {
        Variant::Projected { proj_type: ProjectionType::Full, .. } => 5e-3,
        _ => 2e-4,
    };

    let mut comparison = Comparison::default();
    let mut weights = to_tensor::<B, D>(w0, device);
    let fira = config_for(case, variant).build().expect("golden configs are valid");

    let mut recorded = None;
    if let Variant::Projected { proj_type, proj_name, canon: false, .. } = variant {
        let (m, n) = (w0.shape[0], w0.shape[1]);
        let (left, right) = match ProjectionSide::for_shape(proj_type, m, n) {
            ProjectionSide::Left => (Some(case.tensor(&format!("proj_{proj_name}/native")).clone()), None),
            ProjectionSide::Right => (None, Some(case.tensor(&format!("proj_{proj_name}/native")).clone())),
            ProjectionSide::Both => {
                (Some(case.tensor("proj_full/native_left").clone()), Some(case.tensor("proj_full/native_right").clone()))
            }
        };
        recorded = Some(RecordedBases::<B> { left, right, step_index: Cell::new(0), device: device.clone() });
    }

    let noise = case.config["residual_is_noise"].as_bool().unwrap_or(false);
    let mut fira_state: Option<FiraState<B, D>> = None;
    let adamw = AdamWConfig::new()
        .with_beta_1(case.config["betas"][0].as_f64().unwrap() as f32)
        .with_beta_2(case.config["betas"][1].as_f64().unwrap() as f32)
        .with_epsilon(case.f64("eps") as f32)
        .with_weight_decay(case.f64("weight_decay") as f32)
        .build();
    let mut adamw_state = None;

    for k in 1..=steps {
        let grad = to_tensor::<B, D>(&grads.index(k - 1), device);
        let lr = case.lr(k);
        let gold = |field: &str| case.tensor(&format!("{name}/{field}")).index(k - 1).values;
        let (moment_1, moment_2);
        match variant {
            Variant::TorchAdamW => {
                let (w, state) = SimpleOptimizer::<B>::step(&adamw, lr, weights, grad, adamw_state.take());
                let state = state.expect("AdamW returns its state");
                moment_1 = host(&state.momentum.moment_1);
                moment_2 = host(&state.momentum.moment_2);
                weights = w;
                adamw_state = Some(state);
            }
            Variant::HfAdamW | Variant::Projected { .. } => {
                let out = match &recorded {
                    Some(solver) => {
                        solver.step_index.set(k - 1);
                        fira.step_with_solver(lr, weights, grad, fira_state.take(), true, solver)
                    }
                    None => fira.step_param(lr, weights, grad, fira_state.take(), true),
                };
                if let Some(reason) = out.skipped {
                    comparison.failures.push(format!("step {k}: skipped ({reason:?})"));
                    return comparison;
                }
                let state = out.state.expect("a step that is not skipped returns state");
                moment_1 = host(&state.moments.first);
                moment_2 = host(&state.moments.second);
                if let Variant::Projected { algorithm, proj_name, canon, limiter, .. } = variant {
                    let trace = &out.trace;
                    let projected = trace.projected_grad.as_ref().expect("projected steps trace R");
                    comparison.check_relative("lowrank_grad", k, &host(projected), &gold("lowrank_grad"), 2e-5);
                    if canon {
                        check_canonical_basis(case, proj_name, &state, k, &mut comparison);
                    }
                    if algorithm == Algorithm::Fira && !noise {
                        let phi = trace.scaling.as_ref().expect("Fira's default scaling is per column");
                        comparison.check_relative("phi", k, &host(phi), &gold("phi"), 1e-5);
                        // S = (G − α·back(R)) ⊙ φ formed explicitly, independently of the fused step.
                        let projector = state.projector.as_ref().expect("projected state has a projector");
                        let grad_pt = to_tensor::<B, 2>(&grads.index(k - 1), device);
                        let in_subspace = projector.back(projected.clone()).mul_scalar(case.f64("alpha"));
                        let residual = (grad_pt - in_subspace) * phi.clone();
                        let snorm_pre = host(&residual.square().sum().sqrt());
                        comparison.check_relative("snorm_pre", k, &snorm_pre, &gold("snorm_pre"), 1e-5);
                        if limiter {
                            let fused = host(trace.residual_norm.as_ref().expect("limiter traces the residual norm"));
                            comparison.check_relative("fused residual norm", k, &fused, &gold("snorm_pre"), 1e-5);
                        }
                        let (divisor, stored) = if limiter {
                            (
                                host(trace.limiter_divisor.as_ref().expect("limiter traces its divisor")),
                                host(state.limiter_norm.as_ref().expect("limiter keeps a norm")),
                            )
                        } else {
                            (vec![1.0], snorm_pre.clone())
                        };
                        comparison.check_relative("limiter", k, &divisor, &gold("limiter"), 1e-5);
                        comparison.check_relative("snorm", k, &stored, &gold("snorm"), 1e-5);
                    }
                }
                weights = out.tensor;
                fira_state = Some(state);
            }
        }
        comparison.check_relative("exp_avg", k, &moment_1, &gold("exp_avg"), 2e-5);
        comparison.check_relative("exp_avg_sq", k, &moment_2, &gold("exp_avg_sq"), 2e-5);
        let gold_wk = gold("W");
        let tolerance = delta_factor * max_delta + 32.0 * ulp(max_abs(&gold_wk));
        comparison.check("W", k, &host(&weights), &gold_wk, tolerance);
    }
    comparison
}

/// In canon mode our own SVD must give the recorded canonical basis at every refresh.
fn check_canonical_basis<B: Backend, const D: usize>(
    case: &GoldenCase,
    proj_name: &str,
    state: &FiraState<B, D>,
    k: usize,
    comparison: &mut Comparison,
) {
    let refreshed = case.tensor(&format!("proj_{proj_name}/refreshed")).values[k - 1] != 0.0;
    if !refreshed {
        return;
    }
    let projector = state.projector.as_ref().expect("projected state has a projector");
    let mut bases = vec![];
    match projector.side() {
        ProjectionSide::Both => {
            bases.push(("canon_left", projector.left_basis()));
            bases.push(("canon_right", projector.right_basis()));
        }
        ProjectionSide::Left => bases.push(("canon", projector.left_basis())),
        ProjectionSide::Right => bases.push(("canon", projector.right_basis())),
    }
    for (field, basis) in bases {
        let gold = case.tensor(&format!("proj_{proj_name}/{field}")).index(k - 1).values;
        let ours = host(basis.expect("the side's basis exists"));
        // Unit vectors; the recorded subspaces are separated by singular-value ratios ≥ 1.35.
        comparison.check(&format!("projector {field}"), k, &ours, &gold, 1e-4);
    }
}

/// Every tensor group must belong to a listed variant or to the shared inputs.
fn unknown_groups(case: &GoldenCase, variants: &[String]) -> Vec<String> {
    let mut unknown: Vec<String> = case
        .tensors
        .keys()
        .filter(|key| {
            let group = key.split('/').next().unwrap_or(key);
            !(matches!(key.as_str(), "W0" | "grads") || group.starts_with("proj_") || variants.iter().any(|v| v == group))
        })
        .cloned()
        .collect();
    unknown.sort();
    unknown
}

/// `FIRA_GOLDEN_ONLY`: a case, or a case and one of its variants.
struct GoldenFilter {
    case: String,
    variant: Option<String>,
}

impl GoldenFilter {
    fn from_env() -> Option<Self> {
        let only = std::env::var("FIRA_GOLDEN_ONLY").ok().filter(|s| !s.is_empty())?;
        let (case, variant) = match only.split_once('/') {
            Some((case, variant)) => (case.to_owned(), Some(variant.to_owned())),
            None => (only, None),
        };
        Some(Self { case, variant })
    }
}

/// The cases and variants to replay.
fn selected(cases: &[GoldenCase], filter: Option<&GoldenFilter>) -> Vec<(usize, Vec<String>)> {
    let selection: Vec<(usize, Vec<String>)> = cases
        .iter()
        .enumerate()
        .filter(|(_, case)| filter.is_none_or(|f| f.case == case.name))
        .map(|(i, case)| {
            let variants =
                case.variants().into_iter().filter(|v| filter.and_then(|f| f.variant.as_ref()).is_none_or(|only| only == v)).collect();
            (i, variants)
        })
        .filter(|(_, variants): &(usize, Vec<String>)| !variants.is_empty())
        .collect();
    if selection.is_empty() {
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        panic!("FIRA_GOLDEN_ONLY selects no trajectory; the cases are: {}", names.join(", "));
    }
    selection
}

fn run<B: Backend>(device: &B::Device, backend: &str) {
    let cases = golden_cases();
    let filter = GoldenFilter::from_env();
    let selection = selected(&cases, filter.as_ref());
    let (mut trajectories, mut failed) = (0usize, 0usize);
    for (index, variants) in &selection {
        let case = &cases[*index];
        let mut case_failed = 0;
        let (mut worst, mut worst_at) = (0.0f32, String::new());
        // Only a whole case can be checked for tensors of no variant.
        let unknown = if filter.as_ref().is_some_and(|f| f.variant.is_some()) { Vec::new() } else { unknown_groups(case, variants) };
        if !unknown.is_empty() {
            println!("  {}: tensors of no known variant: {unknown:?}", case.name);
            case_failed += 1;
        }
        for name in variants {
            trajectories += 1;
            let comparison = match parse_variant(name) {
                Err(message) => Comparison { worst: f32::INFINITY, worst_field: String::from("unparsed variant"), failures: vec![message] },
                Ok(variant) if case.tensor("W0").shape.len() == 1 => replay::<B, 1>(case, name, variant, device),
                Ok(variant) => replay::<B, 2>(case, name, variant, device),
            };
            if comparison.worst >= worst {
                worst = comparison.worst;
                worst_at = format!("{name} {}", comparison.worst_field);
            }
            if !comparison.failures.is_empty() {
                case_failed += 1;
                for failure in comparison.failures.iter().take(3) {
                    println!("  {} / {name}: {failure}", case.name);
                }
            }
        }
        failed += case_failed;
        println!(
            "case {:<24} {:>2} trajectories, {} failed, worst error/tolerance {:.3} ({worst_at}) on {backend}",
            case.name,
            variants.len(),
            case_failed,
            worst
        );
    }
    println!("golden: {} cases, {trajectories} trajectories, {failed} failed", selection.len());
    assert_eq!(failed, 0, "{failed} golden trajectories failed");
}

#[test]
fn golden_trajectories() {
    with_test_backend!(|device: B| {
        run::<B>(&device, std::any::type_name::<B>());
    });
}
