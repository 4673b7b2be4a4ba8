//! Fine-tuning on instruction records and `fira eval --task choice`, end to end, on a task the
//! test makes with a known rule (LLM-Adapters' format, boolq's answer words): "Is the number n
//! odd?" with the answer `true` or `false`. A model pre-trained on the embedded corpus answers
//! no better than chance; after a short fine-tune on 600 numbers it answers numbers it never saw
//! far above chance, by both scorings. Bad records, formats and flags are refused with status 2.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{fira, fira_ok, json_file, refused, scratch};
use fira_testkit::SafetensorsFile;
use serde_json::{Value, json};

/// The numbers below 1500 trained on: four in five, drawn by a multiplicative hash; the test
/// keeps the others.
fn trained(n: u64) -> bool {
    !(n.wrapping_mul(2_654_435_761) >> 7).is_multiple_of(5)
}

fn record(n: u64) -> Value {
    let answer = if n % 2 == 1 { "true" } else { "false" };
    json!({"instruction": format!("Is the number {n} odd?"), "input": "", "output": format!("the correct answer is {answer}"), "answer": answer})
}

/// `train.json` (the trained numbers) and `boolq/test.json` (the first 100 others), LLM-Adapters'
/// layout.
fn task_files() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = scratch("task");
        let train: Vec<Value> = (0..1500).filter(|&n| trained(n)).map(record).collect();
        let test: Vec<Value> = (0..1500).filter(|&n| !trained(n)).take(100).map(record).collect();
        let (train_path, test_path) = (dir.join("train.json"), dir.join("boolq/test.json"));
        std::fs::create_dir_all(test_path.parent().unwrap()).unwrap();
        std::fs::write(&train_path, serde_json::to_string(&train).unwrap()).unwrap();
        std::fs::write(&test_path, serde_json::to_string(&test).unwrap()).unwrap();
        (train_path, test_path)
    })
}

const SHAPE: &[&str] = &["--seq-len", "128", "--batch-size", "16", "--valid-rows", "16", "--log-every", "10"];

/// The 9m preset's shape with a 512-id vocabulary and weights drawn 5× wider than the default
/// 0.02: a LoRA fine-tune cannot change `lm_head`, and the output columns of tokens the short
/// pre-training rarely saw (`true`, `false`, end-of-text) stay at their initial norm, which with
/// 0.02 caps their probability (LoRA's loss then stalls at 2.0 nats; full fine-tuning is not
/// held back). A checkpoint that was really pre-trained has no such columns.
const SOURCE_MODEL: &str = r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 128, "intermediate_size": 352, "num_attention_heads": 4, "num_hidden_layers": 4,
    "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "initializer_range": 0.1, "tie_word_embeddings": false}"#;

/// A 40-step run of [`SOURCE_MODEL`] on the embedded corpus.
fn source_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("source");
        let model = scratch("source-model").join("config.json");
        std::fs::write(&model, SOURCE_MODEL).unwrap();
        let mut args = vec!["train", "--run-dir", run.to_str().unwrap(), "--vocab-size", "512", "--model", model.to_str().unwrap()];
        args.extend_from_slice(SHAPE);
        args.extend_from_slice(&["--steps", "40", "--eval-every", "40", "--checkpoint-every", "40"]);
        fira_ok(&args);
        run
    })
}

/// The source fine-tuned on the trained numbers.
fn tuned_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch("tuned");
        let (train, _) = task_files();
        let mut args = vec!["train", "--run-dir", run.to_str().unwrap(), "--init-from", source_run().to_str().unwrap()];
        args.extend_from_slice(&["--data", train.to_str().unwrap(), "--data-format", "instructions", "--lr", "0.003"]);
        args.extend_from_slice(SHAPE);
        args.extend_from_slice(&["--steps", "200", "--eval-every", "100", "--checkpoint-every", "200"]);
        fira_ok(&args);
        run
    })
}

/// The accuracy `fira eval --task choice` reports for `model`, and its result file.
fn accuracy(model: &Path, name: &str, extra: &[&str]) -> (f64, Value) {
    let (_, test) = task_files();
    let json = model.join(format!("{name}.json"));
    let mut args = vec!["eval", "--task", "choice", "--model", model.to_str().unwrap(), "--data", test.to_str().unwrap()];
    args.extend_from_slice(&["--json", json.to_str().unwrap()]);
    args.extend_from_slice(extra);
    fira_ok(&args);
    let result = json_file(&json);
    (result["average_accuracy"].as_f64().unwrap(), result)
}

#[test]
fn fine_tuning_on_instructions_lifts_accuracy_on_unseen_records_far_above_chance() {
    let (tuned, source) = (tuned_run(), source_run());
    let options = json_file(&tuned.join("options.json"));
    assert_eq!((options["data_format"].as_str(), options["loss_on"].as_null()), (Some("instructions"), Some(())), "{options}");

    let (before, _) = accuracy(source, "before", &[]);
    let (after, result) = accuracy(tuned, "after", &[]);
    let task = &result["tasks"][0];
    assert_eq!((task["task"].as_str(), task["labels"].as_str(), task["records"].as_u64()), (Some("boolq"), Some("true|false"), Some(100)));
    assert_eq!(task["chance"].as_f64(), Some(0.5));
    // The counts agree with the predictions listed.
    let predictions = task["predictions"].as_array().unwrap();
    let correct = predictions.iter().filter(|p| p["prediction"] == p["answer"]).count();
    assert_eq!(correct as u64, task["correct"].as_u64().unwrap());
    assert!(predictions.iter().all(|p| p["text"].is_string()));
    assert!(after >= 0.85, "accuracy {after} after fine-tuning (chance 0.5, {before} before)");
    assert!(before <= 0.6, "the pre-trained source already scores {before}");

    // Four beams (the official script's decoding) find the same answers.
    let (beams, result) = accuracy(tuned, "beams", &["--beams", "4", "--limit", "20"]);
    assert_eq!((beams, result["beams"].as_u64()), (1.0, Some(4)), "accuracy {beams} with 4 beams on the first 20");

    // Scored by likelihood, each label's response ("the correct answer is true/false") after the
    // prompt: the same rule learnt.
    let (likely, result) = accuracy(tuned, "likelihood", &["--scoring", "likelihood"]);
    assert!(likely >= 0.85, "likelihood accuracy {likely}");
    let first = &result["tasks"][0]["predictions"][0];
    let scores: Vec<f64> = first["log_likelihoods"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
    assert!(scores.len() == 2 && scores.iter().all(|s| *s < 0.0));
    let best = if scores[0] >= scores[1] { "true" } else { "false" };
    assert_eq!(first["prediction"].as_str(), Some(best));
}

/// LoRA on the same task: only the adapters train (the embedding the export holds is the
/// source's, bit for bit), the optimizer holds state for them alone, the export merges them and
/// `adapter/` holds them in PEFT's layout, and the fine-tuned model answers far above chance.
#[test]
fn a_lora_fine_tune_trains_the_adapters_alone_and_learns_the_rule() {
    let (source, run) = (source_run(), scratch("lora"));
    let (train, _) = task_files();
    let mut args = vec!["train", "--run-dir", run.to_str().unwrap(), "--init-from", source.to_str().unwrap()];
    args.extend_from_slice(&["--data", train.to_str().unwrap(), "--data-format", "instructions", "--lr", "0.01"]);
    args.extend_from_slice(&["--lora-rank", "16", "--lora-dropout", "0"]);
    args.extend_from_slice(SHAPE);
    args.extend_from_slice(&["--steps", "150", "--eval-every", "75", "--checkpoint-every", "150"]);
    fira_ok(&args);

    let options = json_file(&run.join("options.json"));
    assert_eq!((options["lora_rank"].as_u64(), options["lora_alpha"].as_f64()), (Some(16), None));
    let (lora_state, full_state) = (json_file(&run.join("summary.json")), json_file(&tuned_run().join("summary.json")));
    let state = |s: &Value| s["optimizer_state_bytes"].as_u64().unwrap();
    // Fira at rank 8 on each adapter matrix alone ([m, n] as PyTorch holds it: the basis
    // min(m, n)·8, two moments 8·max(m, n), the limiter's norm), in f32; nothing else holds state.
    let fira = |m: u64, n: u64| m.min(n) * 8 + 2 * 8 * m.max(n) + 1;
    let per_layer = 3 * 2 * fira(16, 128) + 2 * (fira(16, 128) + fira(16, 352)); // q, k, v; up, down
    assert_eq!(state(&lora_state), 4 * 4 * per_layer, "the full fine-tune's is {}", state(&full_state));
    assert_eq!(lora_state["rank"].as_u64(), Some(8), "the default projection rank is half the LoRA rank");

    let export = SafetensorsFile::read(&run.join("model/model.safetensors")).unwrap();
    let base = SafetensorsFile::read(&source.join("model/model.safetensors")).unwrap();
    assert!(export.tensors.keys().all(|name| !name.contains("lora")));
    let name = |n: &str| n.to_owned();
    assert_eq!(export.tensors[&name("model.embed_tokens.weight")], base.tensors[&name("model.embed_tokens.weight")]);
    assert_eq!(
        export.tensors[&name("model.layers.0.self_attn.o_proj.weight")],
        base.tensors[&name("model.layers.0.self_attn.o_proj.weight")]
    );
    assert_ne!(
        export.tensors[&name("model.layers.0.self_attn.q_proj.weight")],
        base.tensors[&name("model.layers.0.self_attn.q_proj.weight")]
    );
    let adapter = SafetensorsFile::read(&run.join("adapter/adapter_model.safetensors")).unwrap();
    assert_eq!(adapter.tensors.len(), 4 * 5 * 2, "4 layers, 5 projections, A and B");
    assert_eq!(adapter.tensor("base_model.model.model.layers.3.mlp.up_proj.lora_A.weight").shape, [16, 128]);
    assert_eq!(json_file(&run.join("adapter/adapter_config.json"))["lora_alpha"].as_f64(), Some(32.0));

    let (accuracy, _) = accuracy(&run, "lora", &[]);
    assert!(accuracy >= 0.8, "accuracy {accuracy} after the LoRA fine-tune (chance 0.5)");

    // Resumed, it continues with its trained adapters (fresh ones would start again near the
    // first step's loss) and they are still all that trains.
    fira_ok(&["train", "--run-dir", run.to_str().unwrap(), "--resume", "--steps", "160"]);
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["split"] == "train")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 160);
    assert!(losses[150] < 0.1 * losses[0], "step 151 loss {} after resuming, step 1 {}", losses[150], losses[0]);
    assert_eq!(state(&json_file(&run.join("summary.json"))), 4 * 4 * per_layer);
}

#[test]
fn the_loss_covers_the_response_by_default_and_the_whole_row_with_loss_on_all() {
    let tuned = tuned_run();
    let (train, _) = task_files();
    let all = scratch("loss-on-all");
    let mut args = vec!["train", "--run-dir", all.to_str().unwrap(), "--init-from", source_run().to_str().unwrap()];
    args.extend_from_slice(&["--data", train.to_str().unwrap(), "--data-format", "instructions", "--loss-on", "all"]);
    args.extend_from_slice(SHAPE);
    args.extend_from_slice(&["--steps", "1", "--eval-every", "1", "--checkpoint-every", "1"]);
    fira_ok(&args);
    // The same validation records (every 20th), counted by `fira eval`: a response is its five
    // or so ids and end-of-text, a whole row the template's dozens more.
    let targets = |run: &Path| {
        let json = run.join("eval.json");
        fira_ok(&["eval", "--checkpoint", run.to_str().unwrap(), "--json", json.to_str().unwrap()]);
        let result = json_file(&json);
        assert_eq!(result["rows"].as_u64(), Some(16));
        result["targets"].as_u64().unwrap()
    };
    let (response, whole) = (targets(tuned), targets(&all));
    assert!(response >= 16 * 3 && whole > 4 * response, "{whole} targets on whole rows, {response} on responses");
}

#[test]
fn bad_records_formats_and_flags_are_refused() {
    let (source, root) = (source_run(), scratch("bad"));
    let run = root.join("run");
    let (train, test) = task_files();
    let write = |name: &str, records: Value| {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, records.to_string()).unwrap();
        path
    };
    let no_output = write("no-output.json", json!([{"instruction": "Is 3 odd?", "output": "true"}, {"instruction": "Is 4 odd?"}]));
    let odd_labels = write("mine/test.json", json!([{"instruction": "Is 3 odd?", "answer": "yes"}]));
    let wrong_label = write("piqa/test.json", json!([{"instruction": "Which?", "answer": "solution3"}]));
    let text = write("notes.txt", json!("text"));
    let base = ["train", "--run-dir", run.to_str().unwrap(), "--init-from", source.to_str().unwrap(), "--steps", "2"];
    let train_with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let train_arg = train.to_str().unwrap();
    for (args, message) in [
        (train_with(&["--data", no_output.to_str().unwrap(), "--data-format", "instructions"]), "record 2: missing field `output`"),
        (train_with(&["--data", text.to_str().unwrap(), "--data-format", "instructions"]), "expected .json or .jsonl files"),
        (train_with(&["--data-format", "instructions"]), "--data-format instructions needs --data"),
        (
            train_with(&["--data", train_arg, "--data-format", "instructions", "--packing", "pack"]),
            "--packing applies to --data-format text",
        ),
        (train_with(&["--loss-on", "response"]), "--loss-on applies to --data-format instructions"),
        (train_with(&["--lora-rank", "4", "--lora-targets", "q_proj,qkv"]), "`qkv` matches no projection"),
        (train_with(&["--lora-alpha", "8"]), "--lora-alpha apply with --lora-rank"),
        (train_with(&["--lora-rank", "4", "--rank", "8"]), "--lora-rank is 4"),
        (train_with(&["--lora-rank", "200"]), "larger than q_proj's smaller side 128"),
    ] {
        refused(&strs(&args), message, &root);
        assert!(!run.exists(), "{args:?} created the run directory");
    }

    let model = source.to_str().unwrap();
    let eval = |extra: &[&str]| -> Vec<String> {
        ["eval", "--task", "choice", "--model", model].iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (args, message) in [
        (eval(&["--data", odd_labels.to_str().unwrap()]), "match none of the label formats"),
        (eval(&["--data", wrong_label.to_str().unwrap()]), "the answer `solution3` is not one of solution1|solution2"),
        (eval(&[]), "--task choice needs --data"),
        (eval(&["--data", test.to_str().unwrap(), "--valid-rows", "3"]), "--task choice does not use --valid-rows"),
        (eval(&["--data", test.to_str().unwrap(), "--scoring", "likelihood", "--beams", "4"]), "--scoring likelihood does not use --beams"),
        (eval(&["--data", test.to_str().unwrap(), "--beams", "0"]), "--beams must be at least 1"),
        (eval(&["--data", root.join("missing.json").to_str().unwrap()]), "missing.json"),
        (["eval", "--checkpoint", model, "--limit", "3"].map(String::from).to_vec(), "--task loss does not use --limit"),
    ] {
        refused(&strs(&args), message, &root);
    }
    // A record without `answer` cannot be scored.
    let unanswered = write("boolq.json", json!([{"instruction": "Is 3 odd?", "output": "the correct answer is true"}]));
    let output = fira(&strs(&eval(&["--data", unanswered.to_str().unwrap()])));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("record 1 has no `answer`"));
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
