//! `fira analyze spikes` end to end: a real run's options with a metrics file of planted spikes,
//! the spikes found at their steps and placed against the run's refreshes in `spikes.json`, and a
//! directory that holds no run, or a run without training steps, refused with status 2 before
//! anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fira(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fira-e2e")).args(args).output().expect("the fira binary runs")
}

fn fresh(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_analyze").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
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
