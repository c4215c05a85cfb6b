"""The training recipe still learns, and training is deterministic."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("torch")

from mi_catalog.toy.evaluate import evaluate
from mi_catalog.toy.tasks import TASKS
from mi_catalog.toy.tokenizer import build_tokenizer
from mi_catalog.toy.train import V1_RECIPE, V2_RECIPE, Recipe, train

# A few seconds on one thread: refusal alone is learnable in ~100 steps (from scratch).
SMALL = Recipe(steps=100, batch_size=32, warmup_steps=20, mixture=(("refusal", 1.0),), base=None)
# The shipped recipe's two stages (v1 from scratch, then v2 continued), a few steps each.
TINY_BASE = replace(V1_RECIPE, steps=4, batch_size=8, warmup_steps=2)
TINY = Recipe(steps=5, batch_size=8, warmup_steps=2, base=TINY_BASE, base_weights_sha256=None)


@pytest.mark.slow
def test_reduced_recipe_learns_refusal() -> None:
    log: list[dict[str, float]] = []
    model = train(SMALL, progress=False, log=log)
    assert log[0]["loss"] > 2 * log[-1]["loss"], log
    accuracy = evaluate(model, build_tokenizer(), n=100, tasks=("refusal",))["refusal"]
    assert 0.9 <= accuracy <= 1.0


def test_training_is_deterministic() -> None:
    import torch

    first, second = train(TINY, progress=False), train(TINY, progress=False)
    assert _same_weights(first, second)
    other = train(replace(TINY, seed=1), progress=False)
    assert other.config.toy_training["base"]["seed"] == 1  # the base stage follows the recipe's seed
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def _same_weights(a, b) -> bool:  # type: ignore[no-untyped-def]
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_current_recipe_continues_the_pinned_v2_weights_which_continue_v1() -> None:
    import hashlib

    from mi_catalog.toy.train import BASE_CHECKPOINTS, V1_WEIGHTS_SHA256, V2_WEIGHTS_SHA256

    recipe = Recipe()
    assert recipe.recipe_version == 3 and recipe.base == V2_RECIPE and recipe.base_weights_sha256 == V2_WEIGHTS_SHA256
    assert (V2_RECIPE.base, V2_RECIPE.base_weights_sha256) == (V1_RECIPE, V1_WEIGHTS_SHA256)
    assert (V2_RECIPE.steps, V2_RECIPE.learning_rate, V2_RECIPE.recipe_version) == (2000, 1e-3, 2)
    assert (V1_RECIPE.steps, V1_RECIPE.learning_rate, V1_RECIPE.recipe_version, V1_RECIPE.base) == (6000, 3e-3, 1, None)
    assert recipe.learning_rate < V1_RECIPE.learning_rate  # a gentler continuation than the from-scratch run
    for version, pinned in ((1, V1_WEIGHTS_SHA256), (2, V2_WEIGHTS_SHA256)):
        packaged = (BASE_CHECKPOINTS / f"v{version}" / "model.safetensors").read_bytes()
        assert hashlib.sha256(packaged).hexdigest() == pinned
    assert Recipe(seed=4).base.seed == 4 and Recipe(seed=4).base.base.seed == 4  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="architecture"):
        Recipe(hidden_size=32)
    # Two steps on the packaged v2 weights: the pin is checked (its own record names the pinned v1) and recorded.
    model = train(replace(recipe, steps=2, batch_size=4, warmup_steps=1), progress=False)
    assert model.config.toy_training["base"]["weights_sha256"] == V2_WEIGHTS_SHA256
    assert model.config.toy_training["base"]["steps"] == 2000
    assert model.config.toy_training["base"]["base"]["weights_sha256"] == V1_WEIGHTS_SHA256
    with pytest.raises(ValueError, match="not the pinned base"):
        train(replace(recipe, steps=1, base_weights_sha256="0" * 64), progress=False)
    with pytest.raises(ValueError, match="differs in: seed"):  # the packaged weights are seed 0's
        train(replace(recipe, steps=1, seed=1), progress=False)


def test_continuation_keeps_the_base_weights_and_grows_the_vocabulary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from mi_catalog.toy.ship import weights_sha256
    from mi_catalog.toy.tasks import vocabulary
    from mi_catalog.toy.train import _grow_vocabulary

    base = train(TINY_BASE, out_dir=tmp_path / "v1", progress=False)
    assert base.config.vocab_size == len(vocabulary(1)) == 308
    grown = _grow_vocabulary(base, TINY, len(vocabulary(2)))
    embedding = grown.model.embed_tokens.weight
    assert embedding.shape[0] == len(vocabulary(2)) and grown.lm_head.weight is embedding  # still tied
    assert torch.equal(embedding[:308], base.model.embed_tokens.weight)
    assert 0.01 < float(embedding[308:].detach().std()) < 0.03  # the appended rows: N(0, 0.02), seeded
    assert torch.equal(embedding[308:], _grow_vocabulary(base, TINY, 346).model.embed_tokens.weight[308:])
    base_state, grown_state = base.state_dict(), grown.state_dict()
    for name, value in base_state.items():
        if "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(value, grown_state[name]), name
    # Continuing from a saved base checkpoint gives the same weights as training the base in the same run,
    # and the record names the base's weights file either way.
    continued = train(TINY, progress=False, base_dir=tmp_path / "v1")
    in_one_run = train(TINY, progress=False)
    assert _same_weights(continued, in_one_run)
    digest = weights_sha256(tmp_path / "v1")
    assert continued.config.toy_training["base"]["weights_sha256"] == digest
    assert in_one_run.config.toy_training["base"]["weights_sha256"] == digest
    pinned = replace(TINY, base_weights_sha256=digest)
    assert _same_weights(train(pinned, progress=False, base_dir=tmp_path / "v1"), in_one_run)
    with pytest.raises(ValueError, match="not trained with the base recipe"):
        train(replace(TINY, seed=3), progress=False, base_dir=tmp_path / "v1")


def test_saved_checkpoint_loads_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from mi_catalog.toy import load_model_dir

    model = train(TINY, out_dir=tmp_path / "ckpt", progress=False)
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
    args = ["toy", "train", "--steps", "3", "--base-steps", "2", "--seed", "2", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "mi_catalog", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["steps"] == 3 and card["training"]["seed"] == 2
    assert card["training"]["base"]["steps"] == 2 and card["training"]["base"]["seed"] == 2
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
