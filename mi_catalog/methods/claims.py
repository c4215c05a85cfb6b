"""What each reference implementation finds on a real model, next to the paper's claim.

One declarative list (:data:`CLAIMS`): which implementation runs on which task, the paper's claim in
words, and a *criterion* — a check on the run's own numbers that says whether the model shows the
claimed picture. :func:`measure` runs them on a model (torch, slow: minutes on SmolLM2-135M) and
returns a JSON-safe record; :func:`render_markdown` turns a record into the results table shown in
the README and on the site (pure Python: the site reads the committed record, never torch).

A verdict is ``"agrees"``, ``"differs"`` or ``"n/a"`` (the model lacks the behaviour the claim is
about, e.g. a model that never refuses has no refusal to ablate). The criteria are deliberately
simple, stated next to each claim, and never compare a method with itself.

    python -m mi_catalog.methods.claims --model smollm2-135m   # writes the committed record
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mi_catalog.fsutil import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent.parent / "data" / "english" / "results"
Summary = Callable[[dict[str, Any]], tuple[str, str]]  # run JSON → (what was found, verdict)


@dataclass(frozen=True)
class Claim:
    impl: str
    task: str
    paper: str | None  # catalog entry id of the paper that makes the claim (None: a general finding)
    claim: str  # the paper's claim, in words
    criterion: str  # how the verdict is decided from the run's numbers
    summary: Summary
    n: int = 16
    overrides: dict[str, Any] = field(default_factory=dict)


def _m(run: dict[str, Any], name: str) -> float:
    value = run["metrics"].get(name)
    return float("nan") if value is None else float(value)


def _ci(run: dict[str, Any], name: str, digits: int = 2) -> str:
    interval = run.get("intervals", {}).get(name)
    value = _m(run, name)
    if interval is None or None in interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _top(run: dict[str, Any], obj: str, k: int = 3) -> str:
    labels = [f["label"] or f"L{f['layer']}" for f in run["findings"] if f["object"] == obj][:k]
    return ", ".join(labels) if labels else "none"


def _causal_tracing(run: dict[str, Any]) -> tuple[str, str]:
    early, late = _m(run, "resid_subject_last_peak_layer"), _m(run, "resid_last_peak_layer")
    mlp = _m(run, "mlp_subject_last_peak_layer")
    text = (f"residual at the last subject token peaks at layer {early:.0f} "
            f"(effect {_ci(run, 'resid_subject_last_peak_effect')}), FFN output there at layer {mlp:.0f}; "
            f"residual at the last token peaks at layer {late:.0f} "
            f"(effect {_ci(run, 'resid_last_peak_effect')})")  # fmt: skip
    return text, "agrees" if early < late else "differs"


def _logit_lens(run: dict[str, Any]) -> tuple[str, str]:
    first = _m(run, "first_top1_layer")
    text = (f"the answer is first top-1 at layer {first:.0f}; final top-1 rate {_ci(run, 'final_top1_rate')}, "
            f"answer probability at the middle layer {_m(run, 'answer_prob_mid'):.3f} vs final "
            f"{_m(run, 'answer_prob_final'):.3f}")  # fmt: skip
    return text, "agrees" if first > 0 and _m(run, "answer_prob_mid") < _m(run, "answer_prob_final") else "differs"


def _tuned_lens(run: dict[str, Any]) -> tuple[str, str]:
    reduction = _m(run, "lens_kl_reduction")
    text = (f"held-out KL to the final layer: logit lens {_m(run, 'lens_kl_logit_mean'):.2f} nats, tuned lens "
            f"{_m(run, 'lens_kl_tuned_mean'):.2f} nats ({reduction:.0%} lower); answer top-1 from layer "
            f"{_m(run, 'tuned_first_top1_layer'):.0f} (tuned)")  # fmt: skip
    return text, "agrees" if reduction > 0 else "differs"


def _induction(run: dict[str, Any]) -> tuple[str, str]:
    layers = [f["layer"] for f in run["findings"] if f["object"] == "attention-head"][:4]
    text = (f"top heads by restoring effect: {_top(run, 'attention-head', 4)}; restoring the top "
            f"{_m(run, 'head_set_size'):.0f} together: {_ci(run, 'head_set_effect')}")  # fmt: skip
    ok = bool(layers) and min(layers) >= 1 and _m(run, "head_set_effect") > _m(run, "head_top_effect")
    return text, "agrees" if ok else "differs"


def _probe(run: dict[str, Any]) -> tuple[str, str]:
    acc, chance = _m(run, "probe_best_layer_accuracy"), _m(run, "probe_majority_rate")
    text = (f"best residual probe at layer {_m(run, 'probe_best_layer'):.0f}: held-out accuracy "
            f"{_ci(run, 'probe_best_layer_accuracy')} (majority {chance:.2f}, shuffled-label control "
            f"{_m(run, 'probe_control_accuracy'):.2f}); best head probe {_m(run, 'probe_best_head_accuracy'):.2f}")  # fmt: skip
    return text, "agrees" if acc >= chance + 0.2 and acc > _m(run, "probe_control_accuracy") else "differs"


def _massive(run: dict[str, Any]) -> tuple[str, str]:
    count, ratio = _m(run, "massive_count"), _m(run, "massive_max_ratio")
    text = (f"{count:.0f} massive activations, first at layer {_m(run, 'massive_first_layer'):.0f}; largest "
            f"{_m(run, 'massive_max_abs'):.0f} = {ratio:.0f}× its token's median, at layer "
            f"{_m(run, 'massive_max_layer'):.0f}")  # fmt: skip
    return text, "agrees" if count > 0 else "differs"


def _ffn_projection(run: dict[str, Any]) -> tuple[str, str]:
    share = _m(run, "ffn_topk_answer_in_top_tokens")
    text = (f"FFN most promoting the answer directly: layer {_m(run, 'ffn_top_layer'):.0f}; "
            f"{share:.0%} of the top {_m(run, 'ffn_topk_size'):.0f} neurons have an answer among their top promoted tokens")  # fmt: skip
    return text, "agrees" if share > 0 else "differs"


def _knowledge_neurons(run: dict[str, Any]) -> tuple[str, str]:
    layers = [f["layer"] for f in run["findings"] if f["object"] == "neuron"][:10]
    text = f"top neurons by integrated gradients: {_top(run, 'neuron', 4)}"
    metrics = run["metrics"]
    if "kn_suppress_change" in metrics:
        text += (f"; suppressing them changes p(answer) by {_ci(run, 'kn_suppress_change')} (relative; random "
                 f"neurons {_m(run, 'kn_suppress_change_random'):+.2f})")  # fmt: skip
    n_layers = int(run["n_layers"])  # the model's depth (set by measure), not the deepest finding's layer
    upper = sum(1 for layer in layers if layer is not None and layer >= n_layers // 2)
    return text, "agrees" if layers and upper >= len(layers) / 2 else "differs"


def _eap(run: dict[str, Any]) -> tuple[str, str]:
    fraction = _m(run, "circuit_edge_fraction")
    text = (f"{_m(run, 'circuit_edges'):.0f} of {_m(run, 'n_edges'):.0f} edges ({fraction:.0%}) keep "
            f"{_ci(run, 'circuit_faithfulness')} of the logit difference; top heads {_top(run, 'attention-head', 3)}")  # fmt: skip
    return text, "agrees" if 0 < fraction <= 0.5 else "differs"


def _lape(run: dict[str, Any]) -> tuple[str, str]:
    """The paper measures a language's neurons by the perplexity of that language's text when they are zeroed."""
    own, other = _m(run, "lape_own_nll_increase"), _m(run, "lape_other_nll_increase")
    text = (f"{_m(run, 'lape_n_selected'):.0f} neurons selected over {_m(run, 'lape_n_languages'):.0f} languages; "
            f"zeroing a language's neurons raises the loss of its own text by {_ci(run, 'lape_own_nll_increase', 3)} "
            f"nats/token, other languages' by {other:+.3f} (p(answer) drops {_m(run, 'lape_own_drop'):.3f} own, "
            f"{_m(run, 'lape_other_drop'):.3f} other)")  # fmt: skip
    return text, "agrees" if own > other else "differs"


def _refusal(run: dict[str, Any]) -> tuple[str, str]:
    before, ablated = _m(run, "refusal_rate_before"), _m(run, "refusal_rate_ablated")
    added = _m(run, "harmless_refusal_added")
    text = (f"harmful prompts refused {before:.2f} → {_ci(run, 'refusal_rate_ablated')} with the direction ablated; "
            f"harmless prompts refused {_m(run, 'harmless_refusal_before'):.2f} → {_ci(run, 'harmless_refusal_added')} "
            f"with it added (layer {_m(run, 'direction_layer'):.0f})")  # fmt: skip
    if before < 0.5:
        return text + "; the model hardly refuses, so there is no refusal to ablate", "n/a"
    return text, "agrees" if ablated <= before / 2 and added > _m(run, "harmless_refusal_before") else "differs"


def _caa(run: dict[str, Any]) -> tuple[str, str]:
    span, step = _m(run, "sweep_effect_range"), _m(run, "sweep_min_step")
    text = (f"behaviour rate {_m(run, 'behaviour_rate_before'):.2f} → {_ci(run, 'behaviour_rate_steered')} at multiplier "
            f"{_m(run, 'caa_multiplier'):g} (layer {_m(run, 'caa_layer'):.0f}); across multipliers −3…3 the rate moves "
            f"{span:.2f}, smallest step {step:+.2f}")  # fmt: skip
    return text, "agrees" if span >= 0.3 and step >= -0.05 else "differs"


CLAIMS: tuple[Claim, ...] = (
    Claim("activation-patching", "facts", "locating-and-editing-factual-associations-in-gpt",
          "Causal tracing: an early site (the residual / FFN at the last subject token, early-middle layers) and "
          "a late site (the last token, later layers) carry the fact.",
          "agrees when the subject-token peak layer is below the last-token peak layer", _causal_tracing, n=12),
    Claim("logit-lens", "facts", "interpreting-gpt-the-logit-lens",
          "Decoding intermediate residuals with the unembedding shows the prediction forming over depth.",
          "agrees when the answer becomes top-1 after layer 0 and is likelier at the end than mid-way", _logit_lens),
    Claim("tuned-lens", "facts", "eliciting-latent-predictions-with-the-tuned-lens",
          "Per-layer affine translators decode intermediate layers with lower KL to the final output than the logit lens.",
          "agrees when the held-out KL reduction is positive", _tuned_lens),
    Claim("activation-patching", "induction", "in-context-learning-and-induction-heads",
          "Induction heads (attending to the token after the previous occurrence and copying it) form in layers after "
          "the first, and several of them act redundantly.",
          "agrees when the top-4 heads sit in layer ≥ 1 and restoring the top heads together beats the best single head",
          _induction, n=12),
    Claim("edge-attribution-patching", "ioi", "attribution-patching-outperforms-automated-circuit-discovery",
          "A sparse circuit (a small fraction of edges) carries indirect-object identification.",
          "agrees when at most half of the edges reach the faithfulness threshold", _eap),
    Claim("linear-probe", "sentiment", None,
          "Sentiment is linearly decodable from the residual stream.",
          "agrees when the best held-out probe beats the majority rate by 0.2 and the shuffled-label control", _probe),
    Claim("massive-activations", "facts", "massive-activations-in-large-language-models",
          "A few activations are orders of magnitude larger than the rest, from early layers on, at fixed dimensions.",
          "agrees when at least one activation passes the paper's thresholds", _massive),
    Claim("ffn-vocab-projection", "facts", "ffn-promoting-concepts",
          "FFN value vectors promote interpretable groups of tokens when projected to the vocabulary.",
          "agrees when some top neuron's top promoted tokens include an answer", _ffn_projection),
    Claim("knowledge-neurons", "facts", "knowledge-neurons-in-pretrained-transformers",
          "A few FFN neurons, mostly in the upper layers, express a fact.",
          "agrees when most of the top-10 neurons are in the upper half of the layers", _knowledge_neurons, n=8),
    Claim("language-neurons", "multilingual", "language-specific-neurons",
          "Language-specific neurons exist; deactivating them hurts their own language far more than others.",
          "agrees when zeroing a language's neurons raises the loss (perplexity) of its own text more than the other "
          "languages' (the paper's measure)", _lape),
    Claim("refusal-direction", "refusal", "refusal-in-language-models-is-mediated",
          "Refusal is mediated by one direction: ablating it stops refusals of harmful instructions, adding it makes "
          "the model refuse harmless ones.",
          "n/a when the model refuses under half of the harmful prompts; else agrees when ablation halves refusal and "
          "addition raises harmless refusal", _refusal, n=60),
    Claim("caa", "sentiment", "steering-llama-2-via-contrastive-activation-addition",
          "Adding the mean activation difference of contrast pairs steers the behaviour, more strongly with a larger "
          "multiplier.",
          "agrees when the behaviour rate moves by ≥ 0.3 over the multiplier sweep, monotonically (no step below −0.05)",
          _caa, n=40),
)


def measure(
    model: str = "smollm2-135m", progress: Callable[[str], None] = lambda _s: None,
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every claim (or those of the implementations ``only`` names) on ``model`` → the JSON record (slow;
    imports torch)."""
    from mi_catalog.methods.runner import run_impl
    from mi_catalog.models.loading import load_model

    lm = load_model(model)
    rows = []
    chosen = [claim for claim in CLAIMS if only is None or claim.impl in only]
    for i, claim in enumerate(chosen, 1):
        progress(f"[{i}/{len(chosen)}] {claim.impl} on {claim.task}")
        start = time.perf_counter()
        run = compact({**run_impl(claim.impl, model=lm, task=claim.task, n=claim.n, **claim.overrides).to_dict(),
                       "n_layers": lm.n_layers})  # fmt: skip
        found, verdict = claim.summary(run)
        rows.append({"impl": claim.impl, "task": claim.task, "paper": claim.paper, "claim": claim.claim,
                     "criterion": claim.criterion, "found": found, "verdict": verdict, "n": claim.n,
                     "seconds": round(time.perf_counter() - start, 1), "run": run})  # fmt: skip
    return {"model": lm.name, "command": f"python -m mi_catalog.methods.claims --model {model}", "rows": rows}


def merge_rows(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with each row of ``new`` replacing the row of the same (implementation, task), in CLAIMS order."""
    fresh = {(row["impl"], row["task"]): row for row in new["rows"]}
    rows = [fresh.pop((row["impl"], row["task"]), row) for row in old["rows"]]
    return {**old, "rows": rows + list(fresh.values())}


FINDINGS_KEPT = 50  # per object kind; the summaries read at most the top 10


def compact(run: dict[str, Any], keep: int = FINDINGS_KEPT) -> dict[str, Any]:
    """The run as recorded: its top ``keep`` findings of each object kind (ranked lists stay ranked) and the
    total in ``n_findings``. A neuron-level run lists every neuron of the model (46k on SmolLM2); the record
    ships inside the package."""
    seen: dict[str, int] = {}
    kept = []
    for finding in run["findings"]:
        seen[finding["object"]] = seen.get(finding["object"], 0) + 1
        if seen[finding["object"]] <= keep:
            kept.append(finding)
    return {**run, "findings": kept, "n_findings": len(run["findings"])}


def record_path(model: str) -> Path:
    return RESULTS_DIR / f"{model}-methods.json"


def load_record(model: str = "smollm2-135m") -> dict[str, Any] | None:
    path = record_path(model)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def render_markdown(record: dict[str, Any]) -> str:
    """The results table (method, task, paper's claim, what the model shows, verdict)."""
    lines = [
        "| method | task | the paper's claim | what we find on " + record["model"] + " | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in record["rows"]:
        cells = [f"`{row['impl']}`", row["task"], row["claim"], row["found"], row["verdict"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every claim on a model and write the results record.")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--print", action="store_true", help="print the committed record's table and exit")
    parser.add_argument(
        "--only", metavar="IMPL[,IMPL]",
        help="re-run only these implementations' claims and replace their rows in the committed record",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.print:
        record = load_record(args.model)
        if record is None:
            print(f"no record for {args.model}; run without --print first", file=sys.stderr)
            return 1
        print(render_markdown(record), end="")
        return 0
    only = tuple(part for part in (args.only or "").split(",") if part) or None
    unknown = sorted(set(only or ()) - {claim.impl for claim in CLAIMS})
    if unknown:
        print(f"--only: no claim for {', '.join(unknown)}; claims exist for "
              f"{', '.join(sorted({c.impl for c in CLAIMS}))}", file=sys.stderr)  # fmt: skip
        return 2
    old = load_record(args.model) if only else None
    if only and old is None:
        print(f"--only needs a committed record for {args.model}; run without --only first", file=sys.stderr)
        return 1
    record = measure(args.model, progress=lambda s: print(s, file=sys.stderr, flush=True), only=only)
    if old is not None:
        record = merge_rows(old, record)
    atomic_write_text(record_path(args.model), json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(render_markdown(record), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
