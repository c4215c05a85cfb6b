"""Run a reference implementation on a model: registry, id resolution, task data, files.

The runner is the only place that touches files: it picks the task's examples (the model's own task
source, or ``--prompts FILE.jsonl``), calls ``run(model, spec, data)``, renders the returned figure specs
to SVG + CSV, saves tensors as safetensors and writes ``<impl>.json`` — all under ``out_dir``, atomically.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mi_catalog.fsutil import atomic_write_text
from mi_catalog.impl_info import ImplDeclarationError, ImplInfo, discover_impls
from mi_catalog.methods.contract import Output
from mi_catalog.methods.data import Progress, RunData, no_progress
from mi_catalog.tasks import TaskDataError, TaskExample, file_source


class UnknownImplError(LookupError):
    """Neither an implementation id nor a catalog entry reproduced by one."""


class RunError(ValueError):
    """A run that cannot start as asked (bad --out, unsupported task, unusable prompts)."""


@dataclass
class RegisteredImpl:
    info: ImplInfo
    module: ModuleType


@dataclass
class RunResult:
    """A finished run: what ran, on what, and what it found (the JSON contract of ``mi-catalog run``)."""

    impl: str
    model: str
    task: str
    output: Output
    entry: str | None = None  # the catalog entry id, when the run was asked for by entry
    kind: str = "reproduction"  # "reproduction" (the paper's algorithm) | "pipeline" (the method family applied)
    seed: int = 0
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)  # files written under out_dir
    data_source: str = ""
    plan: dict[str, Any] | None = None  # how an entry's run was chosen (mi_catalog.methods.plan.Plan.to_dict)
    backend: str = ""  # which model code ran: "native" (our Llama) or "transformers"

    @property
    def metrics(self) -> dict[str, int | float]:
        return self.output.metrics

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "impl": self.impl,
            "entry": self.entry,
            "kind": self.kind,
            "model": self.model,
            "backend": self.backend,
            "task": self.task,
            "data": self.data_source,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "metrics": {k: _json_number(v) for k, v in self.output.metrics.items()},
            "intervals": {k: [_json_number(a), _json_number(b)] for k, (a, b) in self.output.intervals.items()},
            "findings": [f.to_dict() for f in self.output.findings],
            "figures": self.figures,
            "notes": self.output.notes,
        }
        if self.output.improve is not None:
            out["improve"] = self.output.improve.to_dict()
            out["side_effects"] = [s.to_dict() for s in self.output.side_effects]
        if self.plan is not None:
            out["plan"] = self.plan
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _json_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


_REGISTRY: dict[str, RegisteredImpl] | None = None


def registry() -> dict[str, RegisteredImpl]:
    """Every reference implementation by id (imported once; imports torch)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry(discover_impls())
    return _REGISTRY


def build_registry(declared: dict[str, ImplInfo]) -> dict[str, RegisteredImpl]:
    """Import each declared module and check its live ``IMPL`` equals the declaration read by ``ast``."""
    return {impl_id: load_impl(info) for impl_id, info in declared.items()}


def load_impl(info: ImplInfo) -> RegisteredImpl:
    """Import one implementation's module, with the same checks as the registry (a run needs only its own)."""
    if _REGISTRY is not None and info.id in _REGISTRY:
        return _REGISTRY[info.id]
    module = importlib.import_module(info.module)
    live = getattr(module, "IMPL", None)
    if not isinstance(live, ImplInfo):
        raise ImplDeclarationError(f"{info.module}: IMPL is not an ImplInfo")
    if replace(live, module=info.module) != info:
        raise ImplDeclarationError(f"{info.module}: IMPL at import differs from its literal declaration")
    for attr in ("Spec", "run"):
        if not hasattr(module, attr):
            raise ImplDeclarationError(f"{info.module} has no {attr}")
    return RegisteredImpl(info, module)


def resolve(impl_or_entry_id: str, declared: dict[str, ImplInfo] | None = None) -> tuple[ImplInfo, str | None]:
    """An implementation id, or a catalog entry id that some implementation ``reproduces`` → (impl, entry)."""
    impls = declared if declared is not None else discover_impls()
    if impl_or_entry_id in impls:
        return impls[impl_or_entry_id], None
    reproducing = [info for info in impls.values() if impl_or_entry_id in info.reproduces]
    if reproducing:
        return reproducing[0], impl_or_entry_id
    raise UnknownImplError(_unknown_message(impl_or_entry_id, impls))


def _unknown_message(name: str, impls: dict[str, ImplInfo]) -> str:
    """Say what the user may have meant: a close implementation id, a vocabulary value and the implementations
    that have it, or catalog entries whose title or summary names it (and which of them run)."""
    known = list(dict.fromkeys([*impls, *(e for info in impls.values() for e in info.reproduces), *_catalog_ids()]))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hints = [f"did you mean {' or '.join(repr(c) for c in close)}?"] if close else []
    hints += _vocabulary_hints(name, impls)
    entries = _matching_entries(name)
    if entries:
        runnable = {e: i.id for i in impls.values() for e in i.reproduces}
        shown = [f"{e} (runs {runnable[e]})" if e in runnable else e for e in entries]
        hints.append(f"catalog entries naming {name!r}: {', '.join(shown)} — `mi-catalog show ID`")
    hint = "; " + "; ".join(hints) if hints else ""
    return (f"no reference implementation or catalog entry {name!r}{hint} (implementations: "
            f"{', '.join(sorted(impls))})")  # fmt: skip


def _vocabulary_hints(name: str, impls: dict[str, ImplInfo]) -> list[str]:
    from mi_catalog import vocab

    out = []
    for facet, attr in ((vocab.METHOD, "methods"), (vocab.STEER, "steering"), (vocab.OBJECT, "objects")):
        try:
            values = facet.resolve(name)
        except vocab.UnknownValueError:
            continue
        having = sorted(i.id for i in impls.values() if set(getattr(i, attr)) & set(values))
        what = f"{name!r} is the {facet.label.lower()} {', '.join(values)}"
        out.append(f"{what}: run {' or '.join(having)}" if having else f"{what} (no implementation yet)")
    return out


def _catalog_ids() -> list[str]:
    """Every catalog entry id (every entry runs: `mi-catalog run ENTRY`); empty when the catalog cannot be read."""
    try:
        from mi_catalog.load import load_catalog
        from mi_catalog.paths import default_catalog_dir

        return [e.id for e in load_catalog(default_catalog_dir()).entries]
    except Exception:  # the hint is best effort: a broken catalog must not hide the real error
        return []


def _matching_entries(name: str) -> list[str]:
    """Catalog entry ids whose id, title or summary names ``name`` as a whole word (``run rome`` → ROME)."""
    import re

    try:
        from mi_catalog.load import load_catalog
        from mi_catalog.paths import default_catalog_dir

        entries = load_catalog(default_catalog_dir()).entries
    except Exception:  # the hint is best effort: a broken catalog must not hide the real error
        return []
    pattern = re.compile(rf"(?<![\w-]){re.escape(name.replace('-', ' '))}(?![\w-])", re.IGNORECASE)
    in_title = [e.id for e in entries if e.id == name or pattern.search(e.title.replace("-", " "))]
    in_summary = [e.id for e in entries if e.id not in in_title and e.summary and pattern.search(e.summary)]
    return (in_title + in_summary)[:4]


def make_spec(module: ModuleType, seed: int, **overrides: Any) -> Any:
    spec_cls = module.Spec
    names = {f.name for f in fields(spec_cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"{module.__name__}.Spec has no field(s) {sorted(unknown)}")
    values: dict[str, Any] = {"seed": seed, **overrides}
    return spec_cls(**{k: v for k, v in values.items() if k in names})


def check_out_dir(out_dir: str | Path | None) -> Path | None:
    """Validate ``--out`` before any model runs: not a file, creatable and writable."""
    if out_dir is None:
        return None
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise RunError(f"--out {out_dir}: exists and is not a folder")
    parent = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise RunError(f"--out {out_dir}: {parent} is not writable")
    return path


def select_examples(lm: Any, info: ImplInfo, task: str | None, n: int, seed: int,
                    prompts_file: str | Path | None) -> tuple[str, list[TaskExample], str]:  # fmt: skip
    """(task, examples, description of their source), formatted for this model (chat template), checked."""
    if prompts_file is not None:
        source = file_source(prompts_file, task or "custom")
        chosen = task or source.tasks()[0]
        examples = source.examples(chosen, n, seed)
        described = str(prompts_file)
    else:
        available = lm.tasks.tasks()
        # Default: the implementation's first task this model has data for (the toy's "language" or the
        # English sets' "multilingual"), so `run IMPL --model M` works wherever some supported task exists.
        chosen = task or next((t for t in info.tasks if t in available), info.tasks[0])
        if chosen not in info.tasks:
            raise RunError(f"{info.id} does not support task {chosen!r}; it supports: {', '.join(info.tasks)}")
        if chosen not in available:
            raise RunError(f"model {lm.name!r} has no task data for {chosen!r}; available: {', '.join(available)} "
                           "(or pass --prompts FILE.jsonl)")  # fmt: skip
        examples = lm.tasks.examples(chosen, n, seed)
        described = lm.tasks.name
    if not examples:
        raise RunError(f"no examples for task {chosen!r}")
    examples = [_formatted(lm, ex) for ex in examples]
    _check_vocabulary(lm, examples, described)
    return chosen, examples, described


def _formatted(lm: Any, ex: TaskExample) -> TaskExample:
    if not ex.chat:
        return ex
    corrupt = lm.format_prompt(ex.corrupt_prompt, True) if ex.corrupt_prompt else None
    return replace(ex, prompt=lm.format_prompt(ex.prompt, True), corrupt_prompt=corrupt, chat=False)


def _check_vocabulary(lm: Any, examples: list[TaskExample], described: str) -> None:
    """A word-level tokenizer (the toy) silently maps unknown words to <unk>: refuse such prompts instead."""
    for ex in examples[:64]:
        unknown = lm.unknown_words(f"{ex.prompt} {ex.answer}")
        if unknown:
            raise TaskDataError(
                f"{described}: words unknown to {lm.name!r}'s tokenizer: {', '.join(sorted(set(unknown))[:6])} "
                f"(in {ex.prompt!r}); a word-level model only knows its own vocabulary"
            )


def run_impl(
    impl_or_entry_id: str,
    model: Any = "toy",
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    task: str | None = None,
    n: int | None = None,
    prompts_file: str | Path | None = None,
    progress: Progress = no_progress,
    backend: str = "auto",
    **spec_overrides: Any,
) -> RunResult:
    """Run an implementation (by its id or by a catalog entry it reproduces) on ``model``.

    ``model`` is ``"toy"``, a fetched model name, a local folder, a hub id, or a loaded ``LoadedModel``;
    ``backend`` chooses the model code for a name (``mi_catalog.models.loading.BACKENDS``).
    """
    from mi_catalog.models import require_run_extra

    info, entry = resolve(impl_or_entry_id)
    out_path = check_out_dir(out_dir)
    require_run_extra()
    import torch

    from mi_catalog.models.loading import LoadedModel, load_model

    registered = load_impl(info)  # only this module: importing all of them costs 0.2+ s per run
    lm = model if isinstance(model, LoadedModel) else load_model(str(model), device=device, dtype=dtype,
                                                                         backend=backend)  # fmt: skip
    spec = make_spec(registered.module, seed, **spec_overrides)
    count = n if n is not None else int(getattr(spec, "n", 16))
    chosen, examples, described = select_examples(lm, info, task, count, seed, prompts_file)
    planted = getattr(lm.tasks, "planted", None) if prompts_file is None else None
    data = RunData(task=chosen, examples=examples, source=lm.tasks, seed=seed, progress=progress, planted=planted)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_for(lm))
    start = time.perf_counter()
    try:
        output = registered.module.run(lm, spec, data)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    result = RunResult(impl=info.id, model=lm.name, task=chosen, output=output, entry=entry, seed=seed,
                       seconds=seconds, data_source=described, backend=lm.backend)  # fmt: skip
    if out_path is not None:
        write_outputs(result, out_path)
    return result


SMALL_MODEL_PARAMS = 20_000_000


def threads_for(lm: Any) -> int:
    """One thread for small models (the toy, tiny test models): their matmuls are too small to split, and on a
    shared 2-core machine two contending threads ran them 25–40× slower than one. Larger models keep torch's
    default (all cores)."""
    import torch

    n_params = sum(p.numel() for p in lm.model.parameters())
    return 1 if n_params < SMALL_MODEL_PARAMS else torch.get_num_threads()


def write_outputs(result: RunResult, out_dir: Path) -> None:
    """Figures (SVG + CSV), tensors (safetensors) and ``<impl>.json``, each written atomically."""
    from mi_catalog.methods.figures import write_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.impl)  # "pipeline:a+b" → "pipeline_a_b"
    prefix = stem.replace("-", "_")
    written: list[str] = []
    for fig in result.output.figures:
        written.extend(str(p) for p in write_figure(fig, out_dir, prefix))
    if result.output.tensors:
        from safetensors.torch import save_file

        target = out_dir / f"{prefix}.safetensors"
        tmp = target.with_name(f".{target.name}.tmp")
        save_file({k: v.detach().float().cpu().contiguous() for k, v in result.output.tensors.items()}, str(tmp))
        os.replace(tmp, target)
        written.append(str(target))
    result.figures = written
    atomic_write_text(out_dir / f"{stem}.json", result.to_json() + "\n")
