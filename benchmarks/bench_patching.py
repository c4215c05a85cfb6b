"""Batched activation patching vs a per-site loop of forwards (target: ≥ 5× faster).

Restores every (layer, position) of the residual stream and of the FFN output,
and every head at the last position, for one corrupted factual prompt — once
as batches of restorations (``batch_size=128``), once as one forward per site
(``batch_size=1``, the loop a first implementation would write) — checks both
give the same numbers, and prints both times and the ratio.

    .venv/bin/python benchmarks/bench_patching.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mi_catalog.models import LoadedModel, load_model
from mi_catalog.models.tiny import tiny_model
from reference_impls import activation_patching as ap
from reference_impls._common import prompts_for


def bench_model() -> LoadedModel:
    try:
        return load_model("toy")
    except (FileNotFoundError, OSError):
        return tiny_model("llama", n_layers=4, d_model=128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = bench_model()
    prompt = prompts_for(lm, "facts", 1, seed=0)[0]
    times: dict[int, list[float]] = {128: [], 1: []}
    traces: dict[int, ap.PromptTrace | None] = {}
    for _ in range(args.repeats):
        for batch_size in times:
            spec = ap.Spec(tasks=("facts",), batch_size=batch_size)
            start = time.perf_counter()
            traces[batch_size] = ap.trace_prompt(lm, prompt, spec, seed=0)
            times[batch_size].append(time.perf_counter() - start)
    batched, looped = traces[128], traces[1]
    assert batched is not None and looped is not None
    for kind in ap.KINDS:
        torch.testing.assert_close(batched.restored[kind], looped.restored[kind], atol=1e-5, rtol=1e-4)
    n_sites = sum(t.numel() for t in batched.restored.values())
    b, loop = statistics.median(times[128]), statistics.median(times[1])
    print(f"model {lm.name}: {lm.n_layers} layers, {len(batched.tokens)} tokens, {n_sites} restorations, "
          f"median of {args.repeats}")  # fmt: skip
    print(f"  batched (128 per forward): {b * 1e3:8.1f} ms")
    print(f"  per-site loop (1 each):    {loop * 1e3:8.1f} ms")
    print(f"  speed-up: {loop / b:.1f}x (results equal)")


if __name__ == "__main__":
    main()
