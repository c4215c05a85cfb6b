"""SAE feature steering on the toy: the features it finds for the planted target language separate held-out
prompts, clamping them to 0 lowers the 'zu' output rate (and as many random features do not), and the model is
left exactly as found. One SAE (the defaults of `mi-catalog sae train`, seed 0) is trained per module and put in
the session's cache; the 10 seeds vary the run's prompts, split and control draw — not the dictionary (a slow
test varies the SAE's own seed). Without a cached SAE the run trains one in memory and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mi_catalog import sae as S  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from mi_catalog.models.hooks import hook_snapshot  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402

IMPL = "sae-feature-steering"


@pytest.fixture(scope="module")
def cached_sae(toy):  # type: ignore[no-untyped-def]
    sae = S.train_sae(toy)  # the CLI's defaults: resid_post.1, 4 × d_model features, 1000 steps
    path = S.save_sae(sae)  # into the test session's isolated cache
    yield sae
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


@pytest.mark.parametrize("seed", range(10))
def test_language_features_found_and_suppressed(toy, cached_sae, seed: int) -> None:  # type: ignore[no-untyped-def]
    before_state = {k: v.detach().clone() for k, v in toy.model.state_dict().items()}
    hooks = hook_snapshot(toy.model)
    result = run_impl(IMPL, model=toy, task="language", seed=seed, n=64)
    m, iv = result.metrics, result.output.intervals
    assert m["sae_trained_in_run"] == 0 and m["sae_d_sae"] == cached_sae.d_sae  # read from the cache
    # Located: the top feature for target language 'zu' (planted label) separates held-out prompts.
    assert m["sae_top_feature_auroc"] >= 0.9 and m["sae_features_auroc"] >= 0.9
    assert m["sae_n_features"] == 8 and len(result.output.findings) == 8
    assert all(f.object == "sae-feature" and f.layer == 1 for f in result.output.findings)
    # Steered: clamping those features to 0 lowers the 'zu' rate on held-out 'zu' prompts (whole interval below);
    # the same number of random features does not.
    assert m["concept_rate_before"] >= 0.9
    assert m["concept_rate_suppressed"] <= m["concept_rate_before"] - 0.3
    assert iv["concept_rate_suppressed"][1] < m["concept_rate_before"]
    assert m["concept_rate_random_features"] >= m["concept_rate_before"] - 0.1
    improve = result.output.improve
    assert improve is not None and improve.after == pytest.approx(m["concept_rate_suppressed"])
    assert any(s.name == "kl_neutral" for s in result.output.side_effects)
    # Left exactly as found.
    after_state = toy.model.state_dict()
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)
    assert hook_snapshot(toy.model) == hooks


def test_zero_features_is_a_no_op(toy, cached_sae) -> None:  # type: ignore[no-untyped-def]
    """k = 0 clamps nothing: the 'after' equals the 'before' and the neutral KL is 0 (the measurement can fail)."""
    m = run_impl(IMPL, model=toy, task="language", seed=0, n=32, k=0).output
    assert m.metrics["sae_n_features"] == 0
    assert m.improve is not None and m.improve.after == m.improve.before
    assert all(s.after == pytest.approx(s.before, abs=1e-6) for s in m.side_effects)


def test_without_a_cached_sae_trains_in_memory_and_writes_nothing(universal_prompts: Path) -> None:
    cache = S.saes_dir()
    before = sorted(cache.rglob("*")) if cache.exists() else []
    lm = tiny_model("gpt2", seed=4)
    result = run_impl(IMPL, model=lm, prompts_file=universal_prompts, n=10, train_steps=50, prompts_per_task=8)
    assert result.metrics["sae_trained_in_run"] == 1
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == before


@pytest.mark.slow
@pytest.mark.parametrize("sae_seed", [1, 2])
def test_other_dictionaries_find_and_suppress_too(toy, sae_seed: int) -> None:  # type: ignore[no-untyped-def]
    m = run_impl(IMPL, model=toy, task="language", seed=sae_seed, sae="train", sae_seed=sae_seed).metrics  # n = 96
    assert m["sae_trained_in_run"] == 1
    assert m["sae_top_feature_auroc"] >= 0.9
    assert m["concept_rate_suppressed"] <= m["concept_rate_before"] - 0.3
