"""YAML files → validated :class:`~mi_catalog.schema.Entry` objects, one problem list per file.

Safe loading only (libyaml's ``CSafeLoader`` when present): a ``!!python/...``
tag is an error, never code execution. Every failure becomes a
:class:`Problem` naming the file, the field and a fix; one bad file never
stops the others being read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from mi_catalog.paths import catalog_files
from mi_catalog.schema import Entry

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that also rejects duplicate mapping keys (YAML silently keeps the last)."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file. Only errors make `validate` fail; warnings ask a curator to look."""

    file: str
    field: str  # dotted path into the entry, or "-" for the whole file
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        hint = f" (fix: {self.hint})" if self.hint else ""
        level = "warning: " if self.severity == "warning" else ""
        return f"{self.file}: {self.field}: {level}{self.message}{hint}"


class EntryFileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def parse_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file safely; raise :class:`EntryFileError` with a clear problem otherwise."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise EntryFileError([Problem(name, "-", f"cannot read file: {err.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntryFileError(
            [Problem(name, "-", f"not UTF-8 (byte {err.start})", "re-save the file as UTF-8")]
        ) from None
    if not text.strip():
        raise EntryFileError([Problem(name, "-", "file is empty", "write the entry's fields, or delete the file")])
    try:
        return parse_yaml_text(text)
    except yaml.constructor.ConstructorError as err:
        where = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        msg = str(err.problem or err)
        hint = "plain YAML only; tags like !!python/... are never executed" if "tag" in msg else "remove the duplicate"
        raise EntryFileError([Problem(name, "-", f"unsafe or invalid YAML{where}: {msg}", hint)]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise EntryFileError([Problem(name, "-", f"malformed YAML{where}: {problem}", "fix the YAML syntax")]) from None


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "-"


def _hint_for(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "remove this key, or check its spelling against the schema (CONTRIBUTING.md)"
    if kind == "missing":
        return "add this required field"
    return ""


def entry_from_data(data: Any, name: str) -> Entry:
    """Validate parsed YAML as an entry, turning pydantic errors into problems."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise EntryFileError(
            [Problem(name, "-", f"the top level must be a mapping of fields, got a {kind}", "start with 'id: ...'")]
        )
    try:
        return Entry.model_validate(data)
    except ValidationError as err:
        problems = [
            Problem(name, _loc(e["loc"]), e["msg"].removeprefix("Value error, "), _hint_for(e)) for e in err.errors()
        ]
        raise EntryFileError(problems) from None


def load_entry(path: Path) -> Entry:
    """Read and validate one entry file, checking that its id equals its file stem."""
    entry = entry_from_data(read_yaml(path), path.name)
    if entry.id != path.stem:
        raise EntryFileError(
            [
                Problem(
                    path.name,
                    "id",
                    f"id {entry.id!r} differs from the file name",
                    f"rename the file to {entry.id}.yaml or set id: {path.stem}",
                )
            ]
        )
    return entry


@dataclass
class LoadResult:
    entries: list[Entry]
    problems: list[Problem]


def load_catalog(catalog_dir: Path) -> LoadResult:
    """Load every entry file; collect problems instead of stopping at the first."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    for path in catalog_files(catalog_dir):
        try:
            entries.append(load_entry(path))
        except EntryFileError as err:
            problems.extend(err.problems)
    return LoadResult(entries, problems)


def dump_entry_yaml(entry: Entry) -> str:
    """Serialise an entry in the catalog's house style: schema field order, no nulls, no empty lists."""
    data = entry.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(_prune(data), sort_keys=False, allow_unicode=True, width=100)


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v not in (None, [], {}) or k in _KEEP_EMPTY}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


# Keys kept even when empty, so a person editing the file sees where tags and impls go.
_KEEP_EMPTY = {"objects", "methods", "steering", "applications", "impls"}
