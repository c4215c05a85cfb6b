"""Reference-implementation metadata, readable without importing torch.

Each file in ``reference_impls/`` declares at module level::

    IMPL = ImplInfo(
        id="logit-lens",
        title="Logit lens",
        objects=("residual-stream",),
        methods=("vocab-projection",),
        steering=(),
        reproduces=("interpreting-gpt-the-logit-lens",),
        tasks=("facts", "induction"),
        needs=(),
        metrics=("first_top1_layer", "final_top1_rate"),
    )

The catalog side (``validate``, the site) reads these declarations with
:mod:`ast` — never importing the module, so never importing torch. The runner
imports the modules for real and a drift test checks both views agree.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from mi_catalog import vocab

IMPLS_DIR = Path(__file__).resolve().parent.parent / "reference_impls"


@dataclass(frozen=True)
class ImplInfo:
    id: str
    title: str
    objects: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    steering: tuple[str, ...] = ()
    reproduces: tuple[str, ...] = ()  # catalog entry ids this implementation reproduces
    tasks: tuple[str, ...] = ()  # task names it supports; the first is the default
    needs: tuple[str, ...] = ()  # subset of NEEDS: what the method requires of a model
    metrics: tuple[str, ...] = ()  # metric names it reports, each defined in mi_catalog.methods.glossary
    module: str = ""  # filled in by discovery: reference_impls.<file stem>

    def problems(self) -> list[str]:
        """Vocabulary and glossary problems with this declaration (empty when fine)."""
        from mi_catalog.methods.glossary import GLOSSARY

        out: list[str] = []
        for facet, values in ((vocab.OBJECT, self.objects), (vocab.METHOD, self.methods), (vocab.STEER, self.steering)):
            out.extend(f"{facet.name} {v!r} is not a canonical id" for v in values if v not in facet.ids)
        out.extend(f"needs {n!r} is not one of {', '.join(NEEDS)}" for n in self.needs if n not in NEEDS)
        out.extend(f"metric {m!r} is not defined in mi_catalog/methods/glossary.py" for m in self.metrics
                   if m not in GLOSSARY)  # fmt: skip
        if not self.tasks:
            out.append("declares no tasks (the first is the default task)")
        return out


# What a method may require of a model: backward passes, generation, temporary weight edits, training steps.
NEEDS = ("gradients", "generation", "weight-edits", "training")


class ImplDeclarationError(ValueError):
    pass


def _declaration_statement(text: str) -> str | None:
    """The source of the module-level ``IMPL = ImplInfo(...)`` statement alone, or None to parse the whole file.

    Parsing every implementation module whole costs ~10 ms each (0.2–0.7 s for the registry) on every ``run``;
    the declaration is a few hundred bytes. The balanced ``)`` is found with :mod:`tokenize`, so parentheses
    inside strings do not count; anything unusual falls back to the full parse (and its error messages).
    """
    match = re.search(r"^IMPL\s*=\s*ImplInfo\(", text, re.MULTILINE)
    if match is None:
        return None
    depth = 0
    rest = text[match.start() :]
    try:
        for tok in tokenize.generate_tokens(io.StringIO(rest).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    lines = rest.splitlines(keepends=True)
                    end_row, end_col = tok.end
                    return "".join(lines[: end_row - 1]) + lines[end_row - 1][:end_col]
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _declaration(path: Path) -> ImplInfo | None:
    text = path.read_text(encoding="utf-8")
    statement = _declaration_statement(text)
    try:
        tree = ast.parse(statement if statement is not None else text, filename=str(path))
    except SyntaxError:
        if statement is None:
            raise
        tree = ast.parse(text, filename=str(path))
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "IMPL" for t in node.targets)):
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "ImplInfo"):
            raise ImplDeclarationError(f"{path.name}: IMPL must be a literal ImplInfo(...) call")
        try:
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        except ValueError as err:
            raise ImplDeclarationError(f"{path.name}: IMPL fields must be literals ({err})") from None
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return ImplInfo(**kwargs, module=f"reference_impls.{path.stem}")
    return None


def discover_impls(impls_dir: Path = IMPLS_DIR) -> dict[str, ImplInfo]:
    """Every declared implementation by id; a duplicate id is an error."""
    found: dict[str, ImplInfo] = {}
    if not impls_dir.is_dir():
        return found
    for path in sorted(impls_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        info = _declaration(path)
        if info is None:
            continue
        if info.id in found:
            raise ImplDeclarationError(
                f"duplicate reference implementation id {info.id!r} in {path.name} and {found[info.id].module}"
            )
        found[info.id] = info
    return found
