#!/usr/bin/env bash
# The GPU checks of the bundle scripts/gpu-bundle.sh builds; needs no Rust toolchain. On an x86-64
# machine with an NVIDIA GPU and CUDA 13 drivers, in at most 8 minutes:
#  * both golden replays (optimizer, LLaMA) and the seeded initial weights on cuda and on wgpu;
#  * the cross-backend comparison: the same short `fira train` on flex and on cuda;
#  * `fira bench optimizer` and `fira bench train` for 60m, 350m and 1b (peak device memory);
#  * one bf16 training run;
# and writes every figure to `results.json` and `results.md` in the output folder, with each
# check's log under `logs/`. A check that fails or runs out of time is recorded as such and the
# others still run; the exit status is 1 if any failed.
#
# Usage: run-gpu-checks.sh [--backend cuda|wgpu] [--models "60m 350m 1b"] [--out DIR] [--budget SECONDS]
#                          [--bench-train-args "ARGS"]
# `--backend wgpu --models 9m --bench-train-args "--batch-size 1 --seq-len 32 --steps 1"` exercises
# the script on a CPU machine with Mesa's lavapipe, without an NVIDIA GPU (the default 8 × 256-token
# training step takes minutes there). The output folder defaults to $OUT (the device tool's), else
# ./results.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
backend=cuda
models="60m 350m 1b"
out="${OUT:-$PWD/results}"
budget=450
bench_train_args=""
while (($#)); do
    case "$1" in
        --backend) backend="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --bench-train-args) bench_train_args="$2"; shift 2 ;;
        *) echo "run-gpu-checks.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$backend" in cuda | wgpu) ;; *) echo "run-gpu-checks.sh: --backend cuda or wgpu, not $backend" >&2; exit 2 ;; esac
mkdir -p "$out/logs"
: >"$out/checks.jsonl"
export FIRA_GOLDEN_DIR="$here/data/golden" LLAMA_GOLDEN_DIR="$here/data/llama-golden"
# The binaries travel packed (gpu-bundle.sh); unpacked outside the bundle, which may be read-only.
bin="$(mktemp -d)/bin"
python3 -c 'import sys, tarfile
tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$here/bin.tar.xz" "$(dirname "$bin")" || exit 1
fira="$bin/fira"
deadline=$((SECONDS + budget))

# check NAME LIMIT_S COMMAND...: runs COMMAND with its output in logs/NAME.log, within LIMIT_S and
# the overall budget, and appends {name, status, seconds, rc} to checks.jsonl.
check() {
    local name="$1" limit="$2" start=$SECONDS rc status
    shift 2
    local left=$((deadline - SECONDS))
    if ((left < 15)); then
        echo "{\"name\": \"$name\", \"status\": \"not run (budget spent)\"}" >>"$out/checks.jsonl"
        echo "== $name: not run (budget spent)"
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$out/logs/$name.log" 2>&1
    rc=$?
    case "$rc" in 0) status=pass ;; 124 | 137) status=timeout ;; *) status=fail ;; esac
    echo "{\"name\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $((SECONDS - start))}" >>"$out/checks.jsonl"
    echo "   $status in $((SECONDS - start))s"
    tail -3 "$out/logs/$name.log" | sed 's/^/   | /'
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no NVIDIA GPU (nvidia-smi absent)"; } >"$out/device.txt"
cat "$here/BUILD.txt" "$out/device.txt"

devices=("$backend")
[[ "$backend" == cuda ]] && devices+=(wgpu)
for device in "${devices[@]}"; do
    check "golden-optimizer-$device" 120 env FIRA_TEST_DEVICE="$device" "$bin/fira-optim-golden" --nocapture
    check "golden-llama-$device" 90 env FIRA_TEST_DEVICE="$device" "$bin/llama-burn-golden" --nocapture
    check "init-$device" 60 env FIRA_TEST_DEVICE="$device" "$bin/llama-burn-init"
done

# The short run of tests/tests/cli_train.rs `flex_and_the_test_backend_train_the_same_model`.
small=(--vocab-size 512 --seq-len 64 --batch-size 4 --valid-rows 16 --log-every 1 --steps 6 --eval-every 6 --checkpoint-every 6)
rm -rf "$out/runs"
check "train-flex" 120 "$fira" train --backend flex --run-dir "$out/runs/flex" "${small[@]}"
check "train-$backend" 120 "$fira" train --backend "$backend" --run-dir "$out/runs/$backend" "${small[@]}"

for model in $models; do
    check "bench-optimizer-$model" 120 "$fira" bench optimizer --model "$model" --backend "$backend" --json "$out/bench-optimizer-$model.json"
done
read -ra bench_train_extra <<<"$bench_train_args"
for model in $models; do
    check "bench-train-$model" 180 "$fira" bench train --model "$model" --backend "$backend" --json "$out/bench-train-$model.json" "${bench_train_extra[@]}"
done

# bf16 where the backend has it (WGPU has no bf16 arithmetic: then on flex).
bf16_backend="$backend"
[[ "$backend" == wgpu ]] && bf16_backend=flex
bf16=(--vocab-size 512 --seq-len 64 --batch-size 4 --valid-rows 16 --log-every 1 --steps 12 --eval-every 12 --checkpoint-every 12)
check "train-bf16-$bf16_backend" 120 "$fira" train --backend "$bf16_backend" --dtype bf16 --run-dir "$out/runs/bf16-$bf16_backend" "${bf16[@]}"

python3 "$here/summarise.py" "$out" "$backend" "$bf16_backend" "$models"
