#!/usr/bin/env bash
# Builds, on a CPU machine with the Rust toolchain, the GPU check bundle: the `fira` binary and the
# test binaries of both golden replays and of the seeded initial weights, with `--features
# cuda,wgpu` (CUDA builds offline with CUDARC_CUDA_VERSION=13000), stripped and packed into one
# xz archive (the four binaries are 174 MiB stripped, each holding its own copy of Burn, WGPU and
# the CUDA runtime; packed about 21 MiB), with the golden data and scripts/gpu/run-gpu-checks.sh,
# in one folder (default `gpu-bundle/`, at most 60 MiB). On an
# x86-64 machine with an NVIDIA GPU and CUDA 13 drivers, and no Rust toolchain, run
# `gpu-bundle/run-gpu-checks.sh` (README, section Backends).
#
# Usage: scripts/gpu-bundle.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-gpu-bundle}"
limit_mib=60
# The target directory of scripts/test.sh's GPU stage: the same feature set, so CI's build serves.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}-gpu" CUDARC_CUDA_VERSION=13000
build=(cargo build --release --workspace --features cuda,wgpu --bin fira --test golden --test init)
"${build[@]}"
# The executables of what was just built, from cargo's JSON messages (nothing is rebuilt).
artifacts="$("${build[@]}" --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        # "path+file:///dir/fira-optim#0.1.0", or "...#name@0.1.0" where the folder is named otherwise
        location, fragment = m["package_id"].split("#")
        crate = fragment.split("@")[0] if "@" in fragment else location.rsplit("/", 1)[-1]
        name = m["target"]["name"]
        print(crate + "-" + name if m["target"]["kind"] == ["test"] else name, m["executable"])
')"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/data"
while read -r name executable; do
    strip -o "$bundle/bin/$name" "$executable"
done <<<"$artifacts"
for expected in fira fira-optim-golden llama-burn-golden llama-burn-init; do
    [[ -x "$bundle/bin/$expected" ]] || { echo "gpu-bundle: $expected was not built (artifacts: $artifacts)" >&2; exit 1; }
done
ls -l "$bundle/bin"
# Python's tarfile, not tar/xz, which a GPU machine's image may lack: run-gpu-checks.sh unpacks it
# with the same Python it needs anyway.
python3 -c 'import sys, tarfile
with tarfile.open(sys.argv[1], "w:xz", preset=9) as archive:
    archive.add(sys.argv[2], arcname="bin")' "$bundle/bin.tar.xz" "$bundle/bin"
rm -r "$bundle/bin"
cp -r fira-optim/tests/data/golden "$bundle/data/golden"
cp -r llama-burn/tests/data/llama-golden "$bundle/data/llama-golden"
cp scripts/gpu/run-gpu-checks.sh scripts/gpu/summarise.py "$bundle/"
{
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
    echo "built $(date -u +%FT%TZ) on $(uname -m), $(rustc --version)"
    echo "features cuda,wgpu; CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION"
} >"$bundle/BUILD.txt"

size_kib="$(du -sk "$bundle" | cut -f1)"
echo "gpu-bundle: $bundle, $((size_kib / 1024)) MiB (limit $limit_mib MiB)"
if ((size_kib > limit_mib * 1024)); then
    echo "gpu-bundle: $bundle exceeds $limit_mib MiB" >&2
    exit 1
fi
