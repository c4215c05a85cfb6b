"""The training recipe still learns, and training is deterministic."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from mi_catalog.toy.evaluate import evaluate
from mi_catalog.toy.tasks import TASKS
from mi_catalog.toy.tokenizer import build_tokenizer
from mi_catalog.toy.train import Recipe, train

# A few seconds on one thread: refusal alone is learnable in ~100 steps.
SMALL = Recipe(steps=100, batch_size=32, warmup_steps=20, mixture=(("refusal", 1.0),))


@pytest.mark.slow
def test_reduced_recipe_learns_refusal() -> None:
    log: list[dict[str, float]] = []
    model = train(SMALL, progress=False, log=log)
    assert log[0]["loss"] > 2 * log[-1]["loss"], log
    accuracy = evaluate(model, build_tokenizer(), n=100, tasks=("refusal",))["refusal"]
    assert 0.9 <= accuracy <= 1.0


def test_training_is_deterministic() -> None:
    import torch

    recipe = Recipe(steps=5, batch_size=8, warmup_steps=2)
    first, second = train(recipe, progress=False), train(recipe, progress=False)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = train(Recipe(steps=5, batch_size=8, warmup_steps=2, seed=1), progress=False)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def test_saved_checkpoint_loads_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from mi_catalog.toy import load_model_dir

    recipe = Recipe(steps=3, batch_size=4, warmup_steps=1)
    model = train(recipe, out_dir=tmp_path / "ckpt", progress=False)
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    loaded, tokenizer = load_model_dir(tmp_path / "ckpt")
    ids = tokenizer(["cat sees dog ="], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, loaded(**ids).logits, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folders left behind


@pytest.mark.slow
def test_cli_train_writes_a_loadable_checkpoint_with_card(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    out = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "toy", "train", "--steps", "3", "--seed", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["steps"] == 3 and card["training"]["seed"] == 2
    assert set(card["accuracies"]) == set(TASKS)
    assert (out / "README.md").read_text().startswith("# mi-catalog toy model")


def test_cli_train_rejects_zero_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "toy", "train", "--steps", "0", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--steps" in result.stderr
