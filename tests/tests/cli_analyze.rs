//! `fira analyze` end to end. Spikes: a real run's options with a metrics file of planted spikes,
//! the spikes found at their steps and placed against the run's refreshes in `spikes.json`.
//! Scaling: a full-rank and a low-rank run recording ψ, the report's averages and correlations
//! recomputed from their `scaling.jsonl`, and a resumed run that redoes its samples. A directory
//! that holds no run, a run without what the command needs, or two runs that are not the same
//! model on the same rows are refused with status 2 before anything is written.

mod common;

use common::fira;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fresh(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_analyze").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn refused(args: &[&str], expected: &str) {
    let output = fira(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

fn succeeds(args: &[&str]) {
    let output = fira(args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(output.status.success(), "fira {args:?}:\n{}\n{}", text(&output.stdout), text(&output.stderr));
}

/// 60 training steps of a slowly falling loss with spikes planted at steps 21 and 41 (refreshes
/// at T = 10) and 30, the gradient norm jumping with them, and one validation line.
fn planted_metrics(path: &Path) {
    let mut lines = Vec::new();
    for step in 1..=60usize {
        let factor = match step {
            21 => 1.5,
            30 => 1.2,
            41 => 2.0,
            _ => 1.0,
        };
        let loss = (5.0 - 0.01 * step as f64) * factor;
        let grad_norm = if factor > 1.0 { 5.0 } else { 1.0 };
        lines.push(format!(
            r#"{{"split":"train","step":{step},"tokens":{},"loss":{loss},"lr":0.01,"grad_norm":{grad_norm},"tokens_per_s":null}}"#,
            step * 256
        ));
    }
    lines.push(r#"{"split":"valid","step":60,"tokens":15360,"loss":9.0,"perplexity":8103.08}"#.to_owned());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn planted_spikes_are_found_and_placed_against_the_refreshes() {
    let run = fresh("galore-run");
    let run_arg = run.to_str().unwrap();
    let small = ["--vocab-size", "512", "--seq-len", "64", "--batch-size", "4", "--valid-rows", "16"];
    let steps = ["--steps", "6", "--eval-every", "6", "--checkpoint-every", "6", "--optimizer", "galore", "--update-proj-gap", "10"];
    succeeds(&[&["train", "--run-dir", run_arg][..], &small, &steps].concat());
    planted_metrics(&run.join("metrics.jsonl"));

    let out = fresh("spikes");
    succeeds(&["analyze", "spikes", "--run", run_arg, "--window", "8", "--out-dir", out.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("spikes.json")).unwrap()).unwrap();
    let analysed = &report["runs"][0];
    assert_eq!((analysed["optimizer"].as_str(), analysed["update_proj_gap"].as_u64()), (Some("galore"), Some(10)));
    assert_eq!((analysed["steps"].as_u64(), analysed["refreshes"].as_u64()), (Some(60), Some(6)), "steps 1, 11, …, 51");
    let spikes: Vec<(u64, u64, f64)> = analysed["spikes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_u64().unwrap(), s["after_refresh"].as_u64().unwrap(), s["grad_norm"].as_f64().unwrap()))
        .collect();
    assert_eq!(spikes, [(21, 0, 5.0), (30, 9, 5.0), (41, 0, 5.0)]);
    assert_eq!(analysed["near_refresh"].as_u64(), Some(2), "within the default 5 steps of a refresh");
    for file in ["spikes.md", "spikes.svg"] {
        assert!(std::fs::metadata(out.join(file)).unwrap().len() > 0, "{file} is empty");
    }

    // A run whose metrics hold no training step has nothing to analyse.
    std::fs::write(run.join("metrics.jsonl"), r#"{"split":"valid","step":6,"tokens":1536,"loss":6.0,"perplexity":403.4}"#).unwrap();
    let refused = fresh("spikes-of-nothing");
    let output = fira(&["analyze", "spikes", "--run", run_arg, "--out-dir", refused.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("logged no training step") && !refused.exists(), "{stderr}");
}

#[test]
fn a_directory_without_a_run_or_bad_options_are_refused_and_write_nothing() {
    let empty = fresh("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = fresh("refused");
    let out_arg = out.to_str().unwrap();
    for (args, expected) in [
        (vec!["analyze", "spikes", "--run", empty.to_str().unwrap(), "--out-dir", out_arg], "holds no run"),
        (vec!["analyze", "spikes", "--run", empty.to_str().unwrap(), "--factor", "1", "--out-dir", out_arg], "--factor must be above 1"),
        (vec!["analyze", "spikes", "--run", empty.to_str().unwrap(), "--window", "0", "--out-dir", out_arg], "--window at least 1"),
    ] {
        let output = fira(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

/// The JSON lines of a file.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Trains 6 steps of the small model with `--record-scaling-every 2` (8 columns per matrix).
fn recorded_run(name: &str, extra: &[&str]) -> PathBuf {
    let run = fresh(name);
    let small = ["--vocab-size", "512", "--seq-len", "64", "--batch-size", "4", "--valid-rows", "16"];
    let steps = ["--steps", "6", "--eval-every", "2", "--checkpoint-every", "2", "--record-scaling-every", "2", "--scaling-columns", "8"];
    succeeds(&[&["train", "--run-dir", run.to_str().unwrap()][..], &small, &steps, extra].concat());
    run
}

/// Per matrix (in file order), its mean `matrix` ψ over the samples of a `scaling.jsonl`.
fn mean_matrix_scaling(samples: &[Value]) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64, f64)> = Vec::new();
    for s in samples {
        let path = s["path"].as_str().unwrap();
        let index = sums.iter().position(|e| e.0 == path).unwrap_or_else(|| {
            sums.push((path.to_owned(), 0.0, 0.0));
            sums.len() - 1
        });
        sums[index].1 += s["matrix"].as_f64().unwrap();
        sums[index].2 += 1.0;
    }
    sums.into_iter().map(|(path, sum, count)| (path, sum / count)).collect()
}

/// Spearman's ρ by the classic formula for untied data, 1 − 6Σd² / (n(n² − 1)).
fn spearman_without_ties(x: &[f64], y: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut ranks = vec![0.0; v.len()];
        order.iter().enumerate().for_each(|(rank, &i)| ranks[i] = rank as f64);
        ranks
    };
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    1.0 - 6.0 * rx.iter().zip(&ry).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / (n * (n * n - 1.0))
}

#[test]
fn scaling_similarity_of_a_full_rank_and_a_low_rank_run() {
    let full = recorded_run("scaling-adamw", &["--optimizer", "adamw"]);
    let low = recorded_run("scaling-galore", &["--optimizer", "galore"]);
    let out = fresh("scaling");
    let (full_arg, low_arg, out_arg) = (full.to_str().unwrap(), low.to_str().unwrap(), out.to_str().unwrap());
    succeeds(&["analyze", "scaling", "--full-rank", full_arg, "--low-rank", low_arg, "--out-dir", out_arg]);

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    assert_eq!(report["steps"], serde_json::json!([2, 4, 6]));
    assert_eq!((report["low_rank_optimizer"].as_str(), report["rank"].as_u64()), (Some("galore"), Some(32)));
    // The 9m model's 4 layers of 7 attention and MLP matrices, 8 columns each.
    let pairs: Vec<u64> = report["similarity"].as_array().unwrap().iter().map(|s| s["pairs"].as_u64().unwrap()).collect();
    assert_eq!(pairs, [28, 28, 224]);
    let (full_samples, low_samples) = (json_lines(&full.join("scaling.jsonl")), json_lines(&low.join("scaling.jsonl")));
    assert_eq!((full_samples.len(), low_samples.len()), (84, 84));
    assert!(full_samples.iter().all(|s| s["projected"] == false) && low_samples.iter().all(|s| s["projected"] == true));
    let (full_means, low_means) = (mean_matrix_scaling(&full_samples), mean_matrix_scaling(&low_samples));
    let matrices = report["matrices"].as_array().unwrap();
    for ((m, (path, f)), (_, l)) in matrices.iter().zip(&full_means).zip(&low_means) {
        assert_eq!(m["path"].as_str(), Some(path.as_str()));
        let (rf, rl) = (m["full_rank"].as_f64().unwrap(), m["low_rank"].as_f64().unwrap());
        assert!((rf - f).abs() <= 1e-12 * f && (rl - l).abs() <= 1e-12 * l, "{path}: {rf} {rl} vs {f} {l}");
    }
    let values = |means: &[(String, f64)]| means.iter().map(|m| m.1).collect::<Vec<f64>>();
    let rho = spearman_without_ties(&values(&full_means), &values(&low_means));
    let reported = report["similarity"][0]["spearman"]["coefficient"].as_f64().unwrap();
    assert!((reported - rho).abs() < 1e-12, "ρ {reported} vs {rho}");
    for file in ["scaling.md", "scaling.svg"] {
        assert!(std::fs::metadata(out.join(file)).unwrap().len() > 0, "{file} is empty");
    }

    // Runs that cannot be compared, refused before anything is written.
    let other_seed = recorded_run("scaling-galore-seed-7", &["--optimizer", "galore", "--seed", "7"]);
    let unrecorded = fresh("scaling-unrecorded");
    succeeds(
        &["train", "--run-dir", unrecorded.to_str().unwrap(), "--vocab-size", "512", "--seq-len", "64", "--batch-size", "4"]
            .into_iter()
            .chain(["--valid-rows", "16", "--steps", "2", "--eval-every", "2", "--checkpoint-every", "2"])
            .collect::<Vec<_>>(),
    );
    let refused_out = fresh("scaling-refused");
    let refused_arg = refused_out.to_str().unwrap();
    let analyse = |full: &Path, low: &Path| {
        vec!["analyze", "scaling", "--full-rank", full.to_str().unwrap(), "--low-rank", low.to_str().unwrap(), "--out-dir", refused_arg]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let empty = fresh("scaling-empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (args, expected) in [
        (analyse(&low, &low), "give a run of --optimizer adamw"),
        (analyse(&full, &full), "give a run of a low-rank optimizer"),
        (analyse(&full, &other_seed), "the runs differ in --seed (42 vs 7)"),
        (analyse(&full, &unrecorded), "trained without --record-scaling-every"),
        (analyse(&empty, &low), "holds no run"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, expected);
        assert!(!refused_out.exists(), "{args:?} wrote {}", refused_out.display());
    }
    let late = ["analyze", "scaling", "--full-rank", full_arg, "--low-rank", low_arg, "--up-to-step", "1", "--out-dir", refused_arg];
    refused(&late, "no step in common up to step 1");

    // A resumed run drops the samples logged after its checkpoint and records them again.
    let samples = low.join("scaling.jsonl");
    let mut text = std::fs::read_to_string(&samples).unwrap();
    text.push_str(
        &serde_json::to_string(&serde_json::json!({"step": 7, "path": "planted", "projected": true, "matrix": 1.0,
        "column_mean": 1.0, "columns": [0], "column_factors": [1.0]}))
        .unwrap(),
    );
    text.push('\n');
    std::fs::write(&samples, text).unwrap();
    succeeds(&["train", "--resume", "--run-dir", low_arg, "--steps", "8"]);
    let resumed = json_lines(&samples);
    let steps: Vec<u64> = resumed.iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert_eq!(steps.len(), 4 * 28);
    assert!(resumed.iter().all(|s| s["path"] != "planted") && steps.iter().filter(|&&s| s == 8).count() == 28, "{steps:?}");
    assert_eq!(&resumed[..84], &low_samples[..], "the samples up to the checkpoint are kept as they were");
}
