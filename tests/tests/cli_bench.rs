//! `fira bench optimizer` / `fira bench train` end to end on the 9m preset: the state each live
//! optimizer holds is the spec's formula, the reported figures are consistent with each other,
//! the peak memory covers what must be resident, and bad input is refused with status 2.
//! (Timings themselves are not asserted: they belong in docs/benchmarks.md.)

mod common;

use common::fira;
use std::path::PathBuf;

use serde_json::Value;

fn report(args: &[&str], name: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut args = args.to_vec();
    args.extend(["--json", path.to_str().unwrap()]);
    let output = fira(&args);
    assert!(
        output.status.success(),
        "fira {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// 9m: hidden 128, intermediate 352, 4 layers, vocab 32000; 8,995,968 parameters.
const PARAMETERS: u64 = 8_995_968;

/// Fira's state in f32 bytes at rank `r` (spec, "Memory"): per projected m×n matrix r·min
/// projector + 2·r·max moments + 1 limiter norm; AdamW's two moments for everything else.
fn fira_state_bytes(r: u64) -> u64 {
    let (h, i, v) = (128u64, 352u64, 32000u64);
    let projected = |m: u64, n: u64| r * m.min(n) + 2 * r * m.max(n) + 1;
    let per_layer = 4 * projected(h, h) + 3 * projected(i, h) + 2 * 2 * h;
    4 * (4 * per_layer + 2 * 2 * v * h + 2 * h)
}

fn by_name<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["optimizers"].as_array().unwrap().iter().find(|o| o["optimizer"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn bench_optimizer_reports_live_state_and_consistent_times() {
    let report = report(&["bench", "optimizer", "--model", "9m", "--steps", "2", "--update-proj-gap", "50"], "optimizer.json");
    assert_eq!(report["parameters"], PARAMETERS);
    assert_eq!(report["projected_matrices"], 28);
    assert_eq!(report["rank"], 32, "default rank is hidden/4");
    let adamw_bytes = 8 * PARAMETERS;
    assert_eq!(by_name(&report, "burn AdamW")["state_bytes"], adamw_bytes);
    assert_eq!(by_name(&report, "adamw (fira-optim path)")["state_bytes"], adamw_bytes);
    assert_eq!(by_name(&report, "fira (exact svd)")["state_bytes"], fira_state_bytes(32));
    assert_eq!(by_name(&report, "fira (randomized)")["state_bytes"], fira_state_bytes(32));
    // GaLore keeps no limiter norm: one f32 less per projected matrix.
    assert_eq!(by_name(&report, "galore (exact svd)")["state_bytes"], fira_state_bytes(32) - 28 * 4);

    let baseline = by_name(&report, "burn AdamW")["amortised_ms"].as_f64().unwrap();
    for o in report["optimizers"].as_array().unwrap() {
        let [step, refresh, amortised, ratio] = ["step_ms", "refresh_ms", "amortised_ms", "ratio_to_adamw"].map(|k| o[k].as_f64().unwrap());
        assert!(step > 0.0 && refresh >= 0.0, "{o}");
        assert!((amortised - (step + refresh / 50.0)).abs() < 1e-9, "{o}");
        assert!((ratio - amortised / baseline).abs() < 1e-9, "{o}");
    }
    let solvers: Vec<&str> = report["solvers"].as_array().unwrap().iter().map(|s| s["solver"].as_str().unwrap()).collect();
    assert_eq!(solvers, ["exact svd (faer, host)", "randomized (p 8, q 2)", "randomized (p 8, q 1)"]);
}

#[test]
fn bench_train_measures_each_optimizer_in_its_own_process() {
    let report = report(
        &["bench", "train", "--model", "9m", "--optimizers", "adamw,fira", "--batch-size", "2", "--seq-len", "32", "--steps", "1"],
        "train.json",
    );
    assert_eq!(report["parameters"], PARAMETERS);
    let (adamw, fira) = (by_name(&report, "adamw"), by_name(&report, "fira"));
    assert_eq!(adamw["state_bytes"], 8 * PARAMETERS);
    assert_eq!(fira["state_bytes"], fira_state_bytes(32));
    for (o, state) in [(adamw, 8 * PARAMETERS), (fira, fira_state_bytes(32))] {
        let [step, model, optimizer, tokens_per_s] =
            ["step_ms", "forward_backward_ms", "optimizer_ms", "tokens_per_s"].map(|k| o[k].as_f64().unwrap());
        assert!((tokens_per_s * step / 1e3 - 64.0).abs() < 1e-6, "tokens/s is 2 x 32 tokens per step: {o}");
        // With one timed step, the step is exactly its two parts.
        assert!((step - model - optimizer).abs() < 1e-6, "{o}");
        // The process held at least the f32 weights, their gradients and the optimizer state.
        let peak = o["peak_resident_bytes"].as_u64().expect("Linux reports the peak resident set");
        assert!(peak >= 4 * 2 * PARAMETERS + state, "peak {peak} below weights + gradients + state: {o}");
        assert!(o["peak_device_bytes"].is_null(), "no device pool on flex: {o}");
    }
}

/// `--vocab-size` replaces the preset's vocabulary in the parent's report and in the child that
/// measures (its live optimizer state is AdamW's two moments of the smaller model).
#[test]
fn bench_train_takes_the_vocabulary_to_the_measuring_process() {
    let report = report(
        &[
            "bench",
            "train",
            "--model",
            "9m",
            "--vocab-size",
            "4096",
            "--optimizers",
            "adamw",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--steps",
            "1",
        ],
        "train-vocab.json",
    );
    // Embedding and lm_head lose (32000 − 4096) rows of 128 each.
    let parameters = PARAMETERS - 2 * (32000 - 4096) * 128;
    assert_eq!(report["vocab_size"], 4096);
    assert_eq!(report["parameters"], parameters);
    assert_eq!(by_name(&report, "adamw")["state_bytes"], 8 * parameters);
}

#[test]
fn bench_refuses_bad_input_with_status_2() {
    for (args, message) in [
        (&["bench", "optimizer", "--model", "13m"][..], "--model"),
        (&["bench", "train", "--model", "9m", "--seq-len", "4096"][..], "max_position_embeddings"),
        (&["bench", "train", "--model", "9m", "--rank", "500"][..], "--rank 500"),
        (
            &["bench", "optimizer", "--model", "9m", "--rank", "129"][..],
            "--rank 129 is larger than the matrices it projects (their smaller side is 128)",
        ),
        (&["bench", "optimizer", "--model", "9m", "--rank", "0"][..], "--rank must be at least 1 (got 0)"),
        (&["bench", "optimizer", "--model", "9m", "--backend", "cuda"][..], "not compiled in"),
        (&["bench", "optimizer", "--model", "9m", "--json", "/nonexistent-dir/x.json"][..], "does not exist"),
        (&["bench", "train", "--model", "9m", "--optimizers", "sgd"][..], "sgd"),
        (&["bench", "train", "--model", "9m", "--vocab-size", "0"][..], "--vocab-size"),
    ] {
        let output = fira(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "fira {args:?}: {stderr}");
        assert!(stderr.contains(message), "fira {args:?}: expected `{message}` in: {stderr}");
    }
}
