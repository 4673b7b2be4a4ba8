//! One optimizer step over the LLaMA-60M parameter set (no forward pass): Burn's AdamW, the
//! HF-style AdamW path, GaLore, and Fira with the exact and the randomized solver.
//!
//! `cargo bench -p fira-optim --bench optimizer_step`
//!
//! Environment: `FIRA_BENCH_BACKENDS` (comma-separated, default `ndarray,flex`; `wgpu`, `cuda`
//! with those features), `FIRA_BENCH_STEPS` (timed steps per optimizer, default 5),
//! `FIRA_BENCH_RANK` (128), `FIRA_BENCH_GAP` (T for the amortisation, 200).

use std::time::Instant;

use burn::optim::{AdamWConfig, SimpleOptimizer};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use fira_optim::subspace::SubspaceSolver;
use fira_optim::{Algorithm, FiraConfig, ProjectionSide, SubspaceSolverConfig};
use fira_testkit::median;

/// LLaMA-60M (hidden 512, intermediate 1376, 8 layers, vocab 32000) in Burn layout, with
/// whether the paper's rule (`attn`/`mlp` in the path) projects the parameter.
fn llama_60m_shapes() -> Vec<(Vec<usize>, bool)> {
    let (vocab, hidden, intermediate, layers) = (32000, 512, 1376, 8);
    let mut shapes = vec![(vec![vocab, hidden], false)];
    for _ in 0..layers {
        shapes.extend((0..4).map(|_| (vec![hidden, hidden], true)));
        shapes.extend((0..2).map(|_| (vec![hidden, intermediate], true)));
        shapes.push((vec![intermediate, hidden], true));
        shapes.extend((0..2).map(|_| (vec![hidden], false)));
    }
    shapes.push((vec![hidden], false));
    shapes.push((vec![hidden, vocab], false));
    shapes
}

/// Parameters and gradients of the benchmark, as 2-D tensors (1-D norms as `[1, n]`, which
/// the routing keeps on the AdamW path).
struct ParameterSet<B: Backend> {
    params: Vec<(Tensor<B, 2>, Tensor<B, 2>, bool)>,
}

impl<B: Backend> ParameterSet<B> {
    fn new(device: &B::Device) -> Self {
        B::seed(device, 0);
        let params = llama_60m_shapes()
            .into_iter()
            .map(|(shape, projected)| {
                let dims = match shape[..] {
                    [n] => [1, n],
                    [rows, cols] => [rows, cols],
                    _ => unreachable!("LLaMA parameters are 1-D or 2-D"),
                };
                (
                    Tensor::random(dims, Distribution::Normal(0.0, 0.02), device),
                    Tensor::random(dims, Distribution::Normal(0.0, 1e-3), device),
                    projected,
                )
            })
            .collect();
        Self { params }
    }
}

struct Timing {
    name: &'static str,
    step_ms: f64,
    refresh_ms: f64,
    amortised_ms: f64,
    state_mib: f64,
}

/// Times a generic per-tensor step function: the first (refresh) step, then `steps` more.
fn time_optimizer<B: Backend, S: Clone>(
    name: &'static str,
    set: &ParameterSet<B>,
    device: &B::Device,
    steps: usize,
    gap: usize,
    step: impl Fn(Tensor<B, 2>, Tensor<B, 2>, bool, Option<S>) -> (Tensor<B, 2>, Option<S>),
    state_bytes: impl Fn(&S) -> usize,
) -> Timing {
    let mut states: Vec<Option<S>> = vec![None; set.params.len()];
    let mut weights: Vec<Tensor<B, 2>> = set.params.iter().map(|(w, _, _)| w.clone()).collect();
    let mut samples = vec![];
    for _ in 0..=steps {
        let start = Instant::now();
        for (i, (_, grad, projected)) in set.params.iter().enumerate() {
            let (w, s) = step(weights[i].clone(), grad.clone(), *projected, states[i].take());
            weights[i] = w;
            states[i] = s;
        }
        B::sync(device).expect("device sync");
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let first = samples.remove(0);
    let step_ms = median(samples);
    let refresh_ms = (first - step_ms).max(0.0);
    let held: usize = states.iter().flatten().map(&state_bytes).sum();
    Timing {
        name,
        step_ms,
        refresh_ms,
        amortised_ms: step_ms + refresh_ms / gap as f64,
        state_mib: held as f64 / (1 << 20) as f64,
    }
}

fn bench_backend<B: Backend>(backend: &str, device: &B::Device, steps: usize, rank: usize, gap: usize) {
    let set = ParameterSet::<B>::new(device);
    let randomized = SubspaceSolverConfig::Randomized {
        oversampling: 8,
        power_iterations: 2,
        seed: 0,
    };
    let fira = |config: FiraConfig| config.with_rank(rank).with_update_proj_gap(gap).build().unwrap();
    let variants = [
        ("hf-adamw path", fira(FiraConfig::new().with_algorithm(Algorithm::AdamW))),
        ("galore (exact svd)", fira(FiraConfig::new().with_algorithm(Algorithm::GaLore))),
        ("fira (exact svd)", fira(FiraConfig::new())),
        ("fira (randomized)", fira(FiraConfig::new().with_solver(randomized))),
    ];

    let adamw = AdamWConfig::new().with_weight_decay(0.0).build();
    let mut timings = vec![time_optimizer(
        "burn AdamW",
        &set,
        device,
        steps,
        gap,
        |w, g, _, s| SimpleOptimizer::<B>::step(&adamw, 0.01, w, g, s),
        |s| 4 * (s.momentum.moment_1.shape().num_elements() + s.momentum.moment_2.shape().num_elements()),
    )];
    for (name, optimizer) in &variants {
        timings.push(time_optimizer(
            name,
            &set,
            device,
            steps,
            gap,
            |w, g, projected, s| {
                let out = optimizer.step_param(0.01, w, g, s, projected);
                (out.tensor, out.state)
            },
            |s| s.bytes(),
        ));
    }

    let baseline = timings[0].amortised_ms;
    println!("\n## {backend}: one step over LLaMA-60M parameters (rank {rank}, T {gap}, median of {steps})");
    println!("| optimizer | step ms | refresh ms | amortised ms | × burn AdamW | state MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for t in &timings {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.2} | {:.1} |",
            t.name,
            t.step_ms,
            t.refresh_ms,
            t.amortised_ms,
            t.amortised_ms / baseline,
            t.state_mib
        );
    }

    // The refresh alone: every projected matrix through each solver.
    let matrices: Vec<_> = set.params.iter().filter(|(_, _, p)| *p).map(|(_, g, _)| g.clone()).collect();
    let randomized = |power_iterations| {
        Box::new(fira_optim::subspace::RandomizedRangeFinder {
            oversampling: 8,
            power_iterations,
            seed: 0,
            canonical_signs: true,
        })
    };
    let solvers: [(&str, Box<dyn SubspaceSolver<B>>); 3] = [
        ("exact svd (faer, host)", Box::new(fira_optim::subspace::ExactSvd { canonical_signs: true })),
        ("randomized (p 8, q 2)", randomized(2)),
        ("randomized (p 8, q 1)", randomized(1)),
    ];
    println!("\n| solver | refresh of all {} projected matrices, ms |", matrices.len());
    println!("|---|---:|");
    for (name, solver) in solvers {
        let start = Instant::now();
        for g in &matrices {
            // Burn layout [in, out]: PyTorch-oriented gradient is the transpose.
            let g = g.clone().transpose();
            let [m, n] = g.dims();
            let side = ProjectionSide::for_shape(fira_optim::ProjectionType::Std, m, n);
            solver.solve(g, rank, side).expect("solver succeeds on finite gradients");
        }
        B::sync(device).expect("device sync");
        println!("| {name} | {:.0} |", start.elapsed().as_secs_f64() * 1e3);
    }
}

fn main() {
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (steps, rank, gap) = (var("FIRA_BENCH_STEPS", 5), var("FIRA_BENCH_RANK", 128), var("FIRA_BENCH_GAP", 200));
    let backends = std::env::var("FIRA_BENCH_BACKENDS").unwrap_or_else(|_| "ndarray,flex".to_owned());
    for backend in backends.split(',') {
        fira_testkit::with_backend!(backend, |device: B| { bench_backend::<B>(backend, &device, steps, rank, gap) })
    }
}
