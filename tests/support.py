"""Shared test helpers (importable as `support`: pytest puts tests/ on sys.path, see pyproject)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# A verbatim snapshot of the survey's list (MIT, see its LICENSE), so the tests need nothing outside the repo.
UPSTREAM = REPO / "tests" / "data" / "awesome-actionable-mi-survey" / "README.md"
# The installed console script, next to the interpreter running the tests.
ENTRY_POINT = Path(sys.executable).parent / "mi-catalog"

# The CLI's free-text query language, one case per construct: prefix, OR, fields, NOT, phrases, grouping,
# wildcards, precedence, hyphenated words, stop words. The Whoosh/reference-matcher parity test and the
# explore-page-vs-CLI browser test both run these (each adds a case of its own).
QUERY_LANGUAGE_CASES = [
    "refus*",
    "refusal OR sycophancy",
    "title:refusal",
    "refusal NOT direction",
    '"refusal direction"',
    '"direction of refusal"',
    "title:(refusal OR jailbreak) NOT summary:sparse",
    "NOT refusal",
    "steer* vector*",
    "ref?sal",
    "refusal OR sycophancy persona",
    "refusal AND direction OR sycophancy",
    "language-specific",
    'authors:"neel nanda"',
    "(knowledge OR factual) editing NOT title:survey",
    "the of",
]


def make_entry_data(entry_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid entry as plain data; override any top-level field."""
    data: dict[str, Any] = {
        "id": entry_id,
        "title": f"Paper {entry_id}",
        "year": 2024,
        "venue": "ICLR",
        "links": {"paper": f"https://example.org/{entry_id}"},
        "tags": {"objects": [], "methods": [], "steering": [], "applications": []},
        "impls": [],
        "provenance": {"source": "mi-catalog"},
    }
    data.update(overrides)
    return data


def write_entry(catalog_dir: Path, entry_id: str, **overrides: Any) -> Path:
    import yaml

    path = catalog_dir / f"{entry_id}.yaml"
    path.write_text(yaml.safe_dump(make_entry_data(entry_id, **overrides), sort_keys=False), encoding="utf-8")
    return path


def _tags(objects: list[str], methods: list[str], steering: list[str], applications: list[str]) -> dict[str, list[str]]:
    return {"objects": objects, "methods": methods, "steering": steering, "applications": applications}


# Six papers whose query answers are computed by hand in tests/catalog/test_query.py.
SMALL_CATALOG: dict[str, dict[str, Any]] = {
    "refusal-heads": {
        "title": "Refusal Heads Probe",
        "summary": "We probe attention heads for refusal.",
        "year": 2024,
        "venue": "ICLR",
        "tags": _tags(["attention-head"], ["probing"], ["vector-arithmetic"], ["safety"]),
    },
    "knowledge-circuits-heads": {
        "title": "Knowledge Circuits in Heads",
        "year": 2023,
        "venue": "NeurIPS",
        "impls": ["logit-lens"],
        "tags": _tags(["attention-head", "ffn"], ["causal-attribution"], ["amplitude-manipulation"], ["knowledge"]),
    },
    "persona-vectors-steering": {
        "title": "Persona Vectors Steering",
        "summary": "Steering persona without refusal side effects.",
        "year": 2025,
        "venue": "arXiv",
        "tags": _tags(["residual-stream"], ["probing"], ["vector-arithmetic"], ["persona"]),
    },
    "language-specific-neurons": {
        "title": "Language-Specific Neurons",
        "year": 2024,
        "venue": "Findings of ACL",
        "tags": _tags(["neuron"], ["magnitude-analysis"], ["amplitude-manipulation"], ["multilingual"]),
    },
    "locating-and-editing": {
        "title": "Locating and Editing Factual Associations",
        "authors": ["Kevin Meng", "David Bau"],
        "year": 2022,
        "venue": "NeurIPS",
        "tags": _tags(["ffn"], ["causal-attribution"], ["targeted-optimization"], ["knowledge"]),
    },
    "early-exit-lens": {
        "title": "Early Exit via the Logit Lens",
        "year": 2024,
        "venue": "ACL",
        "tags": _tags(["residual-stream"], ["vocab-projection"], [], ["efficient-inference"]),
    },
}


def strict_xfail_at(values: Any, reasons: dict[Any, str]) -> list[Any]:
    """Parametrize values where the listed ones are strict xfails with their reason (a per-seed miss, its numbers)."""
    return [pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=reasons[v])) if v in reasons else v
            for v in values]  # fmt: skip


def save_tiny_folder(folder: Path, family: str = "llama", seed: int = 0) -> Any:
    """A tiny random-init model of ``family`` saved as a local Hugging Face folder (safetensors + tokenizer), the
    way a user's ``--model PATH`` looks; returns the in-memory LoadedModel it was saved from."""
    from mi_catalog.models.tiny import tiny_model

    lm = tiny_model(family, seed=seed)
    lm.model.save_pretrained(str(folder), safe_serialization=True)
    lm.tokenizer.save_pretrained(str(folder))
    return lm
