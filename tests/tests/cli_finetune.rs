//! `fira train --init-from` end to end: a run started from another run's checkpoint or from its
//! HF export starts from those weights (with a learning rate too small to move them, its
//! validation loss is the source's), takes the source's model and tokenizer, trains on from
//! there and resumes; an HF checkpoint of today's layout (grouped-query attention, tied
//! embeddings, another RoPE base, bf16 weights) fine-tunes, exports and generates; conflicting or
//! broken sources are refused with status 2 before a run directory exists.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::NdArray;
use common::{fira_ok, json_file, refused, scratch};
use fira_testkit::{HostTensor, SafetensorsFile, StoredFloat, write_safetensors};
use llama_burn::LlamaConfig;
use serde_json::Value;

/// Rows and validation of every run here; the source adds its BPE's size.
const SHAPE: &[&str] = &["--seq-len", "64", "--batch-size", "4", "--valid-rows", "16", "--log-every", "1"];

fn train(run_dir: &Path, extra: &[&str]) {
    let mut args = vec!["train", "--run-dir", run_dir.to_str().unwrap()];
    args.extend_from_slice(SHAPE);
    args.extend_from_slice(extra);
    fira_ok(&args);
}

/// A 30-step run of the 9m preset on the embedded corpus (shared by the tests of this binary).
fn source_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("source");
        train(&run, &["--vocab-size", "512", "--steps", "30", "--eval-every", "30", "--checkpoint-every", "30"]);
        run
    })
}

fn records(run_dir: &Path, split: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|r| r["split"] == split).collect()
}

fn last_valid_loss(run_dir: &Path) -> f64 {
    records(run_dir, "valid").last().unwrap()["loss"].as_f64().unwrap()
}

#[test]
fn a_run_starts_from_the_weights_model_and_tokenizer_of_a_run_or_its_export() {
    let source = source_run();
    let source_loss = last_valid_loss(source);
    let source_first = records(source, "train")[0]["loss"].as_f64().unwrap();
    for (name, from) in [("from-run", source.to_owned()), ("from-export", source.join("model"))] {
        // A learning rate of 1e-12 leaves the weights as loaded: the validation rows (the same
        // data, seed and shape) get the source's loss.
        let still = scratch(&format!("{name}-still"));
        train(
            &still,
            &["--init-from", from.to_str().unwrap(), "--lr", "1e-12", "--steps", "2", "--eval-every", "2", "--checkpoint-every", "2"],
        );
        let loss = last_valid_loss(&still);
        assert!((loss - source_loss).abs() < 1e-5 * source_loss, "{name}: validation loss {loss}, the source's {source_loss}");
        assert_eq!(json_file(&still.join("config.json")), json_file(&source.join("config.json")), "{name}");
        assert_eq!(std::fs::read(still.join("tokenizer.json")).unwrap(), std::fs::read(source.join("tokenizer.json")).unwrap(), "{name}");
        let options = json_file(&still.join("options.json"));
        assert_eq!(options["init_from"].as_str(), from.to_str(), "{name}");
        assert!(options["model"].is_null(), "{name}: {options}");
    }

    // Fine-tuning, at the source's final learning rate and on rows of another seed, starts where
    // the source ended and improves on it (the default peak rate of pre-training, 0.01 with fresh
    // moments, first undoes some of it: 5.40 after 10 steps against the source's 5.29).
    let tuned = scratch("tuned");
    let source_arg = source.to_str().unwrap();
    let schedule = ["--lr", "0.001", "--seed", "7", "--steps", "20", "--eval-every", "10", "--checkpoint-every", "10"];
    train(&tuned, &[&["--init-from", source_arg][..], &schedule].concat());
    let first = records(&tuned, "train")[0]["loss"].as_f64().unwrap();
    assert!(first < source_first - 0.5, "first loss {first}: not below the untrained source's {source_first}");
    assert!(last_valid_loss(&tuned) < source_loss, "validation loss {} not below the source's {source_loss}", last_valid_loss(&tuned));

    // Resumed from its own checkpoint (step 20 of 30), not from the source's weights again.
    fira_ok(&["train", "--run-dir", tuned.to_str().unwrap(), "--resume", "--steps", "30"]);
    let steps: Vec<u64> = records(&tuned, "train").iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());
    let resumed = records(&tuned, "train")[20]["loss"].as_f64().unwrap();
    assert!(resumed < source_first - 0.5, "step 21 loss {resumed}");
}

/// An HF directory of a Llama-3-style model (2 key/value heads for 4 query heads, tied
/// embeddings, RoPE base 500000) in bf16, with the source run's tokenizer.
fn llama3_style_checkpoint(dir: &Path) -> LlamaConfig {
    let config =
        LlamaConfig::new(512, 128, 352, 4, 2).with_num_key_value_heads(Some(2)).with_tie_word_embeddings(true).with_rope_theta(5e5);
    let model = config.init::<NdArray>(3, &Default::default()).unwrap();
    model.save_hf_dir(&config, dir).unwrap();
    let weights = dir.join("model.safetensors");
    let mut tensors: Vec<(String, HostTensor)> = SafetensorsFile::read(&weights).unwrap().tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(&weights, &tensors, StoredFloat::BF16).unwrap();
    std::fs::copy(source_run().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    config
}

#[test]
fn an_hf_checkpoint_with_grouped_query_attention_and_tied_embeddings_fine_tunes_and_generates() {
    let hf = scratch("llama3-style");
    llama3_style_checkpoint(&hf);
    let tuned = scratch("llama3-tuned");
    train(&tuned, &["--init-from", hf.to_str().unwrap(), "--steps", "6", "--eval-every", "6", "--checkpoint-every", "6"]);
    let losses: Vec<f64> = records(&tuned, "train").iter().map(|r| r["loss"].as_f64().unwrap()).collect();
    assert!(losses[5] < losses[0], "{losses:?}");
    let config = json_file(&tuned.join("config.json"));
    assert_eq!((config["num_key_value_heads"].as_u64(), config["tie_word_embeddings"].as_bool()), (Some(2), Some(true)), "{config}");
    assert_eq!(config["rope_theta"].as_f64(), Some(5e5));
    let export = SafetensorsFile::read(&tuned.join("model/model.safetensors")).unwrap();
    assert!(!export.tensors.contains_key("lm_head.weight"), "a tied model exported an lm_head");
    assert_eq!(export.tensor("model.layers.0.self_attn.k_proj.weight").shape, [64, 128]);

    // Its completions with and without the KV cache (two key/value heads cached, repeated for
    // four query heads) are the same tokens.
    let completions = |name: &str, extra: &[&str]| {
        let json = tuned.join(format!("{name}.json"));
        let mut args = vec!["generate", "--model", tuned.to_str().unwrap(), "--prompt", "Mr. Darcy", "--max-new-tokens", "16"];
        args.extend_from_slice(&["--json", json.to_str().unwrap()]);
        args.extend_from_slice(extra);
        fira_ok(&args);
        json_file(&json)["completions"][0]["ids"].clone()
    };
    let cached = completions("cached", &[]);
    assert_eq!(cached.as_array().map(Vec::len), Some(16), "{cached}");
    assert_eq!(cached, completions("recomputed", &["--no-kv-cache"]));
}

#[test]
fn conflicting_or_broken_sources_are_refused_before_a_run_exists() {
    let source = source_run();
    let root = scratch("bad");
    let run = root.join("run");
    let run_arg = run.to_str().unwrap();
    let with = |from: &Path, extra: &[&str]| {
        let mut args: Vec<String> = [
            "train",
            "--run-dir",
            run_arg,
            "--init-from",
            from.to_str().unwrap(),
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let refuse = |args: Vec<String>, message: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, message, &root);
        assert!(!run.exists(), "{args:?} created the run directory");
    };
    refuse(with(source, &["--model", "20m"]), "--model cannot be given with it");
    let tokenizer = source.join("tokenizer.json");
    refuse(with(source, &["--model", "9m", "--tokenizer", tokenizer.to_str().unwrap()]), "--model and --tokenizer cannot be given");
    refuse(with(&root.join("nowhere"), &[]), "is not a directory");
    refuse(with(source, &["--seq-len", "2048"]), "exceeds the model's max_position_embeddings 1024");

    let no_weights = root.join("no-weights");
    std::fs::create_dir_all(&no_weights).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join("model").join(file), no_weights.join(file)).unwrap();
    }
    refuse(with(&no_weights, &[]), "holds no weights");
    // A config.json that the weight file does not fit: found when the weights are loaded, still
    // before the run directory is made.
    let deeper = root.join("deeper");
    std::fs::create_dir_all(&deeper).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(source.join("model").join(file), deeper.join(file)).unwrap();
    }
    let mut config = json_file(&source.join("model/config.json"));
    config["num_hidden_layers"] = 5.into();
    std::fs::write(deeper.join("config.json"), config.to_string()).unwrap();
    refuse(with(&deeper, &[]), "missing from the file: model.layers.4");
}
