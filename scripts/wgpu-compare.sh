#!/usr/bin/env bash
# The short `fira train` comparison of tests/tests/cli_train.rs (flex vs ndarray) extended to
# WGPU, which CI does not build (a cold release build with it takes ~35 min on 2 cores).
#
# Needs a Vulkan driver: a real adapter, or Mesa's software rasteriser lavapipe
# (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`; it is picked up automatically when no
# GPU is present). Prints the per-step training losses of flex and wgpu side by side and exits
# non-zero if any differs by more than 1e-3 relative (f32 kernels summing in different orders).
#
# Usage: scripts/wgpu-compare.sh [extra fira train flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p trainer --features wgpu
out="$(mktemp -d)"
common=(--vocab-size 512 --seq-len 64 --batch-size 4 --valid-rows 16 --steps 6 --eval-every 6 --checkpoint-every 6 "$@")
for backend in flex wgpu; do
    echo "== $backend"
    "${CARGO_TARGET_DIR:-target}/release/fira" train --backend "$backend" --run-dir "$out/$backend" "${common[@]}" | tail -3
done
python3 - "$out" <<'PY'
import json, sys
def losses(b):
    return [r["loss"] for r in map(json.loads, open(f"{sys.argv[1]}/{b}/metrics.jsonl")) if r["split"] == "train"]
flex, wgpu = losses("flex"), losses("wgpu")
worst = 0.0
for step, (a, b) in enumerate(zip(flex, wgpu), 1):
    rel = abs(a - b) / abs(a)
    worst = max(worst, rel)
    print(f"step {step}: flex {a:.6f}  wgpu {b:.6f}  rel {rel:.2e}")
ok = len(flex) == len(wgpu) == 6 and worst <= 1e-3
print(f"worst relative difference {worst:.2e}: {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
