"""Catalog performance figures (printed, not asserted): run `make bench-catalog`.

1. Cold `mi-catalog query --object head --method probe --format json` wall time divided by a cold
   `python -c "import whoosh.index, whoosh.qparser, whoosh.sorting"`, paired per run (target ≤ 1.25:
   Whoosh's own import is the floor of a Whoosh-backed CLI).
2. Warm facet-query latency through the Python API (target ≤ 80 ms), real catalog and 10k synthetic.
3. Index build time (target ≤ 30 s at 10k entries).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mi_catalog import Catalog, vocab  # noqa: E402
from mi_catalog.index_build import build_index  # noqa: E402

ENTRY_POINT = Path(sys.executable).parent / "mi-catalog"
WORDS = [
    "refusal",
    "steering",
    "probe",
    "head",
    "neuron",
    "circuit",
    "knowledge",
    "factual",
    "editing",
    "sparse",
    "feature",
    "layer",
    "residual",
]


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_ratio(runs: int = 15) -> None:
    """Paired in one run: each query is timed right after its floor, and the ratio is taken per pair.

    Twice: as this environment runs it, and with a bytecode cache for both sides (what an installed
    package has; with PYTHONDONTWRITEBYTECODE=1 an editable checkout recompiles its sources on every
    start while site-packages, Whoosh included, keeps its .pyc files).
    """
    query = [str(ENTRY_POINT), "query", "--object", "head", "--method", "probe", "--format", "json"]
    floor = [sys.executable, "-c", "import whoosh.index, whoosh.qparser, whoosh.sorting"]
    with tempfile.TemporaryDirectory() as pycache:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = pycache
        for label, env in (("as run", dict(os.environ)), ("bytecode cached", cached)):
            subprocess.run([str(ENTRY_POINT), "index"], check=True, stdout=subprocess.DEVNULL, env=env)
            subprocess.run(floor, check=True, env=env)  # warms the bytecode cache, if any
            qs, fs, ratios = [], [], []
            for _ in range(runs):
                q, f = median_wall(query, 1, env), median_wall(floor, 1, env)
                qs.append(q)
                fs.append(f)
                ratios.append(q / f)
            print(
                f"cold query / whoosh import  {statistics.median(qs) * 1000:6.1f} / {statistics.median(fs) * 1000:6.1f} ms"
                f"  ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) [{label}]  (target <= 1.25)"
            )


def warm_latency(catalog: Catalog, label: str, runs: int = 50) -> None:
    catalog.query(object=["head"])  # open the index and warm the term caches
    cases = [
        {"object": ["head"], "method": ["probe"]},
        {"application": ["alignment"], "steer": ["caa"]},
        {"object": ["neuron", "ffn"], "since": 2024},
        {"text": "refusal direction", "object": ["resid"]},
    ]
    times = []
    for i in range(runs):
        kwargs = dict(cases[i % len(cases)])
        text = kwargs.pop("text", None)
        start = time.perf_counter()
        catalog.query(text, limit=20, **kwargs)
        times.append(time.perf_counter() - start)
    print(
        f"warm facet query      {statistics.median(times) * 1000:7.1f} ms median, "
        f"{max(times) * 1000:.1f} ms max  [{label}]   (target <= 80 ms)"
    )


def synthetic_catalog(folder: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        tags = {f.field: rng.sample(list(f.ids), k=rng.choice((1, 1, 2))) for f in vocab.FACETS}
        data = {
            "id": f"paper-{i:05d}",
            "title": " ".join(rng.choices(WORDS, k=8)).capitalize() + f" {i}",
            "year": rng.randint(2018, 2026),
            "venue": rng.choice(["ICLR", "NeurIPS", "ICML", "ACL", "EMNLP", "arXiv"]),
            "authors": [f"Author {rng.randint(1, 2000)}" for _ in range(3)],
            "summary": " ".join(rng.choices(WORDS, k=30)),
            "links": {"paper": f"https://example.org/p/{i}"},
            "tags": tags,
            "impls": [],
            "provenance": {"source": "mi-catalog"},
        }
        (folder / f"paper-{i:05d}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def build_time(folder: Path, label: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        info = build_index(folder, Path(root))
        print(
            f"index build           {time.perf_counter() - start:7.2f} s  [{label}, {info.entries} entries]   (target <= 30 s at 10k)"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MI_CATALOG_CACHE"] = cache
        print(f"# catalog benchmarks ({os.cpu_count()} cores, python {sys.version.split()[0]})")
        cold_ratio()
        real = Catalog()
        build_time(real.path, "real catalog")
        warm_latency(real, "real catalog")
        with tempfile.TemporaryDirectory() as synth:
            folder = Path(synth)
            synthetic_catalog(folder, 10_000)
            build_time(folder, "synthetic")
            warm_latency(Catalog(folder), "synthetic 10k")


if __name__ == "__main__":
    main()
