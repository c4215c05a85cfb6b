"""The model layer: load a causal LM, name its sites, and intervene on them.

Importing this package is light (no torch): the public names below resolve
lazily from the submodules, which need the ``run`` extra (torch, transformers).

>>> from mi_catalog.models import load_model, capture, patch          # doctest: +SKIP
>>> lm = load_model("toy")
>>> batch = lm.encode(["anna berg lives in"])
>>> with capture(lm, ["resid_post.1", "head_out.0"]) as cache:
...     logits = lm.logits(batch)
>>> cache["head_out.0"].shape   # [batch, pos, n_heads, d_head]
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from mi_catalog.errors import UsageError

# Which model code runs a checkpoint (see mi_catalog.models.loading); here, torch-free, for the CLI's choices.
BACKENDS = ("auto", "native", "transformers")

_EXPORTS = {
    # loading
    "Batch": "loading",
    "LoadedModel": "loading",
    "load_model": "loading",
    "wrap_model": "loading",
    "parse_dtype": "loading",
    "TOY_NAME": "loading",
    # families (pure data)
    "Family": "families",
    "FAMILIES": "families",
    "UnsupportedModelError": "families",
    "family_for_model": "families",
    "describe_supported": "families",
    "supported_classes": "families",
    # sites (pure data)
    "Site": "sites",
    "SiteError": "sites",
    "SITE_NAMES": "sites",
    "site": "sites",
    # interventions
    "Cache": "hooks",
    "ForwardState": "hooks",
    "capture": "hooks",
    "run_with_cache": "hooks",
    "patch": "hooks",
    "ablate": "hooks",
    "scale": "hooks",
    "add_vector": "hooks",
    "project_out": "hooks",
    "edit": "hooks",
    "all_sites": "hooks",
    "position_mask": "hooks",
    "count_hooks": "hooks",
    "hook_snapshot": "hooks",
    # weights
    "W_E": "weights",
    "W_U": "weights",
    "W_in": "weights",
    "W_gate": "weights",
    "W_out": "weights",
    "b_out": "weights",
    "W_O": "weights",
    "b_O": "weights",
    "W_QKV": "weights",
    "neuron_key": "weights",
    "neuron_value": "weights",
    "unembed": "weights",
}

__all__ = [*sorted(_EXPORTS), "RunExtraMissing", "prepare_cli_process", "require_run_extra"]

RUN_EXTRA_HINT = "pip install 'mi-catalog[run]'"


class RunExtraMissing(UsageError, ImportError):
    """torch/transformers are not installed (they are the optional ``run`` extra); the CLI prints it as one
    line (exit 2) like any other usage error."""


def require_run_extra() -> None:
    """Raise :class:`RunExtraMissing` with the install command when torch or transformers is missing."""
    missing = [name for name in ("torch", "transformers") if not _installed(name)]
    if missing:
        raise RunExtraMissing(f"running models needs {' and '.join(missing)}; install with: {RUN_EXTRA_HINT}")


def _installed(name: str) -> bool:
    """Whether ``import name`` would find the package — without importing it (transformers alone costs ~1 s, and
    our own Llama path never needs it)."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None: blocked (the tests simulate a missing extra this way)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def prepare_cli_process() -> None:
    """What a command that runs models does first: check the run extra (:class:`RunExtraMissing` otherwise), then
    keep freed memory in the process (:mod:`.allocator`: capturing activations no longer page-faults them back)."""
    require_run_extra()
    from mi_catalog.models.allocator import keep_freed_memory

    keep_freed_memory()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mi_catalog.models' has no attribute {name!r}")
    if module not in ("families", "sites"):
        require_run_extra()
    return getattr(importlib.import_module(f"mi_catalog.models.{module}"), name)
