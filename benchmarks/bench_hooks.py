"""Overhead of capture hooks on a forward pass (target: capturing every site ≤ 1.10× a bare forward).

Runs the toy model when its checkpoint is built (else a tiny random Llama),
alternating bare and hooked forwards so machine load hits both alike, and
prints the median times and their ratio. Times are this thread's CPU time
(``time.thread_time``) by default: on a shared machine wall time mostly
measures the other processes (ratios swing 0.8–1.4× between runs under load),
while the thread's CPU time is what the hooks actually cost. ``--wall`` uses
wall-clock time instead (meaningful on a quiet machine).

Like the ``mi-catalog`` commands that run models, it first keeps freed memory in the process
(:mod:`mi_catalog.models.allocator`); ``--default-allocator`` measures glibc's defaults instead, where
capturing every site page-faults its activations back in on every forward pass.

    .venv/bin/python benchmarks/bench_hooks.py [--runs 200] [--batch 16] [--model toy] [--default-allocator]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from mi_catalog.models import LoadedModel, all_sites, capture, edit, load_model
from mi_catalog.models.allocator import keep_freed_memory
from mi_catalog.models.tiny import tiny_model


def bench_model(name: str) -> LoadedModel:
    if name != "toy":
        return load_model(name)
    try:
        return load_model("toy")
    except (FileNotFoundError, OSError):
        return tiny_model("llama", n_layers=4, d_model=128)


CLOCK = time.thread_time


def timed(fn: object) -> float:
    start = CLOCK()
    fn()  # type: ignore[operator]
    return CLOCK() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this thread's CPU time")
    parser.add_argument("--model", default="toy", help="toy (default), smollm2-135m, a path or a hub id")
    parser.add_argument("--default-allocator", action="store_true", help="do not keep freed memory (glibc defaults)")
    args = parser.parse_args()
    kept = False if args.default_allocator else keep_freed_memory()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.thread_time
    torch.set_num_threads(1)
    lm = bench_model(args.model)
    words = "the the a and is was" if lm.tasks.name == "toy" else "The Eiffel Tower is in the city of Paris"
    batch = lm.encode([" ".join([words] * 3)] * args.batch)
    resid = [f"resid_post.{layer}" for layer in range(lm.n_layers)]
    every = all_sites(lm)
    # Hooks alone (a no-op at every site) vs keeping activations: storing every site's tensor costs fresh
    # memory each forward (the allocator cannot recycle buffers that are still referenced), hooks do not.
    configs: dict[str, Callable[[], AbstractContextManager[object]]] = {
        "no-op hook, every site": lambda: edit(lm, [(s, lambda act, state: None) for s in every]),
        "capture resid_post": lambda: capture(lm, resid),
        "capture every site": lambda: capture(lm, every),
    }
    for _ in range(10):  # warm-up
        lm.logits(batch)
    print(f"model {lm.name}: {lm.n_layers} layers, d_model {lm.d_model}, batch {tuple(batch.shape)}, "
          f"median of {args.runs} runs, {'wall' if args.wall else 'thread CPU'} time, "
          f"{'freed memory kept' if kept else 'default allocator'}")  # fmt: skip
    n_sites = {"no-op hook, every site": len(every), "capture resid_post": len(resid), "capture every site": len(every)}
    for label, intervention in configs.items():
        bare: list[float] = []
        hooked: list[float] = []
        for _ in range(args.runs):
            bare.append(timed(lambda: lm.logits(batch)))
            with intervention():
                hooked.append(timed(lambda: lm.logits(batch)))
        b, h = statistics.median(bare), statistics.median(hooked)
        print(f"  {label:<24} ({n_sites[label]:3d} sites): bare {b * 1e3:7.2f} ms  hooked {h * 1e3:7.2f} ms  "
              f"ratio {h / b:.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
