"""The steering artifacts are interventions that always restore the model, and the Improve/side-effect
measurements mean what they say (a no-op costs nothing; a real edit shows up in the numbers)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.data import RunData  # noqa: E402
from mi_catalog.models.loading import load_model  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():  # type: ignore[no-untyped-def]
    return load_model("toy")


@pytest.fixture(scope="module")
def data(toy):  # type: ignore[no-untyped-def]
    return RunData(task="refusal", examples=toy.tasks.examples("refusal", 16, seed=0), source=toy.tasks)


def _state(lm):  # type: ignore[no-untyped-def]
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def _artifacts(lm):  # type: ignore[no-untyped-def]
    d = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    name = next(n for n, p in lm.model.named_parameters() if p.dim() == 2)
    param = dict(lm.model.named_parameters())[name]
    return {
        "vector": st.SteeringVector("resid_post.1", d, coeff=4.0),
        "ablation": st.DirectionAblation(d, ("resid_pre.1", "resid_pre.2")),
        "units": st.UnitScaling((st.Unit("head_out.1", 0), st.Unit("mlp_act.2", 5), st.Unit("mlp_act.2", 7)), 0.0),
        "weights": st.WeightEdit({name: torch.zeros_like(param)}),
    }


@pytest.mark.parametrize("kind", ["vector", "ablation", "units", "weights"])
def test_every_artifact_changes_the_run_and_restores_the_model(toy, data, kind):  # type: ignore[no-untyped-def]
    artifact = _artifacts(toy)[kind]
    before_state = _state(toy)
    before = st.next_token_logits(toy, data.prompts)
    steered = st.next_token_logits(toy, data.prompts, artifact)
    assert not torch.allclose(before, steered), "the intervention had no effect"
    after = st.next_token_logits(toy, data.prompts)
    assert torch.equal(before, after)
    assert all(torch.equal(v, _state(toy)[k]) for k, v in before_state.items())


def test_combined_applies_every_part(toy, data):  # type: ignore[no-untyped-def]
    parts = _artifacts(toy)
    both = st.Combined([parts["vector"], parts["units"]])
    only_vector = st.next_token_logits(toy, data.prompts, parts["vector"])
    combined = st.next_token_logits(toy, data.prompts, both)
    assert not torch.allclose(only_vector, combined)
    assert torch.equal(st.next_token_logits(toy, data.prompts), st.next_token_logits(toy, data.prompts, st.Combined([])))


def test_zero_strength_is_a_no_op(toy, data):  # type: ignore[no-untyped-def]
    vec = _artifacts(toy)["vector"].with_coeff(0.0)
    assert torch.equal(st.next_token_logits(toy, data.prompts), st.next_token_logits(toy, data.prompts, vec))
    assert float(st.kl_per_prompt(toy, data.prompts, vec).abs().max()) == 0.0


def test_batched_equals_unbatched(toy, data):  # type: ignore[no-untyped-def]
    vec = _artifacts(toy)["vector"]
    whole = st.next_token_logits(toy, data.prompts, vec, batch_size=64)
    one_by_one = st.next_token_logits(toy, data.prompts, vec, batch_size=1)
    assert torch.allclose(whole, one_by_one, atol=1e-5)


def test_side_effects_of_a_no_op_are_nothing_and_of_a_real_edit_are_visible(toy, data):  # type: ignore[no-untyped-def]
    none = st.side_effects(toy, data, st.NoIntervention(), n=12)
    names = [s.name for s in none]
    assert "refusal" not in names and "facts" in names and names[-1] == "kl_neutral"
    assert all(s.before == s.after for s in none)
    heavy = st.side_effects(toy, data, st.SteeringVector("resid_pre.1", torch.ones(toy.d_model), coeff=30.0), n=12)
    assert heavy[-1].after > 0.1
    assert any(s.after < s.before for s in heavy if s.is_task)


def test_improve_reports_means_and_an_interval_around_the_after_mean() -> None:
    result = st.improve("refusal", "refusal_rate", [1, 1, 1, 0], [0, 0, 1, 0, 0, 0], seed=3, goal="decrease")
    assert result.before == 0.75 and abs(result.after - 1 / 6) < 1e-6 and result.goal == "decrease"
    assert result.interval[0] <= result.after <= result.interval[1]
    assert result.to_dict()["interval"] == [result.interval[0], result.interval[1]]
    with pytest.raises(TypeError):  # every steerer states its goal
        st.improve("refusal", "refusal_rate", [1.0], [0.0])  # type: ignore[call-arg]


def test_refusal_token_rate_reads_the_planted_refusal(toy, data):  # type: ignore[no-untyped-def]
    sorry = [toy.token_id(data.planted.refuse_token if data.planted else "sorry")]
    harmful = [ex.prompt for ex in data.examples if ex.label == "harmful"]
    harmless = [ex.prompt for ex in data.examples if ex.label == "harmless"]
    assert harmful and harmless
    assert float(st.token_rate(toy, harmful, sorry).mean()) == 1.0
    assert float(st.token_rate(toy, harmless, sorry).mean()) == 0.0
