#!/usr/bin/env bash
# The project's test command (README, .ci/run), in four stages:
#  1. formatting and lints (rustfmt.toml; clippy with warnings denied) of the CPU build and of the
#     GPU build (`--features cuda,wgpu`: the CUDA path compiles without a GPU or CUDA toolkit);
#  2. every test of the workspace in release mode (Burn's CPU kernels are unusably slow
#     unoptimised), numeric tests on ndarray;
#  3. both golden replays (fira-optim's and llama-burn's `golden` tests) again on flex;
#  4. WGPU on the Vulkan driver present (in CI Mesa's software driver lavapipe, which .ci/run
#     installs): both golden replays, the seeded initial weights, the KV cache against the full
#     forward and the short flex-vs-wgpu training comparison. They are built with `--features cuda,wgpu`, the feature set of the GPU
#     bundle (scripts/gpu-bundle.sh), so the CUDA build is compiled in full as well.
# The GPU feature set builds in its own target directory next to the CPU one
# (`$CARGO_TARGET_DIR-gpu`), so that neither rebuilds the other's Burn. Every invocation selects the
# whole workspace, so dependencies are built once per feature set. FIRA_TEST_DEVICE selects the
# backend of the numeric tests (default ndarray); FIRA_GOLDEN_ONLY=<case>[/<variant>] narrows
# fira-optim's golden replay to one case or trajectory.
set -euo pipefail
cd "$(dirname "$0")/.."
cpu_target="${CARGO_TARGET_DIR:-target}"
gpu=(env CARGO_TARGET_DIR="$cpu_target-gpu" CUDARC_CUDA_VERSION=13000)
if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
    echo "scripts/test.sh: no Vulkan driver for the WGPU stage; install one (Debian/Ubuntu: apt-get install mesa-vulkan-drivers, as .ci/run does)" >&2
    exit 2
fi

cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
"${gpu[@]}" cargo clippy --workspace --all-targets --features cuda,wgpu -- -D warnings

cargo test --release --workspace
FIRA_TEST_DEVICE=flex cargo test --release --workspace --test golden -- --nocapture

wgpu_test() { "${gpu[@]}" FIRA_TEST_DEVICE=wgpu cargo test --release --workspace --features cuda,wgpu "$@"; }
wgpu_test --test golden -- --nocapture
wgpu_test --test init
wgpu_test --test kv_cache
wgpu_test --test cli_train -- --exact flex_and_the_test_backend_train_the_same_model
