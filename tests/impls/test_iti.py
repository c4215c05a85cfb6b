"""iti: the heads whose probes decode the toy's sentiment carry it causally — shifting the top-K along their
mass-mean direction turns held-out negative reviews positive (10 seeds); random directions on the same heads
with the same α·σ do not; α = 0 is a no-op; each shift has length α·σ."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from support import strict_xfail_at  # noqa: E402

from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from reference_impls import iti  # noqa: E402

SEEDS = range(10)

# On both recipes one head carries sentiment causally: shifting L1H3 alone flips every held-out negative review
# (alpha 2-10; any other head alone: <= 0.15 on v3, <= 0.21 on v2, seed 8). Recipe v3's later heads decode
# sentiment less cleanly (mean test accuracy over the 10 seeds: L2H1 0.88, L2H3 0.79, L3H0 0.90; v2: 0.96, 0.95,
# 1.00), so with 13 validation prompts more of them tie with L1H3 at 1.0, or beat it, on noise.
_MISSES = {
    8: (
        "recipe-v3 toy: steered rate 0.00 (alpha 20; no alpha of the grid above 0.083): L1H3, the one head whose "
        "shift flips sentiment, misses 1 of the 13 validation prompts (0.923; test 0.969) and four heads at 1.0 "
        "(L1H0, L2H0, L2H2, L3H1) are shifted instead; v2 at this seed: L1H3 at 1.0, steered 1.00"
    ),
    9: (
        "recipe-v3 toy: steered 1.00 but the shifted heads' test accuracy is 0.898 (< 0.9): L1H0 (test 0.812) and "
        "L3H0 (0.844) tie at 1.0 on the 13 validation prompts with L1H3 and L2H0; v2 at this seed: 0.973"
    ),
}


@pytest.mark.parametrize("seed", strict_xfail_at(SEEDS, _MISSES))
def test_shifting_the_probed_heads_flips_sentiment(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("iti", model=toy, task="sentiment", seed=seed, n_side=4)
    m = result.metrics
    assert m["behaviour_rate_before"] <= 0.1 and m["behaviour_rate_steered"] >= 0.9
    assert m["iti_heads_val_accuracy"] >= 0.9 and m["iti_heads_test_accuracy"] >= 0.9  # held-out probes
    assert m["probe_best_head_accuracy"] >= m["probe_majority_rate"]
    shifted = [f for f in result.output.findings if f.label.endswith("(shifted)")]
    assert len(shifted) == m["iti_top_k"] == 4
    # The findings are ranked by validation accuracy and the shifted heads are among the best.
    assert min(f.score for f in shifted) >= sorted((f.score for f in result.output.findings), reverse=True)[3] - 1e-9
    assert result.output.improve is not None and result.output.side_effects[-1].name == "kl_neutral"


def _shift(toy, seed: int = 0) -> tuple[iti.HeadShift, list[str], list[int]]:  # type: ignore[no-untyped-def]
    result = run_impl("iti", model=toy, task="sentiment", seed=seed, n_side=4)
    theta, sigma = result.output.tensors["theta"], result.output.tensors["sigma"]
    heads = [(int(a), int(b)) for a, b in result.output.tensors["heads"].tolist()]  # selection order, as theta
    prompts = [ex.prompt for ex in toy.tasks.examples("sentiment", 64, seed=50) if ex.label == "negative"]
    return iti.HeadShift(heads, theta, sigma), prompts, [toy.token_id("positive")]


def test_random_directions_on_the_same_heads_do_far_less(toy) -> None:  # type: ignore[no-untyped-def]
    shift, prompts, positive = _shift(toy)
    alpha = 5.0
    real = float(st.token_rate(toy, prompts, positive, shift.at(toy, alpha)).mean())
    gen = torch.Generator().manual_seed(0)
    randoms = []
    for _ in range(3):
        d = torch.randn(shift.theta.shape, generator=gen)
        d = d / d.norm(dim=-1, keepdim=True)
        fake = iti.HeadShift(shift.heads, d, shift.sigma)
        randoms.append(float(st.token_rate(toy, prompts, positive, fake.at(toy, alpha)).mean()))
    assert real >= 0.9 and max(randoms) <= 0.3, (real, randoms)


def test_alpha_zero_is_a_no_op_and_the_shift_has_length_alpha_sigma(toy) -> None:  # type: ignore[no-untyped-def]
    shift, prompts, _ = _shift(toy, seed=1)
    assert torch.equal(st.next_token_logits(toy, prompts), st.next_token_logits(toy, prompts, shift.at(toy, 0.0)))
    combined = shift.at(toy, 3.0)
    lengths = {}
    for part in combined.parts:
        assert isinstance(part, st.SteeringVector)
        layer = int(part.site.split(".")[1])
        for h in part.heads or []:  # type: ignore[union-attr]
            lengths[(layer, h)] = float(part.coeff * part.vector[h].norm())
    for k, head in enumerate(shift.heads):
        assert lengths[head] == pytest.approx(3.0 * float(shift.sigma[k]), rel=1e-5)
