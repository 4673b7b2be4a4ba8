//! `fira generate` end to end on a short run of the embedded corpus: the KV cache gives the same
//! tokens and log-probabilities as recomputing the whole sequence for every token, greedy and
//! sampled; the run directory and its HF export give the same completions; seeded sampling
//! repeats; a completion stops at an end-of-text id of `generation_config.json` and at the
//! model's last position; bad input is refused with status 2 and writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{fira_ok, json_file, refused, scratch};
use serde_json::Value;

/// Prompts of the corpus' style, one per line.
const PROMPTS: &str = "It is a truth universally acknowledged\nElizabeth said\n";
const NEW_TOKENS: &str = "24";

/// A model trained for 40 steps on the embedded corpus (shared by the tests of this binary).
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("run");
        fira_ok(&[
            "train",
            "--run-dir",
            run.to_str().unwrap(),
            "--vocab-size",
            "512",
            "--seq-len",
            "64",
            "--batch-size",
            "8",
            "--steps",
            "40",
            "--eval-every",
            "40",
            "--checkpoint-every",
            "40",
            "--valid-rows",
            "8",
        ]);
        run
    })
}

/// `fira generate` of [`PROMPTS`] with `extra`, its `--json` result.
fn generate(model: &Path, name: &str, extra: &[&str]) -> Value {
    let dir = scratch(name);
    let prompts = dir.join("prompts.txt");
    std::fs::write(&prompts, PROMPTS).unwrap();
    let json = dir.join("out.json");
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--max-new-tokens",
        NEW_TOKENS,
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    fira_ok(&args);
    json_file(&json)
}

fn ids(completion: &Value, key: &str) -> Vec<u64> {
    completion[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

fn log_probabilities(completion: &Value) -> Vec<f64> {
    completion["log_probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// The same tokens, and log-probabilities within 1e-4 (float rounding of the attention sums; the
/// cached and recomputed logits agree within 2e-5 of the largest in llama-burn's test).
fn assert_same_completions(a: &Value, b: &Value, what: &str) {
    let (a, b) = (a["completions"].as_array().unwrap(), b["completions"].as_array().unwrap());
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(ids(x, "prompt_ids"), ids(y, "prompt_ids"), "{what}");
        assert_eq!(ids(x, "ids"), ids(y, "ids"), "{what}: {x} vs {y}");
        assert_eq!(x["stop"], y["stop"], "{what}");
        for (p, q) in log_probabilities(x).iter().zip(log_probabilities(y)) {
            assert!((p - q).abs() < 1e-4, "{what}: log-probabilities {p} vs {q}");
        }
    }
}

#[test]
fn the_kv_cache_generates_what_recomputing_every_position_does() {
    let run = trained_run();
    let cached = generate(run, "greedy-cached", &[]);
    let recomputed = generate(run, "greedy-recomputed", &["--no-kv-cache"]);
    assert_eq!((cached["kv_cache"].as_bool(), recomputed["kv_cache"].as_bool()), (Some(true), Some(false)));
    assert_same_completions(&cached, &recomputed, "greedy");
    for completion in cached["completions"].as_array().unwrap() {
        let new = ids(completion, "ids");
        assert!(!new.is_empty() && new.len() <= 24, "{completion}");
        assert!(new.iter().all(|&id| id < 512), "{completion}");
        // Greedy takes the most likely token: its probability is at least 1/vocab.
        assert!(log_probabilities(completion).iter().all(|&p| p <= 0.0 && p >= -(512f64.ln())), "{completion}");
        let stop = completion["stop"].as_str().unwrap();
        assert!(stop == "max_new_tokens" && new.len() == 24 || stop == "end_of_text", "{completion}");
    }
    assert_eq!(
        cached["new_tokens"].as_u64().unwrap(),
        cached["completions"].as_array().unwrap().iter().map(|c| ids(c, "ids").len() as u64).sum::<u64>()
    );

    let sampling = ["--sample", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--seed", "5"];
    let sampled = generate(run, "sampled-cached", &sampling);
    assert_same_completions(&sampled, &generate(run, "sampled-recomputed", &[&sampling[..], &["--no-kv-cache"]].concat()), "sampled");
    assert_same_completions(&sampled, &generate(run, "sampled-again", &sampling), "the same seed");
    let mut other_seed = sampling.to_vec();
    other_seed[8] = "6";
    let reseeded = generate(run, "sampled-seed-6", &other_seed);
    let all_ids = |v: &Value| v["completions"].as_array().unwrap().iter().map(|c| ids(c, "ids")).collect::<Vec<_>>();
    assert_ne!(all_ids(&sampled), all_ids(&reseeded), "seeds 5 and 6 sampled the same tokens");
    assert_eq!(sampled["decoding"]["kind"], "sample");
    assert_eq!(sampled["decoding"]["top_k"], 40);
}

#[test]
fn the_hf_export_generates_what_the_run_does_and_stops_where_told() {
    let run = trained_run();
    let from_run = generate(run, "from-run", &[]);
    let export = run.join("model");
    assert_same_completions(&from_run, &generate(&export, "from-export", &[]), "run directory vs its HF export");

    // An HF directory whose generation config names the first greedy token as end of text stops
    // right after it; one with fewer positions stops at its last.
    let first = &from_run["completions"][0];
    let eos = scratch("hf-eos");
    copy_dir(&export, &eos);
    std::fs::write(eos.join("generation_config.json"), format!("{{\"eos_token_id\": [1, {}]}}", ids(first, "ids")[0])).unwrap();
    let stopped = generate(&eos, "eos-out", &[]);
    let stopped = &stopped["completions"][0];
    assert_eq!((ids(stopped, "ids"), stopped["stop"].as_str()), (ids(first, "ids")[..1].to_vec(), Some("end_of_text")));

    let short = scratch("hf-short");
    copy_dir(&export, &short);
    // Fewer new positions than the full completion has tokens, so that the limit comes first.
    let room = (ids(first, "ids").len() - 1).min(10);
    assert!(room >= 2, "the first completion is too short to test the limit: {first}");
    let positions = ids(first, "prompt_ids").len() + room;
    set_config(&short, "max_position_embeddings", positions.into());
    let full = generate(&short, "short-out", &[]);
    let full = &full["completions"][0];
    assert_eq!(full["stop"].as_str(), Some("context_full"), "{full}");
    assert_eq!(ids(full, "prompt_ids").len() + ids(full, "ids").len(), positions);
    // Up to there, the same tokens as the model with every position (RoPE is not a weight).
    assert_eq!(ids(full, "ids"), ids(first, "ids")[..room].to_vec());
}

/// `fira generate --model model --json out` and `extra`.
fn with<'a>(out: &'a str, model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["generate", "--model", model, "--json", out];
    args.extend_from_slice(extra);
    args
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn set_config(dir: &Path, key: &str, value: Value) {
    let path = dir.join("config.json");
    let mut config = json_file(&path);
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let run = trained_run();
    let root = scratch("bad");
    let out = root.join("out.json");
    let (run_arg, out_arg) = (run.to_str().unwrap(), out.to_str().unwrap());
    let prompt = ["--prompt", "It is"];
    let file = |name: &str, contents: &str| {
        let path = root.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (empty, bad_jsonl) = (file("empty.txt", "\n\n"), file("bad.jsonl", "{\"text\": \"no prompt key\"}\n"));

    // Models that are not there, or not whole.
    let missing = root.join("missing");
    refused(&with(out_arg, missing.to_str().unwrap(), &prompt), "is not a directory", &root);
    let neither = root.join("neither");
    std::fs::create_dir_all(&neither).unwrap();
    refused(&with(out_arg, neither.to_str().unwrap(), &prompt), "neither a run directory", &root);
    let no_weights = root.join("no-weights");
    std::fs::create_dir_all(&no_weights).unwrap();
    std::fs::copy(run.join("model/config.json"), no_weights.join("config.json")).unwrap();
    refused(&with(out_arg, no_weights.to_str().unwrap(), &prompt), "holds no weights", &root);
    let no_tokenizer = root.join("no-tokenizer");
    std::fs::create_dir_all(&no_tokenizer).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(run.join("model").join(file), no_tokenizer.join(file)).unwrap();
    }
    refused(&with(out_arg, no_tokenizer.to_str().unwrap(), &prompt), "holds no tokenizer.json", &root);
    let no_checkpoint = root.join("no-checkpoint");
    std::fs::create_dir_all(&no_checkpoint).unwrap();
    for file in ["options.json", "config.json", "tokenizer.json"] {
        std::fs::copy(run.join(file), no_checkpoint.join(file)).unwrap();
    }
    refused(&with(out_arg, no_checkpoint.to_str().unwrap(), &prompt), "holds no complete checkpoint", &root);
    let other_model = root.join("other-model");
    std::fs::create_dir_all(&other_model).unwrap();
    copy_dir(&run.join("model"), &other_model);
    set_config(&other_model, "num_hidden_layers", 5.into());
    refused(&with(out_arg, other_model.to_str().unwrap(), &prompt), "missing from the file", &root);
    let small_vocab = root.join("small-vocab");
    std::fs::create_dir_all(&small_vocab).unwrap();
    copy_dir(&run.join("model"), &small_vocab);
    set_config(&small_vocab, "vocab_size", 300.into());
    refused(
        &with(out_arg, small_vocab.to_str().unwrap(), &prompt),
        "the tokenizer has 512 ids, more than the model's vocab_size 300",
        &root,
    );

    // Prompts and decoding settings.
    refused(&with(out_arg, run_arg, &[]), "--prompt", &root);
    refused(&with(out_arg, run_arg, &["--prompt", "a", "--prompts", &empty]), "cannot be used with", &root);
    refused(&with(out_arg, run_arg, &["--prompts", &empty]), "holds no prompt", &root);
    refused(&with(out_arg, run_arg, &["--prompts", &bad_jsonl]), "line 1", &root);
    refused(&with(out_arg, run_arg, &["--prompt", ""]), "no token to continue", &root);
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--temperature", "0.5"]].concat()), "--sample", &root);
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--sample", "--temperature", "0"]].concat()), "--temperature 0", &root);
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--sample", "--top-p", "1.5"]].concat()), "--top-p 1.5", &root);
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--sample", "--top-k", "0"]].concat()), "--top-k 0", &root);
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--max-new-tokens", "0"]].concat()), "--max-new-tokens 0", &root);
    let short = root.join("short");
    std::fs::create_dir_all(&short).unwrap();
    copy_dir(&run.join("model"), &short);
    set_config(&short, "max_position_embeddings", 3.into());
    refused(
        &with(out_arg, short.to_str().unwrap(), &["--prompt", "It is a truth universally acknowledged"]),
        "leave none to generate",
        &root,
    );
    refused(&with(out_arg, run_arg, &[&prompt[..], &["--backend", "wgpu"]].concat()), "wgpu", &root);
    refused(
        &["generate", "--model", run_arg, "--prompt", "It is", "--json", root.join("nowhere/out.json").to_str().unwrap()],
        "does not exist",
        &root,
    );
    assert!(!out.exists());
}
