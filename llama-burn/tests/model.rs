//! Model structure, weight files and loss: parameter counts and paths, HF and Burn checkpoint
//! round trips, the errors of weight files that do not fit, and the padded loss.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use burn_store::ModuleSnapshot;
use fira_testkit::{SafetensorsFile, max_abs_diff};
use llama_burn::{Llama, LlamaConfig, LlamaError, causal_lm_loss, hf_name};

type B = NdArray<f32>;

fn tiny_config() -> LlamaConfig {
    LlamaConfig::new(50, 32, 40, 4, 2)
}

fn golden_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama-golden/tiny")
}

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ids(batch: usize, seq: usize, vocab: usize) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = (0..batch * seq).map(|i| ((i * 7 + 3) % vocab) as i64).collect();
    Tensor::from_data(TensorData::new(values, [batch, seq]), &Default::default())
}

fn logits_of(model: &Llama<B>, vocab: usize) -> Vec<f32> {
    model.forward(ids(2, 9, vocab)).unwrap().into_data().to_vec().unwrap()
}

#[test]
fn instantiated_models_hold_exactly_the_computed_parameter_count() {
    let device = Default::default();
    for config in [LlamaConfig::preset("9m").unwrap(), LlamaConfig::preset("20m").unwrap(), tiny_config()] {
        let model: Llama<B> = config.init(0, &device).unwrap();
        assert_eq!(model.num_params() as u64, config.parameter_count().total(), "{config:?}");
    }
}

#[test]
fn parameter_paths_let_the_papers_selection_rule_work() {
    let model: Llama<B> = tiny_config().init(0, &Default::default()).unwrap();
    let paths: Vec<String> = model.collect(None, None, false).iter().map(|s| s.full_path()).collect();
    let matrices_for_fira: Vec<&String> = paths.iter().filter(|p| p.contains("attn") || p.contains("mlp")).collect();
    assert_eq!(matrices_for_fira.len(), 2 * 7, "{paths:?}");
    for expected in ["layers.1.attn.q_proj.weight", "layers.1.mlp.down_proj.weight", "embed_tokens.weight", "lm_head.weight", "norm.gamma"]
    {
        assert!(paths.iter().any(|p| p == expected), "no {expected} in {paths:?}");
    }
    assert_eq!(hf_name("layers.1.attn.q_proj.weight"), "model.layers.1.self_attn.q_proj.weight");
    assert_eq!(hf_name("layers.0.input_layernorm.gamma"), "model.layers.0.input_layernorm.weight");
    assert_eq!(hf_name("norm.gamma"), "model.norm.weight");
    assert_eq!(hf_name("lm_head.weight"), "lm_head.weight");
}

/// Loading the golden HF file and exporting it again gives back the same names, shapes and
/// values (PyTorch layout), and an HF directory written by us loads with the same logits.
#[test]
fn hf_safetensors_round_trip_is_exact() {
    let device = Default::default();
    let (config, model) = LlamaConfig::load_hf_dir::<B>(golden_tiny(), &device).unwrap();
    let dir = scratch("hf_round_trip");
    model.save_hf_dir(&config, &dir).unwrap();
    let original = SafetensorsFile::read(&golden_tiny().join("model.safetensors")).unwrap();
    let exported = SafetensorsFile::read(&dir.join("model.safetensors")).unwrap();
    let mut names: Vec<_> = exported.tensors.keys().collect();
    names.sort();
    let mut expected: Vec<_> = original.tensors.keys().collect();
    expected.sort();
    assert_eq!(names, expected);
    for (name, tensor) in &original.tensors {
        let ours = exported.tensor(name);
        assert_eq!(ours.shape, tensor.shape, "{name}");
        assert_eq!(ours.values, tensor.values, "{name}");
    }
    let (reloaded_config, reloaded) = LlamaConfig::load_hf_dir::<B>(&dir, &device).unwrap();
    assert_eq!(reloaded_config, config);
    assert_eq!(logits_of(&reloaded, config.vocab_size), logits_of(&model, config.vocab_size));
}

#[test]
fn burn_checkpoint_round_trip_and_foreign_checkpoints() {
    let device = Default::default();
    let config = tiny_config();
    let model: Llama<B> = config.init(0, &device).unwrap();
    let dir = scratch("checkpoint");
    let path = dir.join("model.bpk");
    model.save_checkpoint(&path).unwrap();
    let fresh: Llama<B> = config.init(1, &device).unwrap();
    assert!(max_abs_diff(&logits_of(&fresh, 50), &logits_of(&model, 50)) > 0.0, "another seed's model differs");
    let loaded = fresh.load_checkpoint(&path).unwrap();
    assert_eq!(logits_of(&loaded, 50), logits_of(&model, 50));
    assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")));

    // A checkpoint of another model: a wider one, and one with fewer layers.
    let wider = LlamaConfig { hidden_size: 64, ..config.clone() };
    let err = wider.init::<B>(0, &device).unwrap().load_checkpoint(&path).unwrap_err();
    let LlamaError::WeightMismatch { problems, .. } = &err else { panic!("{err}") };
    assert!(problems.contains("layers.0.attn.q_proj.weight") && problems.contains("Shape mismatch"), "{err}");
    let deeper = LlamaConfig { num_hidden_layers: 3, ..config.clone() };
    let err = deeper.init::<B>(0, &device).unwrap().load_checkpoint(&path).unwrap_err();
    assert!(err.to_string().contains("missing from the file: layers.2.mlp.up_proj.weight"), "{err}");
}

#[test]
fn hf_files_that_do_not_fit_are_errors_naming_the_tensors() {
    let device = Default::default();
    let golden = golden_tiny().join("model.safetensors");
    let tiny = LlamaConfig::from_hf_json(golden_tiny().join("config.json")).unwrap();

    let three_layers = LlamaConfig { num_hidden_layers: 3, ..tiny.clone() };
    let err = three_layers.init::<B>(0, &device).unwrap().load_hf_safetensors(&golden).unwrap_err();
    assert!(err.to_string().contains("missing from the file: model.layers.2.self_attn.q_proj.weight"), "{err}");

    let one_layer = LlamaConfig { num_hidden_layers: 1, ..tiny.clone() };
    let err = one_layer.init::<B>(0, &device).unwrap().load_hf_safetensors(&golden).unwrap_err();
    assert!(err.to_string().contains("not part of this model: model.layers.1.self_attn.o_proj.weight"), "{err}");

    let bigger_vocab = LlamaConfig { vocab_size: 97, ..tiny.clone() };
    let err = bigger_vocab.init::<B>(0, &device).unwrap().load_hf_safetensors(&golden).unwrap_err();
    assert!(err.to_string().contains("Shape mismatch for 'embed_tokens.weight'"), "{err}");

    let dir = scratch("corrupt");
    let corrupt = dir.join("model.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let err = tiny.init::<B>(0, &device).unwrap().load_hf_safetensors(&corrupt).unwrap_err();
    assert!(matches!(err, LlamaError::WeightFile { .. }), "{err}");
    let err = tiny.init::<B>(0, &device).unwrap().load_hf_safetensors(dir.join("absent.safetensors")).unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
}

/// The padded loss equals the mean over non-padding targets, computed independently on the
/// host from the logits (f64 log-sum-exp).
#[test]
fn loss_averages_over_non_padding_targets_only() {
    let device = Default::default();
    let (batch, seq, vocab, pad) = (2usize, 6usize, 11usize, 0usize);
    let logits: Vec<f32> = (0..batch * seq * vocab).map(|i| ((i * 37 % 101) as f32 / 25.0).sin() * 3.0).collect();
    let ids: Vec<i64> = vec![3, 5, 0, 0, 7, 1, 2, 9, 4, 0, 0, 0];
    let logits_t = Tensor::<B, 3>::from_data(TensorData::new(logits.clone(), [batch, seq, vocab]), &device);
    let ids_t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [batch, seq]), &device);

    let (mut total, mut count) = (0.0f64, 0usize);
    for b in 0..batch {
        for t in 0..seq - 1 {
            let target = ids[b * seq + t + 1] as usize;
            if target == pad {
                continue;
            }
            let row = &logits[(b * seq + t) * vocab..(b * seq + t + 1) * vocab];
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            total += lse - row[target] as f64;
            count += 1;
        }
    }
    let expected = total / count as f64;
    let ours: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), Some(pad)).into_scalar();
    assert!((ours as f64 - expected).abs() < 1e-5, "{ours} vs {expected}");
    // Without padding every target counts, which is a different number here.
    let unpadded: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), None).into_scalar();
    assert!((unpadded as f64 - expected).abs() > 1e-2);
    // The same mean from log_softmax directly, as a second check on the gather.
    let lp: Vec<f32> = log_softmax(logits_t, 2).into_data().to_vec().unwrap();
    // Non-padding targets: (row b·seq + t, token) = (0, 5), (3, 7), (4, 1), (6, 9), (7, 4).
    let direct = -(lp[5] + lp[3 * vocab + 7] + lp[4 * vocab + 1] + lp[6 * vocab + 9] + lp[7 * vocab + 4]) / 5.0;
    assert!((ours - direct).abs() < 1e-5, "{ours} vs {direct}");
}

#[test]
fn sequences_longer_than_the_model_limit_are_errors() {
    let config = tiny_config().with_max_position_embeddings(8);
    let model: Llama<B> = config.init(0, &Default::default()).unwrap();
    let err = model.forward(ids(1, 9, 50)).unwrap_err();
    assert!(matches!(err, LlamaError::SequenceTooLong { len: 9, max: 8 }), "{err}");
}
