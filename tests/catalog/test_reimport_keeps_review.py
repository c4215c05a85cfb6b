"""A re-import of the upstream list never overwrites what a curator reviewed (tags, metadata, review record)."""

from __future__ import annotations

import shutil
from pathlib import Path

from support import REPO, UPSTREAM

from mi_catalog.fsutil import atomic_write_text
from mi_catalog.importer import import_awesome
from mi_catalog.load import dump_entry_yaml, load_catalog, load_entry
from mi_catalog.schema import Entry


def snapshot(catalog: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(catalog.glob("*.yaml"))}


def review(entry: Entry) -> Entry:
    """What a curator does: correct title/venue/link, add metadata, change the tags and record the review."""
    data = entry.model_dump(mode="json")
    data.update(
        title=entry.title.upper(),  # a casing fix: the importer must still recognise the paper
        venue="ICLR",
        authors=["A. Curator-Checked"],
        summary="Checked against the paper.",
        tags={"objects": ["sae-feature"], "methods": ["probing"], "steering": [], "applications": ["safety"]},
        review={
            "tags": "reviewed",
            "tags_note": "The paper trains SAEs; no neuron is located.",
            "metadata": "checked",
            "sources": ["https://example.org/proceedings"],
        },
    )
    data["links"] = {**data["links"], "paper": "https://example.org/proceedings", "code": "https://example.org/code"}
    return Entry.model_validate(data)


def test_reviewed_entries_survive_reimport_of_the_upstream_list(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    first = import_awesome(UPSTREAM, catalog)
    assert len(first.added) == 211
    reviewed_ids = [entry_id for entry_id, _ in first.added[::40]]  # a spread of entries from every section
    for entry_id in reviewed_ids:
        path = catalog / f"{entry_id}.yaml"
        atomic_write_text(path, dump_entry_yaml(review(load_entry(path))))
    before = snapshot(catalog)

    dry = import_awesome(UPSTREAM, catalog, dry_run=True)
    again = import_awesome(UPSTREAM, catalog)

    assert dry.added == [] and again.added == []
    assert snapshot(catalog) == before  # not one byte rewritten
    for entry_id in reviewed_ids:
        entry = load_entry(catalog / f"{entry_id}.yaml")
        assert entry.review.tags == "reviewed" and entry.review.metadata == "checked"
        assert entry.tags.objects == ["sae-feature"] and entry.authors == ["A. Curator-Checked"]
        assert entry.provenance.upstream_rows  # the upstream tags stay recorded verbatim
        assert any(f"already in the catalog as {entry_id}" == reason for _, reason in again.skipped)


def test_reimport_into_the_shipped_catalog_adds_and_changes_nothing(tmp_path: Path) -> None:
    """The curated catalog (reviewed and foundational entries) is a fixed point of the importer."""
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", catalog)
    loaded = load_catalog(catalog)
    assert loaded.problems == []
    before = snapshot(catalog)
    report = import_awesome(UPSTREAM, catalog)
    assert report.added == []
    assert snapshot(catalog) == before
