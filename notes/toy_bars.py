"""The three scientific bars of tests/impls (LAPE deactivation, AurA, refusal direction), per seed, on a toy folder.

Runs the same calls and the same assertions' quantities as
tests/impls/test_lape.py::test_toy_deactivation_hurts_the_own_language_more,
tests/impls/test_whispering_experts.py::test_toy_aura_lowers_toxic_completions_with_little_loss_elsewhere and
tests/impls/test_refusal_direction.py::test_ablation_removes_refusal_and_addition_induces_it, and prints a
per-seed line each, plus whether the bar holds at that seed.

    PYTHONPATH=. nice -n 19 python notes/toy_bars.py MODEL_DIR [lape,aura,refusal] [SEEDS]
"""

from __future__ import annotations

import json
import sys
import time

from mi_catalog.methods.runner import run_impl
from mi_catalog.models.loading import load_model


def lape_row(lm, seed: int) -> dict:  # type: ignore[no-untyped-def]
    out = run_impl("language-neurons", model=lm, seed=seed).output
    grid = out.tensors["drop_grid"]
    own_ci, other_ci = out.intervals["lape_own_drop"], out.intervals["lape_other_drop"]
    ok = bool(grid[0, 0] > 2 * grid[0, 1] and grid[1, 1] > 2 * grid[1, 0] and own_ci[0] > other_ci[1])
    return {
        "seed": seed,
        "n_selected": out.metrics["lape_n_selected"],
        "drop_en_en": round(float(grid[0, 0]), 4),
        "drop_en_zu": round(float(grid[0, 1]), 4),
        "drop_zu_zu": round(float(grid[1, 1]), 4),
        "drop_zu_en": round(float(grid[1, 0]), 4),
        "own_ci": [round(x, 4) for x in own_ci],
        "other_ci": [round(x, 4) for x in other_ci],
        "own_acc_drop": out.metrics["lape_own_accuracy_drop"],
        "other_acc_drop": out.metrics["lape_other_accuracy_drop"],
        "holds": ok,
    }


def aura_row(lm, seed: int) -> dict:  # type: ignore[no-untyped-def]
    m = run_impl("whispering-experts", model=lm, task="toxicity", seed=seed, ks=(), n_side=0).metrics
    ok = m["aura_rate_after"] <= m["aura_rate_before"] - 0.2 and (
        m["aura_other_accuracy_after"] >= m["aura_other_accuracy_before"] - 0.1
    )
    keys = ("aura_n_experts", "aura_top_auroc", "aura_top_auroc_test", "aura_rate_before", "aura_rate_after",
            "aura_other_accuracy_before", "aura_other_accuracy_after", "aura_det0_rate")  # fmt: skip
    return {"seed": seed, **{k.removeprefix("aura_"): round(m[k], 4) for k in keys}, "holds": bool(ok)}


def refusal_row(lm, seed: int) -> dict:  # type: ignore[no-untyped-def]
    m = run_impl("refusal-direction", model=lm, task="refusal", seed=seed, n_side=4).metrics
    ok = m["refusal_rate_before"] >= 0.9 and m["refusal_rate_ablated"] <= 0.1
    keys = ("refusal_rate_before", "refusal_rate_ablated", "direction_layer", "direction_position",
            "harmless_accuracy_ablated", "harmless_refusal_added")  # fmt: skip
    return {"seed": seed, **{k: m[k] for k in keys}, "holds": bool(ok)}


BARS = {"lape": lape_row, "aura": aura_row, "refusal": refusal_row}

if __name__ == "__main__":
    model = sys.argv[1]
    bars = sys.argv[2].split(",") if len(sys.argv) > 2 else list(BARS)
    seeds = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else list(range(10))
    lm = load_model(model)
    for bar in bars:
        start = time.perf_counter()
        rows = [BARS[bar](lm, seed) for seed in seeds]
        for row in rows:
            print(bar, json.dumps(row), flush=True)
        held = sum(r["holds"] for r in rows)
        print(f"{bar}: holds at {held} of {len(rows)} seeds ({time.perf_counter() - start:.0f} s)", flush=True)
