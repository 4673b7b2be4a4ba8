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
# step), BASELINE (an earlier `fira` binary, measured too, after PyTorch and before this one: the
# "before" column), HF_ATTENTION (PyTorch's attention: sdpa, HF's default, or eager), VENV
# (default ~/.cache/fira-burn/bench-venv), OUT (directory of the JSON results, default a new
# temporary one), CARGO_TARGET_DIR (as cargo's).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-$(nproc)}"
STEPS="${STEPS:-5}"
SHAPES="${SHAPES:-9m:4096:16 9m:32000:16 60m:32000:8}"
OPTIMIZER_MODEL="${OPTIMIZER_MODEL-60m}"
VENV="${VENV:-$HOME/.cache/fira-burn/bench-venv}"
BASELINE="${BASELINE:-}"
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

rank_of() { "$VENV/bin/python" scripts/bench_reference.py rank "$1"; }

# Ours under a name: "ours", and "before" for the baseline binary if there is one.
binaries() { [ -z "$BASELINE" ] || echo "before=$BASELINE"; echo "ours=$FIRA"; }

for shape in $SHAPES; do
  IFS=: read -r model vocab batch <<<"$shape"
  rank="$(rank_of "$model")"
  config="$OUT/$model-$vocab.json"
  "$VENV/bin/python" scripts/bench_reference.py config "$model" "$vocab" "$config"
  for optimizer in adamw fira; do
    echo "PyTorch: $model vocab $vocab batch $batch x $SEQ, $optimizer ..." >&2
    "$VENV/bin/python" scripts/bench_reference.py train "$config" "$batch" "$SEQ" "$rank" "$THREADS" "$STEPS" "$optimizer" \
      >"$OUT/torch-train-$model-$vocab-$optimizer.json"
  done
  for entry in $(binaries); do
    echo "${entry%%=*}: $model vocab $vocab batch $batch x $SEQ ..." >&2
    "${entry#*=}" bench train --model "$config" --batch-size "$batch" --seq-len "$SEQ" --rank "$rank" --steps "$STEPS" \
      --optimizers adamw,fira --json "$OUT/${entry%%=*}-train-$model-$vocab.json" >&2
  done
done

if [ -n "$OPTIMIZER_MODEL" ]; then
  rank="$(rank_of "$OPTIMIZER_MODEL")"
  config="$OUT/$OPTIMIZER_MODEL-32000.json"
  "$VENV/bin/python" scripts/bench_reference.py config "$OPTIMIZER_MODEL" 32000 "$config"
  for optimizer in adamw fira; do
    echo "PyTorch: optimizer step, $OPTIMIZER_MODEL rank $rank, $optimizer ..." >&2
    "$VENV/bin/python" scripts/bench_reference.py optimizer "$config" "$rank" "$THREADS" 5 "$optimizer" >"$OUT/torch-optimizer-$optimizer.json"
  done
  for entry in $(binaries); do
    echo "${entry%%=*}: optimizer step, $OPTIMIZER_MODEL rank $rank ..." >&2
    "${entry#*=}" bench optimizer --model "$config" --rank "$rank" --json "$OUT/${entry%%=*}-optimizer.json" >&2
  done
fi

"$VENV/bin/python" - "$OUT" "$THREADS" "$SHAPES" "$OPTIMIZER_MODEL" "$BASELINE" <<'EOF'
import json, sys
out, threads, shapes, optimizer_model, baseline = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4], sys.argv[5]
sides = (["before"] if baseline else []) + ["ours"]
load = lambda name: json.load(open(f"{out}/{name}.json"))
mib = lambda b: b / 2**20
first = shapes[0].split(":") if shapes else None
attention = load(f"torch-train-{first[0]}-{first[1]}-fira")["attention"] if first else load("torch-optimizer-fira")["attention"]
print(f"\nPyTorch attention: {attention}; {threads} threads each; × PyTorch: ours / PyTorch (tokens/s: higher is better; ms, MiB: lower is better)\n")
head = "| shape | optimizer | PyTorch tokens/s |" + "".join(f" {s} tokens/s | {s} × PyTorch |" for s in sides)
head += " PyTorch peak MiB |" + "".join(f" {s} peak MiB |" for s in sides)
print(head)
print("|---|---|" + "--:|" * (2 + 3 * len(sides)))
for shape in shapes:
    model, vocab, batch = shape.split(":")
    ref = {o: load(f"torch-train-{model}-{vocab}-{o}") for o in ["adamw", "fira"]}
    ours = {s: {o["optimizer"]: o for o in load(f"{s}-train-{model}-{vocab}")["optimizers"]} for s in sides}
    for o in ["adamw", "fira"]:
        row = f"| {model}, vocab {vocab}, {batch} × 256 | {o} | {ref[o]['tokens_per_s']:,.0f} |"
        row += "".join(f" {ours[s][o]['tokens_per_s']:,.0f} | {ours[s][o]['tokens_per_s'] / ref[o]['tokens_per_s']:.2f} |" for s in sides)
        row += f" {mib(ref[o]['peak_resident_bytes']):,.0f} |" + "".join(f" {mib(ours[s][o]['peak_resident_bytes']):,.0f} |" for s in sides)
        print(row)
if optimizer_model:
    ours = {s: {o["optimizer"]: o for o in load(f"{s}-optimizer")["optimizers"]} for s in sides}
    print(f"\n| optimizer step alone, {optimizer_model}, amortised over T = 200 | PyTorch ms |" + "".join(f" {s} ms | {s} × PyTorch |" for s in sides))
    print("|---|--:|" + "--:|" * (2 * len(sides)))
    for o, name in [("adamw", "adamw (fira-optim path)"), ("fira", "fira (exact svd)")]:
        ref = load(f"torch-optimizer-{o}")
        row = f"| {o} | {ref['amortised_ms']:.1f} |"
        row += "".join(f" {ours[s][name]['amortised_ms']:.1f} | {ours[s][name]['amortised_ms'] / ref['amortised_ms']:.2f} |" for s in sides)
        print(row)
print(f"\nJSON: {out}")
EOF
