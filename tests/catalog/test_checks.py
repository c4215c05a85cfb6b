"""The content checks of `mi-catalog validate`: title casing (warning), duplicate summaries, arXiv id vs link.

Each check is shown to fire on a hostile fixture and to stay silent on the clean case next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import write_entry

from mi_catalog.checks import TITLE_TERMS, arxiv_link_id, miscased_terms
from mi_catalog.load import Problem
from mi_catalog.validate import validate_catalog


def content(catalog_dir: Path) -> list[Problem]:
    """Problems from the content checks only (not impl links, which the fixture catalog exercises elsewhere)."""
    fields = {"title", "summary", "links.arxiv"}
    return [p for p in validate_catalog(catalog_dir) if p.field in fields]


def by_file(problems: list[Problem]) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in problems:
        out.setdefault(p.file, []).append(p)
    return out


# ---------------------------------------------------------------- title casing


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Efficient kv cache compression through retrieval heads", [("kv", "KV")]),
        ("Steering Llms with sae features", [("Llms", "LLMs"), ("sae", "SAE")]),
        ("Pyramidkv: Dynamic KV Cache Compression", [("Pyramidkv", "PyramidKV")]),
        ("Editing with Rome and memit", [("Rome", "ROME"), ("memit", "MEMIT")]),
        ("LLM-based kv-cache eviction", [("kv", "KV")]),
    ],
)
def test_miscased_terms_found(title: str, expected: list[tuple[str, str]]) -> None:
    assert miscased_terms(title) == expected


@pytest.mark.parametrize(
    "title",
    [
        "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads",
        "Refusal in LLMs Is Mediated by a Single Direction",
        "SnapKV: LLM Knows What You are Looking for Before Generation",
        "Locating and Editing Factual Associations in GPT",
        "RotateKV and ZipCache compress the cache",  # names inside other words are not split
        "Mechanistic interpretability of skills",  # ordinary words that merely contain a term
    ],
)
def test_correct_titles_pass(title: str) -> None:
    assert miscased_terms(title) == []


def test_terms_are_unique_ignoring_case() -> None:
    keys = [t.casefold() for t in TITLE_TERMS]
    assert len(keys) == len(set(keys))


def test_title_casing_is_a_warning_in_validate(tmp_path: Path) -> None:
    write_entry(tmp_path, "bad-case", title="RazorAttention: Efficient kv cache compression")
    write_entry(tmp_path, "good-case", title="ZipCache: Accurate and Efficient KV Cache Quantization")
    found = by_file(content(tmp_path))
    assert set(found) == {"bad-case.yaml"}
    [p] = found["bad-case.yaml"]
    assert p.severity == "warning" and p.field == "title"
    assert "'kv' (→ 'KV')" in p.message
    assert "warning: " in str(p)


# ---------------------------------------------------------------- duplicate summaries


def test_identical_summary_is_an_error(tmp_path: Path) -> None:
    text = "Finds a refusal direction and ablates it."
    write_entry(tmp_path, "first", summary=text)
    write_entry(tmp_path, "second", summary="  finds a REFUSAL direction\nand ablates it. ")  # same up to case/space
    write_entry(tmp_path, "third", summary="Finds a refusal direction and adds it.")
    write_entry(tmp_path, "no-summary-a")
    write_entry(tmp_path, "no-summary-b")  # two missing summaries are not duplicates
    found = by_file(content(tmp_path))
    assert set(found) == {"second.yaml"}
    [p] = found["second.yaml"]
    assert p.severity == "error" and p.field == "summary"
    assert "same summary as first.yaml" in p.message


# ---------------------------------------------------------------- arXiv id vs link


@pytest.mark.parametrize(
    ("url", "arxiv_id"),
    [
        ("https://arxiv.org/abs/2406.11717", "2406.11717"),
        ("https://arxiv.org/abs/2406.11717v3", "2406.11717"),
        ("http://www.arxiv.org/pdf/2406.11717v2.pdf", "2406.11717"),
        ("https://openreview.net/forum?id=abc", None),
        ("https://example.org/arxiv.org/abs/2406.11717", None),
    ],
)
def test_arxiv_link_id(url: str, arxiv_id: str | None) -> None:
    assert arxiv_link_id(url) == arxiv_id


def test_arxiv_id_must_match_an_arxiv_link(tmp_path: Path) -> None:
    write_entry(tmp_path, "mismatch", links={"paper": "https://arxiv.org/abs/2406.11717", "arxiv": "2406.11718"})
    write_entry(tmp_path, "match", links={"paper": "https://arxiv.org/abs/2406.11719v2", "arxiv": "2406.11719"})
    write_entry(tmp_path, "missing-id", links={"paper": "https://arxiv.org/abs/2406.11720"})
    # a proceedings link with any arXiv id is fine: the two need not agree textually
    write_entry(tmp_path, "proceedings", links={"paper": "https://aclanthology.org/2024.x-1.1/", "arxiv": "2406.11721"})
    found = by_file(content(tmp_path))
    assert set(found) == {"mismatch.yaml", "missing-id.yaml"}
    [p] = found["mismatch.yaml"]
    assert p.severity == "error" and p.field == "links.arxiv"
    assert "2406.11718 does not match" in p.message
    [w] = found["missing-id.yaml"]
    assert w.severity == "warning" and "set links.arxiv: '2406.11720'" in w.hint


# ---------------------------------------------------------------- the CLI: warnings never fail


def test_cli_warnings_do_not_fail_and_are_reported(tmp_path: Path, cli) -> None:
    write_entry(tmp_path, "bad-case", title="Efficient kv cache compression")
    res = cli("validate", "--catalog", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "bad-case.yaml: title: warning: " in res.stdout
    assert "1 files checked: OK, 1 warning(s)" in res.stdout
    js = cli("validate", "--catalog", str(tmp_path), "--format", "json")
    assert js.returncode == 0
    report = json.loads(js.stdout)
    assert report["problems"] == []
    assert [(w["file"], w["severity"]) for w in report["warnings"]] == [("bad-case.yaml", "warning")]


def test_cli_errors_fail_with_warnings_alongside(tmp_path: Path, cli) -> None:
    write_entry(tmp_path, "bad-case", title="Efficient kv cache compression")
    write_entry(tmp_path, "mismatch", links={"paper": "https://arxiv.org/abs/2406.11717", "arxiv": "2406.11718"})
    res = cli("validate", "--catalog", str(tmp_path), "--format", "json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    entry_problems = [p for p in report["problems"] if p["file"].endswith(".yaml")]
    assert [(p["file"], p["severity"]) for p in entry_problems] == [("mismatch.yaml", "error")]
    assert [w["file"] for w in report["warnings"]] == ["bad-case.yaml"]
    text = cli("validate", "--catalog", str(tmp_path))
    assert text.returncode == 1
    assert "mismatch.yaml: links.arxiv: arXiv id 2406.11718 does not match" in text.stdout
    assert ", 1 warning(s)" in text.stderr
