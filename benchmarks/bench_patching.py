"""Batched activation patching vs one restoration per forward pass (prints figures; not a test).

    python benchmarks/bench_patching.py [--model toy|PATH] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mi_catalog.models import load_model
from mi_catalog.tasks import TaskExample
from reference_impls import activation_patching as ap


def timed(lm, ex: TaskExample, batch_size: int, repeats: int) -> tuple[float, ap.PromptTrace]:  # type: ignore[no-untyped-def]
    spec = ap.Spec(batch_size=batch_size, noise_samples=3)
    sigma = ap.subject_sigma(lm, [ex])
    times, trace = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        trace = ap.trace(lm, ex, spec, sigma, seed=0)
        times.append(time.perf_counter() - start)
    assert trace is not None
    return statistics.median(times), trace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="toy")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_model(args.model)
    ex = lm.tasks.examples("facts", 1, seed=0)[0]
    batched, a = timed(lm, ex, 256, args.repeats)
    loop, b = timed(lm, ex, 1, args.repeats)
    same = all(torch.allclose(a.grid[k], b.grid[k], atol=1e-5) for k in a.grid)
    print(f"model {lm.name}: one prompt, every (layer, position) of resid/mlp + every head, 3 noise samples")
    print(f"batched (256/forward): {batched * 1000:.1f} ms; per-site loop: {loop * 1000:.1f} ms; "
          f"speed-up {loop / batched:.1f}x; identical results: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
