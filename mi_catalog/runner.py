"""Run a reference implementation on a model: registry, id resolution and a common result.

Each ``reference_impls/<id>.py`` declares ``IMPL`` (an :class:`ImplInfo`), a
``Spec`` dataclass (with ``seed`` and ``out_dir`` fields) and
``run(model, spec) -> Result`` (with ``metrics`` and ``figures``). The registry
imports them for real and checks the metadata equals what :mod:`ast`-based
discovery reads (so the catalog side and the runner never drift).
"""

from __future__ import annotations

import difflib
import importlib
import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mi_catalog.impl_info import ImplDeclarationError, ImplInfo, discover_impls


class UnknownImplError(LookupError):
    """Neither an implementation id nor a catalog entry reproduced by one."""


@dataclass
class RegisteredImpl:
    info: ImplInfo
    module: ModuleType


@dataclass
class RunResult:
    impl: str
    model: str
    metrics: dict[str, float]
    figures: list[str] = field(default_factory=list)  # paths written under out_dir
    entry: str | None = None  # the catalog entry id, when the run was asked for by entry
    seed: int = 0
    seconds: float = 0.0
    details: Any = field(default=None, repr=False, compare=False)  # the implementation's own typed result

    def to_dict(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "entry": self.entry,
            "model": self.model,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "figures": self.figures,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


_REGISTRY: dict[str, RegisteredImpl] | None = None


def registry() -> dict[str, RegisteredImpl]:
    """Every reference implementation by id (imported once; imports torch)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry(discover_impls())
    return _REGISTRY


def build_registry(declared: dict[str, ImplInfo]) -> dict[str, RegisteredImpl]:
    """Import each declared module and check its live ``IMPL`` equals the declaration read by ``ast``."""
    out: dict[str, RegisteredImpl] = {}
    for impl_id, info in declared.items():
        module = importlib.import_module(info.module)
        live = getattr(module, "IMPL", None)
        if not isinstance(live, ImplInfo):
            raise ImplDeclarationError(f"{info.module}: IMPL is not an ImplInfo")
        if replace(live, module=info.module) != info:
            raise ImplDeclarationError(f"{info.module}: IMPL at import differs from its literal declaration")
        if live.id in out:
            raise ImplDeclarationError(f"duplicate reference implementation id {live.id!r}")
        for attr in ("Spec", "run"):
            if not hasattr(module, attr):
                raise ImplDeclarationError(f"{info.module} has no {attr}")
        out[impl_id] = RegisteredImpl(info, module)
    return out


def resolve(impl_or_entry_id: str, declared: dict[str, ImplInfo] | None = None) -> tuple[ImplInfo, str | None]:
    """An implementation id, or a catalog entry id that some implementation ``reproduces`` → (impl, entry)."""
    impls = declared if declared is not None else discover_impls()
    if impl_or_entry_id in impls:
        return impls[impl_or_entry_id], None
    reproducing = [info for info in impls.values() if impl_or_entry_id in info.reproduces]
    if reproducing:
        return reproducing[0], impl_or_entry_id
    known = list(impls) + [e for info in impls.values() for e in info.reproduces]
    close = difflib.get_close_matches(impl_or_entry_id, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownImplError(
        f"no reference implementation {impl_or_entry_id!r}{hint} (implementations: {', '.join(sorted(impls))})"
    )


def make_spec(module: ModuleType, seed: int, out_dir: Path | None, **overrides: Any) -> Any:
    spec_cls = module.Spec
    names = {f.name for f in fields(spec_cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"{module.__name__}.Spec has no field(s) {sorted(unknown)}")
    values: dict[str, Any] = {"seed": seed, "out_dir": out_dir, **overrides}
    return spec_cls(**{k: v for k, v in values.items() if k in names})


def run_impl(
    impl_or_entry_id: str,
    model: Any = "toy",
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    **spec_overrides: Any,
) -> RunResult:
    """Run an implementation (by its id or by a catalog entry it reproduces) on ``model``.

    ``model`` is ``"toy"``, a Hugging Face hub id, a local folder, or an already loaded
    :class:`~mi_catalog.models.LoadedModel`. Figures and tensors go under ``out_dir`` when given.
    """
    from mi_catalog.models import require_run_extra

    info, entry = resolve(impl_or_entry_id)
    require_run_extra()
    import torch

    from mi_catalog.models.loading import LoadedModel, load_model

    registered = registry()[info.id]
    lm = model if isinstance(model, LoadedModel) else load_model(str(model), device=device, dtype=dtype)
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    spec = make_spec(registered.module, seed, out_path, **spec_overrides)
    torch.manual_seed(seed)
    start = time.perf_counter()
    result = registered.module.run(lm, spec)
    seconds = time.perf_counter() - start
    metrics = {name: float(value) for name, value in result.metrics.items()}
    run_result = RunResult(
        impl=info.id, model=lm.name, metrics=metrics, figures=[str(p) for p in getattr(result, "figures", [])],
        entry=entry, seed=seed, seconds=seconds, details=result,
    )  # fmt: skip
    if out_path is not None:
        (out_path / f"{info.id}.json").write_text(run_result.to_json() + "\n", encoding="utf-8")
    return run_result
