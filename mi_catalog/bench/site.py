"""The site's Benchmark pages, generated from a committed bench result (no torch, no model runs).

``benchmark/index.md`` — the leaderboard (methods × mechanisms, steerers × tasks, cost), the SVG heatmaps, every
ground-truth definition and the JSON contract; ``benchmark/<impl>.md`` — one implementation's rows (locate, steer
with its strength sweeps, cost). The result comes from ``mi_catalog/bench/results/toy.json``
(:func:`mi_catalog.bench.rows.committed_result`), written by ``mi-catalog bench --out DIR`` and copied there.
"""

from __future__ import annotations

import functools
from typing import Any

from mi_catalog.bench.render import cell, fmt, md_table, plots, render_markdown, rows_of

INDEX = "benchmark/index.md"
RESULT_FILE = "mi_catalog/bench/results/toy.json"


def impl_path(impl_id: str) -> str:
    return f"benchmark/{impl_id}.md"


def _front(title: str) -> str:
    import json

    return f"---\ntitle: {json.dumps(title)}\n---\n\n"  # a JSON string is a YAML string


HOW_TO_READ = """\
**Locate.** Each localizing method runs on a task (seed *s* draws the prompts and seeds the method) and its ranked
findings become a ranking of units — heads, neurons or residual-stream layers. Against the ground truth's *k* true
units: **P@k** is the share of the method's top *k* that is true; **rank** the mean rank of the true units (unlisted
units tie below the listed ones; the best possible is (k+1)/2); **AUROC** the area under the ROC curve over all units
of that kind; **faithful.** the share of the behaviour lost when the method's top *k* units are ablated together (the
answer margin for heads and neurons, refusals for refusal layers). `random` is a random ranking of the same units
(seeded like the runs) — the chance level; `ground-truth` is the true set itself. Truths defined by ablation favour
methods that locate by ablation: `ablation-importance` computes exactly such a truth and is not scored on those
mechanisms, and `head-ablation-safety` (KL after ablating a head's attention) is close to it; the by-construction
mechanisms (induction and previous-token heads) and the refusal-direction layers are independent of every method.

**Steer.** Each steerer reports its intended change (*before → after*) and its side effects. **success** is the
share of the possible change achieved in the intended direction: for a rate, the gain over the headroom (1 − before
when raising, before when lowering); for another metric, such as a speed-up, min(1, gain / max(|before|, 1)); a
change the wrong way counts 0. The intended direction is the one the run declares (`improve.goal`: "increase" or
"decrease"; `refusal-direction` means to lower refusal, a suppression to lower its target). **acc. loss** is the mean relative accuracy
loss over the other tasks the model can do; **KL** the KL divergence of next-token distributions on neutral prompts;
**combined** = success × (1 − acc. loss) × exp(−KL) — in the spirit of AxBench, which scores a steered model on the
concept, the instruction and fluency together: a change that breaks other tasks or shifts the distribution scores
less. The strength sweep behind each steerer is on its own page.

**Cost.** Wall time and CPU time per run, and forward/backward passes counted on the model (a forward = one call of
the first decoder block, whatever the batch; a backward = one backward pass reaching the logits).

Every number is the mean over seeds with a 95 % bootstrap interval of that mean (each seed also draws other prompts).
The same seeds give the same numbers, bit for bit, apart from times. `shortgpt` runs here with its timing off, so
its Improve metric is the compute-proportional speed-up (blocks before ÷ blocks kept), not a wall-clock one;
`mi-catalog run shortgpt` measures tokens per second.
"""

CONTRACT = """\
`mi-catalog bench --format json` prints a list of rows; every row has exactly these keys (fields are only ever added):

```json
{"track": "locate", "method": "attribution-patching", "family": "gradient-detection", "task": "induction",
 "metric": "auroc", "value": 0.97, "interval": [0.95, 0.99], "seconds": 1.2, "n_seeds": 10,
 "mechanism": "induction-heads", "x": null}
```

`track` is `truth`, `locate`, `steer` or `cost`; `method` an implementation id (`random`, `ground-truth` for the
references); `family` its survey vocabulary id (steer rows: its steering id); `value` the mean over `n_seeds` seeds
and `interval` its 95 % interval (null when undefined); `seconds` the mean wall time of one run; `mechanism` the
ground truth scored (locate and truth rows); `x` the strength of a sweep point (`sweep:<curve>:<series>` metrics).
Metrics — locate: `precision_at_k`, `true_rank`, `auroc`, `faithfulness`; steer: `success`, `accuracy_loss`,
`kl_neutral`, `combined`, `improve_before`, `improve_after`, `side_effect:<task>`, `sweep:…`; cost: `seconds`,
`cpu_seconds`, `forward_passes`, `backward_passes`; truth: `faithfulness`, `n_true`, `n_units`.
`--out DIR` writes `bench.json` (`{"meta", "mechanisms", "rows", "skipped"}`), `bench.md` and the SVG plots.
"""


def _mechanism_section(result: dict[str, Any]) -> str:
    lines = ["## Ground truth\n\n",
             "Computed by the bench itself on its own prompts (a draw no method run sees), by construction of the task "
             "or causally by ablation — never from what a scored method reported. A mechanism whose truth is "
             "degenerate or fails its causal check is listed but not scored.\n\n"]  # fmt: skip
    for m in result.get("mechanisms", []):
        status = "" if m.get("valid") else f" — **not scored**: {m.get('reason', '')}"
        units = ", ".join(f"`{u}`" for u in m.get("true_units", [])) or "none"
        lines.append(f"- **`{m['id']}`** ({m['task']}, {m['kind']} units){status}. {m['definition']} "
                     f"True units ({len(m.get('true_units', []))} of {m['n_units']}, {m['n_prompts']} prompts): "
                     f"{units}; ablating them together loses {fmt(m.get('faithfulness'))} of the "
                     f"{'refusals' if m.get('metric') == 'refusal_rate' else 'answer margin'}.\n")  # fmt: skip
    return "".join(lines) + "\n"


def _provenance(result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    quick = meta.get("quick")
    text = (f"Generated from the committed result `{RESULT_FILE}` — model **{meta.get('model', '?')}**, produced by "
            f"`{meta.get('command', 'mi-catalog bench')}` (up to {meta.get('seeds', '?')} seeds, "
            f"{meta.get('seconds', '?')} s, torch {meta.get('torch', '?')}, {meta.get('threads', '?')} thread(s)). "
            "Re-measure with `mi-catalog bench --out DIR`.\n\n")  # fmt: skip
    if quick:
        text += ("!!! warning \"A --quick result\"\n    This page shows a `--quick` run: a subset of methods, tasks and "
                 "mechanisms with 2 seeds, so intervals are wide. The full bench (`mi-catalog bench`) covers every "
                 "method × mechanism with up to 10 seeds.\n\n")  # fmt: skip
    if result.get("skipped"):
        failed = "; ".join(f"`{s['method']}` on {s['task']} ({s['reason']})" for s in result["skipped"])
        text += f"Runs that failed (reported, not scored): {failed}.\n\n"
    return text


def index_page(result: dict[str, Any] | None) -> str:
    head = _front("Benchmark") + "# Benchmark\n\n"
    if result is None:
        return head + f"No bench result is committed yet (`{RESULT_FILE}`). Run `mi-catalog bench --out DIR`.\n"
    parts = [head,
             "Which localizing methods find the units that really implement a behaviour, and which steerers change "
             "a behaviour at the least cost elsewhere — on the toy model, where the truth is known.\n\n",
             _provenance(result), "## How to read it\n\n", HOW_TO_READ, "\n"]  # fmt: skip
    figures = plots(result)
    if figures:
        parts.append("## At a glance\n\n")
        for name in figures:
            parts.append(f"![{name.removesuffix('.svg')}]({name})\n\n")
    parts.append("## Leaderboard\n\n")
    parts.append(render_markdown(result) + "\n")
    parts.append(_mechanism_section(result))
    impls = impl_ids(result)
    if impls:
        parts.append("## Per implementation\n\n")
        parts.extend(f"- [`{i}`]({i}.md)\n" for i in impls)
        parts.append("\n")
    parts.append("## The JSON contract\n\n" + CONTRACT)
    return "".join(parts)


def _sweeps(result: dict[str, Any], impl_id: str) -> str:
    """One table per (task, curve): strengths down, the curve's series across."""
    rows = [r for r in rows_of(result, "steer", impl_id) if r["metric"].startswith("sweep:")]
    if not rows:
        return ""
    out = ["### Strength sweeps\n\n"]
    for task, curve in sorted({(r["task"], r["metric"].split(":", 2)[1]) for r in rows}):
        mine = [r for r in rows if r["task"] == task and r["metric"].split(":", 2)[1] == curve]
        series = sorted({r["metric"].split(":", 2)[2] for r in mine})
        by = {(r["metric"].split(":", 2)[2], r["x"]): r for r in mine}
        xs = sorted({r["x"] for r in mine})
        out.append(f"`{curve}` on {task}:\n\n")
        out.append(
            md_table(["strength", *series], [[fmt(x), *(cell(by.get((name, x))) for name in series)] for x in xs])
        )
        out.append("\n")
    return "".join(out)


def impl_page(result: dict[str, Any], impl_id: str) -> str:
    meta = result.get("meta", {})
    body = [_front(f"Benchmark: {impl_id}"), f"# Benchmark: `{impl_id}`\n\n",
            f"Rows of the committed bench result on **{meta.get('model', '?')}** for `mi-catalog run {impl_id}` "
            f"(`{meta.get('command', 'mi-catalog bench')}`). How to read them: [Benchmark](index.md).\n\n",
            render_markdown(result, impl_id), "\n", _sweeps(result, impl_id)]  # fmt: skip
    side = [r for r in rows_of(result, "steer", impl_id) if r["metric"].startswith("side_effect:")]
    if side:
        body.append("### Side effects (accuracy after − before, per other task)\n\n")
        body.append(md_table(["task", "other task", "change"],
                             [[r["task"], r["metric"].split(":", 1)[1], cell(r)] for r in side]))  # fmt: skip
    return "".join(body)


def impl_ids(result: dict[str, Any]) -> list[str]:
    return sorted({r["method"] for r in result["rows"]} - {"random", "ground-truth"})


@functools.lru_cache(maxsize=1)
def benchmarked_impls() -> frozenset[str]:
    """Implementations with rows in the committed result (read once per process)."""
    from mi_catalog.bench.rows import committed_result

    result = committed_result("toy")
    return frozenset(impl_ids(result)) if result is not None else frozenset()


def bench_pages(result: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(path under docs/, text) for the index, one page per implementation, and the SVG plots."""
    pages = [(INDEX, index_page(result))]
    if result is None:
        return pages
    for impl_id in impl_ids(result):
        pages.append((impl_path(impl_id), impl_page(result, impl_id)))
    pages.extend((f"benchmark/{name}", svg) for name, svg in plots(result).items())
    return pages
