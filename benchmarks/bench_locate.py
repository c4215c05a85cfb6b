"""The whole locate suite on the toy: every localizing implementation at its defaults (prints figures).

Target (issue 7): the whole suite ≤ 60 s on 2 cores.

    python benchmarks/bench_locate.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from mi_catalog.impl_info import discover_impls
from mi_catalog.methods.runner import run_impl
from mi_catalog.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model("toy")
    locators = list(discover_impls().values())  # every implementation locates (some also steer)
    total = 0.0
    for info in locators:
        start = time.perf_counter()
        result = run_impl(info.id, model=lm)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{info.id:<28} task {result.task:<10} {seconds:6.2f} s")
    print(f"{len(locators)} locators on the toy: {total:.1f} s in all (target ≤ 60 s); threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
