"""A small fixture catalog and the reference query semantics for the site tests.

The entries cover every facet value at least once, several venues and years,
authors and summaries for free text, and one hostile title.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mi_catalog.load import dump_entry_yaml
from mi_catalog.schema import Entry

HOSTILE_TITLE = "<script>alert(1)</script> & <b>x</b>"
HOSTILE_SUMMARY = 'Refusal <img src=x onerror="alert(2)"> [link](javascript:alert(3)) *not bold* `code`'


def _entry(
    id: str,
    title: str,
    year: int,
    venue: str,
    objects: Sequence[str],
    methods: Sequence[str],
    steering: Sequence[str],
    applications: Sequence[str],
    **extra: object,
) -> Entry:
    data = {
        "id": id,
        "title": title,
        "year": year,
        "venue": venue,
        "links": {"paper": f"https://example.org/{id}"},
        "tags": {"objects": list(objects), "methods": list(methods), "steering": list(steering),
                 "applications": list(applications)},
        "provenance": {"source": "awesome-actionable-mi-survey", "sections": list(applications[:1])},
        **extra,
    }
    return Entry.model_validate(data)


def fixture_entries() -> list[Entry]:
    return [
        _entry("hostile-entry", HOSTILE_TITLE, 2024, "arXiv", ["attention-head"], ["probing"],
               ["vector-arithmetic"], ["safety"], summary=HOSTILE_SUMMARY, authors=["Mallory <m@x>", "Eve & Co"],
               notes=["Title kept verbatim: <i>markup</i> is data."]),
        _entry("refusal-direction", "Refusal in Language Models Is Mediated by a Single Direction", 2024, "NeurIPS",
               ["residual-stream"], ["causal-attribution", "probing"], ["vector-arithmetic"], ["safety"],
               authors=["Andy Arditi", "Neel Nanda"], summary="Ablating one direction removes refusal.",
               links={"paper": "https://example.org/refusal", "arxiv": "2406.11717",
                      "code": "https://github.com/example/refusal"}),
        _entry("heads-of-truth", "Inference-Time Intervention: Eliciting Truthful Answers", 2023, "NeurIPS",
               ["attention-head"], ["probing"], ["vector-arithmetic"], ["safety"],
               authors=["Kenneth Li"], summary="Probe heads for truthfulness, then shift them."),
        _entry("rome-like", "Locating and Editing Factual Associations in GPT", 2022, "NeurIPS",
               ["ffn"], ["causal-attribution"], ["targeted-optimization"], ["knowledge"],
               authors=["Kevin Meng", "David Bau"], summary="Causal tracing finds mid-layer MLPs; ROME edits them."),
        _entry("neuron-lang", "Language-Specific Neurons: The Key to Multilingual Capabilities", 2024, "ACL",
               ["neuron"], ["magnitude-analysis"], ["amplitude-manipulation"], ["multilingual"],
               summary="Deactivating language-specific neurons changes the output language."),
        _entry("sae-steer", "Steering with Sparse Autoencoder Features for Safer Outputs", 2025, "ICLR",
               ["sae-feature"], ["magnitude-analysis"], ["amplitude-manipulation"], ["safety", "persona"]),
        _entry("bias-heads", "Mitigating Position Bias via Attention Head Scaling", 2025, "Findings of ACL",
               ["attention-head"], ["gradient-detection"], ["amplitude-manipulation"], ["fairness"]),
        _entry("circuit-math", "Arithmetic Circuits in Transformers: Fine-Tuning the U.S. Way", 2024, "EMNLP",
               ["circuit", "attention-head", "ffn"], ["circuit-discovery"], ["targeted-optimization"], ["reasoning"],
               summary="Circuit discovery, then fine-tuning only the circuit's heads."),
        _entry("lens-early-exit", "Early Exit with the Logit Lens", 2023, "Workshop",
               ["residual-stream"], ["vocab-projection"], ["amplitude-manipulation"], ["efficient-inference"],
               venue_detail="BlackboxNLP"),
        _entry("token-prune", "Token Pruning by Attention Magnitude", 2025, "arXiv",
               ["token-embedding"], ["magnitude-analysis"], ["amplitude-manipulation"], ["efficient-inference"]),
        _entry("grokking-circuits", "Grokking as Circuit Efficiency", 2023, "TMLR",
               ["circuit"], ["circuit-discovery"], [], ["efficient-training"]),
        _entry("cot-vectors", "Chain-of-Thought Steering Vectors (CoT)", 2025, "Blog",
               ["residual-stream"], ["probing"], ["vector-arithmetic"], ["reasoning", "persona"],
               authors=["Ada Lovelace"]),
    ]


def write_catalog(folder: Path, entries: Sequence[Entry]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (folder / f"{e.id}.yaml").write_text(dump_entry_yaml(e), encoding="utf-8")
    return folder


# --- the query rules, in Python (the reference the explore page must agree with) ---------

def _resolve(name: str, value: str) -> set[str]:
    from mi_catalog.facets import FACETS_BY_NAME

    return set(FACETS_BY_NAME[name].resolve(value))


def _values(entry: Entry, name: str) -> set[str]:
    from mi_catalog.facets import FACETS_BY_NAME

    return set(FACETS_BY_NAME[name].values_of(entry))


def reference_matches(entries: Sequence[Entry], params: Sequence[tuple[str, str]]) -> list[Entry]:
    """The entries matching URL-style params (("object", "head"), ("q", "refusal"), ...), evaluated with
    :func:`mi_catalog.textquery.matches` on the analyzed fields (the rule the page ports), not with Whoosh."""
    from mi_catalog.index_build import text_fields
    from mi_catalog.query import parse_text
    from mi_catalog.site.text import analyzed
    from mi_catalog.textquery import matches

    wanted: dict[str, set[str]] = {}
    texts: list[str] = []
    for name, value in params:
        if name == "q":
            texts.append(value)
        else:
            try:
                wanted.setdefault(name, set()).update(_resolve(name, value))
            except ValueError:
                wanted.setdefault(name, set())  # unknown: the page ignores it (with a warning)
    wanted = {k: v for k, v in wanted.items() if v}
    tree = parse_text(" ".join(texts)) if texts else None
    out = []
    for e in entries:
        if not all(_values(e, name) & ids for name, ids in wanted.items()):
            continue
        if tree is None or matches(tree, {f: analyzed(t) for f, t in text_fields(e).items()}):
            out.append(e)
    return out


def reference_total(entries: Sequence[Entry], params: Sequence[tuple[str, str]]) -> int:
    return len(reference_matches(entries, params))


def facet_counts(matches: Sequence[Entry], name: str) -> dict[str, int]:
    """For each value of a facet: how many of ``matches`` carry it."""
    counts: dict[str, int] = {}
    for e in matches:
        for v in _values(e, name):
            counts[v] = counts.get(v, 0) + 1
    return counts


def cli_total(args: Sequence[str], catalog: Path) -> int:
    """`mi-catalog query ARGS --format json` → its ``total`` (the CLI is the source of truth once it exists)."""
    done = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "query", "--catalog", str(catalog), *args, "--format", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return int(json.loads(done.stdout)["total"])


def cli_query_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "mi_catalog", "query", "--help"], capture_output=True, timeout=60)
    return done.returncode == 0


def params_to_cli_args(params: Sequence[tuple[str, str]]) -> list[str]:
    args: list[str] = []
    for name, value in params:
        args += [value] if name == "q" else [f"--{name}", value]
    return args


def expected_total(entries: Sequence[Entry], catalog: Path, params: Sequence[tuple[str, str]], use_cli: bool) -> int:
    # Switch to the CLI alone (drop the reference) once `mi-catalog query` is final: one line.
    return cli_total(params_to_cli_args(params), catalog) if use_cli else reference_total(entries, params)
