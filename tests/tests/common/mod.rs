//! What the end-to-end tests share: running the CLI, scratch directories, reading its JSON and
//! checking a refusal. Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `fira` command line (as the `fira-e2e` binary) with `args`.
pub fn fira(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fira-e2e")).args(args).output().expect("the fira binary runs")
}

/// `fira args`, which must succeed.
pub fn fira_ok(args: &[&str]) -> Output {
    let output = fira(args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(output.status.success(), "fira {args:?} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    output
}

/// A scratch directory `name` of this test binary (under its own name in the target's temporary
/// directory), emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let binary = exe.file_stem().and_then(|s| s.to_str()).and_then(|s| s.split('-').next()).expect("a test binary name").to_owned();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(binary).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A JSON file the CLI wrote (`summary.json`, `options.json`, `results.json`, `--json`).
pub fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Status 2, a message naming the problem, and no file under `untouched` written or changed.
pub fn refused(args: &[&str], message: &str, untouched: &Path) {
    let before = snapshot(untouched);
    let output = fira(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: expected `{message}` in:\n{stderr}");
    assert_eq!(snapshot(untouched), before, "{args:?} changed {}", untouched.display());
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}
