"""Sparse autoencoders (SAEs) on one activation site: train, save, load, and clamp features.

An SAE rewrites an activation x ∈ R^d_model as a sparse, non-negative combination of learned
directions (Cunningham et al. 2024, *Sparse Autoencoders Find Highly Interpretable Features*; Bricken et
al. 2023, *Towards Monosemanticity*; Templeton et al. 2024, *Scaling Monosemanticity*)::

    f(x) = ReLU((x·c − b_dec) W_enc + b_enc)        feature activations   [..., d_sae]
    x̂    = (f W_dec + b_dec) / c                     reconstruction        [..., d_model]

``W_enc`` [d_model, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_model], ``b_dec`` [d_model]. Row ``i`` of
``W_dec`` is feature ``i``'s decoder direction (a *column* of the papers' ``x̂ = W_dec f + b_dec``); every
row has unit norm, kept so after each step (with the gradient component along the row removed first,
as in Towards Monosemanticity), so the L1 penalty Σ f_i cannot be dodged by shrinking f and growing
W_dec. ``c`` is a fixed scalar, sqrt(d_model) / mean ‖x‖ over the training tokens, so the same L1
coefficient works on any model (Scaling Monosemanticity normalises the same way). Loss per token:
‖x·c − (f W_dec + b_dec)‖² + l1 · Σ_i f_i.

Training data: the activations at ``site`` of every real token (padding and the BOS token left out) of
``prompts_per_task`` prompts of each of the model's tasks (the toy's task mixture, or the English sets),
drawn with a seed of their own. Initialisation (seeded): random unit decoder rows, ``W_enc = W_decᵀ``
(tied init), ``b_enc = 0``, ``b_dec`` = the mean of the normalised activations. Adam, full shuffles,
deterministic for a seed on one machine. Metrics are measured on 10 % of the tokens held out of
training: MSE, explained variance (1 − residual / total variance, 0 = the mean baseline), L0 (mean
active features per token), dead fraction (features never active on any collected token).

Clamping (:class:`FeatureClamp`): set chosen features to a value and keep the SAE's error term, as in
Scaling Monosemanticity's steering experiments: x ← x + (f_clamped − f) W_dec / c.

Files: ``<stem>.safetensors`` (the four tensors and the config JSON in its metadata, authoritative) and
``<stem>.json`` (the same config, readable) under ``$MI_CATALOG_CACHE/saes/<model>/<site>/`` (or any
folder), each written atomically. A saved SAE records the model's name and the sha256 of its weights;
:func:`load_sae` with a model refuses an SAE trained on other weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mi_catalog.errors import UsageError
from mi_catalog.fsutil import atomic_write_text
from mi_catalog.models.hooks import ForwardState, Positions, capture, edit, position_mask
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.sites import SiteError, site
from mi_catalog.paths import cache_root

Progress = Callable[[str, int, int], None]  # (what, done, total)

FORMAT_VERSION = 1
EXPANSION = 4  # default d_sae = EXPANSION × d_model (256 on the toy)
DEFAULT_STEPS = 1000
DEFAULT_L1 = 1.0
DEFAULT_LR = 3e-3
DEFAULT_BATCH = 512
DEFAULT_PROMPTS_PER_TASK = 256
EVAL_FRACTION = 0.1
DATA_SEED_OFFSET = 104_729  # the SAE's prompts are a different draw than a run's own examples (seed, seed + 7919)


class SAEError(UsageError):
    """An SAE cannot be trained, loaded or used as asked (one line: what, where, how to fix)."""


def _quiet(_what: str, _done: int, _total: int) -> None:
    return None


# ---------------------------------------------------------------------------------------------------------
# The autoencoder
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SAEConfig:
    """What an SAE is and how it was trained (saved next to its tensors)."""

    model: str  # the model's name (``toy``, a fetched name, a path or hub id)
    weights_sha256: str  # of the model's weights (see :func:`weights_sha256`)
    site: str  # e.g. "resid_post.1"
    d_model: int
    d_sae: int
    l1: float = DEFAULT_L1
    steps: int = DEFAULT_STEPS
    seed: int = 0
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH
    prompts_per_task: int = DEFAULT_PROMPTS_PER_TASK
    tasks: list[str] = field(default_factory=list)  # the tasks whose prompts gave the training tokens
    n_tokens: int = 0  # activation vectors collected (train + held-out)
    scale: float = 1.0  # c: inputs are multiplied by it before encoding
    metrics: dict[str, float] = field(default_factory=dict)  # on the held-out tokens: mse, explained_variance, l0, ...
    seconds: float = 0.0  # training time (activation collection included)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> SAEConfig:
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("model", "weights_sha256", "site", "d_model", "d_sae") if k not in raw]
        if missing:
            raise SAEError(f"{where}: not an mi-catalog SAE config (missing {', '.join(missing)}); retrain it")
        if raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise SAEError(f"{where}: SAE format {raw.get('format_version')} is not {FORMAT_VERSION}; retrain it")
        return cls(**{k: v for k, v in raw.items() if k in known})


class SparseAutoencoder(torch.nn.Module):
    """A ReLU SAE with unit-norm decoder rows (see the module docstring for the equations)."""

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.config = config
        d, m = config.d_model, config.d_sae
        self.W_enc = torch.nn.Parameter(torch.zeros(d, m))
        self.b_enc = torch.nn.Parameter(torch.zeros(m))
        self.W_dec = torch.nn.Parameter(torch.zeros(m, d))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    @property
    def site(self) -> str:
        return self.config.site

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Activations [..., d_model] (the site's own units) → feature activations f [..., d_sae] ≥ 0."""
        xn = x.to(self.W_enc.dtype) * self.config.scale
        return torch.relu((xn - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] → reconstruction [..., d_model] in the site's units."""
        return (f @ self.W_dec + self.b_dec) / self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def directions(self, features: Sequence[int]) -> torch.Tensor:
        """Decoder directions of ``features`` in the site's units per unit of activation → [k, d_model]."""
        return self.W_dec[list(features)].detach() / self.config.scale

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-8))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().float().cpu().contiguous() for name, p in self.named_parameters()}


# ---------------------------------------------------------------------------------------------------------
# Model identity, cache layout
# ---------------------------------------------------------------------------------------------------------


def weights_sha256(lm: LoadedModel) -> str:
    """sha256 over the model's parameters and buffers (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(lm.model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_key(name: str) -> str:
    """A model name as one folder name: ``toy``, ``smollm2-135m``, ``HuggingFaceTB--SmolLM2-135M``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "--", name.strip()).strip("-.")
    return cleaned or "model"


def saes_dir() -> Path:
    """Where trained SAEs are cached: ``$MI_CATALOG_CACHE/saes``."""
    return cache_root() / "saes"


def default_site(lm: LoadedModel) -> str:
    """The residual stream after the block just below the middle (``resid_post.1`` on the 4-layer toy)."""
    return f"resid_post.{max(0, lm.n_layers // 2 - 1)}"


def check_site(lm: LoadedModel, where: str) -> str:
    """A residual-stream-shaped site of this model → its canonical key; else :class:`SAEError`."""
    try:
        s = site(where)
    except SiteError as err:
        raise SAEError(f"--site {where}: {err}") from None
    if s.name not in ("embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "ln_final"):
        raise SAEError(f"--site {where}: an SAE here reads d_model-sized sites (resid_pre/mid/post, attn_out, "
                       "mlp_out, embed, ln_final)")  # fmt: skip
    if s.layer is not None and not 0 <= s.layer < lm.n_layers:
        raise SAEError(f"--site {where}: layer {s.layer} does not exist (the model has {lm.n_layers} layers, 0-based)")
    return s.key


def stem(config: SAEConfig) -> str:
    return f"d{config.d_sae}-l1_{config.l1:g}-steps{config.steps}-seed{config.seed}"


def cache_folder(model_name: str, where: str) -> Path:
    return saes_dir() / model_key(model_name) / where


# ---------------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------------


def mixture_prompts(lm: LoadedModel, per_task: int, seed: int) -> tuple[list[str], list[str]]:
    """``per_task`` prompts of every task of the model's task source → (prompts, task names used)."""
    source = lm.tasks
    if source is None:
        raise SAEError(f"model {lm.name!r} has no task source to draw training prompts from")
    prompts: list[str] = []
    used: list[str] = []
    for task in source.tasks():
        examples = source.examples(task, per_task, seed=seed + DATA_SEED_OFFSET)
        texts = [lm.format_prompt(ex.prompt, True) if ex.chat else ex.prompt for ex in examples]
        limit = lm.max_positions  # too long for the model, or words a word-level tokenizer does not know: left out
        kept = [t for t in texts if (limit is None or lm.n_tokens(t) <= limit) and not lm.unknown_words(t)]
        if kept:
            used.append(task)
            prompts.extend(kept)
    if not prompts:
        raise SAEError(f"model {lm.name!r}: its task source gave no prompts")
    return prompts, used


def collect_activations(lm: LoadedModel, where: str, prompts: Sequence[str], batch_size: int = 64,
                        progress: Progress = _quiet) -> torch.Tensor:  # fmt: skip
    """Activations at ``where`` of every real, non-BOS token of ``prompts`` → float [n_tokens, d_model]."""
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    chunks: list[torch.Tensor] = []
    total = len(prompts)
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            batch = lm.encode(list(prompts[start : start + batch_size]))
            with capture(lm, [where]) as cache:
                lm.logits(batch)
            keep = batch.attention_mask.bool()
            if bos is not None:
                keep &= batch.input_ids != bos
            chunks.append(cache[where][keep].float().cpu())  # [tokens, d_model]
            progress("collecting activations", min(start + batch_size, total), total)
    return torch.cat(chunks) if chunks else torch.empty(0, lm.d_model)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def _metrics(sae: SparseAutoencoder, x: torch.Tensor, all_x: torch.Tensor) -> dict[str, float]:
    """MSE, explained variance, L0 on ``x`` [n, d]; the dead fraction over ``all_x``."""
    with torch.no_grad():
        f = sae.encode(x)
        err = x - sae.decode(f)
        total = (x - x.mean(0)).pow(2).sum()
        ever = torch.zeros(sae.d_sae, dtype=torch.bool)
        for start in range(0, all_x.shape[0], 4096):
            ever |= (sae.encode(all_x[start : start + 4096]) > 0).any(0)
        return {
            "mse": float(err.pow(2).mean()),
            "mse_mean_baseline": float((x - x.mean(0)).pow(2).mean()),
            "explained_variance": float(1 - err.pow(2).sum() / total.clamp(min=1e-12)),
            "l0": float((f > 0).float().sum(-1).mean()),
            "dead_fraction": float(1 - ever.float().mean()),
        }


def train_on(acts: torch.Tensor, config: SAEConfig, progress: Progress = _quiet) -> SparseAutoencoder:
    """Train an SAE on activations [n, d_model]; ``config.metrics`` gets the held-out metrics."""
    n, d = acts.shape
    if n < 2:
        raise SAEError(f"too few activation vectors ({n}) to train an SAE; use more prompts")
    if d != config.d_model:
        raise SAEError(f"activations have d_model {d}, the config says {config.d_model}")
    for name, value, low in (
        ("d_sae", config.d_sae, 1),
        ("steps", config.steps, 1),
        ("batch_size", config.batch_size, 1),
    ):
        if value < low:
            raise SAEError(f"--{name.replace('_', '-')} must be at least {low} (got {value})")
    if not (config.l1 >= 0 and math.isfinite(config.l1)):
        raise SAEError(f"--l1 must be a finite number ≥ 0 (got {config.l1})")
    gen = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(n, generator=gen)
    n_eval = max(1, int(n * EVAL_FRACTION)) if n >= 10 else 0
    held, train = acts[order[:n_eval]], acts[order[n_eval:]]
    config.n_tokens = n
    config.scale = float(math.sqrt(d) / train.norm(dim=-1).mean().clamp(min=1e-8))
    sae = SparseAutoencoder(config)
    with torch.no_grad():
        direction = torch.randn(config.d_sae, d, generator=gen)
        sae.W_dec.copy_(direction / direction.norm(dim=-1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.t())
        sae.b_dec.copy_((train * config.scale).mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    batch = min(config.batch_size, train.shape[0])
    position = train.shape[0]  # forces a fresh shuffle on the first step
    perm = torch.arange(0)
    for step in range(config.steps):
        if position + batch > train.shape[0]:
            perm, position = torch.randperm(train.shape[0], generator=gen), 0
        x = train[perm[position : position + batch]]
        position += batch
        f = sae.encode(x)
        recon = f @ sae.W_dec + sae.b_dec
        loss = (x * config.scale - recon).pow(2).sum(-1).mean() + config.l1 * f.sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep only the gradient tangent to each unit decoder row
            grad = sae.W_dec.grad
            assert grad is not None
            grad -= (grad * sae.W_dec).sum(-1, keepdim=True) * sae.W_dec
        opt.step()
        sae.normalise_decoder()
        if step % 25 == 24 or step == config.steps - 1:
            progress("training SAE", step + 1, config.steps)
    sae.requires_grad_(False)
    config.metrics = _metrics(sae, held if n_eval else train, acts)
    return sae


def train_sae(lm: LoadedModel, where: str | None = None, d_sae: int | None = None, steps: int = DEFAULT_STEPS,
              seed: int = 0, l1: float = DEFAULT_L1, lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH,
              prompts_per_task: int = DEFAULT_PROMPTS_PER_TASK, progress: Progress = _quiet) -> SparseAutoencoder:  # fmt: skip
    """Collect ``where``'s activations over the model's task mixture and train an SAE on them (no file I/O).

    ``where`` defaults to :func:`default_site`, ``d_sae`` to ``EXPANSION × d_model``."""
    started = time.perf_counter()
    key = check_site(lm, where or default_site(lm))
    if prompts_per_task < 1:
        raise SAEError(f"--prompts-per-task must be at least 1 (got {prompts_per_task})")
    prompts, used = mixture_prompts(lm, prompts_per_task, seed)
    acts = collect_activations(lm, key, prompts, progress=progress)
    size = d_sae if d_sae is not None else EXPANSION * lm.d_model
    config = SAEConfig(model=lm.name, weights_sha256=weights_sha256(lm), site=key, d_model=lm.d_model, d_sae=size,
                       l1=l1, steps=steps, seed=seed, lr=lr, batch_size=batch_size,
                       prompts_per_task=prompts_per_task, tasks=used)  # fmt: skip
    sae = train_on(acts, config, progress)  # on the CPU
    config.seconds = round(time.perf_counter() - started, 3)
    return sae.to(lm.device)  # where the model's activations are, for FeatureClamp and encoding


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def save_sae(sae: SparseAutoencoder, folder: Path | None = None) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json`` atomically; default folder: the cache. → tensor path."""
    from safetensors.torch import save_file

    target_dir = Path(folder) if folder is not None else cache_folder(sae.config.model, sae.site)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SAEError(f"cannot create {target_dir}: {err.strerror or err}") from None
    if not target_dir.is_dir():
        raise SAEError(f"{target_dir} is not a folder")
    name = stem(sae.config)
    target = target_dir / f"{name}.safetensors"
    tmp = target_dir / f".{name}.safetensors.{os.getpid()}.tmp"
    text = sae.config.to_json()
    try:
        save_file(sae.tensors(), str(tmp), metadata={"mi_catalog_sae": text})
        os.replace(tmp, target)
        atomic_write_text(target_dir / f"{name}.json", text + "\n")
    except OSError as err:
        raise SAEError(f"cannot write the SAE to {target_dir}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_config(path: Path) -> SAEConfig:
    """The config stored inside an SAE's safetensors file (the authoritative copy)."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise SAEError(f"{path}: no such SAE file (train one with `mi-catalog sae train`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        raw = json.loads(meta["mi_catalog_sae"])
    except (KeyError, ValueError, OSError) as err:
        raise SAEError(f"{path}: not an mi-catalog SAE file ({type(err).__name__}); retrain it") from None
    if not isinstance(raw, dict):
        raise SAEError(f"{path}: the stored SAE config is not an object; retrain it")
    return SAEConfig.from_dict(raw, str(path))


def load_sae(path: Path | str, lm: LoadedModel | None = None, weights_hash: str | None = None) -> SparseAutoencoder:
    """Load an SAE; with ``lm`` (or its ``weights_hash``), refuse one trained on other weights or sizes."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    config = read_config(path)
    if lm is not None:
        expected = weights_hash or weights_sha256(lm)
        if config.weights_sha256 != expected or config.d_model != lm.d_model:
            raise SAEError(
                f"{path}: trained on model {config.model!r} (weights sha256 {config.weights_sha256[:12]}…), not on "
                f"{lm.name!r} (weights sha256 {expected[:12]}…); train one for it: mi-catalog sae train --model {lm.name}"
            )
    tensors = load_file(str(path))
    sae = SparseAutoencoder(config)
    expected_shapes = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if shapes != expected_shapes:
        raise SAEError(f"{path}: tensors {shapes} do not match the config's sizes {expected_shapes}; retrain it")
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(tensors[name])
    sae.requires_grad_(False)
    if lm is not None:
        sae.to(lm.device)
    return sae


@dataclass(frozen=True)
class SavedSAE:
    """One SAE in a folder tree (for ``mi-catalog sae list``)."""

    path: Path
    config: SAEConfig


def list_saes(root: Path | None = None) -> list[SavedSAE]:
    """Every readable SAE under ``root`` (default: the cache), sorted by model, site and file name."""
    base = Path(root) if root is not None else saes_dir()
    out: list[SavedSAE] = []
    if not base.is_dir():
        return out
    for path in sorted(base.rglob("*.safetensors")):
        if path.name.startswith("."):
            continue
        with contextlib.suppress(SAEError):
            out.append(SavedSAE(path, read_config(path)))
    return sorted(out, key=lambda s: (s.config.model, s.config.site, s.path.name))


def find_cached(lm: LoadedModel, where: str, weights_hash: str | None = None, d_sae: int | None = None) -> Path | None:
    """The newest cached SAE for exactly this model's weights at ``where`` (and ``d_sae`` if given), or None."""
    expected = weights_hash or weights_sha256(lm)
    folder = cache_folder(lm.name, where)
    if not folder.is_dir():
        return None
    matches: list[tuple[float, Path]] = []
    for path in folder.glob("*.safetensors"):
        if path.name.startswith("."):
            continue
        try:
            config = read_config(path)
        except SAEError:
            continue
        if config.weights_sha256 == expected and config.site == where and (d_sae is None or config.d_sae == d_sae):
            matches.append((path.stat().st_mtime, path))
    return max(matches)[1] if matches else None


# ---------------------------------------------------------------------------------------------------------
# Steering: clamp features, keep the error term
# ---------------------------------------------------------------------------------------------------------


@dataclass
class FeatureClamp:
    """Amplitude manipulation of SAE features: at ``sae.site``, set ``features`` to ``value`` (a number, or
    one per feature), leaving the SAE's reconstruction error in place::

        x ← x + (f_clamped − f(x)) W_dec / c

    At every real token (or only ``positions``); padding is left alone. value 0 suppresses a feature,
    a multiple of its typical maximum induces it (Templeton et al. 2024's clamping)."""

    sae: SparseAutoencoder
    features: tuple[int, ...]
    value: float | tuple[float, ...] = 0.0
    positions: Positions = None

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return self._applied(lm)

    def with_value(self, value: float | tuple[float, ...]) -> FeatureClamp:
        return FeatureClamp(self.sae, self.features, value, self.positions)

    @contextlib.contextmanager
    def _applied(self, lm: LoadedModel) -> Iterator[None]:
        if not self.features:
            yield
            return
        idx = torch.tensor(self.features, dtype=torch.long)
        values = torch.as_tensor(self.value, dtype=torch.float32).reshape(-1)  # [1] or [k]
        if values.numel() not in (1, len(self.features)):
            raise SAEError(f"FeatureClamp: {values.numel()} values for {len(self.features)} features")
        sae = self.sae

        def clamp(act: torch.Tensor, state: ForwardState) -> torch.Tensor:
            f = sae.encode(act)[..., idx.to(act.device)]  # [b, pos, k]
            target = values.to(device=act.device, dtype=f.dtype).expand_as(f)
            delta = (target - f) @ sae.directions(self.features).to(device=act.device, dtype=f.dtype)  # [b, pos, d]
            where = state.mask_for(act) & position_mask(self.positions, state.mask_for(act))  # [b, pos]
            return act + (delta * where[..., None]).to(act.dtype)

        with edit(lm, [(sae.site, clamp)]):
            yield
