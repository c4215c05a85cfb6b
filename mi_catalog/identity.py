"""Paper identity: the keys that say two records are the same paper.

Used by validation (duplicate titles, links, arXiv ids across entries) and by the
importer (matching upstream rows to each other and to the catalog). Plain Python.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

_ARXIV_IN_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?", re.I)
_ARXIV_DOI = re.compile(r"10\.48550/arxiv\.(\d{4}\.\d{4,5})", re.I)


def normalize_title(title: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", title.lower()).split())


def arxiv_id_from_url(url: str) -> str | None:
    m = _ARXIV_IN_URL.search(url) or _ARXIV_DOI.search(url)
    return m.group(1) if m else None


def canonical_link(url: str) -> str:
    """The link as the catalog stores it: unescaped, https, arXiv and OpenReview pages not PDFs."""
    url = url.replace("\\_", "_").strip()
    arxiv = arxiv_id_from_url(url)
    if arxiv:
        return f"https://arxiv.org/abs/{arxiv}"
    parts = urlsplit(url)
    if parts.netloc.endswith("openreview.net") and parts.path in ("/pdf", "/forum"):
        ident = parse_qs(parts.query).get("id", [""])[0]
        if ident:
            return f"https://openreview.net/forum?id={ident}"
    if url.startswith("http://"):
        url = "https://" + url[len("http://") :]
    return url


def link_key(url: str) -> str:
    """Matching key for a link: host without www, path without trailing slash, the OpenReview id."""
    parts = urlsplit(canonical_link(url))
    host = parts.netloc.lower().removeprefix("www.")
    key = f"{host}{parts.path.rstrip('/')}".lower().removesuffix(".pdf")
    return f"{key}?{parts.query}" if host == "openreview.net" else key
