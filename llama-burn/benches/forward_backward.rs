//! Training throughput of the model alone: forward, the causal-LM loss and backward (no
//! optimizer), in tokens per second.
//!
//! `cargo bench -p llama-burn --bench forward_backward`
//!
//! Environment: `LLAMA_BENCH_BACKENDS` (comma-separated, default `ndarray,flex`; `wgpu`, `cuda`
//! with those features), `LLAMA_BENCH_MODELS` (presets, default `20m,60m`), `LLAMA_BENCH_BATCH`
//! (8), `LLAMA_BENCH_SEQ` (256), `LLAMA_BENCH_STEPS` (timed steps, default 3, after 1 warm-up).

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use fira_testkit::median;
use llama_burn::{LlamaConfig, causal_lm_loss};

fn bench<B: Backend>(backend: &str, model_name: &str, device: &B::Device, batch: usize, seq: usize, steps: usize) {
    let config = LlamaConfig::preset(model_name).expect("a preset name");
    let model = config.init::<Autodiff<B>>(device).expect("valid preset");
    B::seed(device, 0);
    let ids = Tensor::<Autodiff<B>, 2, Int>::random([batch, seq], Distribution::Uniform(0.0, config.vocab_size as f64), device);
    let mut times = Vec::with_capacity(steps);
    for step in 0..=steps {
        let start = Instant::now();
        let loss = causal_lm_loss(model.forward(ids.clone()).expect("seq within limits"), ids.clone(), None);
        let grads = loss.backward();
        // Reading one gradient back waits for asynchronous backends to finish the step.
        let _ = model.lm_head.weight.val().grad(&grads).expect("lm_head gradient").into_data();
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let median = median(times);
    let tokens = (batch * seq) as f64;
    println!(
        "| {backend} | {model_name} | {batch}x{seq} | {:.0} | {:.0} |",
        median * 1e3,
        tokens / median
    );
}

fn main() {
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (batch, seq, steps) = (var("LLAMA_BENCH_BATCH", 8), var("LLAMA_BENCH_SEQ", 256), var("LLAMA_BENCH_STEPS", 3));
    let backends = std::env::var("LLAMA_BENCH_BACKENDS").unwrap_or_else(|_| "ndarray,flex".to_owned());
    let models = std::env::var("LLAMA_BENCH_MODELS").unwrap_or_else(|_| "20m,60m".to_owned());
    println!("| backend | model | batch | median step (ms) | tokens/s |\n|---|---|---|--:|--:|");
    for backend in backends.split(',') {
        for model in models.split(',') {
            fira_testkit::with_backend!(backend, |device: B| { bench::<B>(backend, model, &device, batch, seq, steps) })
        }
    }
}
