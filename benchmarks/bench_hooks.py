"""Overhead of capture hooks on a forward pass (target: capturing every site ≤ 1.10× a bare forward).

Measured on the toy (run by our native Llama; 4 layers, d_model 64, batch 16 × 19 tokens, ``--runs 200``,
2 shared cores at load 0.5–1.0, ten runs): capturing every site 1.04–1.09×, median 1.06× (10 of 10 runs ≤ 1.10×);
capturing and reading every value 1.05–1.12×, median 1.07× (8 of 10). The native model hands its sites to the
capture from its own forward code (``tap_recorders``), so no torch hook runs. The same capture forced onto
torch hooks (as on a transformers-backed model: GPT-2, hub models, ``--backend transformers``) costs
1.11–1.19×, median 1.13× (five runs; 1.12× on the transformers-backed toy): dispatching ~10 hooks per layer
costs a model this small more than keeping the tensors. SmolLM2-135M (``--model smollm2-135m --runs 30
--batch 4``, one run): 1.04× tapped, 1.05× hooked — at 30 layers × 576 the hooks' fixed cost is small.
``--floors`` times the hooks a hooked capture registers doing nothing (43 on the toy: 1.03–1.06× over earlier
sessions' six runs, 1.05× today) and only
keeping a reference to each tensor (1.03–1.12×; 1.06× today: holding ~5 MB of activations alive, where a bare pass
recycles a few hot buffers, costs memory traffic that varies with the other processes').

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

    .venv/bin/python benchmarks/bench_hooks.py [--runs 200] [--batch 16] [--model toy] [--backend auto]
        [--default-allocator] [--floors]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch

from mi_catalog.models import LoadedModel, all_sites, capture, edit, hook_snapshot, load_model
from mi_catalog.models.allocator import keep_freed_memory
from mi_catalog.models.tiny import tiny_model


def bench_model(name: str, backend: str) -> LoadedModel:
    if name != "toy":
        return load_model(name, backend=backend)
    try:
        return load_model("toy", backend=backend)
    except (FileNotFoundError, OSError):
        return tiny_model("llama", n_layers=4, d_model=128)


CLOCK = time.thread_time


def capture_hook_points(lm: LoadedModel) -> list[tuple[torch.nn.Module, str]]:
    """(module, "forward" | "forward_pre") of every torch hook that capturing every site registers."""
    forced = hooks_forced(lm, contextlib.nullcontext()) if has_taps(lm) else contextlib.nullcontext()
    with forced:  # a capture served by taps registers no hook: time the hooks it would register
        before = hook_snapshot(lm.model)
        with capture(lm):
            added = hook_snapshot(lm.model) - before
    modules = dict(lm.model.named_modules())
    return [(modules[path], kind) for path, kind, _ in sorted(added)]


@contextlib.contextmanager
def bare_hooks(points: list[tuple[torch.nn.Module, str]], keep: bool) -> Iterator[None]:
    """Plain torch hooks on ``points``: doing nothing, or only keeping a reference to the module's tensor(s)
    (first input; first output and the attention pattern) — the floor for any hook-based capture."""
    kept: list[Any] = []

    def post(_module: torch.nn.Module, _args: Any, output: Any) -> None:
        if keep:
            kept.append(output)

    def pre(_module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if keep:
            kept.append(args[0] if args else kwargs.get("hidden_states"))

    handles = [
        module.register_forward_pre_hook(pre, with_kwargs=True) if kind == "forward_pre"
        else module.register_forward_hook(post)
        for module, kind in points
    ]  # fmt: skip
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def has_taps(lm: LoadedModel) -> bool:
    """Our native Llama: its captures are recorded from its own forward code, not through torch hooks."""
    return hasattr(lm.model, "tap_recorders")


@contextlib.contextmanager
def hooks_forced(lm: LoadedModel, inner: AbstractContextManager[Any]) -> Iterator[Any]:
    """``inner`` entered while a do-nothing torch hook sits on ``lm_head``, so a capture is served by hooks
    rather than the native model's taps (the hook runs once per pass, after every site)."""
    handle = lm.model.lm_head.register_forward_hook(lambda _m, _a, _o: None)  # type: ignore[union-attr]
    try:
        with inner as value:
            yield value
    finally:
        handle.remove()


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
    parser.add_argument("--backend", default="auto", help="auto (default), native or transformers")
    parser.add_argument("--default-allocator", action="store_true", help="do not keep freed memory (glibc defaults)")
    parser.add_argument(
        "--floors", action="store_true",
        help="also time bare torch hooks on the same modules: doing nothing, and only keeping each tensor",
    )  # fmt: skip
    args = parser.parse_args()
    kept = False if args.default_allocator else keep_freed_memory()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.thread_time
    torch.set_num_threads(1)
    lm = bench_model(args.model, args.backend)
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
        "capture+read every site": lambda: capture(lm, every),
    }
    n_sites = {label: len(every) for label in configs} | {"capture resid_post": len(resid)}
    if has_taps(lm):
        configs["capture every site, hooked"] = lambda: hooks_forced(lm, capture(lm, every))
        configs["capture+read every site, hooked"] = lambda: hooks_forced(lm, capture(lm, every))
        n_sites["capture every site, hooked"] = n_sites["capture+read every site, hooked"] = len(every)
    reads = {label for label in configs if "+read" in label}  # timed: the pass, then every value made (.acts)
    if args.floors:
        points = capture_hook_points(lm)
        configs["bare hooks, no-op"] = lambda: bare_hooks(points, keep=False)
        configs["bare hooks, keep tensors"] = lambda: bare_hooks(points, keep=True)
        n_sites["bare hooks, no-op"] = n_sites["bare hooks, keep tensors"] = len(points)
    for _ in range(10):  # warm-up
        lm.logits(batch)
    print(f"model {lm.name} ({lm.backend} backend): {lm.n_layers} layers, d_model {lm.d_model}, batch {tuple(batch.shape)}, "
          f"median of {args.runs} runs, {'wall' if args.wall else 'thread CPU'} time, "
          f"{'freed memory kept' if kept else 'default allocator'}")  # fmt: skip
    for label, intervention in configs.items():
        bare: list[float] = []
        hooked: list[float] = []
        for _ in range(args.runs):
            bare.append(timed(lambda: lm.logits(batch)))
            with intervention() as cache:
                if label in reads:
                    hooked.append(timed(lambda: (lm.logits(batch), cache.acts)))
                else:
                    hooked.append(timed(lambda: lm.logits(batch)))
        b, h = statistics.median(bare), statistics.median(hooked)
        unit = "hooks" if label.startswith("bare") else "sites"
        print(f"  {label:<32} ({n_sites[label]:3d} {unit}): bare {b * 1e3:7.2f} ms  hooked {h * 1e3:7.2f} ms  "
              f"ratio {h / b:.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
