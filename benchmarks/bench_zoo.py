"""Model-zoo figures (printed, not asserted): `python benchmarks/bench_zoo.py [--fetch]`.

1. Load time of the cached SmolLM2-135M folder in a fresh process (median of 3; target ≤ 3 s), with both
   backends: ``load_model(folder)`` — our own Llama (``mi_catalog.models.native``, the default for this
   folder) — and ``load_model(folder, backend="transformers")`` (``AutoModelForCausalLM.from_pretrained`` with
   eager attention + ``AutoTokenizer``). ``import torch`` is timed apart; the load figure starts after it.
2. The whole ``mi-catalog run logit-lens --model smollm2-135m --quiet`` process, wall time (median of 3;
   target ≤ 5 s).
3. Greedy next token after "The capital of France is" (must be " Paris") with each backend.
4. With ``--fetch``: a full fetch + convert into a temporary cache (download, sha256, dequantise, save;
   target ≤ 3 minutes once), then a second, cached call (target: instant).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mi_catalog.models import zoo  # noqa: E402

NAME = "smollm2-135m"
ENTRY_POINT = Path(sys.executable).parent / "mi-catalog"

LOAD = """
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from mi_catalog.models import load_model
lm = load_model({folder!r}, backend={backend!r})
t2 = time.perf_counter()
answer = lm.generate(["The capital of France is"], max_new_tokens=1)[0]
print(t1 - t0, t2 - t1, lm.backend, "transformers" in sys.modules, repr(answer))
"""


def bench_load(folder: Path, runs: int = 3) -> None:
    for backend in ("auto", "transformers"):
        imports, loads, answer, used, imported = [], [], "", "", ""
        for _ in range(runs):
            code = LOAD.format(folder=str(folder), backend=backend)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            t_import, t_load, used, imported, answer = out.stdout.split(maxsplit=4)
            imports.append(float(t_import))
            loads.append(float(t_load))
        print(
            f"load {NAME} with backend={backend} ({used}; transformers imported: {imported}): median "
            f"{statistics.median(loads):.2f} s over {runs} runs (min {min(loads):.2f}, max {max(loads):.2f}; "
            f"target ≤ 3 s) after import torch (median {statistics.median(imports):.2f} s); "
            f"greedy next token after 'The capital of France is': {answer.strip()}"
        )


def bench_logit_lens(runs: int = 3) -> None:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(ENTRY_POINT), "run", "logit-lens", "--model", NAME, "--quiet"], capture_output=True,
                       text=True, check=True)  # fmt: skip
        walls.append(time.perf_counter() - started)
    print(
        f"`mi-catalog run logit-lens --model {NAME}` whole process: median {statistics.median(walls):.2f} s over "
        f"{runs} runs (min {min(walls):.2f}, max {max(walls):.2f}; target ≤ 5 s)"
    )


def bench_fetch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MI_CATALOG_CACHE": tmp}
        started = time.perf_counter()
        done = subprocess.run([str(ENTRY_POINT), "models", "get", NAME], env=env, capture_output=True, text=True)
        first = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        started = time.perf_counter()
        subprocess.run([str(ENTRY_POINT), "models", "get", NAME], env=env, capture_output=True, text=True, check=True)
        second = time.perf_counter() - started
    print(f"fetch + verify + convert (fresh cache): {first:.1f} s (target ≤ 180 s)")
    print(f"second `models get` (cached): {second:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch", action="store_true", help="also time a full fetch into a temporary cache")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    folder = zoo.local_path(NAME)
    if folder is None:
        print(f"{NAME} is not fetched: run `mi-catalog models get {NAME}`; skipping the load figures")
    else:
        bench_load(folder)
        bench_logit_lens()
    if args.fetch:
        bench_fetch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
