"""Model-zoo figures (printed, not asserted): `python benchmarks/bench_zoo.py [--fetch]`.

1. Load time of the cached SmolLM2-135M folder with
   ``AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, attn_implementation="eager")``
   plus its tokenizer, in a fresh process (median of 3; target ≤ 3 s). Also the bare `import transformers`.
2. Greedy next token after "The capital of France is" (must be " Paris").
3. With ``--fetch``: a full fetch + convert into a temporary cache (download, sha256, dequantise, save;
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
import time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
transformers.utils.logging.disable_progress_bar()
t1 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained({folder!r}, use_safetensors=True, attn_implementation="eager")
tok = AutoTokenizer.from_pretrained({folder!r})
t2 = time.perf_counter()
ids = tok("The capital of France is", return_tensors="pt").input_ids
with torch.inference_mode():
    nxt = model(input_ids=ids).logits[0, -1].argmax()
print(t1 - t0, t2 - t1, repr(tok.decode([int(nxt)])))
"""


def bench_load(folder: Path, runs: int = 3) -> None:
    imports, loads, answer = [], [], ""
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", LOAD.format(folder=str(folder))], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        t_import, t_load, answer = out.stdout.split(maxsplit=2)
        imports.append(float(t_import))
        loads.append(float(t_load))
    print(f"import torch+transformers: median {statistics.median(imports):.2f} s")
    print(
        f"load {NAME} (weights + tokenizer, eager): median {statistics.median(loads):.2f} s over {runs} runs "
        f"(min {min(loads):.2f}, max {max(loads):.2f}; target ≤ 3 s)"
    )
    print(f"greedy next token after 'The capital of France is': {answer.strip()}")


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
    if args.fetch:
        bench_fetch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
