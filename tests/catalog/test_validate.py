"""`validate` reports every problem, per file and field, and never executes or crashes on hostile input."""

from __future__ import annotations

import json
from pathlib import Path

from support import SMALL_CATALOG, write_entry

from mi_catalog.validate import validate_catalog

BAD_FILES: dict[str, bytes] = {
    "malformed.yaml": b"id: malformed\ntitle: [unclosed\n",
    "latin1.yaml": "id: latin1\ntitle: Caf\xe9\n".encode("latin-1"),
    "empty.yaml": b"   \n",
    "list-root.yaml": b"- id: list-root\n- title: x\n",
    "python-tag.yaml": b"!!python/object/apply:os.system ['touch PWNED']\n",
    "dup-key.yaml": b"id: dup-key\nid: dup-key\n",
}


def problems_by_file(catalog_dir: Path) -> dict[str, list[str]]:
    """Problems other than impl links (the fixture cites an impl; those are tested below)."""
    out: dict[str, list[str]] = {}
    for p in validate_catalog(catalog_dir):
        if p.field != "impls" and not p.file.startswith("reference_impls/"):
            out.setdefault(p.file, []).append(f"{p.field}: {p.message} | {p.hint}")
    return out


def test_every_malformed_file_is_reported_and_the_rest_still_checked(
    small_catalog: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, raw in BAD_FILES.items():
        (small_catalog / name).write_bytes(raw)
    write_entry(small_catalog, "wrong-venue", venue="Arxiv")
    found = problems_by_file(small_catalog)
    assert set(found) == {*BAD_FILES, "wrong-venue.yaml"}
    assert "malformed YAML at line" in found["malformed.yaml"][0]
    assert "not UTF-8" in found["latin1.yaml"][0]
    assert "empty" in found["empty.yaml"][0]
    assert "must be a mapping" in found["list-root.yaml"][0]
    assert "never executed" in found["python-tag.yaml"][0]
    assert "duplicate key" in found["dup-key.yaml"][0]
    assert "canonical 'arXiv'" in found["wrong-venue.yaml"][0]
    assert not (tmp_path / "PWNED").exists()  # the !!python tag was never run


def test_schema_problems_name_field_and_fix(small_catalog: Path) -> None:
    write_entry(small_catalog, "extra-key", colour="blue")
    write_entry(
        small_catalog, "alias-tag", tags={"objects": ["head"], "methods": [], "steering": [], "applications": []}
    )
    write_entry(small_catalog, "bad-url", links={"paper": "not a url", "arxiv": "arXiv:2401.1"})
    write_entry(small_catalog, "other-name", id="not-the-stem")
    write_entry(small_catalog, "workshop-unnamed", venue="Workshop")
    found = problems_by_file(small_catalog)
    assert any(m.startswith("colour:") and "remove this key" in m for m in found["extra-key.yaml"])
    assert any(m.startswith("tags.objects:") and "'head' → 'attention-head'" in m for m in found["alias-tag.yaml"])
    assert any(m.startswith("links.paper:") for m in found["bad-url.yaml"])
    assert any(m.startswith("links.arxiv:") for m in found["bad-url.yaml"])
    assert any(m.startswith("id:") and "rename the file" in m for m in found["other-name.yaml"])
    assert any("venue_detail" in m for m in found["workshop-unnamed.yaml"])


def test_cross_file_duplicates(small_catalog: Path) -> None:
    write_entry(small_catalog, "same-title", title="Refusal heads probe!")
    write_entry(small_catalog, "same-link", links={"paper": "https://example.org/refusal-heads/"})
    found = problems_by_file(small_catalog)
    assert any("same title as refusal-heads.yaml" in m for m in found["same-title.yaml"])
    assert any("same paper link as refusal-heads.yaml" in m for m in found["same-link.yaml"])


def test_impl_links_checked_both_ways(small_catalog: Path, tmp_path: Path) -> None:
    impls = tmp_path / "impls"
    impls.mkdir()
    (impls / "demo.py").write_text(
        "from mi_catalog.impl_info import ImplInfo\n"
        'IMPL = ImplInfo(id="demo", title="Demo", objects=("head",), reproduces=("refusal-heads", "missing-entry"))\n'
    )
    write_entry(small_catalog, "cites-unknown", impls=["nope"])
    problems = [str(p) for p in validate_catalog(small_catalog, impls_dir=impls, impl_coverage=True)]
    joined = "\n".join(problems)
    without_coverage = "\n".join(str(p) for p in validate_catalog(small_catalog, impls_dir=impls))
    assert "missing-entry" not in without_coverage  # another catalog need not hold every reproduced paper
    assert "cites-unknown.yaml: impls: no reference implementation 'nope'" in joined
    assert "no catalog entry 'missing-entry'" in joined
    assert (
        "refusal-heads.yaml: impls: reference implementation 'demo' reproduces this entry but is not listed" in joined
    )
    assert "object 'head' is not a canonical id" in joined
    # the fixture's knowledge-circuits-heads cites logit-lens, which this impls folder lacks
    assert "knowledge-circuits-heads.yaml: impls: no reference implementation 'logit-lens'" in joined


def test_duplicate_impl_ids_are_an_error(small_catalog: Path, tmp_path: Path) -> None:
    impls = tmp_path / "impls"
    impls.mkdir()
    for name in ("a", "b"):
        (impls / f"{name}.py").write_text('IMPL = ImplInfo(id="same", title="x")\n')
    problems = [str(p) for p in validate_catalog(small_catalog, impls_dir=impls)]
    assert any("duplicate reference implementation id 'same'" in p for p in problems)


def test_cli_validate_exit_codes_and_json(small_catalog: Path, cli) -> None:
    # Valid whatever reference implementations exist: each entry lists exactly the impls that reproduce it.
    from mi_catalog.impl_info import discover_impls

    impls = discover_impls()
    for entry_id, fields in SMALL_CATALOG.items():
        listed = sorted(i for i, info in impls.items() if entry_id in info.reproduces)
        write_entry(small_catalog, entry_id, **{**fields, "impls": listed})
    ok = cli("validate", "--catalog", str(small_catalog))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "6 files checked: OK" in ok.stdout
    as_json = cli("validate", "--catalog", str(small_catalog), "--format", "json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["problems"] == []
    (small_catalog / "python-tag.yaml").write_bytes(BAD_FILES["python-tag.yaml"])
    bad = cli("validate", "--catalog", str(small_catalog), "--format", "json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["files"] == 7
    assert {p["file"] for p in report["problems"]} == {"python-tag.yaml"}
    assert "Traceback" not in bad.stderr + ok.stderr


def test_cli_validate_empty_folder_says_nothing_to_validate(tmp_path: Path, cli) -> None:
    res = cli("validate", "--catalog", str(tmp_path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"mi-catalog: error: nothing to validate: no catalog entry files (*.yaml) in {tmp_path.resolve()}"
    ]


def test_cli_validate_ok_on_clean_catalog(tmp_path: Path, cli) -> None:
    catalog = tmp_path / "cat"
    catalog.mkdir()
    write_entry(catalog, "only-one")
    res = cli("validate", "--catalog", str(catalog))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 files checked: OK" in res.stdout
