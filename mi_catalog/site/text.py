"""Text helpers for the site: escaping catalog text, BibTeX, and search tokens.

Catalog text (titles, summaries, notes, authors) is data, never markup: every
helper here turns it into something that renders literally, whatever it holds.
"""

from __future__ import annotations

import html
from typing import Any

from mi_catalog.query import text_analyzer

# Characters Markdown (and the extensions we enable) could read as syntax. They are
# written as numeric character references, which Python-Markdown passes through
# untouched and the browser shows as the character itself. One translation table
# for HTML and Markdown characters alike, so no escape is ever escaped twice.
_MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|~^=:$"
_MD_ESCAPES = {ord(c): f"&#{ord(c)};" for c in _MARKDOWN_SPECIALS} | {
    ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#39;"
}


def one_line(text: str) -> str:
    """Collapse whitespace (incl. newlines) so text cannot start a new Markdown block."""
    return " ".join(text.split())


def md_text(text: str) -> str:
    """Catalog text as inline Markdown that renders literally: no HTML, no Markdown syntax."""
    return one_line(text).translate(_MD_ESCAPES)


def html_text(text: str) -> str:
    """Catalog text for an HTML element's content or a quoted attribute."""
    return html.escape(one_line(text), quote=True)


def yaml_string(text: str) -> str:
    """A YAML front-matter scalar: a JSON string is valid YAML and escapes everything."""
    import json

    return json.dumps(text, ensure_ascii=False)


# --- BibTeX -------------------------------------------------------------------


def bibtex_entry(entry: Any) -> str:
    """A BibTeX record for an entry (the CLI's writer, so `show --format bibtex` and the site agree)."""
    from mi_catalog.formats import bibtex
    from mi_catalog.index_build import entry_record

    return bibtex(entry_record(entry)["hit"])


# --- Search tokens --------------------------------------------------------------


def analyzed(text: str) -> list[str]:
    """The analyzed tokens of one field's text, in order (stop words and 1-character tokens dropped)."""
    # The index's own analyzer: that is what makes the explore page's free-text counts agree with `query`.
    return [token.text for token in text_analyzer()(text)]


def stop_words() -> list[str]:
    from whoosh.analysis import STOP_WORDS

    return sorted(STOP_WORDS)
