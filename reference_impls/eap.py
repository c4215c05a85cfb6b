"""Edge attribution patching (EAP) — Syed, Rager & Conmy, *Attribution patching outperforms automated circuit
discovery* (2023).

ACDC finds a circuit by patching every edge of the computational graph one at a time. EAP scores all edges at
once with a first-order estimate: for an edge from upstream node u (the embeddings, a head's output, an MLP's
output) to downstream node d (a head's q/k/v input, an MLP's input, the logits),
``score(u→d) = (a_u,clean − a_u,corrupt) · ∂metric/∂(input of d)`` at the clean run, from one corrupt forward
and one clean forward + backward; the top-|score| edges form the circuit, whose faithfulness is measured by
patching every other edge from the corrupt run.

What we do: the same, with downstream nodes per *layer*: each layer's attention block (one node for all its
heads), each MLP, and the logits (for parallel-residual models one node per block, since attention and FFN
read the same residual). The gradient w.r.t. a node's own input — not the residual stream's total gradient,
which would also count every later reader — comes from a zero tensor δ_d that enters only that node: added at
the block input (``resid_pre.l``) and subtracted again from the attention output (``attn_out.l``), so only the
attention branch sees it (likewise for the MLP between ``attn_out.l`` and ``mlp_out.l``, and at the last
``resid_post`` for the logits). An upstream head's output is z_h·W_O[h] (``head_out`` times the head's slice of
W_O). Edge scores are normalised by the mean clean − corrupt metric gap and ranked by magnitude (a finding's
score is |mean score|, its interval that of the signed per-prompt scores, sign-flipped when the mean is negative;
the signed scores are in the ``edges`` heatmap). Head findings score a head by the sum of its outgoing |edge scores|.

Faithfulness, exact and in one forward pass per k: keep the top-k edges and patch every other edge from the
corrupt run — each downstream node's input becomes the running residual plus Σ over its removed edges of
(u's corrupt output − u's output in this run) — then report (metric − corrupt)/(clean − corrupt). With no edge
kept this is exactly the corrupt run, with all kept exactly the clean run (tested).

Corruption (``Spec.corruption``): "task" uses the examples' own contrast prompts (subject noise when they have
none, see ``_contrast``); "shuffle" permutes each prompt's tokens (all but the first and last). On the toy's
induction task the two find different circuits, as they should: the task's contrast changes only the token to
be copied, so the top edges are the value path (embed → attn L0, current-token heads L0H2/L0H0 → attn L1, the
induction heads L1H0–H3 → logits); shuffling also breaks the key path, and the previous-token head's edge
L0H3 → attn L1 enters the top edges (ranks 0–28 of 105, counted from 0, at n = 8, seeds 0–9 on the recipe-v3
toy; v2: 8–47 at seeds 0–7 — EAP underrates it: exact patching of that edge costs far more than its
first-order score, the attention-saturation failure AtP* and EAP-IG correct; see ``ig_steps`` below). A head's
finding scores the sum of its outgoing edges' |scores|; the head ranking therefore starts with the value path,
L0H2/L0H0, then the induction heads, and exact patching agrees: patching L0H2's clean output alone restores
0.48–0.65 of the gap, each induction head 0.07–0.34 (the four are redundant), every other head < 0.05 (test,
seeds 0–9, recipe-v3 toy).

EAP-IG (``Spec.ig_steps`` = k > 0; Hanna, Pezzelle & Belinkov, *Have Faith in Faithfulness*, 2024): the
gradient in the score is averaged over k runs whose input embeddings go from the corrupt run's to the clean
run's in equal steps (α = 1/k … 1; integrated gradients on the inputs) instead of taken at the clean run alone.
It corrects exactly that failure: on the recipe-v3 toy, shuffled induction prompts (n = 8, seeds 0–9), plain
EAP scores L0H3 → attn L1 0.008–0.19 of the gap (0.008 and 0.017 at seeds 0 and 3, ranks 28 and 24; recipe v2:
−0.002 at seeds 2 and 5, ranks 40 and 47) while patching that one edge costs 0.42–0.87 of the gap (second only
to embed → attn L0 by exact patching at every seed); with k = 5 EAP-IG scores it 0.30–0.72 and ranks it second,
after embed → attn L0, at every seed, as exact patching does. The embedding's edges then add up to
clean − corrupt (integrated gradients' completeness, up to the k-step Riemann sum; tested). k = 0 (the
default) is the paper's EAP; k = 1 is the same number. Cost: k forward + backward passes instead of one.

Simplifications: heads are not separate downstream nodes (no per-head q/k/v inputs), so an edge into
attention layer l reads "into all heads of layer l"; no pruning of nodes left dangling; the faithfulness
interval treats the clean − corrupt gap as fixed (bootstrap over prompts of the numerator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import bootstrap_ci, mean_ci
from mi_catalog.models.hooks import ForwardState, capture, edit
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_O
from reference_impls._common import head_label
from reference_impls._contrast import Contrast, make_contrast

IMPL = ImplInfo(
    id="edge-attribution-patching",
    title="Edge attribution patching (EAP): score every edge by gradient × activation difference, with a faithfulness curve",
    objects=("circuit", "attention-head"),
    methods=("circuit-discovery", "gradient-detection"),
    steering=(),
    reproduces=("attribution-patching-outperforms-automated-circuit-discovery",),
    tasks=("induction", "facts", "sentiment", "refusal", "ioi"),
    needs=("gradients",),
    metrics=(
        "n_prompts",
        "n_skipped",
        "clean_metric",
        "corrupt_metric",
        "n_edges",
        "circuit_edges",
        "circuit_edge_fraction",
        "circuit_faithfulness",
        "circuit_heads",
        "faithfulness_top10",
    ),
)


@dataclass
class Spec:
    n: int = 16
    seed: int = 0
    threshold: float = 0.8  # the circuit = the fewest top edges whose faithfulness reaches this
    top_edges: int = 20  # edges reported as findings
    corruption: str = "task"  # "task": the examples' contrast prompts (noise without them); "shuffle": permuted prompts
    noise_scale: float = 3.0  # only when the task has no contrast prompts (subject-embedding noise, × std(W_E))
    ig_steps: int = 0  # 0: EAP (the gradient at the clean run); k > 0: EAP-IG, averaged over k interpolated inputs


@dataclass(frozen=True)
class Node:
    kind: str  # upstream: "embed" | "head" | "mlp"; downstream: "attn" | "mlp" | "block" | "logits"
    layer: int | None = None
    head: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "head":
            assert self.layer is not None and self.head is not None
            return head_label(self.layer, self.head)
        if self.kind in ("embed", "logits"):
            return self.kind
        return f"{self.kind.upper()}{self.layer}" if self.kind == "mlp" else f"{self.kind} L{self.layer}"


@dataclass
class Graph:
    """Upstream nodes, downstream nodes and the edges between them (u writes before d reads)."""

    upstream: list[Node]
    downstream: list[Node]
    edges: list[tuple[Node, Node]] = field(default_factory=list)


def build_graph(lm: LoadedModel) -> Graph:
    n_layers, parallel = lm.n_layers, lm.parallel_residual
    upstream = [Node("embed")]
    for layer in range(n_layers):
        upstream.extend(Node("head", layer, h) for h in range(lm.n_heads))
        upstream.append(Node("mlp", layer))
    downstream: list[Node] = []
    for layer in range(n_layers):
        downstream.extend([Node("block", layer)] if parallel else [Node("attn", layer), Node("mlp", layer)])
    downstream.append(Node("logits"))

    def reads(u: Node, d: Node) -> bool:
        if d.kind == "logits" or u.kind == "embed":
            return True
        assert u.layer is not None and d.layer is not None
        if d.kind == "mlp" and u.kind == "head":  # sequential: the MLP reads its own layer's attention output
            return u.layer <= d.layer
        return u.layer < d.layer

    return Graph(upstream, downstream, [(u, d) for d in downstream for u in upstream if reads(u, d)])


# How the current run's upstream outputs and the downstream deltas are wired into one forward pass.
DeltaFn = Callable[[Node, dict[str, torch.Tensor]], "torch.Tensor | None"]


def _edits(
    lm: LoadedModel, delta: DeltaFn
) -> list[tuple[str, Callable[[torch.Tensor, ForwardState], torch.Tensor | None]]]:
    """Edits that add δ_d to downstream node d's input only; ``delta(d, seen)`` gets this run's upstream outputs."""
    seen: dict[str, torch.Tensor] = {}  # "embed", "z.l", "mlp.l": this run's upstream activations so far
    given: dict[Node, torch.Tensor | None] = {}
    n_layers, parallel = lm.n_layers, lm.parallel_residual

    def get(d: Node) -> torch.Tensor | None:
        if d not in given:
            given[d] = delta(d, seen)
        return given[d]

    def plus(x: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        return x if d is None else x + d.to(x.dtype)

    def minus(x: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        return x if d is None else x - d.to(x.dtype)

    out: list[tuple[str, Callable[[torch.Tensor, ForwardState], torch.Tensor | None]]] = []
    for layer in range(n_layers):
        reader = Node("block", layer) if parallel else Node("attn", layer)
        mlp_node = Node("mlp", layer)

        def resid_pre(x: torch.Tensor, _s: ForwardState, layer: int = layer, reader: Node = reader) -> torch.Tensor:
            if layer == 0:
                given.clear()
                seen.clear()
                seen["embed"] = x
            return plus(x, get(reader))

        def head_out(z: torch.Tensor, _s: ForwardState, layer: int = layer) -> None:
            seen[f"z.{layer}"] = z

        def attn_out(
            o: torch.Tensor, _s: ForwardState, reader: Node = reader, mlp_node: Node = mlp_node
        ) -> torch.Tensor:
            o = minus(o, get(reader))
            return o if parallel else plus(o, get(mlp_node))

        def mlp_out(m: torch.Tensor, _s: ForwardState, layer: int = layer, mlp_node: Node = mlp_node) -> torch.Tensor:
            seen[f"mlp.{layer}"] = m
            return m if parallel else minus(m, get(mlp_node))

        out += [
            (f"resid_pre.{layer}", resid_pre),
            (f"head_out.{layer}", head_out),
            (f"attn_out.{layer}", attn_out),
            (f"mlp_out.{layer}", mlp_out),
        ]

    def logits_in(r: torch.Tensor, _s: ForwardState) -> torch.Tensor:
        return plus(r, get(Node("logits")))

    out.append((f"resid_post.{n_layers - 1}", logits_in))
    return out


def upstream_sites(lm: LoadedModel) -> list[str]:
    return [
        "resid_pre.0",
        *(f"head_out.{i}" for i in range(lm.n_layers)),
        *(f"mlp_out.{i}" for i in range(lm.n_layers)),
    ]


@dataclass
class EdgeScores:
    scores: torch.Tensor  # [batch, n_edges], metric units
    clean: torch.Tensor  # [batch]
    corrupt: torch.Tensor  # [batch]
    corrupt_acts: dict[str, torch.Tensor]  # upstream activations of the corrupt run
    grads: dict[Node, torch.Tensor]  # ∂(Σ metric)/∂(input of d) at the clean run, [batch, pos, d_model] per node


def _node_grads(lm: LoadedModel, pair: Contrast, graph: Graph,
                embed: torch.Tensor | None = None) -> tuple[dict[Node, torch.Tensor], torch.Tensor]:  # fmt: skip
    """∂(Σ metric)/∂(input of d) for every downstream node d on the clean prompts — with the input embeddings
    replaced by ``embed`` [batch, pos, d_model] when given — and the run's logits."""
    shape = (*pair.clean.input_ids.shape, lm.d_model)
    param = next(lm.model.parameters())
    leaves = {
        d: torch.zeros(shape, dtype=param.dtype, device=param.device, requires_grad=True) for d in graph.downstream
    }
    edits = _edits(lm, lambda d, _seen: leaves[d])
    if embed is not None:  # registered first, so the δ of attention L0 is added to the replaced embeddings
        edits = [("resid_pre.0", lambda x, _s: embed.to(device=x.device, dtype=x.dtype)), *edits]
    with torch.enable_grad(), edit(lm, edits):
        logits = lm.forward(pair.clean).logits
        value = pair.metric(logits).sum()
        grads = torch.autograd.grad(value, [leaves[d] for d in graph.downstream], allow_unused=True)
    grad = {
        d: (torch.zeros(shape) if g is None else g.detach().float().cpu())
        for d, g in zip(graph.downstream, grads, strict=True)
    }
    return grad, logits.detach()


def score_edges(lm: LoadedModel, pair: Contrast, graph: Graph, ig_steps: int = 0) -> EdgeScores:
    """One corrupt forward, one clean forward + backward → every edge's score per prompt; with ``ig_steps`` = k > 0
    (EAP-IG) the gradient is the mean over k backward passes at embeddings corrupt + α (clean − corrupt), α = i/k."""
    if ig_steps < 0:
        raise ValueError(f"ig_steps={ig_steps}; use 0 (EAP) or a positive number of integration steps (EAP-IG)")
    sites = upstream_sites(lm)
    with pair.corrupted(lm), capture(lm, sites) as corrupt_cache:
        corrupt_logits = lm.logits(pair.corrupt)
    with capture(lm, sites) as clean_cache:
        grad, logits = _node_grads(lm, pair, graph)
    if ig_steps > 0:
        e0, e1 = corrupt_cache["resid_pre.0"].float(), clean_cache["resid_pre.0"].float()
        total = {d: g / ig_steps for d, g in grad.items()}  # α = 1 is the clean run's gradient, already taken
        for i in range(1, ig_steps):
            step, _ = _node_grads(lm, pair, graph, e0 + (i / ig_steps) * (e1 - e0))
            for d in total:
                total[d] += step[d] / ig_steps
        grad = total
    delta = {s: clean_cache[s].float().cpu() - corrupt_cache[s].float().cpu() for s in sites}
    w_o = {layer: W_O(lm, layer).detach().float().cpu() for layer in range(lm.n_layers)}  # [H, d_head, d_model]
    columns = []
    for u, d in graph.edges:
        g = grad[d]  # [b, pos, d_model]
        if u.kind == "embed":
            s = (delta["resid_pre.0"] * g).sum(dim=(1, 2))
        elif u.kind == "mlp":
            s = (delta[f"mlp_out.{u.layer}"] * g).sum(dim=(1, 2))
        else:
            assert u.layer is not None and u.head is not None
            dz = delta[f"head_out.{u.layer}"][:, :, u.head]  # [b, pos, d_head]
            s = (dz * (g @ w_o[u.layer][u.head].T)).sum(dim=(1, 2))
        columns.append(s)
    with torch.no_grad():
        clean_metric = pair.metric(logits).float().cpu()
        corrupt_metric = pair.metric(corrupt_logits).float().cpu()
    acts = {s: corrupt_cache[s] for s in sites}
    return EdgeScores(torch.stack(columns, dim=1), clean_metric, corrupt_metric, acts, grad)


def run_with_edges(
    lm: LoadedModel, pair: Contrast, graph: Graph, kept: set[int], corrupt: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The clean run with every edge not in ``kept`` patched from the corrupt run → metric per prompt [batch]."""
    removed: dict[Node, list[Node]] = {d: [] for d in graph.downstream}
    for i, (u, d) in enumerate(graph.edges):
        if i not in kept:
            removed[d].append(u)
    w_o = {layer: W_O(lm, layer).detach() for layer in range(lm.n_layers)}

    def delta(d: Node, seen: dict[str, torch.Tensor]) -> torch.Tensor | None:
        total: torch.Tensor | None = None
        heads_by_layer: dict[int, list[int]] = {}
        for u in removed[d]:
            if u.kind == "head":
                assert u.layer is not None and u.head is not None
                heads_by_layer.setdefault(u.layer, []).append(u.head)
                continue
            key = "resid_pre.0" if u.kind == "embed" else f"mlp_out.{u.layer}"
            here = seen["embed" if u.kind == "embed" else f"mlp.{u.layer}"]
            diff = corrupt[key].to(here.dtype) - here
            total = diff if total is None else total + diff
        for layer, heads in heads_by_layer.items():
            dz = (
                corrupt[f"head_out.{layer}"][:, :, heads].to(seen[f"z.{layer}"].dtype) - seen[f"z.{layer}"][:, :, heads]
            )
            diff = torch.einsum("bphk,hkm->bpm", dz, w_o[layer][heads].to(dz.dtype))
            total = diff if total is None else total + diff
        return total

    with edit(lm, _edits(lm, delta)):
        logits = lm.logits(pair.clean)
    return pair.metric(logits).float().cpu()


def k_grid(n_edges: int) -> list[int]:
    """0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, … up to every edge."""
    grid = {0, n_edges}
    k = 1
    while k < n_edges:
        grid.add(k)
        k = k + 1 if k < 6 else round(k * 1.25)
    return sorted(grid)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    pair = make_contrast(lm, data.examples, spec.seed, spec.noise_scale, spec.corruption)
    graph = build_graph(lm)
    grid = k_grid(len(graph.edges))
    total_steps = 1 + len(grid)
    data.progress("edge attribution patching", 0, total_steps)
    es = score_edges(lm, pair, graph, spec.ig_steps)
    data.progress("edge attribution patching", 1, total_steps)
    gap = float((es.clean - es.corrupt).mean())
    norm = gap if abs(gap) > 1e-6 else 1.0
    per_prompt = es.scores / norm  # [b, n_edges]
    mean = per_prompt.mean(0)
    order = mean.abs().argsort(descending=True).tolist()
    faith, faith_samples = [], []
    for step, k in enumerate(grid):
        metric = run_with_edges(lm, pair, graph, set(order[:k]), es.corrupt_acts)
        samples = (metric - es.corrupt) / norm
        faith.append(round(float(samples.mean()), 6))
        faith_samples.append(samples)
        data.progress("edge attribution patching", 2 + step, total_steps)
    reached = [i for i, f in enumerate(faith) if f >= spec.threshold]
    circuit_i = reached[0] if reached else len(grid) - 1
    circuit_k = grid[circuit_i] if reached else -1
    circuit = [graph.edges[i] for i in order[: grid[circuit_i]]]
    circuit_heads = {u for u, _ in circuit if u.kind == "head"}
    bands = [bootstrap_ci(s, seed=spec.seed) for s in faith_samples]
    top10 = run_with_edges(lm, pair, graph, set(order[: min(10, len(order))]), es.corrupt_acts)
    top10_mean, top10_ci = mean_ci((top10 - es.corrupt) / norm, seed=spec.seed)
    clean_mean, clean_ci = mean_ci(es.clean, seed=spec.seed)
    corrupt_mean, corrupt_ci = mean_ci(es.corrupt, seed=spec.seed)

    findings = []
    for i in order[: spec.top_edges]:
        u, d = graph.edges[i]
        findings.append(
            Finding(
                "circuit",
                u.layer,
                None,
                round(abs(float(mean[i])), 6),
                f"edge {u.label}→{d.label}",
                bootstrap_ci(per_prompt[:, i] * (1.0 if float(mean[i]) >= 0 else -1.0), seed=spec.seed),
            )
        )
    head_scores = torch.zeros(lm.n_layers, lm.n_heads)
    for i, (u, _d) in enumerate(graph.edges):
        if u.kind == "head":
            assert u.layer is not None and u.head is not None
            head_scores[u.layer, u.head] += abs(float(mean[i]))
    findings += [
        Finding("attention-head", layer, head, round(float(head_scores[layer, head]), 6), head_label(layer, head))
        for layer in range(lm.n_layers)
        for head in range(lm.n_heads)
    ]
    edge_matrix = torch.zeros(len(graph.upstream), len(graph.downstream))
    up_index = {u: i for i, u in enumerate(graph.upstream)}
    down_index = {d: i for i, d in enumerate(graph.downstream)}
    for i, (u, d) in enumerate(graph.edges):
        edge_matrix[up_index[u], down_index[d]] = float(mean[i])
    circuit_faith = faith[circuit_i]
    circuit_faith_ci = bands[circuit_i]
    metrics: dict[str, int | float] = {
        "n_prompts": len(pair.examples),
        "n_skipped": pair.n_skipped,
        "clean_metric": clean_mean,
        "corrupt_metric": corrupt_mean,
        "n_edges": len(graph.edges),
        "circuit_edges": circuit_k,
        "circuit_edge_fraction": round(grid[circuit_i] / len(graph.edges), 6) if reached else -1.0,
        "circuit_faithfulness": round(circuit_faith, 6),
        "circuit_heads": len(circuit_heads),
        "faithfulness_top10": top10_mean,
    }
    corruption = pair.describe(spec.noise_scale)
    return Output(
        metrics=metrics,
        intervals={
            "clean_metric": clean_ci,
            "corrupt_metric": corrupt_ci,
            "circuit_faithfulness": circuit_faith_ci,
            "faithfulness_top10": top10_ci,
        },
        findings=ranked(findings),
        tensors={
            "edge_scores": edge_matrix,
            "faithfulness": torch.tensor(faith),
            "k": torch.tensor(grid, dtype=torch.float32),
        },
        figures=[
            Curve(
                "faithfulness",
                f"EAP on {data.task}: share of the clean−corrupt gap kept by the top-k edges",
                x=[float(k) for k in grid],
                series={"faithfulness": faith},
                x_label="edges kept (k)",
                y_label="(metric − corrupt) ÷ (clean − corrupt)",
                bands={"faithfulness": ([b[0] for b in bands], [b[1] for b in bands])},
            ),
            Heatmap(
                "edges",
                f"EAP on {data.task}: edge scores (rows upstream, columns downstream) ÷ gap",
                values=edge_matrix.tolist(),
                row_labels=[u.label for u in graph.upstream],
                col_labels=[d.label for d in graph.downstream],
            ),
        ],
        notes=[
            f"Reproduces EAP (Syed et al. 2023) with per-layer downstream nodes (all heads of a layer share their "
            f"input node), metric = {pair.metric_name}, corruption = {corruption}; faithfulness patches every "
            f"edge outside the top k from the corrupt run (exact edge patching, one forward per k)."
            + (
                f" Scores by EAP-IG (Hanna et al. 2024): gradients averaged over {spec.ig_steps} inputs interpolated "
                f"from the corrupt to the clean embeddings."
                if spec.ig_steps
                else ""
            ),
        ],
    )
