"""The fast reader of ``IMPL = ImplInfo(...)`` (only that statement is parsed) agrees with parsing whole files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mi_catalog import impl_info
from mi_catalog.impl_info import IMPLS_DIR, ImplDeclarationError, _declaration, _declaration_statement


def _full_parse(path: Path, monkeypatch: pytest.MonkeyPatch) -> impl_info.ImplInfo | None:
    with monkeypatch.context() as patched:
        patched.setattr(impl_info, "_declaration_statement", lambda _text: None)
        return _declaration(path)


def test_every_shipped_declaration_reads_the_same_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [p for p in sorted(IMPLS_DIR.glob("*.py")) if not p.name.startswith("_")]
    assert len(paths) >= 20
    for path in paths:
        statement = _declaration_statement(path.read_text(encoding="utf-8"))
        assert statement is not None and statement.startswith("IMPL") and statement.endswith(")"), path.name
        assert _declaration(path) == _full_parse(path, monkeypatch), path.name


def test_parentheses_inside_strings_do_not_end_the_statement(tmp_path: Path) -> None:
    path = tmp_path / "weird.py"
    path.write_text('x = 1\nIMPL = ImplInfo(\n    id="w",\n    title="a ) tricky ( title",  # comment )\n'
                    '    tasks=("facts",),\n)\nY = ImplInfo(id="other")\n', encoding="utf-8")  # fmt: skip
    statement = _declaration_statement(path.read_text(encoding="utf-8"))
    assert statement is not None
    ast.parse(statement)
    info = _declaration(path)
    assert info is not None and info.title == "a ) tricky ( title" and info.tasks == ("facts",)


def test_a_non_literal_declaration_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text('TITLE = "t"\nIMPL = ImplInfo(id="b", title=TITLE)\n', encoding="utf-8")
    with pytest.raises(ImplDeclarationError, match="IMPL fields must be literals"):
        _declaration(path)
    path.write_text("IMPL = make_info()\n", encoding="utf-8")
    with pytest.raises(ImplDeclarationError, match="literal ImplInfo"):
        _declaration(path)
