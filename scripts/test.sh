#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test of the workspace in release mode
# (Burn's CPU kernels are unusably slow unoptimised), then the golden replays on the second
# CPU backend. FIRA_TEST_DEVICE selects the backend of the numeric tests (default ndarray).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
FIRA_TEST_DEVICE=flex cargo test --release -p fira-optim --test golden -- --nocapture
