#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test of the workspace in release mode
# (Burn's CPU kernels are unusably slow unoptimised), then both golden replays (fira-optim's and
# llama-burn's `golden` tests) again on the second CPU backend. Both invocations select the whole
# workspace, so dependencies are built once with one feature set. FIRA_TEST_DEVICE selects the
# backend of the numeric tests (default ndarray).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
FIRA_TEST_DEVICE=flex cargo test --release --workspace --test golden -- --nocapture
