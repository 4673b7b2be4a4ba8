//! Burn stores `Linear` weights `[in, out]`, the transpose of PyTorch's `[out, in]`.
//! With `layout = Burn`, Fira on `Wᵀ` with gradients `Gᵀ` must reproduce the official
//! trajectory transposed: for square matrices the official right projection is Burn's left.

mod common;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use common::{GoldenCase, HostTensor, golden_dir, max_abs, max_abs_diff, ulp, with_test_backend};
use fira_optim::{Algorithm, FiraConfig, WeightLayout};

fn transposed<B: Backend>(t: &HostTensor, device: &B::Device) -> Tensor<B, 2> {
    Tensor::<B, 2>::from_data(TensorData::new(t.values.clone(), t.shape.clone()), device).transpose()
}

/// Largest error/tolerance ratio (golden README tolerance on W) of a run on transposed tensors.
fn worst_ratio<B: Backend>(case: &GoldenCase, variant: &str, algorithm: Algorithm, layout: WeightLayout, device: &B::Device) -> f32 {
    let fira = FiraConfig::new()
        .with_algorithm(algorithm)
        .with_rank(case.usize("rank"))
        .with_update_proj_gap(case.usize("update_proj_gap"))
        .with_alpha(case.f64("alpha"))
        .with_weight_decay(case.f64("weight_decay"))
        .with_layout(layout)
        .build()
        .unwrap();
    let gold = case.tensor(&format!("{variant}/W"));
    let steps = case.usize("K");
    let mut previous = case.tensor("W0").values.clone();
    let mut max_delta = 0.0f32;
    for k in 0..steps {
        let current = gold.index(k).values;
        max_delta = max_delta.max(max_abs_diff(&current, &previous));
        previous = current;
    }

    let mut weights = transposed::<B>(case.tensor("W0"), device);
    let mut state = None;
    let mut worst = 0.0f32;
    for k in 1..=steps {
        let grad = transposed::<B>(&case.tensor("grads").index(k - 1), device);
        let step = fira.step_param(case.lr(k), weights, grad, state, true);
        (weights, state) = (step.tensor, step.state);
        let ours: Vec<f32> = weights.clone().transpose().into_data().iter::<f32>().collect();
        let gold_k = gold.index(k - 1).values;
        let tolerance = 2e-4 * max_delta + 32.0 * ulp(max_abs(&gold_k));
        worst = worst.max(max_abs_diff(&ours, &gold_k) / tolerance);
    }
    worst
}

#[test]
fn burn_layout_reproduces_the_golden_trajectories_transposed() {
    with_test_backend!(|device: B| {
        for name in ["tall_12x8_r3", "wide_8x12_r3", "square_10x10_r4_wd", "rank_ge_min_6x10_r8"] {
            let case = GoldenCase::load(&golden_dir().join(format!("{name}.safetensors"))).unwrap();
            for (variant, algorithm) in [("fira_std_canon", Algorithm::Fira), ("galore_std_canon", Algorithm::GaLore)] {
                let ratio = worst_ratio::<B>(&case, variant, algorithm, WeightLayout::Burn, &device);
                println!("{name} {variant} on Wᵀ (layout Burn): worst error/tolerance {ratio:.3}");
                assert!(ratio <= 1.0, "{name} {variant}: {ratio}");
            }
        }

        // The layout matters exactly for square matrices: treating Wᵀ as a PyTorch matrix
        // projects the square case on the wrong side and leaves the golden trajectory.
        let square = GoldenCase::load(&golden_dir().join("square_10x10_r4_wd.safetensors")).unwrap();
        let wrong = worst_ratio::<B>(&square, "fira_std_canon", Algorithm::Fira, WeightLayout::PyTorch, &device);
        assert!(wrong > 100.0, "square matrix with the wrong layout: ratio {wrong}");
        let tall = GoldenCase::load(&golden_dir().join("tall_12x8_r3.safetensors")).unwrap();
        let same = worst_ratio::<B>(&tall, "fira_std_canon", Algorithm::Fira, WeightLayout::PyTorch, &device);
        assert!(same <= 1.0, "non-square matrices pick the equivalent side either way: {same}");
    });
}
