"""The controlled vocabulary: the single source of truth for every tag.

The survey *Locate, Steer, and Improve* (arXiv 2601.14004) sorts work by the
interpretable **object** it locates, the localizing **method**, the **steer**ing
method and the **application** it improves. This module defines those four
facets once — canonical ids, labels, one-line descriptions and the aliases
researchers actually type — and everything else (schema, index, CLI choices,
site facets, docs) reads from here.

It is deliberately plain Python with no third-party imports: the query path
imports it on every call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field


@dataclass(frozen=True)
class Term:
    """One value of a facet."""

    id: str
    label: str
    description: str
    aliases: tuple[str, ...] = ()
    parent: str | None = None  # only for two-level facets (application)


@dataclass(frozen=True)
class Facet:
    """A facet: a named, ordered set of terms with alias resolution."""

    name: str  # also the CLI flag (--object) and the URL key on the site
    label: str
    field: str  # the plural field name in entries and in JSON output
    description: str
    terms: tuple[Term, ...]
    groups: tuple[Term, ...] = ()  # parent terms of a two-level facet
    _lookup: dict[str, str] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for term in (*self.terms, *self.groups):
            for key in (term.id, term.label, *term.aliases):
                norm = normalize_key(key)
                existing = self._lookup.get(norm)
                if existing is not None and existing != term.id:
                    raise ValueError(f"facet {self.name}: {key!r} maps to both {existing} and {term.id}")
                self._lookup[norm] = term.id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.terms)

    def term(self, term_id: str) -> Term:
        for t in (*self.terms, *self.groups):
            if t.id == term_id:
                return t
        raise KeyError(term_id)

    def children(self, group_id: str) -> tuple[str, ...]:
        return tuple(t.id for t in self.terms if t.parent == group_id)

    def resolve(self, value: str, *, loose: bool = False) -> tuple[str, ...]:
        """Map what a user typed to canonical leaf ids.

        A group id (e.g. ``alignment``) expands to its children. With ``loose``
        (what people type at a prompt), a word or prefix of an accepted spelling
        that names exactly one value resolves to it (``vector`` →
        ``vector-arithmetic``); an ambiguous one lists the candidates. Raises
        :class:`UnknownValueError` with a "did you mean" suggestion.
        """
        key = normalize_key(value)
        term_id = self._lookup.get(key)
        if term_id is None and loose:
            candidates = self.word_matches(key)
            if len(candidates) == 1:
                term_id = candidates[0]
            elif candidates:
                raise UnknownValueError(self, value, [], ambiguous=candidates)
        if term_id is None:
            raise UnknownValueError(self, value, self.suggest(value))
        if any(g.id == term_id for g in self.groups):
            return self.children(term_id)
        return (term_id,)

    def word_matches(self, key: str) -> list[str]:
        """Canonical ids (groups included) with a spelling that ``key`` is a word or a prefix of, in order."""
        if len(key) < 2:
            return []
        found: list[str] = []
        for spelling, term_id in self._lookup.items():
            words = spelling.split("-")
            hit = spelling.startswith(key) or any(w.startswith(key) for w in words)
            if hit and term_id not in found:
                found.append(term_id)
        groups = {g.id for g in self.groups}
        # A group and one of its own children both matching ("effic…"): the group is meant.
        if any(f in groups for f in found):
            found = [f for f in found if f in groups or self.term(f).parent not in found]
        order = [t.id for t in (*self.groups, *self.terms)]
        return sorted(found, key=order.index)

    def suggest(self, value: str) -> list[str]:
        key = normalize_key(value)
        import difflib  # only on a typo: keeps the query path's start-up light

        close = difflib.get_close_matches(key, list(self._lookup), n=3, cutoff=0.6)
        seen: list[str] = []
        for c in close:
            # Suggest what the user can type: the alias they nearly typed, plus its canonical id.
            for s in (c, self._lookup[c]):
                if s not in seen:
                    seen.append(s)
        return seen[:3]

    def alias_map(self) -> dict[str, str]:
        """Every accepted spelling (normalized) → canonical id (groups map to the group id)."""
        return dict(self._lookup)


class UnknownValueError(ValueError):
    def __init__(self, facet: Facet, value: str, suggestions: list[str], *, ambiguous: list[str] | None = None) -> None:
        self.facet = facet
        self.value = value
        self.suggestions = suggestions
        self.ambiguous = ambiguous or []
        if self.ambiguous:
            message = f"ambiguous {facet.name} {value!r}: could be {', '.join(self.ambiguous)}"
        else:
            hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
            message = f"unknown {facet.name} {value!r}{hint} (valid: {', '.join(facet.ids)})"
        super().__init__(message)


def normalize_key(value: str) -> str:
    """Case-, space- and punctuation-insensitive key: 'Linear Probe' == 'linear-probe'."""
    return re.sub(r"[^a-z0-9]+", "-", value.strip().lower()).strip("-")


OBJECT = Facet(
    name="object",
    label="Object",
    field="objects",
    description="The interpretable object a paper locates or steers.",
    terms=(
        Term(
            "token-embedding",
            "Token Embedding",
            "Input token representations x^0 = W_E[t] (and per-token KV entries): which tokens matter.",
            ("embedding", "embeddings", "token", "tokens", "token-embeddings", "w-e", "we"),
        ),
        Term(
            "residual-stream",
            "Residual Stream",
            "The hidden state x^l carried between layers; directions in it encode concepts.",
            ("resid", "residual", "hidden-state", "hidden-states", "hidden", "representation", "layer"),
        ),
        Term(
            "attention-head",
            "Attention Head",
            "A single multi-head-attention head h^{l,h}: its pattern A^{l,h} and output.",
            ("head", "heads", "mha", "attention", "attn", "attention-heads"),
        ),
        Term(
            "ffn",
            "FFN",
            "A feed-forward (MLP) block as a whole, read as a key-value memory.",
            ("mlp", "feed-forward", "feedforward", "ffn-block", "moe", "expert", "experts"),
        ),
        Term(
            "neuron",
            "Neuron",
            "A single FFN neuron s^l_j with key k_j and value v_j.",
            ("neurons", "unit", "units"),
        ),
        Term(
            "sae-feature",
            "SAE Feature",
            "A sparse-autoencoder (or transcoder) latent: a learned, sparse, overcomplete direction.",
            ("sae", "feature", "features", "sae-features", "sparse-autoencoder", "transcoder"),
        ),
        Term(
            "circuit",
            "Circuit",
            "A causal subgraph of heads, FFNs or features that implements a behaviour.",
            ("circuits", "subgraph", "subnetwork"),
        ),
    ),
)

METHOD = Facet(
    name="method",
    label="Localizing method",
    field="methods",
    description="How the object was found (the survey's localizing methods).",
    terms=(
        Term(
            "magnitude-analysis",
            "Magnitude Analysis",
            "Rank by weight or activation magnitude/statistics; training-free but data-dependent.",
            ("magnitude", "activation-magnitude", "weight-magnitude", "activation-statistics"),
        ),
        Term(
            "causal-attribution",
            "Causal Attribution",
            "Intervene and measure: activation patching, causal tracing, ablation.",
            (
                "patching",
                "activation-patching",
                "causal-tracing",
                "ablation",
                "causal-mediation",
                "path-patching",
                "interchange-intervention",
            ),
        ),
        Term(
            "gradient-detection",
            "Gradient Detection",
            "Score by gradients: attribution patching, integrated gradients, saliency.",
            (
                "gradient",
                "gradients",
                "attribution-patching",
                "atp",
                "integrated-gradients",
                "ig",
                "saliency",
            ),
        ),
        Term(
            "probing",
            "Probing",
            "Supervised decoding of a property from activations with a (linear) probe.",
            ("probe", "probes", "linear-probe", "linear-probing", "classifier-probe"),
        ),
        Term(
            "vocab-projection",
            "Vocab Projection",
            "Project activations or weights onto the vocabulary: logit lens, tuned lens.",
            (
                "logit-lens",
                "tuned-lens",
                "vocabulary-projection",
                "unembedding-projection",
                "lens",
                "logitlens",
            ),
        ),
        Term(
            "circuit-discovery",
            "Circuit Discovery",
            "Find the causal subnetwork for a behaviour: ACDC, edge attribution patching.",
            ("acdc", "eap", "edge-attribution-patching", "circuit-finding"),
        ),
    ),
)

STEER = Facet(
    name="steer",
    label="Steering method",
    field="steering",
    description="How the located object is manipulated (the survey's steering methods).",
    terms=(
        Term(
            "amplitude-manipulation",
            "Amplitude Manipulation",
            "Scale, zero, clamp or replace activations (ablation as an intervention).",
            ("scaling", "zeroing", "clamping", "ablation", "amplitude", "pruning", "masking"),
        ),
        Term(
            "targeted-optimization",
            "Targeted Optimization",
            "Change weights of the located part only: model editing, targeted fine-tuning.",
            (
                "rome",
                "memit",
                "editing",
                "model-editing",
                "knowledge-editing",
                "fine-tuning",
                "finetuning",
                "targeted-fine-tuning",
            ),
        ),
        Term(
            "vector-arithmetic",
            "Vector Arithmetic",
            "Add or subtract directions: steering vectors, CAA, ActAdd, RepE, task vectors.",
            (
                "steering-vector",
                "steering-vectors",
                "caa",
                "actadd",
                "repe",
                "task-vector",
                "task-vectors",
                "activation-addition",
                "activation-steering",
                "directional-ablation",
            ),
        ),
    ),
)

_ALIGNMENT = Term("alignment", "Alignment", "Make the model safer, fairer, and better at personas.")
_CAPABILITY = Term("capability", "Capability", "Make the model more capable.")
_EFFICIENCY = Term("efficiency", "Efficiency", "Make training or inference cheaper.")

APPLICATION = Facet(
    name="application",
    label="Application",
    field="applications",
    description="What the intervention improves (the survey's Improve stage).",
    groups=(_ALIGNMENT, _CAPABILITY, _EFFICIENCY),
    terms=(
        Term(
            "safety",
            "Safety & Reliability",
            "Refusal, jailbreaks, toxicity, hallucination and truthfulness.",
            ("safety-and-reliability", "reliability", "refusal", "toxicity", "hallucination", "truthfulness"),
            parent="alignment",
        ),
        Term(
            "fairness",
            "Fairness & Bias",
            "Social, positional and cultural biases.",
            ("fairness-and-bias", "bias", "debiasing"),
            parent="alignment",
        ),
        Term(
            "persona",
            "Persona & Role",
            "Personality traits, roles, emotions and sycophancy.",
            ("persona-and-role", "role", "personality", "sycophancy"),
            parent="alignment",
        ),
        Term(
            "multilingual",
            "Multilingualism",
            "Language-specific components and cross-lingual transfer.",
            ("multilingualism", "multilinguality", "cross-lingual", "language"),
            parent="capability",
        ),
        Term(
            "knowledge",
            "Knowledge Management",
            "Factual recall, knowledge editing, conflicts and unlearning.",
            ("knowledge-management", "facts", "factual", "unlearning", "knowledge-editing-app"),
            parent="capability",
        ),
        Term(
            "reasoning",
            "Logic & Reasoning",
            "Arithmetic, chain-of-thought and multi-hop reasoning.",
            ("logic-and-reasoning", "logic", "math", "arithmetic", "cot", "chain-of-thought"),
            parent="capability",
        ),
        Term(
            "efficient-training",
            "Efficient Training",
            "Sparse or targeted fine-tuning, training dynamics (grokking), merging.",
            ("training", "grokking"),
            parent="efficiency",
        ),
        Term(
            "efficient-inference",
            "Efficient Inference",
            "Layer skipping, KV-cache compression, quantization and pruning.",
            ("inference", "kv-cache", "quantization", "early-exit", "layer-skipping"),
            parent="efficiency",
        ),
    ),
)

FACETS: tuple[Facet, ...] = (OBJECT, METHOD, STEER, APPLICATION)
FACETS_BY_NAME: dict[str, Facet] = {f.name: f for f in FACETS}
FACETS_BY_FIELD: dict[str, Facet] = {f.field: f for f in FACETS}


@dataclass(frozen=True)
class Venue:
    id: str
    kind: str  # one of VENUE_KINDS
    label: str
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in VENUE_KINDS:
            raise ValueError(f"venue {self.id}: kind {self.kind!r} is not one of {', '.join(VENUE_KINDS)}")


VENUE_KINDS = ("conference", "findings", "journal", "workshop", "preprint", "blog")

VENUES: tuple[Venue, ...] = (
    Venue("NeurIPS", "conference", "Conference on Neural Information Processing Systems", ("nips",)),
    Venue("ICML", "conference", "International Conference on Machine Learning"),
    Venue("ICLR", "conference", "International Conference on Learning Representations"),
    Venue("ACL", "conference", "Annual Meeting of the Association for Computational Linguistics"),
    Venue("EMNLP", "conference", "Conference on Empirical Methods in Natural Language Processing"),
    Venue("NAACL", "conference", "Conference of the North American Chapter of the ACL"),
    Venue("EACL", "conference", "Conference of the European Chapter of the ACL"),
    Venue("COLING", "conference", "International Conference on Computational Linguistics"),
    Venue(
        "LREC-COLING",
        "conference",
        "Joint International Conference on Computational Linguistics, Language Resources and Evaluation",
        ("lrec",),
    ),
    Venue("AACL", "conference", "Conference of the Asia-Pacific Chapter of the ACL", ("ijcnlp-aacl",)),
    Venue("COLM", "conference", "Conference on Language Modeling"),
    Venue("CLeaR", "conference", "Conference on Causal Learning and Reasoning (PMLR)"),
    Venue("AAAI", "conference", "AAAI Conference on Artificial Intelligence"),
    Venue("IJCAI", "conference", "International Joint Conference on Artificial Intelligence"),
    Venue("CVPR", "conference", "IEEE/CVF Conference on Computer Vision and Pattern Recognition"),
    Venue("ICAIF", "conference", "ACM International Conference on AI in Finance"),
    Venue("ICAI", "conference", "International Conference on Artificial Intelligence (as listed upstream)"),
    Venue("ICIC", "conference", "International Conference on Intelligent Computing"),
    Venue("COMPSAC", "conference", "IEEE Computers, Software, and Applications Conference"),
    Venue("PACLIC", "conference", "Pacific Asia Conference on Language, Information and Computation"),
    Venue(
        "Findings of ACL",
        "findings",
        "Findings of the Association for Computational Linguistics: ACL",
        ("acl-findings", "findings-acl"),
    ),
    Venue(
        "Findings of EMNLP",
        "findings",
        "Findings of the Association for Computational Linguistics: EMNLP",
        ("emnlp-findings", "findings-emnlp"),
    ),
    Venue(
        "Findings of NAACL",
        "findings",
        "Findings of the Association for Computational Linguistics: NAACL",
        ("naacl-findings", "findings-naacl"),
    ),
    Venue(
        "Findings of IJCNLP-AACL",
        "findings",
        "Findings of the Association for Computational Linguistics: IJCNLP-AACL",
        ("aacl-findings", "findings-aacl", "findings-ijcnlp"),
    ),
    Venue("TMLR", "journal", "Transactions on Machine Learning Research", ("tlmr",)),
    Venue("Workshop", "workshop", "A workshop (named in venue_detail)", ("ws", "aclws")),
    Venue("arXiv", "preprint", "arXiv preprint", ("preprint",)),
    Venue("Blog", "blog", "Blog post or web article", ("web", "post")),
)
VENUE_IDS: tuple[str, ...] = tuple(v.id for v in VENUES)
_VENUE_LOOKUP: dict[str, str] = {}
for _v in VENUES:
    for _k in (_v.id, *_v.aliases):
        _VENUE_LOOKUP[normalize_key(_k)] = _v.id


def resolve_venue(value: str) -> str:
    """Canonical venue id for what a user (or the upstream list) wrote, e.g. 'Arxiv' → 'arXiv'."""
    found = _VENUE_LOOKUP.get(normalize_key(value))
    if found is None:
        import difflib

        close = difflib.get_close_matches(normalize_key(value), list(_VENUE_LOOKUP), n=4, cutoff=0.6)
        names = list(dict.fromkeys(_VENUE_LOOKUP[c] for c in close))[:2]
        hint = f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""
        raise ValueError(f"unknown venue {value!r}{hint}")
    return found


def venue_kind(venue_id: str) -> str:
    for v in VENUES:
        if v.id == venue_id:
            return v.kind
    raise KeyError(venue_id)


# The venue and the provenance as facets of a query, so they resolve (aliases, words, prefixes)
# and suggest exactly like the vocabulary facets.
VENUE = Facet(
    name="venue",
    label="Venue",
    field="venue",
    description="Where the paper was published.",
    terms=tuple(Term(v.id, v.id, v.label, v.aliases) for v in VENUES),
)

SOURCE_FOUNDATIONAL = "mi-catalog"  # provenance.source of the entries we added ourselves
SOURCE = Facet(
    name="source",
    label="Source",
    field="source",
    description="Where an entry comes from: the survey's paper list, or the foundational papers we added.",
    terms=(
        Term("survey", "Survey", "Listed in the survey's paper table.", ("awesome-actionable-mi-survey", "upstream")),
        Term(
            "foundational",
            "Foundational",
            "A foundational paper added by mi-catalog (not in the survey's table).",
            (SOURCE_FOUNDATIONAL, "added"),
        ),
    ),
)


def source_of(provenance_source: str) -> str:
    """The ``source`` facet value of an entry from its ``provenance.source``."""
    return "foundational" if provenance_source == SOURCE_FOUNDATIONAL else "survey"
