//! The module-level optimizer: routing by module path, selection errors, memory report,
//! save/load of its record, non-finite gradients at a refresh, and the scaling probe.

mod common;

use burn::backend::Autodiff;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use std::sync::{Arc, Mutex};

use common::HostMatrix;
use fira_optim::{
    Algorithm, FiraConfig, FiraError, FiraOptimizer, ParamRoute, ProjectionSide, ProjectionType, ScalingProbeConfig, ScalingRecorder,
    ScalingSample, SkipReason, SubspaceSolverConfig,
};

/// A LLaMA-shaped module (parameter paths and shapes only; the real model lives in `llama-burn`).
#[derive(Module, Debug)]
struct Attention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
}

#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

#[derive(Module, Debug)]
struct Layer<B: Backend> {
    attn: Attention<B>,
    mlp: Mlp<B>,
    input_norm: Param<Tensor<B, 1>>,
    post_attention_norm: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
struct ShapeModel<B: Backend> {
    embed: Param<Tensor<B, 2>>,
    layers: Vec<Layer<B>>,
    norm: Param<Tensor<B, 1>>,
    lm_head: Linear<B>,
}

/// Built eagerly: Burn's lazy `Param`s would give each clone of an untouched model its own weights.
fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    let scale = (1.0 / d_in as f64).sqrt();
    Linear { weight: Param::from_tensor(Tensor::random([d_in, d_out], Distribution::Uniform(-scale, scale), device)), bias: None }
}

fn ones<B: Backend>(n: usize, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::ones([n], device))
}

impl<B: Backend> ShapeModel<B> {
    fn new(vocab: usize, hidden: usize, intermediate: usize, layers: usize, device: &B::Device) -> Self {
        let layer = || Layer {
            attn: Attention {
                q_proj: linear(hidden, hidden, device),
                k_proj: linear(hidden, hidden, device),
                v_proj: linear(hidden, hidden, device),
                o_proj: linear(hidden, hidden, device),
            },
            mlp: Mlp {
                gate_proj: linear(hidden, intermediate, device),
                up_proj: linear(hidden, intermediate, device),
                down_proj: linear(intermediate, hidden, device),
            },
            input_norm: ones(hidden, device),
            post_attention_norm: ones(hidden, device),
        };
        Self {
            embed: Param::from_tensor(Tensor::random([vocab, hidden], Distribution::Normal(0.0, 0.02), device)),
            layers: (0..layers).map(|_| layer()).collect(),
            norm: ones(hidden, device),
            lm_head: linear(hidden, vocab, device),
        }
    }

    /// A small differentiable function of every parameter (not a transformer).
    fn loss(&self, inputs: Tensor<B, 2>) -> Tensor<B, 1> {
        let mut h = inputs.matmul(self.embed.val());
        for layer in &self.layers {
            let x = h.clone() * layer.input_norm.val().unsqueeze();
            let a = &layer.attn;
            h = h + a.o_proj.forward(a.q_proj.forward(x.clone()) * a.k_proj.forward(x.clone()) + a.v_proj.forward(x));
            let x = h.clone() * layer.post_attention_norm.val().unsqueeze();
            let m = &layer.mlp;
            h = h + m.down_proj.forward(burn::tensor::activation::silu(m.gate_proj.forward(x.clone())) * m.up_proj.forward(x));
        }
        self.lm_head.forward(h * self.norm.val().unsqueeze()).square().mean()
    }
}

type B = Autodiff<burn::backend::NdArray<f32>>;

fn small_model(device: &burn::tensor::Device<B>) -> ShapeModel<B> {
    ShapeModel::new(24, 16, 40, 2, device)
}

/// A `[5, 24]` input batch made on the host: the backend's global generator is shared by the
/// tests of this binary, which run concurrently, so a seed set in one test does not hold while
/// another draws.
fn host_inputs(seed: u64, device: &burn::tensor::Device<B>) -> Tensor<B, 2> {
    let values: Vec<f32> = (0..5 * 24).map(|i| ((i as f32 + 0.37) * (seed as f32 + 1.3)).sin()).collect();
    Tensor::from_data(burn::tensor::TensorData::new(values, [5, 24]), device)
}

fn train_step<B: AutodiffBackend>(
    optimizer: &mut FiraOptimizer<ShapeModel<B>, B>,
    model: ShapeModel<B>,
    inputs: Tensor<B, 2>,
) -> ShapeModel<B> {
    let grads = GradientsParams::from_grads(model.loss(inputs).backward(), &model);
    optimizer.step(0.01, model, grads)
}

fn params_of(model: &ShapeModel<B>) -> Vec<Vec<f32>> {
    let mut out = vec![model.embed.val().to_data().to_vec().unwrap()];
    for layer in &model.layers {
        for linear in [&layer.attn.q_proj, &layer.attn.k_proj, &layer.attn.v_proj, &layer.attn.o_proj] {
            out.push(linear.weight.val().to_data().to_vec().unwrap());
        }
        for linear in [&layer.mlp.gate_proj, &layer.mlp.up_proj, &layer.mlp.down_proj] {
            out.push(linear.weight.val().to_data().to_vec().unwrap());
        }
        out.push(layer.input_norm.val().to_data().to_vec().unwrap());
    }
    out.push(model.lm_head.weight.val().to_data().to_vec().unwrap());
    out
}

#[test]
fn selection_routes_attention_and_mlp_weights_only() {
    let device = Default::default();
    let model = small_model(&device);
    let optimizer = FiraConfig::new().with_rank(4).init::<B, _>(&model).unwrap();
    let report = optimizer.selection();
    let route = |path: &str| report.params.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{path}")).route;

    // Burn stores Linear weights [in, out]; sides refer to the [out, in] matrix.
    assert_eq!(route("layers.1.attn.q_proj.weight"), ParamRoute::Projected { side: ProjectionSide::Right, rank: 4 });
    // gate_proj is [16, 40] in Burn = [40, 16] PyTorch: tall, right side.
    assert_eq!(route("layers.0.mlp.gate_proj.weight"), ParamRoute::Projected { side: ProjectionSide::Right, rank: 4 });
    // down_proj is [40, 16] in Burn = [16, 40] PyTorch: wide, left side.
    assert_eq!(route("layers.0.mlp.down_proj.weight"), ParamRoute::Projected { side: ProjectionSide::Left, rank: 4 });
    for dense in ["embed", "lm_head.weight", "norm", "layers.0.input_norm"] {
        assert_eq!(route(dense), ParamRoute::Dense, "{dense}");
    }
    assert_eq!(report.projected_count(), 2 * 7);
    assert_eq!(report.params.len(), 1 + 2 * 9 + 2);
    assert!(report.to_string().contains("layers.1.mlp.up_proj.weight"));
}

/// Frozen parameters (a LoRA fine-tune's base weights) are not selected and hold no state; a step
/// moves only what trains.
#[test]
fn frozen_parameters_hold_no_state_and_do_not_move() {
    let device = Default::default();
    let mut model = small_model(&device).no_grad();
    model.layers[0].attn.q_proj = linear(16, 16, &device);
    model.lm_head = linear(16, 24, &device);
    let mut optimizer = FiraConfig::new().with_rank(4).init::<B, _>(&model).unwrap();
    let paths: Vec<&str> = optimizer.selection().params.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["layers.0.attn.q_proj.weight", "lm_head.weight"]);
    // q_proj: the projector [16, 4], rank-4 moments [4, 16] twice and the limiter's previous norm
    // (the formula of the 60M test below); lm_head: AdamW's two moments.
    assert_eq!(optimizer.selection().total_state_bytes(), 4 * ((16 * 4 + 2 * 4 * 16 + 1) + 2 * 16 * 24));
    let before = params_of(&model);
    let after = params_of(&train_step(&mut optimizer, model, host_inputs(1, &device)));
    let moved: Vec<bool> = before.iter().zip(&after).map(|(b, a)| b != a).collect();
    // params_of order: embed, then per layer q, k, v, o, gate, up, down, input norm; lm_head.
    let mut expected = vec![false; moved.len()];
    expected[1] = true;
    expected[moved.len() - 1] = true;
    assert_eq!(moved, expected);
}

/// A checkpoint loaded into the model gives its parameters the ids they were saved with; the
/// optimizer's selection (made once, when it was built) still routes them, and its reports
/// name them: the same step as an optimizer built for the loaded model.
#[test]
fn the_selection_routes_a_model_whose_parameter_ids_a_loaded_record_replaced() {
    let device = Default::default();
    let config = FiraConfig::new().with_rank(3);
    let built_for = small_model(&device);
    let loaded = small_model(&device).load_record(small_model(&device).into_record());
    assert_ne!(built_for.embed.id, loaded.embed.id, "the test needs other ids");
    let mut optimizer = config.init::<B, _>(&built_for).unwrap();
    let mut reference = config.init::<B, _>(&loaded).unwrap();
    let a = train_step(&mut optimizer, loaded.clone(), host_inputs(1, &device));
    let b = train_step(&mut reference, loaded, host_inputs(1, &device));
    assert_eq!(params_of(&a), params_of(&b));
    let (report, expected) = (optimizer.memory_report(), reference.memory_report());
    assert_eq!(report, expected);
    assert_eq!(report.params.iter().filter(|p| matches!(p.route, ParamRoute::Projected { .. })).count(), 2 * 7);
    assert!(report.params.iter().all(|p| !p.path.starts_with("<param")), "{report:?}");
}

#[test]
fn regex_targets_and_selection_errors() {
    let device = Default::default();
    let model = small_model(&device);
    let only_q = FiraConfig::new().with_rank(4).with_target_modules(vec![r"attn\.q_proj".into()]).init::<B, _>(&model).unwrap();
    assert_eq!(only_q.selection().projected_count(), 2);

    let nothing = FiraConfig::new().with_target_modules(vec!["self_attn".into()]).init::<B, _>(&model);
    match nothing {
        Err(FiraError::NothingSelected { patterns, examples }) => {
            assert_eq!(patterns, vec!["self_attn".to_owned()]);
            assert!(examples.contains("layers.0.attn.q_proj.weight"), "{examples}");
        }
        other => panic!("expected NothingSelected, got {:?}", other.err()),
    }
    let bad = FiraConfig::new().with_target_modules(vec!["attn(".into()]).init::<B, _>(&model);
    assert!(matches!(bad.err(), Some(FiraError::InvalidTargetPattern { .. })));

    // Plain AdamW selecting nothing is fine: nothing is silently lost.
    let adamw =
        FiraConfig::new().with_algorithm(fira_optim::Algorithm::AdamW).with_target_modules(vec!["self_attn".into()]).init::<B, _>(&model);
    assert!(adamw.is_ok());
}

#[test]
fn record_round_trip_through_a_file_resumes_exactly() {
    let device = Default::default();
    let config = FiraConfig::new().with_rank(3).with_update_proj_gap(2).with_weight_decay(0.01);
    let mut model = small_model(&device);
    let mut optimizer = config.init::<B, _>(&model).unwrap();
    let inputs = |seed: u64| host_inputs(seed, &device);
    for step in 0..3 {
        model = train_step(&mut optimizer, model, inputs(step));
    }

    let path = std::env::temp_dir().join(format!("fira-resume-{}", std::process::id()));
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    recorder.record(optimizer.to_record(), path.clone()).unwrap();
    let loaded = recorder.load(path.clone(), &device).unwrap();
    std::fs::remove_file(path.with_extension("bin")).ok();
    let mut resumed = config.init::<B, _>(&model).unwrap().load_record(loaded);
    assert_eq!(resumed.memory_report(), optimizer.memory_report());

    // Step 4 is a refresh step of neither (gap 2: refreshes at 1, 3, 5); step 5 refreshes.
    let (mut a, mut b) = (model.clone(), model);
    for step in 3..5 {
        a = train_step(&mut optimizer, a, inputs(step));
        b = train_step(&mut resumed, b, inputs(step));
    }
    assert_eq!(params_of(&a), params_of(&b), "resumed optimizer diverged");

    // A fresh optimizer (no state) takes a different step: the comparison can fail.
    let mut fresh = config.init::<B, _>(&a).unwrap();
    let c = train_step(&mut fresh, a.clone(), inputs(9));
    let d = train_step(&mut optimizer, a, inputs(9));
    assert_ne!(params_of(&c), params_of(&d));
}

#[test]
fn non_finite_gradient_at_a_refresh_skips_the_parameter_and_is_reported() {
    let device = Default::default();
    let model = small_model(&device);
    let mut optimizer = FiraConfig::new().with_rank(3).with_update_proj_gap(2).init::<B, _>(&model).unwrap();
    let q_id = model.layers[0].attn.q_proj.weight.id;
    let q_before = model.layers[0].attn.q_proj.weight.val().to_data();
    let poisoned = |model: &ShapeModel<B>, value: f32| {
        let mut grads = GradientsParams::from_grads(model.loss(Tensor::ones([2, 24], &device)).backward(), model);
        let grad: Tensor<<B as AutodiffBackend>::InnerBackend, 2> = grads.remove(q_id).unwrap();
        grads.register(q_id, grad.slice_fill([0..1, 0..1], value));
        grads
    };

    // First step: no basis yet, so the parameter is left untouched and has no state.
    let model = optimizer.step(0.01, model.clone(), poisoned(&model, f32::NAN));
    let skipped = optimizer.take_skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, "layers.0.attn.q_proj.weight");
    assert_eq!(skipped[0].reason, SkipReason::NonFiniteGradient);
    assert_eq!(model.layers[0].attn.q_proj.weight.val().to_data(), q_before);
    let held = optimizer.memory_report();
    assert!(held.params.iter().all(|p| p.id != q_id), "a skipped first step must leave no state");
    assert!(held.params.iter().any(|p| p.path == "layers.0.attn.k_proj.weight"), "other parameters step");

    // Two finite steps (refresh at 1), then an infinite gradient at the refresh of step 3.
    let mut model = model;
    for _ in 0..2 {
        let grads = GradientsParams::from_grads(model.loss(Tensor::ones([2, 24], &device)).backward(), &model);
        model = optimizer.step(0.01, model, grads);
    }
    assert!(optimizer.take_skipped().is_empty());
    let record_before = optimizer.to_record();
    let q_before = model.layers[0].attn.q_proj.weight.val().to_data();
    let model = optimizer.step(0.01, model.clone(), poisoned(&model, f32::INFINITY));
    assert_eq!(optimizer.take_skipped().len(), 1);
    assert_eq!(model.layers[0].attn.q_proj.weight.val().to_data(), q_before);
    let state = |record: &<FiraOptimizer<ShapeModel<B>, B> as Optimizer<_, B>>::Record| record[&q_id].clone().into_state::<2>();
    let (before, after) = (state(&record_before), state(&optimizer.to_record()));
    assert_eq!(after.step, 2, "the step count does not move, so the refresh is retried");
    let basis = |s: &fira_optim::FiraState<_, 2>| s.projector.as_ref().unwrap().right_basis().unwrap().to_data();
    assert_eq!(basis(&after), basis(&before), "the stored basis is kept");
    assert_eq!(after.moments.first.to_data(), before.moments.first.to_data());
    assert!(after.moments.first.to_data().iter::<f32>().all(f32::is_finite));
}

/// Spec, "Memory": per projected m×n matrix (std side) `(m or n)·r'` projector elements plus
/// `2·r'·(the other dim)` moments, plus one scalar for Fira; `2mn` for every AdamW tensor.
#[test]
fn memory_report_of_llama_60m_equals_the_spec_formula() {
    let device = Default::default();
    // LLaMA-60M (GaLore/Fira configs): hidden 512, intermediate 1376, 8 layers, vocab 32000.
    let (vocab, hidden, intermediate, layers, rank) = (32000, 512, 1376, 8, 128);
    let model = ShapeModel::<B>::new(vocab, hidden, intermediate, layers, &device);
    let config =
        FiraConfig::new().with_rank(rank).with_solver(SubspaceSolverConfig::Randomized { oversampling: 8, power_iterations: 1, seed: 0 });
    let mut optimizer = config.init::<B, _>(&model).unwrap();

    let projected = |m: usize, n: usize| {
        let r = rank.min(m).min(n);
        let (basis_dim, other_dim) = if m >= n { (n, m) } else { (m, n) };
        basis_dim * r + 2 * r * other_dim + 1
    };
    let per_layer = 4 * projected(hidden, hidden)
        + 2 * projected(intermediate, hidden) // gate, up: [out, in] = 1376 x 512
        + projected(hidden, intermediate) // down: 512 x 1376
        + 2 * 2 * hidden; // two norms on the AdamW path
    let dense = 2 * (vocab * hidden) * 2 + 2 * hidden;
    let expected_bytes = 4 * (layers * per_layer + dense);
    // = 4 · (8 · 2,041,863 + 65,537,024) bytes.
    assert_eq!(expected_bytes, 327_487_712);
    assert_eq!(optimizer.selection().total_state_bytes(), expected_bytes, "planned state");

    // One real step, then count what is actually held.
    let mut grads = GradientsParams::new();
    for param in &optimizer.selection().params {
        let shape: [usize; 2] = match param.shape[..] {
            [a, b] => [a, b],
            [a] => [1, a],
            _ => unreachable!(),
        };
        let grad = Tensor::<<B as AutodiffBackend>::InnerBackend, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        if param.shape.len() == 1 {
            grads.register(param.id, grad.reshape([shape[1]]));
        } else {
            grads.register(param.id, grad);
        }
    }
    let _model = optimizer.step(1e-3, model, grads);
    let held = optimizer.memory_report();
    assert_eq!(held.params.len(), 2 + layers * 9 + 1);
    assert_eq!(held.total_state_bytes(), expected_bytes, "held state");
    let q = held.params.iter().find(|p| p.path == "layers.0.attn.q_proj.weight").unwrap();
    assert_eq!(q.state_bytes, 4 * projected(512, 512));
}

/// Burn's data-parallel strategy with the optimizer sharded over the devices hands the optimizer
/// one gradient set per replica (`step_multi`); each parameter's gradients are reduced on one
/// device and stepped there. The result must be the single-device step on the summed gradient,
/// refreshes included, so every replica's copy of the model and the one optimizer state agree.
#[test]
fn data_parallel_step_equals_the_step_on_the_summed_gradient() {
    use burn::module::{ModuleVisitor, Param as P};
    use burn::optim::MultiGradientsParams;
    use burn::tensor::backend::Device as _;

    struct Sum<'a>(&'a GradientsParams, &'a GradientsParams, GradientsParams);
    impl ModuleVisitor<B> for Sum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &P<Tensor<B, D>>) {
            type Inner = <B as AutodiffBackend>::InnerBackend;
            if let (Some(a), Some(b)) = (self.0.get::<Inner, D>(param.id), self.1.get::<Inner, D>(param.id)) {
                self.2.register(param.id, a + b);
            }
        }
    }

    let device = Default::default();
    let config = FiraConfig::new().with_rank(3).with_update_proj_gap(2);
    let model = small_model(&device);
    let mut single = config.init::<B, _>(&model).unwrap();
    let mut sharded = config.init::<B, _>(&model).unwrap();
    let grads_of = |model: &ShapeModel<B>, seed: u64| GradientsParams::from_grads(model.loss(host_inputs(seed, &device)).backward(), model);
    let (mut a, mut b) = (model.clone(), model);
    // Steps 1 and 3 refresh the projectors (gap 2).
    for step in 0..4u64 {
        let (replica_0, replica_1) = (grads_of(&a, 2 * step), grads_of(&a, 2 * step + 1));
        let mut summed = Sum(&replica_0, &replica_1, GradientsParams::new());
        a.visit(&mut summed);
        a = single.step(0.01, a, summed.2);

        let (replica_0, replica_1) = (grads_of(&b, 2 * step), grads_of(&b, 2 * step + 1));
        let id = device.to_id();
        let multi = MultiGradientsParams { grads: vec![(replica_0, id), (replica_1, id)] };
        b = sharded.step_multi(0.01, b, multi);
        assert_eq!(params_of(&a), params_of(&b), "step {}: data-parallel step differs", step + 1);
    }
    assert_eq!(single.memory_report(), sharded.memory_report());
    assert!(sharded.memory_report().params.iter().any(|p| p.route != ParamRoute::Dense));
}

/// The probe's samples, kept in memory.
#[derive(Default)]
struct Collected(Mutex<Vec<ScalingSample>>);

impl ScalingRecorder for Collected {
    fn record(&self, sample: ScalingSample) {
        self.0.lock().unwrap().push(sample);
    }
}

/// ψ per column (left side) or row (right side) of `r`'s PyTorch-oriented gradient, recomputed on
/// the host from the direction `n` = m ⊘ (√v + ε): `‖n‖ / (‖r‖ + 1e-8)` along that axis.
fn host_scaling(n: &HostMatrix, r: &HostMatrix, side: ProjectionSide) -> (Vec<f64>, f64) {
    let norms = |x: &HostMatrix| -> Vec<f64> {
        match side {
            ProjectionSide::Left => (0..x.cols).map(|j| (0..x.rows).map(|i| x.at(i, j).powi(2)).sum::<f64>().sqrt()).collect(),
            _ => (0..x.rows).map(|i| (0..x.cols).map(|j| x.at(i, j).powi(2)).sum::<f64>().sqrt()).collect(),
        }
    };
    let factors = norms(n).iter().zip(norms(r)).map(|(a, b)| a / (b + 1e-8)).collect();
    (factors, n.frobenius() / (r.frobenius() + 1e-8))
}

/// Three steps with the probe recording every second one: the samples of step 2 are ψ of exactly
/// the saved gradient and state, recomputed on the host in double precision (low-rank: from the
/// saved projector and low-rank moments; AdamW: from the full moments and the gradient itself),
/// for the targeted matrices only and the same columns in both runs.
#[test]
fn the_scaling_probe_records_psi_of_the_saved_gradient_and_state() {
    type Inner = <B as AutodiffBackend>::InnerBackend;
    let device = Default::default();
    let eps = FiraConfig::new().epsilon;
    let mut columns_of_runs = Vec::new();
    for algorithm in [Algorithm::GaLore, Algorithm::Fira, Algorithm::AdamW] {
        let mut model = small_model(&device);
        let collected = Arc::new(Collected::default());
        let probe = ScalingProbeConfig { every: 2, columns: 5, seed: 7 };
        let config = FiraConfig::new().with_rank(4).with_algorithm(algorithm);
        let mut optimizer = config.init::<B, _>(&model).unwrap().with_scaling_probe(probe, collected.clone()).unwrap();
        let mut kept = None;
        for step in 1..=3u64 {
            let grads = GradientsParams::from_grads(model.loss(host_inputs(step, &device)).backward(), &model);
            let saved: Vec<(String, HostMatrix)> = optimizer
                .selection()
                .params
                .iter()
                .filter(|p| p.shape.len() == 2)
                .filter_map(|p| grads.get::<Inner, 2>(p.id).map(|g| (p.path.clone(), HostMatrix::of(&g))))
                .collect();
            model = optimizer.step(0.01, model, grads);
            if step == 2 {
                kept = Some((saved, optimizer.to_record()));
            }
        }
        let (saved, record) = kept.unwrap();
        let samples = collected.0.lock().unwrap().clone();
        // Two layers of seven attention and MLP matrices, at step 2 only; never the embedding,
        // the head or the norms.
        assert_eq!(samples.len(), 14, "{algorithm:?}");
        assert!(samples.iter().all(|s| s.step == 2 && s.projected == (algorithm != Algorithm::AdamW)));
        for sample in &samples {
            let entry = optimizer.selection().params.iter().find(|p| p.path == sample.path).unwrap();
            let state = record[&entry.id].clone().into_state::<2>();
            // Stored [in, out]; the optimizer measures the PyTorch-oriented [out, in] matrix.
            let grad = saved.iter().find(|(path, _)| *path == sample.path).unwrap().1.transpose();
            let (first, second) = (HostMatrix::of(&state.moments.first), HostMatrix::of(&state.moments.second));
            let direction = first.zip(&second, |m, v| m / (v.sqrt() + eps));
            let (side, direction, reference) = match &state.projector {
                Some(projector) => {
                    let reference = match projector.side() {
                        ProjectionSide::Left => HostMatrix::of(projector.left_basis().unwrap()).transpose().matmul(&grad),
                        _ => grad.matmul(&HostMatrix::of(projector.right_basis().unwrap()).transpose()),
                    };
                    (projector.side(), direction, reference)
                }
                None => (ProjectionSide::for_shape(ProjectionType::Std, grad.rows, grad.cols), direction.transpose(), grad.clone()),
            };
            let (factors, matrix) = host_scaling(&direction, &reference, side);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs();
            assert!(close(sample.matrix, matrix), "{}: matrix ψ {} vs {matrix}", sample.path, sample.matrix);
            let mean = factors.iter().sum::<f64>() / factors.len() as f64;
            assert!(close(sample.column_mean, mean), "{}: mean {} vs {mean}", sample.path, sample.column_mean);
            assert_eq!(sample.columns.len(), 5);
            for (&column, &value) in sample.columns.iter().zip(&sample.column_factors) {
                assert!(close(value, factors[column]), "{} column {column}: {value} vs {}", sample.path, factors[column]);
            }
        }
        columns_of_runs.push(samples.into_iter().map(|s| (s.path, s.columns)).collect::<Vec<_>>());
    }
    assert!(columns_of_runs.windows(2).all(|w| w[0] == w[1]), "every run samples the same columns of each matrix");
}

#[test]
fn a_probe_that_records_nothing_is_refused() {
    let model = small_model(&Default::default());
    let optimizer = FiraConfig::new().with_rank(4).init::<B, _>(&model).unwrap();
    let every_0 = ScalingProbeConfig { every: 0, columns: 5, seed: 1 };
    let error = optimizer.with_scaling_probe(every_0, Arc::new(Collected::default())).err().unwrap();
    assert_eq!(error, FiraError::ZeroProbeSetting { name: "every" });
}
