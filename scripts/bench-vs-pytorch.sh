#!/usr/bin/env bash
# Side by side on this machine: PyTorch (HF LlamaForCausalLM + torch AdamW / the official `fira`
# package, scripts/bench_reference.py) and `fira bench train` / `fira bench optimizer` (Flex), on
# the same shapes and thread count, one after the other, then one table with the ratios
# (docs/benchmarks.md records its results). The reference packages are installed from PyPI into a
# virtual environment of their own; the project does not depend on them.
#
#   scripts/bench-vs-pytorch.sh            # every shape below
#   SHAPES="9m:4096:16" scripts/bench-vs-pytorch.sh
#
# Environment: THREADS (default: every core), STEPS (timed training steps, default 5), SHAPES
# (model:vocab:batch, 256 tokens per row), OPTIMIZER_MODEL (default 60m; empty skips the optimizer
# step), VENV (default ~/.cache/fira-burn/bench-venv), OUT (directory of the JSON results, default
# a new temporary one), CARGO_TARGET_DIR (as cargo's).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-$(nproc)}"
STEPS="${STEPS:-5}"
SHAPES="${SHAPES:-9m:4096:16 9m:32000:16 60m:32000:8}"
OPTIMIZER_MODEL="${OPTIMIZER_MODEL-60m}"
VENV="${VENV:-$HOME/.cache/fira-burn/bench-venv}"
OUT="${OUT:-$(mktemp -d)}"
SEQ=256
# The versions of the measurements in docs/benchmarks.md.
REFERENCE_PACKAGES="torch==2.15.0 transformers==5.24.0 fira==1.0.2"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import torch, transformers, fira" 2>/dev/null || "$VENV/bin/pip" install --quiet $REFERENCE_PACKAGES

cargo build --release -p trainer --bin fira
FIRA="${CARGO_TARGET_DIR:-target}/release/fira"
mkdir -p "$OUT"
export RAYON_NUM_THREADS="$THREADS"

# The projection rank of both sides: hidden / 4, the paper's and `fira train`'s choice.
rank_of() { case "$1" in 9m) echo 32 ;; 20m) echo 64 ;; 60m) echo 128 ;; 130m) echo 192 ;; *) echo "no rank for $1" >&2; exit 2 ;; esac; }

for shape in $SHAPES; do
  IFS=: read -r model vocab batch <<<"$shape"
  rank="$(rank_of "$model")"
  for optimizer in adamw fira; do
    echo "PyTorch: $model vocab $vocab batch $batch x $SEQ, $optimizer ..." >&2
    "$VENV/bin/python" scripts/bench_reference.py train "$model" "$vocab" "$batch" "$SEQ" "$rank" "$THREADS" "$STEPS" "$optimizer" \
      >"$OUT/torch-train-$model-$vocab-$optimizer.json"
  done
  echo "ours: $model vocab $vocab batch $batch x $SEQ ..." >&2
  "$FIRA" bench train --model "$model" --vocab-size "$vocab" --batch-size "$batch" --seq-len "$SEQ" --rank "$rank" \
    --steps "$STEPS" --optimizers adamw,fira --json "$OUT/ours-train-$model-$vocab.json" >&2
done

if [ -n "$OPTIMIZER_MODEL" ]; then
  rank="$(rank_of "$OPTIMIZER_MODEL")"
  for optimizer in adamw fira; do
    echo "PyTorch: optimizer step, $OPTIMIZER_MODEL rank $rank, $optimizer ..." >&2
    "$VENV/bin/python" scripts/bench_reference.py optimizer "$OPTIMIZER_MODEL" 32000 "$rank" "$THREADS" 5 "$optimizer" \
      >"$OUT/torch-optimizer-$optimizer.json"
  done
  echo "ours: optimizer step, $OPTIMIZER_MODEL rank $rank ..." >&2
  "$FIRA" bench optimizer --model "$OPTIMIZER_MODEL" --rank "$rank" --json "$OUT/ours-optimizer.json" >&2
fi

"$VENV/bin/python" - "$OUT" "$THREADS" "$SHAPES" "$OPTIMIZER_MODEL" <<'EOF'
import json, sys
out, threads, shapes, optimizer_model = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
load = lambda name: json.load(open(f"{out}/{name}.json"))
mib = lambda b: b / 2**20
print(f"\n{threads} threads each; ratios: ours / PyTorch (tokens/s: higher is better; ms and MiB: lower is better)\n")
print("| shape | optimizer | PyTorch tokens/s | ours tokens/s | × PyTorch | PyTorch peak MiB | ours peak MiB | × PyTorch |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
for shape in shapes:
    model, vocab, batch = shape.split(":")
    ours = {o["optimizer"]: o for o in load(f"ours-train-{model}-{vocab}")["optimizers"]}
    for optimizer in ["adamw", "fira"]:
        ref, our = load(f"torch-train-{model}-{vocab}-{optimizer}"), ours[optimizer]
        print(f"| {model}, vocab {vocab}, {batch} × 256 | {optimizer} | {ref['tokens_per_s']:,.0f} | {our['tokens_per_s']:,.0f} | "
              f"{our['tokens_per_s'] / ref['tokens_per_s']:.2f} | {mib(ref['peak_resident_bytes']):,.0f} | "
              f"{mib(our['peak_resident_bytes']):,.0f} | {our['peak_resident_bytes'] / ref['peak_resident_bytes']:.2f} |")
if optimizer_model:
    ours = {o["optimizer"]: o for o in load("ours-optimizer")["optimizers"]}
    print(f"\n| optimizer step, {optimizer_model} | PyTorch step ms | PyTorch amortised ms | ours step ms | ours amortised ms | × PyTorch (amortised) |")
    print("|---|--:|--:|--:|--:|--:|")
    for optimizer, name in [("adamw", "adamw (fira-optim path)"), ("fira", "fira (exact svd)")]:
        ref, our = load(f"torch-optimizer-{optimizer}"), ours[name]
        print(f"| {optimizer} | {ref['step_ms']:.1f} | {ref['amortised_ms']:.1f} | {our['step_ms']:.1f} | {our['amortised_ms']:.1f} | "
              f"{our['amortised_ms'] / ref['amortised_ms']:.2f} |")
print(f"\nJSON: {out}")
EOF
