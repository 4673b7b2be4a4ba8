//! Model structure, weight files and loss: parameter counts and paths, HF and Burn checkpoint
//! round trips, sharded and half-precision HF checkpoints, the errors of weight files that do not
//! fit, and the padded loss.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use burn_store::ModuleSnapshot;
use fira_testkit::{HostTensor, SafetensorsFile, StoredFloat, max_abs_diff, write_safetensors};
use llama_burn::{Llama, LlamaConfig, LlamaError, LossTargets, causal_lm_loss, hf_name};

type B = NdArray<f32>;

fn tiny_config() -> LlamaConfig {
    LlamaConfig::new(50, 32, 40, 4, 2)
}

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama-golden").join(case)
}

fn golden_tiny() -> PathBuf {
    golden("tiny")
}

/// The tensors of a weight file, sorted by name.
fn sorted_tensors(path: &Path) -> Vec<(String, HostTensor)> {
    let mut tensors: Vec<(String, HostTensor)> = SafetensorsFile::read(path).unwrap().tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Every weight of `model` under its HF name, exported (PyTorch layout).
fn exported_tensors(model: &Llama<B>, config: &LlamaConfig, name: &str) -> Vec<(String, HostTensor)> {
    let dir = scratch(name);
    model.save_hf_dir(config, &dir).unwrap();
    sorted_tensors(&dir.join("model.safetensors"))
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
    let gqa = tiny_config().with_num_key_value_heads(Some(2));
    let tied_mqa = tiny_config().with_num_key_value_heads(Some(1)).with_tie_word_embeddings(true);
    for config in [LlamaConfig::preset("9m").unwrap(), LlamaConfig::preset("20m").unwrap(), tiny_config(), gqa, tied_mqa] {
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

/// Loading each golden HF directory and exporting it again gives back the same names, shapes and
/// values (PyTorch layout; no `lm_head.weight` for the tied model), and an HF directory written
/// by us loads with the same config and logits.
#[test]
fn hf_safetensors_round_trip_is_exact() {
    let device = Default::default();
    for case in ["tiny", "small", "gqa", "tied_mqa"] {
        let (config, model) = LlamaConfig::load_hf_dir::<B>(golden(case), &device).unwrap();
        let original = sorted_tensors(&golden(case).join("model.safetensors"));
        let exported = exported_tensors(&model, &config, &format!("hf_round_trip_{case}"));
        let names = |t: &[(String, HostTensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&exported), names(&original), "{case}");
        assert_eq!(config.tie_word_embeddings, !names(&original).contains(&"lm_head.weight".to_owned()), "{case}");
        for ((name, ours), (_, theirs)) in exported.iter().zip(&original) {
            assert_eq!((&ours.shape, &ours.values), (&theirs.shape, &theirs.values), "{case}: {name}");
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hf_round_trip_{case}"));
        let (reloaded_config, reloaded) = LlamaConfig::load_hf_dir::<B>(&dir, &device).unwrap();
        assert_eq!(reloaded_config, config, "{case}");
        assert_eq!(logits_of(&reloaded, config.vocab_size), logits_of(&model, config.vocab_size), "{case}");
    }
}

/// The `gqa` case split into two shards with an index, as `save_pretrained` writes large models:
/// the same weights as the single file. An index that lists a shard outside the directory, or
/// shards that lack a tensor, are errors naming the problem.
#[test]
fn sharded_checkpoints_load_as_one() {
    let device = Default::default();
    let tensors = sorted_tensors(&golden("gqa").join("model.safetensors"));
    let write_sharded = |name: &str, tensors: &[(String, HostTensor)], index_map: serde_json::Value| {
        let dir = scratch(name);
        std::fs::copy(golden("gqa").join("config.json"), dir.join("config.json")).unwrap();
        let (first, second) = tensors.split_at(tensors.len() / 2);
        write_safetensors(&dir.join("model-00001-of-00002.safetensors"), first, StoredFloat::F32).unwrap();
        write_safetensors(&dir.join("model-00002-of-00002.safetensors"), second, StoredFloat::F32).unwrap();
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": index_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        dir
    };
    let half = tensors.len() / 2;
    let weight_map: serde_json::Map<String, serde_json::Value> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), format!("model-0000{}-of-00002.safetensors", 1 + usize::from(i >= half)).into()))
        .collect();
    let dir = write_sharded("sharded", &tensors, weight_map.clone().into());
    let (_, sharded) = LlamaConfig::load_hf_dir::<B>(&dir, &device).unwrap();
    let (config, single) = LlamaConfig::load_hf_dir::<B>(golden("gqa"), &device).unwrap();
    assert_eq!(logits_of(&sharded, config.vocab_size), logits_of(&single, config.vocab_size));

    let mut outside = weight_map.clone();
    outside.insert(tensors[0].0.clone(), "../elsewhere.safetensors".into());
    let err = LlamaConfig::load_hf_dir::<B>(write_sharded("sharded_outside", &tensors, outside.into()), &device).unwrap_err();
    assert!(err.to_string().contains("is not a file of this directory"), "{err}");
    let incomplete: Vec<(String, HostTensor)> = tensors.iter().filter(|(n, _)| n != "model.norm.weight").cloned().collect();
    let err = LlamaConfig::load_hf_dir::<B>(write_sharded("sharded_incomplete", &incomplete, weight_map.into()), &device).unwrap_err();
    assert!(err.to_string().contains("missing from the file: model.norm.weight"), "{err}");
}

/// f16 and bf16 weight files (how most checkpoints are published) load into an f32 model as
/// exactly their rounded values, and a tied model ignores a stored copy of its output projection.
#[test]
fn half_precision_checkpoints_are_converted_on_load() {
    let device = Default::default();
    let tensors = sorted_tensors(&golden("tied_mqa").join("model.safetensors"));
    for stored in [StoredFloat::F16, StoredFloat::BF16] {
        let dir = scratch(&format!("half_{stored:?}"));
        std::fs::copy(golden("tied_mqa").join("config.json"), dir.join("config.json")).unwrap();
        let mut with_copy = tensors.clone();
        let embedding = tensors.iter().find(|(n, _)| n == "model.embed_tokens.weight").unwrap().1.clone();
        with_copy.push(("lm_head.weight".to_owned(), embedding));
        write_safetensors(&dir.join("model.safetensors"), &with_copy, stored).unwrap();
        let (config, model) = LlamaConfig::load_hf_dir::<B>(&dir, &device).unwrap();
        assert!(model.embed_tokens.weight.val().dtype() == burn::tensor::DType::F32, "{stored:?}");
        for ((name, ours), (_, original)) in exported_tensors(&model, &config, &format!("half_{stored:?}_export")).iter().zip(&tensors) {
            let rounded: Vec<f32> = original.values.iter().map(|&v| stored.round(v)).collect();
            assert_eq!(ours.values, rounded, "{stored:?}: {name}");
        }
        assert!(logits_of(&model, config.vocab_size).iter().all(|v| v.is_finite()));
    }
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
    let ours: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), &LossTargets::ExceptId(pad)).into_scalar();
    assert!((ours as f64 - expected).abs() < 1e-5, "{ours} vs {expected}");
    // Without padding every target counts, which is a different number here.
    let unpadded: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), &LossTargets::All).into_scalar();
    assert!((unpadded as f64 - expected).abs() > 1e-2);
    // A mask of the same targets gives the same mean; column 0 of a mask is never a target.
    let not_pad: Vec<bool> = ids.iter().enumerate().map(|(i, &id)| i % seq != 0 && id != pad as i64).collect();
    let mask = |keep: Vec<bool>| LossTargets::Mask(Tensor::<B, 2, Bool>::from_data(TensorData::new(keep, [batch, seq]), &device));
    let masked: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), &mask(not_pad.clone())).into_scalar();
    assert!((masked - ours).abs() < 1e-6, "{masked} vs {ours}");
    // A mask keeps what no id rule can: here only the targets at (1, 1) = 9 and (1, 3) = 0 (a
    // padding id), predicted at positions (1, 0) and (1, 2).
    let mut two = vec![false; batch * seq];
    two[seq + 1] = true;
    two[seq + 3] = true;
    let lp_rows: Vec<f32> = log_softmax(logits_t.clone(), 2).into_data().to_vec().unwrap();
    let expected_two = -(lp_rows[seq * vocab + 9] + lp_rows[(seq + 2) * vocab]) / 2.0;
    let ours_two: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), &mask(two)).into_scalar();
    assert!((ours_two - expected_two).abs() < 1e-5, "{ours_two} vs {expected_two}");
    // None counts: loss 0, not NaN.
    let none: f32 = causal_lm_loss(logits_t.clone(), ids_t.clone(), &mask(vec![false; batch * seq])).into_scalar();
    assert_eq!(none, 0.0);
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
