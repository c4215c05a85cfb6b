"""SAE feature steering on the toy: the features it finds for the planted target language separate held-out
prompts, clamping them to 0 lowers the 'zu' output rate (and as many random features do not), and the model is
left exactly as found. One SAE (the defaults of `mi-catalog sae train`, seed 0) is trained per module and put in
the session's cache; the 10 seeds vary the run's prompts, split and control draw — not the dictionary (a slow
test varies the SAE's own seed). Without a cached SAE the run trains one in memory and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from support import strict_xfail_at  # noqa: E402

from mi_catalog import sae as S  # noqa: E402
from mi_catalog.methods.data import RunData  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from mi_catalog.methods.steering import token_rate  # noqa: E402
from mi_catalog.models.hooks import hook_snapshot  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402
from reference_impls import sae_feature_steering as sfs  # noqa: E402

IMPL = "sae-feature-steering"

# Recipe v3 trains a monolingual continuation ("SUBJECT VERB" -> a noun in the verb's language), so a translation
# prompt that ends on a zu verb ("... = zu-noun zu-verb", the third target word, position 2) has a second route to
# its language: the verb just read, which the clamped "English source" features do not carry (the test below).
# Whether a seed clears the bar then depends on how many of its held-out zu prompts are at position 2.
_V3_ROUTE = (
    "recipe-v3 toy: 'zu' rate 1.0 -> {after} {ci}, short of -0.3 (v2 at this seed: {v2}): {p2} of its {n} held-out "
    "zu prompts end on a zu verb (position 2), where v3's trained continuation writes the noun in the verb's "
    "language - all {p2} stay zu under the clamp; at positions 0-1 {kept} of {rest} stay zu, as on v2"
)
_MISSES = {
    3: _V3_ROUTE.format(after=0.733, ci="[0.533, 0.933]", v2=0.333, p2=6, n=15, kept=5, rest=9),
    9: _V3_ROUTE.format(after=0.706, ci="[0.471, 0.882]", v2=0.647, p2=7, n=17, kept=5, rest=10),
}


@pytest.fixture(scope="module")
def cached_sae(toy):  # type: ignore[no-untyped-def]
    sae = S.train_sae(toy)  # the CLI's defaults: resid_post.1, 4 × d_model features, 1000 steps
    path = S.save_sae(sae)  # into the test session's isolated cache
    yield sae
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


@pytest.mark.parametrize("seed", strict_xfail_at(range(10), _MISSES))
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


def test_a_zu_verb_just_read_keeps_zu_under_the_clamp(toy, cached_sae) -> None:  # type: ignore[no-untyped-def]
    """Why seeds 3 and 9 miss on recipe v3: pooled over the 10 seeds' held-out zu prompts, those ending on a zu verb
    (position 2, the continuation's "SUBJECT VERB" form) keep zu under the clamp (v3: 57 of 58), the others lose it
    as on v2 (v3: 49 of 99 stay zu; v2: 50 of 99). On recipe v2 the position-2 prompts switched too (17 of 58 stay),
    so this fails on v2."""
    kept: dict[bool, list[float]] = {True: [], False: []}  # ends on a zu verb → stays zu under the clamp
    for seed in range(10):
        result = run_impl(IMPL, model=toy, task="language", seed=seed, n=64)
        examples = toy.tasks.examples("language", 64, seed)  # the run's prompts
        split = sfs.classes(toy, RunData(task="language", examples=examples, planted=toy.tasks.planted), sfs.Spec())
        position = {ex.prompt: ex.meta["position"] for ex in examples}
        prompts = [p for p, is_zu in split.test if is_zu]
        features = tuple(f.index for f in result.output.findings if f.index is not None)
        assert len(features) == 8
        clamp = S.FeatureClamp(cached_sae, features, 0.0)
        assert token_rate(toy, prompts, split.concept_tokens).mean() == 1.0
        for prompt, stays in zip(prompts, token_rate(toy, prompts, split.concept_tokens, clamp).tolist(), strict=True):
            kept[position[prompt] == 2].append(stays)
    verb, rest = (sum(kept[k]) / len(kept[k]) for k in (True, False))
    assert len(kept[True]) >= 30 and len(kept[False]) >= 30
    assert verb >= 0.9 and rest <= 0.7, (verb, rest)


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
