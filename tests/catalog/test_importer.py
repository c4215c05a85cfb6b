"""`import-awesome`: parse, normalise, merge, idempotent, never overwrites a person's edits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import UPSTREAM

from mi_catalog.identity import canonical_link
from mi_catalog.importer import import_awesome, parse_awesome, slugify
from mi_catalog.load import load_catalog, load_entry

HEADER = "| Paper | Object | Localizing Method | Steering Method | Venue | Year | Link |\n| :--- | :--- | :--- | :--- | :---: | :---: | :---: |\n"
SYNTHETIC = (
    "#### Safety and Reliability\n"
    + HEADER
    + "| **Alpha: A Paper** | MHA & FFN | Circuit Discovery | - | Arxiv | 2024 | [Link](https://www.arxiv.org/pdf/2401.00001v2) |\n"
    + "| **Beta Paper on Heads** | MHA | Magitude Analysis | Amplitude Manipulation | TLMR | 2023 | [Link](https://openreview.net/pdf?id=abc) |\n"
    + "| **Same Title** | Neuron | Probing | - | ICLR | 2024 | [Link](https://arxiv.org/abs/2402.00001) |\n"
    + "#### Knowledge Management\n"
    + HEADER
    + "| **Alpha: A Paper** | FFN | Causal Attribution | Targeted Optimization | ArXiv | 2024 | [Link](https://arxiv.org/abs/2401.00001) |\n"
    + "| **Same Title** | FFN | Probing | - | ICLR | 2025 | [Link](https://arxiv.org/abs/2502.00002) |\n"
    + "| **Gamma** | FFN | Causal Attribution | - | ACL | 2024 | [Link](https://aclanthology.org/2024.findings-acl.7/) |\n"
    + "| **Delta: escaped** | FFN | Causal Attribution | - | NeurIPS | 2023 | [Link](http://papers.nips.cc/paper\\_files/x) |\n"
)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    path = tmp_path / "list.md"
    path.write_text(SYNTHETIC, encoding="utf-8")
    return path


def test_rows_are_normalised_merged_and_kept_apart(synthetic: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    report = import_awesome(synthetic, catalog)
    assert report.rows == 7 and len(report.added) == 6
    entries = {e.id: e for e in load_catalog(catalog).entries}
    alpha = entries["alpha"]
    # one paper listed under two sections keeps every tag it had
    assert alpha.tags.objects == ["attention-head", "ffn", "circuit"]
    assert alpha.tags.methods == ["circuit-discovery", "causal-attribution"]
    assert alpha.tags.steering == ["targeted-optimization"]
    assert alpha.tags.applications == ["safety", "knowledge"]
    assert alpha.links.paper == "https://arxiv.org/abs/2401.00001" and alpha.links.arxiv == "2401.00001"
    assert len(alpha.provenance.upstream_rows) == 2 and alpha.venue == "arXiv"
    beta = entries["beta-paper-on-heads"]
    assert beta.tags.methods == ["magnitude-analysis"] and beta.venue == "TMLR"
    assert any("typo" in n for n in beta.notes) and any("'TLMR'" in n for n in beta.notes)
    assert beta.links.paper == "https://openreview.net/forum?id=abc"
    # same title, different arXiv ids: two papers, both flagged for a curator
    same = [e for e in entries.values() if e.title == "Same Title"]
    assert len(same) == 2 and all(any("same title" in n for n in e.notes) for e in same)
    assert entries["gamma"].venue == "Findings of ACL"
    assert entries["delta"].links.paper == "https://papers.nips.cc/paper_files/x"


def test_second_run_changes_nothing(synthetic: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    import_awesome(synthetic, catalog)
    before = {p.name: p.read_bytes() for p in catalog.iterdir()}
    report = import_awesome(synthetic, catalog)
    assert report.added == [] and len(report.skipped) == 6
    assert {p.name: p.read_bytes() for p in catalog.iterdir()} == before


def test_a_persons_edits_survive_reimport(synthetic: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    import_awesome(synthetic, catalog)
    path = catalog / "gamma.yaml"
    data = yaml.safe_load(path.read_text())
    data["title"] = "Gamma, Corrected Title"
    data["links"]["paper"] = "https://example.org/the-right-link"  # a curator fixes the link, not the provenance
    edited = yaml.safe_dump(data, sort_keys=False)
    path.write_text(edited)
    report = import_awesome(synthetic, catalog)
    assert report.added == []
    assert ("Gamma", "already in the catalog as gamma") in report.skipped
    assert path.read_text() == edited


def test_broken_existing_file_is_reported_not_overwritten(synthetic: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "alpha.yaml").write_text("id: [broken\n")
    report = import_awesome(synthetic, catalog)
    assert (catalog / "alpha.yaml").read_text() == "id: [broken\n"
    assert any(title == "alpha.yaml" for title, _ in report.skipped)
    assert "alpha-2024" in {i for i, _ in report.added}  # the id stays reserved


def test_upstream_list_becomes_211_entries_idempotently(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    first = import_awesome(UPSTREAM, catalog)
    assert first.rows == 214 and len(first.added) == 211
    second = import_awesome(UPSTREAM, catalog)
    assert second.added == [] and len(second.skipped) == 211


def test_helpers() -> None:
    assert slugify("DoLa: Decoding by Contrasting Layers") == "dola"
    assert (
        slugify("Refusal in Language Models Is Mediated by a Single Direction")
        == "refusal-in-language-models-is-mediated"
    )
    assert canonical_link("https://doi.org/10.48550/arXiv.2507.12638") == "https://arxiv.org/abs/2507.12638"
    assert len(parse_awesome(SYNTHETIC)) == 7


def test_cli_import_reports_added_and_skipped(synthetic: Path, tmp_path: Path, cli) -> None:
    catalog = tmp_path / "catalog"
    first = cli("import-awesome", str(synthetic), "--catalog", str(catalog))
    assert first.returncode == 0, first.stderr
    assert "added: alpha" in first.stdout and "7 rows → 6 added, 0 skipped" in first.stdout
    second = cli("import-awesome", str(synthetic), "--catalog", str(catalog))
    assert "7 rows → 0 added, 6 skipped" in second.stdout and "already in the catalog as alpha" in second.stdout
    missing = cli("import-awesome", str(tmp_path / "nope.md"), "--catalog", str(catalog))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert load_entry(catalog / "alpha.yaml").id == "alpha"
