"""Site benchmarks: build time (real catalog, synthetic 5k catalog) and explore update time in Chromium.

Prints figures; not a test. Targets: real catalog build ≤ 5 s, 5k papers ≤ 60 s,
a facet change on the 5k explore page ≤ 100 ms.

    .venv/bin/python benchmarks/bench_site.py [--papers 5000] [--skip-browser]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mi_catalog import vocab
from mi_catalog.load import dump_entry_yaml
from mi_catalog.paths import default_catalog_dir
from mi_catalog.schema import Entry
from mi_catalog.site.build import BuildReport, build_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
WORDS = (
    "sparse", "attention", "head", "circuit", "steering", "vector", "refusal", "truthful", "neuron",
    "feature", "probe", "patching", "causal", "logit", "lens", "editing", "knowledge", "multilingual",
    "reasoning", "arithmetic", "bias", "persona", "safety", "efficient", "inference", "pruning", "layer",
    "residual", "stream", "representation", "direction", "intervention", "alignment", "language", "model",
    "transformer",
)


def synthetic_entry(rng: random.Random, n: int) -> Entry:
    def pick(facet: vocab.Facet, most: int) -> list[str]:
        return rng.sample(facet.ids, rng.randint(1, most))

    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + f" {n}"
    return Entry.model_validate({
        "id": f"synthetic-{n}",
        "title": title,
        "year": rng.randint(2019, 2026),
        "venue": rng.choice([v for v in vocab.VENUE_IDS if v != "Workshop"]),
        "authors": [f"Author {rng.randint(1, 2000)}" for _ in range(rng.randint(1, 6))],
        "summary": " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 40))) + ".",
        "links": {"paper": f"https://example.org/paper/{n}"},
        "tags": {"objects": pick(vocab.OBJECT, 2), "methods": pick(vocab.METHOD, 2),
                 "steering": pick(vocab.STEER, 1), "applications": pick(vocab.APPLICATION, 2)},
        "provenance": {"source": "mi-catalog"},
    })


def write_synthetic_catalog(folder: Path, papers: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(papers):
        entry = synthetic_entry(rng, n)
        (folder / f"{entry.id}.yaml").write_text(dump_entry_yaml(entry), encoding="utf-8")
    return folder


def timed_build(catalog: Path, work: Path) -> tuple[BuildReport, float]:
    started = time.perf_counter()
    report = build_site(catalog, out_dir=work / "out", project_dir=work / "project")
    return report, time.perf_counter() - started


def print_build(label: str, report: BuildReport, seconds: float, target: float) -> None:
    verdict = "ok" if seconds <= target else "OVER TARGET"
    print(f"{label}: {report.papers} papers, {report.pages} pages: {seconds:.1f} s "
          f"(load+generate {report.generate_seconds:.1f} s, mkdocs {report.mkdocs_seconds:.1f} s) "
          f"— target ≤ {target:.0f} s: {verdict}")


def explore_update_times(site: Path, rounds: int = 10) -> tuple[float, list[float]]:
    """Load time of the explore page and the page's own update timings for facet clicks."""
    from playwright.sync_api import sync_playwright

    from mi_catalog.site.serve import serve_in_thread

    server, base = serve_in_thread(site)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(base + "explore/")
            page.wait_for_selector("#mi-explore[data-ready='true']")
            load = time.perf_counter() - started
            timings = []
            boxes = ["object][data-value=attention-head", "method][data-value=probing", "year][data-value='2024'",
                     "application][data-value=alignment", "venue][data-value=ICLR"]
            for n in range(rounds):
                for box in boxes:
                    page.click(f"input[data-facet={box}]")
                    timings.append(float(page.get_attribute("#mi-explore", "data-update-ms") or "nan"))
                if n == 0:
                    page.fill("[data-testid=search-input]", "sparse attention")
                    timings.append(float(page.get_attribute("#mi-explore", "data-update-ms") or "nan"))
            browser.close()
        return load, timings
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=5000, help="size of the synthetic catalog")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        work = Path(tmp)
        report, seconds = timed_build(default_catalog_dir(), work / "real")
        print_build("real catalog", report, seconds, 5)

        started = time.perf_counter()
        catalog = write_synthetic_catalog(work / "synthetic-catalog", args.papers)
        print(f"(wrote {args.papers} synthetic YAML files in {time.perf_counter() - started:.1f} s)")
        report, seconds = timed_build(catalog, work / "synthetic")
        print_build("synthetic catalog", report, seconds, 60)
        data = report.out_dir / "assets" / "explore-data.json"
        print(f"explore data file: {data.stat().st_size / 1024:.0f} KiB for {report.papers} papers")

        if args.skip_browser or not CHROMIUM.exists():
            print("explore timing skipped" + ("" if args.skip_browser else f" ({CHROMIUM} not found)"))
            return 0
        load, timings = explore_update_times(report.out_dir)
        verdict = "ok" if max(timings) <= 100 else "OVER TARGET"
        print(f"explore page on {report.papers} papers: ready in {load * 1000:.0f} ms; facet/text update "
              f"median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms over {len(timings)} changes "
              f"— target ≤ 100 ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
