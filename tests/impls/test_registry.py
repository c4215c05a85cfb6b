"""Every registered implementation, on every tiny architecture family, honours the contract:
it runs, is deterministic under a seed, leaves the model exactly as it found it, returns JSON-safe output,
and reports only metrics it declares and the glossary defines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mi_catalog.impl_info import discover_impls
from mi_catalog.methods.contract import Finding
from mi_catalog.methods.glossary import GLOSSARY
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import hook_snapshot
from mi_catalog.models.tiny import tiny_model
from mi_catalog.vocab import OBJECT

IMPL_IDS = sorted(discover_impls())
# Small settings per implementation so the whole matrix stays quick (every run uses all 10 universal rows).
QUICK: dict[str, dict[str, object]] = {
    "activation-patching": {"noise_samples": 2, "head_set": 2},
    "shortgpt": {"timing": False},  # wall-clock tokens/s differ between two runs; the estimate is deterministic
}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(impl: str, lm, prompts: Path, seed: int = 0):  # type: ignore[no-untyped-def]
    return run_impl(impl, model=lm, prompts_file=prompts, n=10, seed=seed, **QUICK.get(impl, {}))


@pytest.mark.parametrize("impl", IMPL_IDS)
def test_declaration_is_complete(impl: str) -> None:
    info = discover_impls()[impl]
    assert info.problems() == []
    assert all(m in GLOSSARY for m in info.metrics)


@pytest.mark.parametrize("impl", IMPL_IDS)
def test_contract_on_every_tiny_family(impl: str, tiny, universal_prompts: Path) -> None:  # type: ignore[no-untyped-def]
    before, hooks_before = _state(tiny.model), hook_snapshot(tiny.model)
    grads_before = [p.grad for p in tiny.model.parameters()]
    first = _run(impl, tiny, universal_prompts, seed=3)
    # The model is exactly as found: weights, hooks, gradients, eval mode.
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed"
    assert hook_snapshot(tiny.model) == hooks_before, "hooks left behind"
    assert [p.grad for p in tiny.model.parameters()] == grads_before, "parameter .grad touched"
    assert not tiny.model.training
    # JSON-safe, with declared metrics only, and typed findings on the vocabulary's objects.
    payload = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    declared = set(discover_impls()[impl].metrics)
    assert set(payload["metrics"]) <= declared, set(payload["metrics"]) - declared
    assert payload["metrics"], "no metrics"
    for f in first.output.findings:
        assert isinstance(f, Finding) and f.object in OBJECT.ids
    scores = [f.score for f in first.output.findings]
    assert scores == sorted(scores, reverse=True), "findings are not ranked best first"
    # Deterministic under a seed.
    again = _run(impl, tiny, universal_prompts, seed=3)
    a, b = first.to_dict(), again.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_batched_equals_unbatched_patching(universal_prompts: Path) -> None:
    """Restorations in one big batch give the same numbers as one restoration per forward pass."""
    lm = tiny_model("gpt2", seed=2)
    big = run_impl("activation-patching", model=lm, prompts_file=universal_prompts, n=2, noise_samples=2)
    small = run_impl("activation-patching", model=lm, prompts_file=universal_prompts, n=2, noise_samples=2,
                     batch_size=1)  # fmt: skip
    for key, value in big.output.tensors.items():
        assert torch.allclose(value, small.output.tensors[key], atol=1e-5), key
