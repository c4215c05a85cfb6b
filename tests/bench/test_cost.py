"""Forward/backward passes are counted on the model, and the counting hooks go away afterwards."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.bench.cost import count_passes  # noqa: E402
from mi_catalog.models import load_model  # noqa: E402
from mi_catalog.models.hooks import hook_snapshot, run_with_grads  # noqa: E402


def test_counts_forward_and_backward_passes_and_removes_its_hooks() -> None:
    lm = load_model("toy")
    before = hook_snapshot(lm.model)
    batch = lm.encode(["anna berg lives in", "boris costa plays", "a b"])
    with count_passes(lm) as passes:
        lm.logits(batch)
        lm.logits(batch)
        run_with_grads(lm, batch, ["resid_post.1"], lambda logits: logits[:, -1].logsumexp(-1).sum())
        lm.generate(["anna berg lives in"], max_new_tokens=2)  # no KV cache: one pass per new token
    assert (passes.forward, passes.backward) == (5, 1)
    assert passes.forward_rows == 3 * 3 + 2
    with count_passes(lm) as passes:
        logits = lm.forward(batch).logits  # gradients on: a backward through the logits counts once each
        logits[:, -1].sum().backward(retain_graph=True)
        logits[:, -1].sum().backward()
    lm.model.zero_grad(set_to_none=True)
    assert (passes.forward, passes.backward) == (1, 2)
    assert hook_snapshot(lm.model) == before
