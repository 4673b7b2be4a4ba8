//! Replays the HF transformers golden cases (`tests/data/llama-golden`, or `LLAMA_GOLDEN_DIR`):
//! the GaLore/Fira LLaMA (`tiny`, `small`) and today's LLaMA-family features (`gqa`: grouped-query
//! attention and RoPE base 500000; `tied_mqa`: one key/value head and tied embeddings). Loads each
//! case's weights through the HF loader and checks RoPE tables, the residual stream after layer 0,
//! logits, loss and the gradient of every parameter against HF's, with the tolerances of the
//! golden README, on the backend named by `FIRA_TEST_DEVICE`; the HF export of each reproduces
//! its weight file's tensors exactly.
//!
//! `LLAMA_GOLDEN_DIR=<dir> cargo test --release -p llama-burn --test golden -- --nocapture`

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use fira_testkit::{HostTensor, SafetensorsFile, max_abs, with_test_backend};
use llama_burn::{Llama, LlamaConfig, LossTargets, RotaryTables, causal_lm_loss};

fn golden_dir() -> PathBuf {
    std::env::var_os("LLAMA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama-golden"))
}

/// Every case directory (one holding a `config.json`), sorted by name.
fn case_dirs() -> Vec<PathBuf> {
    let dir = golden_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no case directory (with config.json) in {}", dir.display());
    cases
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

/// Tolerance checks of one case; each records its worst `error / allowed` ratio.
struct Checks {
    failures: Vec<String>,
    worst: (f32, String),
}

impl Checks {
    /// `|a − b| ≤ atol + rtol·|b|` elementwise.
    fn elementwise(&mut self, what: &str, ours: &[f32], gold: &HostTensor, atol: f32, rtol: f32) {
        self.ratio(what, ours, gold, |b| atol + rtol * b.abs());
    }

    /// `max |a − b| ≤ rel · max |b|` (per-tensor scale, for gradients).
    fn scaled(&mut self, what: &str, ours: &[f32], gold: &HostTensor, rel: f32) {
        let allowed = rel * max_abs(&gold.values);
        self.ratio(what, ours, gold, |_| allowed);
    }

    fn ratio(&mut self, what: &str, ours: &[f32], gold: &HostTensor, allowed: impl Fn(f32) -> f32) {
        if ours.len() != gold.values.len() {
            self.failures.push(format!("{what}: {} values, golden has {}", ours.len(), gold.values.len()));
            return;
        }
        let worst = ours.iter().zip(&gold.values).map(|(a, b)| (a - b).abs() / allowed(*b)).fold(0.0f32, f32::max);
        if worst.is_nan() || worst > 1.0 {
            self.failures.push(format!("{what}: error {worst:.2}x the tolerance"));
        }
        if worst > self.worst.0 || worst.is_nan() {
            self.worst = (worst, what.to_owned());
        }
    }
}

/// Every parameter's gradient under its HF name, linear weights transposed back to `[out, in]`.
fn gradients<B: AutodiffBackend>(model: &Llama<B>, grads: &B::Gradients) -> Vec<(String, Vec<f32>)> {
    let matrix = |p: &Param<Tensor<B, 2>>, transpose: bool| {
        let g = p.val().grad(grads).expect("every weight takes part in the loss");
        host(if transpose { g.transpose() } else { g })
    };
    let vector = |p: &Param<Tensor<B, 1>>| host(p.val().grad(grads).expect("every norm takes part in the loss"));
    // A tied model has one gradient for the embedding: the sum of both uses (the golden files
    // hold no `lm_head.weight` for it).
    let mut named = vec![
        ("model.embed_tokens.weight".to_owned(), matrix(&model.embed_tokens.weight, false)),
        ("model.norm.weight".to_owned(), vector(&model.norm.gamma)),
    ];
    if let Some(lm_head) = &model.lm_head {
        named.push(("lm_head.weight".to_owned(), matrix(&lm_head.weight, true)));
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        named.push((format!("{p}.input_layernorm.weight"), vector(&layer.input_layernorm.gamma)));
        named.push((format!("{p}.post_attention_layernorm.weight"), vector(&layer.post_attention_layernorm.gamma)));
        for (name, linear) in [
            ("self_attn.q_proj", &layer.attn.q_proj),
            ("self_attn.k_proj", &layer.attn.k_proj),
            ("self_attn.v_proj", &layer.attn.v_proj),
            ("self_attn.o_proj", &layer.attn.o_proj),
            ("mlp.gate_proj", &layer.mlp.gate_proj),
            ("mlp.up_proj", &layer.mlp.up_proj),
            ("mlp.down_proj", &layer.mlp.down_proj),
        ] {
            named.push((format!("{p}.{name}.weight"), matrix(&linear.weight, true)));
        }
    }
    named
}

fn replay_case<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Checks {
    let config = LlamaConfig::from_hf_json(dir.join("config.json")).expect("case config");
    let model: Llama<B> =
        config.init(0, device).expect("valid config").load_hf_safetensors(dir.join("model.safetensors")).expect("golden weights load");
    let io = SafetensorsFile::read(&dir.join("io.safetensors")).expect("io.safetensors");
    let gold_grads = SafetensorsFile::read(&dir.join("grads.safetensors")).expect("grads.safetensors");
    let ids = io.tensor("input_ids");
    let [batch, seq] = [ids.shape[0], ids.shape[1]];
    let ids_data: Vec<i64> = ids.values.iter().map(|&v| v as i64).collect();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids_data, [batch, seq]), device);

    let mut checks = Checks { failures: Vec::new(), worst: (0.0, String::new()) };
    let rope = RotaryTables::<B>::new(seq, config.head_dim(), config.rope_theta, device);
    checks.elementwise("rope_cos", &host(rope.cos), io.tensor("rope_cos"), 2e-6, 0.0);
    checks.elementwise("rope_sin", &host(rope.sin), io.tensor("rope_sin"), 2e-6, 0.0);
    let hidden = model.hidden_states(input_ids.clone(), 1).expect("sequence fits");
    checks.elementwise("hidden_after_layer0", &host(hidden), io.tensor("hidden_after_layer0"), 5e-5, 1e-4);

    let logits = model.forward(input_ids.clone()).expect("sequence fits");
    checks.elementwise("logits", &host(logits.clone()), io.tensor("logits"), 1e-4, 1e-4);
    checks.elementwise(
        "loss of the logits",
        &host(causal_lm_loss(logits, input_ids.clone(), &LossTargets::All)),
        io.tensor("loss"),
        1e-5,
        0.0,
    );
    checks.elementwise(
        "evaluation loss",
        &host(model.loss(input_ids.clone(), &LossTargets::All).expect("sequence fits")),
        io.tensor("loss"),
        1e-5,
        0.0,
    );
    // The gradients are those of the loss that training differentiates (fused with lm_head).
    let loss = model.training_loss(input_ids, &LossTargets::All).expect("sequence fits");
    checks.elementwise("training loss", &host(loss.clone()), io.tensor("loss"), 1e-5, 0.0);

    let grads = loss.backward();
    let ours = gradients(&model, &grads);
    if ours.len() != gold_grads.tensors.len() {
        checks.failures.push(format!("{} gradients, golden has {}", ours.len(), gold_grads.tensors.len()));
    }
    for (name, values) in &ours {
        let gold = gold_grads.tensor(name);
        checks.scaled(name, values, gold, 5e-5);
        // Rows of tokens absent from the inputs must stay exactly zero (README).
        let exact_zero_broken = gold.values.iter().zip(values).filter(|(g, o)| **g == 0.0 && **o != 0.0).count();
        if name == "model.embed_tokens.weight" && exact_zero_broken > 0 {
            checks.failures.push(format!("{name}: {exact_zero_broken} entries of unused rows are not exactly 0"));
        }
    }
    checks
}

#[test]
fn llama_golden_replay() {
    let cases = case_dirs();
    let mut failed = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy();
        let checks = with_test_backend!(|device: B| { replay_case::<Autodiff<B>>(dir, &device) });
        let (ratio, worst) = &checks.worst;
        if checks.failures.is_empty() {
            println!("case {name}: ok (worst {worst} at {ratio:.3} of its tolerance)");
        } else {
            failed += 1;
            println!("case {name}: FAILED\n  {}", checks.failures.join("\n  "));
        }
    }
    println!("llama-golden: {} cases, {failed} failed", cases.len());
    assert_eq!(failed, 0, "golden cases failed (see the lines above)");
}
