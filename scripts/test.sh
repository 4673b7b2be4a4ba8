#!/usr/bin/env bash
# The project's test command (README, .ci/run): formatting and lints first (rustfmt.toml,
# clippy with warnings denied), then every test of the workspace in release mode (Burn's CPU
# kernels are unusably slow unoptimised), then both golden replays (fira-optim's and
# llama-burn's `golden` tests) again on the second CPU backend. The test invocations select the
# whole workspace, so dependencies are built once with one feature set. FIRA_TEST_DEVICE selects
# the backend of the numeric tests (default ndarray); FIRA_GOLDEN_ONLY=<case>[/<variant>] narrows
# fira-optim's golden replay to one case or trajectory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
FIRA_TEST_DEVICE=flex cargo test --release --workspace --test golden -- --nocapture
