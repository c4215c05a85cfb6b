"""The entry schema: one validated pydantic model per catalog YAML file.

Strict on purpose: unknown keys are errors, tags must be canonical vocabulary
ids (aliases are for people typing queries, files hold canonical ids), and
venues come from the controlled list in :mod:`mi_catalog.vocab`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mi_catalog import vocab

ENTRY_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ARXIV_ID_RE = re.compile(r"^\d{4}\.\d{4,5}$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/[^\s]*)?$")
IMPL_ID_RE = ENTRY_ID_RE

Year = Annotated[int, Field(ge=1990, le=2100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_url(value: str | None) -> str | None:
    if value is not None and not URL_RE.match(value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value


class Links(_Strict):
    paper: str = Field(description="Canonical page of the paper (publisher, OpenReview, ACL Anthology, arXiv).")
    arxiv: str | None = Field(default=None, description="arXiv identifier without version, e.g. '2406.11717'.")
    code: str | None = Field(default=None, description="Official code repository, if any.")

    @field_validator("paper", "code")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _check_url(v)

    @field_validator("arxiv")
    @classmethod
    def _arxiv(cls, v: str | None) -> str | None:
        if v is not None and not ARXIV_ID_RE.match(v):
            raise ValueError(f"arXiv id must look like 2406.11717 (no 'arXiv:' prefix, no version), got {v!r}")
        return v


def _check_tags(facet: vocab.Facet, values: list[str]) -> list[str]:
    bad = [v for v in values if v not in facet.ids]
    if bad:
        fixes = []
        for v in bad:
            try:
                fixes.append(f"{v!r} → {facet.resolve(v)[0]!r}")
            except vocab.UnknownValueError as err:
                fixes.append(str(err))
        raise ValueError(f"not canonical {facet.name} ids: {'; '.join(fixes)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {facet.name} tags: {values}")
    return values


class Tags(_Strict):
    objects: list[str] = Field(default_factory=list, description="Interpretable objects (vocab facet 'object').")
    methods: list[str] = Field(default_factory=list, description="Localizing methods (vocab facet 'method').")
    steering: list[str] = Field(default_factory=list, description="Steering methods (vocab facet 'steer').")
    applications: list[str] = Field(default_factory=list, description="Applications (vocab facet 'application').")

    @field_validator("objects")
    @classmethod
    def _objects(cls, v: list[str]) -> list[str]:
        return _check_tags(vocab.OBJECT, v)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return _check_tags(vocab.METHOD, v)

    @field_validator("steering")
    @classmethod
    def _steering(cls, v: list[str]) -> list[str]:
        return _check_tags(vocab.STEER, v)

    @field_validator("applications")
    @classmethod
    def _applications(cls, v: list[str]) -> list[str]:
        return _check_tags(vocab.APPLICATION, v)


class UpstreamRow(_Strict):
    """A row of the upstream Markdown list, verbatim, so every correction is traceable."""

    section: str
    title: str
    object: str
    method: str
    steer: str
    venue: str
    year: str
    link: str


class Provenance(_Strict):
    source: Literal["awesome-actionable-mi-survey", "mi-catalog"] = Field(
        description="Where the entry came from: the survey's list, or added by this project."
    )
    sections: list[str] = Field(default_factory=list, description="Survey sections (application ids) listing it.")
    upstream_rows: list[UpstreamRow] = Field(default_factory=list)

    @field_validator("sections")
    @classmethod
    def _sections(cls, v: list[str]) -> list[str]:
        return _check_tags(vocab.APPLICATION, v)


class Review(_Strict):
    """How far a person checked this entry against the paper itself (arXiv, the venue's proceedings).

    ``tags: upstream`` means the tags are copied from the survey's list unchecked; ``reviewed`` means each of
    object / method / steering / application was checked against the paper. The upstream tags stay verbatim in
    ``provenance.upstream_rows``; when the reviewed tags differ, ``tags_note`` says why in one line.
    """

    tags: Literal["reviewed", "upstream"] = Field(default="upstream", description="reviewed | upstream")
    tags_note: str | None = Field(default=None, description="One line: why the reviewed tags differ from upstream.")
    metadata: Literal["checked", "unchecked"] = Field(
        default="unchecked", description="checked: title, authors, venue, year, arXiv id, code link verified."
    )
    sources: list[str] = Field(default_factory=list, description="Pages the review checked (URLs).")

    @field_validator("sources")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            _check_url(url)
        return v


class Entry(_Strict):
    """One paper."""

    id: str = Field(description="Stable, readable id; equals the file stem.")
    title: str = Field(min_length=3)
    year: Year
    venue: str = Field(description=f"One of: {', '.join(vocab.VENUE_IDS)}.")
    venue_detail: str | None = Field(default=None, description="e.g. the workshop's name.")
    authors: list[str] = Field(default_factory=list)
    summary: str | None = Field(default=None, description="A short summary in our own words.")
    links: Links
    tags: Tags
    impls: list[str] = Field(default_factory=list, description="Reference implementation ids.")
    provenance: Provenance
    review: Review = Field(default_factory=Review, description="What was checked against the paper, and how.")
    notes: list[str] = Field(default_factory=list, description="Corrections made to upstream data, and why.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ENTRY_ID_RE.match(v):
            raise ValueError(f"id must be lowercase words joined by '-', got {v!r}")
        return v

    @field_validator("venue")
    @classmethod
    def _venue(cls, v: str) -> str:
        if v not in vocab.VENUE_IDS:
            try:
                canonical = vocab.resolve_venue(v)
            except ValueError as err:
                raise ValueError(f"{err} (valid: {', '.join(vocab.VENUE_IDS)})") from None
            raise ValueError(f"venue must be the canonical {canonical!r}, not {v!r}")
        return v

    @field_validator("impls")
    @classmethod
    def _impls(cls, v: list[str]) -> list[str]:
        bad = [i for i in v if not IMPL_ID_RE.match(i)]
        if bad:
            raise ValueError(f"impl ids must be lowercase words joined by '-': {bad}")
        return v

    @model_validator(mode="after")
    def _workshop_named(self) -> Entry:
        if self.venue == "Workshop" and not self.venue_detail:
            raise ValueError("venue 'Workshop' needs venue_detail naming the workshop")
        return self

    def facet_values(self, facet: vocab.Facet) -> list[str]:
        return list(getattr(self.tags, facet.field))

