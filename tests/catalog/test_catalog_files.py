"""The shipped catalog: every file valid, every upstream row represented, the known upstream errors fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO, UPSTREAM

from mi_catalog.importer import parse_awesome
from mi_catalog.load import load_catalog, load_entry
from mi_catalog.paths import catalog_files
from mi_catalog.schema import Entry
from mi_catalog.validate import validate_catalog

CATALOG = REPO / "catalog"
FILES = catalog_files(CATALOG)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_file_is_valid(path: Path) -> None:
    entry = load_entry(path)
    assert entry.id == path.stem


def test_whole_catalog_validates() -> None:
    # Warnings (e.g. title casing to confirm against the paper) never make the catalog invalid.
    assert [str(p) for p in validate_catalog(CATALOG) if p.severity == "error"] == []


@pytest.fixture(scope="module")
def entries() -> dict[str, Entry]:
    return {e.id: e for e in load_catalog(CATALOG).entries}


def test_every_upstream_row_is_an_entry(entries: dict[str, Entry]) -> None:
    rows = parse_awesome(UPSTREAM.read_text(encoding="utf-8"))
    assert len(rows) == 214
    recorded = {(r.section, r.title, r.link) for e in entries.values() for r in e.provenance.upstream_rows}
    missing = [r.cells.title for r in rows if (r.section, r.cells.title, r.cells.link) not in recorded]
    assert missing == []
    from_upstream = [e for e in entries.values() if e.provenance.source == "awesome-actionable-mi-survey"]
    assert len(from_upstream) == 211  # 214 rows, three papers listed twice


def _by_title(entries: dict[str, Entry], start: str) -> list[Entry]:
    return [e for e in entries.values() if any(r.title.startswith(start) for r in e.provenance.upstream_rows)]


def test_papers_listed_twice_are_one_entry_with_every_tag(entries: dict[str, Entry]) -> None:
    (bbt,) = _by_title(entries, "Breaking Bad Tokens")
    assert bbt.tags.applications == ["safety", "knowledge"]
    (multi,) = _by_title(entries, "How do Large Language Models Handle Multilingualism")
    assert set(multi.tags.methods) == {"magnitude-analysis", "causal-attribution"}
    assert set(multi.tags.steering) == {"amplitude-manipulation", "targeted-optimization"}
    assert set(multi.tags.applications) == {"multilingual", "efficient-training"}
    (jl,) = _by_title(entries, "Joint Localization and Activation Editing")
    # The merge kept every upstream tag; a later review may add or drop one, but must say why.
    assert {"targeted-optimization", "vector-arithmetic"} <= set(jl.tags.steering) or _reviewed_with_reason(jl)


def test_same_title_different_papers_stay_apart(entries: dict[str, Entry]) -> None:
    secure = _by_title(entries, "Towards Secure Tuning")
    assert len(secure) == 2
    assert {e.links.arxiv for e in secure} == {"2410.04524", "2507.18043"}


def test_upstream_typos_are_fixed_and_recorded(entries: dict[str, Entry]) -> None:
    (tokenskip,) = _by_title(entries, "TokenSkip")
    assert tokenskip.tags.methods == ["magnitude-analysis"] and any("Magitude" in n for n in tokenskip.notes)
    (landscape,) = _by_title(entries, "The developmental landscape of in-context learning")
    assert landscape.venue == "TMLR" and any("TLMR" in n for n in landscape.notes)
    (superweight,) = _by_title(entries, "The super weight")
    assert superweight.venue == "arXiv"


def test_hidden_dimensions_link_no_longer_points_at_the_refusal_paper(entries: dict[str, Entry]) -> None:
    (hidden,) = _by_title(entries, "The Hidden Dimensions of LLM Alignment")
    (refusal,) = _by_title(entries, "Refusal in Language Models Is Mediated")
    assert hidden.links.paper != refusal.links.paper
    assert any("link" in n.lower() for n in hidden.notes)


def _reviewed_with_reason(e: Entry) -> bool:
    return e.review.tags == "reviewed" and bool(e.review.tags_note)


def test_mha_and_ffn_means_both_and_circuit_when_discovered(entries: dict[str, Entry]) -> None:
    """The importer's rule holds on every entry whose tags are still the upstream ones (reviewed tags may
    differ, with a one-line reason)."""
    for e in entries.values():
        if _reviewed_with_reason(e):
            continue
        for row in e.provenance.upstream_rows:
            if row.object == "MHA & FFN":
                assert {"attention-head", "ffn"} <= set(e.tags.objects), e.id
                if row.method == "Circuit Discovery":
                    assert "circuit" in e.tags.objects, e.id
