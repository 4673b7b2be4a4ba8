"""The PyTorch reference of `fira bench train` and `fira bench optimizer` (scripts/bench-vs-pytorch.sh).

HF transformers' LlamaForCausalLM (attention: $HF_ATTENTION, default "sdpa", HF's own default,
PyTorch's fused scaled-dot-product attention; "eager" is HF's written-out attention) with torch's AdamW or the official `fira`
package's FiraAdamW, configured as the paper's scripts and as `fira train` do: the attention and
MLP matrices projected at the given rank (scale alpha 0.25, refresh every 200 steps), everything
else on the AdamW path. Measures, it is not part of the project; one optimizer per process, so
that the peak resident set is that optimizer's own. Prints one JSON object on stdout.

  python bench_reference.py rank <model>
  python bench_reference.py config <model> <vocab> <config.json>
  python bench_reference.py train <config.json> <batch> <seq> <rank> <threads> <steps> <optimizer>
  python bench_reference.py optimizer <config.json> <rank> <threads> <steps> <optimizer>

rank prints the projection rank of both sides, hidden / 4 (the paper's and `fira train`'s). config
writes the HF config.json of a preset with the given vocabulary, which both sides then
read (`fira bench --model <config.json>`), so that they measure the same model.

train: forward, HF's causal-LM loss, backward and the optimizer step on random token ids, the
median of <steps> steps after one warm-up step (as `fira bench train`). optimizer: the optimizer
step alone on fixed random gradients, the median of <steps> steps after the first, whose extra time
is the refresh (SVD of every projected gradient); amortised = step + refresh / 200 (as `fira bench
optimizer`)."""

import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# (hidden, intermediate, heads, layers): the GaLore/Fira configs/llama_*.json, as llama-burn's presets.
PRESETS = {"9m": (128, 352, 4, 4), "20m": (256, 688, 4, 4), "60m": (512, 1376, 8, 8), "130m": (768, 2048, 12, 12)}
UPDATE_PROJ_GAP = 200
ATTENTION = os.environ.get("HF_ATTENTION", "sdpa")


def write_config(model, vocab, path):
    hidden, intermediate, heads, layers = PRESETS[model]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
              "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": heads, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6,
              "hidden_act": "silu", "tie_word_embeddings": False}
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def build(config_path, rank, optimizer):
    with open(config_path) as f:
        config = LlamaConfig(**json.load(f), attn_implementation=ATTENTION)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config)
    if optimizer == "adamw":
        return llama, torch.optim.AdamW(llama.parameters(), lr=1e-3, weight_decay=0.0)
    from fira import FiraAdamW
    projected = [p for n, p in llama.named_parameters() if ("attn" in n or "mlp" in n) and p.dim() == 2]
    ids = {id(p) for p in projected}
    rest = [p for p in llama.parameters() if id(p) not in ids]
    groups = [{"params": rest},
              {"params": projected, "rank": rank, "update_proj_gap": UPDATE_PROJ_GAP, "alpha": 0.25, "proj_type": "std"}]
    return llama, FiraAdamW(groups, lr=1e-3, no_deprecation_warning=True)


def peak_resident_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # ru_maxrss is KiB on Linux


def train(config_path, batch, seq, rank, steps, optimizer):
    llama, opt = build(config_path, rank, optimizer)
    ids = torch.randint(0, llama.config.vocab_size, (batch, seq))
    model_ms, optimizer_ms = [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = llama(input_ids=ids, labels=ids).loss
        loss.backward()
        backward_done = time.perf_counter()
        opt.step()
        opt.zero_grad()
        model_ms.append((backward_done - start) * 1e3)
        optimizer_ms.append((time.perf_counter() - backward_done) * 1e3)
    totals = [a + b for a, b in zip(model_ms, optimizer_ms)]
    step = statistics.median_high(totals[1:])
    return {"step_ms": step, "forward_backward_ms": statistics.median_high(model_ms[1:]),
            "optimizer_ms": statistics.median_high(optimizer_ms[1:]), "first_step_ms": totals[0],
            "tokens_per_s": batch * seq / step * 1e3, "peak_resident_bytes": peak_resident_bytes()}


def optimizer_step(config_path, rank, steps, optimizer):
    llama, opt = build(config_path, rank, optimizer)
    generator = torch.Generator().manual_seed(1)
    for p in llama.parameters():
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - start) * 1e3)
    step = statistics.median_high(times[1:])
    refresh = max(times[0] - step, 0.0)
    return {"step_ms": step, "refresh_ms": refresh, "amortised_ms": step + refresh / UPDATE_PROJ_GAP,
            "peak_resident_bytes": peak_resident_bytes()}


def main(argv):
    mode = argv[1]
    if mode == "rank":
        return print(PRESETS[argv[2]][0] // 4)
    if mode == "config":
        model, vocab, path = argv[2:]
        return write_config(model, int(vocab), path)
    if mode == "train":
        config_path, batch, seq, rank, threads, steps, optimizer = argv[2:]
        torch.set_num_threads(int(threads))
        result = train(config_path, int(batch), int(seq), int(rank), int(steps), optimizer)
    elif mode == "optimizer":
        config_path, rank, threads, steps, optimizer = argv[2:]
        torch.set_num_threads(int(threads))
        result = optimizer_step(config_path, int(rank), int(steps), optimizer)
    else:
        sys.exit(f"unknown mode {mode!r}: train or optimizer")
    result.update({"optimizer": optimizer, "threads": torch.get_num_threads(), "torch": torch.__version__, "attention": ATTENTION})
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
