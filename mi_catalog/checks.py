"""Content checks across catalog entries, run by `mi-catalog validate` (see :mod:`mi_catalog.validate`).

- **Title casing** (warning): a title word that spells a known acronym or paper name with other casing
  ("kv cache", "Llms", "Pyramidkv"). The list of spellings is data (:data:`TITLE_TERMS`); extend it when a
  new name turns up. A warning, never an error: a curator confirms against the paper's own title.
- **Duplicate summaries** (error): two entries with the same summary (case and spacing ignored) — a
  summary copied onto the wrong paper.
- **arXiv id vs link** (error): ``links.paper`` is an arXiv page whose id differs from ``links.arxiv``.
  When ``links.arxiv`` is empty but the link is an arXiv page, a warning suggests filling it in.

Plain Python over already-validated :class:`~mi_catalog.schema.Entry` objects: no I/O, no heavy imports.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from mi_catalog.load import Problem
from mi_catalog.schema import Entry

# Spellings as papers write them. A title word equal to one of these ignoring case, but cased otherwise,
# is flagged. Only unambiguous terms belong here (no ordinary English words).
TITLE_TERMS: tuple[str, ...] = (
    # acronyms
    "AI",
    "BERT",
    "CoT",
    "FFN",
    "FFNs",
    "GPT",
    "KV",
    "LLM",
    "LLMs",
    "LM",
    "LMs",
    "LoRA",
    "MEMIT",
    "MHA",
    "MLP",
    "MLPs",
    "MoE",
    "NLP",
    "PEFT",
    "QA",
    "RLHF",
    "ROME",
    "SAE",
    "SAEs",
    "VLM",
    "VLMs",
    # method and paper names whose casing the upstream list broke
    "BILLY",
    "DoLa",
    "PyramidKV",
    "RotateKV",
    "SAIF",
    "SnapKV",
    "ZipCache",
)

_TERMS_BY_KEY: dict[str, str] = {t.casefold(): t for t in TITLE_TERMS}
_WORD = re.compile(r"[A-Za-z0-9]+")
_ARXIV_LINK = re.compile(r"^https?://(?:www\.)?arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?/?$", re.I)


def _file(entry: Entry) -> str:
    return f"{entry.id}.yaml"


def miscased_terms(title: str) -> list[tuple[str, str]]:
    """(word as written, expected spelling) for every title word that miscases a known term."""
    found = []
    for word in _WORD.findall(title):
        expected = _TERMS_BY_KEY.get(word.casefold())
        if expected is not None and word != expected:
            found.append((word, expected))
    return found


def title_casing_problems(entries: Iterable[Entry]) -> list[Problem]:
    out = []
    for entry in entries:
        wrong = miscased_terms(entry.title)
        if wrong:
            listed = ", ".join(f"{w!r} (→ {e!r})" for w, e in wrong)
            out.append(
                Problem(
                    _file(entry),
                    "title",
                    f"title casing contradicts a known acronym or name: {listed}",
                    "copy the title with its official casing from the paper, and note the source",
                    severity="warning",
                )
            )
    return out


def _summary_key(summary: str | None) -> str | None:
    if not summary:
        return None
    return " ".join(summary.casefold().split())


def duplicate_summary_problems(entries: Sequence[Entry]) -> list[Problem]:
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        key = _summary_key(entry.summary)
        if key:
            groups[key].append(entry)
    out = []
    for group in groups.values():
        for entry in group[1:]:
            out.append(
                Problem(
                    _file(entry),
                    "summary",
                    f"same summary as {_file(group[0])}",
                    "write this paper's own summary from its abstract",
                )
            )
    return out


def arxiv_link_id(url: str) -> str | None:
    """The arXiv id of an arxiv.org abs/pdf URL (version dropped), else None."""
    m = _ARXIV_LINK.match(url.strip())
    return m.group(1) if m else None


def arxiv_link_problems(entries: Iterable[Entry]) -> list[Problem]:
    out = []
    for entry in entries:
        in_link = arxiv_link_id(entry.links.paper)
        if in_link is None:
            continue
        if entry.links.arxiv is None:
            out.append(
                Problem(
                    _file(entry),
                    "links.arxiv",
                    f"links.paper is arXiv {in_link} but links.arxiv is empty",
                    f"set links.arxiv: '{in_link}'",
                    severity="warning",
                )
            )
        elif entry.links.arxiv != in_link:
            out.append(
                Problem(
                    _file(entry),
                    "links.arxiv",
                    f"arXiv id {entry.links.arxiv} does not match links.paper ({entry.links.paper})",
                    "check both against the paper; one of them points at another paper",
                )
            )
    return out


def content_problems(entries: Sequence[Entry]) -> list[Problem]:
    """Every content check, errors and warnings, in a stable order."""
    return [
        *arxiv_link_problems(entries),
        *duplicate_summary_problems(entries),
        *title_casing_problems(entries),
    ]
