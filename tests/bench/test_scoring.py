"""Benchmark scores on hand-made cases: precision@k, rank of the true units, AUROC, faithfulness, steering."""

from __future__ import annotations

import math

import pytest

from mi_catalog.bench.scoring import (
    Unit,
    accuracy_loss,
    auroc,
    faithfulness,
    finding_unit,
    precision_at_k,
    ranking,
    steer_scores,
    success,
    true_rank,
)
from mi_catalog.methods.contract import Finding, Improve, SideEffect

HEADS = [Unit("head", layer, head) for layer in range(2) for head in range(4)]  # 8 units
TRUE = {Unit("head", 1, 0), Unit("head", 1, 1)}


def test_finding_units_and_ranking_keep_the_first_mention() -> None:
    findings = [
        Finding("residual-stream", 2, None, 9.0, "resid_post.2 @ last"),
        Finding("attention-head", 1, 0, 5.0),
        Finding("residual-stream", 2, None, 4.0, "resid_post.2 @ subject_last"),  # same layer, another position
        Finding("neuron", 3, 7, 3.0),
        Finding("attention-head", 0, 2, 2.0),
        Finding("circuit", None, None, 1.0, "edge embed→attn L0"),
        Finding("residual-stream", 1, 48, 0.5, "resid_post.1 dim 48"),  # a dimension of layer 1 → the layer
    ]
    assert ranking(findings, "head") == [Unit("head", 1, 0), Unit("head", 0, 2)]
    assert ranking(findings, "resid") == [Unit("resid", 2), Unit("resid", 1)]
    assert ranking(findings, "neuron") == [Unit("neuron", 3, 7)]
    assert finding_unit(Finding("circuit", None, None, 1.0)) is None
    assert finding_unit(Finding("ffn", 2, None, 1.0)) is None
    assert Unit("neuron", 2, 17).label == "L2N17" and Unit("resid", 1).label == "resid L1"


def test_precision_at_k() -> None:
    perfect = [Unit("head", 1, 1), Unit("head", 1, 0), Unit("head", 0, 0)]
    assert precision_at_k(perfect, TRUE) == 1.0
    assert precision_at_k([Unit("head", 0, 0), Unit("head", 1, 0)], TRUE) == 0.5
    assert precision_at_k([Unit("head", 1, 0)], TRUE) == 0.5  # a missing slot counts as wrong
    assert precision_at_k([], TRUE) == 0.0
    assert precision_at_k([Unit("head", 0, 0), Unit("head", 1, 0)], TRUE, k=1) == 0.0
    with pytest.raises(ValueError):
        precision_at_k(perfect, set())


def test_true_rank() -> None:
    assert true_rank([Unit("head", 1, 0), Unit("head", 1, 1)], TRUE, 8) == 1.5  # the best possible
    assert true_rank([Unit("head", 0, 0), Unit("head", 1, 0), Unit("head", 1, 1)], TRUE, 8) == 2.5
    # nothing listed: every unit ties at the middle rank (8 + 1) / 2
    assert true_rank([], TRUE, 8) == 4.5
    # one listed at rank 1, the other among the 7 unlisted: ranks 2..8, mean 5
    assert true_rank([Unit("head", 1, 0)], TRUE, 8) == (1 + 5) / 2


def test_auroc() -> None:
    best = [Unit("head", 1, 0), Unit("head", 1, 1), *[u for u in HEADS if u not in TRUE]]
    worst = list(reversed(best))
    assert auroc(best, TRUE, HEADS) == 1.0
    assert auroc(worst, TRUE, HEADS) == 0.0
    assert auroc([], TRUE, HEADS) == 0.5  # everything tied
    # one true unit first, the other unlisted (tied with the 5 unlisted negatives at the bottom)
    half = auroc([Unit("head", 1, 0), Unit("head", 0, 0)], TRUE, HEADS)
    assert half == pytest.approx((6 + 0.5 * 5) / 12)  # first beats all 6; second ties 5, loses to L0H0
    assert math.isnan(auroc(best, set(HEADS), HEADS))  # no negatives: undefined


def test_faithfulness() -> None:
    assert faithfulness(0.8, 0.2) == pytest.approx(0.75)
    assert faithfulness(0.8, 0.8) == 0.0
    assert faithfulness(0.5, 0.6) == pytest.approx(-0.2)  # ablation helped: negative, reported as is
    assert faithfulness(0.0, 0.0) == 0.0


def test_success_counts_the_share_of_the_possible_change_in_the_intended_direction() -> None:
    assert success(Improve("refusal", "refusal_rate", 1.0, 0.1, (0.0, 0.2), goal="decrease")) == pytest.approx(0.9)
    assert success(Improve("sentiment", "behaviour_rate", 0.0, 0.36, (0.2, 0.5))) == pytest.approx(0.36)
    assert success(Improve("language", "accuracy", 1.0, 1.0, (1.0, 1.0), goal="decrease")) == 0.0
    assert success(Improve("x", "rate", 0.5, 0.75, (0.6, 0.9))) == pytest.approx(0.5)
    assert success(Improve("x", "speedup", 1.0, 1.3, (1.2, 1.4))) == pytest.approx(0.3)
    assert success(Improve("x", "logit_diff", 2.0, -2.0, (-3.0, -1.0), goal="decrease")) == 1.0
    assert success(Improve("x", "logit_diff", 4.0, 3.0, (2.0, 3.5), goal="decrease")) == pytest.approx(0.25)
    assert success(Improve("x", "rate", float("nan"), 0.5, (0.0, 1.0))) == 0.0
    # the wrong way counts nothing: DoLa meant to raise accuracy
    assert success(Improve("facts", "accuracy", 1.0, 0.5, (0.3, 0.7))) == 0.0
    assert success(Improve("refusal", "refusal_rate", 0.2, 0.6, (0.4, 0.8), goal="decrease")) == 0.0


def test_the_intended_direction_is_the_runs_declared_goal_not_its_metric_name() -> None:
    # A metric name that says "lower" does not turn an increase goal around (the old name heuristic did).
    raise_it = Improve("x", "rate (lower is better)", 0.2, 0.6, (0.5, 0.7))
    assert raise_it.goal == "increase" and raise_it.direction == 1 and success(raise_it) == pytest.approx(0.5)
    lower_it = Improve("x", "efficacy", 0.8, 0.2, (0.1, 0.3), goal="decrease")
    assert lower_it.direction == -1 and success(lower_it) == pytest.approx(0.75)
    assert lower_it.to_dict()["goal"] == "decrease"
    with pytest.raises(ValueError, match="goal must be one of increase, decrease"):
        Improve("x", "rate", 0.0, 1.0, (0.0, 1.0), goal="higher")  # type: ignore[arg-type]


def test_steer_scores_discount_side_effects() -> None:
    effects = [
        SideEffect("facts", 1.0, 0.5),  # half lost
        SideEffect("icl", 0.8, 0.8),  # nothing lost
        SideEffect("bias", 0.0, 0.0),  # the model cannot do it: not counted
        SideEffect("induction", 0.5, 0.75),  # improved: no loss
        SideEffect("kl_neutral", 0.0, 0.2, is_task=False),
    ]
    assert accuracy_loss(effects) == pytest.approx(0.5 / 3)
    s = steer_scores(Improve("refusal", "refusal_rate", 1.0, 0.0, (0.0, 0.0), goal="decrease"), effects)
    assert s.success == 1.0 and s.kl_neutral == pytest.approx(0.2)
    assert s.combined == pytest.approx((1 - 0.5 / 3) * math.exp(-0.2))
    clean = steer_scores(Improve("refusal", "refusal_rate", 1.0, 0.0, (0.0, 0.0), goal="decrease"), [])
    assert (clean.accuracy_loss, clean.kl_neutral, clean.combined) == (0.0, 0.0, 1.0)


def test_margin_faithfulness() -> None:
    from mi_catalog.bench.scoring import margin_faithfulness

    assert margin_faithfulness([4.0, 2.0], [2.0, 2.0]) == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert margin_faithfulness([4.0, 2.0], [-3.0, -1.0]) == 1.0  # flipped answers lose all of it
    assert margin_faithfulness([4.0, -1.0], [0.0, 5.0]) == 1.0  # a wrong prompt (margin ≤ 0) is left out
    assert margin_faithfulness([2.0], [3.0]) == pytest.approx(-0.5)  # the ablation widened the margin
    assert margin_faithfulness([-1.0], [0.0]) == 0.0
