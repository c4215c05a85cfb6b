"""ROME — Meng et al., *Locating and Editing Factual Associations in GPT* (NeurIPS 2022), Section 3.

The paper treats one mid-layer FFN output matrix W (at the layer causal tracing points to) as a linear
key-value memory ``v = W k``: the key k is the FFN's hidden activation at the *last subject token*, the value
its output. To make "subject → new object" true it

1. picks the key ``k*`` = the mean key at the last subject token over the subject preceded by a few
   generated prefixes (and alone);
2. finds a value ``v*`` by gradient descent on a vector δ added to the FFN output at the last subject token
   of the edit prompt (and of prefixed copies) so that the model's final prediction is the new object, plus
   a KL "essence" term keeping the subject's own next-token distribution ("{subject} is a") unchanged, a
   decay on δ and a clamp ‖δ‖ ≤ 4 ‖v_init‖;
3. inserts (k*, v*) with the rank-one update that changes W least under the key statistics
   C = E[k kᵀ] (keys over a large text sample):
   ``Ŵ = W + Λ (C⁻¹k*)ᵀ,  Λ = (v* − W k*) / ((C⁻¹k*)ᵀ k*)``;
4. scores each edit on CounterFact: **efficacy** (on the edit prompt p(new) > p(true)), **generalisation**
   (the same on paraphrases) and **specificity** (on prompts about neighbouring subjects, p(their true
   object) > p(new)), averaged over edits, each made one at a time.

What we do: exactly that, on the held-out half of the task's facts (one edit at a time, each a
:class:`~mi_catalog.methods.steering.WeightEdit` that ``edit_weights`` restores). The edit site is
``Spec.layer``/``Spec.token`` or, by default, the FFN output whose restoration recovers most of the fact in a
small causal trace on the *fit* half (ROME's Figure 1 protocol, noise on the subject embeddings, reusing
:mod:`reference_impls.activation_patching`), at the last subject token or at the last token (the public
code's ``fact_token="last"`` option). On GPT-2 XL that is a mid-layer FFN at the last subject token; on the
toy it is the *last* layer's FFN at the *last* token (its subject-token FFNs restore ≤ 5 % of a fact — the
toy moves the subject to the last token by attention and recalls there), so there we edit that, and an
edit at its subject-last FFNs does not reach the answer. C is the uncentred second moment of the FFN keys
(ROME's ``mom2``) over every real token of the model's *other* tasks' prompts (the toy's training-like text;
ROME uses 100k Wikipedia tokens; ``Spec.cov_facts`` adds the task's own prompts), with a small ridge. In this
codebase ``W_out`` is [d_mlp, d_model] (``out = k @ W_out``); the ``nn.Linear`` weight is its transpose
[d_model, d_mlp] (GPT-2's ``Conv1D`` stores [d_mlp, d_model]), so the update written to the parameter is
``outer(Λ, u)`` or ``outer(u, Λ)``. All edits' v* are optimised in one batch, each with its own δ, its own
clamp and its own early stop — identical to optimising them one at a time (a test checks it).

Where the edit comes from: the new object is ``meta.target_new`` (the English CounterFact-style set) or
else the example's ``corrupt_answer`` (the toy: another subject's object for the same relation).
Paraphrases are ``meta.paraphrases`` or, on the toy, the relation's *other* templates for the same subject
(never seen by the edit); neighbours are ``meta.neighborhood`` or, on the toy, subjects sharing a first or
last name with the edited subject, same relation, under every template of the relation (the hard case: their
last-subject-token keys share the token); on the toy we also check the edited subject's *other relations*
keep their answers (``relation_specificity``).

Parity with the public code (kmeng01/rome: rome_main.py, compute_u.py, compute_v.py), and what differs:

* compute_u: u = C⁻¹k* with C the uncentred second moment — the same; its contexts are model-generated
  prefixes ("The" + 2/5/10 sampled tokens) plus "{}"; ours are the bare prompt plus short word runs cut
  from other tasks' prompts that pass a neutrality check (the fit facts are still answered, mean KL ≤
  ``prefix_kl``). The toy is trained on one example per sequence, so almost no prefix is neutral there and
  k* is usually the bare prompt's key (averaging over off-distribution prefixes blurred k* and cost
  specificity: 0.79 instead of 0.88 on 6 seeds).
* compute_v: δ added at the last subject token of every rewriting prompt, loss = NLL(new target at the
  last layer) + kl_factor · KL(p_δ ‖ p_init) at the subject of the KL prompt + v_weight_decay ·
  ‖δ‖ / ‖v_init‖², clamp ‖δ‖ ≤ clamp_norm_factor · ‖v_init‖, Adam — the same hyper-parameters as the GPT-2 XL
  config (lr 0.5, kl 0.0625, decay 0.5, clamp 4), 25 steps instead of 20; only the new object's *first*
  token is trained (answers here are scored on their first token); ROME's KL prompt is "{} is a", ours is the
  prompt cut after the subject (the KL is read at the subject's last token, which sees only the subject).
* The update: the code divides by u·k_cur (the key of the *unprefixed* edit prompt) and subtracts that
  prompt's FFN output, so the edit prompt itself maps exactly to v*; we follow the paper's equation with k*
  in both places (so k* maps to v*).
* Simplified: no multi-token objects, no generation-based metrics (CounterFact's fluency/consistency), and
  edits are scored one at a time from the original model (ROME's CounterFact protocol too).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Curve, Finding, Heatmap, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci, normalised_effect
from mi_catalog.models.hooks import ForwardState, capture, edit
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_out, b_out, layer_submodule
from mi_catalog.tasks import TaskExample
from reference_impls import activation_patching as ap
from reference_impls._common import subject_positions

IMPL = ImplInfo(
    id="rome",
    title="ROME: rank-one model editing of one FFN output matrix (efficacy, generalisation, specificity)",
    objects=("ffn",),
    methods=("causal-attribution",),
    steering=("targeted-optimization",),
    reproduces=("locating-and-editing-factual-associations-in-gpt",),
    tasks=("facts",),
    needs=("gradients", "weight-edits"),
    metrics=(
        "n_edits", "n_skipped", "n_contexts", "edit_layer", "edit_at_last_token", "edit_layer_effect", "efficacy",
        "efficacy_before", "generalization", "specificity", "specificity_before", "relation_specificity",
        "target_new_prob", "kl_neutral",
    ),
)  # fmt: skip


@dataclass
class Spec:
    n: int = 32  # facts; the held-out half are edited (one at a time), the fit half chooses the site
    seed: int = 0
    layer: int | None = None  # edit layer; None = the causal-trace peak of one FFN output (fit split)
    token: str = "auto"  # lookup token: "subject_last" (ROME's default), "last", or "auto" = the trace's peak
    trace_prompts: int = 4  # fit prompts in the site-choosing causal trace
    noise_samples: int = 4  # noise draws per traced prompt (ROME: 10)
    n_prefixes: int = 4  # prefixed contexts for k* and v* (plus the bare prompt)
    prefix_words: int = 3  # longest prefix, in words
    prefix_keep: float = 0.9  # keep a prefix only if fit accuracy with it ≥ this × the bare accuracy
    prefix_kl: float = 0.2  # ... and the mean KL(bare ‖ prefixed) of the fit prompts' next token ≤ this (nats)
    cov_prompts: int = 48  # prompts per task for C = E[k kᵀ]
    cov_facts: bool = False  # also the task's own prompts (another draw) in C, as Wikipedia holds facts
    ridge: float = 1e-3  # C + ridge · mean diag(C) · I
    v_steps: int = 25
    v_lr: float = 0.5
    kl_factor: float = 0.0625
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    n_neighbours: int = 4  # neighbouring subjects per edit (toy)
    side_n: int = 16  # prompts per other task for the side effects (per edit)
    side_edits: int = 2  # edits whose side effects are measured (averaged)
    sweep_edits: int = 8  # edits in the update-scale sweep figure (0 = no sweep)


# ---------------------------------------------------------------------------------------------------------
# Where the edit lives: the FFN output projection of one layer
# ---------------------------------------------------------------------------------------------------------


def out_param_name(lm: LoadedModel, layer: int) -> str:
    """The ``named_parameters`` name of layer ``layer``'s FFN output weight."""
    module = layer_submodule(lm, layer, lm.family.mlp_out_proj)
    for name, mod in lm.model.named_modules():
        if mod is module:
            return f"{name}.weight"
    raise LookupError(f"no FFN output projection found for layer {layer}")


def rank_one_update(lm: LoadedModel, layer: int, u: torch.Tensor, lam: torch.Tensor, scale: float = 1.0
                    ) -> steering.WeightEdit:  # fmt: skip
    """W_out ← W_out + scale · u ⊗ Λ in TL orientation ([d_mlp, d_model]), written in the parameter's own
    orientation (nn.Linear: [d_model, d_mlp]; Conv1D: [d_mlp, d_model])."""
    name = out_param_name(lm, layer)
    param = dict(lm.model.named_parameters())[name].detach()
    delta = torch.outer(u, lam) if lm.family.conv1d else torch.outer(lam, u)  # [d_mlp, d_model] | [d_model, d_mlp]
    return steering.WeightEdit({name: (param.float() + scale * delta.to(param.device)).to(param.dtype)})


# ---------------------------------------------------------------------------------------------------------
# Token positions
# ---------------------------------------------------------------------------------------------------------


def through_subject(ex: TaskExample) -> str:
    """The prompt cut right after the subject (its last token is the last subject token)."""
    assert ex.subject is not None
    end = ex.prompt.index(ex.subject) + len(ex.subject)
    return ex.prompt[:end]


def tokens_after_subject(lm: LoadedModel, text: str, subject: str) -> int:
    """How many tokens of ``text`` follow the subject's last token."""
    end = text.rindex(subject) + len(subject)
    return lm.n_tokens(text) - lm.n_tokens(text[:end])


def join(prefix: str, text: str) -> str:
    return f"{prefix} {text}" if prefix else text


def prefixes(lm: LoadedModel, data: RunData, fit: list[TaskExample], spec: Spec, gen: random.Random) -> list[str]:
    """The contexts for k* and v*: the empty prefix, plus up to ``n_prefixes`` short word runs cut from other
    tasks' prompts (ROME: text generated by the model) that are *neutral*: with the prefix in front, the model
    still answers the fit split's facts (≥ ``prefix_keep`` × its bare accuracy) with nearly the same next-token
    distribution (mean KL ≤ ``prefix_kl``). On the toy, trained on one example per sequence, almost no prefix is.
    """
    pool = [ex.prompt for task in _other_tasks(data) for ex in data.other(task, 8)]
    candidates: list[str] = []
    for _ in range(3 * spec.n_prefixes if pool else 0):
        words = gen.choice(pool).split()
        length = gen.randint(1, max(1, min(spec.prefix_words, len(words))))
        start = gen.randint(0, max(0, len(words) - length))
        candidates.append(" ".join(words[start : start + length]))
    scored = [ex for ex in fit if ex.answer]
    if not candidates or not scored:
        return [""]
    answers = steering.first_token_ids(lm, [ex.answer for ex in scored])
    texts = [join(c, ex.prompt) for c in ["", *candidates] for ex in scored]
    logp = steering.next_token_logits(lm, texts).cpu().log_softmax(-1).reshape(len(candidates) + 1, len(scored), -1)
    accuracy = (logp.argmax(-1) == answers).float().mean(1)  # [1 + candidates]
    kl = (logp[0].exp() * (logp[0] - logp[1:])).sum(-1).mean(1)  # KL(bare ‖ prefixed) per candidate
    kept = [c for c, acc, k in zip(candidates, accuracy[1:].tolist(), kl.tolist(), strict=True)
            if acc >= spec.prefix_keep * float(accuracy[0]) and k <= spec.prefix_kl]  # fmt: skip
    return ["", *kept[: spec.n_prefixes]]


def _other_tasks(data: RunData) -> list[str]:
    return [t for t in (data.source.tasks() if data.source else ()) if t != data.task]


# ---------------------------------------------------------------------------------------------------------
# The three ingredients: edit layer, C, k*, v*
# ---------------------------------------------------------------------------------------------------------


TOKENS = ("subject_last", "last")  # where the key is read: ROME's fact_token "subject_last" or "last"


def trace_sites(lm: LoadedModel, fit: list[TaskExample], spec: Spec) -> torch.Tensor:
    """Normalised effect of restoring one FFN output at the last subject token / the last token, per layer →
    [n_prompts, 2, L] (ROME's causal trace: noise on the subject embeddings; on the fit split)."""
    traced = [ex for ex in fit if ex.subject or ex.subject_positions][: spec.trace_prompts]
    if not traced:
        return torch.zeros(1, len(TOKENS), lm.n_layers)
    trace_spec = ap.Spec(noise_samples=spec.noise_samples, corruption="noise")
    sigma = ap.subject_sigma(lm, traced)
    sites = [f"mlp_out.{layer}" for layer in range(lm.n_layers)]
    rows = []
    for i, ex in enumerate(traced):
        answer = lm.token_id(ex.answer)
        clean_batch = lm.encode([ex.prompt])
        with capture(lm, sites) as clean:
            p_clean = float(lm.logits(clean_batch)[0, -1].float().softmax(-1)[answer])
        corruption = ap.make_corruption(lm, ex, trace_spec, sigma, seed=spec.seed * 100_003 + i)
        assert corruption is not None
        where = {"subject_last": subject_positions(lm, ex)[-1], "last": clean_batch.shape[1] - 1}
        restorations: list[ap.Restoration] = [()]
        restorations += [((site, "pos", (where[token],)),) for token in TOKENS for site in sites]
        probs = ap.restore(lm, corruption, clean, restorations, answer, trace_spec.batch_size)
        rows.append(normalised_effect(probs[1:], p_clean, float(probs[0])).reshape(len(TOKENS), lm.n_layers))
    return torch.stack(rows)


def key_moment(lm: LoadedModel, layer: int, prompts: list[str], ridge: float) -> torch.Tensor:
    """C = E[k kᵀ] of the FFN keys (``mlp_act``) over every real token of ``prompts`` (+ ridge) → [d_mlp, d_mlp]."""
    total: torch.Tensor | None = None
    count = 0
    for start in range(0, len(prompts), steering.BATCH):
        batch = lm.encode(prompts[start : start + steering.BATCH])
        with capture(lm, [f"mlp_act.{layer}"]) as cache:
            lm.logits(batch)
        keys = cache[f"mlp_act.{layer}"].float()[batch.attention_mask.bool()]  # [tokens, d_mlp]
        total = keys.T @ keys if total is None else total + keys.T @ keys
        count += keys.shape[0]
    assert total is not None
    moment = total / max(count, 1)
    return moment + ridge * moment.diagonal().mean().clamp(min=1e-8) * torch.eye(moment.shape[0], device=moment.device)


@dataclass
class Request:
    """One edit: the fact's example, the new object's token and the lookup token strategy."""

    ex: TaskExample
    target: int
    token: str


def mean_keys(lm: LoadedModel, layer: int, requests: list[Request], contexts: list[str]) -> torch.Tensor:
    """k* per request: the FFN key at the lookup token (the last subject token, or the prompt's last token),
    averaged over the prefixed contexts → [n_requests, d_mlp] (ROME's compute_u before C⁻¹)."""
    texts = [join(c, through_subject(r.ex) if r.token == "subject_last" else r.ex.prompt)
             for r in requests for c in contexts]  # fmt: skip
    batch = lm.encode(texts)
    with capture(lm, [f"mlp_act.{layer}"]) as cache:
        lm.logits(batch)
    return cache[f"mlp_act.{layer}"][:, -1].float().reshape(len(requests), len(contexts), -1).mean(1)


@dataclass
class Values:
    v_star: torch.Tensor  # [n_requests, d_model]
    v_init: torch.Tensor  # the FFN output at the lookup token of each bare edit prompt
    final_nll: torch.Tensor  # [n_requests]


def optimise_values(lm: LoadedModel, layer: int, requests: list[Request], contexts: list[str], spec: Spec) -> Values:
    """v* = v_init + δ per request, δ trained so the rewriting prompts predict the new object (ROME's compute_v).

    All requests are optimised in one batch, each with its own δ (the rows of one [n, d_model] tensor): the
    losses are summed, so each δ gets exactly its own gradient, Adam is element-wise and the clamp and the
    early stop (loss < 0.05) are per request — the same as editing one at a time.
    """
    n_ctx = len(contexts)
    texts: list[str] = []
    owner: list[int] = []
    for i, r in enumerate(requests):
        texts += [join(c, r.ex.prompt) for c in contexts] + [through_subject(r.ex)]  # rewriting prompts, KL prompt
        owner += [i] * (n_ctx + 1)
    batch = lm.encode(texts)
    lookup = torch.zeros(batch.shape, dtype=torch.bool, device=lm.device)
    lookup[:, -1] = True  # "last"; the KL prompt ends at the subject, so its last token is the subject's
    for row, text in enumerate(texts):
        r = requests[owner[row]]
        if r.token == "subject_last":
            lookup[row] = False
            lookup[row, batch.shape[1] - 1 - tokens_after_subject(lm, text, str(r.ex.subject))] = True
    site = f"mlp_out.{layer}"
    with capture(lm, [site]) as cache:
        lm.logits(batch)
    first_rows = torch.tensor([i * (n_ctx + 1) for i in range(len(requests))])
    v_init = (cache[site].float() * lookup[..., None]).sum(1)[first_rows]  # [n, d_model]
    n = len(requests)
    delta = torch.zeros(n, lm.d_model, device=lm.device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=spec.v_lr)
    owner_t = torch.tensor(owner, device=lm.device)
    is_kl = torch.tensor([(row + 1) % (n_ctx + 1) == 0 for row in range(len(texts))], device=lm.device)
    targets = torch.tensor([requests[o].target for o in owner], device=lm.device)
    mask = lookup[..., None].float()
    init_norm = v_init.norm(dim=-1).clamp(min=1e-8)
    max_norm = spec.clamp_norm_factor * init_norm
    kl_init: torch.Tensor | None = None
    active = torch.ones(n, dtype=torch.bool, device=lm.device)
    nll = torch.zeros(n)

    def add_delta(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
        return act + (mask * delta[owner_t][:, None, :]).to(act.dtype)

    for step in range(spec.v_steps + 1):
        with torch.enable_grad(), edit(lm, [(site, add_delta)]):
            logp = lm.forward(batch).logits[:, -1].float().log_softmax(-1)  # [rows, vocab]
            row_nll = -logp.gather(1, targets[:, None])[:, 0]
            nll = torch.zeros(n, device=lm.device).index_add(0, owner_t[~is_kl], row_nll[~is_kl]) / n_ctx
            kl_logp = logp[is_kl]  # [n, vocab]
            if kl_init is None:
                kl_init = kl_logp.detach()
            kl = (kl_logp.exp() * (kl_logp - kl_init)).sum(-1)  # KL(p_δ ‖ p_init), as torch's kl_div in compute_v
            loss = nll + spec.kl_factor * kl + spec.v_weight_decay * delta.norm(dim=-1) / init_norm**2  # [n]
            active &= loss.detach() >= 5e-2
            if step == spec.v_steps or not bool(active.any()):
                break
            (grad,) = torch.autograd.grad(loss.sum(), [delta])
        delta.grad = grad * active[:, None]  # a converged request stops moving (ROME breaks out of its loop)
        before = delta.detach().clone()
        opt.step()
        with torch.no_grad():
            delta[~active] = before[~active]  # Adam's momentum would still move a zero-gradient row
            norms = delta.norm(dim=-1)
            over = norms > max_norm
            delta[over] *= (max_norm[over] / norms[over])[:, None]
    return Values((v_init + delta.detach()).detach(), v_init.detach(), nll.detach().cpu())


@dataclass
class Edit:
    weight_edit: steering.WeightEdit
    u: torch.Tensor  # C⁻¹k* [d_mlp]
    lam: torch.Tensor  # Λ [d_model]
    final_nll: float


def rome_edits(lm: LoadedModel, layer: int, requests: list[Request], contexts: list[str], c_inv: torch.Tensor,
               spec: Spec) -> list[Edit]:  # fmt: skip
    """The rank-one edit of each request (each applies alone): ΔW = Λ (C⁻¹k*)ᵀ, Λ = (v* − W k*) / (C⁻¹k*)ᵀk*."""
    if not requests:
        return []
    k_star = mean_keys(lm, layer, requests, contexts)  # [n, d_mlp]
    values = optimise_values(lm, layer, requests, contexts, spec)
    w = W_out(lm, layer).detach().float()  # [d_mlp, d_model]
    bias = b_out(lm, layer)
    current = k_star @ w + (bias.detach().float() if bias is not None else 0.0)  # W k* (+ b)
    u = k_star @ c_inv.T  # [n, d_mlp]
    lam = (values.v_star - current) / (u * k_star).sum(-1, keepdim=True)
    return [Edit(rank_one_update(lm, layer, u[i], lam[i]), u[i], lam[i], float(values.final_nll[i]))
            for i in range(len(requests))]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# CounterFact-style evaluation prompts
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    ex: TaskExample
    target: str  # the new object
    paraphrases: list[str]
    neighbours: list[tuple[str, str]]  # (prompt, its true answer)
    relations: list[tuple[str, str]]  # the same subject's other relations (prompt, answer)


def target_new(lm: LoadedModel, ex: TaskExample, data: RunData) -> str | None:
    """meta.target_new, else the corrupt answer, else another example's answer (a different first token)."""
    answer = lm.token_id(ex.answer)
    candidates = [ex.meta.get("target_new"), ex.corrupt_answer] + [o.answer for o in data.examples]
    for c in candidates:
        if isinstance(c, str) and c.strip() and lm.token_id(c) != answer:
            return c
    return None


def make_case(lm: LoadedModel, ex: TaskExample, data: RunData, spec: Spec, gen: random.Random) -> Case | None:
    if not ex.subject or ex.subject not in ex.prompt:
        return None
    target = target_new(lm, ex, data)
    if target is None:
        return None
    new_id = lm.token_id(target)
    planted = data.planted
    relation = ex.meta.get("relation")
    template = ex.meta.get("template")
    paraphrases = [p for p in ex.meta.get("paraphrases", []) if isinstance(p, str) and ex.subject in p]
    neighbours = [(str(d["prompt"]), str(d["answer"])) for d in ex.meta.get("neighborhood", [])
                  if isinstance(d, dict) and "prompt" in d and "answer" in d]  # fmt: skip
    relations: list[tuple[str, str]] = []
    templates = getattr(planted, "fact_templates", {}) if planted is not None else {}
    if relation in templates:
        paraphrases = paraphrases or [t.format(s=ex.subject) for t in templates[relation] if t != template]
        names = set(ex.subject.split())
        close = sorted({s for s, r, _ in planted.facts if r == relation and s != ex.subject and names & set(s.split())})
        gen.shuffle(close)
        for other in close:
            answer = planted.attribute(other, relation)
            if lm.token_id(answer) == new_id:
                continue
            neighbours += [(t.format(s=other), answer) for t in templates[relation]]
            if len({p for p, _ in neighbours}) >= spec.n_neighbours * len(templates[relation]):
                break
        for s, r, a in planted.facts:
            if s == ex.subject and r != relation and r in templates:
                relations += [(t.format(s=s), a) for t in templates[r]]
    if not paraphrases:  # other prompts about the same subject in the data
        paraphrases = [o.prompt for o in data.examples if o.subject == ex.subject and o.prompt != ex.prompt
                       and lm.token_id(o.answer) == lm.token_id(ex.answer)]  # fmt: skip
    if not neighbours:  # other subjects of the same label (relation) whose answer is not the new target
        neighbours = [(o.prompt, o.answer) for o in data.examples if o.subject != ex.subject
                      and o.label == ex.label and lm.token_id(o.answer) != new_id][: spec.n_neighbours]  # fmt: skip
    return Case(ex, target, paraphrases, neighbours, relations)


@dataclass
class Scores:
    efficacy: float
    generalization: float | None
    specificity: float | None
    relations: float | None  # share of the subject's other-relation prompts (correct before) still correct
    new_prob: float


def case_prompts(case: Case) -> list[str]:
    """The prompts one edit is scored on: edit prompt, paraphrases, neighbours, the subject's other relations."""
    return [case.ex.prompt, *case.paraphrases, *(p for p, _ in case.neighbours), *(p for p, _ in case.relations)]


def scores_from_logits(
    lm: LoadedModel, case: Case, logits: torch.Tensor, reference: torch.Tensor | None = None
) -> Scores:
    """CounterFact's efficacy / paraphrase / neighbourhood scores from the next-token logits of
    :func:`case_prompts` [n_prompts, vocab]. ``reference``: which relation prompts the unedited model got right."""
    true, new = lm.token_id(case.ex.answer), lm.token_id(case.target)
    edit_row, para = logits[0], logits[1 : 1 + len(case.paraphrases)]
    nb = logits[1 + len(case.paraphrases) : 1 + len(case.paraphrases) + len(case.neighbours)]
    rel = logits[1 + len(case.paraphrases) + len(case.neighbours) :]
    nb_true = torch.tensor([lm.token_id(a) for _, a in case.neighbours], dtype=torch.long)
    rel_true = torch.tensor([lm.token_id(a) for _, a in case.relations], dtype=torch.long)
    relations = None
    if case.relations:
        was_right = reference if reference is not None else rel.argmax(-1) == rel_true
        if bool(was_right.any()):
            relations = float((rel.argmax(-1) == rel_true)[was_right].float().mean())
    return Scores(
        efficacy=float(edit_row[new] > edit_row[true]),
        generalization=float((para[:, new] > para[:, true]).float().mean()) if len(para) else None,
        specificity=float((nb.gather(1, nb_true[:, None])[:, 0] > nb[:, new]).float().mean()) if len(nb) else None,
        relations=relations,
        new_prob=float(edit_row.softmax(-1)[new]),
    )  # fmt: skip


def score(lm: LoadedModel, case: Case, intervention: steering.Intervention | None,
          reference: torch.Tensor | None = None) -> Scores:  # fmt: skip
    """CounterFact's scores for one edit, from one batched forward pass (see :func:`scores_from_logits`)."""
    logits = steering.next_token_logits(lm, case_prompts(case), intervention).cpu()
    return scores_from_logits(lm, case, logits, reference)


def relation_reference(lm: LoadedModel, case: Case) -> torch.Tensor:
    """Which of the case's other-relation prompts the unedited model gets right → bool [n]."""
    if not case.relations:
        return torch.zeros(0, dtype=torch.bool)
    logits = steering.next_token_logits(lm, [p for p, _ in case.relations]).cpu()
    return logits.argmax(-1) == torch.tensor([lm.token_id(a) for _, a in case.relations])


# ---------------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------------


def choose_site(effects: torch.Tensor, spec: Spec) -> tuple[str, int]:
    """(lookup token, layer): Spec's choice, else the causal-trace peak of the FFN effects [n, 2, L]."""
    means = effects.mean(0)  # [2, L]
    allowed = [TOKENS.index(spec.token)] if spec.token in TOKENS else list(range(len(TOKENS)))
    if spec.layer is not None:
        return TOKENS[max(allowed, key=lambda t: float(means[t, spec.layer]))], spec.layer
    best = max(((t, layer) for t in allowed for layer in range(means.shape[1])), key=lambda tl: float(means[tl]))
    return TOKENS[best[0]], best[1]


def cov_prompts(data: RunData, spec: Spec, fallback: list[TaskExample]) -> list[str]:
    """Training-like text for C: every task of the model's source (a different draw than the run's own)."""
    tasks = list(data.source.tasks()) if data.source else []
    if not spec.cov_facts:
        tasks = [t for t in tasks if t != data.task]
    prompts = [ex.prompt for task in tasks for ex in data.other(task, spec.cov_prompts)]
    return prompts or [ex.prompt for ex in fallback]


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.token not in (*TOKENS, "auto"):
        raise ValueError(f"token must be one of {', '.join((*TOKENS, 'auto'))}, not {spec.token!r}")
    gen = random.Random(spec.seed)
    fit, test = data.fit_test()
    if not fit or not test:
        fit = test = data.examples
    effects = trace_sites(lm, fit, spec)  # [n_traced, 2, L]
    token, layer = choose_site(effects, spec)
    if not 0 <= layer < lm.n_layers:
        raise ValueError(f"layer {layer} out of range: the model has {lm.n_layers} layers")
    c_inv = torch.linalg.inv(key_moment(lm, layer, cov_prompts(data, spec, fit), spec.ridge))
    contexts = prefixes(lm, data, fit, spec, gen)
    cases = [c for c in (make_case(lm, ex, data, spec, gen) for ex in test) if c is not None]
    data.progress("rome edits", 0, len(cases))
    edits = rome_edits(lm, layer, [Request(c.ex, lm.token_id(c.target), token) for c in cases], contexts, c_inv, spec)
    data.progress("rome edits", len(cases), len(cases))
    means = effects.mean(0)
    metrics: dict[str, int | float] = {
        "n_edits": len(edits), "n_skipped": len(test) - len(cases), "edit_layer": layer,
        "edit_at_last_token": int(token == "last"), "n_contexts": len(contexts), "edit_layer_effect": round(float(means[TOKENS.index(token), layer]), 6),
    }  # fmt: skip
    if not edits:
        return Output(metrics=metrics, notes=["No example could be edited (no subject, or no distinct new object)."])
    references = [relation_reference(lm, c) for c in cases]
    before = [score(lm, c, None, r) for c, r in zip(cases, references, strict=True)]
    after = [score(lm, c, e.weight_edit, r) for c, e, r in zip(cases, edits, references, strict=True)]
    intervals: dict[str, tuple[float, float]] = {}

    def headline(name: str, values: list[float | None]) -> None:
        kept = [v for v in values if v is not None]
        if kept:
            metrics[name], intervals[name] = mean_ci(torch.tensor(kept), seed=spec.seed)

    headline("efficacy", [s.efficacy for s in after])
    headline("efficacy_before", [s.efficacy for s in before])
    headline("generalization", [s.generalization for s in after])
    headline("specificity", [s.specificity for s in after])
    headline("specificity_before", [s.specificity for s in before])
    headline("relation_specificity", [s.relations for s in after])
    headline("target_new_prob", [s.new_prob for s in after])
    side = _side_effects(lm, data, [e.weight_edit for e in edits[: spec.side_edits]], spec)
    metrics.update({s.name: round(s.after, 6) for s in side if s.name == "kl_neutral"})
    findings = [Finding("ffn", lay, None, float(means[t, lay]), f"mlp_out.{lay} @ {TOKENS[t]}")
                for t in range(len(TOKENS)) for lay in range(lm.n_layers)]  # fmt: skip
    shown: list[str] = [
        n for n in ("efficacy", "generalization", "specificity", "relation_specificity") if n in metrics
    ]
    where = "the causal-trace peak on the fit split" if spec.layer is None and spec.token == "auto" else "Spec"
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"trace_effect": effects, "u": torch.stack([e.u for e in edits]),
                 "lam": torch.stack([e.lam for e in edits])},
        figures=[
            Heatmap("trace", f"{data.task}: causal effect of restoring one FFN output (fit split, noise on the subject)",
                    values=means.tolist(), row_labels=list(TOKENS), col_labels=[f"L{lay}" for lay in range(lm.n_layers)]),
            Bars("scores", f"ROME at layer {layer}, {token} token: CounterFact scores over {len(edits)} edits (one at a time)",
                 labels=shown, values=[float(metrics[n]) for n in shown], intervals=[intervals[n] for n in shown],
                 y_label="share of prompts"),
            *([_strength_sweep(lm, cases, edits, references, layer, spec)] if spec.sweep_edits > 0 else []),
        ],
        improve=steering.improve(data.task, "efficacy", [s.efficacy for s in before], [s.efficacy for s in after],
                                 seed=spec.seed, goal="increase"),
        side_effects=side,
        notes=[f"Reproduces ROME's algorithm (k* over prefixed contexts, v* by optimisation with the KL essence term, "
               f"rank-one update under C = E[kkᵀ]) at the FFN of layer {layer}, {token} token ({where}); scored like "
               "CounterFact on held-out facts, one edit at a time. C comes from the model's own task mixture instead "
               "of Wikipedia; only the new object's first token is trained and scored."],
    )  # fmt: skip


def _side_effects(lm: LoadedModel, data: RunData, edits: list[steering.WeightEdit], spec: Spec) -> list[SideEffect]:
    """steering.side_effects for each measured edit, averaged over the edits."""
    per_edit = [steering.side_effects(lm, data, e, n=spec.side_n) for e in edits]
    if not per_edit:
        return []
    out = []
    for j, first in enumerate(per_edit[0]):
        before = sum(effects[j].before for effects in per_edit) / len(per_edit)
        after = sum(effects[j].after for effects in per_edit) / len(per_edit)
        out.append(SideEffect(first.name, round(before, 6), round(after, 6), first.is_task))
    return out


def _strength_sweep(lm: LoadedModel, cases: list[Case], edits: list[Edit], references: list[torch.Tensor],
                    layer: int, spec: Spec) -> Curve:  # fmt: skip
    """Efficacy and specificity as the rank-one update is scaled (0 = the original model)."""
    scales = [0.0, 0.5, 1.0, 1.5]
    samples: dict[str, list[torch.Tensor]] = {"efficacy": [], "generalization": [], "specificity": []}
    for factor in scales:
        chosen = list(zip(cases, edits, references, strict=True))[: spec.sweep_edits]
        scored = [score(lm, c, rank_one_update(lm, layer, e.u, e.lam, factor), r) for c, e, r in chosen]
        for name in samples:
            values = [getattr(s, name) for s in scored if getattr(s, name) is not None]
            samples[name].append(torch.tensor(values or [float("nan")]))
    return steering.sweep_curve("strength", "ROME: scaling the rank-one update", scales, samples,
                                x_label="update scale", y_label="share of prompts", seed=spec.seed)  # fmt: skip
