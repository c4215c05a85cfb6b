"""Interventions as context managers over torch hooks.

Every intervention — :func:`capture`, :func:`patch`, :func:`ablate`,
:func:`scale`, :func:`add_vector`, :func:`project_out` and the general
:func:`edit` — registers hooks on entry and removes exactly those hooks on
exit, also when the body raises, and never writes to a weight: the model is
left as found. They nest: hooks run in registration order, so an inner
intervention sees the outer one's result.

One exception to "over torch hooks": a detached :func:`capture` of our native Llama is recorded from the
model's own taps (each decoder layer hands over the tensors the hook points would see) while no hook is on
the model, and switches to hooks the moment one could change what it must see. Dispatching ~10 torch hooks
per layer costs a small model more than the capture itself (toy: 1.13× a bare pass hooked, 1.04–1.07× tapped).

**Positions** select tokens per sequence, so batches with left padding work:

* ``None`` — every position;
* an ``int`` or a list of ints — counted per sequence over its real tokens:
  ``0`` is the first real token (after any left padding), ``-1`` the last;
* a bool tensor ``[batch, pos]`` — exactly these (absolute) positions;
* a long tensor ``[batch, k]`` — these absolute positions in each row.

The attention mask of the running forward pass is read from the model call
(``attention_mask=``), so nothing else needs passing.
``heads=`` selects heads of ``head_out``; ``neurons=`` selects neurons of ``mlp_act``.
"""

from __future__ import annotations

import contextlib
import operator
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.sites import LAYERLESS_SITES, SITE_NAMES, Site, SiteError, site
from mi_catalog.models.weights import get_module, layer_module, layer_submodule

HEAD_SITES = frozenset({"head_out", "q", "k", "v"})  # per-head sites: [batch, pos, n_heads, d_head]
NEURON_SITES = frozenset({"mlp_act", "mlp_pre"})  # per-neuron sites: [batch, pos, d_mlp]
SiteLike: TypeAlias = "Site | str"
Positions: TypeAlias = "int | Sequence[int] | torch.Tensor | None"
Components: TypeAlias = "int | Sequence[int] | torch.Tensor | None"
# An edit maps the canonical activation at a site to a replacement (None = leave unchanged).
EditFn: TypeAlias = "Callable[[torch.Tensor, ForwardState], torch.Tensor | None]"
ActFn: TypeAlias = "Callable[[torch.Tensor], torch.Tensor | None]"
View: TypeAlias = "Callable[[torch.Tensor], torch.Tensor]"


@dataclass
class ForwardState:
    """What the hooks know about the forward pass in flight."""

    attention_mask: torch.Tensor | None = None  # [batch, pos]; None until the model is called

    def mask_for(self, act: torch.Tensor) -> torch.Tensor:
        """The mask [batch, pos] matching a token-shaped activation (the newest pos when a KV cache is used)."""
        batch, pos = act.shape[0], act.shape[1]
        mask = self.attention_mask
        if mask is None or mask.shape[0] != batch or mask.shape[1] < pos:
            return torch.ones(batch, pos, dtype=torch.bool, device=act.device)
        return mask[:, -pos:].to(device=act.device, dtype=torch.bool)


class _Deferred:
    """A captured value made when first read: ``op(*tensors)`` — the per-head view of a projection's raw
    output, or resid_pre + attn_out. ``versions`` (for a sum) are the inputs' version counters when recorded:
    an in-place change since then would change the sum, so it raises instead."""

    __slots__ = ("op", "tensors", "versions")

    def __init__(
        self, op: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...], versions: tuple[int, ...] | None
    ) -> None:
        self.op = op
        self.tensors = tensors
        self.versions = versions

    def __call__(self) -> torch.Tensor:
        if self.versions is not None and self.versions != tuple(_version(t) for t in self.tensors):
            raise RuntimeError(
                "a captured resid_mid's inputs (resid_pre, attn_out) were modified in place after the capture "
                "recorded them; edits must return a new tensor"
            )
        return self.op(*self.tensors)


def _version(t: torch.Tensor) -> int:
    """``t``'s version counter (bumped by every in-place change); -1 for an inference tensor, which has none
    (and cannot be changed in place outside inference mode)."""
    try:
        return t._version
    except RuntimeError:  # "Inference tensors do not track version counter"
        return -1


class _Deferrals(NamedTuple):
    """A detached capture's recorders that store inputs and make the value when it is read."""

    view: Callable[[View], ActFn]  # the entry of a per-head site, given its view: stores the raw tensor
    add: Callable[[torch.Tensor, torch.Tensor], None]  # resid_mid: stores resid_pre and attn_out


class Cache:
    """Captured activations by site key (``"resid_post.3"``), plus the attention mask of their run.

    A detached capture keeps a per-head site (``q``, ``k``, ``v``, ``head_out``) as the module's raw tensor and
    ``resid_mid`` as its two summands, and makes the ``[batch, pos, n_heads, d_head]`` view or the sum when the
    site is first read (``cache[site]`` or ``.acts``): the same values, made out of the forward pass (and never
    for sites nobody reads). A view shares the raw tensor's storage either way; the sum raises if a summand was
    changed in place since it was recorded.
    """

    def __init__(self, acts: dict[str, torch.Tensor] | None = None, attention_mask: torch.Tensor | None = None) -> None:
        self._acts: dict[str, Any] = {} if acts is None else acts  # values: tensors, or _Deferred until read
        self._deferred = False  # whether a value may still be a _Deferred
        self.attention_mask = attention_mask  # [batch, pos]

    @property
    def acts(self) -> dict[str, torch.Tensor]:
        """Every captured activation by site key (in the order first recorded)."""
        if self._deferred:
            acts = self._acts
            for key, value in acts.items():
                if type(value) is _Deferred:
                    acts[key] = value()
            self._deferred = False
        return self._acts

    @acts.setter
    def acts(self, value: dict[str, torch.Tensor]) -> None:
        self._acts = value
        self._deferred = False

    def __getitem__(self, key: SiteLike) -> torch.Tensor:
        name = site(key).key
        value = self._acts[name]
        if type(value) is _Deferred:
            value = self._acts[name] = value()
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, Site)) and site(key).key in self._acts

    def keys(self) -> list[str]:
        return list(self._acts)

    def __len__(self) -> int:
        return len(self._acts)

    def __repr__(self) -> str:
        return f"Cache({len(self._acts)} sites: {', '.join(self._acts)})"

    def __getstate__(self) -> dict[str, Any]:
        self.acts  # noqa: B018 - make every deferred view, so a copy or pickle holds only tensors
        return self.__dict__


# ---------------------------------------------------------------------------
# Position and component selection
# ---------------------------------------------------------------------------


def position_mask(positions: Positions, attention_mask: torch.Tensor) -> torch.Tensor:
    """Resolve a positions spec against a padding mask [batch, pos] → bool selection [batch, pos]."""
    real = attention_mask.bool()
    batch, n_pos = real.shape
    if positions is None:
        return torch.ones_like(real)
    if isinstance(positions, torch.Tensor) and positions.dtype == torch.bool:
        if positions.shape[-1] != n_pos:
            raise ValueError(f"position mask has {positions.shape[-1]} positions, the run has {n_pos}")
        return positions.to(real.device).expand(batch, n_pos)
    if isinstance(positions, torch.Tensor) and positions.dim() == 2:  # absolute per-row indices [batch, k]
        out = torch.zeros_like(real)
        out.scatter_(1, positions.to(real.device).expand(batch, -1), True)
        return out
    rel = torch.as_tensor([positions] if isinstance(positions, int) else list(positions), dtype=torch.long)
    rel = rel.to(real.device)  # [k]
    first = real.int().argmax(dim=1)  # [batch] first real token
    last = n_pos - 1 - real.flip(1).int().argmax(dim=1)  # [batch] last real token
    absolute = torch.where(rel[None, :] >= 0, first[:, None] + rel[None, :], last[:, None] + 1 + rel[None, :])
    if bool(((absolute < first[:, None]) | (absolute > last[:, None])).any()):
        raise IndexError(f"positions {rel.tolist()} fall outside some sequence of the batch")
    out = torch.zeros_like(real)
    out.scatter_(1, absolute, True)
    return out  # [batch, pos]


def _component_mask(components: Components, size: int, device: torch.device) -> torch.Tensor:
    """Heads or neurons → bool [size]."""
    if components is None:
        return torch.ones(size, dtype=torch.bool, device=device)
    idx = torch.as_tensor([components] if isinstance(components, int) else components, dtype=torch.long)
    out = torch.zeros(size, dtype=torch.bool, device=device)
    out[idx.to(device)] = True
    return out


def selection(
    s: Site, act: torch.Tensor, state: ForwardState, positions: Positions = None,
    heads: Components = None, neurons: Components = None,
) -> torch.Tensor:  # fmt: skip
    """A bool mask broadcastable to ``act`` selecting (positions × heads/neurons) at site ``s``."""
    if heads is not None and s.name not in HEAD_SITES:
        raise SiteError(f"heads= selects heads of {', '.join(sorted(HEAD_SITES))}, not of {s.name}")
    if neurons is not None and s.name not in NEURON_SITES:
        raise SiteError(f"neurons= selects neurons of mlp_act or mlp_pre, not of {s.name}")
    pos = position_mask(positions, state.mask_for(act))  # [batch, pos]
    sel = pos.reshape(*pos.shape, *([1] * (act.dim() - 2)))  # [batch, pos, 1, ...]
    if s.name in HEAD_SITES:
        sel = sel & _component_mask(heads, act.shape[2], act.device)[None, None, :, None]  # [b, pos, n_heads, 1]
    elif s.name in NEURON_SITES:
        sel = sel & _component_mask(neurons, act.shape[2], act.device)[None, None, :]  # [b, pos, d_mlp]
    return sel


# ---------------------------------------------------------------------------
# Hook points: one torch hook per module and phase, shared by every site on it
# ---------------------------------------------------------------------------
#
# Every site lives on a module's first input ("pre": a forward pre-hook) or its first output ("post": a
# forward hook; the attention pattern is the second output). Instead of one torch hook per site and
# intervention, a module carries one :class:`_Point` per phase that runs a tuple of *entries* (canonical
# activation → replacement or None) in registration order: torch's per-hook dispatch is paid once per module
# however many sites and nested interventions read it. Entries are bound once at registration (site key,
# head counts, view), so a forward pass runs no site parsing, no config look-ups and no mask building.
#
# The order is exactly that of one torch hook per entry: a new entry joins a module's newest point only while
# that point's torch hook is still the module's last one; after any other hook was registered there (another
# library, a raw ``register_forward_hook``) it gets a new point behind it. A point's torch hook is removed with
# its last entry, so a model carries no hook of ours outside an intervention (:func:`hook_snapshot`).

PRE, POST = "pre", "post"


class _Point:
    """One torch hook on one module (phase ``pre`` or ``post``) running its entries in registration order."""

    __slots__ = ("entries", "handle", "hooks", "phase", "tails")

    def __init__(self, module: nn.Module, phase: str, tails: dict[str, _Point]) -> None:
        self.entries: tuple[Any, ...] = ()  # pre: fns; post: (reads_pattern, fn) pairs
        self.phase = phase
        self.tails = tails  # the module's newest point per phase (this registry entry holds no module reference)
        if phase == PRE:
            self.hooks = module._forward_pre_hooks
            self.handle = module.register_forward_pre_hook(self._pre, with_kwargs=True)
        else:
            self.hooks = module._forward_hooks
            self.handle = module.register_forward_hook(self._post)

    def _pre(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The first input (positional or ``hidden_states=``) through every entry."""
        act = args[0] if args else kwargs["hidden_states"]
        cur = act
        for fn in self.entries:
            new = fn(cur)
            if new is not None:
                cur = new
        if cur is act:
            return None
        return ((cur, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": cur})

    def _post(self, _module: nn.Module, _args: Any, output: Any) -> Any:
        """The first output through every entry; pattern entries read the (unchanged) second output."""
        single = isinstance(output, torch.Tensor)
        act = output if single else output[0]
        cur = act
        for reads_pattern, fn in self.entries:
            if reads_pattern:
                fn(output)
                continue
            new = fn(cur)
            if new is not None:
                cur = new
        if cur is act:
            return None
        return cur if single else (cur, *output[1:])


class _EntryHandle:
    """Removes one entry from its point (idempotent); the point's torch hook goes with its last entry."""

    __slots__ = ("entry", "point")

    def __init__(self, point: _Point, entry: Any) -> None:
        self.point: _Point | None = point
        self.entry = entry

    def remove(self) -> None:
        point, self.point = self.point, None
        if point is None:
            return
        entry, self.entry = self.entry, None  # a kept handle must not keep the entry's cache alive
        point.entries = tuple(e for e in point.entries if e is not entry)
        if not point.entries:
            point.handle.remove()
            if point.tails.get(point.phase) is point:
                del point.tails[point.phase]


_TAILS: weakref.WeakKeyDictionary[nn.Module, dict[str, _Point]] = weakref.WeakKeyDictionary()
Handle: TypeAlias = "RemovableHandle | _EntryHandle"


def _attach(module: nn.Module, phase: str, entry: Any) -> _EntryHandle:
    """Append ``entry`` to ``module``'s newest ``phase`` point, or to a new one if another hook came after it."""
    tails = _TAILS.get(module)
    if tails is None:
        tails = _TAILS[module] = {}
    point = tails.get(phase)
    hooks = module._forward_pre_hooks if phase == PRE else module._forward_hooks
    if point is None or not hooks or next(reversed(hooks)) != point.handle.id:
        point = tails[phase] = _Point(module, phase, tails)
    point.entries = (*point.entries, entry)
    return _EntryHandle(point, entry)


def _register_site(lm: LoadedModel, s: Site, fn: ActFn, deferred: _Deferrals | None = None) -> list[Handle]:
    """Hook ``fn`` (canonical activation → replacement or None) at site ``s``, as the family's table says.

    ``deferred`` (a detached capture's) records a per-head site's raw tensor and resid_mid's summands instead,
    for the value to be made when it is read.
    """
    point = lm.family.sites.get(s.name)
    if point is None:
        raise SiteError(f"site {s.name!r} is not defined for the {lm.family.name} family")
    if point.kind == "resid_mid":
        assert s.layer is not None
        return _resid_mid_hooks(lm, s.layer, fn, deferred.add if deferred is not None else None)
    module = _hook_module(lm, point.module, s.layer)
    if point.kind == "pattern":
        return [_attach(module, POST, (True, _pattern_reader(fn, s)))]
    extract = _extractor(lm, point.view) if deferred is not None else None
    entry = deferred.view(extract) if deferred is not None and extract is not None else _viewed(lm, point.view, fn)
    if point.kind == "input":
        return [_attach(module, PRE, entry)]
    return [_attach(module, POST, (False, entry))]


def _hook_module(lm: LoadedModel, template: str, layer: int | None) -> nn.Module:
    if "{layer}" not in template:
        return get_module(lm.model, template)
    assert layer is not None
    block = layer_module(lm, layer)
    rest = template.replace("{layer}", "").lstrip(".")
    return get_module(block, rest) if rest else block


def _extractor(lm: LoadedModel, view: str) -> View | None:
    """The site's canonical view of the raw tensor at its hook point (None for ``full``); head counts are read
    once here, not per call (``lm.n_heads`` goes through the config's attribute lookup)."""
    if view == "full":
        return None
    n_heads, d_head = lm.n_heads, lm.d_head
    if view in ("heads", "kv_heads"):
        n = n_heads if view == "heads" else lm.n_kv_heads
        return lambda flat: flat.reshape(*flat.shape[:-1], n, d_head)  # [batch, pos, n, d_head]
    part = "qkv".index(view.split(":")[1])
    if lm.family.qkv_layout == "blocked":  # GPT-2: [Q | K | V] along the last dim
        width = n_heads * d_head
        return lambda raw: raw.split(width, dim=-1)[part].reshape(*raw.shape[:-1], n_heads, d_head)
    return lambda raw: raw.reshape(*raw.shape[:-1], n_heads, 3, d_head)[..., part, :]  # GPT-NeoX: [q_h k_h v_h]


def _viewed(lm: LoadedModel, view: str, fn: ActFn) -> ActFn:
    """Wrap ``fn`` so it sees the site's canonical shape and its edit is written back into the raw tensor."""
    extract = _extractor(lm, view)
    if extract is None:
        return fn
    if view in ("heads", "kv_heads"):

        def split(flat: torch.Tensor) -> torch.Tensor | None:
            new = fn(extract(flat))
            return None if new is None else new.reshape(flat.shape)

        return split
    part = "qkv".index(view.split(":")[1])
    n_heads, d_head = lm.n_heads, lm.d_head
    width = n_heads * d_head
    if lm.family.qkv_layout == "blocked":

        def blocked(raw: torch.Tensor) -> torch.Tensor | None:
            new = fn(extract(raw))
            if new is None:
                return None
            parts = list(raw.split(width, dim=-1))
            parts[part] = new.reshape(*raw.shape[:-1], width)
            return torch.cat(parts, dim=-1)

        return blocked

    def per_head(raw: torch.Tensor) -> torch.Tensor | None:
        new = fn(extract(raw))
        if new is None:
            return None
        grouped = raw.reshape(*raw.shape[:-1], n_heads, 3, d_head)
        pieces = [new if i == part else grouped[..., i, :] for i in range(3)]
        return torch.stack(pieces, dim=-2).reshape(raw.shape)

    return per_head


def _pattern_reader(fn: ActFn, s: Site) -> Callable[[Any], None]:
    def read(output: Any) -> None:
        pattern = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if pattern is None:
            raise RuntimeError(
                f"{s.key}: the attention module returned no pattern; load the model with attn_implementation='eager'"
            )
        new = fn(pattern)  # [batch, n_heads, q_pos, k_pos]
        if new is not None and new is not pattern:
            raise SiteError(f"{s.key} is read-only: the pattern is already applied; edit head_out instead")

    return read


def _resid_mid_hooks(
    lm: LoadedModel, layer: int, fn: Callable[[torch.Tensor], Any],
    record_summands: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> list[Handle]:  # fmt: skip
    """resid_mid = resid_pre + attn_out. No module outputs it, so read resid_pre at the block input and
    edit through the attention output: attn_out' = f(resid_pre + attn_out) - resid_pre.
    ``record_summands`` (a detached capture) stores resid_pre and attn_out instead of ``fn`` seeing the sum."""
    if lm.parallel_residual:
        raise SiteError(
            f"resid_mid does not exist in {type(lm.model).__name__} with a parallel residual "
            "(attention and FFN read the same resid_pre); use attn_out / mlp_out"
        )
    attn = layer_submodule(lm, layer, lm.family.attn)
    seen: dict[str, torch.Tensor] = {}

    def remember(resid_pre: torch.Tensor) -> None:
        seen["resid_pre"] = resid_pre

    if record_summands is None:

        def through_attn(attn_out: torch.Tensor) -> torch.Tensor | None:
            resid_pre = seen.pop("resid_pre")
            new = fn(resid_pre + attn_out)  # the block computes exactly this sum next
            return None if new is None else new - resid_pre

    else:

        def through_attn(attn_out: torch.Tensor) -> torch.Tensor | None:
            record_summands(seen.pop("resid_pre"), attn_out)
            return None

    return [_attach(layer_module(lm, layer), PRE, remember), _attach(attn, POST, (False, through_attn))]


def _mask_tracker(lm: LoadedModel, state: ForwardState) -> RemovableHandle:
    """Record the attention mask of each call of the model (kwarg or second positional argument)."""

    def hook(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        state.attention_mask = mask if isinstance(mask, torch.Tensor) else None

    return lm.model.register_forward_pre_hook(hook, with_kwargs=True)


@contextlib.contextmanager
def _hooked(
    lm: LoadedModel, state: ForwardState, entries: Iterable[tuple[Site, ActFn, _Deferrals | None]]
) -> Iterator[None]:
    """Register the mask tracker, then each ``(site, fn, deferred)``; remove exactly those on exit, also on error."""
    for tapper in list(_tap_recorders(lm.model) or ()):
        tapper.switch_to_hooks()  # before our hooks, as if the capture had hooked the model when entered
    handles: list[Handle] = []
    try:
        handles.append(_mask_tracker(lm, state))
        for s, fn, deferred in entries:
            handles.extend(_register_site(lm, s, fn, deferred))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()


@contextlib.contextmanager
def edit(lm: LoadedModel, edits: Iterable[tuple[SiteLike, EditFn]]) -> Iterator[ForwardState]:
    """The general intervention: apply each ``fn(act, state) -> new act | None`` at its site."""
    state = ForwardState()
    # A read-only site (attn_pattern) accepts captures; a replacement raises when the hook fires.
    with _hooked(lm, state, ((site(where), _bind(fn, state), None) for where, fn in edits)):
        yield state


def _bind(fn: EditFn, state: ForwardState) -> Callable[[torch.Tensor], torch.Tensor | None]:
    return lambda act: fn(act, state)


# ---------------------------------------------------------------------------
# The interventions
# ---------------------------------------------------------------------------


def all_sites(lm: LoadedModel, names: Iterable[str] = SITE_NAMES) -> list[Site]:
    """Every site of ``names`` at every layer (``resid_mid`` is skipped for parallel-residual models)."""
    out: list[Site] = []
    for name in names:
        if name in LAYERLESS_SITES:
            out.append(Site(name))
        elif not (name == "resid_mid" and lm.parallel_residual):
            out.extend(Site(name, layer) for layer in range(lm.n_layers))
    return out


@contextlib.contextmanager
def capture(lm: LoadedModel, sites: Iterable[SiteLike] | None = None, detach: bool = True) -> Iterator[Cache]:
    """Record activations at ``sites`` (default: every site) into a :class:`Cache`; the last forward wins.

    A model whose forward code taps its own sites (our native Llama: ``tap_recorders``) is recorded from those
    taps, without a torch hook, while nothing else hooks it; see :class:`_TapCapture`. Otherwise, and for an
    attached capture (``detach=False``, whose tensors stay in the autograd graph), the sites are hooked.
    """
    cache = Cache()
    state = ForwardState()
    targets = [site(s) for s in sites] if sites is not None else all_sites(lm)
    recorders = [_recorders(cache, state, s, detach) for s in targets]
    with contextlib.ExitStack() as stack:
        if detach and _tappable(lm, targets):
            tapper = _TapCapture(lm, cache, state, targets, recorders, stack)
            stack.callback(tapper.stop)
        else:
            stack.enter_context(_hooked(lm, state, recorders))
        yield cache


def _tappable(lm: LoadedModel, targets: list[Site]) -> bool:
    """Whether a detached capture of ``targets`` can be served by the model's taps: the model has them, taps
    every target, and no torch hook (module or global) is registered on it now — a hook registered earlier
    runs before a capture's would, and a tap cannot see the tensor before that hook changed it."""
    if _tap_recorders(lm.model) is None:
        return False
    from mi_catalog.models.native import TAPPED_SITES

    tapped = TAPPED_SITES | {"embed", "ln_final"}
    return all(s.name in tapped for s in targets) and not _hooked_anywhere(lm.model)


def _hooked_anywhere(model: nn.Module) -> bool:
    """Any forward (pre-)hook on ``model`` or a submodule, or a global one."""
    global_hooks = _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks
    return bool(global_hooks) or bool(hook_snapshot(model))


_torch_module = torch.nn.modules.module


class _TapCapture:
    """A detached capture recorded from the model's own taps: no torch hook runs on any module.

    As a forward pass starts the model asks :meth:`begin`; after each layer :meth:`record_layer`, and after the
    pass :meth:`record_ends`, store the requested sites from the pass's taps, with exactly the hooked capture's values and representation (per-head sites as
    deferred views of the raw projection). Hooks change what a capture must see, so the capture **switches to
    torch hooks** for the rest of its life: at once when one of our interventions is entered inside it (its
    hooks are registered first, so it sees what a hooked capture entered at the same time would), and at the
    start of the next pass when any other torch hook appeared on the model (any hook registration advances
    torch's handle counter; only then are the modules scanned).
    """

    def __init__(
        self, lm: LoadedModel, cache: Cache, state: ForwardState, targets: list[Site],
        recorders: list[tuple[Site, ActFn, _Deferrals | None]], stack: contextlib.ExitStack,
    ) -> None:  # fmt: skip
        self.lm, self.cache, self.state, self.recorders, self.stack = lm, cache, state, recorders, stack
        self.embed_key = next((s.key for s in targets if s.name == "embed"), None)
        self.final_key = next((s.key for s in targets if s.name == "ln_final"), None)
        # Per layer: (site name, cache key, per-head view or None) of every requested site, in table order.
        self.per_layer: list[list[tuple[str, str, View | None]]] = [[] for _ in range(lm.n_layers)]
        for s in targets:
            if s.layer is not None:
                self.per_layer[s.layer].append((s.name, s.key, _extractor(lm, lm.family.sites[s.name].view)))
        self.handle_id = _next_handle_id()
        self.hooked = False
        model_recorders = _tap_recorders(lm.model)
        assert model_recorders is not None
        model_recorders.append(self)  # the model asks it at every pass; _hooked finds it there to switch it

    def begin(self, attention_mask: torch.Tensor | None) -> bool:
        """A pass starts: True to record it by taps; False once the capture is served by hooks."""
        if self.hooked:
            return False
        mask = attention_mask if isinstance(attention_mask, torch.Tensor) else None
        if _next_handle_id() != self.handle_id:
            self.handle_id = _next_handle_id()
            if _hooked_anywhere(self.lm.model):
                self.switch_to_hooks()
                self.state.attention_mask = mask  # the capture's mask tracker registers too late for this pass
                return False
        self.cache.attention_mask = mask
        return True

    def record_layer(self, index: int, tap: dict[str, torch.Tensor]) -> None:
        """One decoder layer has run: store its requested sites from its tap (``native.Tap``)."""
        acts = self.cache._acts
        for name, key, extract in self.per_layer[index]:
            value = _detached(tap[name])
            if extract is None:
                acts[key] = value
            else:
                acts[key] = _Deferred(extract, (value,), None)
                self.cache._deferred = True

    def record_ends(self, embed: torch.Tensor | None, final: torch.Tensor) -> None:
        """The pass has run: store ``embed`` (None when the caller passed embeddings) and ``ln_final``."""
        if embed is not None and self.embed_key is not None:
            self.cache._acts[self.embed_key] = _detached(embed)
        if self.final_key is not None:
            self.cache._acts[self.final_key] = _detached(final)

    def switch_to_hooks(self) -> None:
        self.stop()
        self.hooked = True
        self.stack.enter_context(_hooked(self.lm, self.state, self.recorders))

    def stop(self) -> None:
        recorders = _tap_recorders(self.lm.model)
        if recorders is not None and self in recorders:
            recorders.remove(self)


def _tap_recorders(model: nn.Module) -> list[Any] | None:
    """The model's list of tap recorders (``NativeLlamaForCausalLM.tap_recorders``), None for a model without taps."""
    recorders = getattr(model, "tap_recorders", None)
    return recorders if isinstance(recorders, list) else None


def _next_handle_id() -> int:
    """The id torch gives the next hook handle: every hook registration (module, global, tensor) advances it."""
    return RemovableHandle.next_id


def _detached(act: torch.Tensor) -> torch.Tensor:
    # Only a tensor in an autograd graph needs detaching; any other is stored as is (a detached alias of it
    # would hold the same values at the cost of one more tensor op per site and forward pass).
    return act.detach() if act.requires_grad else act


def _recorders(cache: Cache, state: ForwardState, s: Site, detach: bool) -> tuple[Site, ActFn, _Deferrals | None]:
    """``(site, record, deferrals)`` storing the activation under the site's key (bound once: no site parsing
    per call); a detached capture's deferrals store a per-head site's raw tensor and resid_mid's summands."""
    key = s.key
    if not detach:

        def record_attached(act: torch.Tensor) -> torch.Tensor:
            cache._acts[key] = act
            cache.attention_mask = state.attention_mask
            # Hand the (possibly reshaped) tensor back so the forward pass uses exactly it: a per-head view of
            # W_O's input is then in the autograd graph and gets a gradient.
            return act

        return s, record_attached, None

    def record(act: torch.Tensor) -> None:
        cache._acts[key] = _detached(act)
        cache.attention_mask = state.attention_mask

    def view(extract: View) -> ActFn:
        def record_raw(raw: torch.Tensor) -> None:
            cache._acts[key] = _Deferred(extract, (_detached(raw),), None)
            cache._deferred = True
            cache.attention_mask = state.attention_mask

        return record_raw

    def add(resid_pre: torch.Tensor, attn_out: torch.Tensor) -> None:
        if resid_pre.requires_grad or attn_out.requires_grad:
            resid_pre, attn_out = resid_pre.detach(), attn_out.detach()
        cache._acts[key] = _Deferred(operator.add, (resid_pre, attn_out), (_version(resid_pre), _version(attn_out)))
        cache._deferred = True
        cache.attention_mask = state.attention_mask

    return s, record, _Deferrals(view, add)


def run_with_cache(
    lm: LoadedModel, batch: Batch, sites: Iterable[SiteLike] | None = None
) -> tuple[torch.Tensor, Cache]:
    """One forward pass: logits [batch, pos, d_vocab] and the captured activations."""
    with capture(lm, sites) as cache:
        logits = lm.logits(batch)
    return logits, cache


@dataclass
class GradRun:
    """One forward + backward: the metric's value, the activations and d(metric)/d(activation) per site."""

    value: float
    logits: torch.Tensor  # [batch, pos, d_vocab], detached
    acts: Cache  # detached activations
    grads: Cache  # gradients, same shapes (zeros where the metric does not depend on a site)


def run_with_grads(
    lm: LoadedModel, batch: Batch, sites: Iterable[SiteLike], metric: Callable[[torch.Tensor], torch.Tensor]
) -> GradRun:
    """Activations and their gradients at ``sites`` for a scalar ``metric(logits)``, in one forward and one backward.

    Uses :func:`torch.autograd.grad` with respect to the activations only, so no parameter's ``.grad`` is
    touched and the model is left as found. The embedding output is made to require grad, so this also
    works when the parameters are frozen.
    """
    targets = [site(s) for s in sites]

    def track(act: torch.Tensor, _state: ForwardState) -> torch.Tensor | None:
        return None if act.requires_grad else act.detach().requires_grad_(True)

    with torch.enable_grad(), edit(lm, [("embed", track)]), capture(lm, targets, detach=False) as cache:
        logits = lm.forward(batch).logits
        value = metric(logits)
    keys = [s.key for s in targets]
    tensors = [cache.acts[k] for k in keys]
    grads = torch.autograd.grad(value, tensors, allow_unused=True)
    grad_cache = Cache(attention_mask=cache.attention_mask)
    act_cache = Cache(attention_mask=cache.attention_mask)
    for key, act, grad in zip(keys, tensors, grads, strict=True):
        act_cache.acts[key] = act.detach()
        grad_cache.acts[key] = torch.zeros_like(act) if grad is None else grad.detach()
    return GradRun(float(value.detach()), logits.detach(), act_cache, grad_cache)


@contextlib.contextmanager
def edit_weights(lm: LoadedModel, updates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace parameters (by ``named_parameters`` name) with new values; restored on exit.

    For weight edits such as ROME's rank-one update: the original values are copied aside first and written
    back in ``finally``, also when the body raises. Shapes must match.
    """
    params = dict(lm.model.named_parameters())
    unknown = [name for name in updates if name not in params]
    if unknown:
        raise SiteError(f"no parameter(s) {', '.join(unknown)} in {type(lm.model).__name__}")
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, value in updates.items():
                param = params[name]
                if tuple(value.shape) != tuple(param.shape):
                    raise ValueError(
                        f"{name}: new value has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}"
                    )
                saved[name] = param.detach().clone()
                param.copy_(value.to(device=param.device, dtype=param.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, old in saved.items():
                params[name].copy_(old)


def _real_tokens(reference: Cache | torch.Tensor | None, ref: torch.Tensor, state: ForwardState) -> torch.Tensor:
    """Non-padding positions [batch, pos] of the tensor a mean is taken over."""
    if reference is None:
        return state.mask_for(ref)
    mask = reference.attention_mask if isinstance(reference, Cache) else None
    if mask is None or mask.shape != ref.shape[:2]:
        return torch.ones(ref.shape[:2], dtype=torch.bool, device=ref.device)
    return mask.to(device=ref.device, dtype=torch.bool)


def _source_tensor(source: Cache | torch.Tensor, s: Site, act: torch.Tensor) -> torch.Tensor:
    value = source[s] if isinstance(source, Cache) else source
    value = value.to(device=act.device, dtype=act.dtype)
    if value.shape[1:] != act.shape[1:] or value.shape[0] not in (1, act.shape[0]):
        raise ValueError(
            f"{s.key}: source shape {tuple(value.shape)} does not match the run's {tuple(act.shape)} "
            "(patch between token-aligned runs of equal length; the source batch may be 1)"
        )
    return value


@contextlib.contextmanager
def patch(
    lm: LoadedModel, where: SiteLike, source: Cache | torch.Tensor, positions: Positions = None,
    heads: Components = None, neurons: Components = None, mask: torch.Tensor | None = None,
) -> Iterator[None]:  # fmt: skip
    """Overwrite the selected entries at ``where`` with the source run's (a Cache or a tensor of the site's shape).

    ``mask`` — a bool tensor broadcastable to the activation — selects entries explicitly instead of
    positions/heads/neurons, e.g. a different (position, head) in every row of a batch of restorations.
    """
    s = site(where)

    def replace(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        sel = mask.to(act.device) if mask is not None else selection(s, act, state, positions, heads, neurons)
        return torch.where(sel, _source_tensor(source, s, act), act)

    with edit(lm, [(s, replace)]):
        yield


@contextlib.contextmanager
def ablate(
    lm: LoadedModel, where: SiteLike, how: str = "zero", positions: Positions = None, heads: Components = None,
    neurons: Components = None, reference: Cache | torch.Tensor | None = None, seed: int = 0,
) -> Iterator[None]:  # fmt: skip
    """Ablate the selection: ``"zero"``; ``"mean"`` over the reference's (or this run's) real tokens;
    ``"resample"`` from randomly drawn rows of the reference (or this run)."""
    if how not in ("zero", "mean", "resample"):
        raise ValueError(f"ablate how={how!r}; use zero, mean or resample")
    s = site(where)
    generator = torch.Generator().manual_seed(seed)

    def replacement(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        if how == "zero":
            return torch.zeros_like(act)
        ref = _source_tensor(reference, s, act) if reference is not None else act.detach()
        if how == "mean":
            real = _real_tokens(reference, ref, state)
            real = real.reshape(*real.shape, *([1] * (ref.dim() - 2)))  # [b, pos, 1, ...]
            mean = (ref * real).sum(dim=(0, 1)) / real.sum(dim=(0, 1)).clamp(min=1)  # act.shape[2:]
            return mean.expand_as(act)
        rows = torch.randint(0, ref.shape[0], (act.shape[0],), generator=generator)
        return ref[rows.to(ref.device)]

    def apply(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        sel = selection(s, act, state, positions, heads, neurons)
        return torch.where(sel, replacement(act, state), act)

    with edit(lm, [(s, apply)]):
        yield


@contextlib.contextmanager
def scale(
    lm: LoadedModel, where: SiteLike, factor: float, positions: Positions = None, heads: Components = None,
    neurons: Components = None,
) -> Iterator[None]:  # fmt: skip
    """Multiply the selection by ``factor`` (amplitude manipulation)."""
    s = site(where)

    def apply(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        sel = selection(s, act, state, positions, heads, neurons)
        return torch.where(sel, act * factor, act)

    with edit(lm, [(s, apply)]):
        yield


@contextlib.contextmanager
def add_vector(
    lm: LoadedModel, where: SiteLike, vector: torch.Tensor, coeff: float = 1.0, positions: Positions = None,
    heads: Components = None,
) -> Iterator[None]:  # fmt: skip
    """Add ``coeff * vector`` at the selection (steering / activation addition).

    ``vector`` broadcasts against the site's trailing dims: [d_model] for residual sites, [d_head] (or
    [n_heads, d_head]) for ``head_out``, [d_mlp] for ``mlp_act``.
    """
    s = site(where)

    def apply(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        sel = selection(s, act, state, positions, heads, None)
        return torch.where(sel, act + coeff * vector.to(device=act.device, dtype=act.dtype), act)

    with edit(lm, [(s, apply)]):
        yield


@contextlib.contextmanager
def project_out(
    lm: LoadedModel, where: SiteLike, direction: torch.Tensor, positions: Positions = None, heads: Components = None,
) -> Iterator[None]:  # fmt: skip
    """Remove the component along ``direction`` (directional ablation): x ← x − (x·u)u with u = d/|d|."""
    s = site(where)

    def apply(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
        u = direction.to(device=act.device, dtype=act.dtype)
        u = u / u.norm()
        projected = act - (act @ u)[..., None] * u  # same shape as act
        sel = selection(s, act, state, positions, heads, None)
        return torch.where(sel, projected, act)

    with edit(lm, [(s, apply)]):
        yield


def hook_snapshot(model: nn.Module) -> frozenset[tuple[str, str, int]]:
    """Every forward (pre-)hook registered in ``model`` as (module path, kind, hook id).

    Compare snapshots, not counts against zero: transformers installs its own output-recording hooks the
    first time ``output_hidden_states``/``output_attentions`` is used, and keeps them.
    """
    found: set[tuple[str, str, int]] = set()
    for path, module in model.named_modules():
        found.update((path, "forward", hook_id) for hook_id in module._forward_hooks)
        found.update((path, "forward_pre", hook_id) for hook_id in module._forward_pre_hooks)
    return frozenset(found)


def count_hooks(model: nn.Module) -> int:
    """How many forward (pre-)hooks are registered anywhere in ``model``."""
    return len(hook_snapshot(model))
