//! What each option beyond the official defaults changes, checked against independent host
//! computations (matrices as row-major `Vec<f64>`).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{GoldenCase, HostMatrix, golden_dir};
use faer::Mat;
use fira_optim::subspace::{ExactSvd, RandomizedRangeFinder, SubspaceSolver};
use fira_optim::{
    Algorithm, Fira, FiraConfig, FiraState, FiraStep, ProjectionSide, ResidualForm, ScalingMode, SubspaceSolverConfig, WeightLayout,
};

type B = burn::backend::NdArray<f32>;

fn case(name: &str) -> GoldenCase {
    GoldenCase::load(&golden_dir().join(format!("{name}.safetensors"))).unwrap()
}

/// `(W0, [G_1, G_2, ...])` of a golden case, as tensors.
fn inputs(name: &str) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
    let case = case(name);
    let tensor =
        |t: &common::HostTensor| Tensor::<B, 2>::from_data(TensorData::new(t.values.clone(), t.shape.clone()), &Default::default());
    let grads = case.tensor("grads");
    (tensor(case.tensor("W0")), (0..case.usize("K")).map(|k| tensor(&grads.index(k))).collect())
}

fn pytorch(config: FiraConfig) -> Fira {
    config.with_layout(WeightLayout::PyTorch).build().unwrap()
}

fn first_step(fira: &Fira, name: &str) -> (Tensor<B, 2>, Tensor<B, 2>, FiraStep<B, 2>) {
    let (w0, grads) = inputs(name);
    let step = fira.step_param(0.01, w0.clone(), grads[0].clone(), None, true);
    (w0, grads[0].clone(), step)
}

/// `N = m ⊘ (√v + ε)` on the host.
fn direction(state: &FiraState<B, 2>, epsilon: f64) -> HostMatrix {
    let m = HostMatrix::of(&state.moments.first);
    let v = HostMatrix::of(&state.moments.second);
    m.zip(&v, |m, v| m / (v.sqrt() + epsilon))
}

#[test]
fn matrix_scaling_is_one_frobenius_ratio() {
    let fira = pytorch(FiraConfig::new().with_rank(3).with_scaling(ScalingMode::Matrix));
    let (_, _, step) = first_step(&fira, "tall_12x8_r3");
    let phi = HostMatrix::of(step.trace.scaling.as_ref().unwrap());
    assert_eq!((phi.rows, phi.cols), (1, 1), "one factor for the matrix");
    let n = direction(step.state.as_ref().unwrap(), 1e-6);
    let r = HostMatrix::of(step.trace.projected_grad.as_ref().unwrap());
    let expected = n.frobenius() / (r.frobenius() + 1e-8);
    assert!((phi.values[0] - expected).abs() <= 1e-5 * expected, "{} vs {expected}", phi.values[0]);

    // Column scaling (the default) gives one factor per row of this tall (right-projected) matrix.
    let column = pytorch(FiraConfig::new().with_rank(3));
    let (_, _, step) = first_step(&column, "tall_12x8_r3");
    assert_eq!(step.trace.scaling.unwrap().dims(), [12, 1]);
}

#[test]
fn residual_forms_and_no_scaling_match_the_formulas() {
    let alpha = 0.25;
    for (form, scaling) in [
        (ResidualForm::Official, ScalingMode::None),
        (ResidualForm::Official, ScalingMode::Column),
        (ResidualForm::Paper, ScalingMode::Column),
    ] {
        let fira = pytorch(FiraConfig::new().with_rank(3).with_alpha(alpha).with_residual(form).with_scaling(scaling));
        let (w0, g, step) = first_step(&fira, "wide_8x12_r3");
        let state = step.state.as_ref().unwrap();
        let p = HostMatrix::of(state.projector.as_ref().unwrap().left_basis().expect("wide matrix: left side"));
        let (g, w0) = (HostMatrix::of(&g), HostMatrix::of(&w0));
        let r = p.transpose().matmul(&g);
        let back_n = p.matmul(&direction(state, 1e-6));
        let back_r = p.matmul(&r);
        let phi = match &step.trace.scaling {
            None => {
                assert_eq!(scaling, ScalingMode::None);
                HostMatrix { rows: 1, cols: g.cols, values: vec![1.0; g.cols] }
            }
            Some(phi) => HostMatrix::of(phi),
        };
        assert_eq!((phi.rows, phi.cols), (1, 12), "left projection: one factor per column");
        let scaled =
            |x: &HostMatrix| HostMatrix { values: (0..x.values.len()).map(|k| x.values[k] * phi.values[k % x.cols]).collect(), ..*x };
        let update = match form {
            ResidualForm::Official => back_n.map(|v| alpha * v).zip(&scaled(&g.zip(&back_r, |g, b| g - alpha * b)), |a, b| a + b),
            ResidualForm::Paper => back_n.zip(&scaled(&g.zip(&back_r, |g, b| g - b)), |a, b| alpha * (a + b)),
        };
        // No limiter effect on the first step; η = lr·√(1−β2)/(1−β1).
        let eta = 0.01 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
        let expected = w0.zip(&update, |w, u| w - eta * u);
        let actual = HostMatrix::of(&step.tensor);
        let error = actual.max_abs_diff(&expected);
        assert!(error < 1e-6, "{form:?}/{scaling:?}: error {error}");
    }
}

/// GaLore-add (the paper's Eq. 8 ablation) is GaLore's update plus the raw residual: from the
/// same weights and gradient both take the same projector and moments, and their new weights
/// differ by exactly `η (G − P Pᵀ G)` (computed here on the host from the projector), over several
/// steps.
#[test]
fn galore_add_is_galore_plus_the_raw_residual() {
    let config = FiraConfig::new().with_rank(3).with_alpha(0.25);
    let galore = pytorch(config.clone().with_algorithm(Algorithm::GaLore));
    let galore_add = pytorch(config.with_algorithm(Algorithm::GaLoreAdd));
    let (w0, grads) = inputs("wide_8x12_r3");
    let (mut galore_state, mut add_state) = (None, None);
    for (k, g) in grads.iter().take(4).enumerate() {
        // Both from GaLore's weights, so that the difference is this step's alone.
        let base = galore_state.as_ref().map_or(w0.clone(), |(w, _): &(Tensor<B, 2>, _)| w.clone());
        let lr = 0.01;
        let a = galore.step_param(lr, base.clone(), g.clone(), galore_state.map(|(_, s)| s), true);
        let b = galore_add.step_param(lr, base, g.clone(), add_state, true);
        let (sa, sb) = (a.state.unwrap(), b.state.unwrap());
        assert!(sb.limiter_norm.is_none() && b.trace.scaling.is_none(), "step {k}: neither limiter nor scaling");
        let p = HostMatrix::of(sa.projector.as_ref().unwrap().left_basis().expect("wide matrix: left side"));
        let pb = HostMatrix::of(sb.projector.as_ref().unwrap().left_basis().unwrap());
        assert_eq!(p.max_abs_diff(&pb), 0.0, "step {k}: the same projector");
        assert_eq!(HostMatrix::of(&sa.moments.first).max_abs_diff(&HostMatrix::of(&sb.moments.first)), 0.0, "step {k}: moments");
        let g = HostMatrix::of(g);
        let residual = g.zip(&p.matmul(&p.transpose().matmul(&g)), |g, back| g - back);
        let t = (k + 1) as i32;
        let eta = lr * (1.0f64 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
        let expected = HostMatrix::of(&a.tensor).zip(&residual, |w, r| w - eta * r);
        let error = HostMatrix::of(&b.tensor).max_abs_diff(&expected);
        assert!(error < 1e-6, "step {k}: error {error}");
        galore_state = Some((a.tensor, sa));
        add_state = Some(sb);
    }
}

fn limiter_divisors(guard: bool) -> Vec<f32> {
    let fira = pytorch(FiraConfig::new().with_rank(2).with_update_proj_gap(3).with_zero_norm_guard(guard));
    let (mut w, grads) = inputs("zero_grad_step_8x5_r2");
    let mut state = None;
    let mut divisors = vec![];
    for g in grads {
        let step = fira.step_param(0.01, w, g, state, true);
        divisors.push(step.trace.limiter_divisor.unwrap().into_scalar());
        (w, state) = (step.tensor, step.state);
    }
    divisors
}

#[test]
fn zero_norm_guard_prevents_limiter_lock_in() {
    // The gradient is exactly zero at step 5, so the stored norm becomes 0.
    let official = limiter_divisors(false);
    assert!(official[5] > 1e8, "official limiter locks in after a zero residual: {official:?}");
    let guarded = limiter_divisors(true);
    assert_eq!(guarded[5], 1.0, "guard skips the limiter while the stored norm is 0: {guarded:?}");
    assert!(guarded[6..].iter().all(|d| *d < 10.0), "{guarded:?}");
    assert_eq!(official[..5], guarded[..5], "identical before the zero step");
}

#[test]
fn without_limiter_no_norm_is_stored() {
    let with = pytorch(FiraConfig::new().with_rank(3));
    let without = pytorch(FiraConfig::new().with_rank(3).with_limiter(None));
    let (_, _, a) = first_step(&with, "tall_12x8_r3");
    let (_, _, b) = first_step(&without, "tall_12x8_r3");
    let (a, b) = (a.state.unwrap(), b.state.unwrap());
    assert!(a.limiter_norm.is_some() && b.limiter_norm.is_none());
    assert_eq!(a.bytes() - b.bytes(), 4, "the limiter holds one f32");
}

/// A matrix `U diag(s) Vᵀ` with random orthonormal `U`, `V` (from faer's SVD of a random matrix).
fn with_spectrum(m: usize, n: usize, spectrum: &[f64], seed: u64) -> (HostMatrix, HostMatrix, HostMatrix) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let random = Mat::<f64>::from_fn(m, n, |_, _| next());
    let svd = random.thin_svd().unwrap();
    let k = spectrum.len();
    let u = HostMatrix { rows: m, cols: k, values: (0..m * k).map(|i| svd.U()[(i / k, i % k)]).collect() };
    let v = HostMatrix { rows: n, cols: k, values: (0..n * k).map(|i| svd.V()[(i / k, i % k)]).collect() };
    let us = HostMatrix { values: (0..m * k).map(|i| u.values[i] * spectrum[i % k]).collect(), ..u.clone() };
    (us.matmul(&v.transpose()), u, v)
}

/// `‖(I − B Bᵀ) A‖_F` for orthonormal bases `A`, `B`: an upper bound of the largest principal
/// angle's sine between their spans. (Computing `√(1 − cos²)` instead would turn float32
/// rounding of the cosines, ~1e-7, into a spurious sine of ~5e-4.)
fn principal_sine_bound(a: &HostMatrix, b: &HostMatrix) -> f64 {
    let inside = b.matmul(&b.transpose().matmul(a));
    a.zip(&inside, |x, y| x - y).frobenius()
}

#[test]
fn randomized_solver_finds_the_svd_subspace_on_a_gapped_spectrum() {
    let rank: usize = 8;
    // Eight singular values in [1, 2], the rest ten times smaller: a spectral gap of 10.
    let spectrum: Vec<f64> = (0..64).map(|i| if i < rank { 2.0 - 0.1 * i as f64 } else { 0.1 * 0.97f64.powi(i as i32) }).collect();
    let (g, _, _) = with_spectrum(200, 96, &spectrum, 7);
    let solver = RandomizedRangeFinder { oversampling: 8, power_iterations: 2, seed: 3, canonical_signs: true };
    let exact = ExactSvd { canonical_signs: true };
    for side in [ProjectionSide::Left, ProjectionSide::Right] {
        let fast: fira_optim::Projector<B> = solver.solve(g.tensor(), rank, side).unwrap();
        let reference: fira_optim::Projector<B> = exact.solve(g.tensor(), rank, side).unwrap();
        let basis = |p: &fira_optim::Projector<B>| match side {
            ProjectionSide::Left => HostMatrix::of(p.left_basis().unwrap()),
            _ => HostMatrix::of(p.right_basis().unwrap()).transpose(),
        };
        let (fast, reference) = (basis(&fast), basis(&reference));
        let gram = fast.transpose().matmul(&fast);
        let identity = HostMatrix { values: (0..rank * rank).map(|k| f64::from(k / rank == k % rank)).collect(), ..gram };
        assert!(gram.max_abs_diff(&identity) < 1e-5, "{side:?}: basis not orthonormal");
        let sine = principal_sine_bound(&fast, &reference);
        // Theory: ~ (σ_{k+1}/σ_r)^(2q+1) ≈ (0.06/1.3)^5 ≈ 2e-7, plus float32 rounding.
        assert!(sine < 1e-5, "{side:?}: largest principal angle sine ≤ {sine}");
        // With canonical signs the two solvers agree vector by vector, not only as subspaces.
        assert!(fast.max_abs_diff(&reference) < 1e-3, "{side:?}: vectors differ");
    }
}

#[test]
fn randomized_solver_trains_like_the_exact_one() {
    let exact = pytorch(FiraConfig::new().with_rank(3));
    let randomized = pytorch(FiraConfig::new().with_rank(3).with_solver(SubspaceSolverConfig::Randomized {
        oversampling: 4,
        power_iterations: 2,
        seed: 1,
    }));
    // The golden gradients have s_i ≈ 0.7^i: a weak gap, the hard case for a sketch.
    let (_, _, a) = first_step(&exact, "tall_12x8_r3");
    let (_, _, b) = first_step(&randomized, "tall_12x8_r3");
    let error = HostMatrix::of(&a.tensor).max_abs_diff(&HostMatrix::of(&b.tensor));
    assert!(error < 1e-5, "first updates differ by {error}");
}

#[test]
fn moment_transport_keeps_the_back_projected_first_moment() {
    let beta_1 = 0.9;
    for (m, n, side) in [(6, 10, ProjectionSide::Left), (10, 6, ProjectionSide::Right)] {
        // Same top-2 subspace at both refreshes, but the two leading singular values swap,
        // so the new basis is the old one with its vectors reordered.
        let (g1, _, _) = with_spectrum(m, n, &[3.0, 2.0, 0.5, 0.25], 11);
        let (g2, _, _) = with_spectrum(m, n, &[2.0, 3.0, 0.5, 0.25], 11);
        let run = |transport: bool| {
            let fira = pytorch(FiraConfig::new().with_rank(2).with_update_proj_gap(1).with_transport_moments(transport));
            let w = Tensor::<B, 2>::zeros([m, n], &Default::default());
            let first = fira.step_param(0.01, w, g1.tensor(), None, true);
            let second = fira.step_param(0.01, first.tensor, g2.tensor(), first.state.clone(), true);
            (first.state.unwrap(), second.state.unwrap(), second.trace.projected_grad.unwrap())
        };
        // back(X) in full coordinates, for either side.
        let back = |state: &FiraState<B, 2>, x: &HostMatrix| {
            let projector = state.projector.as_ref().unwrap();
            assert_eq!(projector.side(), side);
            match side {
                ProjectionSide::Left => HostMatrix::of(projector.left_basis().unwrap()).matmul(x),
                _ => x.matmul(&HostMatrix::of(projector.right_basis().unwrap())),
            }
        };
        let invariant_error = |transport: bool| {
            let (before, after, r2) = run(transport);
            let old = back(&before, &HostMatrix::of(&before.moments.first));
            let new = back(&after, &HostMatrix::of(&after.moments.first));
            let fresh = back(&after, &HostMatrix::of(&r2));
            // With transport: back_new(m_2) = β1·back_old(m_1) + (1−β1)·back_new(R_2).
            let expected = old.zip(&fresh, |o, f| beta_1 * o + (1.0 - beta_1) * f);
            new.max_abs_diff(&expected)
        };
        assert!(invariant_error(true) < 1e-5, "{side:?}: transport broke P m");
        assert!(invariant_error(false) > 1e-2, "{side:?}: without transport the stale coordinates rotate P m");
    }
}

#[test]
fn randomized_solver_handles_zero_and_rank_deficient_gradients() {
    let solver = RandomizedRangeFinder { oversampling: 4, power_iterations: 2, seed: 0, canonical_signs: true };
    let orthonormal = |p: &fira_optim::Projector<B>| {
        let q = HostMatrix::of(p.left_basis().unwrap());
        let gram = q.transpose().matmul(&q);
        let identity =
            HostMatrix { values: (0..gram.rows * gram.cols).map(|k| f64::from(k / gram.cols == k % gram.cols)).collect(), ..gram.clone() };
        gram.max_abs_diff(&identity)
    };
    let zero = Tensor::<B, 2>::zeros([12, 30], &Default::default());
    let basis = solver.solve(zero, 4, ProjectionSide::Left).unwrap();
    assert!(orthonormal(&basis) < 1e-6, "zero gradient: exact fallback gives an orthonormal basis");

    // Rank 2 with rank 4 requested: no NaN, and the two real directions are found.
    let (g, u, _) = with_spectrum(12, 30, &[3.0, 1.0], 5);
    let basis = solver.solve(g.tensor(), 4, ProjectionSide::Left).unwrap();
    let found = HostMatrix::of(basis.left_basis().unwrap());
    assert!(found.values.iter().all(|v| v.is_finite()));
    let top2 = HostMatrix { cols: 2, values: (0..12 * 2).map(|k| found.values[(k / 2) * 4 + k % 2]).collect(), ..found.clone() };
    assert!(principal_sine_bound(&u, &top2) < 1e-4, "the rank-2 subspace is recovered");
}
