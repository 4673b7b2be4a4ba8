//! `fira info`: parameter counts and their split as JSON, invalid models rejected with status 2,
//! and a closed stdout ending a command quietly.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use common::fira;

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("fira info --json prints JSON")
}

#[test]
fn info_reports_exact_parameter_counts_and_split() {
    for (model, expected) in
        [("60m", 58_073_600u64), ("130m", 134_105_856), ("350m", 367_969_280), ("1b", 1_339_082_752), ("7b", 6_738_415_616)]
    {
        let report = json(&fira(&["info", "--model", model, "--json"]));
        assert_eq!(report["parameters"], expected, "{model}");
        let split = &report["split"];
        let sum: u64 = ["embedding", "lm_head", "attention", "mlp", "norms"].iter().map(|k| split[k].as_u64().unwrap()).sum();
        assert_eq!(sum, expected, "{model}: split {split}");
    }
    // 60m: V·H each for embedding and lm_head, 8·4·512² attention, 8·3·512·1376 MLP, 17·512 norms.
    let split = &json(&fira(&["info", "--model", "60m", "--json"]))["split"];
    assert_eq!(
        [&split["embedding"], &split["lm_head"], &split["attention"], &split["mlp"], &split["norms"]],
        [16_384_000, 16_384_000, 8_388_608, 16_908_288, 8_704]
    );
}

/// The optimizer-state figure of the 60m preset at rank 128 is the spec's formula: per std-side
/// m×n matrix (m ≤ n after orientation) r·m projector + 2·r·n moments + 1 limiter scalar, AdamW
/// 2 moments elsewhere, all f32.
#[test]
fn info_reports_the_spec_state_memory_of_60m() {
    let report = json(&fira(&["info", "--model", "60m", "--rank", "128", "--json"]));
    let (h, i, v, r) = (512u64, 1376u64, 32000u64, 128u64);
    let projected = |m: u64, n: u64| r * m.min(n) + 2 * r * m.max(n) + 1;
    let per_layer = 4 * projected(h, h) + 3 * projected(i, h) + 2 * 2 * h;
    let elements = 8 * per_layer + 2 * 2 * v * h + 2 * h;
    assert_eq!(report["optimizer"]["state_bytes"], 4 * elements);
    assert_eq!(report["optimizer"]["state_bytes"], 327_487_712u64);
    assert_eq!(report["optimizer"]["projected_matrices"], 56);
    assert_eq!(report["optimizer"]["adamw_state_bytes"], 8 * 58_073_600u64);
}

#[test]
fn invalid_models_exit_with_status_2_and_a_clear_message() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_info");
    std::fs::create_dir_all(&dir).unwrap();
    let base = r#""intermediate_size": 64, "vocab_size": 100"#;
    for (name, body, message) in [
        (
            "heads.json",
            format!(r#"{{"hidden_size": 30, "num_attention_heads": 4, "num_hidden_layers": 2, {base}}}"#),
            "not divisible by num_attention_heads",
        ),
        (
            "layers.json",
            format!(r#"{{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 0, {base}}}"#),
            "num_hidden_layers: must be at least 1",
        ),
        (
            "vocab.json",
            r#"{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 0}"#.to_owned(),
            "vocab_size: must be at least 1",
        ),
        (
            "missing.json",
            r#"{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 9}"#.to_owned(),
            "missing field `intermediate_size`",
        ),
        ("broken.json", "{\"hidden_size\": ".to_owned(), "EOF while parsing"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let output = fira(&["info", "--model", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message) && stderr.contains(name), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}: printed a report anyway");
    }
    let output = fira(&["info", "--model", "61m"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown model preset `61m`"));
    let output = fira(&["info", "--model", "/no/such/config.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("No such file"));
}

/// SIGPIPE's number (Linux, macOS).
const SIGPIPE: i32 = 13;

/// A reader that stops early (`fira … | head`) ends the command quietly, by SIGPIPE, not with a
/// panic and a backtrace.
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fira-e2e"))
        .args(["info", "--model", "7b", "--params"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fira binary runs");
    // Closed before the process has printed anything.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(SIGPIPE), "{:?}: {stderr}", output.status);
}
