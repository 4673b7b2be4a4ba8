//! `fira train --nodes N` end to end, every node a process on 127.0.0.1: two and three nodes
//! (and two nodes of two `--devices` replicas) train like one process with all their rows (gradient norms and validation losses within
//! 1e-5, across projector refreshes) and hold identical weights and optimizer state; a killed
//! node stops the others within 60 s, naming it, with the last checkpoint loadable, and the run
//! resumes on both nodes to the uninterrupted run's losses; nodes with different options are
//! refused with status 2.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fira_ok, json_file, refused, scratch};
use serde_json::Value;

const SMALL: &[&str] = &["--vocab-size", "512", "--seq-len", "64", "--valid-rows", "16", "--batch-size", "4", "--update-proj-gap", "2"];

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `fira train` for node `rank` of `nodes`, started and not waited for.
fn node(run_dir: &Path, rank: usize, nodes: usize, port: u16, extra: &[&str]) -> Child {
    let coordinator = format!("127.0.0.1:{port}");
    let (nodes, rank) = (nodes.to_string(), rank.to_string());
    let mut args =
        vec!["train", "--run-dir", run_dir.to_str().unwrap(), "--nodes", &nodes, "--node-rank", &rank, "--coordinator", &coordinator];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_fira-e2e")).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Trains `nodes` nodes to the end; every one must succeed.
fn train_nodes(run_dir: &Path, nodes: usize, extra: &[&str]) {
    let port = free_port();
    let children: Vec<Child> = (0..nodes).map(|rank| node(run_dir, rank, nodes, port, extra)).collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "node {rank} failed:\n{}", text(&output));
    }
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `(step, value)` of `field` in the records of `split`.
fn series(run_dir: &Path, split: &str, field: &str) -> Vec<(u64, f64)> {
    records(&run_dir.join("metrics.jsonl"))
        .iter()
        .filter(|r| r["split"] == split && !r[field].is_null())
        .map(|r| (r["step"].as_u64().unwrap(), r[field].as_f64().unwrap()))
        .collect()
}

fn assert_close(a: &[(u64, f64)], b: &[(u64, f64)], tolerance: f64, what: &str) {
    assert_eq!(a.iter().map(|r| r.0).collect::<Vec<_>>(), b.iter().map(|r| r.0).collect::<Vec<_>>(), "{what}: different steps");
    for ((step, x), (_, y)) in a.iter().zip(b) {
        assert!((x - y).abs() <= tolerance * y.abs(), "{what}, step {step}: {x} vs {y} (tolerance {tolerance} relative)");
    }
}

#[test]
fn two_and_three_nodes_train_like_one_process_with_all_their_rows() {
    // 6 steps, the projector refreshed at steps 1, 3 and 5, validation and checkpoints at 3 and 6.
    let budget = ["--steps", "6", "--eval-every", "3", "--checkpoint-every", "3"];
    // Two and three nodes; two nodes of two replicas each (`--devices 0,0`, Burn's multi-device
    // strategy on the one CPU) against one process of two replicas.
    for (nodes, devices) in [(2usize, None), (3, None), (2, Some("0,0"))] {
        let dir = scratch(&format!("nodes-{nodes}-{}", devices.map_or(1, |_| 2)));
        let (multi, single) = (dir.join("nodes"), dir.join("one"));
        let mut extra = budget.to_vec();
        if let Some(devices) = devices {
            extra.extend_from_slice(&["--devices", devices]);
        }
        train_nodes(&multi, nodes, &extra);
        let accum = nodes.to_string();
        let mut args = vec!["train", "--run-dir", single.to_str().unwrap(), "--grad-accum", &accum];
        args.extend_from_slice(SMALL);
        args.extend_from_slice(&extra);
        fira_ok(&args);

        let what = format!("{nodes} nodes ({devices:?} devices each) against one process");
        let norms = series(&multi, "train", "grad_norm");
        assert_eq!(norms.len(), 6, "{what}: a norm per step");
        assert_close(&norms, &series(&single, "train", "grad_norm"), 1e-5, &format!("{what}, gradient norm"));
        assert_close(&series(&multi, "valid", "loss"), &series(&single, "valid", "loss"), 1e-5, &format!("{what}, validation loss"));
        // Every step counts the tokens of all nodes.
        assert_eq!(series(&multi, "train", "tokens"), series(&single, "train", "tokens"));
        // The other nodes log their own rows beside node 0's run.
        for rank in 1..nodes {
            let own = dir.join("nodes").join(format!("node-{rank}"));
            assert_close(&series(&own, "train", "grad_norm"), &norms, 0.0, &format!("node {rank}'s norms"));
        }
        let digests = records(&multi.join("nodes.jsonl"));
        assert_eq!(digests.iter().map(|d| d["step"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 6], "{digests:?}");
        for line in &digests {
            assert_eq!(line["nodes"].as_array().unwrap().len(), nodes, "{line}");
            assert_eq!(line["identical"], true, "{line}");
        }
        assert!(multi.join("model").join("model.safetensors").is_file() && multi.join("summary.json").is_file());
    }
}

/// Waits until `run_dir` holds a complete checkpoint after at least `step` (10-step segments).
fn wait_for_checkpoint(run_dir: &Path, segment: usize, timeout: Duration) {
    let start = Instant::now();
    let done = |s: usize| ["model", "optim", "scheduler"].iter().all(|p| run_dir.join("checkpoint").join(format!("{p}-{s}.mpk")).is_file());
    while !done(segment) {
        assert!(start.elapsed() < timeout, "no checkpoint {segment} in {} after {timeout:?}", run_dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_lost_node_stops_the_others_and_the_run_resumes_on_both() {
    let dir = scratch("lost");
    let (run, single) = (dir.join("nodes"), dir.join("one"));
    let budget = ["--steps", "80", "--eval-every", "10", "--checkpoint-every", "10"];
    let port = free_port();
    let mut first = node(&run, 0, 2, port, &budget);
    let mut second = node(&run, 1, 2, port, &budget);
    wait_for_checkpoint(&run, 2, Duration::from_secs(240));
    second.kill().unwrap();
    let killed = Instant::now();
    let mut output = None;
    while output.is_none() {
        assert!(killed.elapsed() < Duration::from_secs(60), "node 0 still runs 60 s after node 1 was killed");
        output = first.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = output.unwrap();
    let output = first.wait_with_output().unwrap();
    let _ = second.wait();
    assert_eq!(status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lost node 1: its connection closed"), "{stderr}");
    assert!(stderr.contains("the last good checkpoint (step"), "{stderr}");
    // The latest complete checkpoint reads (fira eval writes its loss as JSON).
    let eval = dir.join("eval.json");
    fira_ok(&["eval", "--checkpoint", run.to_str().unwrap(), "--json", eval.to_str().unwrap()]);
    assert!(json_file(&eval)["loss"].as_f64().unwrap().is_finite());

    // Both nodes resume from node 0's directory and finish as one process with all rows would.
    train_nodes(&run, 2, &["--resume"]);
    let mut args = vec!["train", "--run-dir", single.to_str().unwrap(), "--grad-accum", "2"];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&budget);
    fira_ok(&args);
    let valid = series(&run, "valid", "loss");
    assert_eq!(valid.len(), 8, "{valid:?}");
    assert_close(&valid, &series(&single, "valid", "loss"), 1e-4, "resumed 2 nodes against one process");
    assert!(records(&run.join("nodes.jsonl")).iter().all(|line| line["identical"] == true));
}

#[test]
fn nodes_with_other_options_or_missing_flags_are_refused() {
    let dir = scratch("refused");
    let run = dir.join("run");
    let port = free_port();
    let first = node(&run, 0, 2, port, &["--steps", "4", "--lr", "0.01"]);
    let second = node(&run, 1, 2, port, &["--steps", "4", "--lr", "0.02"]);
    for (rank, child) in [first, second].into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(2), "node {rank}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("node 1's options differ from node 0's: --lr (0.01 on node 0, 0.02 there)"), "node {rank}: {stderr}");
    }
    assert!(!run.exists(), "a refused run wrote {}", run.display());

    let untouched = dir.join("untouched");
    std::fs::create_dir_all(&untouched).unwrap();
    let other = untouched.join("run");
    let other = other.to_str().unwrap();
    refused(&["train", "--nodes", "2", "--node-rank", "0", "--coordinator", "127.0.0.1:1"], "--nodes 2 needs --run-dir", &untouched);
    refused(&["train", "--run-dir", other, "--node-rank", "1"], "--node-rank apply with --nodes above 1", &untouched);
    refused(&["train", "--run-dir", other, "--nodes", "2", "--coordinator", "127.0.0.1:1"], "needs --node-rank", &untouched);
    refused(&["train", "--run-dir", other, "--nodes", "2", "--node-rank", "2", "--coordinator", "h:1"], "not below --nodes 2", &untouched);
    refused(&["train", "--run-dir", other, "--nodes", "2", "--node-rank", "1", "--coordinator", "h"], "expected HOST:PORT", &untouched);
}
