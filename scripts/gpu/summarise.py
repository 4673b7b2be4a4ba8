"""Collects what run-gpu-checks.sh measured into results.json and results.md.

Usage: summarise.py OUT_DIR BACKEND BF16_BACKEND "MODELS"
"""

import json
import sys
from pathlib import Path

# Paper Table 2 (GaLore's memory estimate: weights and optimizer state in bf16), GB.
PAPER_MEMORY_GB = {"60m": (0.36, 0.24), "130m": (0.76, 0.52), "350m": (2.06, 1.22), "1b": (7.80, 4.38)}
# The GPU backends' tolerance of tests/tests/cli_train.rs, flex_and_the_test_backend_train_the_same_model.
LOSS_TOLERANCE = 1e-4


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def train_losses(run):
    return [(r["step"], r["loss"]) for r in jsonl(run / "metrics.jsonl") if r.get("split") == "train"]


def comparison(out, backend):
    flex, other = train_losses(out / "runs" / "flex"), train_losses(out / "runs" / backend)
    steps = [
        {"step": s, "flex": a, backend: b, "relative": abs(a - b) / abs(a)}
        for (s, a), (t, b) in zip(flex, other)
        if s == t
    ]
    worst = max((r["relative"] for r in steps), default=None)
    ok = len(steps) == 6 and worst is not None and worst <= LOSS_TOLERANCE
    return {"steps": steps, "worst_relative": worst, "tolerance": LOSS_TOLERANCE, "status": "pass" if ok else "fail"}


def bf16_run(out, backend):
    run = out / "runs" / f"bf16-{backend}"
    losses = [loss for _, loss in train_losses(run)]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    falls = len(losses) == 12 and sum(losses[9:]) < sum(losses[:3]) - 0.3
    return {
        "backend": backend,
        "losses": losses,
        "optimizer_state_bytes": summary.get("optimizer_state_bytes"),
        "status": "pass" if falls else "fail",
    }


def gib(n):
    return "–" if n is None else f"{n / 2**30:.3f}"


def main():
    out, backend, bf16_backend, models = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split()
    results = {
        "build": (Path(__file__).parent / "BUILD.txt").read_text().strip().splitlines(),
        "device": (out / "device.txt").read_text().strip(),
        "backend": backend,
        "checks": jsonl(out / "checks.jsonl"),
        "flex_vs_" + backend: comparison(out, backend),
        "bf16": bf16_run(out, bf16_backend),
        "bench_optimizer": {},
        "bench_train": {},
    }
    for model in models:
        for kind in ("optimizer", "train"):
            path = out / f"bench-{kind}-{model}.json"
            if path.is_file():
                results[f"bench_{kind}"][model] = json.loads(path.read_text())
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    md = [f"# GPU checks on {results['device']} ({backend})", "", *[f"    {line}" for line in results["build"]], ""]
    md += ["| check | status | seconds |", "|---|---|--:|"]
    md += [f"| {c['name']} | {c['status']} | {c.get('seconds', '')} |" for c in results["checks"]]
    cmp = results["flex_vs_" + backend]
    md += ["", f"Training losses, flex vs {backend} (tolerance {LOSS_TOLERANCE:g} relative): {cmp['status']}", ""]
    md += ["| step | flex | " + backend + " | relative |", "|--:|--:|--:|--:|"]
    md += [f"| {r['step']} | {r['flex']:.6f} | {r[backend]:.6f} | {r['relative']:.2e} |" for r in cmp["steps"]]
    bf16 = results["bf16"]
    md += ["", f"bf16 on {bf16['backend']}: {bf16['status']}; losses {', '.join(f'{x:.3f}' for x in bf16['losses'])}; "
           f"optimizer state {bf16['optimizer_state_bytes']} B"]
    md += ["", "| model | optimizer | step ms | tokens/s | peak device GiB | state GiB | weights + state, bf16, GiB | paper (bf16) GB |",
           "|---|---|--:|--:|--:|--:|--:|--:|"]
    for model, report in results["bench_train"].items():
        for t in report["optimizers"]:
            weights_and_state = (report["parameters"] * 4 + t["state_bytes"]) / 2
            paper = PAPER_MEMORY_GB.get(model, (None, None))[0 if t["optimizer"] == "adamw" else 1]
            md.append(f"| {model} | {t['optimizer']} | {t['step_ms']:.1f} | {t['tokens_per_s']:.0f} | {gib(t['peak_device_bytes'])} | "
                      f"{gib(t['state_bytes'])} | {gib(weights_and_state)} | {paper if paper is not None else '–'} |")
    md += ["", "| model | optimizer | step ms | refresh ms | amortised ms | × AdamW |", "|---|---|--:|--:|--:|--:|"]
    for model, report in results["bench_optimizer"].items():
        for t in report["optimizers"]:
            md.append(f"| {model} | {t['optimizer']} | {t['step_ms']:.1f} | {t['refresh_ms']:.1f} | {t['amortised_ms']:.1f} | {t['ratio_to_adamw']:.2f} |")
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    failed = [c["name"] for c in results["checks"] if c["status"] != "pass"]
    failed += [name for name in ("flex_vs_" + backend, "bf16") if results[name]["status"] != "pass"]
    if failed:
        print(f"not passed: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
