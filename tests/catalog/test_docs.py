"""Docs drift: the README's vocabulary tables are generated from mi_catalog.vocab."""

from __future__ import annotations

from support import REPO

from mi_catalog.formats import update_readme_vocab


def test_readme_vocabulary_is_current() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert update_readme_vocab(text) == text, "run `python -m mi_catalog.formats` to regenerate"
