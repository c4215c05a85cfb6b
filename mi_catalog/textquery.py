"""The free-text query language, shared by `mi-catalog query` and the site's explore page.

    refusal direction          every word must match (in title, summary or authors)
    "refusal direction"        a phrase: the words in this order, in one field
    refusal OR sycophancy      either
    refusal NOT direction      refusal, and not direction  (NOT alone: everything but)
    refus*   ref?sal           a prefix, a wildcard (* any letters, ? one letter)
    title:refusal  authors:"neel nanda"  title:(refusal OR jailbreak)
    (a OR b) c                 parentheses group

Precedence, as Whoosh's parser has it: NOT binds tightest, then AND, then OR, and words
written next to each other are ANDed last (``a OR b c`` is ``(a OR b) AND c``). Words are
analyzed like the index (lowercase, English stop words dropped, 2+ characters); a word that
analyzes to several tokens (``gpt-j``) is a phrase; one that analyzes to nothing (``the``)
is no constraint. This module is the reference: ``mi_catalog/site/assets/explore.js`` ports
:func:`lex`, :func:`parse` and the matching rules line by line, and the browser tests compare
the two on the real catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mi_catalog.errors import QueryError

TEXT_FIELDS = ("title", "summary", "authors")
OPERATORS = ("AND", "OR", "NOT")


@dataclass(frozen=True)
class Words:
    """One token (a term) or several (a phrase), in ``field`` or in any text field."""

    field: str | None
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class Pattern:
    """A lowercased wildcard pattern (``*``, ``?``) matched against whole tokens."""

    field: str | None
    pattern: str

    @property
    def prefix(self) -> str | None:
        """The prefix when the pattern is ``prefix*`` (no other wildcard)."""
        body = self.pattern[:-1]
        return body if self.pattern.endswith("*") and "*" not in body and "?" not in body else None


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Words | Pattern | And | Or | Not


# ---------------------------------------------------------------- lexing


@dataclass(frozen=True)
class Lexeme:
    kind: str  # "word", "phrase", "op", "(", ")"
    text: str = ""
    field: str | None = None  # for words, phrases and "(" written as field:...


_FIELD = re.compile(r"^(\w+):(.*)$", re.S)


def lex(text: str) -> list[Lexeme]:
    out: list[Lexeme] = []
    i, n = 0, len(text)
    pending: str | None = None  # a field: written right before a phrase or a group
    while i < n:
        ch = text[i]
        if ch.isspace():
            if pending is not None:
                raise _malformed(text, f"{pending}: needs a word, a phrase or a group right after it")
            i += 1
        elif ch in "()":
            if ch == ")" and pending is not None:
                raise _malformed(text, f"{pending}: needs a word, a phrase or a group right after it")
            out.append(Lexeme(ch, field=pending if ch == "(" else None))
            pending = None
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise _malformed(text, "unbalanced double quote")
            out.append(Lexeme("phrase", text[i + 1 : end], pending))
            pending = None
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            word = text[i:j]
            i = j
            m = _FIELD.match(word)
            if m and pending is None:
                name, rest = m.group(1), m.group(2)
                if name not in TEXT_FIELDS:
                    raise _malformed(
                        text,
                        f"unknown field {name!r} (searchable fields: {', '.join(TEXT_FIELDS)};"
                        " use --object/--method/... for facets)",
                    )
                if rest:
                    out.append(Lexeme("word", rest, name))
                elif i < n and text[i] in '("':
                    pending = name
                else:
                    raise _malformed(text, f"{name}: needs a word, a phrase or a group right after it")
            elif pending is None and word in OPERATORS:
                out.append(Lexeme("op", word))
            else:
                out.append(Lexeme("word", word, pending))
                pending = None
    if pending is not None:
        raise _malformed(text, f"{pending}: needs a word, a phrase or a group right after it")
    return out


def _malformed(text: str, why: str) -> QueryError:
    return QueryError(f"malformed query {text!r}: {why}")


# ---------------------------------------------------------------- parsing


def parse(text: str, analyze: object) -> Node | None:
    """The query tree for ``text`` (None when nothing constrains: empty, or only stop words).

    ``analyze(str) -> list[str]`` is the index's analyzer (lowercase, stop words, 2+ characters).
    """
    lexemes = lex(text)
    pos = 0

    def group(field: str | None, depth: int) -> list[Node | str | None]:
        nonlocal pos
        items: list[Node | str | None] = []
        while pos < len(lexemes):
            lx = lexemes[pos]
            pos += 1
            if lx.kind == ")":
                if depth == 0:
                    raise _malformed(text, "unbalanced parentheses")
                return items
            if lx.kind == "(":
                items.append(reduce(group(lx.field or field, depth + 1)))
            elif lx.kind == "op":
                items.append(lx.text)
            else:
                items.append(leaf(lx, lx.field or field))
        if depth > 0:
            raise _malformed(text, "unbalanced parentheses")
        return items

    def leaf(lx: Lexeme, field: str | None) -> Node | None:
        if lx.kind == "word" and ("*" in lx.text or "?" in lx.text):
            pattern = lx.text.lower()
            if not pattern.strip("*?"):
                raise _malformed(text, f"{lx.text!r} needs letters besides wildcards")
            return Pattern(field, pattern)
        tokens = tuple(analyze(lx.text))  # type: ignore[operator]
        return Words(field, tokens) if tokens else None

    def reduce(items: list[Node | str | None]) -> Node | None:
        # NOT (prefix, right to left), then AND, then OR (infix, left to right), then juxtaposition.
        items = list(items)
        i = len(items) - 1
        while i >= 0:
            if items[i] == "NOT":
                if i + 1 >= len(items) or isinstance(items[i + 1], str):
                    raise _malformed(text, "NOT needs a word after it")
                operand = items[i + 1]
                items[i : i + 2] = [None if operand is None else Not(operand)]  # type: ignore[arg-type]
            i -= 1
        for op, cls in (("AND", And), ("OR", Or)):
            i = 0
            while i < len(items):
                if items[i] == op:
                    if i == 0 or i + 1 >= len(items) or isinstance(items[i - 1], str) or isinstance(items[i + 1], str):
                        raise _malformed(text, f"{op} needs words on both sides")
                    items[i - 1 : i + 2] = [combine(cls, [items[i - 1], items[i + 1]])]  # type: ignore[list-item]
                else:
                    i += 1
        return combine(And, items)  # type: ignore[arg-type]

    def combine(cls: type[And] | type[Or], parts: list[Node | None]) -> Node | None:
        flat: list[Node] = []
        for part in parts:
            if part is None:
                continue  # only stop words: no constraint
            flat.extend(part.items if isinstance(part, cls) else (part,))
        if not flat:
            return None
        return flat[0] if len(flat) == 1 else cls(tuple(flat))

    return reduce(group(None, 0))


# ---------------------------------------------------------------- matching (the reference semantics)


def glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z", re.S)


def matches(node: Node, fields: dict[str, list[str]]) -> bool:
    """Does a document (field → its analyzed tokens, in order) match? The page's rule, in Python."""
    if isinstance(node, And):
        return all(matches(n, fields) for n in node.items)
    if isinstance(node, Or):
        return any(matches(n, fields) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, fields)
    names = [node.field] if node.field else list(TEXT_FIELDS)
    if isinstance(node, Pattern):
        rx = glob_regex(node.pattern)
        return any(rx.match(t) for f in names for t in fields.get(f, ()))
    k = len(node.tokens)
    for f in names:
        seq = fields.get(f, [])
        if any(tuple(seq[i : i + k]) == node.tokens for i in range(len(seq) - k + 1)):
            return True
    return False
